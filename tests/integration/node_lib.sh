# A "node" for tests and benches that run the real agent: a network
# namespace of its own (no uplink: nothing a workload sends can leave the
# machine), its namespace mounts and runsc state under /run/<tag>-PID, and
# a cleanup that removes sandboxes, cgroups, mounts, the eBPF pins and the
# namespace even when the script fails. Source after lib.sh:
#
#   . node_lib.sh
#   node_init ink-e2e        # NODE, RUNDIR, NSDIR, RUNSC_ROOT, BPF_PIN, IN, in_node
#   P=e2e$$                  # prefix of the workload ids (their cgroups)
#   trap node_cleanup EXIT
#
# Daemons start with "${IN[@]}" CMD & directly, not through in_node: $!
# must be the daemon itself (nsenter execs it), or kill -9 would miss it.
# NODE_KEEP_LOGS=DIR keeps the logs of a failed run.

node_init() {
	NODE="$1-$$"
	RUNDIR="/run/$1-$$"
	NSDIR="$RUNDIR/netns"
	RUNSC_ROOT="$RUNDIR/runsc"
	# The eBPF counters' map of this node's agent (--bpf-pin-dir): pins
	# are not per network namespace, and interface indexes are.
	BPF_PIN="/sys/fs/bpf/$NODE"
	IN=(nsenter --net="/run/netns/$NODE")
	ip netns add "$NODE"
	ip -n "$NODE" link set lo up
}

in_node() { "${IN[@]}" "$@"; }

# node_policies: the source tree's egress policies copied to $T/policies,
# owned by root and not writable by others (the agent refuses policy files
# anyone else could change: a checkout may belong to a user); prints the
# directory, for --policy-dir.
node_policies() {
	local src
	src=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/policies
	mkdir -p "$T/policies"
	install -m 0644 "$src"/*.policy "$T/policies/"
	chmod 0755 "$T/policies"
	echo "$T/policies"
}

# Unmounts and removes every namespace mount in DIR, then DIR's own mount.
netns_mounts_cleanup() {
	local dir=$1 f
	[ -d "$dir" ] || return 0
	for f in "$dir"/*; do
		[ -e "$f" ] || continue
		while umount -l "$f" 2>/dev/null; do :; done
		rm -f "$f"
	done
	# Racing first setups may each have bind-mounted the directory.
	while umount -l "$dir" 2>/dev/null; do :; done
}

node_cleanup() {
	local rc=$? p id cg
	set +e
	if [ $rc -ne 0 ] && [ -n "${NODE_KEEP_LOGS:-}" ]; then
		mkdir -p "$NODE_KEEP_LOGS" && cp "$T"/*.log "$NODE_KEEP_LOGS"/
	fi
	if [ $rc -ne 0 ] && [ -d "$RUNSC_ROOT" ]; then
		# runsc's own logs are under RUNDIR, removed below: its errors, and
		# the warnings of the sandboxes' processes (boot, gofer).
		find "$RUNSC_ROOT" -type f -name '*.runsc.log' -size +0 2>/dev/null | head -n 20 |
			while read -r f; do
				echo "== $f"
				tail -n 5 "$f"
			done
		find "$RUNSC_ROOT" -type f -path '*.logs/*' 2>/dev/null | while read -r f; do
			grep -E '^[WEF][0-9]{4} ' "$f" | grep -v 'RLIMIT_MEMLOCK\|unknown mount option' | tail -n 5 | sed "s|^|$(basename "$f"): |"
		done | tail -n 60
	fi
	# kill and reap: no "Killed" job notices
	for p in "${PIDS[@]}"; do { kill -9 "$p" && wait "$p"; } 2>/dev/null; done
	PIDS=()
	# runsc hangs on a frozen sandbox (list, kill, delete): thaw the ones
	# a failed scale-to-zero step left paused before asking it anything.
	for cg in /sys/fs/cgroup/freezer/ink/"${P:?}"-*; do
		[ -f "$cg/freezer.state" ] && echo THAWED >"$cg/freezer.state"
	done
	if [ -d "$RUNSC_ROOT" ]; then
		for id in $(runsc --root "$RUNSC_ROOT" list -quiet 2>/dev/null); do
			runsc --root "$RUNSC_ROOT" kill --all "$id" KILL >/dev/null 2>&1
			runsc --root "$RUNSC_ROOT" delete --force "$id" >/dev/null 2>&1
		done
	fi
	# Anything still in the node namespace was started by this script.
	if [ -e "/run/netns/$NODE" ]; then
		for p in $(ip netns pids "$NODE" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
	fi
	for cg in /sys/fs/cgroup/*/ink/"${P:?}"-*; do
		[ -d "$cg" ] || continue
		for _ in 1 2 3 4 5 6 7 8 9 10; do
			rmdir "$cg" 2>/dev/null && break
			sleep 0.2
		done
	done
	netns_mounts_cleanup "$NSDIR"
	rm -rf "$RUNDIR"
	[ -z "${BPF_PIN:-}" ] || rm -rf "$BPF_PIN"
	# Deleting the node namespace deletes the host ends of the veth pairs,
	# and with them the workload ends.
	ip netns del "$NODE" 2>/dev/null
	(exit $rc)
	cleanup
}

# node_coordinator NODE_ID: a cluster CA in $T/pki with a certificate for
# NODE_ID, and the coordinator serving on 127.0.0.1:7440 in the node
# namespace (database in $T/db); waits until it has started. Sets PKI, C
# (its command line, for the CLI) and COORD_PID.
node_coordinator() {
	PKI="$T/pki"
	"$COORD" --pki-dir="$PKI" pki init >/dev/null
	"$COORD" --pki-dir="$PKI" pki issue "$1" >/dev/null
	C=("$COORD" --database="$T/db/ink.db" --tls-ca="$PKI/ca.crt"
		--tls-cert="$PKI/ink-coordinator.crt" --tls-key="$PKI/ink-coordinator.key"
		--heartbeat-interval=500ms --node-timeout=3s)
	"${IN[@]}" "${C[@]}" --listen=127.0.0.1:7440 serve >>"$T/coordinator.log" 2>&1 &
	COORD_PID=$!
	PIDS+=("$COORD_PID")
	wait_until 10 "coordinator started" grep -q 'msg="coordinator started"' "$T/coordinator.log"
}

# node_registry NAME ADDR [YAML...]: Debian's docker-registry in the node
# namespace, storage in $T/NAME, extra YAML lines at the top level; waits
# until it answers (200, or 401 when it asks for a login).
node_registry() {
	local name=$1 addr=$2
	shift 2
	{
		cat <<YAML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $T/$name
http:
  addr: $addr
YAML
		printf '%s\n' "$@"
	} >"$T/$name.yml"
	"${IN[@]}" docker-registry serve "$T/$name.yml" >>"$T/$name.log" 2>&1 &
	PIDS+=($!)
	local i
	for i in $(seq 200); do
		case $(in_node curl -s -o /dev/null -w '%{http_code}' "http://$addr/v2/") in
		200 | 401) return 0 ;;
		esac
		sleep 0.1
	done
	fail "registry $name on $addr did not start: $(tail -n 5 "$T/$name.log")"
}
