#!/bin/bash
# Image pulls (node-agent/image) against real registries on loopback:
# Debian's docker-registry (CNCF distribution) with filesystem storage,
# test images built without Docker (tests/images/build_test_images.sh,
# umoci) and pushed with skopeo. Covers tag and digest pulls, the shared
# content-addressed cache (a second pull downloads nothing), image index ->
# linux/amd64, missing tags, size limits, gc, HTTPS with an extra CA and
# basic auth (htpasswd), bearer tokens (a JWT signed by a test key, served
# by busybox httpd behind basic auth), blob redirects to another host that
# never get the registry's credentials, and tampered or truncated blobs.
. "$(dirname "$0")/lib.sh"

HERE=$(cd "$(dirname "$0")" && pwd)
DRV="$BIN/tests/integration/image_pull"
[ -x "$DRV" ] || fail "$DRV not built (make image_pull)"
for tool in docker-registry skopeo umoci htpasswd openssl curl busybox sha256sum tar; do
	command -v "$tool" >/dev/null || fail "$tool not installed (scripts/install-deps)"
done

# Ports below the ephemeral range: no outgoing connection can hold them.
EPHEMERAL_LOW=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range)
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() {
	local p
	for _ in $(seq 200); do
		p=$((10000 + RANDOM % (EPHEMERAL_LOW - 10000)))
		if port_free "$p" && ! grep -qx "$p" "$T/ports" 2>/dev/null; then
			echo "$p" >>"$T/ports"
			echo "$p"
			return
		fi
	done
	fail "no free port"
}
http_code() { curl -s -k -o /dev/null -w '%{http_code}' "$@"; }
answers() { [ "$(http_code "$1")" = "$2" ]; }

# start_registry NAME PORT [YAML...]: filesystem storage in $T/NAME; HTTPS
# with $T/tls.crt when REG_TLS=1, else HTTP; extra YAML lines go at the top
# level.
start_registry() {
	local name=$1 port=$2
	shift 2
	mkdir -p "$T/$name"
	{
		cat <<YAML
version: 0.1
log:
  level: warn
  formatter: text
storage:
  filesystem:
    rootdirectory: $T/$name
http:
  addr: 127.0.0.1:$port
  secret: ink-test-$RANDOM$RANDOM
YAML
		[ "${REG_TLS:-0}" = 0 ] || printf '  tls:\n    certificate: %s\n    key: %s\n' \
			"$T/tls.crt" "$T/tls.key"
		printf '%s\n' "$@"
	} >"$T/$name.yml"
	docker-registry serve "$T/$name.yml" >>"$T/$name.log" 2>&1 &
	PIDS+=($!)
}

# Runs the driver; stdout in $T/out, stderr (errors, logs) in $T/err.
# IMAGE_PULL_WRAP runs it under a tool, e.g.
#   IMAGE_PULL_WRAP="valgrind -q --error-exitcode=99 --leak-check=full"
drv() {
	# shellcheck disable=SC2086
	${IMAGE_PULL_WRAP:-} "$DRV" "$@" >"$T/out" 2>"$T/err"
	local rc=$?
	[ "$rc" != 99 ] || fail "$IMAGE_PULL_WRAP reported errors: $(cat "$T/err")"
	return "$rc"
}
pull_ok() { # pull_ok STORE REF [driver options...]
	local store=$1 ref=$2
	shift 2
	drv "$@" "$store" pull "$ref" || fail "pull $ref: $(cat "$T/err")"
}
pull_err() { # pull_err STORE REF [driver options...]: the error on stdout
	local store=$1 ref=$2
	shift 2
	if drv "$@" "$store" pull "$ref"; then fail "pull $ref succeeded"; fi
	grep '^error: ' "$T/err" || fail "pull $ref: no error message: $(cat "$T/err")"
}
field() { sed -n "s/^$1 //p" "$T/out" | head -n 1; }
fetched_blobs() { sed -n 's/.*msg="image pulled".* fetched_blobs=\([0-9]*\).*/\1/p' "$T/err"; }
expect_in() { # expect_in TEXT NEEDLE...
	local text=$1 n
	shift
	for n in "$@"; do
		grep -qF -- "$n" <<<"$text" || fail "'$n' missing from: $text"
	done
}
blob_count() { find "$1/blobs/sha256" -type f | wc -l; }
tmp_count() { find "$1/tmp" -type f | wc -l; }
store_bytes() { find "$1/blobs" "$1/refs" -type f -printf '%s\n' | awk '{s += $1} END {print s + 0}'; }
blob_gets() { grep -c "\"GET /v2/$2/blobs/.*ink-agent" "$T/$1.log" || true; }

