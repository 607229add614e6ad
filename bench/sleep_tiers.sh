#!/bin/bash
# bench/sleep_tiers: what it costs to wake a sleeping app, per sleep tier a
# scale-to-zero node could use, with the real runsc (gVisor, netstack, the
# flags and bundle ink-agent uses) and busybox httpd:
#
#   paused      runsc pause; wake: runsc resume (memory and sockets kept)
#   frozen      the sandbox's cgroup freezer; wake: one write to it (what
#               pause is without runsc's command line in the way)
#   stopped     runsc kill + delete, the network namespace kept; wake:
#               eth0's address and route back, runsc create + start (and,
#               as a second series, runsc run --detach as the agent does)
#   checkpoint  runsc checkpoint --image-path (the sandbox ends) + delete;
#               wake: eth0's address and route back, runsc restore --detach
#
# Wake latency: from just before the first wake command ("the request
# arrives") to the first byte of the answer to GET / (bench/first_byte,
# CLOCK_MONOTONIC), ROUNDS times per tier: median, p95, min, max. Memory:
# PSS, USS and RSS of every process in the sandbox's cgroup and the memory
# cgroup's usage, awake and asleep. Also: a SYN sent to a paused or frozen
# app (answered, or lost and retransmitted?), CPU used while asleep, and
# the checkpoint/restore variants that do not work, with runsc's own words.
#
#   bench/sleep_tiers.sh [BUILD_DIR]   (default $INK_BUILD_DIR, else build/release)
#
# Env: ROUNDS (20), IDLE_MS (300: asleep this long before each wake),
# HOLD_MS (300: a SYN sent this long before the wake), TIERS (default
# "paused frozen stopped checkpoint checks"), RAW=DIR (keeps the samples,
# one file per series, and runsc's output there). Needs root, runsc, busybox,
# ip, jq, and tests/integration/bundle_gen and bench/first_byte built in
# BUILD_DIR (-DINK_BUILD_BENCH=ON). About 4 minutes on 2 cores.
#
# Safety: runsc state in /run/ink-tiers-PID, cgroups under /ink-tiers-PID,
# two network namespaces of its own (ink-tiers-PID-n with the client,
# ink-tiers-PID-w with the workload, joined by a veth pair, no uplink); runsc
# runs in private mount namespaces (bench/first_byte @netstack=). Whatever
# happens (but kill -9), the sandbox, any process left in its cgroups, the
# cgroups, the namespaces and the files go; a frozen sandbox is thawed
# first, since every runsc command waits forever on one.
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
export INK_BUILD_DIR=${1:-${INK_BUILD_DIR:-$ROOT/build/release}}
. "$ROOT/tests/integration/lib.sh"

[ "$(id -u)" = 0 ] || fail "needs root (runsc sandboxes, namespaces, cgroups)"
for tool in runsc busybox ip jq; do
	command -v "$tool" >/dev/null || fail "$tool not installed (scripts/install-deps)"
done
GEN="$BIN/tests/integration/bundle_gen"
FB="$BIN/bench/first_byte"
[ -x "$GEN" ] || fail "$GEN not built"
[ -x "$FB" ] || fail "$FB not built (configure $BIN with -DINK_BUILD_BENCH=ON)"

ROUNDS=${ROUNDS:-20}
IDLE_MS=${IDLE_MS:-300}
HOLD_MS=${HOLD_MS:-300}
TIERS=${TIERS:-paused frozen stopped checkpoint checks}

RROOT=/run/ink-tiers-$$ # runsc --root
ID="tiers$$.ink"        # the sandbox, named as the agent names them
CGP=ink-tiers-$$        # cgroup parent
NSN=ink-tiers-$$-n      # the client ("node") side
NSW=ink-tiers-$$-w      # the workload's namespace
ADDR=10.254.0.2
GW=10.254.0.1
TARGET=$ADDR:80
BUNDLE=$T/bundle
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)

if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
	CG=/sys/fs/cgroup/$CGP/web
	CG_MEM=$CG CG_CPU=$CG MEM_USAGE=memory.current
	FREEZE_FILE=$CG/cgroup.freeze FROZEN=1 THAWED=0 FROZEN_WHEN="frozen 1" FROZEN_IN=$CG/cgroup.events
