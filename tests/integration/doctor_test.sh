#!/bin/bash
# `ink-agent doctor` on this machine (root): with a PKI made by
# `ink-coordinator pki`, the shipped policies and state directories under
# the scratch directory, every check is PASS or WARN and the exit status 0,
# text and --json alike; then one thing broken at a time (a policy with a
# syntax error, a certificate of another CA, a runsc that is not there)
# gives FAIL, the right fix and exit 1; a bad flag gives 2. Afterwards
# nothing of the doctor's is left: no cgroup /ink/doctor-*, no pin
# directory /sys/fs/bpf/ink-doctor-*.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/node_lib.sh"

[ "$(id -u)" = 0 ] || fail "needs root"
command -v jq >/dev/null || fail "needs jq"

PKI="$T/pki"
"$COORD" --pki-dir="$PKI" pki init >/dev/null
"$COORD" --pki-dir="$PKI" pki issue node-doc >/dev/null
mkdir -p "$T/other"
"$COORD" --pki-dir="$T/other" pki init >/dev/null
"$COORD" --pki-dir="$T/other" pki issue node-doc >/dev/null
POL=$(node_policies)

OPTS=(--policy-dir="$POL" --tls-ca="$PKI/ca.crt" --tls-cert="$PKI/node-doc.crt"
	--tls-key="$PKI/node-doc.key" --state-dir="$T/state" --runsc-root="$T/runsc"
	--netns-dir="$T/netns" --metrics-listen=off --listen=127.0.0.1:0
	--bpf-pin-dir=/sys/fs/bpf/ink)

leftovers() {
	local found
	found=$(ls -d /sys/fs/cgroup/*/ink/doctor-* /sys/fs/cgroup/ink/doctor-* \
		/sys/fs/bpf/ink-doctor-* 2>/dev/null || true)
	[ -z "$found" ] || fail "left behind: $found"
}

# doctor EXPECTED_RC OUTFILE ARGS...
doctor() {
	local want=$1 out=$2 rc=0
	shift 2
	"$AGENT" --config=/dev/null doctor "$@" >"$out" 2>"$out.err" || rc=$?
	if [ "$rc" != "$want" ]; then
		cat "$out" "$out.err" >&2
		fail "doctor $* exited $rc, want $want"
	fi
}

start=$SECONDS

# A healthy node: PASS or WARN everywhere, exit 0.
doctor 0 "$T/ok.txt" "${OPTS[@]}"
cat "$T/ok.txt"
has -E '^PASS  root ' "$T/ok.txt" || fail "root not PASS"
for c in root runsc cgroups nftables bpf netns policies certificates clock directories listen dns-user; do
	has -E "^(PASS|WARN)  $c " "$T/ok.txt" || fail "check $c not PASS/WARN"
done
! has -E '^FAIL' "$T/ok.txt" || fail "a FAIL on a healthy node"
has -E '^PASS  certificates .*CN node-doc' "$T/ok.txt" || fail "certificates not checked"
has -E '^PASS  policies .*default' "$T/ok.txt" || fail "policies not listed"
has -E '^[0-9]+ passed, [0-9]+ warnings?, 0 failed$' "$T/ok.txt" || fail "no summary line"
leftovers
ok "healthy node: every check PASS or WARN, exit 0"

doctor 0 "$T/ok.json" --json "${OPTS[@]}"
[ "$(jq -r .ok "$T/ok.json")" = true ] || fail "json ok is not true"
[ "$(jq '.checks | length' "$T/ok.json")" = 12 ] || fail "json: not 12 checks"
[ "$(jq '[.checks[] | select(.status == "fail")] | length' "$T/ok.json")" = 0 ] ||
	fail "json: a fail"
jq -e '.checks[] | select(.name == "runsc") | .detail | test("version")' "$T/ok.json" >/dev/null ||
	fail "json: runsc version not reported"
leftovers
ok "--json: ok=true, 12 checks, none fail"

# A policy file with a syntax error: FAIL with FILE:LINE.
printf '# broken\nallow nowhere-at-all\n' >"$POL/broken.policy"
doctor 1 "$T/pol.txt" "${OPTS[@]}"
has -E '^FAIL  policies .*broken\.policy:2:' "$T/pol.txt" || fail "no FILE:LINE: $(cat "$T/pol.txt")"
has -F '  fix: correct the file at FILE:LINE (ink-agent policy check FILE' "$T/pol.txt" ||
	fail "no policy fix"
doctor 1 "$T/pol.json" --json --check=policies "${OPTS[@]}"
[ "$(jq -r .ok "$T/pol.json")" = false ] || fail "json ok is not false"
[ "$(jq -r '.checks[0].status' "$T/pol.json")" = fail ] || fail "json policies not fail"
rm "$POL/broken.policy"
ok "policy syntax error: FAIL with FILE:LINE, exit 1"

# A certificate of another CA.
doctor 1 "$T/ca.txt" "${OPTS[@]}" --tls-cert="$T/other/node-doc.crt" \
	--tls-key="$T/other/node-doc.key"
has -E '^FAIL  certificates .*against CA' "$T/ca.txt" || fail "other CA not found: $(cat "$T/ca.txt")"
has -F "  fix: install the cluster's ca.crt as tls_ca" "$T/ca.txt" || fail "no certificate fix"
ok "certificate of another CA: FAIL, exit 1"

# No runsc there.
doctor 1 "$T/runsc.txt" "${OPTS[@]}" --runsc=/nonexistent/runsc
has -E '^FAIL  runsc +runsc=/nonexistent/runsc: cannot run' "$T/runsc.txt" ||
	fail "missing runsc not found: $(cat "$T/runsc.txt")"
has -F '  fix: install gVisor (Debian/Ubuntu: apt-get install runsc' "$T/runsc.txt" ||
	fail "no runsc fix"
ok "runsc not there: FAIL, exit 1"

# Usage errors: 2.
doctor 2 "$T/usage.txt" --no-such-flag
doctor 2 "$T/usage.txt" --check=nosuch
ok "usage errors: exit 2"

leftovers
[ $((SECONDS - start)) -lt 15 ] || fail "took $((SECONDS - start)) s"
ok "nothing left behind, $((SECONDS - start)) s"
finish
