#!/usr/bin/env bash
# Reproduces models/nanodet-g-coco-416-int8/nanodet-g-coco-416-int8.onnx: static int8
# quantisation (ONNX Runtime 1.32.0, QDQ, per-channel int8 weights, uint8 activations, MinMax
# calibration) of models/nanodet-g-coco-416 on 143 frames of the shared footage (one every 2 s of
# 14 clips of every scene kind; never PETS09, the accuracy set). Every Python package is pinned
# in tools/quantize-nanodet/requirements.txt; every step is in tools/quantize-nanodet/quantize.py.
# Needs python3 (3.11), GStreamer (gst-launch-1.0) and ../shared/media.
#
#   tools/quantize-nanodet.sh [OUT.onnx] [MEDIA_DIR]   # defaults /tmp/nanodet-g-coco-416-int8.onnx, ../shared/media
#   VENV=/path tools/quantize-nanodet.sh               # another place for the virtual environment
#
# The run is deterministic: OUT.onnx has the committed file's sha256. The accuracy check is
# `make eval` (person AP50 on PETS09-S2L1 frames 1-400 and the traffic counts with
# `--model default=models/nanodet-g-coco-416-int8/model.toml`); a shorter one is in
# `make test` (tests/eval_mot.rs).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$here")"
fp32="$repo/models/nanodet-g-coco-416/nanodet-g-coco-416.onnx"
committed="$repo/models/nanodet-g-coco-416-int8/nanodet-g-coco-416-int8.onnx"
out="${1:-/tmp/nanodet-g-coco-416-int8.onnx}"
media="${2:-$repo/../shared/media}"
venv="${VENV:-/tmp/gridwatch-quantize-venv}"

if [ ! -d "$media" ]; then
    echo "quantize-nanodet: no calibration footage at $media (give MEDIA_DIR)" >&2
    exit 2
fi
want_fp32="$(sed -n 's/^sha256 = "\(.*\)"/\1/p' "$repo/models/nanodet-g-coco-416/model.toml")"
echo "$want_fp32  $fp32" | sha256sum -c --quiet
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q --disable-pip-version-check --no-deps \
    -r "$here/quantize-nanodet/requirements.txt"
"$venv/bin/python" "$here/quantize-nanodet/quantize.py" "$fp32" "$out" "$media"
if [ -f "$committed" ]; then
    if cmp -s "$out" "$committed"; then
        echo "identical to the committed $committed"
    else
        echo "differs from the committed $committed (update its sha256 in model.toml to replace it)"
    fi
fi