else
	CG_MEM=/sys/fs/cgroup/memory/$CGP/web CG_CPU=/sys/fs/cgroup/cpuacct/$CGP/web
	MEM_USAGE=memory.usage_in_bytes
	FREEZE_FILE=/sys/fs/cgroup/freezer/$CGP/web/freezer.state FROZEN=FROZEN THAWED=THAWED
	FROZEN_WHEN=FROZEN FROZEN_IN=$FREEZE_FILE # FREEZING until every task is
fi

# ------------------------------------------------------------------ cleanup
# Processes in our cgroups (a sandbox runsc lost track of), thawed first:
# a frozen process does not die.
cgroup_procs() {
	local f
	for f in /sys/fs/cgroup/*/"$CGP"/*/cgroup.procs /sys/fs/cgroup/"$CGP"/*/cgroup.procs; do
		[ -f "$f" ] && cat "$f"
	done
	return 0
}
kill_cgroup_procs() {
	local p
	thaw
	for _ in $(seq 50); do
		p=$(cgroup_procs)
		[ -n "$p" ] || return 0
		# shellcheck disable=SC2086 # one pid a word
		kill -9 $p 2>/dev/null || true
		sleep 0.1
	done
}
thaw() { [ ! -f "$FREEZE_FILE" ] || echo "$THAWED" >"$FREEZE_FILE" 2>/dev/null || true; }
tiers_cleanup() {
	# A frozen sandbox cannot answer runsc: thaw it first.
	thaw
	timeout 30 runsc --root "$RROOT" kill "$ID" KILL >/dev/null 2>&1 || true
	timeout 30 runsc --root "$RROOT" delete --force "$ID" >/dev/null 2>&1 || true
	kill_cgroup_procs
	local d
	for d in /sys/fs/cgroup/*/"$CGP" /sys/fs/cgroup/"$CGP"; do
		[ -d "$d" ] || continue
		find "$d" -mindepth 1 -depth -type d -exec rmdir {} + 2>/dev/null || true
		rmdir "$d" 2>/dev/null || echo "sleep_tiers: cgroup $d left behind" >&2
	done
	ip netns del "$NSN" 2>/dev/null || true
	ip netns del "$NSW" 2>/dev/null || true
	rm -rf "$RROOT"
}
# lib.sh's cleanup reads the exit status first: hand it the script's.
# shellcheck disable=SC2154 # rc is the trap's own
trap 'rc=$?; tiers_cleanup; (exit $rc); cleanup' EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------------ helpers
RS=(runsc --root "$RROOT" --network=sandbox)
# What the agent adds to run (node-agent/runtime/runsc.c): runsc's errors
# as JSON, the sandbox's own logs (info level) in a directory.
RSLOG=(--log="$RROOT/web.runsc.log" --log-format=json --debug-log="$RROOT/web.logs/")
NETSTACK=@netstack=/run/netns/$NSW
# The agent sets eth0 up again before every start: netstack took the
# address and routes of the sandbox that ended.
ADDR_UP=(ip -n "$NSW" addr replace "$ADDR/24" dev eth0)
ROUTE_UP=(ip -n "$NSW" route replace default via "$GW")
NET_UP=("${ADDR_UP[@]}" ";" "${ROUTE_UP[@]}") # first_byte's command list
net_up() { "${ADDR_UP[@]}" && "${ROUTE_UP[@]}"; }

