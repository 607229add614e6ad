#!/bin/bash
# bench/agent: ink-agent figures with the real daemons, a real registry and
# gVisor sandboxes, each against a baseline measured in the same run where
# a ratio makes sense:
#
#   1. image pull + unpack with a cold cache (a fresh agent state directory
#      per run), ~5 MB busybox:1 and ~50 MB big:1, from the agent's own
#      "image pulled"/"image unpacked" ms= and put -> unpacked; baseline:
#      curl of the same blobs from the registry + sha256sum, and tar xzf
#   2. assignment -> first HTTP 200 through the published port, image cached
#   3. ink-agent RSS with 0 and with 20 idle busybox httpd workloads
#   4. per-workload runsc memory: PSS of the sandbox's processes
#   5. published-port throughput (splice forwarder) against connecting to
#      the workload's address directly, 1 and 4 parallel downloads
#   6. MCP create_app -> first HTTP 200 of the URL it returns, image cached
#      (an AI agent's deploy), timed by a C client (bench/mcp_deploy:
#      libcurl, one MCP session); baseline: the same client's MCP ping and
#      GET of a serving URL
#
#   bench/agent_bench.sh [BUILD_DIR]   (default $INK_BUILD_DIR, else build/release)
#   cmake --build BUILD_DIR --target agent_bench   (with -DINK_BUILD_BENCH=ON)
#
# Needs root, runsc, docker-registry, skopeo, umoci, busybox, nsenter, curl,
# jq, ip (scripts/install-deps), and ink-agent, ink-coordinator and
# bench/mcp_deploy built in BUILD_DIR. Takes 3 to 4 minutes on 2 cores. Not
# a test: ctest never runs it. INK_BENCH_KEEP_LOGS=DIR keeps the daemons'
# logs; COLD_RUNS, LAT_RUNS, IDLE, TPUT_RUNS, MCP_RUNS change the run counts;
# MCP_CPU=N deploys the MCP apps with N cores instead of create_app's
# default (0.25, which also throttles the sandbox's own start).
#
# Safety: as in tests/integration/agent_e2e_test.sh, everything (registry,
# coordinator, agent, sandboxes, every curl) lives in a network namespace
# this script creates (the "node"), which has no uplink; workload ids carry
# the prefix bench<pid>- and addresses come from 10.252.0.0/22 (the tests
# use 10.251.0.0/24). Cleanup (tests/integration/node_lib.sh) kills every process left in the node
# namespace, removes sandboxes, cgroups, namespace mounts and the node
# namespace even when a step fails.
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
export INK_BUILD_DIR=${1:-${INK_BUILD_DIR:-$ROOT/build/release}}
. "$ROOT/tests/integration/lib.sh"
. "$ROOT/tests/integration/node_lib.sh"
. "$ROOT/scripts/lib/mcp.sh"

[ "$(id -u)" = 0 ] || fail "needs root (runsc sandboxes, namespaces, cgroups)"
for tool in runsc docker-registry skopeo umoci busybox nsenter curl jq ip tar sha256sum; do
	command -v "$tool" >/dev/null || fail "$tool not installed (scripts/install-deps)"
done
MCP_DEPLOY="$BIN/bench/mcp_deploy"
for exe in "$AGENT" "$COORD"; do [ -x "$exe" ] || fail "$exe not built"; done
[ -x "$MCP_DEPLOY" ] || fail "$MCP_DEPLOY not built (configure $BIN with -DINK_BUILD_BENCH=ON)"

COLD_RUNS=${COLD_RUNS:-3}
LAT_RUNS=${LAT_RUNS:-10}
IDLE=${IDLE:-20}
TPUT_RUNS=${TPUT_RUNS:-5}
MCP_RUNS=${MCP_RUNS:-5}
MCP_CPU=${MCP_CPU:-}

P="bench$$" # workload id prefix
REG=127.0.0.1:5000
MCP_ADDR=127.0.0.1:7441
CIDR=10.252.0.0/22

NODE_KEEP_LOGS=${INK_BENCH_KEEP_LOGS:-}
node_init ink-bench
trap node_cleanup EXIT

