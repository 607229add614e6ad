#!/bin/bash
# Egress policies end to end, from inside real gVisor sandboxes: the real
# coordinator assigns workloads with egress policies to the real agent,
# which runs them under runsc, each in a network namespace of its own, and
# enforces the policies with its nftables table (node-agent/net/firewall.c,
# node-agent/policy). Every check is a real connection made with busybox
# nc, wget or nslookup inside a sandbox, through the agent's exec API.
#
#   1. default: cloud metadata, SMTP (25, 465, 587), a private and a CGNAT
#      host, the node's own coordinator/agent/registry ports (gateway and
#      uplink address) are dropped; the internet answers and sees the
#      node's uplink address (masquerade);
#   2. projects: other projects' apps are dropped both ways; the project's
#      own apps answer, by name too (<app>.internal); another project's
#      name does not resolve;
#   3. allowlist: exactly its entry (203.0.113.11:80), never metadata;
#   4. deny-all: its project only;
#   5. drops are counted per workload and category: `ink-agent policy
#      show`, and the coordinator's egress_blocked table (status reports;
#      read with the sqlite3 shell);
#   6. a policy change (SIGHUP) while connections flow: none fails, an
#      established stream to a port the change blocks goes on, new
#      connections to that port are dropped;
#   7. `nft flush ruleset` in the node: the agent restores its table within
#      firewall_resync (the time is printed), metadata is dropped again;
#   8. a policy file with an error: the reload is refused with FILE:LINE,
#      the table and the traffic stay as they were; `policy check` says
#      FILE:LINE too;
#   9. removal leaves no sandbox, veth, table element, address or counter.
#
# Topology, every piece a network namespace this test creates:
#
#   sandboxes  web, api, vault (project alpha: default, default, deny-all),
#              shop (beta, default), partner (gamma, allowlist), in
#              10.250.0.0/24: routed veth pairs made by the agent, gateway
#              10.250.0.1 on each
#   node   ink-egr-PID: coordinator (0.0.0.0:7440, MCP 0.0.0.0:7441), agent
#          (0.0.0.0:7442), registry (0.0.0.0:5000); uplink 203.0.113.1/24;
#          routes to 169.254.169.254, 10.99.0.5 and 100.64.0.5 via the inet
#          namespace, and nothing else (no default route)
#        | veth
#   inet   ink-egr-PID-inet: 203.0.113.10-12 (the "internet": servers on 80,
#          443, 9000, SMTP on 25, 465, 587, a stream sink on 9001; all
#          fw_probe, which logs each peer), on lo 169.254.169.254 (the
#          metadata service), 10.99.0.5 (an office host), 100.64.0.5 (a
#          CGNAT host); no route back to the workload range: only
#          masqueraded traffic is answered.
#
# Safety: no namespace here has a route to anything but these namespaces,
# so a rule that is missing, wrong or flushed (check 7 flushes on purpose)
# can never send a packet off the machine. The agent's resolver forwards
# to 203.0.113.10 (nothing answers there), never to the host's resolver.
# The host's own ruleset is compared byte for byte before and after.
# Cleanup removes sandboxes, cgroups, namespace mounts and both namespaces
# on every exit path; INK_E2E_KEEP_LOGS=DIR keeps the logs of a failed run.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/node_lib.sh"

[ "$(id -u)" = 0 ] || fail "needs root (runsc sandboxes, namespaces, cgroups, nftables)"
for tool in runsc docker-registry skopeo umoci busybox nsenter curl jq ip nft ss; do
	command -v "$tool" >/dev/null || fail "$tool not installed (scripts/install-deps)"
done

CALL="$BIN/tests/integration/agent_call"
PROBE="$BIN/tests/integration/fw_probe"
P="egr$$" # workload id prefix: parallel runs never collide
REG=127.0.0.1:5000
CIDR=10.250.0.0/24
GW=10.250.0.1
UPL=203.0.113.1
nft list ruleset >"$T/host-ruleset.before" 2>&1

