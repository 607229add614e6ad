#!/bin/bash
# MCP end to end: the official MCP SDK (tests/node/mcp_e2e.test.mjs) deploys
# apps through ink-coordinator's MCP tools, over Streamable HTTP and stdio,
# onto a real agent running gVisor sandboxes with images from a real
# registry. This script sets the stage and runs the Node.js suite:
#
#   images  three busybox httpd images built with umoci (v1 and v2 serve
#           different pages; "slow" starts httpd after 5 s, for the kill -9
#           test), pushed to Debian's docker-registry with skopeo;
#   daemons the coordinator (config file with mcp_listen on loopback) and
#           an agent, mutual TLS, as in agent_e2e;
#   keys    deployer and reader for project "demo", deployer for "other";
#   net     a stand-in for the internet (below), so that egress policies
#           decide about real traffic.
#
# The suite (see its header) deploys, inspects, updates with a rolling
# update polled throughout, and deletes apps over HTTP, a shorter flow over
# stdio, checks reader and other-project keys, errors and idempotent
# retries, and kills the coordinator with kill -9 mid-deploy, starting it
# again through $T/start-coordinator (which rewrites $T/coordinator.pid),
# and deploys apps with egress policies deny-all, allowlist and one the node
# does not have, connecting from inside their sandboxes (exec_command) to
# see what the policy lets through and what it counts. Afterwards this
# script checks that the secret env value is in no log and not in the
# database in plain text, the audit chain, and that nothing is left
# running. About 45 s.
#
# Safety: everything lives in two network namespaces this test creates: the
# node's, and behind its default route the "internet" stand-in's, with no
# uplink; cleanup removes sandboxes, cgroups, mounts and the namespaces even
# on failure. INK_E2E_KEEP_LOGS=DIR keeps the daemons' logs and the suite's
# output (node.log) of a failed run.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/node_lib.sh"

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
[ "$(id -u)" = 0 ] || fail "needs root (runsc sandboxes, namespaces, cgroups)"
for tool in runsc docker-registry skopeo umoci busybox nsenter curl jq ip node; do
	command -v "$tool" >/dev/null || fail "$tool not installed (scripts/install-deps)"
done
[ -d "$REPO/tests/node/node_modules/@modelcontextprotocol/sdk" ] ||
	fail "the MCP SDK is not installed in tests/node (scripts/install-deps)"

P="mcp$$" # app names start with it, so do workload ids (and their cgroups)
REG=127.0.0.1:5000
MCP_ADDR=127.0.0.1:7441

NODE_KEEP_LOGS=${INK_E2E_KEEP_LOGS:-}
node_init ink-mcp
# The coordinator is started by a script (the Node suite restarts it), so it
# is not in PIDS: kill it by its pid file. node_cleanup kills whatever else
# is left in the namespace.
mcp_cleanup() {
	local rc=$? p
	set +e
	[ -f "$T/coordinator.pid" ] && kill -9 "$(cat "$T/coordinator.pid")" 2>/dev/null
	if [ -e "/run/netns/$NET" ]; then
		# its httpd, started by this script: kill and reap (no job notice)
		for p in $(ip netns pids "$NET" 2>/dev/null); do { kill -9 "$p" && wait "$p"; } 2>/dev/null; done
		ip netns del "$NET" 2>/dev/null
	fi
	(exit $rc)
	node_cleanup
}
NET="$NODE-net"
trap mcp_cleanup EXIT

# --- a stand-in for the internet ----------------------------------------------
# Without a default route the node discards packets to outside addresses
# before any firewall sees them, and an egress policy would decide nothing.
# So the node's default route leads over a veth pair (up0, no address: the
# node's addresses stay what the agent reports) to a second namespace with
# two "public" TEST-NET-2 addresses and the cloud metadata address, all
# served by one busybox httpd on port 80. What a policy lets through gets
# the page; what it blocks times out, counted by the agent. Nothing leaves
# the two namespaces.
NET_A=198.51.100.7
NET_B=198.51.100.9
NET_METADATA=169.254.169.254
NET_BODY="ink mcp e2e internet $P"
ip netns add "$NET"
ip -n "$NODE" link add up0 type veth peer name net0 netns "$NET"
ip -n "$NODE" link set up0 up
ip -n "$NODE" route add default dev up0
ip -n "$NET" link set lo up
ip -n "$NET" link set net0 up
for a in "$NET_A" "$NET_B" "$NET_METADATA"; do ip -n "$NET" addr add "$a/32" dev net0; done
ip -n "$NET" route add default dev net0
mkdir -p "$T/net-www"
echo "$NET_BODY" >"$T/net-www/index.html"
nsenter --net="/run/netns/$NET" busybox httpd -f -p 80 -h "$T/net-www" &
PIDS+=($!)
net_up() { nsenter --net="/run/netns/$NET" curl -sf "http://$NET_A/" | has -F "$NET_BODY"; }
wait_until 10 "the internet stand-in answers" net_up
ok "internet stand-in behind the node's default route: $NET_A, $NET_B and $NET_METADATA"

