#!/usr/bin/env bash
# Build the .deb and .rpm: release binary, man page and completions generated from the CLI,
# hook scripts, then cargo-deb and cargo-generate-rpm (installed into ~/.cargo/bin if missing).
# Prints the package paths on the last two lines.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo >/dev/null && [[ -x ${CARGO_HOME:-$HOME/.cargo}/bin/cargo ]]; then
    PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
fi

need_tool() { # name version
    if ! cargo "${1#cargo-}" --version >/dev/null 2>&1; then
        echo "build-packages: installing $1 $2 (once per machine)" >&2
        cargo install "$1" --locked --version "$2" >&2
    fi
}
need_tool cargo-deb 3.8.0
need_tool cargo-generate-rpm 0.21.1

cargo build --release --locked >&2
bin=target/release/mysql-quiesce
assets=target/assets
rm -rf "$assets"
mkdir -p "$assets/completions" "$assets/hooks"
"$bin" --no-defaults generate man >"$assets/mysql-quiesce.1"
gzip -9n -c "$assets/mysql-quiesce.1" >"$assets/mysql-quiesce.1.gz"
"$bin" --no-defaults generate bash >"$assets/completions/mysql-quiesce.bash"
"$bin" --no-defaults generate zsh >"$assets/completions/_mysql-quiesce"
"$bin" --no-defaults generate fish >"$assets/completions/mysql-quiesce.fish"
# Hook scripts only (the README is documentation, installed 0644 separately).
for hook in hooks/*; do
    [[ -f $hook && $hook != *.md ]] && cp "$hook" "$assets/hooks/"
done

cargo deb --no-build --locked >&2
cargo generate-rpm >&2
ls -1t target/debian/mysql-quiesce_*.deb | head -n 1
ls -1t target/generate-rpm/mysql-quiesce-*.rpm | head -n 1