NODE_KEEP_LOGS=${INK_E2E_KEEP_LOGS:-}
node_init ink-egr
INET="$NODE-inet"
INETX=(nsenter --net="/run/netns/$INET")
egress_cleanup() {
	local rc=$? p
	set +e
	# kill and reap: no "Killed" job notices
	for p in "${PIDS[@]}"; do { kill -9 "$p" && wait "$p"; } 2>/dev/null; done
	PIDS=()
	if [ -e "/run/netns/$INET" ]; then
		for p in $(ip netns pids "$INET" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
		ip netns del "$INET" 2>/dev/null
	fi
	(exit $rc)
	node_cleanup
}
trap egress_cleanup EXIT

# --- topology: node and inet -----------------------------------------------------
ip netns add "$INET"
ip -n "$INET" link set lo up
ip -n "$NODE" link add upl type veth peer name eth0 netns "$INET"
ip -n "$NODE" addr add "$UPL/24" dev upl
ip -n "$NODE" link set upl up
for a in 203.0.113.10 203.0.113.11 203.0.113.12; do ip -n "$INET" addr add "$a/24" dev eth0; done
ip -n "$INET" link set eth0 up
for a in 169.254.169.254 10.99.0.5 100.64.0.5; do
	ip -n "$INET" addr add "$a/32" dev lo
	ip -n "$NODE" route add "$a/32" via 203.0.113.10
done
for port in 25 80 443 465 587 9000; do
	"${INETX[@]}" "$PROBE" serve "$port" "$T/inet-$port.peers" &
	PIDS+=($!)
done
# The stream sink (check 6): one connection, what it receives goes to
# stream.rx. Its stdin never ends: busybox nc would half-close otherwise.
"${INETX[@]}" sh -c 'sleep 100000 | exec busybox nc -l -p 9001' >"$T/stream.rx" 2>&1 &
PIDS+=($!)

# node_probe / inet_probe ADDR PORT: connected | refused | timeout
node_probe() { in_node "$PROBE" tcp "$1" "$2" 1000; }
inet_probe() { "${INETX[@]}" "$PROBE" tcp "$1" "$2" 1000; }
node_reaches() { [ "$(node_probe "$1" "$2")" = connected ]; }
# peers PORT: connections the inet server on PORT has seen
peers() { if [ -f "$T/inet-$1.peers" ]; then wc -l <"$T/inet-$1.peers"; else echo 0; fi; }
wait_until 10 "servers in the inet namespace" node_reaches 203.0.113.10 80
for t in 169.254.169.254:80 10.99.0.5:80 100.64.0.5:80 203.0.113.10:25 203.0.113.10:465 \
	203.0.113.10:587 203.0.113.11:443 203.0.113.12:9000; do
	[ "$(node_probe "${t%:*}" "${t#*:}")" = connected ] ||
		fail "control: the node does not reach $t in the inet namespace: $(node_probe "${t%:*}" "${t#*:}")"
done
wait_until 10 "stream sink on 9001" sh -c "${INETX[*]} ss -ltn | grep -q ':9001 '"
ok "topology: node with an uplink to the inet namespace (internet, metadata, office and CGNAT hosts); the node reaches them all (control)"

# --- registry, coordinator, agent: reachable on the node's addresses -------------
"$(dirname "$0")/../images/build_test_images.sh" "$T/layout" >/dev/null
node_registry registry 0.0.0.0:5000
in_node skopeo --insecure-policy copy --dest-tls-verify=false oci:"$T/layout":busybox \
	"docker://$REG/busybox:1" >/dev/null
IMG="$REG/busybox:1"

PKI="$T/pki"
"$COORD" --pki-dir="$PKI" pki init >/dev/null
"$COORD" --pki-dir="$PKI" pki issue node-egr >/dev/null
C=("$COORD" --database="$T/db/ink.db" --tls-ca="$PKI/ca.crt"
	--tls-cert="$PKI/ink-coordinator.crt" --tls-key="$PKI/ink-coordinator.key"
	--heartbeat-interval=500ms --node-timeout=3s)
"${IN[@]}" "${C[@]}" --listen=0.0.0.0:7440 --mcp-listen=0.0.0.0:7441 serve >>"$T/coordinator.log" 2>&1 &
PIDS+=($!)
wait_until 10 "coordinator started" grep -q 'msg="coordinator started"' "$T/coordinator.log"
POL=$(node_policies)
A=("$AGENT" --node-id=node-egr --coordinator=127.0.0.1:7440 --listen=0.0.0.0:7442
	--advertise=127.0.0.1:7442 --state-dir="$T/agent" --tls-ca="$PKI/ca.crt"
	--tls-cert="$PKI/node-egr.crt" --tls-key="$PKI/node-egr.key" --reconnect-initial=100ms
	--reconnect-max=1s --runsc-root="$RUNSC_ROOT" --bpf-pin-dir="$BPF_PIN" --netns-dir="$NSDIR" --workload-cidr="$CIDR"
	--insecure-registries="$REG" --stop-grace=1s --resync=1s --dns-upstream=203.0.113.10
	--policy-dir="$POL" --log-level=debug)
"${IN[@]}" "${A[@]}" run >>"$T/agent.log" 2>&1 &
AGENT_PID=$!
PIDS+=("$AGENT_PID")
node_ready() { "${C[@]}" nodes | has '^node-egr  *ready'; }
wait_until 20 "node registered" node_ready
NODE_PORTS="7440 7441 7442 5000" # coordinator gRPC, MCP, agent, registry
for port in $NODE_PORTS; do
	[ "$(inet_probe "$UPL" "$port")" = connected ] ||
		fail "control: port $port on the node's uplink address $UPL does not answer from the inet namespace"
done
ok "coordinator, agent and registry up in the node namespace; their ports answer on the uplink address $UPL (control)"

# --- workloads, started together ---------------------------------------------------
C_WEB="$P-web"     # alpha, default: most probes start here
C_API="$P-api"     # alpha, default: reached by name; runs check 6's traffic
C_VAULT="$P-vault" # alpha, deny-all
C_SHOP="$P-shop"   # beta, default
C_PART="$P-part"   # gamma, allowlist 203.0.113.11:80
ALL=("$C_WEB" "$C_API" "$C_VAULT" "$C_SHOP" "$C_PART")
# api serves its own page; once /tmp/go exists it keeps a TCP stream open
# to the sink on 203.0.113.12:9001 (a line every 0.1 s) and makes short
# connections to 203.0.113.10:80 back to back, counting them and their
# failures in /tmp/count ("N FAILED", replaced whole: a reader never sees
# it empty), until /tmp/stop exists.
# shellcheck disable=SC2016 # expanded in the sandbox
FLOW_SH='mkdir -p /tmp/www && echo "app api" >/tmp/www/index.html && httpd -p 80 -h /tmp/www
while [ ! -e /tmp/go ]; do sleep 0.2; done
(
	i=0
	while [ ! -e /tmp/stop ]; do i=$((i + 1)); echo "tick $i"; sleep 0.1; done |
		nc 203.0.113.12 9001 >/dev/null 2>/tmp/stream.err
	echo "stream ended with status $?" >/tmp/stream.end
) &
n=0 f=0
while [ ! -e /tmp/stop ]; do
	n=$((n + 1))
	r=$(nc -w 2 203.0.113.10 80 </dev/null 2>&1)
	case $r in *pong*) ;; *) f=$((f + 1)) && echo "$n $r" >>/tmp/fails ;; esac
	echo "$n $f" >/tmp/count.new && mv /tmp/count.new /tmp/count
done
while :; do sleep 3600; done'

put() { "${C[@]}" workload put node-egr "$@" >/dev/null; }
rm_wl() { "${C[@]}" workload rm node-egr "$1" >/dev/null; }
wl() { "${C[@]}" workload ls node-egr --json | jq -r ".[] | select(.workload_id == \"$2\") | .$1"; }
call() { in_node env AGENT_NAME=node-egr "$CALL" 127.0.0.1:7442 "$PKI" "$@"; }
logged() { grep -c "msg=\"$1" "$T/agent.log" || true; }
logged_more() { [ "$(logged "$1")" -gt "$2" ]; }

t0=$SECONDS
put "$C_WEB" --image "$IMG" --port 80 --app web --project alpha --egress default
put "$C_API" --image "$IMG" --port 80 --app api --project alpha --egress default -- /bin/sh -c "$FLOW_SH"
put "$C_VAULT" --image "$IMG" --port 80 --app vault --project alpha --egress deny-all
put "$C_SHOP" --image "$IMG" --port 80 --app shop --project beta --egress default
put "$C_PART" --image "$IMG" --port 80 --app partner --project gamma --egress allowlist \
	--egress-allow 203.0.113.11:80
end=$((SECONDS + 120))
while :; do
	js=$("${C[@]}" workload ls node-egr --json)
	bad=$(jq -r '.[] | select(.state == "failed" or .state == "crash-loop") | "\(.workload_id): \(.reason)"' <<<"$js")
	[ -z "$bad" ] || fail "workloads did not start: $bad"
	[ "$(jq '[.[] | select(.state == "running")] | length' <<<"$js")" = "${#ALL[@]}" ] && break
	[ $SECONDS -lt $end ] ||
		fail "timed out after 120s waiting for the sandboxes: $(jq -c 'map({workload_id, state, reason})' <<<"$js")"
	sleep 0.2
done
declare -A ADDR WHO
for id in "${ALL[@]}"; do
	ADDR[$id]=$(wl address "$id")
	[[ ${ADDR[$id]} == 10.250.0.* ]] || fail "$id has address '${ADDR[$id]}'"
	runsc --root "$RUNSC_ROOT" list -quiet | has -x "$id.ink" || fail "no runsc sandbox $id.ink"
done
WHO[$C_WEB]="web (alpha, default)"
WHO[$C_API]="api (alpha, default)"
WHO[$C_VAULT]="vault (alpha, deny-all)"
WHO[$C_SHOP]="shop (beta, default)"
WHO[$C_PART]="partner (gamma, allowlist 203.0.113.11:80)"
call exec "$C_WEB" 10 "" -- /bin/busybox dmesg | has 'Starting gVisor' || fail "web does not run under gVisor"
for port in $NODE_PORTS; do
	node_reaches "$GW" "$port" || fail "control: port $port on the gateway $GW does not answer on the node"
done
ok "5 workloads in gVisor sandboxes, started together in $((SECONDS - t0))s; the node's ports answer on the gateway $GW (control)"

# --- probes from inside a sandbox ------------------------------------------------------
declare -A WHAT=(
	[169.254.169.254:80]="cloud metadata" [10.99.0.5:80]="office host (10/8)"
	[100.64.0.5:80]="CGNAT host (100.64/10)" [203.0.113.10:25]="SMTP" [203.0.113.10:465]="SMTPS"
	[203.0.113.10:587]="SMTP submission" [$GW:53]="the node's resolver"
)
for port in $NODE_PORTS; do
	WHAT[$GW:$port]="the node (gateway) port $port"
	WHAT[$UPL:$port]="the node (uplink) port $port"
done
for id in "${ALL[@]}"; do WHAT[${ADDR[$id]}:80]="${WHO[$id]% (*} app"; done
who() { echo "sandbox ${WHO[$1]} at ${ADDR[$1]}"; }
# Busybox sh in the sandbox: "TARGET WORD" per ADDR:PORT argument, all at
# once. open: connected (nc exits 0 once the server closes); timeout: no
# answer in 2 s (dropped); refused: a closed port answered.
# shellcheck disable=SC2016 # expanded in the sandbox
NET_SH='p() {
	if r=$(nc -w 2 "${1%:*}" "${1##*:}" </dev/null 2>&1); then
		w=open
	else
		case $r in *"timed out"*) w=timeout ;; *refused*) w=refused ;; *) w=error:$(echo $r | tr " " _) ;; esac
	fi
	echo "$1 $w"
}
for t; do p "$t" & done
wait'
# net ID "OPEN..." "BLOCKED...": one batch of TCP connections from the
# sandbox; each OPEN target must connect, each BLOCKED one time out.
net() {
	local id=$1 t got out
	# shellcheck disable=SC2086 # lists of targets
	out=$(call exec "$id" 20 "" -- /bin/sh -c "$NET_SH" net $2 $3 2>&1) ||
		fail "exec in $(who "$id"): $out"
	for t in $2; do
		got=$(awk -v t="$t" '$1 == t { print $2 }' <<<"$out")
		[ "$got" = open ] ||
			fail "$(who "$id") -> $t${WHAT[$t]:+ (${WHAT[$t]})}: ${got:-no result}, expected to connect"
	done
	for t in $3; do
		got=$(awk -v t="$t" '$1 == t { print $2 }' <<<"$out")
		[ "$got" = timeout ] ||
			fail "$(who "$id") -> $t${WHAT[$t]:+ (${WHAT[$t]})}: ${got:-no result}, expected blocked (dropped: no answer)"
	done
}
# grew PORT BEFORE N DESCRIPTION: the inet server on PORT saw exactly N
# more connections, all from the node's uplink address (masqueraded).
grew() {
	local now
	now=$(peers "$1")
	[ "$now" = $(($2 + $3)) ] ||
		fail "$4: the inet server on port $1 saw $((now - $2)) new connections, want $3: $(tail -n 5 "$T/inet-$1.peers")"
	tail -n "+$(($2 + 1))" "$T/inet-$1.peers" | grep -v "^tcp $UPL\$" | has . &&
		fail "$4: the inet server on port $1 saw a source other than the node's $UPL: $(sort -u "$T/inet-$1.peers")"
	return 0
}
nodes_of() { # ADDR: ADDR:PORT for every node port
	local port
	for port in $NODE_PORTS; do printf '%s:%s ' "$1" "$port"; done
}
declare -A B4
snap() { for port in 25 80 443 465 587 9000; do B4[$port]=$(peers "$port"); done; }