# ------------------------------------------------------------------ helpers
now_ms() { date +%s%3N; }
# stats NUMBER...: "median min max"
stats() {
	printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 }
		END { m = NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2; print m, a[1], a[NR] }'
}
median() { stats "$@" | cut -d' ' -f1; }
# fmt "median min max" DECIMALS -> "M (min-max)"
fmt() {
	local m lo hi
	read -r m lo hi <<<"$1"
	printf "%.${2}f (%.${2}f-%.${2}f)" "$m" "$lo" "$hi"
}
div() { awk -v a="$1" -v b="$2" -v d="${3:-2}" 'BEGIN { printf "%.*f", d, a / b }'; }

# The first agent log line with msg=MSG for workload ID (logfmt).
log_line() { grep -F "msg=\"$2\"" "$1" | grep -E " workload=$3( |$)" | head -n 1 || true; }
log_field() { sed -n "s/.* $1=\\([^ ]*\\).*/\\1/p" <<<"$2"; }
log_ts_ms() { date -d "$(sed -n 's/^ts=\([^ ]*\).*/\1/p' <<<"$1")" +%s%3N; }
has_line() { [ -n "$(log_line "$1" "$2" "$3")" ]; }

# ------------------------------------------------ registry with the images
"$ROOT/tests/images/build_test_images.sh" "$T/layout" --big >/dev/null 2>"$T/build.log" ||
	fail "building test images: $(tail -n 5 "$T/build.log")"
node_registry registry "$REG"
for tag in busybox big; do
	in_node skopeo --insecure-policy copy --dest-tls-verify=false oci:"$T/layout":"$tag" \
		"docker://$REG/$tag:1" >>"$T/push.log" 2>&1 || fail "push $tag: $(tail -n 3 "$T/push.log")"
done

# Layer and config blobs of IMAGE (name in the registry), tag 1.
blobs_of() {
	in_node curl -sf -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
		-H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
		"http://$REG/v2/$1/manifests/1" | jq -r '.config.digest, .layers[].digest'
}
image_bytes() { # compressed bytes of IMAGE's layers
	in_node curl -sf -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
		-H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
		"http://$REG/v2/$1/manifests/1" | jq '[.layers[].size] | add'
}

# ---------------------------------------------------- coordinator and agent
PKI="$T/pki"
"$COORD" --pki-dir="$PKI" pki init >/dev/null
"$COORD" --pki-dir="$PKI" pki issue node-bench >/dev/null
C=("$COORD" --database="$T/db/ink.db" --tls-ca="$PKI/ca.crt"
	--tls-cert="$PKI/ink-coordinator.crt" --tls-key="$PKI/ink-coordinator.key"
	--heartbeat-interval=500ms --node-timeout=3s)
"${IN[@]}" "${C[@]}" --listen=127.0.0.1:7440 --mcp-listen="$MCP_ADDR" serve >>"$T/coordinator.log" 2>&1 &
PIDS+=($!)
wait_until 10 "coordinator started" grep -q 'msg="coordinator started"' "$T/coordinator.log"

A=("$AGENT" --node-id=node-bench --coordinator=127.0.0.1:7440 --listen=127.0.0.1:7442
	--tls-ca="$PKI/ca.crt" --tls-cert="$PKI/node-bench.crt" --tls-key="$PKI/node-bench.key"
	--reconnect-initial=100ms --reconnect-max=1s --runsc-root="$RUNSC_ROOT" --bpf-pin-dir="$BPF_PIN" --netns-dir="$NSDIR"
	--workload-cidr="$CIDR" --insecure-registries="$REG" --stop-grace=2s --resync=1s
	--log-format=logfmt --log-level=info --policy-dir="$(node_policies)")
# start_agent NAME: a fresh state directory $T/NAME, log $T/NAME.log
start_agent() {
	ALOG="$T/$1.log"
	"${IN[@]}" "${A[@]}" --state-dir="$T/$1" run >>"$ALOG" 2>&1 &
	AGENT_PID=$!
	PIDS+=("$AGENT_PID")
	wait_until 20 "agent $1 connected" grep -q 'msg="desired state snapshot"' "$ALOG"
}
stop_agent() {
	kill -TERM "$AGENT_PID"
	wait "$AGENT_PID" || fail "agent exit status $?"
}
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
threads_of() { awk '/^Threads:/ { print $2 }' "/proc/$1/status"; }

