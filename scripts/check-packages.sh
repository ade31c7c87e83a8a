#!/usr/bin/env bash
# Build the packages and prove they work (CI runs this as root):
# - both packages hold exactly the expected files (derived from hooks/ and docs/frameworks/, so
#   a new hook or example that is not packaged fails here: docs/frameworks/'s top-level files go to
#   /usr/share/doc/mysql-quiesce/frameworks/, each framework's directory to /usr/share/mysql-quiesce/,
#   executable in the package exactly when executable in git), with the option file 0600 and a
#   conffile / %config(noreplace);
# - the .deb installs with dpkg; the installed binary, man page, completions and hooks work; the
#   service reads /etc/mysql-quiesce/*.cnf; the timer is not enabled; an edited option file
#   survives a reinstall; lintian reports no error or warning (its exit status, not a grep);
# - the installed service runs once for real against a throwaway MariaDB (systemctl where systemd
#   runs, else its own ExecStart line with its StateDirectory), runs the snapshot hook configured in
#   [mysql-quiesce-service] and writes its report; the installed QEMU guest agent script locks and
#   unlocks that server with the same files and is not disturbed by that service-only hook;
# - the .rpm passes its digest check, installs into a scratch root with rpm, and an upgrade to a
#   newer release keeps an edited option file.
# The machine is left as found: the .deb is purged and the scratch root removed on exit.
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
if dpkg-query -W -f='${Status}' mysql-quiesce 2>/dev/null | grep -q 'ok installed'; then
    fail "mysql-quiesce is already installed here; this check installs and purges it: remove it first"
fi

out=$(bash scripts/build-packages.sh)
deb=$(tail -n 2 <<<"$out" | head -n 1)
rpm_file=$(tail -n 1 <<<"$out")
[[ -f $deb && -f $rpm_file ]] || fail "packages not built: $out"
echo "built $deb and $rpm_file"
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)

