#!/bin/bash
# node-agent/metrics/traffic.c and bpf/traffic.bpf.c against the real
# kernel (root): the tc counters on two workload veths, checked against
# known UDP and TCP transfers in both directions; last activity; a new
# process (an agent restart) keeps the counts through the pinned map and
# takes the filters over; detach removes filters, qdisc and map entry, also
# after the veth is gone; a program without its entry creates none; and
# the degraded paths: a pin directory off bpffs, no BPF privileges, a
# pinned map of another layout, no bpffs mounted yet.
#
# Safety: the script runs in a mount namespace of its own (it re-executes
# itself under unshare), so a bpffs it mounts and the namespace mounts of
# `ip netns` are its own. The "node" and both workloads are network
# namespaces it creates (ink-tt-PID-*); every driver call that attaches or
# detaches runs inside the node namespace (nsenter --net), so nothing is
# ever attached to an interface of the host's namespace. The pinned map
# lives under /sys/fs/bpf/ink-test-PID, never /sys/fs/bpf/ink; the cleanup
# removes namespaces and pins on every exit path.
set -euo pipefail
if [ -z "${INK_TRAFFIC_TEST_NS:-}" ]; then
	[ "$(id -u)" = 0 ] || {
		echo "FAIL: needs root (namespaces, tc, BPF)" >&2
		exit 1
	}
	export INK_TRAFFIC_TEST_NS=1
	exec unshare --mount --propagation private "$0" "$@"
fi
. "$(dirname "$0")/lib.sh"

for tool in nsenter setpriv bpftool tc busybox jq; do
	command -v $tool >/dev/null || fail "$tool not installed"
done

DRV="$BIN/tests/integration/traffic_driver"
TAG="ink-tt-$$"
NODE="$TAG-node" WL="$TAG-wl" WL2="$TAG-wl2"
PIN="/sys/fs/bpf/ink-test-$$"
OTHER_PINS=("$PIN-nocap" "$PIN-other")
IFA=ink-tt-a IFB=ink-tt-b # host sides, in the node namespace
NODE_A=10.251.1.1 WL_A=10.251.1.2 NODE_B=10.251.2.1 WL_B=10.251.2.2

traffic_cleanup() {
	local rc=$? ns
	set +e
	for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
	PIDS=()
	# Deleting the namespaces deletes the veth pairs, their qdiscs and
	# filters, and with those the last references to the programs.
	for ns in "$NODE" "$WL" "$WL2"; do ip netns del "$ns" 2>/dev/null; done
	rm -rf "$PIN" "${OTHER_PINS[@]}"
	(exit $rc)
	cleanup
}
trap traffic_cleanup EXIT

in_node() { nsenter --net="/run/netns/$NODE" "$@"; }
drv() { in_node "$DRV" --pin-dir "$PIN" "$@" 2>>"$T/driver.log"; }
# field KEY LINE: the value of KEY=value in a driver output line
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<" $2"; }
expect() { [ "$2" = "$3" ] || fail "$1: got '$2', want '$3'"; }
counters() {
	local out
	out=$(drv read "$1") || fail "read ifindex $1: $(tail -n 3 "$T/driver.log")"
	echo "$out"
}
# delta KEY BEFORE AFTER
delta() { echo $(($(field "$1" "$3") - $(field "$1" "$2"))); }
udp() { "$DRV" udp "/run/netns/$1" "/run/netns/$2" "$3" 5001 "$4" "$5"; }
tcp() { "$DRV" tcp "/run/netns/$1" "/run/netns/$2" "$3" 5002 "$4"; }

# --- degraded paths: a clear error, no crash ---------------------------
# expect_unavailable WHAT PATTERN COMMAND...: exits 1 (not a signal) with
# the agent's message and the reason.
expect_unavailable() {
	local what=$1 pattern=$2 rc=0
	shift 2
	"$@" >"$T/degraded.out" 2>"$T/degraded.err" || rc=$?
	expect "$what: exit status" "$rc" 1
	has "eBPF traffic counters unavailable: .*$pattern.*; metrics are cgroup-only" \
		"$T/degraded.err" || fail "$what: unclear error: $(cat "$T/degraded.err")"
}
expect_unavailable "pin dir on tmpfs" "$T/pins: $T is not on a BPF file system" \
	"$DRV" --pin-dir "$T/pins" open