# --- 1. default policy --------------------------------------------------------------
snap
net "$C_WEB" "203.0.113.10:80 203.0.113.10:443 203.0.113.10:9000 $GW:53 ${ADDR[$C_API]}:80" \
	"169.254.169.254:80 203.0.113.10:25 203.0.113.10:465 203.0.113.10:587 10.99.0.5:80 100.64.0.5:80 $(nodes_of "$GW") $(nodes_of "$UPL")"
grew 80 "${B4[80]}" 1 "web's batch (one allowed connection on port 80; metadata, office, CGNAT dropped)"
grew 443 "${B4[443]}" 1 "web's batch"
grew 9000 "${B4[9000]}" 1 "web's batch"
for port in 25 465 587; do grew "$port" "${B4[$port]}" 0 "SMTP from web"; done
ok "default (web): metadata, SMTP 25/465/587, 10.99.0.5, 100.64.0.5 and the node's ports $NODE_PORTS on $GW and $UPL dropped (no connection reached a server); the internet (80, 443, 9000) answers and saw $UPL"

# --- 2. projects ----------------------------------------------------------------------
net "$C_WEB" "" "${ADDR[$C_SHOP]}:80"
net "$C_SHOP" "203.0.113.10:80" "${ADDR[$C_WEB]}:80 ${ADDR[$C_API]}:80"
# sh_in ID SCRIPT: output and errors of a script in the sandbox
sh_in() { call exec "$1" 15 "" -- /bin/sh -c "$2" 2>&1 || true; }
# lookup ID NAME: the address nslookup finds, or NXDOMAIN, or its output
lookup() {
	local out
	out=$(sh_in "$1" "nslookup -type=A $2")
	if has NXDOMAIN <<<"$out"; then
		echo NXDOMAIN
	else
		sed -n 's/^Address: *\([0-9.]*\)$/\1/p' <<<"$out" | grep -vx "$GW" | head -n 1 | grep . || echo "$out"
	fi
}
# wget -T segfaults in busybox 1.35 (Debian 12): timeout bounds it instead
got=$(sh_in "$C_WEB" 'timeout 5 wget -q -O - http://api.internal:80/')
[ "$got" = "app api" ] || fail "$(who "$C_WEB") -> http://api.internal:80/ (same project, by name): '$got'"
got=$(lookup "$C_WEB" api.internal)
[ "$got" = "${ADDR[$C_API]}" ] || fail "$(who "$C_WEB"): api.internal is '$got', want ${ADDR[$C_API]}"
got=$(lookup "$C_WEB" shop.internal)
[ "$got" = NXDOMAIN ] || fail "$(who "$C_WEB"): shop.internal (project beta) resolves: '$got'"
got=$(lookup "$C_SHOP" web.internal)
[ "$got" = NXDOMAIN ] || fail "$(who "$C_SHOP"): web.internal (project alpha) resolves: '$got'"
got=$(sh_in "$C_WEB" 'timeout 5 wget -q -O - http://shop.internal:80/')
has 'bad address' <<<"$got" || fail "$(who "$C_WEB") -> http://shop.internal:80/ (other project): '$got'"
ok "projects: alpha and beta cannot reach each other's addresses (either way); web gets http://api.internal:80/ (same project); shop.internal and web.internal do not resolve across projects"

