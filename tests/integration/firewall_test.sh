#!/bin/bash
# node-agent/net/firewall.c against the real kernel (root): Ink's nftables
# table for a few workloads, checked with real TCP and UDP connections.
#
# Topology, every piece a network namespace this test creates:
#
#   wl-a, wl-b (project alpha, default policy)   wl-c (beta, default)
#   wl-d (gamma, allowlist)                       wl-e (beta, deny-all)
#        \ routed veth pairs (node-agent/net, as the agent makes them)
#   node  ink-fw-PID-node: gateway 10.252.0.1 on each veth, "node services"
#         on 7442 and 53, uplink 203.0.113.1/24
#        | veth
#   inet  ink-fw-PID-inet: 203.0.113.10 and .11 (the "internet", servers on
#         25, 80, 443, 8443, 9000), 169.254.169.254 (a metadata service);
#         it has no route back to the workload range: only masqueraded
#         traffic gets answers.
#
# Safety: the firewall driver runs inside the node namespace (nsenter
# --net) and in a mount namespace of its own where /etc/hosts and
# /etc/resolv.conf are the test's (unshare -m, private propagation). The
# host's ruleset is compared before and after. Namespace mounts live under
# /run/ink-fwtest-PID, never /run/ink.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/node_lib.sh"

[ "$(id -u)" = 0 ] || fail "needs root (network namespaces, nftables)"
command -v nsenter >/dev/null || fail "nsenter (util-linux) not installed"
command -v nft >/dev/null || fail "nft (nftables) not installed: the test uses it as the intruder"

SRC=$(cd "$(dirname "$0")/../.." && pwd)
DRV="$BIN/tests/integration/firewall_driver"
NETDRV="$BIN/tests/integration/net_driver"
PROBE="$BIN/tests/integration/fw_probe"
NODE="ink-fw-$$-node"
INET="ink-fw-$$-inet"
RUNDIR="/run/ink-fwtest-$$"
NSDIR="$RUNDIR/netns"
STATE="$T/state"
CIDR=10.252.0.0/24
GW=10.252.0.1
POL="$T/policies"
HOST_RULES_BEFORE=$(nft list ruleset 2>&1 | sha256sum)

fw_cleanup() {
	local rc=$?
	set +e
	# kill and reap: no "Killed" job notices
	[ -n "${DRIVER_PID:-}" ] && { kill -9 "$DRIVER_PID" && wait "$DRIVER_PID"; } 2>/dev/null
	for p in "${PIDS[@]}"; do { kill -9 "$p" && wait "$p"; } 2>/dev/null; done
	PIDS=()
	for ns in "$NODE" "$INET"; do
		[ -e "/run/netns/$ns" ] || continue
		for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
	done
	netns_mounts_cleanup "$NSDIR"
	rm -rf "$RUNDIR"
	ip netns del "$NODE" 2>/dev/null
	ip netns del "$INET" 2>/dev/null
	(exit $rc)
	cleanup
}
trap fw_cleanup EXIT

IN=(nsenter --net="/run/netns/$NODE")
in_inet() { nsenter --net="/run/netns/$INET" "$@"; }
in_wl() {
	local id=$1
	shift
	nsenter --net="$NSDIR/$id" "$@"
}
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<" $2"; }
expect() { [ "$2" = "$3" ] || fail "$1: got '$2', want '$3'"; }

# probe WL tcp|udp ADDR PORT -> connected | refused | timeout | answered
probe() {
	local wl=$1
	shift
	in_wl "$wl" "$PROBE" "$@" 700
}
expect_probe() { # DESCRIPTION WL PROTO ADDR PORT WANT
	local got
	got=$(probe "$2" "$3" "$4" "$5")
	[ "$got" = "$6" ] || fail "$1: $2 -> $3 $4:$5 is '$got', want '$6'"
}

# ---------------------------------------------------------------- topology
ip netns add "$NODE"
ip netns add "$INET"
ip -n "$NODE" link set lo up
ip -n "$INET" link set lo up
ip -n "$NODE" link add upl type veth peer name eth0 netns "$INET"
ip -n "$NODE" addr add 203.0.113.1/24 dev upl
ip -n "$NODE" link set upl up
ip -n "$INET" addr add 203.0.113.10/24 dev eth0
ip -n "$INET" addr add 203.0.113.11/24 dev eth0
ip -n "$INET" addr add 203.0.113.12/24 dev eth0
ip -n "$INET" addr add 169.254.169.254/32 dev lo
ip -n "$INET" link set eth0 up
ip -n "$NODE" route add 169.254.169.254/32 via 203.0.113.10

