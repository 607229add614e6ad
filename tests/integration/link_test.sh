#!/bin/bash
# The agent-coordinator link with both real daemons on loopback, mutual TLS:
# registration, heartbeats and liveness, coordinator kill -9 and restart,
# agent kill -9 and restart, certificate checks, clean SIGTERM shutdown.
. "$(dirname "$0")/lib.sh"

"$COORD" --version | has '^ink-coordinator ' || fail "coordinator --version"
"$AGENT" --version | has '^ink-agent ' || fail "agent --version"

PKI="$T/pki"
"$COORD" --pki-dir="$PKI" pki init >/dev/null
"$COORD" --pki-dir="$PKI" pki issue node-a >/dev/null
"$COORD" --pki-dir="$T/foreign" pki init >/dev/null
"$COORD" --pki-dir="$T/foreign" pki issue node-a >/dev/null
[ "$(stat -c %a "$PKI/ca.key")" = 600 ] || fail "CA key is not 0600"
ok "pki init/issue"

# The coordinator reads a config file; flags override it.
cat >"$T/coordinator.conf" <<CONF
# test coordinator
listen = 127.0.0.1:1
database = $T/db/ink.db
pki_dir = $PKI
tls_ca = $PKI/ca.crt
tls_cert = $PKI/ink-coordinator.crt
tls_key = $PKI/ink-coordinator.key
heartbeat_interval = 300ms
node_timeout = 2s
CONF
C=("$COORD" --config "$T/coordinator.conf")
start_coordinator() {
	"${C[@]}" --listen="127.0.0.1:${1:-0}" --mcp-listen=127.0.0.1:0 serve >>"$T/coordinator.log" 2>&1 &
	COORD_PID=$!
	PIDS+=("$COORD_PID")
}
start_coordinator 0
wait_until 10 "coordinator started" grep -q 'msg="coordinator started"' "$T/coordinator.log"
PORT=$(logged_port "$T/coordinator.log")
[ -n "$PORT" ] && [ "$PORT" != 1 ] || fail "flag did not override the config file's listen"
ok "coordinator up on 127.0.0.1:$PORT (mTLS)"

# Nothing of this test's agents under /run/ink.
SCRATCH=(--runsc-root="$T/runsc" --netns-dir="$T/netns" --bpf-pin-dir=off --metrics-listen=off)
A=("$AGENT" --node-id=node-a --coordinator="127.0.0.1:$PORT" --listen=127.0.0.1:0
	--state-dir="$T/agent" --tls-ca="$PKI/ca.crt" --tls-cert="$PKI/node-a.crt"
	--tls-key="$PKI/node-a.key" --reconnect-initial=100ms --reconnect-max=1s "${SCRATCH[@]}")
start_agent() {
	"${A[@]}" run >>"$T/agent.log" 2>&1 &
	AGENT_PID=$!
	PIDS+=("$AGENT_PID")
}

# A certificate for another node, or from another CA, is refused at start.
if "$AGENT" --node-id=node-b --coordinator="127.0.0.1:$PORT" --state-dir="$T/b" "${SCRATCH[@]}" \
	--tls-ca="$PKI/ca.crt" --tls-cert="$PKI/node-a.crt" --tls-key="$PKI/node-a.key" \
	>"$T/wrong-name.log" 2>&1; then fail "agent started with another node's certificate"; fi
grep -q "is for 'node-a'" "$T/wrong-name.log" || fail "wrong-name error unclear"
if "$AGENT" --node-id=node-a --coordinator="127.0.0.1:$PORT" --state-dir="$T/f" "${SCRATCH[@]}" \
	--tls-ca="$PKI/ca.crt" --tls-cert="$T/foreign/node-a.crt" --tls-key="$T/foreign/node-a.key" \
	>"$T/foreign.log" 2>&1; then fail "agent started with a foreign certificate"; fi
grep -q "unable to get local issuer" "$T/foreign.log" || fail "foreign-CA error unclear"
ok "agent refuses certificates that are not its own"

node_field() { # node_field FIELD -> value for node-a from `nodes --json`
	"${C[@]}" nodes --json | sed -n "/\"id\": \"node-a\"/,/}/s/.*\"$1\": \"\\{0,1\\}\\([^\",]*\\)\"\\{0,1\\},\\{0,1\\}$/\\1/p" | head -n 1
}
node_is() { [ "$(node_field state)" = "$1" ]; }
registrations_at_least() { [ "$(node_field registrations)" -ge "$1" ] 2>/dev/null; }

start_agent
wait_until 10 "node-a ready" node_is ready
registrations_at_least 1 || fail "no registration recorded"
"${C[@]}" nodes | has '^node-a  *ready' || fail "table listing"
ok "agent registered and heartbeats (node-a ready)"

# Coordinator killed without warning: the agent keeps going and re-registers
# with the restarted coordinator on the same port and database.
kill -9 "$COORD_PID"
wait "$COORD_PID" 2>/dev/null || true
wait_until 10 "agent notices" grep -q 'coordinator unreachable' "$T/agent.log"
kill -0 "$AGENT_PID" || fail "agent died with the coordinator"
start_coordinator "$PORT"
wait_until 15 "re-registration" registrations_at_least 2
wait_until 10 "node-a ready again" node_is ready
ok "coordinator kill -9 + restart: agent re-registered"

# Agent killed: the node turns unreachable after node_timeout, and a new
# agent process registers again and resumes from its persisted revision.
kill -9 "$AGENT_PID"
wait "$AGENT_PID" 2>/dev/null || true
wait_until 10 "node-a unreachable" node_is unreachable
wait_until 5 "liveness transition logged" grep -q 'msg="node unreachable" node=node-a' "$T/coordinator.log"
start_agent
wait_until 10 "node-a ready after agent restart" node_is ready
registrations_at_least 3 || fail "agent restart not registered"
ok "agent kill -9: unreachable after timeout, ready after restart"

# Clean shutdown on SIGTERM, exit code 0, for both.
kill -TERM "$AGENT_PID"
wait "$AGENT_PID" || fail "agent exit code $?"
kill -TERM "$COORD_PID"
wait "$COORD_PID" || fail "coordinator exit code $?"
grep -q 'msg=stopped' "$T/agent.log" || fail "agent did not log its stop"
ok "SIGTERM: both exit 0"
finish
