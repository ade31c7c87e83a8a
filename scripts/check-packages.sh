#!/usr/bin/env bash
# Build the packages and prove they work (CI runs this as root):
# install the .deb with dpkg, run the installed binary and man page, check what was
# installed, run lintian (any E: fails), check the .rpm's file list, then remove the .deb.
set -euo pipefail
cd "$(dirname "$0")/.."
fail() { echo "check-packages: FAIL: $*" >&2; exit 1; }

missing=()
for tool in lintian:lintian rpm:rpm man:man-db; do
    command -v "${tool%%:*}" >/dev/null || missing+=("${tool#*:}")
done
if ((${#missing[@]})); then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

out=$(bash scripts/build-packages.sh)
deb=$(tail -n 2 <<<"$out" | head -n 1)
rpm_file=$(tail -n 1 <<<"$out")
[[ -f $deb && -f $rpm_file ]] || fail "packages not built: $out"
echo "built $deb and $rpm_file"

cleanup() { dpkg -r mysql-quiesce >/dev/null 2>&1 || true; }
trap cleanup EXIT
dpkg -i "$deb" >/dev/null || fail "dpkg -i $deb"
/usr/bin/mysql-quiesce --version | grep -q '^mysql-quiesce ' || fail "installed binary does not run"
man -l /usr/share/man/man1/mysql-quiesce.1.gz 2>/dev/null | grep -q 'EXIT STATUS' || fail "installed man page does not render"
for f in /usr/share/bash-completion/completions/mysql-quiesce \
    /usr/share/zsh/vendor-completions/_mysql-quiesce \
    /usr/share/fish/vendor_completions.d/mysql-quiesce.fish \
    /lib/systemd/system/mysql-quiesce.service /lib/systemd/system/mysql-quiesce.timer \
    /usr/share/doc/mysql-quiesce/README.md /usr/share/doc/mysql-quiesce/copyright; do
    [[ -f $f ]] || fail "$f not installed"
done
[[ $(stat -c %a /etc/mysql-quiesce/mysql-quiesce.cnf) == 600 ]] || fail "example option file is not 0600"
for hook in hooks/*; do
    [[ $hook == *.md ]] && continue
    [[ -x /usr/share/mysql-quiesce/hooks/$(basename "$hook") ]] || fail "hook $hook not installed executable"
done
# The shipped option file parses, and the timer is shipped disabled.
/usr/bin/mysql-quiesce --defaults-file=/etc/mysql-quiesce/mysql-quiesce.cnf --print-defaults >/dev/null ||
    fail "the shipped option file does not parse"
if command -v systemctl >/dev/null && systemctl is-enabled mysql-quiesce.timer >/dev/null 2>&1; then
    fail "the timer must be shipped disabled"
fi
echo "dpkg install: ok"

lint=$(lintian --tag-display-limit 0 "$deb" 2>&1 || true)
[[ -n $lint ]] && echo "$lint"
if grep -q '^E: ' <<<"$lint"; then fail "lintian reports errors"; fi
echo "lintian: no errors"

files=$(rpm -qlp "$rpm_file" 2>/dev/null)
for f in /usr/bin/mysql-quiesce /usr/share/man/man1/mysql-quiesce.1.gz \
    /usr/share/bash-completion/completions/mysql-quiesce /usr/share/zsh/site-functions/_mysql-quiesce \
    /usr/share/fish/vendor_completions.d/mysql-quiesce.fish /etc/mysql-quiesce/mysql-quiesce.cnf \
    /usr/lib/systemd/system/mysql-quiesce.service /usr/lib/systemd/system/mysql-quiesce.timer; do
    grep -qx "$f" <<<"$files" || fail "$f missing from the rpm"
done
rpm -qpc "$rpm_file" 2>/dev/null | grep -qx /etc/mysql-quiesce/mysql-quiesce.cnf || fail "rpm: option file is not a config file"
echo "rpm file list: ok"
echo "check-packages: PASS"
