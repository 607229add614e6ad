# Shared helpers for the shell integration tests: a scratch directory that
# is removed on exit, processes that are killed on exit (even on failure),
# and polling with a deadline instead of fixed sleeps.
set -euo pipefail

BIN=${INK_BUILD_DIR:?INK_BUILD_DIR must point at the build directory}
COORD="$BIN/coordinator/ink-coordinator"
AGENT="$BIN/node-agent/ink-agent"
T=$(mktemp -d /tmp/ink-it-XXXXXX)
PIDS=()

cleanup() {
	local rc=$?
	for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
	if [ $rc -ne 0 ]; then
		echo "--- logs of the failed run ---"
		for f in "$T"/*.log; do
			[ -f "$f" ] || continue
			echo "== $f: warnings and errors"
			grep -E 'level=(warn|error)' "$f" | tail -n 60 || true
			echo "== $f: last lines"
			tail -n 40 "$f"
		done
		# What runsc and the workloads said: runsc's own errors go to the
		# workload's stderr when it fails to start one.
		find "$T" \( -name '*.runsc.log' -o -path '*/logs/*' \) -type f -size +0 2>/dev/null |
			head -n 40 | while read -r f; do
				echo "== $f"
				tail -n 15 "$f"
			done
	fi
	rm -rf "$T"
	exit $rc
}
trap cleanup EXIT

fail() {
	echo "FAIL: $*" >&2
	exit 1
}

PASSED=0
ok() {
	PASSED=$((PASSED + 1))
	echo "ok - $*"
}

# The closing line CI reads.
finish() {
	echo "$(basename "$0" .sh): $PASSED passed, 0 failed"
}

# has [GREP OPTIONS] PATTERN: stdin matches. Use it instead of "| grep -q":
# grep -q stops reading at the first match, the writer then dies of
# SIGPIPE, and under pipefail the whole pipeline counts as failed.
has() { grep "$@" >/dev/null; }

# wait_until SECONDS DESCRIPTION COMMAND...
wait_until() {
	local secs=$1 what=$2
	shift 2
	local end=$((SECONDS + secs))
	while ! "$@" >/dev/null 2>&1; do
		[ $SECONDS -lt $end ] || fail "timed out after ${secs}s waiting for: $what"
		sleep 0.1
	done
}

# The port a daemon bound, from its "started" log line.
logged_port() {
	sed -n 's/.*msg="coordinator started".* port=\([0-9]*\).*/\1/p' "$1" | tail -n 1
}
