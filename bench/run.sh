#!/usr/bin/env bash
# Benchmark mysql-quiesce against the classic `mysql -e "FLUSH TABLES WITH READ LOCK; SYSTEM ..."`
# procedure on throwaway MariaDB servers it starts itself (root, binary logging on).
#   bash bench/run.sh            full run (several minutes: 10,000 tables, 4 instances)
#   bash bench/run.sh --quick    smoke run for CI (numbers not representative)
# Results: a table on stdout, bench/results/results.{csv,json} (or --out DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo >/dev/null && [[ -x ${CARGO_HOME:-$HOME/.cargo}/bin/cargo ]]; then
    PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
fi
bash scripts/install-deps.sh >&2
cargo build --release --locked --bin mysql-quiesce --example bench >&2
exec target/release/examples/bench --binary target/release/mysql-quiesce "$@"