# ---------------------------------------------------------------- images
OCI="$T/oci"
"$HERE/../images/build_test_images.sh" "$OCI" >"$T/digests" 2>"$T/build.log" ||
	fail "building test images: $(tail -n 5 "$T/build.log")"
digest_of() { awk -v t="$1" '$1 == t {print $2}' "$T/digests"; }
D_BUSYBOX=$(digest_of busybox)
D_LAYERED=$(digest_of layered)
D_ARM=$(digest_of arm64)
D_MULTI=$(digest_of multi)
for d in "$D_BUSYBOX" "$D_LAYERED" "$D_ARM" "$D_MULTI" "$(digest_of noamd)"; do
	[[ $d =~ ^sha256:[0-9a-f]{64}$ ]] || fail "test image digests: $(cat "$T/digests")"
done
size=$(du -sb "$OCI" | cut -f1)
[ "$size" -gt $((4 << 20)) ] && [ "$size" -lt $((12 << 20)) ] || fail "busybox image is $size bytes"
ok "test images built without Docker ($((size >> 20)) MiB OCI layout: busybox, layered, arm64, 2 indexes)"

# ------------------------------------------------------------- registries
PA=$(free_port)
start_registry rega "$PA"
wait_until 20 "registry A on $PA" answers "http://127.0.0.1:$PA/v2/" 200
A="127.0.0.1:$PA"
push() { # push SRC_TAG DEST [skopeo options...]
	local src=$1 dest=$2
	shift 2
	skopeo --insecure-policy copy --preserve-digests --dest-tls-verify=false "$@" \
		"oci:$OCI:$src" "docker://$dest" >>"$T/push.log" 2>&1 || fail "push $dest: $(tail -n 3 "$T/push.log")"
}
push busybox "$A/busybox:latest"
push layered "$A/layered:v1"
push arm64 "$A/armonly:v1"
push multi "$A/multi:latest" --all
push noamd "$A/noamd:latest" --all
ok "registry A (HTTP) on 127.0.0.1:$PA, images pushed with skopeo"

