#!/bin/bash
# The node resolver (node-agent/dns) against the real kernel (root): the
# agent's own code binds <gateway>:53 in a "node" network namespace and
# starts the confined ink-dns helper for a table of fake workloads; queries
# come from real workload namespaces (veth pairs made by node-agent/net).
#
#   names resolve within a project only (case-insensitive, AAAA without
#   records, NXDOMAIN for other projects' apps and unknown names); unknown
#   sources and queries arriving on another workload's veth are REFUSED;
#   other names go to a fake upstream (UDP, and TCP after a truncated
#   answer); a silent upstream gives SERVFAIL; table changes apply;
#   malformed packets do not kill the helper; a killed helper comes back;
#   the helper runs without capabilities, as an unprivileged user, with
#   no_new_privs and a seccomp filter.
#
# Safety: everything lives in namespaces this test creates (the node has no
# uplink; the fake upstream listens on the node's loopback), the namespace
# mounts under /run/ink-dt-PID; cleanup runs on any exit.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/node_lib.sh"

[ "$(id -u)" = 0 ] || fail "needs root (network namespaces, veth pairs, port 53)"
command -v nsenter >/dev/null || fail "nsenter (util-linux) not installed"

NETDRV="$BIN/tests/integration/net_driver"
DNSDRV="$BIN/tests/integration/dns_driver"
DQ="$BIN/tests/integration/dns_query"
HELPER="$BIN/node-agent/ink-dns"
P="dt$$"
node_init ink-dt
trap node_cleanup EXIT

CIDR=10.253.0.0/24
GW=10.253.0.1
STATE="$T/net"
netdrv() { in_node "$NETDRV" --state "$STATE" --netns-dir "$NSDIR" --cidr "$CIDR" "$@" 2>>"$T/net.log"; }
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<" $2"; }
expect() { [ "$2" = "$3" ] || fail "$1: got '$2', want '$3'"; }
# ask WORKLOAD ARGS...: dns_query q from inside a workload namespace
ask() {
	local wl=$1
	shift
	nsenter --net="$NSDIR/$wl" "$DQ" q "$@" 2>&1 || true
}
rcode() { sed -n 's/^rcode=\([A-Z]*\).*/\1/p' <<<"$1"; }
addrs() { sed -n 's/^A \([0-9.]*\) .*/\1/p' <<<"$1" | sort | tr '\n' ' ' | sed 's/ $//'; }

# --- workloads: p1/web (two replicas), p1/api, p2/db, and a stranger ---
declare -A IP IFN
for w in web1 web2 api db stranger; do
	out=$(netdrv setup "$w") || fail "setup $w"
	IP[$w]=$(field ip "$out")
	IFN[$w]=$(field ifname "$out")
done
table() {
	{
		echo "# address project app ifname serving forward"
		echo "${IP[web1]} p1 web ${IFN[web1]} 1 1"
		echo "${IP[web2]} p1 web ${IFN[web2]} ${WEB2_SERVING:-1} 1"
		echo "${IP[api]} p1 api ${API_IF:-${IFN[api]}} 1 1"
		echo "${IP[db]} p2 db ${IFN[db]} 1 ${DB_FORWARD:-1} ${DB_NAMES:-}"
	} >"$T/table"
}
table

# --- the fake upstream, on the node's loopback ---------------------------
"${IN[@]}" "$DQ" serve 127.0.0.1:5353 192.0.2.7 >"$T/upstream.log" 2>&1 &
PIDS+=($!)
wait_until 10 "fake upstream" grep -q serving "$T/upstream.log"

# --- the resolver ----------------------------------------------------------
"${IN[@]}" "$DNSDRV" --cidr "$CIDR" --state "$T/dns" --table "$T/table" \
	--upstream 127.0.0.1:5353 --helper "$HELPER" >"$T/driver.out" 2>"$T/driver.log" &
