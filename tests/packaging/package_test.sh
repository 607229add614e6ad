#!/bin/sh
# The .deb and .rpm packages (cmake/Packaging.cmake, packaging/): builds
# both with cpack into a temporary directory, checks their contents,
# dependencies, conffiles and lintian's verdict, verifies the systemd units,
# then installs, upgrades in place and purges each .deb on this machine. With
# the agent installed, it runs the enrolment script of `ink-coordinator pki
# enrol` for real (certificates, agent.conf, doctor), then once more to
# install the package too (INK_AGENT_DEB).
#
# Root, Debian. An Ink already on this machine is kept: /etc/ink and
# /var/lib/ink, when no package owns them (scripts/quickstart, a `make
# install`), are moved aside and put back at the end, whatever happens;
# installed ink-agent/ink-coordinator packages stop the test before it
# touches anything.
set -eu

B=${INK_BUILD_DIR:?INK_BUILD_DIR: the build tree}
say() { printf '%s\n' "package_test: $*"; }
fail() {
	printf '%s\n' "package_test: FAIL: $*" >&2
	exit 1
}

# Never skipped: without root or a tool this fails, saying which.
[ "$(id -u)" -eq 0 ] || fail "needs root (it installs and purges the packages)"
for tool in cpack dpkg-deb dpkg-shlibdeps lintian rpm rpmbuild fakeroot apt-get systemd-analyze; do
	command -v "$tool" >/dev/null || fail "$tool not installed (scripts/install-deps)"
done
for pkg in ink-agent ink-coordinator; do
	if dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'installed'; then
		fail "package $pkg is installed here; the test installs and purges it: remove it first"
	fi
done
grep -q ' /var/lib/ink[/ ]' /proc/self/mounts &&
	fail "mounts under /var/lib/ink (a running agent?): not moving it aside"

T=$(mktemp -d /tmp/ink-pkgtest.XXXXXX)
DB_DIR=
COORD_PID=
moved=""
users_before=$(getent passwd ink-dns ink-coordinator | cut -d: -f1 | tr '\n' ' ')

cleanup() {
	rc=$?
	set +e
	[ -z "$COORD_PID" ] || kill "$COORD_PID" 2>/dev/null
	for pkg in ink-agent ink-coordinator; do
		dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'installed' &&
			apt-get purge -y -q "$pkg" >/dev/null 2>&1
	done
	# what purges keep (enrolled certificates): /etc/ink was not there
	case " $moved " in *" /etc/ink "*) ;; *) rm -rf /etc/ink ;; esac
	for d in $moved; do
		name=$(echo "$d" | tr / _)
		rm -rf "$d"
		mv "$T/backup/$name" "$d" && say "restored $d"
	done
	[ -z "$DB_DIR" ] || rm -rf "$DB_DIR"
	rm -rf "$T"
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- an existing installation goes aside -------------------------------------
mkdir "$T/backup"
for d in /etc/ink /var/lib/ink; do
	[ -e "$d" ] || continue
	if dpkg -S "$d" >/dev/null 2>&1; then
		fail "$d belongs to a package ($(dpkg -S "$d" 2>/dev/null | head -n 1))"
	fi
	mv "$d" "$T/backup/$(echo "$d" | tr / _)"
	moved="$moved $d"
	say "moved $d aside (restored at the end)"
done

# --- build the packages ------------------------------------------------------
cd "$T"
cpack --config "$B/CPackConfig.cmake" -G DEB -B "$T/deb" >"$T/cpack-deb.log" 2>&1 ||
	{ cat "$T/cpack-deb.log" >&2; fail "cpack -G DEB"; }
cpack --config "$B/CPackConfig.cmake" -G RPM -B "$T/rpm" >"$T/cpack-rpm.log" 2>&1 ||
	{ cat "$T/cpack-rpm.log" >&2; fail "cpack -G RPM"; }
AGENT_DEB=$(ls "$T"/deb/ink-agent_*.deb)
COORD_DEB=$(ls "$T"/deb/ink-coordinator_*.deb)
AGENT_RPM=$(ls "$T"/rpm/ink-agent-*.rpm)
COORD_RPM=$(ls "$T"/rpm/ink-coordinator-*.rpm)
say "built $(cd "$T" && ls deb/*.deb rpm/*.rpm | tr '\n' ' ')"