serve() { # NAMESPACE-COMMAND... PORT LOG
	"$@" &
	PIDS+=($!)
}
for port in 25 80 443 8443 9000; do
	serve in_inet "$PROBE" serve "$port" "$T/inet.peers"
done
for port in 7442 53; do
	serve "${IN[@]}" "$PROBE" serve "$port" "$T/node.peers"
done

netdrv() { in_node "$NETDRV" --state "$STATE" --netns-dir "$NSDIR" --cidr "$CIDR" "$@" 2>>"$T/net.log"; }
declare -A IP IFN
for wl in wl-a wl-b wl-c wl-d wl-e; do
	out=$(netdrv setup "$wl") || fail "net setup $wl"
	IP[$wl]=$(field ip "$out")
	IFN[$wl]=$(field ifname "$out")
done
for wl in wl-b wl-c; do
	serve nsenter --net="$NSDIR/$wl" "$PROBE" serve 8080 "$T/$wl.peers"
done
wait_until 10 "inet servers" in_node "$PROBE" tcp 203.0.113.10 80
expect "node reaches the metadata stand-in (control)" \
	"$(in_node "$PROBE" tcp 169.254.169.254 80)" connected
expect "node reaches smtp (control)" "$(in_node "$PROBE" tcp 203.0.113.10 25)" connected
# Without Ink's table the workload range is not translated: no answer.
expect "no masquerade without the table" "$(probe wl-a tcp 203.0.113.10 80)" timeout
expect "tenants reach each other without the table (control)" \
	"$(probe wl-c tcp "${IP[wl-b]}" 8080)" connected
ok "topology: node, internet, metadata, five workloads (no filtering yet)"

