#!/bin/bash
# bench/wake: scale to zero through the real agent: request to a sleeping
# app -> first byte of its answer, for each sleep tier, against the same
# request to the app awake (the baseline, measured in the same run):
#
#   awake     the app answering, nothing to wake (baseline)
#   paused    idle past its timeout: cgroup frozen, memory kept; the agent
#             holds the connection, thaws, then connects it
#   stopped   --sleep-stop-after=0: the sandbox was removed; the agent
#             holds the connection, runs runsc, waits for the port
#
# and the memory a sleeping app gives back per tier (the sandbox cgroup's
# working set, and the sandbox's processes' PSS, awake vs asleep).
#
#   bench/wake_bench.sh [BUILD_DIR]   (default $INK_BUILD_DIR, else build/release)
#   cmake --build BUILD_DIR --target wake_bench   (with -DINK_BUILD_BENCH=ON)
#
# WAKES (default 20) wakes per tier. Needs root, runsc, docker-registry,
# skopeo, umoci, busybox, nsenter, jq, ip, and ink-agent, ink-coordinator,
# bench/first_byte built in BUILD_DIR. About 2 minutes. Not a test.
#
# Safety: everything runs in a node namespace this script creates, with no
# uplink (tests/integration/node_lib.sh); its cleanup removes sandboxes,
# cgroups, eBPF pins and the namespace even when a step fails.
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
export INK_BUILD_DIR=${1:-${INK_BUILD_DIR:-$ROOT/build/release}}
. "$ROOT/tests/integration/lib.sh"
. "$ROOT/tests/integration/node_lib.sh"

[ "$(id -u)" = 0 ] || fail "needs root (runsc sandboxes, namespaces, cgroups)"
for tool in runsc docker-registry skopeo umoci busybox nsenter jq ip; do
	command -v "$tool" >/dev/null || fail "$tool not installed (scripts/install-deps)"
done
FB="$BIN/bench/first_byte"
for exe in "$AGENT" "$COORD" "$FB"; do [ -x "$exe" ] || fail "$exe not built"; done
WAKES=${WAKES:-20}
P="wake$$"
REG=127.0.0.1:5000
node_init ink-wake
trap node_cleanup EXIT

"$ROOT/tests/images/build_test_images.sh" "$T/layout" >/dev/null
node_registry registry "$REG"
in_node skopeo --insecure-policy copy --dest-tls-verify=false oci:"$T/layout":busybox \
	"docker://$REG/busybox:1" >/dev/null
node_coordinator node-wake

# start_agent STOP_AFTER: an agent whose paused apps are stopped after that
start_agent() {
	"${IN[@]}" "$AGENT" --node-id=node-wake --coordinator=127.0.0.1:7440 \
		--listen=127.0.0.1:7442 --state-dir="$T/agent" --tls-ca="$PKI/ca.crt" \
		--tls-cert="$PKI/node-wake.crt" --tls-key="$PKI/node-wake.key" \
		--reconnect-initial=100ms --reconnect-max=1s --runsc-root="$RUNSC_ROOT" \
		--netns-dir="$NSDIR" --workload-cidr=10.248.0.0/24 --bpf-pin-dir="$BPF_PIN" \
		--metrics-listen=off --insecure-registries="$REG" --stop-grace=1s --resync=1s \
		--sleep-stop-after="$1" --policy-dir="$(node_policies)" run >>"$T/agent.log" 2>&1 &
	AGENT_PID=$!
	PIDS+=("$AGENT_PID")
}
node_ready() { "${C[@]}" nodes | has '^node-wake  *ready'; }
wl() { "${C[@]}" workload ls node-wake --json | jq -r ".[] | select(.workload_id == \"$2\") | .$1"; }
state_is() { [ "$(wl state "$2")" = "$1" ]; }
asleep_in() { state_is sleeping "$2" && wl reason "$2" | has "$1"; }
# fb: first_byte's "first_byte=" of one GET through the published port
fb() {
	local line
	line=$("$FB" --netns "/run/netns/$NODE" --timeout 10000 127.0.0.1:18090) ||
		fail "first_byte: $line"
	sed -n 's/.* first_byte=\([0-9.]*\) .*status=200.*/\1/p' <<<"$line" | grep . ||
		fail "no 200: $line"
}
# stats NAME FILE: "median ... p95 ..." of the numbers in FILE
stats() {
	sort -n "$2" | awk -v name="$1" '{v[NR]=$1} END {
		m = v[int((NR + 1) / 2)]; p = v[int(NR * 0.95 + 0.999)]
		printf "%-8s median %7.1f ms  p95 %7.1f ms  (n=%d, min %.1f, max %.1f)\n", name, m, p, NR, v[1], v[NR] }'
}
median() { sort -n "$1" | awk '{v[NR]=$1} END {print v[int((NR + 1) / 2)]}'; }
# pss ID: PSS (KiB) of the sandbox's host processes (its pids cgroup)
pss() {
	local sum=0 p
	for p in $(cat /sys/fs/cgroup/pids/ink/"$1"/cgroup.procs 2>/dev/null); do
		sum=$((sum + $(awk '/^Pss:/ {s += $2} END {print s + 0}' /proc/"$p"/smaps_rollup 2>/dev/null || echo 0)))
	done
	echo "$sum"
}
cg_mem() { cat /sys/fs/cgroup/memory/ink/"$1"/memory.usage_in_bytes 2>/dev/null || echo 0; }

