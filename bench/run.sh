#!/usr/bin/env bash
# Benchmark mysql-quiesce against the classic `mysql -e "FLUSH TABLES WITH READ LOCK; SYSTEM ..."`
# procedure on throwaway servers it starts itself (as root: the image-copy step freezes a
# loop-mounted XFS volume the benchmark creates; nothing else is ever frozen).
#   bash bench/run.sh            full run (about 10 minutes): MariaDB 10.11, and MySQL 9 from the
#                                server matrix (scripts/server-matrix.sh; set up here if possible)
#   bash bench/run.sh --quick    smoke run for CI: MariaDB only, smallest settings
# Results: tables on stdout, bench/results/results.{md,csv,json} (or --out DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo >/dev/null && [[ -x ${CARGO_HOME:-$HOME/.cargo}/bin/cargo ]]; then
    PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
fi
[[ $(id -u) -eq 0 ]] || { echo "bench: run as root (loop devices, freeze of the bench's own volume)" >&2; exit 1; }
bash scripts/install-deps.sh >&2
cargo build --release --locked --bin mysql-quiesce --example bench >&2

extra=()
if [[ " $* " != *" --quick "* ]]; then
    if bash scripts/server-matrix.sh setup >&2; then
        extra+=(--mysql)
    else
        echo "bench: WARNING: the server matrix could not be set up: MySQL 9 is NOT measured in this run" >&2
    fi
fi
exec target/release/examples/bench --binary target/release/mysql-quiesce "${extra[@]}" "$@"