# --- images -------------------------------------------------------------------
BODY_V1="ink mcp e2e v1 $P"
BODY_V2="ink mcp e2e v2 $P"
"$HERE/../images/build_test_images.sh" "$T/layout" >/dev/null
# page_image TAG BODY: the busybox image with another index.html
page_image() {
	umoci unpack --image "$T/layout:busybox" "$T/unpack-$1" >/dev/null
	echo "<h1>$2</h1>" >"$T/unpack-$1/rootfs/www/index.html"
	umoci repack --image "$T/layout:$1" "$T/unpack-$1"
	rm -rf "$T/unpack-$1"
}
page_image v1 "$BODY_V1"
page_image v2 "$BODY_V2"
umoci config --image "$T/layout:v1" --tag slow --config.entrypoint /bin/sh --config.cmd -c \
	--config.cmd 'echo starting in 5s; sleep 5; exec httpd -f -v -p 80 -h /www'
node_registry registry "$REG"
for tag in v1 v2 slow; do
	in_node skopeo --insecure-policy copy --dest-tls-verify=false "oci:$T/layout:$tag" \
		"docker://$REG/mcpweb:$tag" >/dev/null
done
ok "registry in the node namespace with images mcpweb:v1, v2 and slow"

# --- coordinator (MCP on loopback) and agent -------------------------------------
PKI="$T/pki"
"$COORD" --pki-dir="$PKI" pki init >/dev/null
"$COORD" --pki-dir="$PKI" pki issue node-mcp >/dev/null
CONF="$T/coordinator.conf"
cat >"$CONF" <<CONF
listen = 127.0.0.1:7440
mcp_listen = $MCP_ADDR
database = $T/db/ink.db
pki_dir = $PKI
tls_ca = $PKI/ca.crt
tls_cert = $PKI/ink-coordinator.crt
tls_key = $PKI/ink-coordinator.key
heartbeat_interval = 500ms
node_timeout = 3s
CONF
C=("$COORD" --config "$CONF")
# Run inside the namespace (by this script through in_node, by the Node
# suite from within it).
cat >"$T/start-coordinator" <<SH
#!/bin/sh
"$COORD" --config "$CONF" serve >>"$T/coordinator.log" 2>&1 &
echo \$! >"$T/coordinator.pid"
SH
chmod +x "$T/start-coordinator"
in_node "$T/start-coordinator"
wait_until 10 "coordinator started" grep -q 'msg="coordinator started"' "$T/coordinator.log"
mcp_status() { in_node curl -s -o /dev/null -w '%{http_code}' -X POST "http://$MCP_ADDR/mcp" "$@"; }
mcp_up() { [ "$(mcp_status)" = 401 ]; }
wait_until 10 "MCP endpoint on $MCP_ADDR" mcp_up

"${IN[@]}" "$AGENT" --node-id=node-mcp --coordinator=127.0.0.1:7440 --listen=127.0.0.1:7442 \
	--state-dir="$T/agent" --tls-ca="$PKI/ca.crt" --tls-cert="$PKI/node-mcp.crt" \
	--tls-key="$PKI/node-mcp.key" --reconnect-initial=100ms --reconnect-max=1s \
	--runsc-root="$RUNSC_ROOT" --bpf-pin-dir="$BPF_PIN" --netns-dir="$NSDIR" --workload-cidr=10.252.0.0/24 \
	--insecure-registries="$REG" --stop-grace=2s --resync=1s --log-level=debug \
	--policy-dir="$(node_policies)" run >>"$T/agent.log" 2>&1 &
AGENT_PID=$!
PIDS+=("$AGENT_PID")
node_ready() { "${C[@]}" nodes | has '^node-mcp  *ready'; }
wait_until 20 "node registered" node_ready
ok "coordinator (MCP on $MCP_ADDR) and agent up in the node namespace"

# --- keys and the plain-HTTP checks the SDK cannot make --------------------------------
key() { "${C[@]}" keys create --project "$1" --role "$2" --name "mcp-e2e $1 $2" 2>>"$T/keys.log"; }
KEY_DEPLOYER=$(key demo deployer)
KEY_READER=$(key demo reader)
KEY_OTHER=$(key other deployer)
for k in "$KEY_DEPLOYER" "$KEY_READER" "$KEY_OTHER"; do
	[[ $k =~ ^ink_[0-9a-f]{12}_[0-9a-f]{64}$ ]] || fail "keys create printed '$k'"