# fb [first_byte options] HOST:PORT|- COMMANDS...: the client in the node
# namespace; runsc's and the sandbox's output go to cmds.log.
fb() { "$FB" --netns "/run/netns/$NSN" "$@" </dev/null 2>>"$T/cmds.log"; }
# field LINE KEY: KEY's value in first_byte's output
field() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<" $1"; }
# wake NAME LINE: checks the answer, records first_byte as NAME's sample
wake_ok() {
	[ "$(field "$2" status)" = 200 ] || fail "$1: no HTTP 200: $2 ($(tail -n 3 "$T/cmds.log"))"
}
# stats FILE: "median p95 min max n" (p95: nearest rank)
stats() {
	sort -g "$1" | awk '{ a[NR] = $1 }
		END { if (!NR) { print "- - - - 0"; exit }
			m = NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
			r = int(NR * 0.95); if (r < NR * 0.95) r++
			printf "%.1f %.1f %.1f %.1f %d\n", m, a[r], a[1], a[NR], NR }'
}
# show FILE: "median M p95 P min A max B"
show() {
	local m p lo hi n
	read -r m p lo hi n < <(stats "$1")
	echo "median $m p95 $p min $lo max $hi"
}
med() { stats "$1" | cut -d' ' -f1; }
p95() { stats "$1" | cut -d' ' -f2; }
met() { awk -v v="$1" -v t="$2" 'BEGIN { print (v != "-" && v < t) ? "met" : "MISSED" }'; }
# target FILE MS: "target < MS ms: median met|MISSED, p95 met|MISSED"
target() { echo "target < $2 ms: median $(met "$(med "$1")" "$2"), p95 $(met "$(p95 "$1")" "$2")"; }
mib() { awk -v k="$1" 'BEGIN { v = k / 1024; if (v < 0.05 && v > -0.05) v = 0; printf "%.1f", v }'; }
sub() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f\n", a - b }'; }