put() { "${C[@]}" workload put node-bench "$@" >/dev/null; }
rm_wl() { "${C[@]}" workload rm node-bench "$1" >/dev/null; }
wl() { "${C[@]}" workload ls node-bench --json | jq -r ".[] | select(.workload_id == \"$2\") | .$1"; }
state_is() { [ "$(wl state "$2")" = "$1" ]; }
running_count() { # running_count PREFIX
	"${C[@]}" workload ls node-bench --json |
		jq "[.[] | select((.workload_id | startswith(\"$1\")) and .state == \"running\")] | length"
}
# The agent removed ID: its log says so and runsc no longer lists it.
removed() {
	has_line "$ALOG" "workload removed" "$1" &&
		! runsc --root "$RUNSC_ROOT" list -quiet 2>/dev/null | has -x "$1.ink"
}
rm_and_wait() {
	local id
	for id in "$@"; do rm_wl "$id"; done
	for id in "$@"; do wait_until 60 "$id removed" removed "$id"; done
}
http_code() { in_node curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$1" || true; }

echo "agent_bench: $(nproc) CPUs, $(runsc --version 2>/dev/null | head -n 1), build $BIN"
echo "  (runs: $COLD_RUNS cold pulls, $LAT_RUNS assignment latencies, $IDLE idle workloads, $TPUT_RUNS downloads per path, $MCP_RUNS MCP deploys)"

# ============================================ 1. cold pull + unpack
# Every run: a fresh agent (empty image store) pulls busybox:1, then big:1
# (its own single layer: nothing shared). Baseline, same run: curl the
# same blobs off the registry into files through sha256sum (the agent
# verifies digests as it writes), tar xzf the layers.
baseline_pull() { # baseline_pull IMAGE DIR -> "pull_ms unpack_ms"
	local img=$1 dir=$2 t0 t1 t2 d
	mkdir -p "$dir/blobs" "$dir/rootfs"
	mapfile -t digests < <(blobs_of "$img")
	t0=$(now_ms)
	for d in "${digests[@]}"; do
		[ "$(in_node curl -sf "http://$REG/v2/$img/blobs/$d" | tee "$dir/blobs/${d#sha256:}" |
			sha256sum | cut -d' ' -f1)" = "${d#sha256:}" ] || fail "baseline: blob $d of $img"
	done
	t1=$(now_ms)
	for d in "${digests[@]:1}"; do tar -xzf "$dir/blobs/${d#sha256:}" -C "$dir/rootfs"; done
	t2=$(now_ms)
	rm -rf "$dir"
	echo "$((t1 - t0)) $((t2 - t1))"
}

declare -A PULL UNPACK PUT2UNP BPULL BUNP FETCHED
for r in $(seq -w "$COLD_RUNS"); do
	start_agent "agent-cold$r"
	if [ "$((10#$r))" = 1 ]; then
		RSS_FRESH=$(rss_kib "$AGENT_PID")
		THREADS_FRESH=$(threads_of "$AGENT_PID")
	fi
	for img in busybox big; do
		id="$P-c$r-$img"
		args=(--image "$REG/$img:1" --port 80)
		# The last run's big workload stays for the throughput figures.
		[ "$img" = big ] && args+=(--publish 18500)
		t0=$(now_ms)
		put "$id" "${args[@]}"
		wait_until 120 "$id unpacked" has_line "$ALOG" "image unpacked" "$id"
		pulled=$(log_line "$ALOG" "image pulled" "$id")
		unpacked=$(log_line "$ALOG" "image unpacked" "$id")
		PULL[$img]+=" $(log_field ms "$pulled")"
		UNPACK[$img]+=" $(log_field ms "$unpacked")"
		PUT2UNP[$img]+=" $(($(log_ts_ms "$unpacked") - t0))"
		# the registry client's line for this pull: what it fetched
		FETCHED[$img]=$(grep -F 'msg="image pulled"' "$ALOG" | grep -F " ref=$REG/$img:1 " |
			tail -n 1 | sed -n 's/.* fetched_bytes=\([0-9]*\).*/\1/p')
		wait_until 60 "$id running" state_is running "$id"
		read -r bp bu < <(baseline_pull "$img" "$T/base")
		BPULL[$img]+=" $bp"
		BUNP[$img]+=" $bu"
	done
	if [ "$((10#$r))" -lt "$COLD_RUNS" ]; then
		rm_and_wait "$P-c$r-busybox" "$P-c$r-big"
		stop_agent
	fi
done
# The agent of the last run stays: it keeps busybox:1 and big:1 cached,
# held by its two workloads (a removed workload's image is collected).
KEEP="$P-c$r-busybox"
BIGW="$P-c$r-big"

echo
echo "1. image pull + unpack, cold cache (fresh agent state per run), median (min-max) of $COLD_RUNS, ms"
for img in busybox big; do
	# shellcheck disable=SC2086 # word lists
	{
		p=$(stats ${PULL[$img]})
		u=$(stats ${UNPACK[$img]})
		w=$(stats ${PUT2UNP[$img]})
		bp=$(stats ${BPULL[$img]})
		bu=$(stats ${BUNP[$img]})
	}
	bytes=$(image_bytes "$img")
	printf "   %-10s %5.1f MB  agent: pull %s  unpack %s  put->unpacked %s\n" "$img:1" \
		"$(div "$bytes" 1000000 1)" "$(fmt "$p" 0)" "$(fmt "$u" 0)" "$(fmt "$w" 0)"
	printf "   %-10s %8s  baseline curl|tee|sha256sum %s  tar xzf %s\n" "" "" "$(fmt "$bp" 0)" "$(fmt "$bu" 0)"
	pm=${p%% *} bpm=${bp%% *} um=${u%% *} bum=${bu%% *}
	printf "   %-10s %8s  pull %.0f MB/s (baseline %.0f), agent/baseline: pull %sx, unpack %sx; fetched %s bytes\n" \
		"" "" "$(div "$bytes" "$((pm > 0 ? pm * 1000 : 1))" 3)" \
		"$(div "$bytes" "$((bpm > 0 ? bpm * 1000 : 1))" 3)" \
		"$(div "$pm" "$((bpm > 0 ? bpm : 1))")" "$(div "$um" "$((bum > 0 ? bum : 1))")" "${FETCHED[$img]:-?}"
done

# ====================================== 2. assignment -> first HTTP 200
# Image cached (held by $KEEP). Each run: a new workload id and port, put,
# poll the published port from the node every ~10 ms until 200, remove,
# wait until the agent removed it.
first_200_ms() { # first_200_ms URL TIMEOUT_S -> epoch ms of the first 200
	# shellcheck disable=SC2016 # expanded by the inner shell
	in_node bash -c '
		end=$((SECONDS + $2))
		while [ "$(curl -s -o /dev/null -w "%{http_code}" --max-time 1 "$1")" != 200 ]; do
			[ $SECONDS -lt $end ] || exit 1
			sleep 0.01
		done
		date +%s%3N' _ "$1" "$2"
}
pulls_before=$(grep -c 'msg="image pulled".* fetched_bytes=[1-9]' "$ALOG" || true)
LAT=() NOTIFY=() AGENTPART=() RUNSC_MS=()
for i in $(seq -w "$LAT_RUNS"); do
	id="$P-lat$i"
	port=$((18600 + 10#$i))
	t0=$(now_ms)
	put "$id" --image "$REG/busybox:1" --port 80 --publish "$port"
	t1=$(first_200_ms "http://127.0.0.1:$port/" 60) || fail "$id: no 200 on port $port within 60s"
	LAT+=($((t1 - t0)))
	wanted=$(grep -F 'msg="workload wanted"' "$ALOG" | grep -E " workload=$id( |$)" | head -n 1)
	tw=$(log_ts_ms "$wanted")
	NOTIFY+=($((tw - t0)))
	AGENTPART+=($((t1 - tw)))
	RUNSC_MS+=("$(log_field ms "$(log_line "$ALOG" "workload started" "$id")")")
	rm_and_wait "$id"
done
pulls_after=$(grep -c 'msg="image pulled".* fetched_bytes=[1-9]' "$ALOG" || true)
[ "$pulls_after" = "$pulls_before" ] || fail "the cached image was fetched again during the latency runs"

echo
echo "2. assignment -> first HTTP 200 via the published port, image cached, $LAT_RUNS runs, ms"
printf "   put -> 200       median %s\n" "$(fmt "$(stats "${LAT[@]}")" 0)"
printf "   of which: put -> agent notified %s (coordinator polls the database every 250 ms),\n" \
	"$(fmt "$(stats "${NOTIFY[@]}")" 0)"
printf "             agent notified -> 200 %s, runsc run alone %s\n" \
	"$(fmt "$(stats "${AGENTPART[@]}")" 0)" "$(fmt "$(stats "${RUNSC_MS[@]}")" 0)"

# ==================================== 6. MCP create_app -> first HTTP 200
# What an AI agent sees: create_app over Streamable HTTP answers once the
# app serves, with its URL; then the client GETs that URL until 200. The
# timed client is bench/mcp_deploy (C, libcurl) in the node namespace: its
# own MCP session (opened untimed), create_app, then a GET on a fresh
# connection every 5 ms; it prints the epoch ms when create_app was sent,
# answered, and when the URL first answered 200. busybox:1 stays cached
# (held by $KEEP; the warm-up round deploys it once more, untimed). Each
# round: a fresh app name, mcp_deploy, then delete_app (untimed, through
# scripts/lib/mcp.sh: curl + jq in the node namespace, one session) and
# wait until the agent removed the sandbox. Baselines of the same C client,
# each round once the app serves: the median of 20 MCP pings and of 20
# GETs of the URL (mcp_deploy --ping, --poll).
MCP_URL="http://$MCP_ADDR/mcp"
MCP_TMP="$T/mcp"
MCP_CURL=in_node
MCP_CLIENT=agent_bench
mkdir -p "$MCP_TMP"
mcp_fail() { fail "MCP $1: $2"; }
MCP_KEY=$("${C[@]}" keys create --project bench --role deployer --name agent_bench 2>>"$T/keys.log")
[[ $MCP_KEY =~ ^ink_[0-9a-f]{12}_[0-9a-f]{64}$ ]] || fail "keys create printed '$MCP_KEY'"
mcp_up() { [ "$(in_node curl -s -o /dev/null -w '%{http_code}' -X POST "$MCP_URL")" = 401 ]; }
wait_until 10 "MCP endpoint on $MCP_ADDR" mcp_up
mcp_initialize || fail "MCP initialize: the new key was refused"
MCP_ID=1
# mcp_c ARGS...: bench/mcp_deploy in the node namespace with the key;
# its stderr goes to $T/mcp_deploy.err.
mcp_c() { INK_API_KEY=$MCP_KEY in_node "$MCP_DEPLOY" "$@" 2>"$T/mcp_deploy.err"; }
mcp_c_err() { cat "$T/mcp_deploy.err"; }
# app_replicas NAME: the workload ids of app NAME's replicas on the node
app_replicas() {
	"${C[@]}" workload ls node-bench --json |
		jq -r --arg re "^$1-[0-9a-f]{8}\$" '.[] | select(.workload_id | test($re)) | .workload_id'
}
# mcp_deploy NAME: bench/mcp_deploy's create_app and poll. Sets APP_URL,
# CALL_MS (create_app sent -> answered), DEPLOY_MS (sent -> first 200), and
# from the daemons' logs WANTED_MS (sent -> agent notified of the
# replica), STARTED_MS (sent -> sandbox started), RUNSC_RUN_MS and
# SUCCEEDED_MS (sent -> the coordinator ended the operation).
mcp_deploy() {
	local out t0 t1 t2 replica wanted started succeeded
	out=$(mcp_c "$MCP_URL" "$1" "$REG/busybox:1" 80 ${MCP_CPU:+"$MCP_CPU"}) ||
		fail "mcp_deploy $1 (create_app $REG/busybox:1 port 80${MCP_CPU:+ cpu $MCP_CPU}," \
			"then GET its URL until 200) failed: $(mcp_c_err)"
	read -r t0 t1 t2 APP_URL <<<"$out"
	[[ $t0 =~ ^[0-9]+$ && $t1 =~ ^[0-9]+$ && $t2 =~ ^[0-9]+$ && -n $APP_URL ]] ||
		fail "mcp_deploy $1 printed '$out', not 't0 t1 t2 URL'"
	CALL_MS=$((t1 - t0))
	DEPLOY_MS=$((t2 - t0))
	replica=$(app_replicas "$1" | head -n 1)
	[ -n "$replica" ] || fail "app $1 serves at $APP_URL but node-bench lists no replica of it"
	wanted=$(log_line "$ALOG" "workload wanted" "$replica")
	started=$(log_line "$ALOG" "workload started" "$replica")
	if [ -z "$wanted" ] || [ -z "$started" ]; then
		fail "replica $replica: no 'workload wanted' or 'workload started' line in $ALOG"
	fi
	WANTED_MS=$(($(log_ts_ms "$wanted") - t0))
	STARTED_MS=$(($(log_ts_ms "$started") - t0))
	RUNSC_RUN_MS=$(log_field ms "$started")
	succeeded=$(grep -F 'msg="operation succeeded"' "$T/coordinator.log" | grep -E " app=$1( |$)" |
		head -n 1 || true)
	[ -n "$succeeded" ] || fail "app $1: no 'operation succeeded' line in the coordinator log"
	SUCCEEDED_MS=$(($(log_ts_ms "$succeeded") - t0))
}
# mcp_delete NAME: delete_app, then wait until the agent removed every
# replica. Sets DEL_MS (delete_app sent -> answered, shell client).
mcp_delete() {
	local res ids id t0
	mapfile -t ids < <(app_replicas "$1")
	[ "${#ids[@]}" -gt 0 ] || fail "app $1: no replica among node-bench's workloads"
	MCP_ID=$((MCP_ID + 1))
	t0=$(now_ms)
	res=$(mcp_tool "$MCP_ID" delete_app "{\"name\": \"$1\"}")
	DEL_MS=$(($(now_ms) - t0))
	[ "$(jq -r '.structuredContent.status' <<<"$res")" = deleted ] ||
		fail "request: tools/call delete_app {\"name\": \"$1\"}; response: $res"
	for id in "${ids[@]}"; do wait_until 60 "$id removed" removed "$id"; done
}
mcp_deploy "$P-mwarm"
MCP_WARM=$DEPLOY_MS
mcp_delete "$P-mwarm"
pulls_before=$(grep -c 'msg="image pulled".* fetched_bytes=[1-9]' "$ALOG" || true)
MCP_LAT=() MCP_WANTED=() MCP_STARTED=() MCP_RUNSC=() MCP_SUCCEEDED=() MCP_ANSWERED=() MCP_AFTER=()
MCP_DEL=() MCP_PING=() MCP_PROBE=()
for i in $(seq "$MCP_RUNS"); do
	mcp_deploy "$P-m$i"
	MCP_LAT+=("$DEPLOY_MS")
	MCP_WANTED+=("$WANTED_MS")
	MCP_STARTED+=($((STARTED_MS - WANTED_MS)))
	MCP_RUNSC+=("$RUNSC_RUN_MS")
	MCP_SUCCEEDED+=($((SUCCEEDED_MS - STARTED_MS)))
	MCP_ANSWERED+=($((CALL_MS - SUCCEEDED_MS)))
	MCP_AFTER+=($((DEPLOY_MS - CALL_MS)))
	MCP_PROBE+=("$(mcp_c --poll "$APP_URL")") ||
		fail "mcp_deploy --poll $APP_URL (app $P-m$i, serving): $(mcp_c_err)"
	MCP_PING+=("$(mcp_c --ping "$MCP_URL")") || fail "mcp_deploy --ping $MCP_URL: $(mcp_c_err)"
	mcp_delete "$P-m$i"
	MCP_DEL+=("$DEL_MS")
done
pulls_after=$(grep -c 'msg="image pulled".* fetched_bytes=[1-9]' "$ALOG" || true)
[ "$pulls_after" = "$pulls_before" ] || fail "the cached image was fetched again during the MCP runs"
mcp_close
MCP_URL_SEEN=$APP_URL

# ============================================= 5. published-port throughput
# (before the idle workloads: 20 sandboxes would share the 2 CPUs)
ADDR=$(wl address "$BIGW")
[[ $ADDR == 10.252.* ]] || fail "$BIGW address '$ADDR'"
PUB_URL="http://127.0.0.1:18500/big.bin"
DIRECT_URL="http://$ADDR/big.bin"
BIG_SIZE=$((45 << 20))
dl() { # dl URL -> MB/s of one download
	local out
	out=$(in_node curl -s -o /dev/null -w '%{size_download} %{time_total}' --max-time 60 "$1") ||
		fail "download $1 failed"
	read -r size secs <<<"$out"
	[ "$size" = "$BIG_SIZE" ] || fail "download $1: $size bytes, expected $BIG_SIZE"
	div "$size" "$(awk -v s="$secs" 'BEGIN { print s * 1000000 }')" 1
}
dl4() { # dl4 URL -> aggregate MB/s of 4 parallel downloads
	# shellcheck disable=SC2016 # expanded by the inner shell
	in_node bash -c '
		t0=$(date +%s%N)
		for i in 1 2 3 4; do
			curl -s -o /dev/null -w "%{size_download}\n" --max-time 120 "$1" &
		done >"$2"
		wait
		t1=$(date +%s%N)
		echo $(( (t1 - t0) / 1000 ))' _ "$1" "$T/dl4.out" >"$T/dl4.us"
	local total
	total=$(awk '{ s += $1 } END { print s }' "$T/dl4.out")
	[ "$total" = $((4 * BIG_SIZE)) ] || fail "4 parallel downloads of $1: $total bytes"
	div "$total" "$(cat "$T/dl4.us")" 1
}
dl "$DIRECT_URL" >/dev/null # warm the sandbox's page cache
dl "$PUB_URL" >/dev/null
TP=() TD=() TP4=() TD4=()
for i in $(seq "$TPUT_RUNS"); do
	if [ $((i % 2)) = 1 ]; then
		TP+=("$(dl "$PUB_URL")")
		TD+=("$(dl "$DIRECT_URL")")
	else
		TD+=("$(dl "$DIRECT_URL")")
		TP+=("$(dl "$PUB_URL")")
	fi
done
for i in 1 2 3; do
	TP4+=("$(dl4 "$PUB_URL")")
	TD4+=("$(dl4 "$DIRECT_URL")")
done

# ============================================= 3 + 4. RSS and sandbox PSS
rm_and_wait "$KEEP" "$BIGW"
RSS_CHURN=$(rss_kib "$AGENT_PID")
THREADS_CHURN=$(threads_of "$AGENT_PID")
# Moderate parallelism: 5 at a time, each batch running before the next.
all_running() { [ "$(running_count "$P-idle")" = "$1" ]; }
t0=$SECONDS
for b in $(seq 0 5 $((IDLE - 1))); do
	for i in $(seq $((b + 1)) $((b + 5 < IDLE ? b + 5 : IDLE))); do
		put "$(printf '%s-idle%02d' "$P" "$i")" --image "$REG/busybox:1" --port 80 --publish $((18700 + i)) --memory 64M
	done
	want=$((b + 5 < IDLE ? b + 5 : IDLE))
	wait_until 180 "$want idle workloads running" all_running "$want"
done
START_S=$((SECONDS - t0))
for i in $(seq "$IDLE"); do
	[ "$(http_code "http://127.0.0.1:$((18700 + i))/")" = 200 ] || fail "idle workload $i does not answer"
done
sleep 3 # let them settle
RSS_IDLE=$(rss_kib "$AGENT_PID")
THREADS_IDLE=$(threads_of "$AGENT_PID")
PSS=() RSS=() CGMEM=() NPROC=()
for i in $(seq -f %02g "$IDLE"); do
	id="$P-idle$i"
	pss=0 rss=0 n=0
	while read -r pid; do
		[ -r "/proc/$pid/smaps_rollup" ] || continue
		read -r p r < <(awk '/^Pss:/ { p = $2 } /^Rss:/ { r = $2 } END { print p + 0, r + 0 }' \
			"/proc/$pid/smaps_rollup")
		pss=$((pss + p)) rss=$((rss + r)) n=$((n + 1))
	done <"/sys/fs/cgroup/pids/ink/$id/cgroup.procs"
	[ "$n" -gt 0 ] || fail "no processes in the pids cgroup of $id"
	PSS+=("$(div "$pss" 1024 2)")
	RSS+=("$(div "$rss" 1024 2)")
	NPROC+=("$n")
	CGMEM+=("$(div "$(cat "/sys/fs/cgroup/memory/ink/$id/memory.usage_in_bytes")" 1048576 2)")
done

echo
echo "3. ink-agent RSS (VmRSS)"
printf "   fresh agent, 0 workloads            %6.1f MiB  (%s threads)\n" "$(div "$RSS_FRESH" 1024 1)" "$THREADS_FRESH"
printf "   after the runs above, 0 workloads   %6.1f MiB  (%s threads)\n" "$(div "$RSS_CHURN" 1024 1)" "$THREADS_CHURN"
printf "   %d idle busybox httpd, published    %6.1f MiB  (%s threads): +%s MiB per workload\n" \
	"$IDLE" "$(div "$RSS_IDLE" 1024 1)" "$THREADS_IDLE" \
	"$(div "$((RSS_IDLE - RSS_CHURN))" "$((IDLE * 1024))" 2)"
printf "   (%d workloads started 5 at a time in %d s)\n" "$IDLE" "$START_S"

echo
echo "4. per-workload runsc memory, $IDLE idle busybox httpd (--memory 64M), median (min-max), MiB"
printf "   PSS of the sandbox's processes   %s   (%s processes per sandbox)\n" \
	"$(fmt "$(stats "${PSS[@]}")" 1)" "$(median "${NPROC[@]}")"
printf "   RSS of the same processes        %s\n" "$(fmt "$(stats "${RSS[@]}")" 1)"
printf "   memory cgroup usage              %s\n" "$(fmt "$(stats "${CGMEM[@]}")" 1)"

echo
echo "5. published-port throughput, 45 MiB /www/big.bin with curl in the node namespace, MB/s (10^6 B/s)"
# Medians, and the best runs: on a busy machine the best run is what the
# path can do, the median what it did.
best() { stats "$@" | cut -d' ' -f3; }
printf "   1 download, %d runs each, interleaved: published %s  direct %s\n" "$TPUT_RUNS" \
	"$(fmt "$(stats "${TP[@]}")" 0)" "$(fmt "$(stats "${TD[@]}")" 0)"
printf "      published/direct: medians %s, best runs %s (target >= 0.90)\n" \
	"$(div "$(median "${TP[@]}")" "$(median "${TD[@]}")")" "$(div "$(best "${TP[@]}")" "$(best "${TD[@]}")")"
printf "   4 parallel downloads, aggregate, 3 runs each: published %s  direct %s\n" \
	"$(fmt "$(stats "${TP4[@]}")" 0)" "$(fmt "$(stats "${TD4[@]}")" 0)"
printf "      published/direct: medians %s, best runs %s\n" \
	"$(div "$(median "${TP4[@]}")" "$(median "${TD4[@]}")")" "$(div "$(best "${TP4[@]}")" "$(best "${TD4[@]}")")"

echo
echo "6. MCP create_app -> first HTTP 200 of the URL it returns, image cached, $MCP_RUNS runs," \
	"${MCP_CPU:-0.25 (default)} CPU, ms"
MCP_MED=$(median "${MCP_LAT[@]}")
printf "   create_app sent -> 200   median %s   target < 1000: %s\n" \
	"$(fmt "$(stats "${MCP_LAT[@]}")" 0)" "$(awk -v m="$MCP_MED" 'BEGIN { print (m < 1000 ? "met" : "MISSED") }')"
printf "   of which: sent -> agent notified %s, -> sandbox started %s (runsc run alone %s),\n" \
	"$(fmt "$(stats "${MCP_WANTED[@]}")" 0)" "$(fmt "$(stats "${MCP_STARTED[@]}")" 0)" \
	"$(fmt "$(stats "${MCP_RUNSC[@]}")" 0)"
printf "             -> operation succeeded %s (status report, controller pass, URL probe),\n" \
	"$(fmt "$(stats "${MCP_SUCCEEDED[@]}")" 0)"
printf "             -> create_app answered %s, -> 200 at the client's poll %s\n" \
	"$(fmt "$(stats "${MCP_ANSWERED[@]}")" 0)" "$(fmt "$(stats "${MCP_AFTER[@]}")" 0)"
printf "   baseline, same client (bench/mcp_deploy, libcurl), medians of 20 per run: MCP ping %s,\n" \
	"$(fmt "$(stats "${MCP_PING[@]}")" 1)"
printf "             GET of the serving URL on a fresh connection %s\n" \
	"$(fmt "$(stats "${MCP_PROBE[@]}")" 1)"
printf "   delete_app (shell client) answered after %s; warm-up deploy %d ms; URLs like %s\n" \
	"$(fmt "$(stats "${MCP_DEL[@]}")" 0)" "$MCP_WARM" "$MCP_URL_SEEN"

# ------------------------------------------------------------- wind down
ids=()
for i in $(seq -f %02g "$IDLE"); do ids+=("$P-idle$i"); done
t0=$SECONDS
rm_and_wait "${ids[@]}"
stop_agent
[ -z "$(runsc --root "$RUNSC_ROOT" list -quiet)" ] || fail "sandboxes left after removal"
echo
echo "($IDLE idle workloads removed in $((SECONDS - t0)) s; whole run $SECONDS s; load average $(cut -d' ' -f1-3 /proc/loadavg))"
# What the agents complained about, by message.
problems=$(cat "$T"/agent-*.log | sed -n 's/.* level=\(warn\|error\) .*msg=\("[^"]*"\|[^ ]*\).*/\1 \2/p' |
	sort | uniq -c | sort -rn)
if [ -n "$problems" ]; then
	echo "(agent log warnings/errors: count level msg)"
	while read -r line; do echo "   $line"; done <<<"$problems"
else
	echo "(agent logs: no warnings or errors)"
fi