# --- 3. allowlist -------------------------------------------------------------------------
snap
net "$C_PART" "203.0.113.11:80" "203.0.113.11:443 203.0.113.12:80 203.0.113.10:80 169.254.169.254:80 203.0.113.10:25"
grew 80 "${B4[80]}" 1 "partner's batch (only 203.0.113.11:80 allowed)"
grew 443 "${B4[443]}" 0 "partner's batch"
ok "allowlist (partner, 203.0.113.11:80): that entry answers; 203.0.113.11:443, 203.0.113.12:80, 203.0.113.10:80, metadata, SMTP dropped"

# --- 4. deny-all ----------------------------------------------------------------------------
snap
net "$C_VAULT" "${ADDR[$C_API]}:80 ${ADDR[$C_WEB]}:80 $GW:53" \
	"203.0.113.10:80 203.0.113.10:443 169.254.169.254:80 ${ADDR[$C_SHOP]}:80 $(nodes_of "$GW")"
grew 80 "${B4[80]}" 0 "vault's batch (deny-all)"
got=$(sh_in "$C_VAULT" 'timeout 5 wget -q -O - http://api.internal:80/')
[ "$got" = "app api" ] || fail "$(who "$C_VAULT") -> http://api.internal:80/ (own project): '$got'"
ok "deny-all (vault): its project answers (by address and by name), the internet, metadata, beta and the node do not"