# ---------------------------------------------------------- pull by tag
S1="$T/store1"
PLAIN=(--plain "$A")
pull_ok "$S1" "$A/busybox:latest" "${PLAIN[@]}"
[ "$(field manifest)" = "$D_BUSYBOX" ] || fail "manifest $(field manifest), pushed $D_BUSYBOX"
[ "$(field layers)" = 1 ] || fail "layers: $(cat "$T/out")"
[ "$(field entrypoint)" = /bin/httpd ] || fail "entrypoint: $(cat "$T/out")"
[ "$(field cmd)" = "-f -v -p 80 -h /www" ] || fail "cmd: $(cat "$T/out")"
[ "$(field ports)" = 80 ] || fail "ports: $(cat "$T/out")"
[ "$(field workdir)" = /www ] || fail "workdir: $(cat "$T/out")"
grep -qx 'env GREETING=hello' "$T/out" || fail "env: $(cat "$T/out")"
L_BUSYBOX=$(sed -n 's/^layer sha256:\([0-9a-f]*\) .*/\1/p' "$T/out")
[ "$(blob_count "$S1")" = 3 ] || fail "expected manifest+config+layer, have $(blob_count "$S1") blobs"
for f in "$S1"/blobs/sha256/*; do
	[ "$(sha256sum "$f" | cut -d' ' -f1)" = "$(basename "$f")" ] || fail "blob $f does not match its name"
done
[ "$(tmp_count "$S1")" = 0 ] || fail "files left in tmp/"
[ "$(cat "$S1/refs/127.0.0.1%3A$PA%2Fbusybox%3Alatest")" = "$D_BUSYBOX" ] || fail "ref not recorded"
[ "$(fetched_blobs)" = 2 ] || fail "first pull fetched $(fetched_blobs) blobs"
ok "pull by tag: $D_BUSYBOX, every blob verified, config parsed"

# ----------------------------------------------- second pull: nothing fetched
before=$(stat -c '%i %Y %n' "$S1"/blobs/sha256/*)
gets=$(blob_gets rega busybox)
pull_ok "$S1" "$A/busybox:latest" "${PLAIN[@]}"
[ "$(field manifest)" = "$D_BUSYBOX" ] || fail "second pull: $(cat "$T/out")"
[ "$(fetched_blobs)" = 0 ] || fail "second pull fetched $(fetched_blobs) blobs"
[ "$(blob_gets rega busybox)" = "$gets" ] || fail "second pull asked the registry for blobs"
[ "$(stat -c '%i %Y %n' "$S1"/blobs/sha256/*)" = "$before" ] || fail "second pull rewrote blobs"
ok "second pull downloads nothing (no blob GETs, blob files untouched)"

# ---------------------------------------------------------- pull by digest
S2="$T/store2"
pull_ok "$S2" "$A/busybox@$D_BUSYBOX" "${PLAIN[@]}"
[ "$(field manifest)" = "$D_BUSYBOX" ] || fail "by digest: $(cat "$T/out")"
[ "$(find "$S2/refs" -type f | wc -l)" = 0 ] || fail "a digest pull recorded a ref"
pull_ok "$S2" "$A/busybox:latest@$D_BUSYBOX" "${PLAIN[@]}"
[ "$(fetched_blobs)" = 0 ] || fail "tag+digest pull fetched again"
bad=$(pull_err "$S2" "$A/busybox@$D_LAYERED" "${PLAIN[@]}")
expect_in "$bad" "manifest unknown"
drv "$S2" load "$D_BUSYBOX" || fail "load: $(cat "$T/err")"
[ "$(field config)" != "" ] || fail "load printed nothing"
ok "pull by digest and tag+digest; load from the cache without network"

# ------------------------------------------------- layers shared, whiteouts
pull_ok "$S1" "$A/layered:v1" "${PLAIN[@]}"
[ "$(field manifest)" = "$D_LAYERED" ] || fail "layered: $(cat "$T/out")"
[ "$(field layers)" = 3 ] || fail "layered layers: $(cat "$T/out")"
[ "$(fetched_blobs)" = 3 ] || fail "layered fetched $(fetched_blobs) blobs (config + 2 new layers expected)"
last=$(sed -n 's/^layer sha256:\([0-9a-f]*\) .*/\1/p' "$T/out" | tail -n 1)
tar tzf "$S1/blobs/sha256/$last" | has -x 'etc/.wh.gone' ||
	fail "no whiteout in the top layer $last: $(tar tzf "$S1/blobs/sha256/$last" | head -n 20 | tr '\n' ' '); driver: $(cat "$T/out")"
ok "multi-layer image with whiteouts; the shared base layer is not fetched again"