DRIVER=$!
PIDS+=("$DRIVER")
wait_until 20 "resolver ready" grep -q '^ready pid=' "$T/driver.out"
HPID=$(sed -n 's/^ready pid=//p' "$T/driver.out")
in_node ss -lunp | has "$GW:53" || fail "nothing bound to $GW:53/udp: $(in_node ss -lunp)"
in_node ss -ltnp | has "$GW:53" || fail "nothing bound to $GW:53/tcp"
ok "resolver serving on $GW:53 (UDP and TCP), helper pid $HPID"

# --- confinement ----------------------------------------------------------
st=/proc/$HPID/status
for cap in CapInh CapPrm CapEff CapBnd CapAmb; do
	expect "$cap" "$(awk -v k="$cap:" '$1 == k {print $2}' "$st")" 0000000000000000
done
expect "Seccomp" "$(awk '$1 == "Seccomp:" {print $2}' "$st")" 2
expect "NoNewPrivs" "$(awk '$1 == "NoNewPrivs:" {print $2}' "$st")" 1
for id in $(awk '$1 == "Uid:" || $1 == "Gid:" {print $2, $3, $4, $5}' "$st"); do
	[ "$id" != 0 ] || fail "helper runs with uid or gid 0: $(grep -E '^(Uid|Gid)' "$st")"
done
expect "helper root" "$(readlink "/proc/$HPID/root")" "$T/dns/root"
nfd=$(ls "/proc/$HPID/fd" | wc -l)
[ "$nfd" -le 7 ] || fail "helper holds $nfd descriptors: $(ls -l "/proc/$HPID/fd")"
ok "helper: no capabilities in any set, uid $(awk '$1 == "Uid:" {print $2}' "$st"), no_new_privs, seccomp filter, chroot, $nfd descriptors"

# --- names within a project ----------------------------------------------
out=$(ask api "$GW" web.internal)
expect "web.internal from api" "$(rcode "$out")" NOERROR
expect "web.internal addresses" "$(addrs "$out")" "$(printf '%s\n' "${IP[web1]}" "${IP[web2]}" | sort | tr '\n' ' ' | sed 's/ $//')"
grep -q 'aa=1' <<<"$out" || fail "not authoritative: $out"
grep -q 'ttl=5$' <<<"$out" || fail "TTL is not 5: $out"
out=$(ask web1 "$GW" API.Internal)
expect "API.Internal from web1" "$(addrs "$out")" "${IP[api]}"
out=$(ask web1 --tcp "$GW" api.internal)
expect "api.internal over TCP" "$(addrs "$out")" "${IP[api]}"
out=$(ask web1 "$GW" api.internal AAAA)
expect "AAAA rcode" "$(rcode "$out")" NOERROR
grep -q 'an=0' <<<"$out" || fail "AAAA has records: $out"
ok "same project: <app>.internal gives the replicas (A, TTL 5, any case, UDP and TCP); AAAA has none"

out=$(ask web1 "$GW" db.internal)
expect "p2's db from p1" "$(rcode "$out")" NXDOMAIN
out=$(ask db "$GW" web.internal)
expect "p1's web from p2" "$(rcode "$out")" NXDOMAIN
out=$(ask db "$GW" db.internal)
expect "db from db" "$(addrs "$out")" "${IP[db]}"
for n in nope.internal a.web.internal 5.0.253.10.in-addr.arpa; do
	expect "$n" "$(rcode "$(ask web1 "$GW" "$n" A)")" NXDOMAIN
done
ok "another project's app, unknown names and reverse names of the workload range: NXDOMAIN"

expect "stranger (not in the table)" "$(rcode "$(ask stranger "$GW" web.internal)")" REFUSED
expect "stranger, external name" "$(rcode "$(ask stranger "$GW" www.example.com)")" REFUSED
expect "the node itself" "$(rcode "$(in_node "$DQ" q "$GW" web.internal)")" REFUSED
ok "unknown sources: REFUSED"