# Names follow reach (policies/README.md, resolve): deny-all (resolve
# internal) and an allowlist of addresses only (resolve allowlist) get
# REFUSED for public names, so the node's resolver carries nothing out;
# default (resolve any) has them looked up (the node has no upstream
# here: the answer is a failure, but not REFUSED).
for id in "$C_VAULT" "$C_PART"; do
	got=$(sh_in "$id" 'nslookup -type=A leak-4142.example.com')
	has REFUSED <<<"$got" || fail "$(who "$id"): a public name is not REFUSED: '$got'"
done
got=$(sh_in "$C_WEB" 'nslookup -type=A www.example.com')
has REFUSED <<<"$got" && fail "$(who "$C_WEB") (default): a public name is REFUSED: '$got'"
ok "names: vault (deny-all) and partner (allowlist) get REFUSED for public names; web (default) has them forwarded"

# --- 5. drops counted per workload and category ------------------------------------------------
pshow() { in_node "$AGENT" --state-dir="$T/agent" policy show; }
# dropped ID: the "dropped" line policy show has for the workload
dropped() {
	pshow >"$T/policy-show.txt" || fail "policy show: $(cat "$T/policy-show.txt")"
	sed -n "/^workload $1 /,/^\$/p" "$T/policy-show.txt" | sed -n 's/^  dropped *//p'
}
# count LIST CATEGORY: packets of CATEGORY in "cat N, cat N" (0: none)
count() { tr ',' '\n' <<<"$1" | awk -v c="$2" '$1 == c { n = $2 } END { print n + 0 }'; }
declare -A CATS=(
	[$C_WEB]="metadata smtp private node tenant" [$C_SHOP]="tenant"
	[$C_PART]="metadata not-allowlisted" [$C_VAULT]="deny-all"
)
summary=""
for id in "${!CATS[@]}"; do
	d=$(dropped "$id")
	for cat in ${CATS[$id]}; do
		[ "$(count "$d" "$cat")" -ge 1 ] ||
			fail "policy show: $(who "$id") has no '$cat' drops: '$d'"
	done
	summary+=" ${WHO[$id]%% *}: $d;"