# ---------------------------------------------------------------- expected contents
cnf=/etc/mysql-quiesce/mysql-quiesce.cnf
hook_files=$(for h in hooks/*; do [[ $h == *.md ]] || echo "/usr/share/mysql-quiesce/$h"; done)
framework_docs=$(find docs/frameworks -maxdepth 1 -type f | sed 's|^docs/|/usr/share/doc/mysql-quiesce/|')
framework_files=$(find docs/frameworks -mindepth 2 -type f | sed 's|^docs/frameworks/|/usr/share/mysql-quiesce/|')
framework_scripts=$(find docs/frameworks -mindepth 2 -type f -perm -u+x | sed 's|^docs/frameworks/|/usr/share/mysql-quiesce/|')
common="/usr/bin/mysql-quiesce
/usr/share/man/man1/mysql-quiesce.1.gz
/usr/share/bash-completion/completions/mysql-quiesce
/usr/share/fish/vendor_completions.d/mysql-quiesce.fish
$cnf
/usr/share/mysql-quiesce/service.cnf
/usr/share/doc/mysql-quiesce/README.md
/usr/share/doc/mysql-quiesce/hooks.md
$hook_files
$framework_docs
$framework_files"
deb_expected="$common
/usr/share/zsh/vendor-completions/_mysql-quiesce
/lib/systemd/system/mysql-quiesce.service
/lib/systemd/system/mysql-quiesce.timer
/usr/share/doc/mysql-quiesce/copyright
/usr/share/doc/mysql-quiesce/changelog.Debian.gz
/usr/share/lintian/overrides/mysql-quiesce"
rpm_expected="$common
/usr/share/zsh/site-functions/_mysql-quiesce
/usr/lib/systemd/system/mysql-quiesce.service
/usr/lib/systemd/system/mysql-quiesce.timer
/usr/share/licenses/mysql-quiesce/LICENSE"

# same_files WHAT EXPECTED ACTUAL: the two lists hold the same paths, or fail showing the difference.
same_files() {
    local diff
    if ! diff=$(diff <(sort -u <<<"$2") <(sort -u <<<"$3")); then
        echo "$diff" | sed 's/^</  missing:   /; s/^>/  unexpected:/' | grep -E 'missing|unexpected' >&2
        fail "$1: file list differs from the expected one (above)"
    fi
    echo "$1: all $(sort -u <<<"$2" | wc -l) expected files, nothing else"
}

# ---------------------------------------------------------------- .deb contents
same_files ".deb contents (dpkg-deb)" "$deb_expected" \
    "$(dpkg-deb --fsys-tarfile "$deb" | tar -t | grep -v '/$' | sed 's|^\./|/|')"
[[ $(dpkg-deb --info "$deb" conffiles) == "$cnf" ]] || fail ".deb: conffiles is not exactly $cnf"

# ---------------------------------------------------------------- install the .deb
dropin=/etc/mysql-quiesce/zz-check-packages.cnf
scratch=$(mktemp -d)
# Outside /tmp: the service runs with PrivateTmp=yes.
db=/var/lib/mysql-quiesce-check-db
cleanup() {
    rm -f "$dropin"
    bash scripts/throwaway-mariadb.sh stop "$db" >/dev/null 2>&1 || true
    rm -rf "$db"
    dpkg -P mysql-quiesce >/dev/null 2>&1 || true
    rm -rf "$scratch"
}
trap cleanup EXIT
dpkg -i "$deb" >/dev/null || fail "dpkg -i $deb"
installed=$(dpkg -L mysql-quiesce | while read -r f; do [[ -f $f && ! -L $f ]] && echo "$f"; done)
same_files "installed .deb (dpkg -L)" "$deb_expected" "$installed"
dpkg-query -W -f='${Conffiles}\n' mysql-quiesce | grep -q "^ $cnf " || fail "dpkg does not track $cnf as a conffile"
[[ $(stat -c %a "$cnf") == 600 ]] || fail "$cnf is not 0600"
while read -r f; do
    [[ -x $f ]] || fail "$f is not executable"
done <<<"/usr/bin/mysql-quiesce
$hook_files
$framework_scripts"
while read -r f; do
    [[ -x $f ]] && fail "$f is executable, not so in git"
done < <(comm -23 <(sort <<<"$framework_files") <(sort <<<"$framework_scripts"))

got=$(/usr/bin/mysql-quiesce --version) || fail "the installed binary does not run"
[[ $got == "mysql-quiesce $version" ]] || fail "--version says '$got', expected 'mysql-quiesce $version'"
[[ $(man -w mysql-quiesce) == /usr/share/man/man1/mysql-quiesce.1.gz ]] || fail "man does not find mysql-quiesce(1)"
page=$(MANWIDTH=100 man --warnings -l /usr/share/man/man1/mysql-quiesce.1.gz 2>"$scratch/man.err") ||
    fail "man -l failed: $(cat "$scratch/man.err")"
[[ ! -s $scratch/man.err ]] || fail "man -l warns: $(cat "$scratch/man.err")"
for section in NAME SYNOPSIS OPTIONS "EXIT STATUS" ENVIRONMENT FILES SAFETY EXAMPLES SUBCOMMANDS; do
    grep -q "^$section" <<<"$page" || fail "the installed man page has no $section section"
done
bash -c 'source /usr/share/bash-completion/completions/mysql-quiesce && complete -p mysql-quiesce' >/dev/null ||
    fail "the bash completion does not load"
/usr/share/mysql-quiesce/hooks/lvm-snapshot --help | grep -q -- --snapshot || fail "an installed hook does not run (_common.sh?)"
/usr/bin/mysql-quiesce --defaults-file="$cnf" --print-defaults >/dev/null || fail "the shipped option file does not parse"

# The service's ExecStart: continuation lines joined as systemd joins them, $$ unescaped. It runs
# mysql-quiesce in a retry loop; `mq_command` is that mysql-quiesce command line.
exec_start=$(sed -n '/^ExecStart=/,/[^\\]$/p' /lib/systemd/system/mysql-quiesce.service |
    sed 's/^ExecStart=//; s/\\$//' | tr '\n' ' ' | sed 's/\$\$/$/g')
[[ $exec_start == "/bin/sh -c '"* ]] || fail "unexpected ExecStart: $exec_start"
mq_command=$(grep -o '/usr/bin/mysql-quiesce [^;]*' <<<"$exec_start")
[[ -n $mq_command ]] || fail "no mysql-quiesce command in ExecStart: $exec_start"
# The service reads /etc/mysql-quiesce/*.cnf, its [mysql-quiesce-service] group included.
printf '[mysql-quiesce]\nlock-retries = 7\n[mysql-quiesce-service]\nlock-retry-delay = 9\n' >"$dropin"
chmod 600 "$dropin"
# shellcheck disable=SC2086 # a word list
defaults=$($mq_command --print-defaults)
grep -qx -- --lock-retries=7 <<<"$defaults" || fail "the service does not read $dropin"
grep -qx -- --lock-retry-delay=9 <<<"$defaults" || fail "the service does not read [mysql-quiesce-service]"
rm -f "$dropin"
if command -v systemd-analyze >/dev/null; then
    systemd-analyze verify /lib/systemd/system/mysql-quiesce.service /lib/systemd/system/mysql-quiesce.timer ||
        fail "systemd-analyze verify rejects the units"
fi

# Shipped disabled: nothing enables the timer (no maintainer script, no wants/ link).
if dpkg-deb --ctrl-tarfile "$deb" | tar -x -O 2>/dev/null | grep -Eq 'systemctl|deb-systemd'; then
    fail "a maintainer script touches systemd units"
fi
if compgen -G '/etc/systemd/system/*.wants/mysql-quiesce.*' >/dev/null; then
    fail "installing enabled a unit: $(ls /etc/systemd/system/*.wants/mysql-quiesce.*)"
fi
if command -v systemctl >/dev/null; then
    state=$(systemctl is-enabled mysql-quiesce.timer 2>/dev/null || true)
    [[ $state == disabled ]] || fail "mysql-quiesce.timer is '$state' after install, expected disabled"
fi

# The service, run once for real: it locks a throwaway MariaDB, runs the snapshot hook the
# drop-in configures, and writes its report where the unit says.
bash scripts/throwaway-mariadb.sh start "$db" >/dev/null || fail "cannot start a throwaway MariaDB in $db"
report=/var/lib/mysql-quiesce/last-report.json
marker=/var/lib/mysql-quiesce/check-packages-snapshot-ran
rm -f "$report" "$marker"
printf '[client]\nsocket = %s/sock\nuser = root\n[mysql-quiesce-service]\nsnapshot = touch %s\n' "$db" "$marker" >"$dropin"
chmod 600 "$dropin"
if [[ -d /run/systemd/system ]]; then
    systemctl daemon-reload
    systemctl start mysql-quiesce.service ||
        fail "systemctl start mysql-quiesce.service failed: $(journalctl -u mysql-quiesce.service -n 30 --no-pager)"
    how="systemctl start"
else
    # No systemd here: what the unit does, by hand (StateDirectory= is created by systemd).
    mkdir -p /var/lib/mysql-quiesce
    bash -c "$exec_start" 2>"$scratch/service.err" || fail "the service's ExecStart failed: $(cat "$scratch/service.err")"
    how="its ExecStart line (no systemd on this machine)"
fi
[[ -f $marker ]] || fail "the service ($how) did not run the configured snapshot hook"
python3 - "$report" <<'EOF' || fail "the service's report $report is missing or not a success"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["exit_code"] == 0 and r["consistent"] is True and r["hooks"][0]["command"].startswith("touch "), r
EOF
rm -f "$marker" "$report"
echo "service: ran once via $how, report written"
# The installed QEMU guest agent script, as qemu-ga runs it, reads the same files (the
# drop-in's [client]) and ignores the service's own snapshot hook.
qga=/usr/share/mysql-quiesce/qemu-ga/fsfreeze-hook.d/mysql-quiesce
"$qga" freeze >"$scratch/qga.out" 2>&1 || fail "$qga freeze failed: $(cat "$scratch/qga.out")"
grep -q "^export MYSQL_QUIESCE_BINLOG_FILE=" "$scratch/qga.out" || fail "$qga freeze printed no coordinates: $(cat "$scratch/qga.out")"
"$qga" thaw >"$scratch/qga.out" 2>&1 || fail "$qga thaw failed: $(cat "$scratch/qga.out")"
[[ ! -e $marker ]] || fail "$qga ran the service's snapshot hook"
echo "qemu-ga script: locked and unlocked with the installed configuration"
rm -f "$dropin"
bash scripts/throwaway-mariadb.sh stop "$db" >/dev/null

# Upgrades keep an edited option file.
echo "# local edit" >>"$cnf"
dpkg -i "$deb" >/dev/null || fail "reinstalling $deb"
grep -qx '# local edit' "$cnf" || fail "reinstalling the .deb replaced the edited $cnf"
echo "dpkg install: ok"

# ---------------------------------------------------------------- lintian
# Its exit status decides (a crash or an error/warning fails); its output is always shown.
if lintian --fail-on error,warning --display-info --tag-display-limit 0 "$deb"; then
    echo "lintian: no errors or warnings"
else
    fail "lintian failed (exit status $?; output above)"
fi

# ---------------------------------------------------------------- .rpm
rpm -K --nosignature "$rpm_file" | grep -q 'digests OK' || fail "rpm digest check"
same_files ".rpm contents (rpm -qlp)" "$rpm_expected" "$(rpm -qlp "$rpm_file" 2>/dev/null)"
[[ $(rpm -qpc "$rpm_file" 2>/dev/null) == "$cnf" ]] || fail "rpm: config files are not exactly $cnf"
flags=$(rpm -qp --qf '[%{FILEMODES:perms} %{FILEFLAGS:fflags} %{FILENAMES}\n]' "$rpm_file" 2>/dev/null)
grep -qx -- "-rw------- cn $cnf" <<<"$flags" || fail "rpm: $cnf is not 0600 %config(noreplace): $(grep "$cnf" <<<"$flags")"
while read -r f; do
    grep -Eq -- "^-rwxr-xr-x [a-z]* $f\$" <<<"$flags" || fail "rpm: $f is not 0755"
done <<<"/usr/bin/mysql-quiesce
$hook_files
$framework_scripts"
while read -r f; do
    grep -Eq -- "^-rw-r--r-- [a-z]* $f\$" <<<"$flags" || fail "rpm: $f is not 0644"
done < <(comm -23 <(sort <<<"$framework_files") <(sort <<<"$framework_scripts"))
if rpm -qp --scripts "$rpm_file" 2>/dev/null | grep -Eq 'systemctl|preset'; then
    fail "rpm: a scriptlet touches systemd units"
fi
# Install it into a scratch root (dependencies are the base system's: not there, so --nodeps).
rpm --root "$scratch/root" --initdb
rpm --root "$scratch/root" -i --nodeps --noscripts "$rpm_file" 2>/dev/null || fail "rpm -i into a scratch root"
rpm --root "$scratch/root" -V --nodeps mysql-quiesce || fail "rpm -V: installed files differ from the package"
got=$("$scratch/root/usr/bin/mysql-quiesce" --version) || fail "the binary from the rpm does not run"
[[ $got == "mysql-quiesce $version" ]] || fail "rpm: --version says '$got'"
# An upgrade to a newer release keeps an edited option file (%config(noreplace)).
echo "# local edit" >>"$scratch/root$cnf"
rpm2=$(cargo generate-rpm --set-metadata 'release = "2"' -o "$scratch/upgrade.rpm" >&2 && echo "$scratch/upgrade.rpm")
rpm --root "$scratch/root" -U --nodeps --noscripts "$rpm2" 2>/dev/null || fail "rpm -U to release 2"
[[ $(rpm --root "$scratch/root" -q --qf '%{RELEASE}' mysql-quiesce) == 2 ]] || fail "rpm -U did not upgrade"
grep -qx '# local edit' "$scratch/root$cnf" || fail "rpm -U replaced the edited $cnf"
echo "rpm: ok"
echo "check-packages: PASS"
