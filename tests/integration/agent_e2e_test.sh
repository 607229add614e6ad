#!/bin/bash
# ink-agent end to end: the real coordinator hands assignments to the real
# agent, which pulls from a real registry (Debian's docker-registry), runs
# gVisor sandboxes with runsc, networks them and publishes their ports.
#
#   deploy -> HTTP 200 through the published port; env and secret env seen
#   by the app; exec, logs (tail and follow), metrics (GetMetrics, its
#   15-minute history, the Prometheus endpoint); a memory hog killed
#   by its limit, reported as OOM and restarted with backoff; a fork bomb
#   held by the pids limit; a crash loop detected; a missing image reported;
#   a new generation replaces the sandbox; agent kill -9 -> the workload
#   kept serving and is adopted, not restarted; coordinator kill -9 changes
#   nothing; blue-green: a second workload on the same published port gets
#   connections only once ready, and removing the old one keeps the port
#   answering; removal leaves no sandbox, namespace, veth, cgroup or address.
#
# Safety: everything (coordinator, agent, registry, sandboxes) lives in a
# network namespace this test creates (the "node"); it has no uplink, so no
# workload can reach anything outside. Cleanup removes sandboxes, cgroups,
# namespace mounts and the node namespace even when a step fails.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/node_lib.sh"

[ "$(id -u)" = 0 ] || fail "needs root (runsc sandboxes, namespaces, cgroups)"
for tool in runsc docker-registry skopeo umoci busybox nsenter curl jq ip; do
	command -v "$tool" >/dev/null || fail "$tool not installed (scripts/install-deps)"
done

CALL="$BIN/tests/integration/agent_call"
P="e2e$$" # workload id prefix: parallel runs never collide
REG=127.0.0.1:5000

NODE_KEEP_LOGS=${INK_E2E_KEEP_LOGS:-}
node_init ink-e2e
trap node_cleanup EXIT

# --- registry with the test images --------------------------------------
"$(dirname "$0")/../images/build_test_images.sh" "$T/layout" >/dev/null
node_registry registry "$REG"
in_node skopeo --insecure-policy copy --dest-tls-verify=false oci:"$T/layout":busybox \
	"docker://$REG/busybox:1" >/dev/null
# A private registry: basic auth (htpasswd), the agent logs in with the
# credentials file.
PRIV=127.0.0.1:5001
PASS='p@ss w0rd'
htpasswd -Bbn inkuser "$PASS" >"$T/htpasswd" 2>/dev/null
node_registry private "$PRIV" "auth:" "  htpasswd:" "    realm: ink-e2e" \
	"    path: $T/htpasswd"
in_node skopeo --insecure-policy copy --dest-tls-verify=false --dest-creds "inkuser:$PASS" \
	oci:"$T/layout":busybox "docker://$PRIV/team/app:1" >/dev/null
printf '# registry user password\n%s inkuser %s\n' "$PRIV" "$PASS" >"$T/credentials"
chmod 600 "$T/credentials"
ok "registries in the node namespace (one private), busybox image pushed"

# --- coordinator and agent, mutual TLS -----------------------------------
PKI="$T/pki"
"$COORD" --pki-dir="$PKI" pki init >/dev/null
"$COORD" --pki-dir="$PKI" pki issue node-e2e >/dev/null
C=("$COORD" --database="$T/db/ink.db" --tls-ca="$PKI/ca.crt"
	--tls-cert="$PKI/ink-coordinator.crt" --tls-key="$PKI/ink-coordinator.key"
	--heartbeat-interval=500ms --node-timeout=3s)