# --- .deb: fields, contents, conffiles ---------------------------------------
has_line() { # FILE-CONTENT WANTED WHAT
	printf '%s\n' "$1" | grep -qx -- "$2" || fail "$3: no \"$2\""
}
has_word() {
	printf '%s\n' "$1" | grep -qE -- "$2" || fail "$3: nothing matching /$2/ in: $1"
}
version=$(dpkg-deb -f "$AGENT_DEB" Version)
[ "$version" = "$(sed -n 's/^project(ink VERSION \([0-9.]*\).*/\1/p' "$(dirname "$0")/../../CMakeLists.txt")-1" ] ||
	fail "ink-agent version $version is not the project's"
dep=$(dpkg-deb -f "$AGENT_DEB" Depends)
for w in '(^|, )runsc(,|$)' '(^|, )nftables(,|$)' 'adduser' 'libc6 ' 'libgrpc' 'libnftables1' 'libbpf1' \
	'libseccomp2' 'libarchive13'; do
	has_word "$dep" "$w" "ink-agent Depends"
done
dep=$(dpkg-deb -f "$COORD_DEB" Depends)
for w in 'adduser' 'libc6 ' 'libgrpc' 'libsqlite3-0' 'libmicrohttpd12'; do
	has_word "$dep" "$w" "ink-coordinator Depends"
done
printf '%s\n' "$dep" | grep -q runsc && fail "ink-coordinator depends on runsc"

list() { dpkg-deb -c "$1" | awk '{print $6}' | sed 's|^\./|/|'; }
files=$(list "$AGENT_DEB")
for f in /usr/bin/ink-agent /usr/libexec/ink/ink-unpack /usr/libexec/ink/ink-dns /etc/ink/agent.conf \
	/etc/ink/policies/default.policy /etc/ink/policies/deny-all.policy \
	/etc/ink/policies/allowlist.policy /lib/systemd/system/ink-agent.service \
	/usr/share/doc/ink-agent/copyright /usr/share/lintian/overrides/ink-agent; do
	has_line "$files" "$f" "ink-agent.deb"
done
printf '%s\n' "$files" | grep -q coordinator && fail "ink-agent.deb carries coordinator files"
files=$(list "$COORD_DEB")
for f in /usr/bin/ink-coordinator /etc/ink/coordinator.conf /lib/systemd/system/ink-coordinator.service \
	/usr/share/doc/ink-coordinator/copyright; do
	has_line "$files" "$f" "ink-coordinator.deb"
done
printf '%s\n' "$files" | grep -qE 'ink-agent|libexec|policies' && fail "ink-coordinator.deb carries agent files"

conf=$(dpkg-deb --ctrl-tarfile "$AGENT_DEB" | tar -xO ./conffiles)
for f in /etc/ink/agent.conf /etc/ink/policies/default.policy /etc/ink/policies/deny-all.policy \
	/etc/ink/policies/allowlist.policy; do
	has_line "$conf" "$f" "ink-agent conffiles"
done
conf=$(dpkg-deb --ctrl-tarfile "$COORD_DEB" | tar -xO ./conffiles)
has_line "$conf" /etc/ink/coordinator.conf "ink-coordinator conffiles"
say "deb: Depends, contents and conffiles as expected"

# --- lintian: no error or warning that is not overridden ---------------------
lintian --tag-display-limit 0 "$AGENT_DEB" "$COORD_DEB" >"$T/lintian.log" 2>&1 || true
if grep -E '^(E|W): ' "$T/lintian.log" >&2; then
	fail "lintian (override with a reason in packaging/debian/<pkg>.lintian-overrides)"
fi
say "lintian: clean ($(grep -c '^[IN]: ' "$T/lintian.log" || true) info/notes)"