APP="$P-app"
removed() { [ -z "$(wl state "$APP")" ] && [ ! -d /sys/fs/cgroup/pids/ink/"$APP" ]; }
run_tier() { # TIER STOP_AFTER WHAT_ASLEEP
	local tier=$1
	start_agent "$2"
	wait_until 20 "node registered" node_ready
	"${C[@]}" workload put node-wake "$APP" --image "$REG/busybox:1" --port 80 --publish 18090 \
		--min-replicas 0 --idle-timeout 1s --cpu 1000 >/dev/null
	wait_until 60 "$APP running" state_is running "$APP"
	fb >/dev/null # warm
	if [ "$tier" = paused ]; then
		: >"$T/awake.ms"
		for _ in $(seq 1 "$WAKES"); do fb >>"$T/awake.ms"; done
		MEM_AWAKE=$(cg_mem "$APP")
		PSS_AWAKE=$(pss "$APP")
	fi
	: >"$T/$tier.ms"
	for i in $(seq 1 "$WAKES"); do
		wait_until 30 "$APP asleep ($tier, round $i)" asleep_in "$3" "$APP"
		if [ "$i" = 1 ]; then
			eval "MEM_${tier}=\$(cg_mem \"\$APP\")"
			eval "PSS_${tier}=\$(pss \"\$APP\")"
		fi
		fb >>"$T/$tier.ms"
	done
	"${C[@]}" workload rm node-wake "$APP" >/dev/null
	wait_until 30 "$APP removed" removed
	kill "$AGENT_PID"
	wait "$AGENT_PID" 2>/dev/null || true
}

run_tier paused 1h paused
run_tier stopped 0s stopped

echo "== wake latency: request -> first byte through the agent's published port, busybox httpd, $WAKES wakes a tier"
stats awake "$T/awake.ms"
stats paused "$T/paused.ms"
stats stopped "$T/stopped.ms"
base=$(median "$T/awake.ms")
awk -v b="$base" -v p="$(median "$T/paused.ms")" -v s="$(median "$T/stopped.ms")" 'BEGIN {
	printf "ratio to awake (medians): paused %.1fx (+%.1f ms), stopped %.1fx (+%.1f ms)\n", p / b, p - b, s / b, s - b }'
echo "targets: paused < 50 ms, stopped < 400 ms (medians)"
echo "== memory of the app: awake vs asleep (sandbox cgroup usage; PSS of the sandbox's processes)"
printf "awake    cgroup %6d KiB  PSS %6d KiB\n" $((MEM_AWAKE / 1024)) "$PSS_AWAKE"
printf "paused   cgroup %6d KiB  PSS %6d KiB  (freed: %d KiB)\n" $((MEM_paused / 1024)) "$PSS_paused" $((PSS_AWAKE - PSS_paused))
printf "stopped  cgroup %6d KiB  PSS %6d KiB  (freed: %d KiB)\n" $((MEM_stopped / 1024)) "$PSS_stopped" $((PSS_AWAKE - PSS_stopped))