done
[ "$(dropped "$C_API")" = nothing ] || fail "policy show: api dropped '$(dropped "$C_API")'"
has '^  policy    allowlist$' <"$T/policy-show.txt" || fail "policy show: no allowlist workload"
has '^  allow     203\.0\.113\.11 port 80$' <"$T/policy-show.txt" ||
	fail "policy show: partner's allowlist: $(grep '^  allow' "$T/policy-show.txt")"
ok "policy show:$summary api nothing"
# What the coordinator keeps from the status reports: workload ls --json
# has no counters, its egress_blocked table has them (read with the sqlite3
# shell, from scripts/install-deps).
SQL=$(command -v sqlite3) || fail "sqlite3 not installed (scripts/install-deps): the coordinator's counters cannot be checked"
sql() { "$SQL" -cmd '.timeout 2000' "$T/db/ink.db" "$1"; }
coord_blocked() {
	sql "SELECT category || ' ' || total FROM egress_blocked WHERE node_id = 'node-egr' AND workload_id = '$1' ORDER BY category" |
		paste -sd, -
}
coord_has() { # ID CATEGORY...
	local d cat
	d=$(coord_blocked "$1")
	shift
	for cat; do [ "$(count "$d" "$cat")" -ge 1 ] || return 1; done
}
if [ -n "$SQL" ]; then
	for id in "${!CATS[@]}"; do
		# shellcheck disable=SC2086 # list of categories
		wait_until 15 "the coordinator's egress_blocked rows for $id: ${CATS[$id]} (has: $(coord_blocked "$id"))" \
			coord_has "$id" ${CATS[$id]}
	done
	ok "the coordinator has the drops from the status reports: web $(coord_blocked "$C_WEB"); partner $(coord_blocked "$C_PART")"
fi

# --- 6. a policy change while traffic flows ----------------------------------------------------
meta_before=$(count "$(dropped "$C_WEB")" metadata)
flow() { call exec "$C_API" 5 "" -- /bin/cat /tmp/count 2>/dev/null; } # "N FAILED"
# flow_now: flow, retried (an exec can fail on a loaded machine)
flow_now() {
	local v=""
	for _ in 1 2 3 4 5; do
		v=$(flow) && [[ $v =~ ^[0-9]+\ [0-9]+$ ]] && echo "$v" && return 0
		sleep 0.2
	done
	fail "cannot read api's /tmp/count: '$v'"
}
ticks() { grep -c '^tick [0-9]*$' "$T/stream.rx" || true; }
flowing() { [ "$(ticks)" -ge "$1" ] && [ "$(flow | cut -d' ' -f1)" -ge "$2" ]; }
sh_in "$C_API" 'touch /tmp/go' >/dev/null
wait_until 20 "api's stream and connections flowing" flowing 5 5
sed -i 's/^allow any$/deny any tcp port 9000-9001 as custom\nallow any/' "$POL/default.policy"
has -x 'deny any tcp port 9000-9001 as custom' <"$POL/default.policy" || fail "could not edit default.policy"
reloads=$(logged 'egress policies reloaded')
v0=$(flow_now)
read -r n0 f0 <<<"$v0"
[ "$f0" = 0 ] || fail "api's connections to 203.0.113.10:80 failed before any change: $(sh_in "$C_API" 'cat /tmp/fails')"
tk0=$(ticks)
ms0=$(date +%s%3N)
for i in 1 2 3; do
	kill -HUP "$AGENT_PID"
	wait_until 15 "reload $i: 'egress policies reloaded' logged" logged_more 'egress policies reloaded' $((reloads + i - 1))
	sleep 0.2
done
reload_ms=$(($(date +%s%3N) - ms0))
vr=$(flow_now)
read -r nr fr <<<"$vr"
tk=$(ticks)
[ "$fr" = 0 ] ||
	fail "$fr of $((nr - n0)) connections from $(who "$C_API") to 203.0.113.10:80 failed during the reloads: $(sh_in "$C_API" 'cat /tmp/fails')"
