#!/usr/bin/env bash
# Reproduces models/nanodet-g-coco-416/nanodet-g-coco-416.onnx from the tf2onnx conversion with a
# fixed 1x3x416x416 input (sha256 f2f3848a...0932, the file committed before docs/design/0048):
# only the input's height and width become symbolic, for `[input] aspect_multiple`
# (tools/quantize-nanodet/input_dims.py). Run with no argument, it checks the round trip on the
# committed file: back to fixed gives the conversion's sha256, and forward again the committed one.
# Uses the pinned packages of tools/quantize-nanodet/requirements.txt.
#
#   tools/nanodet-dynamic-input.sh [FIXED.onnx OUT.onnx]
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$here")"
model="$repo/models/nanodet-g-coco-416/nanodet-g-coco-416.onnx"
fixed_sha=f2f3848a7a9ba5846072e3f5e475f98907e73204c66505fc2947974c36020932
venv="${VENV:-/tmp/gridwatch-quantize-venv}"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q --disable-pip-version-check --no-deps \
    -r "$here/quantize-nanodet/requirements.txt"
py="$venv/bin/python $here/quantize-nanodet/input_dims.py"
if [ $# -eq 2 ]; then
    echo "$fixed_sha  $1" | sha256sum -c --quiet
    $py dynamic "$1" "$2"
    sha256sum "$2"
    exit 0
fi
want="$(sed -n 's/^sha256 = "\(.*\)"/\1/p' "$repo/models/nanodet-g-coco-416/model.toml")"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
$py fixed "$model" "$tmp/fixed.onnx"
echo "$fixed_sha  $tmp/fixed.onnx" | sha256sum -c --quiet
$py dynamic "$tmp/fixed.onnx" "$tmp/dynamic.onnx"
echo "$want  $tmp/dynamic.onnx" | sha256sum -c --quiet
echo "round trip ok: fixed $fixed_sha, dynamic $want (the committed file)"