[ ! -e "$T/pins" ] || fail "a pin directory was made off bpffs"
expect_unavailable "relative pin dir" "not an absolute path" "$DRV" --pin-dir ink open
ok "a pin directory off bpffs is refused with a clear error, nothing made there"

# The first open here finds /sys/fs/bpf empty (this machine) or mounted
# (systemd): either way it is a BPF file system afterwards. Then a copy of
# /sys/fs/bpf without one (tmpfs over it, in a nested mount namespace).
"$DRV" --pin-dir "$PIN" open >/dev/null 2>>"$T/driver.log" || fail "first open"
expect "/sys/fs/bpf" "$(stat -f -c %T /sys/fs/bpf)" bpf_fs
# shellcheck disable=SC2016 # expanded by the inner sh
out=$(unshare --mount sh -c 'mount -t tmpfs tmpfs /sys/fs/bpf &&
	"$1" --pin-dir "$2" open && stat -f -c %T /sys/fs/bpf' sh "$DRV" "/sys/fs/bpf/ink-test-$$-m" \
	2>>"$T/driver.log") || fail "open with nothing mounted on /sys/fs/bpf"
has "^bpf_fs$" <<<"$out" || fail "no bpffs mounted on /sys/fs/bpf: $out"
ok "a BPF file system is mounted on /sys/fs/bpf when none is there"

# Root without CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN: the kernel refuses
# the programs, as one without BPF for tc would.
expect_unavailable "no BPF privileges" "loading the BPF programs.*Operation not permitted" \
	setpriv --bounding-set=-bpf,-sys_admin,-perfmon "$DRV" --pin-dir "${OTHER_PINS[0]}" open
# A map of another layout pinned where ours goes (an older or newer
# agent's): not reused, not replaced.
mkdir -p "${OTHER_PINS[1]}"
bpftool map create "${OTHER_PINS[1]}/traffic_v1" type hash key 4 value 8 entries 4 name other
expect_unavailable "pinned map of another layout" "couldn't reuse pinned map.*parameter mismatch" \
	"$DRV" --pin-dir "${OTHER_PINS[1]}" open
bpftool map show pinned "${OTHER_PINS[1]}/traffic_v1" | has "name other" ||
	fail "the other pinned map was touched"
ok "without BPF privileges, or with a pinned map of another layout, open fails clearly"

# --- topology ----------------------------------------------------------
#   workload A  eth0 10.251.1.2/30 ── ink-tt-a 10.251.1.1/30 ┐ node
#   workload B  eth0 10.251.2.2/30 ── ink-tt-b 10.251.2.1/30 ┘
# IPv6 off and static neighbours on both ends: no router solicitations,
# no DAD or MLD, no ARP, so nothing crosses a veth but what the test
# sends, and the expected counts can be exact.
for ns in "$NODE" "$WL" "$WL2"; do
	ip netns add "$ns"
	nsenter --net="/run/netns/$ns" sh -c 'echo 1 >/proc/sys/net/ipv6/conf/all/disable_ipv6 &&
		echo 1 >/proc/sys/net/ipv6/conf/default/disable_ipv6'
	ip -n "$ns" link set lo up
done
mac() { ip -n "$1" -o link show dev "$2" | sed -n 's/.*link\/ether \([0-9a-f:]*\).*/\1/p'; }
pair() {
	local ifname=$1 wl=$2 node_ip=$3 wl_ip=$4
	ip -n "$NODE" link add "$ifname" type veth peer name eth0 netns "$wl"
	ip -n "$NODE" addr add "$node_ip/30" dev "$ifname"
	ip -n "$wl" addr add "$wl_ip/30" dev eth0
	ip -n "$NODE" neigh replace "$wl_ip" lladdr "$(mac "$wl" eth0)" dev "$ifname" nud permanent
	ip -n "$wl" neigh replace "$node_ip" lladdr "$(mac "$NODE" "$ifname")" dev eth0 nud permanent
	ip -n "$NODE" link set "$ifname" up
	ip -n "$wl" link set eth0 up
}
pair $IFA "$WL" $NODE_A $WL_A
pair $IFB "$WL2" $NODE_B $WL_B
in_node busybox ping -c 1 -W 2 $WL_A >/dev/null || fail "the node cannot reach workload A"
in_node busybox ping -c 1 -W 2 $WL_B >/dev/null || fail "the node cannot reach workload B"

# --- attach ------------------------------------------------------------
out=$(drv attach $IFA) || fail "attach $IFA: $(tail -n 3 "$T/driver.log")"
IDXA=$(field ifindex "$out")
expect "attach ifindex" "$IDXA" "$(ip -n "$NODE" -o link show dev $IFA | cut -d: -f1)"
expect "map reused (pinned by the first open)" "$(field reused "$out")" 1
IDXB=$(field ifindex "$(drv attach $IFB)") || fail "attach $IFB"
for dir in ingress egress; do
	f=$(in_node tc filter show dev $IFA $dir)
	has "pref 1 bpf .*handle 0x494e4b ink_tc_$dir:\[[0-9]*\] direct-action" <<<"$f" ||
		fail "no Ink $dir filter on $IFA: $f"
done
in_node tc qdisc show dev $IFA | has "qdisc clsact" || fail "no clsact qdisc on $IFA"
c=$(counters "$IDXA")
for k in tx_bytes tx_packets rx_bytes rx_packets last_tx_ns last_rx_ns; do
	expect "$k right after attach" "$(field $k "$c")" 0
done
ok "attach: clsact qdisc, Ink's filters on ingress and egress, a zero entry per interface"

# --- counts: UDP, exact ------------------------------------------------
# 1000 datagrams of 1000 bytes each way. Every frame is 14 (Ethernet) +
# 20 (IPv4) + 8 (UDP) + 1000 = 1042 bytes, one skb each (no UDP GSO for
# plain sends), and nothing else crosses the veth (see the topology), so
# the tolerance is zero. One exception, exact too: a frame the workload
# sends can be dropped before it reaches the host side (the receiving
# CPU's backlog full, on a loaded machine); the workload's eth0 counts
# those as tx drops. What the node sends is counted at egress before the
# veth could drop it. Sent from one process after the attaching one
# exited: the filters count with no agent running.
wl_tx_dropped() { ip -n "$WL" -j -s link show dev eth0 | jq '.[0].stats64.tx.dropped'; }
c0=$(counters "$IDXA")
d0=$(wl_tx_dropped)
out=$(udp "$WL" "$NODE" $NODE_A 1000 1000) || fail "udp A -> node"
expect "udp A -> node sent" "$(field sent "$out")" 1000
c1=$(counters "$IDXA")
dropped=$(($(wl_tx_dropped) - d0))
expect "A tx_packets ($dropped dropped by eth0)" "$(delta tx_packets "$c0" "$c1")" $((1000 - dropped))
expect "A tx_bytes" "$(delta tx_bytes "$c0" "$c1")" $((1042 * (1000 - dropped)))
expect "A rx_packets (nothing came back)" "$(delta rx_packets "$c0" "$c1")" 0
out=$(udp "$NODE" "$WL" $WL_A 1000 1000) || fail "udp node -> A"
c2=$(counters "$IDXA")
expect "A rx_packets" "$(delta rx_packets "$c1" "$c2")" 1000
expect "A rx_bytes" "$(delta rx_bytes "$c1" "$c2")" 1042000
expect "A tx_packets (nothing went back)" "$(delta tx_packets "$c1" "$c2")" 0
[ "$(field received "$out")" -gt 0 ] || fail "workload A received nothing"
cb=$(counters "$IDXB")
expect "B untouched: tx" "$(field tx_packets "$cb")" 0
expect "B untouched: rx" "$(field rx_packets "$cb")" 0
ok "UDP: 1000 x 1042-byte frames each way counted exactly, on A's entry only"

# --- counts: TCP, within header bounds ---------------------------------
# 4 MiB each way on one connection. skb->len of every frame is payload +
# 14 (Ethernet) + 20 (IPv4) + 20..60 (TCP with options) bytes, i.e. 54..94
# bytes of headers per skb, whether the skb is one segment or a GSO/GRO
# super-packet of many. The payload on the wire is the P bytes sent plus
# R that TCP sent again (rare on a veth, but a loaded machine can drop;
# the driver reads R from the sender's TCP_INFO). So
#   bytes - 94 * packets <= P + R <= bytes - 54 * packets
# in the direction of the data, and the other direction (SYN-ACK, ACKs,
# FIN) carries headers only: 54 * packets <= bytes <= 94 * packets.
P=4194304
check_tcp() {
	local what=$1 r=$2 dbytes=$3 dpkts=$4 abytes=$5 apkts=$6
	((dbytes - 94 * dpkts <= P + r && P + r <= dbytes - 54 * dpkts)) ||
		fail "$what: data direction $dbytes bytes in $dpkts packets does not carry $P + $r bytes"
	((dpkts >= 3 && apkts >= 2)) || fail "$what: $dpkts data and $apkts ack packets"
	((54 * apkts <= abytes && abytes <= 94 * apkts)) ||
		fail "$what: ack direction $abytes bytes in $apkts packets is more than headers"
	echo "    $what: data $dbytes bytes in $dpkts skbs ($r bytes sent again), acks $abytes bytes in $apkts skbs"
}
c0=$(counters "$IDXA")
out=$(tcp "$WL" "$NODE" $NODE_A $P) || fail "tcp A -> node"
expect "tcp A -> node received" "$(field received "$out")" $P
c1=$(counters "$IDXA")
check_tcp "A -> node" "$(field retrans_bytes "$out")" \
	"$(delta tx_bytes "$c0" "$c1")" "$(delta tx_packets "$c0" "$c1")" \
	"$(delta rx_bytes "$c0" "$c1")" "$(delta rx_packets "$c0" "$c1")"
out=$(tcp "$NODE" "$WL" $WL_A $P) || fail "tcp node -> A"
expect "tcp node -> A received" "$(field received "$out")" $P
c2=$(counters "$IDXA")
check_tcp "node -> A" "$(field retrans_bytes "$out")" \
	"$(delta rx_bytes "$c1" "$c2")" "$(delta rx_packets "$c1" "$c2")" \
	"$(delta tx_bytes "$c1" "$c2")" "$(delta tx_packets "$c1" "$c2")"
ok "TCP: 4 MiB each way, bytes = payload + 54..94 bytes of headers per skb"

# --- last activity -----------------------------------------------------
c0=$(counters "$IDXA")
sleep 1
c1=$(counters "$IDXA")
for k in last_tx_ns last_rx_ns tx_bytes rx_bytes; do
	expect "$k while idle" "$(field $k "$c1")" "$(field $k "$c0")"
done
t0=$(field now_ns "$("$DRV" now)")
udp "$WL" "$NODE" $NODE_A 1 100 >/dev/null || fail "one datagram A -> node"
c2=$(counters "$IDXA")
last=$(field last_tx_ns "$c2")
((last > t0 && last <= $(field now_ns "$c2"))) ||
	fail "last_tx_ns $last not between $t0 and $(field now_ns "$c2")"
expect "last_rx_ns after a send" "$(field last_rx_ns "$c2")" "$(field last_rx_ns "$c1")"
t1=$(field now_ns "$("$DRV" now)")
udp "$NODE" "$WL" $WL_A 1 100 >/dev/null || fail "one datagram node -> A"
c3=$(counters "$IDXA")
((t1 < $(field last_rx_ns "$c3"))) || fail "last_rx_ns did not move: $c3"
expect "last_tx_ns after a receive" "$(field last_tx_ns "$c3")" "$last"
ok "last activity (CLOCK_MONOTONIC) moves with traffic, per direction, and not without"

# --- agent restart -----------------------------------------------------
# Every driver call is a new process; here, explicitly: a new one opens
# the pinned map, attaches again (its own programs replace the filters'
# ones) and the counts go on.
prog_id() { in_node tc filter show dev $IFA ingress | sed -n 's/.* id \([0-9]*\) .*/\1/p'; }
id0=$(prog_id)
before=$(counters "$IDXA")
out=$(drv attach $IFA) || fail "attach again"
expect "re-attach: reused" "$(field reused "$out")" 1
[ "$(prog_id)" != "$id0" ] || fail "re-attach kept the old program $id0"
[ "$(in_node tc filter show dev $IFA ingress | grep -c 'handle 0x494e4b')" = 1 ] ||
	fail "re-attach left two Ink filters: $(in_node tc filter show dev $IFA ingress)"
after=$(counters "$IDXA")
expect "tx_bytes across re-attach" "$(field tx_bytes "$after")" "$(field tx_bytes "$before")"
udp "$WL" "$NODE" $NODE_A 10 1000 >/dev/null || fail "udp after re-attach"
expect "counted after re-attach" "$(delta tx_packets "$after" "$(counters "$IDXA")")" 10
ok "a new process reuses the pinned map, replaces the programs, and the counts go on"

# --- entries only from the agent ---------------------------------------
# Without its entry (deleted behind the agent's back), A's filters count
# nothing and create nothing.
key=$(printf '%d %d %d %d' $((IDXA & 255)) $((IDXA >> 8 & 255)) $((IDXA >> 16 & 255)) \
	$((IDXA >> 24 & 255)))
# shellcheck disable=SC2086
bpftool map delete pinned "$PIN/traffic_v1" key $key
udp "$WL" "$NODE" $NODE_A 10 1000 >/dev/null || fail "udp without an entry"
drv list | has "^ifindex=$IDXA " && fail "traffic created an entry for $IFA"
out=$(drv attach $IFA) || fail "attach after the entry was deleted"
expect "new entry" "$(field tx_packets "$(counters "$IDXA")")" 0
ok "a program without its map entry creates none: the agent's attach does"

# --- detach ------------------------------------------------------------
drv detach $IFA "$IDXA" >/dev/null || fail "detach $IFA"
for dir in ingress egress; do
	f=$(in_node tc filter show dev $IFA $dir)
	[ -z "$f" ] || fail "filters left on $IFA $dir: $f"
done
in_node tc qdisc show dev $IFA | has clsact && fail "clsact qdisc left on $IFA"
set +e
drv read "$IDXA" >/dev/null
rc=$?
set -e
expect "read after detach exits" "$rc" 3
udp "$WL" "$NODE" $NODE_A 10 1000 >/dev/null || fail "udp after detach"
drv list | has "^ifindex=$IDXA " && fail "traffic after detach created an entry"
drv detach $IFA "$IDXA" >/dev/null || fail "second detach"
ok "detach removes filters, qdisc and map entry; traffic after it adds nothing; repeatable"

# The workload's veth is gone before detach (deleted with its namespace).
ip netns del "$WL2"
wait_until 10 "$IFB gone with its peer" sh -c "! nsenter --net=/run/netns/$NODE ip link show $IFB"
drv detach $IFB "$IDXB" >/dev/null || fail "detach after the veth is gone"
expect "entries left" "$(drv list | wc -l)" 0
ok "detach after the veth is gone removes the entry; no entries left"

rm -rf "$PIN"
[ ! -e "$PIN" ] || fail "$PIN left"
finish