[ "$nr" -gt "$n0" ] || fail "api made no connections during the reloads ($n0 -> $nr)"
[ "$tk" -gt "$tk0" ] || fail "the stream carried nothing during the reloads ($tk0 -> $tk lines)"
wait_until 5 "the established stream to 203.0.113.12:9001 going on after the reloads (at line $tk)" flowing $((tk + 5)) 0
v1=$(flow_now)
read -r n1 f1 <<<"$v1"
[ "$f1" = 0 ] || fail "$f1 connections from api to 203.0.113.10:80 failed after the reloads: $(sh_in "$C_API" 'cat /tmp/fails')"
ended=$(sh_in "$C_API" 'cat /tmp/stream.end /tmp/stream.err 2>/dev/null')
[ -z "$ended" ] || fail "the established stream from api to 203.0.113.12:9001 broke: $ended"
sh_in "$C_API" 'touch /tmp/stop' >/dev/null
snap
net "$C_WEB" "203.0.113.10:80 203.0.113.10:443" "203.0.113.10:9000 203.0.113.12:9000 203.0.113.12:9001"
grew 9000 "${B4[9000]}" 0 "web to port 9000 after the change"
net "$C_PART" "203.0.113.11:80" ""
d=$(dropped "$C_WEB")
[ "$(count "$d" custom)" -ge 1 ] || fail "policy show: no 'custom' drops for web: '$d'"
[ "$(count "$d" metadata)" -ge "$meta_before" ] || fail "drop counters lost in the reload: metadata $meta_before -> '$d'"
[ -z "$SQL" ] || wait_until 15 "the coordinator's egress_blocked rows for $C_WEB: custom (has: $(coord_blocked "$C_WEB"))" \
	coord_has "$C_WEB" custom
ok "policy change under traffic: 3 reloads in ${reload_ms} ms while api made $((nr - n0)) connections (0 failed, $((n1 - n0)) in all) and its stream to 203.0.113.12:9001 went on ($tk0 -> $tk lines); afterwards port 9000-9001 is dropped for new connections (custom, counted by the agent${SQL:+ and the coordinator}), counters kept"

# --- 7. someone flushes the ruleset ----------------------------------------------------------
# The table as rendered, without counter values (dynamic counter elements
# appear with packets).
table() { in_node nft -s list table inet ink | sed 's/ counter packets [0-9]* bytes [0-9]*//'; }
table >"$T/table.before-flush"
# The counters the agent last read (it carries them into the repaired
# table) are the kernel's: reported to the coordinator, or, without
# sqlite3, a drift check (firewall_resync) after the last drop.
meta=$(count "$(dropped "$C_WEB")" metadata)
reported() { [ "$(sql "SELECT reported FROM egress_blocked WHERE workload_id = '$1' AND category = '$2'")" = "$3" ]; }
if [ -n "$SQL" ]; then
	wait_until 10 "web's metadata count ($meta) reported" reported "$C_WEB" metadata "$meta"
else
	sleep 2.5
fi
restores=$(logged 'firewall table changed outside Ink: restoring it')
lines=$(wc -l <"$T/agent.log")
ms0=$(date +%s%3N)
in_node nft flush ruleset
wait_until 10 "table inet ink restored" in_node nft list table inet ink
seen_ms=$(($(date +%s%3N) - ms0))
wait_until 5 "the restore logged" logged_more 'firewall table changed outside Ink: restoring it' "$restores"
tail -n "+$((lines + 1))" "$T/agent.log" | grep 'msg="firewall table changed outside Ink: restoring it"' |
	has 'table inet ink is gone' || fail "the restore does not say what it found"
# When the agent committed the table again (its log), from the flush.
ts=$(tail -n "+$((lines + 1))" "$T/agent.log" | grep -m 1 'msg="firewall table applied"' | sed -n 's/^ts=\([^ ]*\) .*/\1/p')
[ -n "$ts" ] || fail "no 'firewall table applied' after the flush"
restore_ms=$(($(date -d "$ts" +%s%3N) - ms0))
[ "$restore_ms" -le 3000 ] ||
	fail "the agent restored the table ${restore_ms} ms after the flush, want within firewall_resync (2 s)"
table >"$T/table.after-flush"
diff "$T/table.before-flush" "$T/table.after-flush" >"$T/table.diff" ||
	fail "the restored table differs from the one flushed: $(head -n 20 "$T/table.diff")"
[ "$(count "$(dropped "$C_WEB")" metadata)" = "$meta" ] ||
	fail "drop counters not carried into the repaired table: metadata $meta -> '$(dropped "$C_WEB")'"
net "$C_WEB" "203.0.113.10:80" "169.254.169.254:80 ${ADDR[$C_SHOP]}:80 $GW:7442"
ok "nft flush ruleset in the node: table inet ink restored ${restore_ms} ms after the flush (nft saw it at ${seen_ms} ms; firewall_resync 2s), as it was, counters included; metadata, beta and the node dropped again"

