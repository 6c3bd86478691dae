"""BlazeFace (back-camera, 256x256; TensorFlow.js graph) -> ONNX for gridwatch.

Run by tools/convert-blazeface.sh, which pins every package (the same pinned set as the
pose conversion, tools/convert-movenet/requirements.txt) and the npm tarball. Steps:

1. Patch the tfjs graph JSON so TensorFlow 2.21 accepts it (the same patch as MoveNet's,
   imported from tools/convert-movenet/convert.py): `_FusedConv2D` nodes get `TArgs`, nodes
   get the defaults of attributes their op gained since the graph was written. Weights are
   copied unchanged.
2. `tf2onnx --tfjs` (opset 17) with the input fixed at 1 x 256 x 256 x 3 (float32, NHWC).
3. Graph surgery, numerically neutral: the NHWC input `input` becomes an NCHW input
   [1, 3, 256, 256] followed by a Transpose (gridwatch feeds NCHW); float32 weights that are
   exactly float16 values are stored as float16 with a Cast in front.
4. Check: the surgered model and the plain tf2onnx output agree on a fixed pseudo-random
   image (ONNX Runtime, CPU), and, with REF_ONNX (the committed model), so does that one.

Outputs (unchanged from the graph): two score tensors [1, 512, 1] and [1, 384, 1] (logits)
and two regressor tensors [1, 512, 16] and [1, 384, 16]; 512 = 16 x 16 cells x 2 anchors
(stride 16), 384 = 8 x 8 cells x 6 anchors (stride 32). gridwatch's `blazeface` decoder.

Usage: convert.py MODEL_JSON WORK_DIR OUT_ONNX [REF_ONNX]
"""

import os
import subprocess
import sys

import numpy as np

if not hasattr(np, "product"):
    np.product = np.prod

import onnx  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "convert-movenet"))
from convert import patch_tfjs  # noqa: E402

SIZE = 256
SHAPES = [(1, 384, 1), (1, 384, 16), (1, 512, 1), (1, 512, 16)]


def surgery(raw, size=SIZE):
    m = onnx.load(raw)
    g = m.graph
    (inp,) = g.input
    assert inp.type.tensor_type.elem_type == TensorProto.FLOAT, "expected a float32 input"
    nhwc = inp.name + "__nhwc"
    for n in g.node:
        for i, x in enumerate(n.input):
            if x == inp.name:
                n.input[i] = nhwc
    tr = helper.make_node("Transpose", [inp.name], [nhwc], name="input_nchw_to_nhwc", perm=[0, 2, 3, 1])
    g.node.insert(0, tr)
    new_inp = helper.make_tensor_value_info(inp.name, TensorProto.FLOAT, [1, 3, size, size])
    g.input.remove(inp)
    g.input.insert(0, new_inp)

    halved, kept, casts = 0, 0, []
    for init in list(g.initializer):
        if init.data_type != TensorProto.FLOAT:
            continue
        a = numpy_helper.to_array(init)
        if a.size < 16 or not np.array_equal(a.astype(np.float16).astype(np.float32), a):
            kept += 1
            continue
        name = init.name
        h = numpy_helper.from_array(a.astype(np.float16), name + "__fp16")
        g.initializer.remove(init)
        g.initializer.append(h)
        casts.append(helper.make_node("Cast", [h.name], [name], name=name + "__to_fp32", to=1))
        halved += 1
    for i, c in enumerate(casts):
        g.node.insert(i, c)
    print(f"weights stored as float16: {halved} tensors (kept float32: {kept})")
    onnx.checker.check_model(m)
    return m


def check(raw, final, ref=None, size=SIZE, want=SHAPES):
    import onnxruntime as ort

    rng = np.random.default_rng(20261206)
    img = (rng.integers(0, 256, size=(1, size, size, 3)).astype(np.float32) - 127.5) / 127.5
    nchw = np.ascontiguousarray(img.transpose(0, 3, 1, 2))

    def run(path, x):
        s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        names = [o.name for o in s.get_outputs()]
        outs = s.run(None, {s.get_inputs()[0].name: x})
        return dict(zip(names, outs))

    ra, rb = run(raw, img), run(final, nchw)
    shapes = sorted(tuple(v.shape) for v in rb.values())
    print(f"check: outputs {shapes}")
    assert shapes == sorted(want), shapes
    diff = max(float(np.abs(ra[k] - rb[k]).max()) for k in rb)
    print(f"check: max |raw - final| = {diff:.2e}")
    assert diff < 1e-4, diff
    if ref:
        rr = run(ref, nchw)
        diff = max(float(np.abs(rr[k] - rb[k]).max()) for k in rb)
        print(f"check: max |{os.path.basename(ref)} (committed) - final| = {diff:.2e}")
        assert diff < 1e-4, diff


def convert(src_json, work, out, ref=None, size=SIZE, want=SHAPES):
    """Steps 1-4 for a tfjs graph with one image input `input:0` of `size` x `size`."""
    patched = patch_tfjs(src_json, work)
    raw = os.path.join(work, "raw.onnx")
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, numpy as np; np.product = np.prod; from tf2onnx import convert; "
            "sys.argv[0] = 'tf2onnx.convert'; convert.main()",
            "--tfjs",
            patched,
            "--inputs",
            f"input:0[1,{size},{size},3]",
            "--opset",
            "17",
            "--output",
            raw,
        ],
        check=True,
    )
    m = surgery(raw, size)
    onnx.save(m, out)
    check(raw, out, ref, size, want)


def main():
    ref = sys.argv[4] if len(sys.argv) > 4 else None
    convert(sys.argv[1], sys.argv[2], sys.argv[3], ref)


if __name__ == "__main__":
    main()