done
INIT='{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"curl","version":"1"}}}'
H=(-H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' -d "$INIT")
[ "$(mcp_status "${H[@]}")" = 401 ] || fail "no key: not 401"
[ "$(mcp_status "${H[@]}" -H 'Authorization: Bearer ink_000000000000_0000')" = 401 ] || fail "bad key: not 401"
in_node curl -s -D - -o /dev/null -X POST "http://$MCP_ADDR/mcp" "${H[@]}" |
	has -i '^www-authenticate: Bearer' || fail "401 without WWW-Authenticate: Bearer"
[ "$(mcp_status "${H[@]}" -H "Authorization: Bearer $KEY_DEPLOYER")" = 200 ] || fail "good key: not 200"
ok "keys for demo (deployer, reader) and other (deployer); 401 without a valid key"

# --- the Node.js suite ---------------------------------------------------------------
SECRET="s3cr3t-$P-$RANDOM$RANDOM"
t0=$SECONDS
(
	cd "$REPO/tests/node"
	in_node env \
		INK_E2E_COORDINATOR="$COORD" INK_E2E_CONFIG="$CONF" \
		INK_E2E_MCP_URL="http://$MCP_ADDR/mcp" \
		INK_E2E_KEY_DEPLOYER="$KEY_DEPLOYER" INK_E2E_KEY_READER="$KEY_READER" \
		INK_E2E_KEY_OTHER="$KEY_OTHER" \
		INK_E2E_IMAGE_V1="$REG/mcpweb:v1" INK_E2E_IMAGE_V2="$REG/mcpweb:v2" \
		INK_E2E_IMAGE_SLOW="$REG/mcpweb:slow" INK_E2E_IMAGE_MISSING="$REG/mcpweb:nosuch$$" \
		INK_E2E_BODY_V1="$BODY_V1" INK_E2E_BODY_V2="$BODY_V2" INK_E2E_SECRET="$SECRET" \
		INK_E2E_PREFIX="$P" INK_E2E_COORD_PIDFILE="$T/coordinator.pid" \
		INK_E2E_COORD_START="$T/start-coordinator" \
		INK_E2E_NET_A="$NET_A" INK_E2E_NET_B="$NET_B" INK_E2E_NET_METADATA="$NET_METADATA" \
		INK_E2E_NET_BODY="$NET_BODY" \
		node --test --test-reporter=spec mcp_e2e.test.mjs
) >"$T/node.log" 2>&1 || {
	cat "$T/node.log"
	fail "the MCP suite failed"
}
grep -E '^# |^ℹ (tests|pass|fail|skipped)' "$T/node.log" || true
has -E '^ℹ fail 0$' "$T/node.log" || { cat "$T/node.log"; fail "the MCP suite reports failures"; }
[ "$(sed -n 's/^ℹ pass //p' "$T/node.log")" -ge 10 ] 2>/dev/null || { cat "$T/node.log"; fail "the MCP suite did not run"; }
ok "MCP suite over HTTP and stdio: $(sed -n 's/^ℹ pass //p' "$T/node.log") tests passed ($((SECONDS - t0))s)"

# --- afterwards -------------------------------------------------------------------------
! grep -q -- "$SECRET" "$T/coordinator.log" "$T/agent.log" || fail "the secret is in a daemon log"
if cat "$T/db/"ink.db* | has -a -- "$SECRET"; then
	where=
	command -v sqlite3 >/dev/null || where=" (install sqlite3 to learn where)"
	for table in $(sqlite3 "$T/db/ink.db" .tables 2>/dev/null); do
		n=$(sqlite3 "$T/db/ink.db" "SELECT * FROM $table" | grep -a -c -- "$SECRET" || true)
		[ "$n" = 0 ] || where="$where $table ($n rows)"
	done
	fail "the secret is in the database in plain text: ${where:-in no live row (free pages or WAL)}"
fi
ok "the secret value is in no daemon log and not in the database in plain text"
"${C[@]}" audit verify >/dev/null || fail "audit log broken"
"${C[@]}" audit list --json | has -- "$P-web" || fail "the MCP calls on $P-web are not audited"
ok "audit log intact and records the MCP calls"
left=$("${C[@]}" workload ls --json | jq -r '.[].workload_id')
[ -z "$left" ] || fail "workloads left: $left"
removed_all() { [ -z "$(runsc --root "$RUNSC_ROOT" list -quiet)" ]; }
wait_until 30 "every sandbox removed" removed_all
ok "every app deleted: no workload or sandbox left"

kill -TERM "$(cat "$T/coordinator.pid")"
kill -TERM "$AGENT_PID"
wait "$AGENT_PID" || fail "agent exit status $?"
finish