# mem: "PSS_KiB USS_KiB RSS_KiB CGROUP_BYTES NPROCS" of the processes in
# the sandbox's cgroup (USS: private pages, surely freed when they go; PSS
# also counts a share of pages other sandboxes map, such as runsc's own)
mem() {
	local pss=0 uss=0 rss=0 n=0 cg=0 p a b c
	if [ -f "$CG_MEM/cgroup.procs" ]; then
		for p in $(cat "$CG_MEM/cgroup.procs" 2>/dev/null || true); do
			read -r a b c < <(awk '/^Pss:/ { p = $2 } /^Private_(Clean|Dirty):/ { u += $2 }
				/^Rss:/ { r = $2 } END { print p + 0, u + 0, r + 0 }' \
				"/proc/$p/smaps_rollup" 2>/dev/null || echo 0 0 0)
			pss=$((pss + a))
			uss=$((uss + b))
			rss=$((rss + c))
			n=$((n + 1))
		done
		cg=$(cat "$CG_MEM/$MEM_USAGE" 2>/dev/null || echo 0)
	fi
	echo "$pss $uss $rss $cg $n"
}
# mem_text "PSS USS RSS CG N": human
mem_text() {
	local pss uss rss cg n
	read -r pss uss rss cg n <<<"$1"
	echo "PSS $(mib "$pss") MiB (USS $(mib "$uss"), RSS $(mib "$rss"), cgroup $(mib $((cg / 1024))) MiB, $n processes)"
}
# freed "MEM_AWAKE" "MEM_ASLEEP": "P MiB PSS (U MiB USS, C MiB cgroup)"
freed() {
	local p1 u1 c1 p2 u2 c2
	read -r p1 u1 _ c1 _ <<<"$1"
	read -r p2 u2 _ c2 _ <<<"$2"
	echo "$(mib $((p1 - p2))) MiB PSS ($(mib $((u1 - u2))) MiB USS, $(mib $(((c1 - c2) / 1024))) MiB cgroup)"
}
# host processes of this runsc root still alive (cgroup or not)
root_procs() { pgrep -f -- "--root=$RROOT " | wc -l || true; }
# cpu_rate SECONDS: CPU ms per s the sandbox's cgroup used meanwhile
cpu_rate() {
	local a b
	a=$(cpu_ns)
	sleep "$1"
	b=$(cpu_ns)
	awk -v a="$a" -v b="$b" -v s="$1" 'BEGIN { printf "%.2f", (b - a) / 1e6 / s }'
}
cpu_ns() {
	if [ -f "$CG_CPU/cpuacct.usage" ]; then
		cat "$CG_CPU/cpuacct.usage"
	else
		echo $(($(sed -n 's/^usage_usec //p' "$CG_CPU/cpu.stat") * 1000))
	fi
}
idle() { sleep "$(awk -v m="$1" 'BEGIN { printf "%.3f", m / 1000 }')"; }

start_fresh() {
	local line
	line=$(fb "$TARGET" "${NET_UP[@]}" ";" "$NETSTACK" "${RS[@]}" "${RSLOG[@]}" run --detach \
		--bundle "$BUNDLE" "$ID") || fail "runsc run: $(tail -n 5 "$T/cmds.log")"
	wake_ok "start" "$line"
}
destroy() {
	thaw
	"${RS[@]}" kill "$ID" KILL >/dev/null 2>&1 || true
	"${RS[@]}" delete --force "$ID" >/dev/null 2>&1 || true
	kill_cgroup_procs
}
freeze() {
	echo "$FROZEN" >"$FREEZE_FILE"
	for _ in $(seq 500); do
		grep -qx "$FROZEN_WHEN" "$FROZEN_IN" && return 0
		sleep 0.01
	done
	fail "the sandbox's cgroup did not freeze"
}
wants() { [[ " $TIERS " == *" $1 "* ]]; }

# -------------------------------------------------------------------- setup
# The busybox test image's files (tests/images/build_test_images.sh) and
# its command, httpd -f -v -p 80 -h /www, on port 80 as there.
R=$BUNDLE/rootfs
mkdir -p "$R/bin" "$R/www" "$R/etc" "$R/tmp" "$RROOT"
cp "$(command -v busybox)" "$R/bin/busybox"
for applet in sh httpd ls cat echo wget sleep; do ln -s busybox "$R/bin/$applet"; done
echo '<h1>ink test image</h1>' >"$R/www/index.html"
head -c $((4 << 20)) /dev/urandom >"$R/www/blob.bin"
echo 'root:x:0:0:root:/:/bin/sh' >"$R/etc/passwd"
# The agent's config.json (bundle.c, via bundle_gen), with what the agent
# adds for a real workload: its network namespace and its cgroup.
"$GEN" "$R" 64 'exec /bin/httpd -f -v -p 80 -h /www' |
	jq --arg ns "/run/netns/$NSW" --arg cg "/$CGP/web" \
		'.linux.namespaces |= map(if .type == "network" then {type: "network", path: $ns} else . end)
		| .linux.cgroupsPath = $cg' >"$BUNDLE/config.json"

ip netns add "$NSN"
ip netns add "$NSW"
ip -n "$NSN" link add veth0 type veth peer name eth0 netns "$NSW"
ip -n "$NSN" addr add "$GW/24" dev veth0
ip -n "$NSN" link set veth0 up
ip -n "$NSN" link set lo up
ip -n "$NSW" link set eth0 up
ip -n "$NSW" link set lo up

echo "sleep tiers: busybox httpd under $(runsc --version | head -n 1), network=sandbox, platform" \
	"$(runsc flags 2>&1 | grep -A1 -e '-platform string' | sed -n 's/.*(default "\(.*\)").*/\1/p')," \
	"$ROUNDS rounds per tier, asleep ${IDLE_MS} ms before each wake; load $LOAD0"

start_fresh
for _ in 1 2 3 4 5; do fb "$TARGET" >/dev/null; done
sleep 1
MEM_RUN=$(mem)
CPU_RUN=$(cpu_rate 2)
echo "awake: $(mem_text "$MEM_RUN"); CPU while idle $CPU_RUN ms/s"
SUMMARY=()

# ------------------------------------------------------------- 1. paused
if wants paused; then
	: >"$T/p.wake"
	: >"$T/p.resume"
	for r in $(seq "$ROUNDS"); do
		"${RS[@]}" pause "$ID"
		idle "$IDLE_MS"
		if [ "$r" = 1 ]; then
			MEM_P=$(mem)
			CPU_P=$(cpu_rate 2)
		fi
		line=$(fb "$TARGET" "${RS[@]}" resume "$ID") || fail "resume: $(tail -n 3 "$T/cmds.log")"
		wake_ok paused "$line"
		field "$line" first_byte >>"$T/p.wake"
		field "$line" cmd1 >>"$T/p.resume"
	done
	# What any runsc command costs: start-up of the Go binary, one request.
	: >"$T/p.state"
	for r in $(seq "$ROUNDS"); do
		field "$(fb - "${RS[@]}" state "$ID")" cmd1 >>"$T/p.state"
	done
	# A SYN to the paused app, the wake HOLD_MS later.
	: >"$T/p.hs"
	: >"$T/p.after"
	: >"$T/p.retrans"
	for r in $(seq "$ROUNDS"); do
		"${RS[@]}" pause "$ID"
		line=$(fb --early --hold "$HOLD_MS" "$TARGET" "${RS[@]}" resume "$ID") ||
			fail "resume: $(tail -n 3 "$T/cmds.log")"
		wake_ok paused-syn "$line"
		field "$line" connect >>"$T/p.hs"
		sub "$(field "$line" first_byte)" "$HOLD_MS" >>"$T/p.after"
		field "$line" retrans >>"$T/p.retrans"
	done
	echo
	echo "1. paused (runsc pause / runsc resume), $ROUNDS wakes, ms"
	echo "   wake (resume -> first byte)  $(show "$T/p.wake")"
	echo "   runsc resume alone          $(show "$T/p.resume")"
	echo "   runsc state, awake          $(show "$T/p.state") (any runsc command's own cost)"
	echo "   asleep: $(mem_text "$MEM_P"); freed $(freed "$MEM_RUN" "$MEM_P"); CPU $CPU_P ms/s"
	echo "   SYN sent while paused, resume ${HOLD_MS} ms later: handshake $(show "$T/p.hs")"
	echo "     answer after resume began $(show "$T/p.after"); SYN retransmits: max $(sort -n "$T/p.retrans" | tail -n 1)"
	SUMMARY+=("paused wake median $(med "$T/p.wake") ms p95 $(p95 "$T/p.wake") ($(target "$T/p.wake" 50)), frees $(freed "$MEM_RUN" "$MEM_P"), SYN while asleep: handshake at $(med "$T/p.hs") ms")
fi

# ------------------------------------------------------------- 2. frozen
if wants frozen; then
	: >"$T/f.wake"
	: >"$T/f.thaw"
	for r in $(seq "$ROUNDS"); do
		freeze
		idle "$IDLE_MS"
		if [ "$r" = 1 ]; then
			MEM_F=$(mem)
			CPU_F=$(cpu_rate 2)
		fi
		line=$(fb "$TARGET" "@write=$FREEZE_FILE" "$THAWED") || fail "thaw: $(tail -n 3 "$T/cmds.log")"
		wake_ok frozen "$line"
		field "$line" first_byte >>"$T/f.wake"
		field "$line" cmd1 >>"$T/f.thaw"
	done
	: >"$T/f.hs"
	: >"$T/f.after"
	: >"$T/f.retrans"
	for r in $(seq "$ROUNDS"); do
		freeze
		line=$(fb --early --hold "$HOLD_MS" "$TARGET" "@write=$FREEZE_FILE" "$THAWED") ||
			fail "thaw: $(tail -n 3 "$T/cmds.log")"
		wake_ok frozen-syn "$line"
		sub "$(field "$line" connect)" "$HOLD_MS" >>"$T/f.hs"
		sub "$(field "$line" first_byte)" "$HOLD_MS" >>"$T/f.after"
		field "$line" retrans >>"$T/f.retrans"
	done
	# Past the client's first SYN retransmit (1 s): are both SYNs held?
	freeze
	LONG=$(fb --early --hold 1500 "$TARGET" "@write=$FREEZE_FILE" "$THAWED") ||
		fail "thaw: $(tail -n 3 "$T/cmds.log")"
	echo
	echo "2. frozen (the sandbox's cgroup freezer; wake = one write to $(basename "$FREEZE_FILE")), $ROUNDS wakes, ms"
	echo "   wake (thaw -> first byte)    $(show "$T/f.wake")"
	echo "   the thaw write alone        $(show "$T/f.thaw")"
	echo "   asleep: $(mem_text "$MEM_F"); freed $(freed "$MEM_RUN" "$MEM_F"); CPU $CPU_F ms/s"
	echo "   SYN sent while frozen, thaw ${HOLD_MS} ms later: handshake after thaw $(show "$T/f.hs")"
	echo "     answer after thaw $(show "$T/f.after"); SYN retransmits: max $(sort -n "$T/f.retrans" | tail -n 1)"
	echo "   thaw 1500 ms after the SYN: handshake at $(field "$LONG" connect) ms," \
		"first byte $(field "$LONG" first_byte) ms, SYN retransmits $(field "$LONG" retrans)"
	SUMMARY+=("frozen wake median $(med "$T/f.wake") ms p95 $(p95 "$T/f.wake") ($(target "$T/f.wake" 50)), frees $(freed "$MEM_RUN" "$MEM_F"), SYN while asleep: handshake $(med "$T/f.hs") ms after thaw")
fi

# ------------------------------------------------------------ 3. stopped
if wants stopped; then
	for f in s.kill s.delete s.wake s.net s.create s.start s.accept s.byte r.wake r.run r.accept; do
		: >"$T/$f"
	done
	LEFT_S=
	for series in create-start run; do
		for r in $(seq "$ROUNDS"); do
			line=$(fb - "${RS[@]}" kill "$ID" KILL ";" "${RS[@]}" delete "$ID") ||
				fail "kill/delete: $(tail -n 3 "$T/cmds.log")"
			if [ "$series" = create-start ]; then
				field "$line" cmd1 >>"$T/s.kill"
				field "$line" cmd2 >>"$T/s.delete"
			fi
			if [ "$r" = 1 ] && [ "$series" = create-start ]; then
				MEM_S=$(mem)
				LEFT_S="$(root_procs) host processes of the runsc root, cgroup $([ -d "$CG_MEM" ] && echo kept || echo removed)"
			fi
			idle "$IDLE_MS"
			if [ "$series" = create-start ]; then
				line=$(fb "$TARGET" "${NET_UP[@]}" ";" "$NETSTACK" "${RS[@]}" "${RSLOG[@]}" create \
					--bundle "$BUNDLE" "$ID" ";" "$NETSTACK" "${RS[@]}" "${RSLOG[@]}" start "$ID") ||
					fail "create/start: $(tail -n 3 "$T/cmds.log")"
				wake_ok stopped "$line"
				field "$line" first_byte >>"$T/s.wake"
				awk -v a="$(field "$line" cmd1)" -v b="$(field "$line" cmd2)" 'BEGIN { print a + b }' >>"$T/s.net"
				field "$line" cmd3 >>"$T/s.create"
				field "$line" cmd4 >>"$T/s.start"
				sub "$(field "$line" connect)" "$(field "$line" cmds)" >>"$T/s.accept"
				sub "$(field "$line" first_byte)" "$(field "$line" connect)" >>"$T/s.byte"
			else
				line=$(fb "$TARGET" "${NET_UP[@]}" ";" "$NETSTACK" "${RS[@]}" "${RSLOG[@]}" run --detach \
					--bundle "$BUNDLE" "$ID") || fail "run: $(tail -n 3 "$T/cmds.log")"
				wake_ok stopped-run "$line"
				field "$line" first_byte >>"$T/r.wake"
				field "$line" cmd3 >>"$T/r.run"
				sub "$(field "$line" connect)" "$(field "$line" cmds)" >>"$T/r.accept"
			fi
		done
	done
	echo
	echo "3. stopped (runsc kill + delete, network namespace kept), $ROUNDS wakes per series, ms"
	echo "   going to sleep: kill $(show "$T/s.kill"); delete $(show "$T/s.delete")"
	echo "   wake, create + start (-> first byte) $(show "$T/s.wake")"
	echo "     eth0 address + route (2 x ip)  $(show "$T/s.net")"
	echo "     runsc create                   $(show "$T/s.create")"
	echo "     runsc start                    $(show "$T/s.start")"
	echo "     start -> port accepts          $(show "$T/s.accept")"
	echo "     accepted -> first byte         $(show "$T/s.byte")"
	echo "   wake, run --detach (-> first byte)   $(show "$T/r.wake")"
	echo "     runsc run --detach             $(show "$T/r.run")"
	echo "     run -> port accepts            $(show "$T/r.accept")"
	echo "   asleep: $(mem_text "$MEM_S"); $LEFT_S; freed $(freed "$MEM_RUN" "$MEM_S")"
	SUMMARY+=("stopped wake median $(med "$T/r.wake") ms p95 $(p95 "$T/r.wake") with run --detach ($(target "$T/r.wake" 400)), median $(med "$T/s.wake") p95 $(p95 "$T/s.wake") with create+start ($(target "$T/s.wake" 400)), frees $(freed "$MEM_RUN" "$MEM_S")")
fi

# --------------------------------------------------------- 4. checkpoint
IMG=$T/image
if wants checkpoint; then
	for f in c.ckpt c.delete c.size c.wake c.restore c.accept; do : >"$T/$f"; done
	for r in $(seq "$ROUNDS"); do
		rm -rf "$IMG"
		mkdir -p "$IMG"
		line=$(fb - "${RS[@]}" checkpoint --image-path "$IMG" "$ID" ";" "${RS[@]}" delete "$ID") ||
			fail "checkpoint: $(tail -n 3 "$T/cmds.log")"
		field "$line" cmd1 >>"$T/c.ckpt"
		field "$line" cmd2 >>"$T/c.delete"
		du -sk "$IMG" | cut -f1 >>"$T/c.size"
		[ "$r" = 1 ] && MEM_C=$(mem) && LEFT_C=$(root_procs)
		idle "$IDLE_MS"
		line=$(fb "$TARGET" "${NET_UP[@]}" ";" "$NETSTACK" "${RS[@]}" "${RSLOG[@]}" restore --detach \
			--image-path "$IMG" --bundle "$BUNDLE" "$ID") || fail "restore: $(tail -n 3 "$T/cmds.log")"
		wake_ok checkpoint "$line"
		field "$line" first_byte >>"$T/c.wake"
		field "$line" cmd3 >>"$T/c.restore"
		sub "$(field "$line" connect)" "$(field "$line" cmds)" >>"$T/c.accept"
	done
	sleep 1
	MEM_CR=$(mem)
	echo
	echo "4. checkpoint (runsc checkpoint --image-path + delete; wake: runsc restore --detach), $ROUNDS wakes, ms"
	echo "   going to sleep: checkpoint $(show "$T/c.ckpt"); delete $(show "$T/c.delete")"
	echo "   image on disk, KiB             $(show "$T/c.size")"
	echo "   wake (-> first byte)           $(show "$T/c.wake")"
	echo "     runsc restore --detach       $(show "$T/c.restore")"
	echo "     restore -> port accepts      $(show "$T/c.accept")"
	echo "   asleep: $(mem_text "$MEM_C"); $LEFT_C host processes; freed $(freed "$MEM_RUN" "$MEM_C")"
	echo "   awake after $ROUNDS restores: $(mem_text "$MEM_CR")"
	SUMMARY+=("checkpoint wake median $(med "$T/c.wake") ms p95 $(p95 "$T/c.wake") ($(target "$T/c.wake" 400)), checkpoint $(med "$T/c.ckpt") ms, image $(med "$T/c.size") KiB, frees $(freed "$MEM_RUN" "$MEM_C")")
fi

# ------------------------------------------------ 5. variants that fail
# Each from a running sandbox; each prints what runsc said.
# runsc_err: the last error runsc logged in --log, else its stderr
runsc_err() {
	local e
	e=$(jq -r 'select(.level == "error" or .level == "fatal") | .msg' "$RROOT/web.runsc.log" 2>/dev/null | tail -n 1)
	[ -n "$e" ] || e=$(tail -n 2 "$1" | tr '\n' ' ')
	echo "$e"
}
http_now() {
	local line
	line=$(fb --timeout "${1:-2000}" "$TARGET") || true
	echo "status $(field "$line" status) after $(field "$line" first_byte) ms ($(field "$line" attempts) connection attempts)"
}
sandbox_status() { "${RS[@]}" state "$ID" 2>/dev/null | jq -r .status 2>/dev/null || echo none; }
running_again() {
	destroy
	start_fresh
}
if wants checks; then
	echo
	echo "5. checkpoint/restore variants"
	[ "$(sandbox_status)" = running ] || running_again
	# a. restore without eth0's address back
	rm -rf "$IMG" "$RROOT/web.logs"
	mkdir -p "$IMG" "$RROOT/web.logs"
	fb - "${RS[@]}" checkpoint --image-path "$IMG" "$ID" ";" "${RS[@]}" delete "$ID" >/dev/null
	fb - "$NETSTACK" "${RS[@]}" "${RSLOG[@]}" restore --detach --image-path "$IMG" --bundle "$BUNDLE" "$ID" >/dev/null ||
		true
	warn=$(grep -h 'No usable IP addresses' "$RROOT"/web.logs/* 2>/dev/null | head -n 1 | sed 's/^.*\] //')
	echo "   a. restore, eth0 without its address (netstack took it): sandbox $(sandbox_status), HTTP $(http_now 2000); runsc: \"${warn:-no warning}\""
	# b. restore without the tmpfs over /proc/sys/net
	destroy
	net_up
	out=$("${RS[@]}" restore --detach --image-path "$IMG" --bundle "$BUNDLE" "$ID" 2>&1 </dev/null) &&
		b=works || b="fails: $out"
	echo "   b. restore in the host's mount namespace (no tmpfs over /proc/sys/net): $b"
	destroy
	# c. the same image once more, done right: images can be restored again
	line=$(fb "$TARGET" "${NET_UP[@]}" ";" "$NETSTACK" "${RS[@]}" "${RSLOG[@]}" restore --detach \
		--image-path "$IMG" --bundle "$BUNDLE" "$ID") || true
	echo "   c. the same image restored again (address back, private mount namespace): HTTP $(field "$line" status) after $(field "$line" first_byte) ms"
	# d. create, then restore into the created sandbox
	destroy
	net_up
	fb - "$NETSTACK" "${RS[@]}" create --bundle "$BUNDLE" "$ID" >/dev/null
	out=$("$FB" - "$NETSTACK" "${RS[@]}" restore --detach --image-path "$IMG" --bundle "$BUNDLE" "$ID" 2>&1 </dev/null) &&
		d=works || d="fails: $(grep -v '^first_byte' <<<"$out" | tail -n 1)"
	echo "   d. runsc create, then runsc restore of the same id: $d; afterwards runsc knows the sandbox: $(sandbox_status), processes left in its cgroup: $( (wc -l <"$CG_MEM/cgroup.procs") 2>/dev/null || echo 0)"
	destroy
	# e. checkpoint --leave-running (with and without eth0's address back first)
	for addr in without with; do
		start_fresh
		rm -rf "$IMG"
		mkdir -p "$IMG"
		[ "$addr" = without ] || net_up
		"$FB" --timeout 6000 - "$NETSTACK" "${RS[@]}" checkpoint --leave-running --image-path "$IMG" "$ID" \
			</dev/null >"$T/leave.out" 2>&1 &
		lr=$!
		PIDS+=("$lr")
		sleep 3
		st=$(sandbox_status)
		h=$(http_now 1500)
		if kill -0 "$lr" 2>/dev/null; then still="still running after 3 s"; else still="returned"; fi
		wait "$lr" || true
		echo "   e. checkpoint --leave-running, $addr eth0's address back before: the command $still; sandbox $st; HTTP $h; image $(du -sk "$IMG" | cut -f1) KiB"
		destroy
	done
	# f. runsc start (create + start) without the tmpfs over /proc/sys/net
	net_up
	fb - "$NETSTACK" "${RS[@]}" create --bundle "$BUNDLE" "$ID" >/dev/null
	out=$("${RS[@]}" start "$ID" 2>&1) && f=works || f="fails: $out"
	echo "   f. runsc start in the host's mount namespace: $f"
	destroy
	# g. hostinet (--network=host: the namespace's own kernel stack)
	net_up
	runsc --root "$RROOT" --network=host run --detach --bundle "$BUNDLE" "$ID" </dev/null >>"$T/cmds.log" 2>&1
	h=$(http_now 5000)
	rm -rf "$IMG"
	mkdir -p "$IMG"
	out=$(runsc --root "$RROOT" --network=host checkpoint --image-path "$IMG" "$ID" 2>&1) &&
		g=works || g="fails: $out"
	echo "   g. --network=host (HTTP $h): checkpoint $g"
	destroy
fi

if [ -n "${RAW:-}" ]; then
	mkdir -p "$RAW"
	cp "$T"/?.* "$T/cmds.log" "$RAW"/
fi
echo
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)
SUMMARY+=("load $LOAD0 -> $LOAD1")
(
	IFS=';'
	echo "summary: ${SUMMARY[*]}" | sed 's/;/; /g'
)
