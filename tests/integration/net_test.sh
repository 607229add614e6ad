#!/bin/bash
# node-agent/net against the real kernel (root): namespaces, routed veth
# pairs, addresses, routes and forwarding for two workloads; traffic from
# the node and between workloads; setup again adopts what exists, repairs
# what was lost; teardown removes everything and is repeatable.
#
# Safety: the "node" is a network namespace this test creates
# (ink-nt-PID-node); every driver call runs inside it (nsenter --net: its
# mount namespace stays the host's, so the namespace mounts outlive the
# call, as they do for the agent). Nothing reaches the host's interfaces,
# routes or sysctls, workloads have no route to the real uplink, and the
# namespace mounts live under /run/ink-test-PID, never /run/ink.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/node_lib.sh"

[ "$(id -u)" = 0 ] || fail "needs root (network namespaces, veth pairs)"
[ -x /bin/busybox ] || fail "busybox not installed"
command -v nsenter >/dev/null || fail "nsenter (util-linux) not installed"

DRV="$BIN/tests/integration/net_driver"
NODE="ink-nt-$$-node"
RUNDIR="/run/ink-test-$$"
NSDIR="$RUNDIR/netns"
STATE="$T/state"
CIDR=10.250.0.0/24
GW=10.250.0.1

net_cleanup() {
	local rc=$?
	set +e
	for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
	netns_mounts_cleanup "$NSDIR"
	rm -rf "$RUNDIR"
	# Deleting the node namespace deletes the host ends of the veth pairs,
	# and with them the workload ends.
	ip netns del "$NODE" 2>/dev/null
	(exit $rc)
	cleanup
}
trap net_cleanup EXIT

IN=(nsenter --net="/run/netns/$NODE")
in_wl() {
	local id=$1
	shift
	nsenter --net="$NSDIR/$id" "$@"
}
drv() {
	in_node "$DRV" --state "$STATE" --netns-dir "$NSDIR" --cidr "$CIDR" "$@" 2>>"$T/driver.log"
}
# field KEY LINE: the value of KEY=value in a driver output line
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<" $2"; }
ink_links() { "$@" ip -o link show | grep -c ': ink' || true; }
expect() { [ "$2" = "$3" ] || fail "$1: got '$2', want '$3'"; }

HOST_INK=$(ink_links)
HOST_FWD=$(cat /proc/sys/net/ipv4/ip_forward)
ip netns add "$NODE"
ip -n "$NODE" link set lo up

# --- setup -------------------------------------------------------------
out=$(drv setup wl-a) || fail "setup wl-a"
IPA=$(field ip "$out") IFA=$(field ifname "$out") IDXA=$(field ifindex "$out")
expect "wl-a address" "$IPA" 10.250.0.2
expect "wl-a adopted" "$(field adopted "$out")" 0
expect "wl-a netns" "$(field netns "$out")" "$NSDIR/wl-a"
[[ $IFA =~ ^ink[0-9a-f]{12}$ ]] || fail "host ifname $IFA"
out=$(drv setup wl-b) || fail "setup wl-b"
IPB=$(field ip "$out") IFB=$(field ifname "$out")
expect "wl-b address" "$IPB" 10.250.0.3
[ "$IFA" != "$IFB" ] || fail "two workloads share $IFA"
ok "setup gives two workloads addresses from the node range"

