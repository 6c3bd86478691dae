#!/usr/bin/env bash
# Builds the Debian package gridwatch_<version>_<arch>.deb (docs/developing.md, "The Debian
# package"): the binary (stripped), the ONNX Runtime library beside it, the shipped models,
# /etc/gridwatch/gridwatch.toml (a conffile), the systemd unit, the docs, and maintainer
# scripts that add the `gridwatch` system user and /var/lib/gridwatch (0700).
#
#   tools/build-deb.sh [--binary target/release/gridwatch] [--out target/deb]
#
# Prints the package's path on its last line. Needs dpkg-deb, dpkg-shlibdeps (dpkg-dev) and
# strip (binutils); `make setup` installs them.
set -euo pipefail
cd "$(dirname "$0")/.."

binary=target/release/gridwatch
out=target/deb
while [ $# -gt 0 ]; do
    case "$1" in
        --binary) binary="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        *) echo "build-deb: unknown argument $1 (expected --binary PATH, --out DIR)" >&2; exit 2 ;;
    esac
done
ort=third_party/onnxruntime/libonnxruntime.so.1.32.0
for f in "$binary" "$ort"; do
    [ -f "$f" ] || { echo "build-deb: $f is missing (run make build first)" >&2; exit 1; }
done
for tool in dpkg-deb dpkg-shlibdeps strip; do
    command -v "$tool" >/dev/null || { echo "build-deb: $tool is missing (make setup)" >&2; exit 1; }
done

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
arch=$(dpkg --print-architecture)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root="$work/root"

echo "build-deb: staging gridwatch $version ($arch) from $binary" >&2
install -d -m 0755 "$root/usr/bin" "$root/usr/lib/gridwatch" "$root/usr/share/gridwatch/models" \
    "$root/etc/gridwatch" "$root/lib/systemd/system" "$root/usr/share/doc/gridwatch" "$root/DEBIAN"
strip --strip-debug -o "$root/usr/bin/gridwatch" "$binary"
chmod 0755 "$root/usr/bin/gridwatch"
install -m 0644 "$ort" "$root/usr/lib/gridwatch/"
for m in nanodet-g-coco-416 nanodet-g-coco-416-int8 nanodet-g-coco-320 movenet-multipose-lightning-256 blazeface-back-256 \
    blazepose-detector-224; do
    install -d -m 0755 "$root/usr/share/gridwatch/models/$m"
    install -m 0644 models/"$m"/* "$root/usr/share/gridwatch/models/$m/"
done
install -m 0644 models/README.md "$root/usr/share/gridwatch/models/"
install -m 0640 packaging/gridwatch.toml "$root/etc/gridwatch/gridwatch.toml"
install -m 0644 packaging/gridwatch.service "$root/lib/systemd/system/gridwatch.service"
install -m 0644 README.md docs/config.md docs/security.md docs/api.md "$root/usr/share/doc/gridwatch/"
cat > "$root/usr/share/doc/gridwatch/copyright" <<EOF
gridwatch $version: Apache-2.0.
ONNX Runtime 1.32.0 (usr/lib/gridwatch): MIT, from the PyPI onnxruntime wheel.
Models (usr/share/gridwatch/models): see models/README.md and each model's LICENSE files.
EOF
install -m 0755 packaging/debian/postinst packaging/debian/prerm packaging/debian/postrm "$root/DEBIAN/"
echo /etc/gridwatch/gridwatch.toml > "$root/DEBIAN/conffiles"

# Shared-library dependencies of the binary (GStreamer, OpenCV, …), plus the GStreamer
# plugins it loads at run time and adduser for the maintainer script.
mkdir -p "$work/debian"
printf 'Source: gridwatch\n\nPackage: gridwatch\nArchitecture: any\n' > "$work/debian/control"
shlibs=$(cd "$work" && dpkg-shlibdeps -O -e root/usr/bin/gridwatch 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
[ -n "$shlibs" ] || { echo "build-deb: dpkg-shlibdeps found no dependencies" >&2; exit 1; }
plugins="gstreamer1.0-plugins-base, gstreamer1.0-plugins-good, gstreamer1.0-plugins-bad, gstreamer1.0-libav, gstreamer1.0-rtsp"
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat > "$root/DEBIAN/control" <<EOF
Package: gridwatch
Version: $version
Architecture: $arch
Maintainer: gridwatch developers <gridwatch@localhost>
Section: video
Priority: optional
Installed-Size: $size
Depends: adduser, $shlibs, $plugins
Homepage: https://example.invalid/gridwatch
Description: edge video analytics for city grid management
 gridwatch decodes camera streams with GStreamer, detects people, vehicles,
 fire and smoke with ONNX models, tracks objects, raises incidents, records
 every camera without re-encoding and serves an HTTP API and operator console.
EOF

mkdir -p "$out"
deb="$out/gridwatch_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zgzip -z6 --build "$root" "$deb" >&2
echo "$deb"