# --- 8. a policy file with an error ----------------------------------------------------------
cp "$POL/default.policy" "$T/default.policy.good"
badline=$(grep -n -x 'allow any' "$T/default.policy.good" | cut -d: -f1)
sed 's|^allow any$|deny 203.0.113.0/23 as typo\nallow any|' "$T/default.policy.good" >"$POL/default.policy"
table >"$T/table.before-bad"
refused=$(logged 'egress policies NOT reloaded')
kill -HUP "$AGENT_PID"
wait_until 15 "the bad reload refused" logged_more 'egress policies NOT reloaded' "$refused"
grep 'msg="egress policy refused"' "$T/agent.log" | tail -n 1 | has -F "$POL/default.policy:$badline: " ||
	fail "the refusal does not name $POL/default.policy:$badline: $(grep 'egress polic' "$T/agent.log" | tail -n 2)"
table >"$T/table.after-bad"
diff "$T/table.before-bad" "$T/table.after-bad" >"$T/table.diff" ||
	fail "a refused policy changed the table: $(head -n 20 "$T/table.diff")"
net "$C_WEB" "203.0.113.10:80 203.0.113.11:443" "203.0.113.10:9000 169.254.169.254:80 203.0.113.10:25"
net "$C_PART" "203.0.113.11:80" "203.0.113.12:80"
in_node "$AGENT" policy check "$POL/default.policy" >"$T/check.out" 2>&1 && rc=0 || rc=$?
[ "$rc" = 1 ] || fail "policy check of the bad file exited $rc, want 1: $(cat "$T/check.out")"
has -F "$POL/default.policy:$badline: " <"$T/check.out" || fail "policy check: $(cat "$T/check.out")"
cp "$T/default.policy.good" "$POL/default.policy"
reloads=$(logged 'egress policies reloaded')
kill -HUP "$AGENT_PID"
wait_until 15 "the good file reloaded" logged_more 'egress policies reloaded' "$reloads"
net "$C_WEB" "203.0.113.10:80" "203.0.113.10:9000 169.254.169.254:80"
ok "a policy file with an error (line $badline): reload refused with FILE:LINE, table and traffic unchanged; policy check exits 1 naming it ($(grep -F "default.policy:$badline" "$T/check.out" | head -n 1))"

# --- 9. removal leaves nothing behind ------------------------------------------------------
removed() { grep -q "msg=\"workload removed\" workload=$1\$" "$T/agent.log"; }
for id in "${ALL[@]}"; do rm_wl "$id"; done
for id in "${ALL[@]}"; do wait_until 60 "$id removed by the agent" removed "$id"; done
[ -z "$(runsc --root "$RUNSC_ROOT" list -quiet)" ] || fail "sandboxes left: $(runsc --root "$RUNSC_ROOT" list -quiet)"
[ "$(in_node ip -o link show | grep -c ': ink')" = 0 ] || fail "veths left: $(in_node ip -o link show)"
[ -z "$(ls "$NSDIR")" ] || fail "namespace mounts left: $(ls "$NSDIR")"
in_node nft list table inet ink >"$T/table.end" || fail "table inet ink gone"
# Every set and map empty, no project chain: nothing of a workload.
grep -E 'elements = |prj_|"ink[0-9a-f]+"' "$T/table.end" | has . &&
	fail "workload elements left in table inet ink: $(grep -E -A2 'elements = |prj_' "$T/table.end")"
[ "$(jq '.allocations | length' "$T/agent/ipam.json" 2>/dev/null || echo 0)" = 0 ] ||
	fail "addresses left: $(cat "$T/agent/ipam.json")"
no_counts() { [ "$(sql 'SELECT count(*) FROM egress_blocked')" = 0 ]; }
[ -z "$SQL" ] || wait_until 10 "the coordinator drops the counters of removed workloads" no_counts
# The agent's own changes (adds, reloads, removals) never looked like
# drift: the flush was the only repair, and no batch was refused.
[ "$(logged 'firewall table changed outside Ink')" = 1 ] ||
	fail "repairs besides the flush: $(grep 'firewall table changed outside Ink' "$T/agent.log")"
[ "$(logged 'firewall batch refused')" = 0 ] || fail "batches refused: $(grep 'firewall batch refused' "$T/agent.log")"
kill -TERM "$AGENT_PID"
wait "$AGENT_PID" || fail "agent exit status $?"
nft list ruleset >"$T/host-ruleset.after" 2>&1
cmp -s "$T/host-ruleset.before" "$T/host-ruleset.after" ||
	fail "the host's own ruleset changed: $(diff "$T/host-ruleset.before" "$T/host-ruleset.after" | head -n 20)"
ok "removal: no sandbox, veth, namespace mount, table element, address or counter left; the host's ruleset is byte-identical"

echo "# runtime ${SECONDS}s; table restored ${restore_ms} ms after a flush"
finish
