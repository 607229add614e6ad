#!/bin/bash
# The config.json ink-agent generates, run by the real runsc (gVisor):
# read-only root with writable /tmp, only CAP_NET_BIND_SERVICE, no new
# privileges, the agent's resolv.conf and hosts mounted read-only, env and
# secret env delivered, pids limit enforced.
. "$(dirname "$0")/lib.sh"

[ "$(id -u)" = 0 ] || fail "needs root (runsc creates sandboxes and cgroups)"
command -v runsc >/dev/null || fail "runsc not installed (apt-get install runsc)"
[ -x /bin/busybox ] || fail "busybox-static not installed"

GEN="$BIN/tests/integration/bundle_gen"
ROOTFS="$T/bundle/rootfs"
mkdir -p "$ROOTFS/bin" "$ROOTFS/etc"
cp /bin/busybox "$ROOTFS/bin/busybox"
STATE="$T/runsc"
IDS=()
# Sandbox ids carry this run's pid: parallel runs never collide.
P="ink-bt-$$"
cleanup_sandboxes() {
	for id in "${IDS[@]}"; do
		runsc --root "$STATE" kill "$id" KILL >/dev/null 2>&1 || true
		runsc --root "$STATE" delete -force "$id" >/dev/null 2>&1 || true
		# runsc leaves the cgroups of a sandbox that failed to start.
		for cg in /sys/fs/cgroup/*/"$id" /sys/fs/cgroup/"$id"; do
			[ -d "$cg" ] && rmdir "$cg" 2>/dev/null || true
		done
	done
}
# cleanup reports and exits with the script's status: keep it past cleanup_sandboxes.
trap 'rc=$?; cleanup_sandboxes; (exit $rc); cleanup' EXIT

# run_sandbox ID PIDS SCRIPT [ENV...]: prints the workload's output
run_sandbox() {
	local id=$P-$1 pids=$2 script=$3
	shift 3
	"$GEN" "$ROOTFS" "$pids" "$script" "$@" >"$T/bundle/config.json"
	IDS+=("$id")
	# The caller checks the output; a failed run says so there (set -e
	# would otherwise end the script at the assignment, without a word).
	timeout 120 runsc --root "$STATE" --network=none run --bundle "$T/bundle" "$id" 2>&1 ||
		echo "(runsc run $id: exit status $?)"
}

out=$(run_sandbox t-hello 64 'echo hello from gvisor; dmesg | head -n 1')
grep -q 'hello from gvisor' <<<"$out" || fail "workload output missing: $out"
grep -q 'Starting gVisor' <<<"$out" || fail "not running under gVisor: $out"
ok "runsc runs the generated bundle"

out=$(run_sandbox t-fs 64 'touch /pwned 2>&1; echo data >/tmp/f && cat /tmp/f; echo x >/run/r && echo run-ok')
grep -q 'Read-only file system' <<<"$out" || fail "root filesystem is writable: $out"
grep -q '^data$' <<<"$out" || fail "/tmp not writable: $out"
grep -q 'run-ok' <<<"$out" || fail "/run not writable: $out"
[ ! -e "$ROOTFS/pwned" ] || fail "write reached the host rootfs"
ok "read-only root, writable tmpfs /tmp and /run"

out=$(run_sandbox t-caps 64 'grep -E "^Cap(Eff|Bnd|Inh|Amb)|^NoNewPrivs" /proc/self/status')
grep -q 'CapEff:.*0000000000000400' <<<"$out" || fail "effective caps: $out"
grep -q 'CapBnd:.*0000000000000400' <<<"$out" || fail "bounding caps: $out"
grep -q 'CapInh:.*0000000000000000' <<<"$out" || fail "inheritable caps: $out"
ok "only CAP_NET_BIND_SERVICE"

# The agent's resolv.conf and hosts are file bind mounts: gVisor must show
# them, read-only, also in an image without /etc (runsc makes the mount
# point inside the rootfs, as for /tmp).
printf 'nameserver 10.9.9.1\noptions ndots:1 timeout:2 attempts:2\n' >"$T/resolv.conf"
printf '127.0.0.1\tlocalhost\n10.9.9.7\tbundle-test\n' >"$T/hosts"
for etc in with-etc without-etc; do
	[ "$etc" = without-etc ] && mv "$ROOTFS/etc" "$T/etc.saved"
	out=$(INK_BUNDLE_RESOLV_CONF="$T/resolv.conf" INK_BUNDLE_HOSTS="$T/hosts" \
		run_sandbox "t-dns-$etc" 64 'cat /etc/resolv.conf /etc/hosts;
		echo x >/etc/resolv.conf || echo resolv-ro; echo x >>/etc/hosts || echo hosts-ro')
	grep -q '^nameserver 10.9.9.1$' <<<"$out" || fail "$etc: resolv.conf not mounted: $out"
	grep -q '^options ndots:1 timeout:2 attempts:2$' <<<"$out" || fail "$etc: resolv.conf: $out"
	grep -q '^10.9.9.7.bundle-test$' <<<"$out" || fail "$etc: hosts not mounted: $out"
	grep -q resolv-ro <<<"$out" || fail "$etc: resolv.conf is writable: $out"
	grep -q hosts-ro <<<"$out" || fail "$etc: hosts is writable: $out"
	grep -q '^nameserver 10.9.9.1$' "$T/resolv.conf" || fail "the host file changed"
	if [ "$etc" = without-etc ]; then
		rm -rf "$ROOTFS/etc"
		mv "$T/etc.saved" "$ROOTFS/etc"
	fi
done
ok "resolv.conf and hosts from the agent: file bind mounts, read-only (also without /etc in the image)"

out=$(run_sandbox t-env 64 'echo "port=$PORT secret=$API_TOKEN"' API_TOKEN=s3cr3t)
grep -q 'port=8080 secret=s3cr3t' <<<"$out" || fail "env not delivered: $out"
ok "env and secret env visible to the app"

# A workload well inside its limit is not disturbed by it.
out=$(run_sandbox t-pids-ok 64 '(for i in $(seq 40); do sleep 1 & done; wait) && echo forty-ok')
grep -q 'forty-ok' <<<"$out" || fail "40 processes under a limit of 64 failed: $out"

# A fork bomb. The sandbox's pids cgroup (host side) bounds it: inside,
# fork fails with EAGAIN ("can't fork") and the app lives on; should the
# limit hit gVisor's own threads first, the sandbox ends. Either way the
# host is untouched and the cgroup never holds more than pids.max.
"$GEN" "$ROOTFS" 16 'b() { b | b & }; b; sleep 60' >"$T/bundle/config.json"
IDS+=("$P-bomb")
runsc --root "$STATE" --network=none run --detach --bundle "$T/bundle" "$P-bomb" >"$T/bomb.log" 2>&1 ||
	fail "could not start the fork-bomb sandbox"
CG=/sys/fs/cgroup/pids/$P-bomb
[ -d "$CG" ] || CG=/sys/fs/cgroup/$P-bomb
pids_max=$(cat "$CG/pids.max")
[ "$pids_max" = "$((12 * 16 + 256))" ] || fail "pids.max is '$pids_max', expected $((12 * 16 + 256))"
bomb_contained() {
	grep -q "can't fork" "$T/bomb.log" ||
		! runsc --root "$STATE" state "$P-bomb" 2>/dev/null | has '"status": "running"'
}
wait_until 60 "fork bomb contained" bomb_contained
if [ -f "$CG/pids.current" ]; then
	[ "$(cat "$CG/pids.current")" -le "$pids_max" ] || fail "cgroup above pids.max"
fi
out=$(run_sandbox t-after 64 'echo still-fine')
grep -q still-fine <<<"$out" || fail "host could not start a sandbox after the bomb: $out"
ok "pids limit: pids.max $pids_max bounds a fork bomb; the host is untouched"

finish