# --- forwarding -------------------------------------------------------------
out=$(ask web1 "$GW" www.Example.COM)
expect "forwarded rcode" "$(rcode "$out")" NOERROR
expect "forwarded answer" "$(addrs "$out")" 192.0.2.7
grep -q '^udp www.Example.COM. 1 ' "$T/upstream.log" || fail "upstream did not see the query: $(cat "$T/upstream.log")"
grep -q 'internal' "$T/upstream.log" && fail ".internal names reached the upstream: $(cat "$T/upstream.log")"
grep -q 'in-addr' "$T/upstream.log" && fail "reverse names of the range reached the upstream"
out=$(ask web1 "$GW" big.example)
grep -q 'tc=1' <<<"$out" || fail "truncated answer not relayed over UDP: $out"
out=$(ask web1 --tcp "$GW" big.example)
[ "$(grep -c '^A ' <<<"$out")" = 100 ] || fail "TCP retry of a truncated answer: $(head -3 <<<"$out")"
grep -q '^tcp big.example. 1 ' "$T/upstream.log" || fail "no TCP query upstream"
t0=$(date +%s%N)
out=$(ask web1 "$GW" slow.example)
expect "silent upstream" "$(rcode "$out")" SERVFAIL
ms=$((($(date +%s%N) - t0) / 1000000))
[ "$ms" -lt 3000 ] || fail "SERVFAIL after ${ms} ms"
ok "other names forwarded (case kept; TC relayed; over TCP after truncation; SERVFAIL in ${ms} ms for a silent upstream)"

# --- table changes ----------------------------------------------------------
WEB2_SERVING=0 API_IF=${IFN[web1]} DB_FORWARD=0 table
# reload N WHAT: SIGHUP, then the driver's Nth answer (it waits up to 15 s
# for the helper to apply the table) must be "reloaded".
answers() { [ "$(grep -c '^reload' "$T/driver.out")" -ge "$1" ]; }
reload() {
	kill -HUP "$DRIVER"
	# answers counts again on every try (a "$(...)" argument would be
	# counted once, before the driver could answer)
	wait_until 20 "$2: the driver's answer" answers "$1"
	[ "$(grep '^reload' "$T/driver.out" | sed -n "$1p" | cut -d' ' -f1)" = reloaded ] ||
		fail "$2: the helper did not apply the table: $(tail -n 5 "$T/driver.log")"
}
reload 1 "table reloaded"
expect "web after web2 stopped serving" "$(addrs "$(ask web2 "$GW" web.internal)")" "${IP[web1]}"
# api's queries now "arrive on web1's veth" as far as the table says: an
# address that does not match its interface is a stranger.
expect "api on the wrong veth" "$(rcode "$(ask api "$GW" web.internal)")" REFUSED
expect "db may not forward" "$(rcode "$(ask db "$GW" www.example.com)")" REFUSED
expect "db still resolves its own" "$(addrs "$(ask db "$GW" db.internal)")" "${IP[db]}"
# Resolve allowlist: only the names listed for it go upstream.
WEB2_SERVING=0 API_IF=${IFN[web1]} DB_FORWARD=0 DB_NAMES=api.example.com,Other.Example.org table
reload 2 "table reloaded (names)"
expect "db resolves a listed name" "$(addrs "$(ask db "$GW" API.example.com)")" 192.0.2.7
expect "db resolves the other listed name" "$(rcode "$(ask db "$GW" other.example.org)")" NOERROR
expect "db may not resolve an unlisted name" "$(rcode "$(ask db "$GW" leak-4142.example.com)")" REFUSED
expect "db may not resolve a name under a listed one" "$(rcode "$(ask db "$GW" x.api.example.com)")" REFUSED
grep -q 'leak-4142\|x\.api' "$T/upstream.log" && fail "an unlisted name reached the upstream: $(cat "$T/upstream.log")"
table
reload 3 "table reloaded again"
expect "api back" "$(addrs "$(ask api "$GW" api.internal)")" "${IP[api]}"
ok "table updates apply: a replica that stops serving leaves the name; the veth check; per-workload forwarding (none, every name, listed names only)"

