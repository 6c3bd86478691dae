"""Sets the height and width of a NanoDet-g ONNX input to symbolic (dynamic) or fixed dims.

models/nanodet-g-coco-416/nanodet-g-coco-416.onnx is the tf2onnx conversion (fixed 1x3x416x416,
sha256 f2f3848a...0932) with only these two dims made symbolic ("height", "width"), so that
`[input] aspect_multiple` can run it at the frame's shape (416x256 for 16:9). The graph, its
weights and everything else are unchanged; `fixed` gives the conversion's bytes back exactly.

    python input_dims.py dynamic|fixed IN.onnx OUT.onnx [SIZE]   # SIZE for fixed: 416
"""
import sys

import onnx


def set_dims(src, dst, dynamic, size=416):
    m = onnx.load(src)
    dims = m.graph.input[0].type.tensor_type.shape.dim
    for d, name in ((dims[2], "height"), (dims[3], "width")):
        if dynamic:
            d.dim_param = name
        else:
            d.dim_value = size
    onnx.save(m, dst)


if __name__ == "__main__":
    mode, src, dst = sys.argv[1:4]
    if mode not in ("dynamic", "fixed"):
        sys.exit(f"input_dims.py: mode must be dynamic or fixed, not {mode!r}")
    set_dims(src, dst, mode == "dynamic", int(sys.argv[4]) if len(sys.argv) > 4 else 416)