# --- .rpm: contents, requirements, %config -----------------------------------
files=$(rpm -qpl "$AGENT_RPM")
for f in /usr/bin/ink-agent /usr/libexec/ink/ink-unpack /usr/libexec/ink/ink-dns /etc/ink/agent.conf \
	/etc/ink/policies/default.policy /lib/systemd/system/ink-agent.service; do
	has_line "$files" "$f" "ink-agent.rpm"
done
files=$(rpm -qpl "$COORD_RPM")
for f in /usr/bin/ink-coordinator /etc/ink/coordinator.conf /lib/systemd/system/ink-coordinator.service; do
	has_line "$files" "$f" "ink-coordinator.rpm"
done
req=$(rpm -qpR "$AGENT_RPM")
for w in '^runsc$' '^nftables$' '^libgrpc\.so' '^libnftables\.so' '^libbpf\.so' '^libc\.so\.6'; do
	has_word "$req" "$w" "ink-agent.rpm Requires"
done
req=$(rpm -qpR "$COORD_RPM")
for w in '^libgrpc\.so' '^libsqlite3\.so' '^libmicrohttpd\.so'; do
	has_word "$req" "$w" "ink-coordinator.rpm Requires"
done
has_line "$(rpm -qpc "$AGENT_RPM")" /etc/ink/agent.conf "ink-agent.rpm %config"
has_line "$(rpm -qpc "$COORD_RPM")" /etc/ink/coordinator.conf "ink-coordinator.rpm %config"
rpm -qp --qf '[%{FILEFLAGS:fflags} %{FILENAMES}\n]' "$AGENT_RPM" | grep -q '^cn /etc/ink/agent.conf$' ||
	fail "ink-agent.rpm: agent.conf is not %config(noreplace)"
rpm -qp --scripts "$AGENT_RPM" | grep -q 'useradd -r' || fail "ink-agent.rpm: no %pre creating ink-dns"
say "rpm: contents, Requires and %config(noreplace) as expected"

# --- install, check, upgrade in place, purge ---------------------------------
apt_install() {
	apt-get install -y -q --no-install-recommends "$1" >"$T/apt.log" 2>&1 ||
		{ cat "$T/apt.log" >&2; fail "apt-get install $1"; }
}
mode_owner() { stat -c '%a %U:%G' "$1"; }
expect_mode() { # PATH "MODE USER:GROUP"
	[ "$(mode_owner "$1")" = "$2" ] || fail "$1: $(mode_owner "$1"), want $2"
}
# a system user without login or password
expect_system_user() {
	entry=$(getent passwd "$1") || fail "no user $1"
	uid=$(echo "$entry" | cut -d: -f3)
	shell=$(echo "$entry" | cut -d: -f7)
	[ "$uid" -lt 1000 ] || fail "user $1: uid $uid is not a system uid"
	case $shell in */nologin | /bin/false) ;; *) fail "user $1: login shell $shell" ;; esac
	pw=$(getent shadow "$1" | cut -d: -f2)
	case $pw in '*' | '!'*) ;; *) fail "user $1: has a password" ;; esac
}
exec_start() { sed -n 's/^ExecStart=//p' "$1"; }
systemd_running() { [ -d /run/systemd/system ]; }

# ink-agent
cp "$AGENT_DEB" "$COORD_DEB" "$T/"
apt_install "$T/$(basename "$AGENT_DEB")"
for f in /usr/bin/ink-agent /usr/libexec/ink/ink-unpack /usr/libexec/ink/ink-dns; do
	expect_mode "$f" "755 root:root"