# --- malformed input --------------------------------------------------------
nsenter --net="$NSDIR/web1" "$DQ" fuzz "$GW" 2000 $$ >/dev/null
nsenter --net="$NSDIR/stranger" "$DQ" fuzz "$GW" 500 $(($$ + 1)) >/dev/null
sleep 0.5
kill -0 "$HPID" 2>/dev/null || fail "the helper died of malformed packets: $(tail -5 "$T/driver.log")"
wait_until 10 "answers after the fuzz" bash -c "[ \"\$(nsenter --net=$NSDIR/web2 $DQ q $GW api.internal | head -1)\" = 'rcode=NOERROR aa=1 tc=0 an=1' ]"
grep -q 'resolver ended' "$T/driver.log" && fail "the helper restarted during the fuzz"
ok "2,500 malformed packets (loops, truncations, huge counts, responses, random bytes) and bad TCP streams: the helper lives on"

# --- a helper that dies comes back ---------------------------------------
kill -9 "$HPID"
newpid() {
	kill -USR1 "$DRIVER"
	sleep 0.2
	local p
	p=$(sed -n 's/^pid=//p' "$T/driver.out" | tail -n 1)
	[ -n "$p" ] && [ "$p" != 0 ] && [ "$p" != "$HPID" ]
}
wait_until 15 "helper restarted" newpid
grep -q 'resolver ended; restarting.*killed by signal 9' "$T/driver.log" ||
	fail "the helper's end not logged: $(grep resolver "$T/driver.log" | tail -3)"
wait_until 10 "answers after the restart" bash -c "nsenter --net=$NSDIR/web1 $DQ q $GW api.internal | grep -q '^A ${IP[api]} '"
ok "a killed helper is logged and restarted; the sockets stayed bound"

# --- stop -------------------------------------------------------------------
HPID=$(sed -n 's/^pid=//p' "$T/driver.out" | tail -n 1)
kill -TERM "$DRIVER"
wait_until 10 "driver stopped" bash -c "! kill -0 $DRIVER 2>/dev/null"
! kill -0 "$HPID" 2>/dev/null || fail "helper $HPID outlived the resolver"
in_node ss -lun | has "$GW:53" && fail "port 53 still bound after stop"
ok "stop ends the helper and frees the port"

# --- upstreams from resolv.conf, read again when it changes --------------
"${IN[@]}" "$DQ" serve 127.0.0.2:53 192.0.2.20 >"$T/up2.log" 2>&1 &
PIDS+=($!)
"${IN[@]}" "$DQ" serve 127.0.0.3:53 192.0.2.30 >"$T/up3.log" 2>&1 &
PIDS+=($!)
wait_until 10 "fake upstreams 2 and 3" bash -c "grep -q serving $T/up2.log && grep -q serving $T/up3.log"
printf 'search example.net\nnameserver fe80::1%%eth0\nnameserver 127.0.0.2\n' >"$T/resolv.conf"
"${IN[@]}" "$DNSDRV" --cidr "$CIDR" --state "$T/dns" --table "$T/table" \
	--resolv-conf "$T/resolv.conf" --helper "$HELPER" >"$T/driver2.out" 2>"$T/driver2.log" &
DRIVER=$!
PIDS+=("$DRIVER")
wait_until 20 "resolver ready (resolv.conf)" grep -q '^ready pid=' "$T/driver2.out"
expect "forwarded to resolv.conf's nameserver" "$(addrs "$(ask web1 "$GW" www.example.com)")" 192.0.2.20
grep -q 'nameserver skipped.*fe80::1%eth0' "$T/driver2.log" || fail "a link-local nameserver was not skipped"
printf 'nameserver 127.0.0.3\n' >"$T/resolv.conf.new"
mv "$T/resolv.conf.new" "$T/resolv.conf"
kill -HUP "$DRIVER"
wait_until 10 "reloaded" grep -q '^reloaded' "$T/driver2.out"
expect "after resolv.conf changed" "$(addrs "$(ask web1 "$GW" www.example.com)")" 192.0.2.30
grep -q 'msg="workload DNS upstreams".*upstream=127.0.0.3:53' "$T/driver2.log" || fail "upstream change not logged"
kill -TERM "$DRIVER"
wait_until 10 "driver stopped" bash -c "! kill -0 $DRIVER 2>/dev/null"
ok "default upstreams: resolv.conf's nameservers (zoned link-local ones skipped), read again when it changes"

finish