start_coordinator() {
	"${IN[@]}" "${C[@]}" --listen=127.0.0.1:7440 serve >>"$T/coordinator.log" 2>&1 &
	COORD_PID=$!
	PIDS+=("$COORD_PID")
}
A=("$AGENT" --node-id=node-e2e --coordinator=127.0.0.1:7440 --listen=127.0.0.1:7442
	--state-dir="$T/agent" --tls-ca="$PKI/ca.crt" --tls-cert="$PKI/node-e2e.crt"
	--tls-key="$PKI/node-e2e.key" --reconnect-initial=100ms --reconnect-max=1s
	--runsc-root="$RUNSC_ROOT" --netns-dir="$NSDIR" --workload-cidr=10.251.0.0/24
	--insecure-registries="$REG,$PRIV" --registry-credentials="$T/credentials" --stop-grace=2s --resync=1s --log-level=debug
	--policy-dir="$(node_policies)" --metrics-listen=127.0.0.1:7443 --bpf-pin-dir="$BPF_PIN")
start_agent() {
	"${IN[@]}" "${A[@]}" run >>"$T/agent.log" 2>&1 &
	AGENT_PID=$!
	PIDS+=("$AGENT_PID")
}
start_coordinator
wait_until 10 "coordinator started" grep -q 'msg="coordinator started"' "$T/coordinator.log"
start_agent
node_ready() { "${C[@]}" nodes | has '^node-e2e  *ready'; }
wait_until 20 "node registered" node_ready
ok "coordinator and agent up in the node namespace"