# ------------------------------------------------------- index -> amd64
pull_ok "$S1" "$A/multi:latest" "${PLAIN[@]}"
[ "$(field manifest)" = "$D_BUSYBOX" ] || fail "index picked $(field manifest), amd64 is $D_BUSYBOX"
[ -f "$S1/blobs/sha256/${D_MULTI#sha256:}" ] || fail "index blob not cached"
[ ! -f "$S1/blobs/sha256/${D_ARM#sha256:}" ] || fail "arm64 manifest fetched"
bad=$(pull_err "$S1" "$A/noamd:latest" "${PLAIN[@]}")
expect_in "$bad" "no linux/amd64 image in the index" "available: linux/arm64/v8"
bad=$(pull_err "$S1" "$A/armonly:v1" "${PLAIN[@]}")
expect_in "$bad" "the image is for linux/arm64"
ok "image index -> linux/amd64; no amd64 -> error listing the platforms"

# -------------------------------------------------------- missing, limits
n=$(blob_count "$S1")
bad=$(pull_err "$S1" "$A/busybox:nosuch" "${PLAIN[@]}")
expect_in "$bad" "manifest unknown" "busybox:nosuch" "/v2/busybox/manifests/nosuch" "404"
bad=$(pull_err "$S1" "$A/nosuchrepo:v1" "${PLAIN[@]}")
expect_in "$bad" "nosuchrepo" "404"
bad=$(pull_err "$S1" "$A/Busybox" "${PLAIN[@]}")
expect_in "$bad" "lowercase"
bad=$(pull_err "$S1" "$A/busybox:latest" --timeout-ms 5000)
expect_in "$bad" "https://$A/" "plain-HTTP"
S3="$T/store3"
bad=$(pull_err "$S3" "$A/busybox:latest" "${PLAIN[@]}" --max-blob 100000)
expect_in "$bad" "exceeds the limit of 100000" "sha256:"
[ "$(tmp_count "$S3")" = 0 ] || fail "limit left files in tmp/"
[ "$(blob_count "$S1")" = "$n" ] || fail "failed pulls added blobs: $n -> $(ls "$S1/blobs/sha256")"
ok "missing tag/repo -> 'manifest unknown' naming the tag; invalid refs, TLS to HTTP, size limits"

# ---------------------------------------------------------------------- gc
before_bytes=$(store_bytes "$S1")
drv "$S1" gc "$D_BUSYBOX" || fail "gc: $(cat "$T/err")"
freed=$(sed -n 's/^freed //p' "$T/out")
after_bytes=$(store_bytes "$S1")
[ "$freed" -gt 0 ] && [ "$freed" = $((before_bytes - after_bytes)) ] ||
	fail "gc freed $freed, store shrank by $((before_bytes - after_bytes))"
[ "$(blob_count "$S1")" = 3 ] || fail "gc kept $(blob_count "$S1") blobs"
drv "$S1" load "$D_BUSYBOX" || fail "kept image does not load: $(cat "$T/err")"
if drv "$S1" load "$D_LAYERED"; then fail "collected image still loads"; fi
grep -q "not in the cache" "$T/err" || fail "load of a collected image: $(cat "$T/err")"
[ -f "$S1/refs/127.0.0.1%3A$PA%2Fbusybox%3Alatest" ] || fail "gc removed a live ref"
[ ! -f "$S1/refs/127.0.0.1%3A$PA%2Flayered%3Av1" ] || fail "gc kept a dead ref"
drv "$S1" gc || fail "gc: $(cat "$T/err")"
[ "$(blob_count "$S1")" = 0 ] || fail "gc with nothing kept left blobs"
ok "gc keeps what the kept manifests reference, frees the rest ($freed bytes)"

# ------------------------------------------------- HTTPS + basic (htpasswd)
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$T/tls.key" -out "$T/tls.crt" -days 2 \
	-subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 >/dev/null 2>&1 || fail "test certificate"
PASS='p@ss w0rd:x'
htpasswd -Bbn inkuser "$PASS" >"$T/htpasswd" 2>/dev/null
PB=$(free_port)
REG_TLS=1 start_registry regb "$PB" "auth:" "  htpasswd:" "    realm: ink-test" \
	"    path: $T/htpasswd"
