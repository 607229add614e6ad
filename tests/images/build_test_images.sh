#!/bin/bash
# Builds the test images into one OCI image layout, without Docker:
#
#   build_test_images.sh LAYOUT_DIR [--big]
#
# tags in LAYOUT_DIR (push them with skopeo copy oci:LAYOUT_DIR:TAG ...):
#   busybox   ~5 MB: busybox-static with sh/httpd links, a 4 MiB random
#             /www/blob.bin, entrypoint httpd, port 80/tcp
#   layered   busybox + a layer adding /etc/gone, /opt/stuff/one and
#             /www/two.txt + a layer deleting /etc/gone and /opt/stuff/one
#             (OCI whiteouts etc/.wh.gone, opt/stuff/.wh.one) and adding
#             /www/three.txt
#   arm64     the busybox filesystem with an arm64 config
#   multi     an OCI image index: busybox as linux/amd64 + arm64 as
#             linux/arm64/v8 (push with skopeo copy --all)
#   noamd     an OCI image index with only linux/arm64/v8
#   big       only with --big (bench/agent_bench.sh): ~50 MB, one layer
#             holding the busybox files + a 45 MiB random /www/big.bin;
#             same config as busybox (httpd on port 80 serving /www)
#
# Prints "TAG DIGEST" for every tag on stdout.
set -euo pipefail

OUT=${1:?usage: build_test_images.sh LAYOUT_DIR [--big]}
BIG=0
case ${2:-} in
'') ;;
--big) BIG=1 ;;
*)
	echo "usage: build_test_images.sh LAYOUT_DIR [--big]" >&2
	exit 2
	;;
esac
BUSYBOX=${BUSYBOX:-/bin/busybox}
for tool in umoci sha256sum "$BUSYBOX"; do
	command -v "$tool" >/dev/null || {
		echo "build_test_images: $tool not found" >&2
		exit 1
	}
done

# As root umoci keeps file owners; otherwise it unpacks rootless.
UNPACK=(umoci unpack)
[ "$(id -u)" = 0 ] || UNPACK=(umoci unpack --rootless)

WORK=$(mktemp -d /tmp/ink-images-XXXXXX)
trap 'rm -rf "$WORK"' EXIT
rm -rf "$OUT"
umoci init --layout "$OUT"

# --- busybox: one layer -------------------------------------------------
umoci new --image "$OUT:busybox"
"${UNPACK[@]}" --image "$OUT:busybox" "$WORK/b1" >/dev/null
R="$WORK/b1/rootfs"
mkdir -p "$R/bin" "$R/www" "$R/etc" "$R/tmp"
cp "$BUSYBOX" "$R/bin/busybox"
for applet in sh httpd ls cat echo wget sleep; do ln -s busybox "$R/bin/$applet"; done
echo '<h1>ink test image</h1>' >"$R/www/index.html"
head -c $((4 << 20)) /dev/urandom >"$R/www/blob.bin"
echo 'root:x:0:0:root:/:/bin/sh' >"$R/etc/passwd"
umoci repack --image "$OUT:busybox" "$WORK/b1"
# httpd_config TAG: busybox httpd serving /www on port 80
httpd_config() {
	umoci config --image "$OUT:$1" --os linux --architecture amd64 \
		--config.entrypoint /bin/httpd \
		--config.cmd -f --config.cmd -v --config.cmd -p --config.cmd 80 --config.cmd -h \
		--config.cmd /www \
		--config.env PATH=/bin --config.env GREETING=hello \
		--config.workingdir /www --config.exposedports 80/tcp
}
httpd_config busybox

# --- layered: + files, then a whiteout ----------------------------------
"${UNPACK[@]}" --image "$OUT:busybox" "$WORK/b2" >/dev/null
R="$WORK/b2/rootfs"
echo "to be deleted" >"$R/etc/gone"
mkdir -p "$R/opt/stuff"
echo one >"$R/opt/stuff/one"
echo "layer two" >"$R/www/two.txt"
umoci repack --image "$OUT:layered" "$WORK/b2"
"${UNPACK[@]}" --image "$OUT:layered" "$WORK/b3" >/dev/null
R="$WORK/b3/rootfs"
rm "$R/etc/gone" "$R/opt/stuff/one"
echo "layer three" >"$R/www/three.txt"
umoci repack --image "$OUT:layered" "$WORK/b3"

# --- arm64: same files, another platform ---------------------------------
umoci config --image "$OUT:busybox" --tag arm64 --architecture arm64 --os linux

# --- big: busybox's files + 45 MiB of random data, in one layer of its own -----
# Its own layer, so a pull of it is cold even where busybox is cached.
if [ "$BIG" = 1 ]; then
	umoci new --image "$OUT:big"
	"${UNPACK[@]}" --image "$OUT:big" "$WORK/b4" >/dev/null
	cp -a "$WORK/b1/rootfs/." "$WORK/b4/rootfs/"
	head -c $((45 << 20)) /dev/urandom >"$WORK/b4/rootfs/www/big.bin"
	umoci repack --image "$OUT:big" "$WORK/b4"
	httpd_config big
fi

# --- indexes, written by hand ----------------------------------------------
# manifest_desc TAG -> the descriptor index.json holds for TAG
manifest_desc() {
	sed 's/},{/}\n{/g' "$OUT/index.json" | grep "\"org.opencontainers.image.ref.name\":\"$1\"" |
		sed -n 's/.*"digest":"\([^"]*\)","size":\([0-9]*\).*/\1 \2/p'
}
add_blob() { # add_blob FILE -> prints digest and size
	local d
	d=$(sha256sum "$1" | cut -d' ' -f1)
	cp "$1" "$OUT/blobs/sha256/$d"
	echo "sha256:$d $(stat -c %s "$1")"
}
add_index() { # add_index TAG ENTRY_JSON...
	local tag=$1 entries
	shift
	entries=$(
		IFS=,
		echo "$*"
	)
	printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[%s]}' \
		"$entries" >"$WORK/index-$tag.json"
	read -r d s < <(add_blob "$WORK/index-$tag.json")
	# Append the index to index.json under its tag.
	local entry
	entry=$(printf '{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"%s"}}' "$d" "$s" "$tag")
	sed -i "s|\]}\$|,$entry]}|" "$OUT/index.json"
}
entry() { # entry TAG ARCH [VARIANT]
	local d s
	read -r d s < <(manifest_desc "$1")
	printf '{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":%s,"platform":{"architecture":"%s","os":"linux"%s}}' \
		"$d" "$s" "$2" "${3:+,\"variant\":\"$3\"}"
}
add_index multi "$(entry busybox amd64)" "$(entry arm64 arm64 v8)"
add_index noamd "$(entry arm64 arm64 v8)"

TAGS=(busybox layered arm64 multi noamd)
[ "$BIG" = 0 ] || TAGS+=(big)
for tag in "${TAGS[@]}"; do
	echo "$tag $(sed 's/},{/}\n{/g' "$OUT/index.json" |
		grep "\"org.opencontainers.image.ref.name\":\"$tag\"" |
		sed -n 's/.*"digest":"\([^"]*\)".*/\1/p')"
done