for w in wl-a:$IPA wl-b:$IPB; do
	id=${w%%:*} ip=${w#*:}
	in_wl "$id" ip -4 -o addr show dev eth0 | has "inet $ip/32" || fail "$id: eth0 lacks $ip/32"
	in_wl "$id" ip route show default | has "default via $GW dev eth0 .*onlink" ||
		fail "$id: no default route via $GW: $(in_wl "$id" ip route)"
	in_wl "$id" ip -o link show lo | has ',UP' || fail "$id: lo is down"
	[ -z "$(in_wl "$id" ip -6 addr show dev eth0)" ] || fail "$id: eth0 has IPv6 addresses"
	[ "$(in_wl "$id" ip -o link show | grep -vc ': lo:')" = 1 ] || fail "$id: more than eth0 and lo"
done
ok "each workload namespace has lo up and eth0 with its /32 and a default route via the gateway"

for w in $IFA:$IPA $IFB:$IPB; do
	ifn=${w%%:*} ip=${w#*:}
	in_node ip -4 -o addr show dev "$ifn" | has "inet $GW/32" || fail "$ifn lacks $GW/32"
	in_node ip route show "$ip/32" | has "dev $ifn" || fail "no route $ip via $ifn"
	in_node ip -o link show "$ifn" | has "alias ink:" || fail "$ifn has no alias"
done
expect "node ip_forward" "$(in_node cat /proc/sys/net/ipv4/ip_forward)" 1
expect "host ip_forward (untouched)" "$(cat /proc/sys/net/ipv4/ip_forward)" "$HOST_FWD"
expect "host ink interfaces (untouched)" "$(ink_links)" "$HOST_INK"
ok "node side: gateway on each veth, a /32 route per workload, forwarding on (node namespace only)"

# --- traffic -----------------------------------------------------------
wait_until 10 "ping wl-a from the node" in_node busybox ping -c 1 -W 1 "$IPA"
in_node busybox ping -c 1 -W 1 "$IPB" >/dev/null || fail "node cannot ping wl-b"
ok "the node reaches both workloads"

in_wl wl-a busybox ping -c 1 -W 1 "$IPB" >/dev/null || fail "wl-a cannot reach wl-b"
in_wl wl-b busybox ping -c 1 -W 1 "$IPA" >/dev/null || fail "wl-b cannot reach wl-a"
ok "workload A reaches workload B through the node (routed)"

mkdir -p "$T/www"
echo "hello from wl-b" >"$T/www/index.html"
# nsenter execs httpd: $! is the listener itself, killed on exit.
nsenter --net="$NSDIR/wl-b" busybox httpd -f -p 8080 -h "$T/www" >"$T/httpd.log" 2>&1 &
HTTPD=$!
PIDS+=("$HTTPD")
wait_until 10 "httpd in wl-b" in_node busybox wget -q -O /dev/null "http://$IPB:8080/index.html"
expect "page from the node" "$(in_node busybox wget -q -O - "http://$IPB:8080/index.html")" \
	"hello from wl-b"
expect "page from wl-a" "$(in_wl wl-a busybox wget -q -O - "http://$IPB:8080/index.html")" \
	"hello from wl-b"
ok "a TCP listener in a workload is reachable at its address from the node and from workload A"

# --- re-adoption -------------------------------------------------------
ETH0A=$(in_wl wl-a ip -o link show eth0 | cut -d: -f1)
out=$(drv setup wl-a) || fail "setup wl-a again"
expect "re-setup address" "$(field ip "$out")" "$IPA"
expect "re-setup ifname" "$(field ifname "$out")" "$IFA"
expect "re-setup host ifindex" "$(field ifindex "$out")" "$IDXA"
expect "re-setup adopted" "$(field adopted "$out")" 1
expect "re-setup eth0 ifindex" "$(in_wl wl-a ip -o link show eth0 | cut -d: -f1)" "$ETH0A"
drv setup wl-b >/dev/null || fail "setup wl-b again"
expect "allocations" "$(grep -c '"workload"' "$STATE/ipam.json")" 2
expect "page after re-setup" "$(in_node busybox wget -q -O - "http://$IPB:8080/index.html")" \
	"hello from wl-b"
out=$(drv show wl-a) || fail "show wl-a"
expect "show address" "$(field ip "$out")" "$IPA"
expect "show mounted" "$(field mounted "$out")" 1
expect "show ifindex" "$(field ifindex "$out")" "$IDXA"
ok "setup again (a new process, as after an agent restart) adopts: same address and interfaces"

# --- repair ------------------------------------------------------------
in_node ip link del "$IFA"
out=$(drv setup wl-a) || fail "setup after the veth was deleted"
expect "repaired veth: address" "$(field ip "$out")" "$IPA"
expect "repaired veth: adopted" "$(field adopted "$out")" 0
wait_until 10 "ping wl-a after the veth was recreated" in_node busybox ping -c 1 -W 1 "$IPA"

in_wl wl-b ip addr flush dev eth0
in_node ip route del "$IPB/32"
out=$(drv setup wl-b) || fail "setup after addresses were lost"
expect "repaired addresses: adopted" "$(field adopted "$out")" 1
expect "page after repair" "$(in_node busybox wget -q -O - "http://$IPB:8080/index.html")" \
	"hello from wl-b"

# The namespace mount of wl-a is lost (nothing runs in it: the namespace
# and its veth pair go away); the file stays behind, as after a crash.
umount "$NSDIR/wl-a"
out=$(drv setup wl-a) || fail "setup after the namespace was lost"
expect "new namespace: address" "$(field ip "$out")" "$IPA"
expect "new namespace: mounted" "$(field mounted "$out")" 1
wait_until 10 "ping wl-a in its new namespace" in_node busybox ping -c 1 -W 1 "$IPA"
in_wl wl-a busybox ping -c 1 -W 1 "$IPB" >/dev/null || fail "wl-a cannot reach wl-b after repair"
ok "setup repairs a deleted veth, lost addresses and routes and a lost namespace (same address)"

# --- teardown ----------------------------------------------------------
drv teardown wl-a >/dev/null || fail "teardown wl-a"
! in_node ip link show "$IFA" >/dev/null 2>&1 || fail "$IFA still exists"
[ ! -e "$NSDIR/wl-a" ] || fail "$NSDIR/wl-a still exists"
grep -q '"wl-a"' "$STATE/ipam.json" && fail "wl-a still has an address"
set +e
drv show wl-a >/dev/null
rc=$?
set -e
expect "show after teardown exits" "$rc" 3
# Every veth carries the gateway address: removing one must not take the
# node's local route to it away from the others.
in_node busybox ping -c 1 -W 1 "$IPB" >/dev/null || fail "wl-b unreachable after wl-a left"
in_wl wl-b busybox ping -c 1 -W 1 "$GW" >/dev/null || fail "wl-b lost its gateway after wl-a left"
ok "teardown removes veth pair, namespace and address; other workloads keep working"

drv teardown wl-a >/dev/null || fail "second teardown of wl-a"
drv teardown never-existed >/dev/null || fail "teardown of an unknown workload"
ok "teardown is repeatable"

out=$(drv setup wl-c) || fail "setup wl-c"
IPC=$(field ip "$out")
[ "$IPC" != "$IPB" ] || fail "wl-c got wl-b's address"
# Half-gone workload: the veth is already deleted, the namespace still there.
in_node ip link del "$(field ifname "$out")"
drv teardown wl-c >/dev/null || fail "teardown of a half-gone workload"
[ ! -e "$NSDIR/wl-c" ] || fail "$NSDIR/wl-c still exists"
ok "teardown after a partial loss cleans up the rest"

set +e
drv setup ../evil >/dev/null
rc=$?
set -e
expect "setup with an invalid id exits" "$rc" 1
grep -q 'invalid workload id' "$T/driver.log" || fail "no clear error for an invalid id"
ok "invalid workload ids are refused"

# Agents (or an agent and a tool) working at once never share an address.
SETUPS=()
for i in 1 2 3 4; do
	drv setup "wl-p$i" >"$T/p$i.out" &
	SETUPS+=($!)
done
for p in "${SETUPS[@]}"; do wait "$p" || fail "a parallel setup failed"; done
for i in 1 2 3 4; do
	field ip "$(cat "$T/p$i.out")"
done | sort | uniq -d | has . && fail "parallel setups handed out one address twice"
for i in 1 2 3 4; do
	ip=$(field ip "$(cat "$T/p$i.out")")
	[ -n "$ip" ] || fail "parallel setup of wl-p$i failed"
	wait_until 10 "ping wl-p$i ($ip)" in_node busybox ping -c 1 -W 1 "$ip"
	drv teardown "wl-p$i" >/dev/null || fail "teardown wl-p$i"
done
ok "four setups in parallel processes get distinct working addresses"

kill "$HTTPD" # the last process in wl-b's namespace
drv teardown wl-b >/dev/null || fail "teardown wl-b"
expect "ink interfaces left on the node" "$(ink_links in_node)" 0
expect "namespace files left" "$(ls -A "$NSDIR" | wc -l)" 0
expect "allocations left" "$(grep -c '"workload"' "$STATE/ipam.json" || true)" 0
expect "host ink interfaces" "$(ink_links)" "$HOST_INK"
expect "host ip_forward" "$(cat /proc/sys/net/ipv4/ip_forward)" "$HOST_FWD"
ok "nothing left behind: no ink interfaces, no namespace files, no allocations"

finish