wait_until 20 "registry B on $PB" answers "https://127.0.0.1:$PB/v2/" 401
B="127.0.0.1:$PB"
push busybox "$B/private/app:v1" --dest-creds "inkuser:$PASS"
S4="$T/store4"
bad=$(pull_err "$S4" "$B/private/app:v1" --ca "$T/tls.crt")
expect_in "$bad" "401 Unauthorized" "requires credentials"
bad=$(pull_err "$S4" "$B/private/app:v1" --ca "$T/tls.crt" --user inkuser --password wrong)
expect_in "$bad" "401 Unauthorized" "credentials rejected"
bad=$(pull_err "$S4" "$B/private/app:v1" --user inkuser --password "$PASS")
expect_in "$bad" "certificate"
pull_ok "$S4" "$B/private/app:v1" --ca "$T/tls.crt" --user inkuser --password "$PASS"
[ "$(field manifest)" = "$D_BUSYBOX" ] || fail "basic auth pull: $(cat "$T/out")"
[ "$(blob_count "$S4")" = 3 ] || fail "failed pulls left blobs"
ok "HTTPS with an extra CA + basic auth: 401 without or with wrong credentials, pull with them"

# ------------------------------------------------------------ bearer token
# A JWT for "tok/app" signed by a test key; the registry trusts its
# certificate. busybox httpd serves it only with basic credentials.
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$T/jwt.key" -out "$T/jwt.crt" -days 2 \
	-subj /CN=ink-token-signer >/dev/null 2>&1 || fail "token signing key"
b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
now=$(date +%s)
hdr=$(printf '{"typ":"JWT","alg":"RS256","x5c":["%s"]}' \
	"$(openssl x509 -in "$T/jwt.crt" -outform DER | openssl base64 -A)" | b64url)
claims=$(printf '{"iss":"ink-test","sub":"inkuser","aud":"ink-registry","exp":%d,"nbf":%d,"iat":%d,"jti":"%s","access":[{"type":"repository","name":"tok/app","actions":["pull","push"]}]}' \
	$((now + 3600)) $((now - 60)) $((now - 60)) "$RANDOM$RANDOM" | b64url)
sig=$(printf '%s.%s' "$hdr" "$claims" | openssl dgst -sha256 -sign "$T/jwt.key" -binary | b64url)
mkdir -p "$T/tokenwww"
printf '{"token":"%s.%s.%s","expires_in":3600}' "$hdr" "$claims" "$sig" >"$T/tokenwww/token"
echo "/token:inkuser:tokpass" >"$T/tokenhttpd.conf"
PT=$(free_port)
busybox httpd -f -vv -p "127.0.0.1:$PT" -h "$T/tokenwww" -c "$T/tokenhttpd.conf" >>"$T/tokenhttpd.log" 2>&1 &
PIDS+=($!)
PD=$(free_port)
start_registry regd "$PD" "auth:" "  token:" "    realm: http://127.0.0.1:$PT/token" \
	"    service: ink-registry" "    issuer: ink-test" "    rootcertbundle: $T/jwt.crt"
wait_until 20 "registry D on $PD" answers "http://127.0.0.1:$PD/v2/" 401
wait_until 10 "token server on $PT" answers "http://127.0.0.1:$PT/token" 401
D="127.0.0.1:$PD"
push busybox "$D/tok/app:v1" --dest-creds inkuser:tokpass
S5="$T/store5"
TOKOPTS=(--plain "$D" --plain "127.0.0.1:$PT")
bad=$(pull_err "$S5" "$D/tok/app:v1" "${TOKOPTS[@]}")
expect_in "$bad" "token request" "401" "needs credentials"
bad=$(pull_err "$S5" "$D/tok/app:v1" --plain "$D" --user inkuser --password tokpass)
expect_in "$bad" "token realm 'http://127.0.0.1:$PT/token' is not https"
pull_ok "$S5" "$D/tok/app:v1" "${TOKOPTS[@]}" --user inkuser --password tokpass
[ "$(field manifest)" = "$D_BUSYBOX" ] || fail "bearer pull: $(cat "$T/out")"
ok "bearer token: WWW-Authenticate challenge -> token with basic credentials -> pull"