done
expect_mode /etc/ink/agent.conf "644 root:root"
for f in /etc/ink/policies/*.policy; do expect_mode "$f" "644 root:root"; done
expect_mode /var/lib/ink/agent "700 root:root"
expect_mode /etc/ink/pki "750 root:root"
expect_system_user ink-dns
systemd-analyze verify /lib/systemd/system/ink-agent.service >"$T/verify.log" 2>&1 ||
	{ cat "$T/verify.log" >&2; fail "systemd-analyze verify ink-agent.service"; }
[ -L /etc/systemd/system/multi-user.target.wants/ink-agent.service ] || fail "ink-agent.service not enabled"
if ! systemd_running; then
	for p in $(pgrep -x ink-agent || true); do
		[ "$(readlink "/proc/$p/exe")" != /usr/bin/ink-agent ] || fail "ink-agent started without systemd"
	done
fi
# The unit's command line, with a harmless command instead of `run`: the
# installed binary, its helpers' directory and the packaged configuration
# and policies.
cmd=$(exec_start /lib/systemd/system/ink-agent.service)
case $cmd in *' run') ;; *) fail "ink-agent.service: ExecStart \"$cmd\" does not end in run" ;; esac
base=${cmd% run}
$base version | grep -qF "${version%-*}" || fail "$base version: not ${version%-*}"
# shellcheck disable=SC2086
$base policy check /etc/ink/policies/*.policy >"$T/policy.log" 2>&1 ||
	{ cat "$T/policy.log" >&2; fail "$base policy check"; }
# Upgrade in place (same version again): the postinst's upgrade path, and
# a changed conffile stays.
echo "# changed by package_test" >>/etc/ink/agent.conf
dpkg -i "$T/$(basename "$AGENT_DEB")" >"$T/dpkg.log" 2>&1 || { cat "$T/dpkg.log" >&2; fail "reinstall"; }
tail -n 1 /etc/ink/agent.conf | grep -q 'changed by package_test' || fail "reinstall replaced a changed agent.conf"
expect_system_user ink-dns

# One-command enrolment: the script `ink-coordinator pki enrol` writes, run
# here as on a new node, with a CA of the test's own.
COORD_BIN=$B/coordinator/ink-coordinator
[ -x "$COORD_BIN" ] || fail "no $COORD_BIN in the build tree"
: >"$T/coordinator.conf"
coord() { "$COORD_BIN" --config "$T/coordinator.conf" --pki-dir "$T/ca" "$@"; }
coord pki init >"$T/pki.log" 2>&1 || { cat "$T/pki.log" >&2; fail "pki init"; }
NODE=pkgtest-node
coord pki enrol "$NODE" --coordinator 127.0.0.1:7440 --out "$T/enrol.sh" >"$T/pki.log" 2>&1 ||
	{ cat "$T/pki.log" >&2; fail "pki enrol"; }
expect_mode "$T/enrol.sh" "600 root:root"
grep -q "private key (mode 0600)" "$T/pki.log" || fail "pki enrol: no word about the private key"
# The here-document of function $1 in script $2.
pem_of() { awk -v fn="$1() {" '$0 == fn { f = 1; next } f && /^INK_ENROL_PEM_EOF$/ { exit } f && !/^\tcat / { print }' "$2"; }
# run_enrol SCRIPT [VAR=VALUE ...]: its output in $T/enrol.log
run_enrol() {
	script=$1
	shift
	env "$@" sh "$script" >"$T/enrol.log" 2>&1
}
state() { stat -c '%n %i %a %U:%G %s %Y' /etc/ink/agent.conf /etc/ink/pki /etc/ink/pki/*; }
echo "# enrol marker" >>/etc/ink/agent.conf
cp -p /etc/ink/agent.conf "$T/agent.conf.before"
run_enrol "$T/enrol.sh" || { cat "$T/enrol.log" >&2; fail "enrol.sh"; }
expect_mode /etc/ink/pki "750 root:root"
expect_mode /etc/ink/pki/ca.crt "644 root:root"
expect_mode /etc/ink/pki/node.crt "644 root:root"
expect_mode /etc/ink/pki/node.key "600 root:root"
cmp -s /etc/ink/pki/ca.crt "$T/ca/ca.crt" || fail "enrol: /etc/ink/pki/ca.crt is not the CA's"
pem_of ink_node_crt "$T/enrol.sh" | cmp -s - /etc/ink/pki/node.crt || fail "enrol: node.crt is not the script's"
pem_of ink_node_key "$T/enrol.sh" | cmp -s - /etc/ink/pki/node.key || fail "enrol: node.key is not the script's"
[ ! -e /etc/ink/pki/ca.key ] || fail "enrol: the CA key reached the node"
for l in "coordinator = 127.0.0.1:7440" "node_id = $NODE" "listen = 0.0.0.0:7442" "# enrol marker" \
	"# changed by package_test"; do
	grep -qxF "$l" /etc/ink/agent.conf || fail "enrol: agent.conf has no line \"$l\""
done
[ "$(wc -l </etc/ink/agent.conf)" = "$(wc -l <"$T/agent.conf.before")" ] || fail "enrol: agent.conf lost or gained lines"
! diff "$T/agent.conf.before" /etc/ink/agent.conf | grep '^<' | grep -vE '^< (coordinator|node_id|listen) =' ||
	fail "enrol: agent.conf lines changed that are not coordinator, node_id or listen"
cmp -s "$T/agent.conf.before" /etc/ink/agent.conf.ink-enrol.bak || fail "enrol: no backup of agent.conf"
# doctor ran, its certificates check passed (others may warn: the clock here)
grep -qE "^PASS +certificates .*\(CN $NODE, node\) is signed by tls_ca, matches tls_key" "$T/enrol.log" ||
	{ cat "$T/enrol.log" >&2; fail "enrol: doctor's certificates check did not pass"; }
grep -qE '^[0-9]+ passed, [0-9]+ warnings?, 0 failed$' "$T/enrol.log" || fail "enrol: doctor's summary"
if systemd_running; then
	systemctl is-active --quiet ink-agent || fail "enrol: ink-agent is not active"
else
	grep -q 'systemd is not running' "$T/enrol.log" || fail "enrol: no word on starting the agent without systemd"
	for p in $(pgrep -x ink-agent || true); do
		[ "$(readlink "/proc/$p/exe")" != /usr/bin/ink-agent ] || fail "enrol started ink-agent without systemd"
	done
fi
grep -q "ink-coordinator nodes" "$T/enrol.log" || fail "enrol: no last word on ink-coordinator nodes"
# again: nothing changes (a second later, so that any write would show in
# an mtime)
before=$(state)
sleep 1
run_enrol "$T/enrol.sh" || { cat "$T/enrol.log" >&2; fail "enrol.sh, second run"; }
[ "$(state)" = "$before" ] || fail "enrol.sh, second run: changed $(state)"
[ "$(grep -c ': unchanged' "$T/enrol.log")" = 4 ] || { cat "$T/enrol.log" >&2; fail "enrol.sh, second run: not all unchanged"; }
# another key for the same node: refused without INK_ENROL_FORCE=1, then forced
coord pki enrol "$NODE" --coordinator 127.0.0.1:7440 --out "$T/enrol2.sh" >"$T/pki.log" 2>&1 ||
	{ cat "$T/pki.log" >&2; fail "pki enrol (2)"; }
! run_enrol "$T/enrol2.sh" || fail "enrol: a different node.key replaced without INK_ENROL_FORCE=1"
grep -q 'INK_ENROL_FORCE=1' "$T/enrol.log" || fail "enrol: refusal does not say how to force"
[ "$(state)" = "$before" ] || fail "enrol: the refused run changed $(state)"
run_enrol "$T/enrol2.sh" INK_ENROL_FORCE=1 || { cat "$T/enrol.log" >&2; fail "enrol.sh, INK_ENROL_FORCE=1"; }
pem_of ink_node_key "$T/enrol2.sh" | cmp -s - /etc/ink/pki/node.key || fail "enrol: forced node.key not replaced"
expect_mode /etc/ink/pki/node.key "600 root:root"
say "enrol: certificates (modes, contents), agent.conf (other lines kept), doctor; idempotent; another key refused, then forced"

# The unit's ExecStart line itself, as systemd would run it (there is no
# systemd here to do it): the enrolled agent comes up with the packaged
# configuration, policies and helpers, serves /metrics, and stops cleanly
# on SIGTERM (the coordinator it names does not run: it keeps retrying).
# Sandboxes of another Ink on this machine (a quick start) are not its own:
# then it gets a runsc root, netns directory and BPF pins of the test's.
run_cmd=$cmd
if [ -n "$(ls -A /run/ink/runsc 2>/dev/null)" ]; then
	run_cmd="${cmd% run} --runsc-root=$T/runsc --netns-dir=$T/netns --bpf-pin-dir=/sys/fs/bpf/ink-pkgtest-$$ run"
	say "another Ink has sandboxes in /run/ink/runsc: the agent runs with the test's own runsc root"
fi
# shellcheck disable=SC2086
$run_cmd >"$T/agent-run.log" 2>&1 &
AGENT_RUN=$!
for _ in $(seq 1 100); do
	grep -q 'msg="agent started"' "$T/agent-run.log" && break
	kill -0 "$AGENT_RUN" 2>/dev/null || { cat "$T/agent-run.log" >&2; fail "$run_cmd exited"; }
	sleep 0.1
done
grep -q 'msg="agent started"' "$T/agent-run.log" || { cat "$T/agent-run.log" >&2; fail "$run_cmd: not started in 10 s"; }
curl -sf --max-time 5 http://127.0.0.1:7443/metrics | grep -q '^ink_agent_workloads 0$' ||
	{ kill "$AGENT_RUN"; fail "the packaged agent's /metrics"; }
kill -TERM "$AGENT_RUN"
wait "$AGENT_RUN" || { cat "$T/agent-run.log" >&2; fail "$run_cmd: exit status $? on SIGTERM"; }
rm -rf "/sys/fs/bpf/ink-pkgtest-$$"
say "ExecStart line run directly: agent started with the packaged config, /metrics answered, SIGTERM -> exit 0"

agent_purged() {
	for f in /usr/bin/ink-agent /usr/libexec/ink /etc/ink/agent.conf /etc/ink/policies /var/lib/ink/agent \
		/etc/ink/agent.conf.ink-enrol.bak \
		/etc/systemd/system/multi-user.target.wants/ink-agent.service /etc/systemd/system/ink-agent.service; do
		[ ! -e "$f" ] && [ ! -L "$f" ] || fail "left after purge: $f"
	done
	case " $users_before " in
	*" ink-dns "*) getent passwd ink-dns >/dev/null || fail "purge removed an ink-dns user it did not make" ;;
	*) ! getent passwd ink-dns >/dev/null || fail "user ink-dns left after purge" ;;
	esac
	# the administrator's certificates stay
	for f in ca.crt node.crt node.key; do
		[ -f "/etc/ink/pki/$f" ] || fail "purge removed /etc/ink/pki/$f"
	done
}
apt-get purge -y -q ink-agent >"$T/apt.log" 2>&1 || { cat "$T/apt.log" >&2; fail "apt-get purge ink-agent"; }
agent_purged
say "ink-agent: installed (files, modes, user, unit), reinstalled keeping a changed conffile, purged"

# One command on a machine without the package: INK_AGENT_DEB installs it.
run_enrol "$T/enrol2.sh" INK_AGENT_DEB="$T/$(basename "$AGENT_DEB")" ||
	{ cat "$T/enrol.log" >&2; fail "INK_AGENT_DEB=... enrol.sh"; }
dpkg-query -W -f='${Status}' ink-agent 2>/dev/null | grep -q 'install ok installed' ||
	fail "INK_AGENT_DEB=... enrol.sh: ink-agent not installed"
grep -qxF "node_id = $NODE" /etc/ink/agent.conf || fail "INK_AGENT_DEB=... enrol.sh: node_id not set"
grep -qE '^PASS +certificates ' "$T/enrol.log" || fail "INK_AGENT_DEB=... enrol.sh: certificates check"
apt-get purge -y -q ink-agent >"$T/apt.log" 2>&1 || { cat "$T/apt.log" >&2; fail "apt-get purge ink-agent"; }
agent_purged
# Left by purge on purpose: the administrator's certificates.
rm -rf /etc/ink/pki
rmdir /etc/ink || fail "left after purge and removing the certificates: $(ls -A /etc/ink)"
say "enrol with INK_AGENT_DEB: installed and enrolled in one command, purged"

# ink-coordinator
apt_install "$T/$(basename "$COORD_DEB")"
expect_mode /usr/bin/ink-coordinator "755 root:root"
expect_mode /etc/ink/coordinator.conf "644 root:root"
expect_mode /var/lib/ink/coordinator "700 ink-coordinator:ink-coordinator"
expect_mode /etc/ink/pki "750 root:ink-coordinator"
expect_system_user ink-coordinator
systemd-analyze verify /lib/systemd/system/ink-coordinator.service >"$T/verify.log" 2>&1 ||
	{ cat "$T/verify.log" >&2; fail "systemd-analyze verify ink-coordinator.service"; }
[ -L /etc/systemd/system/multi-user.target.wants/ink-coordinator.service ] ||
	fail "ink-coordinator.service not enabled"
# The unit's command line as its user, on a temporary database and free
# loopback ports, without TLS (no PKI here): MCP answers 401 without a key.
cmd=$(exec_start /lib/systemd/system/ink-coordinator.service)
case $cmd in *' serve') ;; *) fail "ink-coordinator.service: ExecStart \"$cmd\" does not end in serve" ;; esac
base=${cmd% serve}
DB_DIR=$(mktemp -d /tmp/ink-pkgtest-db.XXXXXX)
chown ink-coordinator:ink-coordinator "$DB_DIR"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
grpc_port=$(free_port)
mcp_port=$(free_port)
# User=, Group= and UMask= as the unit has them (setpriv: no PAM session).
unit_umask=$(sed -n 's/^UMask=//p' /lib/systemd/system/ink-coordinator.service)
# shellcheck disable=SC2086
(umask "${unit_umask:-0022}" && exec setpriv --reuid=ink-coordinator --regid=ink-coordinator \
	--init-groups --no-new-privs -- $base --database="$DB_DIR/ink.db" --insecure-dev \
	--listen="127.0.0.1:$grpc_port" --mcp-listen="127.0.0.1:$mcp_port" --log-format=logfmt serve \
	>"$T/coordinator.log" 2>&1) &
COORD_PID=$!
code=""
i=0
while [ $i -lt 100 ]; do
	code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$mcp_port/mcp" || true)
	[ "$code" != 401 ] || break
	kill -0 "$COORD_PID" 2>/dev/null || break
	sleep 0.1
	i=$((i + 1))
done
[ "$code" = 401 ] || { cat "$T/coordinator.log" >&2; fail "coordinator as ink-coordinator: MCP answered \"$code\", want 401"; }
expect_mode "$DB_DIR/ink.db" "600 ink-coordinator:ink-coordinator"
kill "$COORD_PID"
wait "$COORD_PID" 2>/dev/null || true
COORD_PID=
echo "# changed by package_test" >>/etc/ink/coordinator.conf
dpkg -i "$T/$(basename "$COORD_DEB")" >"$T/dpkg.log" 2>&1 || { cat "$T/dpkg.log" >&2; fail "reinstall"; }
tail -n 1 /etc/ink/coordinator.conf | grep -q 'changed by package_test' ||
	fail "reinstall replaced a changed coordinator.conf"
apt-get purge -y -q ink-coordinator >"$T/apt.log" 2>&1 ||
	{ cat "$T/apt.log" >&2; fail "apt-get purge ink-coordinator"; }
for f in /usr/bin/ink-coordinator /etc/ink /var/lib/ink \
	/etc/systemd/system/multi-user.target.wants/ink-coordinator.service; do
	[ ! -e "$f" ] && [ ! -L "$f" ] || fail "left after purge: $f"
done
case " $users_before " in
*" ink-coordinator "*) ;;
*) ! getent passwd ink-coordinator >/dev/null || fail "user ink-coordinator left after purge" ;;
esac
say "ink-coordinator: installed, ran as its user (MCP 401), reinstalled keeping a changed conffile, purged"

# --- the units' exposure (informational) -------------------------------------
for u in ink-coordinator ink-agent; do
	score=$(systemd-analyze security --offline=true "$(dirname "$0")/../../packaging/systemd/$u.service" 2>/dev/null |
		sed -n 's/.*Overall exposure level for [^:]*: *//p')
	say "systemd-analyze security $u.service: ${score:-n/a}"
done
say "PASS"