put() { "${C[@]}" workload put node-e2e "$@" >/dev/null; }
rm_wl() { "${C[@]}" workload rm node-e2e "$1" >/dev/null; }
# wl FIELD ID: a field of the workload's reported status
wl() { "${C[@]}" workload ls node-e2e --json | jq -r ".[] | select(.workload_id == \"$2\") | .$1"; }
state_is() { [ "$(wl state "$2")" = "$1" ]; }
reason_has() { wl reason "$1" | has -- "$2"; }
restarts_at_least() { [ "$(wl restarts "$1")" -ge "$2" ] 2>/dev/null; }
# gen_state ID: "<reported generation> <state>"
gen_state() { echo "$(wl reported_generation "$1") $(wl state "$1")"; }
gen_state_is() { [ "$(gen_state "$1")" = "$2" ]; }
logs_have() { call logs "$1" 500 | has -- "$2"; }
published_answers() { in_node curl -sf --max-time 2 http://127.0.0.1:18080/ >/dev/null; }
call() { in_node env AGENT_NAME=node-e2e "$CALL" 127.0.0.1:7442 "$PKI" "$@"; }
http() { in_node curl -s --max-time 5 "$@"; }
# The sandbox's host processes (its pids cgroup): they change only when
# the sandbox is restarted.
sandbox_pid() { sort -n /sys/fs/cgroup/pids/ink/"$1"/cgroup.procs | head -n 1; }

# --- deploy -----------------------------------------------------------------
WEB="$P-web"
t0=$SECONDS
put "$WEB" --image "$REG/busybox:1" --port 80 --publish 18080 --memory 128M --cpu 500 --pids 64
wait_until 90 "$WEB running" state_is running "$WEB"
body=$(http http://127.0.0.1:18080/)
grep -q 'ink test image' <<<"$body" || fail "published port answered: $body"
[ "$(http -o /dev/null -w '%{http_code}' http://127.0.0.1:18080/)" = 200 ] || fail "not 200"
WEB_ADDR=$(wl address "$WEB")
[[ $WEB_ADDR == 10.251.0.* ]] || fail "workload address '$WEB_ADDR'"
http "http://$WEB_ADDR/" | has 'ink test image' || fail "workload address does not answer"
[ "$(wl published_port "$WEB")" = 18080 ] || fail "published port not reported"
wl image_digest "$WEB" | has '^sha256:' || fail "image digest not reported"
runsc --root "$RUNSC_ROOT" list -quiet | has -x "$WEB.ink" || fail "no runsc sandbox $WEB.ink"
grep -q 'Starting gVisor' <(call exec "$WEB" 10 "" -- /bin/busybox dmesg) ||
	fail "workload is not running under gVisor"
ok "deployed: HTTP 200 through published port 18080 and at $WEB_ADDR ($((SECONDS - t0))s)"

# --- egress (node-agent/net/firewall.c; firewall_test.sh covers the rest) ---
# From inside the gVisor sandbox, the node's own addresses are dropped and
# counted (here the published port on the gateway), and `ink-agent policy
# show` says so for this workload.
wexec() { call exec "$WEB" 10 "" -- /bin/sh -c "$1"; }
[ "$(wexec 'nc -w 2 10.251.0.1 18080 </dev/null >/dev/null 2>&1 && echo open || echo blocked')" = blocked ] ||
	fail "the workload reaches the node's published port on the gateway"
pshow() { in_node "$AGENT" --state-dir="$T/agent" policy show; }
pshow >"$T/policy-show.txt" || fail "policy show: $(cat "$T/policy-show.txt")"
sed -n "/^workload $WEB /,/^\$/p" "$T/policy-show.txt" | has 'dropped .*node [1-9]' ||
	fail "policy show has no node drops for $WEB: $(cat "$T/policy-show.txt")"
has '^  policy    default$' <"$T/policy-show.txt" || fail "policy show: no default policy"
# Someone flushes the ruleset: the agent restores its table within
# firewall_resync (2s); SIGHUP reloads the policies.
in_node nft flush ruleset
wait_until 10 "table inet ink restored" in_node nft list table inet ink
grep -q 'msg="firewall table changed outside Ink: restoring it".*table inet ink is gone' \
	"$T/agent.log" || fail "no restore logged"
kill -HUP "$AGENT_PID"
wait_until 10 "policies reloaded" grep -q 'msg="egress policies reloaded"' "$T/agent.log"
ok "egress: the node is unreachable from the sandbox (counted, policy show), a flushed ruleset is restored, SIGHUP reloads"

CG=/sys/fs/cgroup/memory/ink/$WEB
[ "$(cat "$CG/memory.limit_in_bytes")" = $((128 << 20)) ] || fail "memory limit not applied"
[ "$(cat /sys/fs/cgroup/cpu/ink/"$WEB"/cpu.cfs_quota_us)" = 50000 ] ||
	fail "CPU quota $(cat /sys/fs/cgroup/cpu/ink/"$WEB"/cpu.cfs_quota_us), want 50000 (0.5 CPU)"
[ "$(cat /sys/fs/cgroup/pids/ink/"$WEB"/pids.max)" = $((12 * 64 + 256)) ] || fail "pids limit"
# Startup CPU boost: the sandbox booted with 1 CPU (config.json), lowered to
# the app's 0.5 once its port answered.
boot_quota=$(jq '.linux.resources.cpu.quota' "$T/agent/workloads/$WEB/bundle/config.json")
[ "$boot_quota" = 100000 ] || fail "boot CPU quota in config.json is $boot_quota, want 100000"
grep 'msg="startup CPU boost ended"' "$T/agent.log" | grep " workload=$WEB " | grep -q ' ready=true' ||
	fail "no 'startup CPU boost ended ... ready=true' line for $WEB in the agent log"
ok "cgroup limits: memory 128M, CPU 0.5 (booted with 1 CPU), pids"

# --- env and secret env -------------------------------------------------------
ENVW="$P-web-env" # the web's id is a prefix of it: runsc must still tell them apart
put "$ENVW" --image "$REG/busybox:1" --port 8080 --publish 18081 --env APP_MODE=test \
	--project e2e --app env --secret-env API_TOKEN=s3cr3t -- /bin/sh -c \
	'mkdir -p /tmp/www && echo "greeting=$GREETING mode=$APP_MODE token=$API_TOKEN port=$PORT" >/tmp/www/index.html && exec httpd -f -v -p $PORT -h /tmp/www'
wait_until 60 "$ENVW running" state_is running "$ENVW"
body=$(http http://127.0.0.1:18081/)
[ "$body" = "greeting=hello mode=test token=s3cr3t port=8080" ] || fail "env seen by the app: $body"
! "${C[@]}" workload ls --json | has s3cr3t || fail "secret shown by workload ls"
! grep -q s3cr3t "$T/agent.log" "$T/coordinator.log" || fail "secret in a daemon log"
ok "image env, app env and secret env reach the app"

# --- names (node-agent/dns; dns_test.sh covers the rest) ----------------------
# From inside the gVisor sandbox: resolv.conf names the node resolver on the
# gateway, which answers env.internal (app "env" of project "e2e") with its
# replica's address, and names no app of the project has with NXDOMAIN.
envexec() { call exec "$ENVW" 10 "" -- /bin/sh -c "$1" 2>&1; }
ENVW_ADDR=$(wl address "$ENVW")
envexec 'cat /etc/resolv.conf' | has '^nameserver 10.251.0.1$' || fail "resolv.conf: $(envexec 'cat /etc/resolv.conf')"
envexec 'cat /etc/hosts' | has "^$ENVW_ADDR[[:space:]]env\$" || fail "hosts: $(envexec 'cat /etc/hosts')"
out=$(envexec 'nslookup -type=A env.internal') || true
grep -q "^Address: $ENVW_ADDR\$" <<<"$out" || fail "env.internal from the sandbox: $out"
out=$(envexec 'nslookup -type=A nope.internal') || true
grep -q NXDOMAIN <<<"$out" || fail "nope.internal from the sandbox: $out"
grep -q 'msg="workload DNS resolver serving"' "$T/agent.log" || fail "no resolver start logged"
ok "names: from the sandbox, env.internal is its replica's address ($ENVW_ADDR), nope.internal NXDOMAIN"

# --- exec, logs, metrics -------------------------------------------------------
out=$(call exec "$WEB" 10 "" -- /bin/sh -c 'echo out; echo err >&2; exit 7' 2>"$T/exec.err") && rc=0 || rc=$?
[ "$rc" = 7 ] && [ "$out" = out ] && [ "$(cat "$T/exec.err")" = err ] ||
	fail "exec: rc=$rc out='$out' err='$(cat "$T/exec.err")'"
[ "$(call exec "$WEB" 10 "hello-stdin" -- /bin/cat)" = hello-stdin ] || fail "exec stdin"
call exec "$WEB" 1 "" -- /bin/sleep 30 && rc=0 || rc=$?
[ "$rc" = 124 ] || fail "exec timeout gave $rc"
call exec "$P-nosuch" 5 "" -- /bin/true 2>"$T/exec.err" && fail "exec in a missing workload"
grep -q NOT_FOUND "$T/exec.err" || fail "exec missing workload: $(cat "$T/exec.err")"
ok "exec: output, exit code, stdin, timeout, unknown workload"

call logs "$WEB" 100 >"$T/logs.txt"
grep -q ' s started generation 1 ' "$T/logs.txt" || fail "no start line in logs: $(cat "$T/logs.txt")"
grep -q ' s ready: port 80 answers' "$T/logs.txt" || fail "no ready line"
# Follow from now: only new lines, as they come (httpd -v logs each
# response on stderr).
call logs "$WEB" 0 "$(date +%s%3N)" 4 >"$T/follow.txt" &
FOLLOW=$!
sleep 1
http http://127.0.0.1:18080/ >/dev/null
wait "$FOLLOW" || fail "logs --follow failed"
grep -q ' e .*response:200' "$T/follow.txt" || fail "follow did not stream the new line: $(cat "$T/follow.txt")"
! grep -q 'started generation' "$T/follow.txt" || fail "follow since now sent old lines"
[ "$(call logs "$WEB" 1 | wc -l)" = 1 ] || fail "tail 1"
ok "logs: tail, system lines, follow streams new output"

m=$(call metrics "$WEB")
for k in cpu_ns memory_bytes pids rx_bytes tx_bytes last_activity_ms; do
	v=$(sed -n "s/.* $k=\([0-9]*\).*/\1/p" <<<"$m")
	[ -n "$v" ] && [ "$v" -gt 0 ] || fail "metrics $k: $m"
done
[ "$(call metrics | wc -l)" -ge 2 ] || fail "metrics for every workload"
ok "metrics: $m"

# The Prometheus endpoint (metrics_listen): every workload's series with its
# app, project and replica; the env app answered a request above, so its
# network counters are past zero.
prom() { in_node curl -sf --max-time 5 http://127.0.0.1:7443/metrics; }
prom >"$T/prom.txt" || fail "GET /metrics on the agent failed"
[ "$(in_node curl -s -o /dev/null -w '%{content_type}' http://127.0.0.1:7443/metrics)" = \
	"text/plain; version=0.0.4" ] || fail "/metrics content type"
L="{app=\"env\",project=\"e2e\",replica=\"$ENVW\"}"
prom_value() { sed -n "s/^$1$(sed 's/[]\/$*.^[]/\\&/g' <<<"$L") \([0-9.]*\)$/\1/p" "$T/prom.txt"; }
for family in ink_workload_cpu_seconds_total ink_workload_memory_bytes \
	ink_workload_network_receive_bytes_total ink_workload_network_transmit_bytes_total \
	ink_workload_network_receive_packets_total ink_workload_network_transmit_packets_total; do
	v=$(prom_value "$family")
	[ -n "$v" ] && awk -v v="$v" 'BEGIN { exit !(v > 0) }' ||
		fail "/metrics: no $family$L above 0: $(grep "^$family" "$T/prom.txt")"
	has -x "# TYPE $family \(counter\|gauge\)" <"$T/prom.txt" || fail "/metrics: no TYPE of $family"
done
has -F "ink_workload_state{app=\"env\",project=\"e2e\",replica=\"$ENVW\",state=\"running\"} 1" \
	<"$T/prom.txt" || fail "/metrics: $ENVW not in state running: $(grep "^ink_workload_state.*$ENVW" "$T/prom.txt")"
has -F "replica=\"$WEB\"}" <"$T/prom.txt" || fail "/metrics: nothing about $WEB"
has -x 'ink_agent_workloads [0-9]*' <"$T/prom.txt" || fail "/metrics: no ink_agent_workloads"
[ "$(in_node curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:7443/nope)" = 404 ] ||
	fail "/nope is not 404"
[ "$(in_node curl -s -o /dev/null -w '%{http_code}' -X POST http://127.0.0.1:7443/metrics)" = 405 ] ||
	fail "POST /metrics is not 405"
ok "Prometheus endpoint: $(grep -c '^ink_' "$T/prom.txt") series; $(grep "^ink_workload_cpu_seconds_total$L" "$T/prom.txt" | sed 's/{.*}//')"

# --- memory hog: OOM, reported, restarted with backoff -------------------------
HOG="$P-hog"
put "$HOG" --image "$REG/busybox:1" --memory 64M -- /bin/sh -c \
	'echo hogging; x=aaaaaaaaaaaaaaaa; while :; do x=$x$x; done'
wait_until 90 "OOM reported" reason_has "$HOG" "out of memory"
wait_until 60 "restarted after OOM" restarts_at_least "$HOG" 2
call logs "$HOG" 200 >"$T/hog.txt" || fail "logs of $HOG"
grep -q ' s killed: out of memory' "$T/hog.txt" || fail "OOM not in the workload log: $(cat "$T/hog.txt")"
[ "$(call logs "$HOG" 200 | grep -c ' o hogging')" -ge 2 ] || fail "hog not restarted"
http http://127.0.0.1:18080/ | has 'ink test image' || fail "web hurt by the hog"
rm_wl "$HOG"
ok "memory hog killed at 64M, reported as OOM, restarted with backoff"

# --- fork bomb: held by the pids limit -------------------------------------------
BOMB="$P-bomb"
put "$BOMB" --image "$REG/busybox:1" --pids 16 -- /bin/sh -c 'echo bombing; b() { b | b & }; b; sleep 1000'
wait_until 60 "bomb started" logs_have "$BOMB" bombing
sleep 3
PCG=/sys/fs/cgroup/pids/ink/$BOMB
if [ -d "$PCG" ]; then
	[ "$(cat "$PCG/pids.max")" = $((12 * 16 + 256)) ] || fail "bomb pids.max"
	[ "$(cat "$PCG/pids.current")" -le $((12 * 16 + 256)) ] || fail "pids above the limit"
fi
http http://127.0.0.1:18080/ | has 'ink test image' || fail "web hurt by the fork bomb"
[ "$(call exec "$WEB" 10 "" -- /bin/echo alive 2>"$T/exec.err")" = alive ] || fail "node cannot exec after the fork bomb: $(cat "$T/exec.err")"
rm_wl "$BOMB"
ok "fork bomb contained by the pids limit; other workloads unaffected"

# --- an app that dies is restarted and serves again ------------------------------
R0=$(wl restarts "$WEB")
call exec "$WEB" 10 "" -- /bin/sh -c 'kill 1' || true
wait_until 30 "$WEB restarted" restarts_at_least "$WEB" $((R0 + 1))
wait_until 30 "$WEB running again" state_is running "$WEB"
http http://127.0.0.1:18080/ | has 'ink test image' || fail "restarted web does not serve"
call logs "$WEB" 100 | has ' s killed by signal 15; restart 1 in 1s' ||
	fail "restart not explained in the log: $(call logs "$WEB" 20)"
ok "app killed inside the sandbox: restarted after 1s, serves again on the same address"

# --- crash loop ----------------------------------------------------------------
CRASH="$P-crash"
put "$CRASH" --image "$REG/busybox:1" -- /bin/sh -c 'echo dying; exit 3'
wait_until 90 "crash-loop" state_is crash-loop "$CRASH"
reason_has "$CRASH" "exited with code 3" || fail "crash reason: $(wl reason "$CRASH")"
[ "$(wl restarts "$CRASH")" -ge 5 ] || fail "restarts $(wl restarts "$CRASH")"
[ "$(call logs "$CRASH" 500 | grep -c ' o dying')" -ge 5 ] || fail "crash output not logged"
rm_wl "$CRASH"
ok "crash loop detected after 5 exits, reason 'exited with code 3'"

# --- missing image ---------------------------------------------------------------
BAD="$P-bad"
put "$BAD" --image "$REG/busybox:nosuch" --port 80
wait_until 60 "bad image failed" state_is failed "$BAD"
reason_has "$BAD" "manifest unknown" || fail "bad image reason: $(wl reason "$BAD")"
rm_wl "$BAD"
ok "a missing image is reported as failed: manifest unknown"

# --- private registry -------------------------------------------------------------
PRIVW="$P-private"
put "$PRIVW" --image "$PRIV/team/app:1"
wait_until 60 "$PRIVW running" state_is running "$PRIVW"
rm_wl "$PRIVW"
ok "pull from a private registry with the node's credentials"

# --- metrics history ------------------------------------------------------------
# The agent has sampled every workload every 10 s since it started (a minute
# or more ago by now): GetMetrics with history gives each one's samples,
# oldest first, 10 s apart, with counters that only grow. $ENVW ran all
# along; $WEB was restarted inside its sandbox above, and its traffic
# counters went on counting through it.
# history_ok ID COUNTER...: at least 2 samples, at most 90, ~10 s apart,
# each COUNTER never lower than the sample before.
history_ok() {
	local id=$1
	shift
	call history "$id" >"$T/history-$id.txt" || fail "GetMetrics with history of $id: $(cat "$T/history-$id.txt")"
	awk -v counters="$*" '
		BEGIN { nc = split(counters, c, " ") }
		{ ms = $1; for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] } }
		NR > 1 && (ms - prev < 5000 || ms - prev > 30000) { print "samples " prev " and " ms " are not ~10 s apart"; bad = 1 }
		{ for (k = 1; k <= nc; k++) { if (NR > 1 && v[c[k]] + 0 < last[c[k]] + 0) { print c[k] " went back at " ms; bad = 1 } last[c[k]] = v[c[k]] } }
		{ prev = ms }
		END { if (NR < 2) { print NR " samples"; bad = 1 } if (NR > 90) { print NR " samples, more than 90"; bad = 1 } exit bad }
	' "$T/history-$id.txt" >"$T/history.check" ||
		fail "history of $id: $(cat "$T/history.check"): $(cat "$T/history-$id.txt")"
	tail -n 1 "$T/history-$id.txt" | has ' state=4$' ||
		fail "newest sample of $id is not running: $(tail -n 1 "$T/history-$id.txt")"
}
history_ok "$ENVW" cpu_ns rx_bytes tx_bytes
history_ok "$WEB" cpu_ns rx_bytes tx_bytes
ok "metrics history: $(wc -l <"$T/history-$ENVW.txt") samples of $ENVW and $(wc -l <"$T/history-$WEB.txt") of $WEB, 10 s apart, counters growing"

# --- agent kill -9: the workload keeps serving and is adopted ------------------
PID_BEFORE=$(sandbox_pid "$WEB")
RESTARTS_BEFORE=$(wl restarts "$WEB")
kill -9 "$AGENT_PID"
wait "$AGENT_PID" 2>/dev/null || true
http "http://$WEB_ADDR/" | has 'ink test image' || fail "workload stopped serving with the agent"
start_agent
wait_until 30 "agent re-registered" grep -q 'workload adopted.*'"$WEB" "$T/agent.log"
wait_until 30 "published again" published_answers
[ "$(sandbox_pid "$WEB")" = "$PID_BEFORE" ] || fail "sandbox was restarted (pid changed)"
[ "$(wl restarts "$WEB")" = "$RESTARTS_BEFORE" ] || fail "restart counted"
wait_until 10 "adoption line in the logs" logs_have "$WEB" 'adopted the running sandbox'
ok "agent kill -9 and restart: sandbox pid $PID_BEFORE kept, served throughout, adopted"

# --- coordinator outage changes nothing ------------------------------------------
kill -9 "$COORD_PID"
wait "$COORD_PID" 2>/dev/null || true
wait_until 10 "agent notices" grep -q 'coordinator unreachable' "$T/agent.log"
sleep 2
http http://127.0.0.1:18080/ | has 'ink test image' || fail "web down with the coordinator"
[ "$(sandbox_pid "$WEB")" = "$PID_BEFORE" ] || fail "sandbox touched during the outage"
start_coordinator
wait_until 20 "node ready again" node_ready
ok "coordinator kill -9: workloads untouched, agent reconnects"

# --- a new generation replaces the sandbox -------------------------------------------
put "$WEB" --image "$REG/busybox:1" --port 80 --publish 18080 --memory 128M --cpu 500 --pids 64 \
	--env RELEASE=2
wait_until 60 "generation 2 running" gen_state_is "$WEB" "2 running"
[ "$(sandbox_pid "$WEB")" != "$PID_BEFORE" ] || fail "generation 2 runs in the old sandbox"
[ "$(call exec "$WEB" 10 "" -- /bin/sh -c 'echo $RELEASE')" = 2 ] || fail "new env not applied"
http http://127.0.0.1:18080/ | has 'ink test image' || fail "generation 2 not serving"
ok "new generation replaced the sandbox and serves"

# workload ls drops a workload as soon as it is deleted; the agent says
# when it has removed everything.
removed() { grep -q "msg=\"workload removed\" workload=$1\$" "$T/agent.log"; }

# --- blue-green: two workloads share one published port ------------------------------
# The new replica's app listens only after 5 s: started but not ready, it
# must get no connections (they would be refused) while the old one serves.
GREEN="$P-green"
put "$GREEN" --image "$REG/busybox:1" --port 8080 --publish 18080 -- /bin/sh -c \
	'sleep 5; mkdir -p /tmp/www && echo green >/tmp/www/index.html && exec httpd -f -p $PORT -h /tmp/www'
wait_until 60 "$GREEN joined port 18080" grep -q \
	"msg=\"forward: port shared\" key=$GREEN listen=0.0.0.0 port=18080 members=2" "$T/agent.log"
for i in $(seq 10); do
	http http://127.0.0.1:18080/ | has 'ink test image' ||
		fail "request $i while $GREEN was not ready did not reach $WEB"
done
grep -q "ready: port 8080 answers" <(call logs "$GREEN" 100) &&
	fail "$GREEN was ready already: nothing checked (its app should wait 5 s)"
ok "a second workload joined published port 18080; not ready, it got no connections"
wait_until 60 "$GREEN running" state_is running "$GREEN"
bodies=$(for i in 1 2 3 4 5 6; do http http://127.0.0.1:18080/; echo; done)
[ "$(grep -c '^green$' <<<"$bodies")" = 3 ] && [ "$(grep -c 'ink test image' <<<"$bodies")" -ge 3 ] ||
	fail "both ready replicas should take turns: $bodies"
ok "both replicas ready: connections to port 18080 alternate between them"
# The old replica goes: unpublished before its sandbox stops, the port keeps
# answering from the new one throughout.
rm_wl "$WEB"
wait_until 30 "$WEB unpublished" grep -q "msg=\"forward: port unpublished\" key=$WEB port=18080" \
	"$T/agent.log"
for i in $(seq 10); do
	[ "$(http http://127.0.0.1:18080/)" = green ] || fail "request $i after $WEB was unpublished"
done
wait_until 60 "$WEB removed by the agent" removed "$WEB"
for i in $(seq 5); do
	[ "$(http http://127.0.0.1:18080/)" = green ] || fail "request $i after $WEB was removed"
done
ok "old replica removed: port 18080 kept answering from the new one"

# --- removal leaves nothing behind ---------------------------------------------------
rm_wl "$GREEN"
rm_wl "$ENVW"
wait_until 60 "$GREEN removed by the agent" removed "$GREEN"
wait_until 60 "$ENVW removed by the agent" removed "$ENVW"
no_sandboxes() { [ -z "$(runsc --root "$RUNSC_ROOT" list -quiet)" ]; }
no_sandboxes || fail "sandboxes left: $(runsc --root "$RUNSC_ROOT" list -quiet)"
[ -z "$(wl state "$WEB")$(wl state "$GREEN")$(wl state "$ENVW")" ] ||
	fail "workload ls still lists them"
[ -z "$(ls "$NSDIR")" ] || fail "namespace mounts left: $(ls "$NSDIR")"
[ "$(in_node ip -o link show | grep -c ': ink')" = 0 ] || fail "veths left"
! ls -d /sys/fs/cgroup/*/ink/"$P"-* >/dev/null 2>&1 || fail "cgroups left"
[ "$(jq '.allocations | length' "$T/agent/ipam.json" 2>/dev/null || echo 0)" = 0 ] ||
	fail "addresses left: $(cat "$T/agent/ipam.json")"
[ -z "$(ls "$T/agent/workloads")" ] || fail "workload directories left"
in_node curl -s --max-time 2 http://127.0.0.1:18080/ && fail "published port still open"
ok "removal: no sandbox, namespace, veth, cgroup, address, directory or listener left"

kill -TERM "$AGENT_PID"
wait "$AGENT_PID" || fail "agent exit status $?"
finish