# ------------------------------- redirects: followed, credentials not sent
# Registry C redirects blob GETs to a busybox httpd serving its storage.
# That server demands the registry's own credentials: a client that leaked
# them across the redirect would get the blob; Ink must get a 401.
PS=$(free_port)
PC=$(free_port)
start_registry regc "$PC" "auth:" "  htpasswd:" "    realm: ink-test" "    path: $T/htpasswd" \
	"middleware:" "  storage:" "    - name: redirect" "      options:" \
	"        baseurl: http://127.0.0.1:$PS/"
wait_until 20 "registry C on $PC" answers "http://127.0.0.1:$PC/v2/" 401
C="127.0.0.1:$PC"
push layered "$C/red/app:v1" --dest-creds "inkuser:$PASS"
printf '/docker:inkuser:%s\n' "$PASS" >"$T/storage.conf"
start_storage() {
	busybox httpd -f -vv -p "127.0.0.1:$PS" -h "$T/regc" -c "$T/storage.conf" >>"$T/storage.log" 2>&1 &
	STORAGE_PID=$!
	PIDS+=("$STORAGE_PID")
	wait_until 10 "storage server on $PS" answers "http://127.0.0.1:$PS/docker/x" "$1"
}
start_storage 401
S6="$T/store6"
bad=$(pull_err "$S6" "$C/red/app:v1" --plain "$C" --user inkuser --password "$PASS")
expect_in "$bad" "redirected to http://127.0.0.1:$PS/docker/registry/v2/blobs/sha256/" "401"
grep -q 'response:401' "$T/storage.log" || fail "the storage server was not asked"
[ "$(tmp_count "$S6")" = 0 ] || fail "files left in tmp/"
kill "$STORAGE_PID"
wait "$STORAGE_PID" 2>/dev/null || true
: >"$T/storage.conf"
start_storage 404
pull_ok "$S6" "$C/red/app:v1" --plain "$C" --user inkuser --password "$PASS"
[ "$(field manifest)" = "$D_LAYERED" ] || fail "redirected pull: $(cat "$T/out")"
[ "$(grep -c 'response:200' "$T/storage.log")" -ge 4 ] || fail "blobs did not come from the storage host"
ok "blob redirects followed to another host, without the registry's credentials"

# ------------------------------------------------ tampered / truncated blobs
layer=$L_BUSYBOX
data="$T/rega/docker/registry/v2/blobs/sha256/${layer:0:2}/$layer/data"
[ -f "$data" ] || fail "layer data not at $data"
head -c "$(stat -c %s "$data")" /dev/urandom >"$T/evil"
cp "$T/evil" "$data"
S7="$T/store7"
bad=$(pull_err "$S7" "$A/busybox:latest" "${PLAIN[@]}")
expect_in "$bad" "blob sha256:$layer failed verification"
[ ! -e "$S7/blobs/sha256/$layer" ] || fail "tampered blob entered the store"
[ "$(tmp_count "$S7")" = 0 ] || fail "tampered download left files in tmp/"
truncate -s 1000 "$data"
bad=$(pull_err "$S7" "$A/busybox:latest" "${PLAIN[@]}")
expect_in "$bad" "sha256:$layer" "truncated"
[ ! -e "$S7/blobs/sha256/$layer" ] || fail "truncated blob entered the store"
[ "$(tmp_count "$S7")" = 0 ] || fail "truncated download left files in tmp/"
ok "tampered and truncated layers -> error naming the digest, nothing left behind"

for p in "${PIDS[@]}"; do
	kill "$p" 2>/dev/null || true
	wait "$p" 2>/dev/null || true
done
PIDS=()
finish