# ---------------------------------------------------------------- driver
mkdir -p "$POL"
cp "$SRC"/policies/*.policy "$POL/"
chmod 755 "$POL"
chmod 644 "$POL"/*.policy
printf '203.0.113.11 allowed.ink-test.example\n127.0.0.1 localhost\n' >"$T/hosts"
printf 'nameserver 127.0.0.1\noptions timeout:1 attempts:1\n' >"$T/resolv.conf"
chmod 644 "$T/hosts" "$T/resolv.conf"

# One firewall for the whole test: its model and reference digest live in
# the driver process. unshare -m: the bind mounts stay in its own mount
# namespace.
coproc FW {
	exec unshare -m --propagation private sh -c \
		'mount --bind "$1" /etc/hosts && mount --bind "$2" /etc/resolv.conf &&
		 exec nsenter --net="$3" "$4" --policy-dir "$5" --cidr "$6" serve' \
		sh "$T/hosts" "$T/resolv.conf" "/run/netns/$NODE" "$DRV" "$POL" "$CIDR" \
		2>>"$T/driver.log"
}
# bash unsets FW_PID once the coprocess ends: keep our own copy.
DRIVER_PID=$FW_PID
fw() {
	echo "$*" >&"${FW[1]}"
	local line
	IFS= read -r -t 60 line <&"${FW[0]}" || fail "driver did not answer '$*'"
	echo "$line"
}
fw_ok() {
	local r
	r=$(fw "$@")
	[[ $r == ok* ]] || fail "driver: $* -> $r"
	echo "$r"
}

fw_ok add wl-a "${IP[wl-a]}" alpha - >/dev/null
fw_ok add wl-b "${IP[wl-b]}" alpha default >/dev/null
fw_ok add wl-c "${IP[wl-c]}" beta - >/dev/null
fw_ok add wl-d "${IP[wl-d]}" gamma allowlist 203.0.113.10:443 allowed.ink-test.example:80 \
	nx.ink-test.invalid 169.254.169.254:80 >/dev/null
fw_ok add wl-e "${IP[wl-e]}" beta deny-all >/dev/null
in_node nft list table inet ink >"$T/table.txt" || fail "no table inet ink in the node namespace"
for wl in wl-a wl-b wl-c wl-d wl-e; do
	grep -q "\"${IFN[$wl]}\" : jump pol_" "$T/table.txt" || fail "$wl has no policy element"
done
has 'chain prj_alpha' <"$T/table.txt" || fail "no chain for project alpha"
has 'chain pol_deny-all' <"$T/table.txt" || fail "no chain for deny-all"
ok "five workloads added one batch each (policies default, allowlist, deny-all)"

r=$(fw add wl-x 10.252.0.200 alpha nope)
[[ $r == *"egress policy 'nope' is not installed on this node ($POL/nope.policy)"* ]] ||
	fail "unknown policy: $r"
ok "an unknown policy is refused with a clear message (fail closed): $r"

# ---------------------------------------------------------------- traffic
expect_probe "same project" wl-a tcp "${IP[wl-b]}" 8080 connected
expect_probe "other project" wl-c tcp "${IP[wl-b]}" 8080 timeout
expect_probe "other project, other way" wl-a tcp "${IP[wl-c]}" 8080 timeout
expect_probe "deny-all still reaches its project" wl-e tcp "${IP[wl-c]}" 8080 connected
ok "same project reachable, other projects not (both ways)"

expect_probe "metadata" wl-a tcp 169.254.169.254 80 timeout
expect_probe "metadata udp" wl-a udp 169.254.169.254 80 timeout
expect_probe "smtp 25" wl-a tcp 203.0.113.10 25 timeout
expect_probe "internet http" wl-a tcp 203.0.113.10 80 connected
expect_probe "internet udp" wl-a udp 203.0.113.10 80 answered
expect_probe "tcp 9000" wl-a tcp 203.0.113.10 9000 connected
has '^udp 203\.0\.113\.1$' <"$T/inet.peers" || fail "udp not masqueraded: $(cat "$T/inet.peers")"
grep -v ' 203\.0\.113\.1$' "$T/inet.peers" | has . && fail "the internet saw another source: $(cat "$T/inet.peers")"
ok "default policy: metadata and smtp blocked; the internet reachable, masqueraded to 203.0.113.1"

expect_probe "node service on the gateway" wl-a tcp "$GW" 7442 timeout
expect_probe "node service on the uplink" wl-a tcp 203.0.113.1 7442 timeout
expect_probe "dns tcp on the gateway" wl-a tcp "$GW" 53 connected
expect_probe "dns udp on the gateway" wl-a udp "$GW" 53 answered
expect_probe "dns on the uplink address" wl-a udp 203.0.113.1 53 timeout
expect_probe "dns on the gateway, deny-all" wl-e udp "$GW" 53 answered
ok "the node's own addresses are blocked except DNS on the gateway"

expect_probe "allowlisted address:port" wl-d tcp 203.0.113.10 443 connected
expect_probe "allowlisted address, other port" wl-d tcp 203.0.113.10 8443 timeout
expect_probe "allowlisted host name" wl-d tcp 203.0.113.11 80 connected
expect_probe "allowlisted host name, udp" wl-d udp 203.0.113.11 80 answered
expect_probe "not allowlisted" wl-d tcp 203.0.113.12 80 timeout
expect_probe "metadata despite an allowlist entry" wl-d tcp 169.254.169.254 80 timeout
note=$(fw_ok note wl-d)
[[ $note == *"nx.ink-test.invalid does not resolve"* ]] || fail "unresolvable name not reported: $note"
expect_probe "deny-all" wl-e tcp 203.0.113.10 80 timeout
ok "allowlist: listed address:port and host name reachable, the rest not; a name that does not resolve is reported ($note)"

fw_ok drift >/dev/null
blk=$(fw_ok blocked wl-a)
for cat in metadata smtp node tenant; do
	[[ $blk =~ \ $cat=([0-9]+) ]] && [ "${BASH_REMATCH[1]}" -ge 1 ] || fail "wl-a: no $cat count: $blk"
done
blk_e=$(fw_ok blocked wl-e)
[[ $blk_e == *" deny-all="* ]] || fail "wl-e: no deny-all count: $blk_e"
blk_d=$(fw_ok blocked wl-d)
[[ $blk_d == *" not-allowlisted="* && $blk_d == *" metadata="* ]] || fail "wl-d counts: $blk_d"
[ "$(fw_ok blocked wl-b)" = ok ] || fail "wl-b was blocked: $(fw blocked wl-b)"
ok "drops counted per workload and category: wl-a:${blk#ok} wl-d:${blk_d#ok} wl-e:${blk_e#ok}"

# ---------------------------------------------------------------- spoofing
in_wl wl-a ip addr add "${IP[wl-b]}/32" dev eth0
in_wl wl-a ip route replace default via "$GW" dev eth0 onlink src "${IP[wl-b]}"
expect_probe "spoofed source" wl-a tcp 203.0.113.10 80 timeout
in_wl wl-a ip route replace default via "$GW" dev eth0 onlink
in_wl wl-a ip addr del "${IP[wl-b]}/32" dev eth0
expect_probe "own source again" wl-a tcp 203.0.113.10 80 connected
fw_ok drift >/dev/null
[[ $(fw_ok blocked wl-a) == *" spoofed="* ]] || fail "spoofing not counted: $(fw blocked wl-a)"
ok "a workload sending with another workload's address is dropped (counted as spoofed)"

# ---------------------------------------------------------------- drift
r=$(fw_ok drift)
expect "drift on an untouched table" "$(field repaired "$r")" 0
in_node nft add table inet someone-else
in_node nft add chain inet someone-else c
r=$(fw_ok drift)
expect "drift after another table changed" "$(field repaired "$r")" 0
in_node nft delete table inet someone-else
ok "no repair while the table is as applied, nor when someone changes another table"

before=$(fw_ok blocked wl-a)
in_node nft flush ruleset
expect_probe "after flush (unfiltered)" wl-c tcp "${IP[wl-b]}" 8080 connected
r=$(fw_ok drift)
expect "drift after flush" "$(field repaired "$r")" 1
[[ $r == *"table inet ink is gone"* ]] || fail "drift report: $r"
expect_probe "restored: other project" wl-c tcp "${IP[wl-b]}" 8080 timeout
expect_probe "restored: metadata" wl-a tcp 169.254.169.254 80 timeout
expect_probe "restored: internet" wl-a tcp 203.0.113.10 80 connected
after=$(fw_ok blocked wl-a)
[[ $after =~ \ metadata=([0-9]+) ]] && m_after=${BASH_REMATCH[1]}
[[ $before =~ \ metadata=([0-9]+) ]] && m_before=${BASH_REMATCH[1]}
[ "${m_after:-0}" -ge "${m_before:-1}" ] || fail "counters lost in the repair: $before -> $after"
ok "nft flush ruleset: the drift check restores the table in one batch ($r); counters kept"

in_node nft insert rule inet ink egress accept
in_node nft add element inet ink workload_addrs '{ 10.252.0.250 }'
tamper=$(fw_ok drift)
expect "drift after tampering" "$(field repaired "$tamper")" 1
[[ $tamper == *"chain egress changed"* && $tamper == *"set workload_addrs changed"* ]] ||
	fail "drift report: $tamper"
expect_probe "tamper repaired" wl-c tcp "${IP[wl-b]}" 8080 timeout
r=$(fw_ok drift)
expect "drift after the repair" "$(field repaired "$r")" 0
ok "a rule or element added behind Ink's back is found and undone (${tamper#*what=})"

# ---------------------------------------------------------------- add/remove
fw_ok remove wl-c >/dev/null
in_node nft list set inet ink workload_ifs | has "${IFN[wl-c]}" && fail "wl-c still in workload_ifs"
in_node nft list chain inet ink prj_beta >/dev/null 2>&1 || fail "prj_beta went with wl-e still there"
fw_ok remove wl-e >/dev/null
in_node nft list chain inet ink prj_beta >/dev/null 2>&1 && fail "prj_beta left after its last workload"
in_node nft list set inet ink blk_deny-all | has "${IFN[wl-e]}" && fail "wl-e counters left"
expect_probe "removed workload" wl-c tcp 203.0.113.10 80 timeout
fw_ok remove wl-c >/dev/null
fw_ok add wl-c "${IP[wl-c]}" beta - >/dev/null
fw_ok add wl-e "${IP[wl-e]}" beta deny-all >/dev/null
expect_probe "re-added" wl-c tcp 203.0.113.10 80 connected
expect_probe "re-added, still isolated" wl-c tcp "${IP[wl-b]}" 8080 timeout
# Same workload, another policy: one batch replaces its elements.
fw_ok add wl-c "${IP[wl-c]}" beta deny-all >/dev/null
expect_probe "policy changed to deny-all" wl-c tcp 203.0.113.10 80 timeout
fw_ok add wl-c "${IP[wl-c]}" beta default >/dev/null
r=$(fw_ok drift)
expect "drift after adds and removes" "$(field repaired "$r")" 0
ok "remove takes the elements, counters and (with the last workload) the project chain; re-add and replace work"

# ---------------------------------------------------------------- policies
in_node nft -s list table inet ink >"$T/before-bad.txt"
cp "$POL/default.policy" "$T/default.policy.good"
cat >"$POL/default.policy" <<'EOF'
allow project
deny 10.0.0.1/8 as private
deny any tcp port 25 as smtp
allow any
EOF
r=$(fw reload)
[[ $r == error*"$POL/default.policy:2: '10.0.0.1/8' has host bits set"* ]] || fail "bad policy: $r"
in_node nft -s list table inet ink >"$T/after-bad.txt"
cmp -s "$T/before-bad.txt" "$T/after-bad.txt" || fail "a bad policy changed the table"
expect_probe "after a bad reload: metadata" wl-a tcp 169.254.169.254 80 timeout
ok "a bad policy file: reload fails with FILE:LINE (${r#error }), the table stays as it was"
printf 'allow project\nallow any tcp port 99999\nfrobnicate\n' >"$POL/deny-all.policy"
r=$(fw reload)
[[ $r == "error 3 errors, the first: $POL/default.policy:2:"* ]] || fail "several errors: $r"
in_node nft -s list table inet ink >"$T/after-bad.txt"
cmp -s "$T/before-bad.txt" "$T/after-bad.txt" || fail "bad policies changed the table"
cp "$SRC/policies/deny-all.policy" "$POL/deny-all.policy"
ok "errors in two files: all reported, the first named (${r#error })"

cp "$T/default.policy.good" "$POL/default.policy"
sed -i 's/^allow any$/deny 203.0.113.10 tcp port 9000 as test-block\nallow any/' "$POL/default.policy"
(
	fails=0
	for _ in $(seq 40); do
		[ "$(probe wl-a tcp 203.0.113.10 80)" = connected ] || fails=$((fails + 1))
	done
	echo "$fails" >"$T/flow.fails"
) &
FLOW=$!
for _ in 1 2 3; do
	fw_ok reload >/dev/null
	sleep 0.2
done
wait "$FLOW"
expect "connections failing during reloads" "$(cat "$T/flow.fails")" 0
expect_probe "new rule" wl-a tcp 203.0.113.10 9000 timeout
expect_probe "other workloads' policy" wl-d tcp 203.0.113.10 443 connected
fw_ok drift >/dev/null
[[ $(fw_ok blocked wl-a) == *" test-block="* ]] || fail "new category not counted"
[[ $(fw_ok blocked wl-a) == *" metadata="* ]] || fail "counters lost across a reload"
ok "a policy change is applied atomically while traffic flows (40 connections, 0 failed)"

fw_ok quit >/dev/null
wait "$DRIVER_PID" 2>/dev/null || true
DRIVER_PID=

# ---------------------------------------------------------------- scale
out=$(in_node "$DRV" --policy-dir "$SRC/policies" --cidr 10.253.0.0/16 bench 1000 2>>"$T/bench.log") ||
	fail "bench: $(tail -n 3 "$T/bench.log")"
echo "# $out"
ms=$(field replace_apply_ms "$out")
awk -v ms="$ms" 'BEGIN { exit !(ms < 1000) }' || fail "1,000 workloads took ${ms} ms"
n=$(in_node nft list set inet ink workload_ifs | grep -o '"ink[0-9a-f]*"' | wc -l)
expect "workloads in the table" "$n" 1000
ok "1,000 workloads in one batch: ${ms} ms to apply (target < 100 ms)"

# ---------------------------------------------------------------- host
expect "host ruleset" "$(nft list ruleset 2>&1 | sha256sum)" "$HOST_RULES_BEFORE"
ok "the host's own ruleset is untouched"

finish
