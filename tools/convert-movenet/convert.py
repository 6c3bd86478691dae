"""MoveNet MultiPose Lightning (TensorFlow.js graph) -> ONNX for gridwatch.

Run by tools/convert-movenet.sh, which pins every package (requirements.txt beside this
file) and the npm tarball. Steps:

1. Patch the tfjs graph JSON so TensorFlow 2.21 accepts it: `_FusedConv2D` nodes get the
   `TArgs` attribute (one DT_FLOAT per fused argument) and every node gets the defaults of
   attributes its op gained since the graph was written (`index_type`, `Tk`, ...). The weights
   file is copied unchanged.
2. `tf2onnx --tfjs` (opset 17) with the input fixed at 1 x SIZE x SIZE x 3.
3. Graph surgery, numerically neutral:
   - the int32 NHWC input `input` becomes a float32 NCHW input `input` [1, 3, SIZE, SIZE]
     followed by a Transpose to NHWC, replacing the graph's own first op (a Cast of the
     int32 input to float32). gridwatch feeds 0-255 pixel values, exact in float32, so the
     model sees the same numbers as from an int32 tensor;
   - float32 weights that are exactly float16 values (all of them: the tfjs package stores
     its weights fp16-quantised) are stored as float16 with a Cast to float32 in front,
     halving the file. ONNX Runtime folds the Casts when it loads the model.
4. Check: the surgered model and the plain tf2onnx output give the same result on a fixed
   pseudo-random image (ONNX Runtime, CPU); with REF_ONNX (the committed model), so does it.

tf2onnx names and orders some constants differently from run to run, so the bytes (and the
sha256) differ between conversions; the outputs do not, which step 4 checks.

Usage: convert.py MODEL_JSON WORK_DIR OUT_ONNX SIZE [REF_ONNX]
"""

import json
import os
import shutil
import subprocess
import sys

import numpy as np

# tf2onnx 1.17 still calls np.product, removed in numpy 2.
if not hasattr(np, "product"):
    np.product = np.prod

import onnx  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402


def patch_tfjs(src_json, work):
    from google.protobuf.json_format import MessageToDict
    from tensorflow.python.framework import op_def_registry

    d = json.load(open(src_json))
    added = 0
    for n in d["modelTopology"]["node"]:
        a = n.setdefault("attr", {})
        if n["op"] in ("_FusedConv2D", "_FusedMatMul") and "TArgs" not in a:
            k = int(a.get("num_args", {}).get("i", "0"))
            a["TArgs"] = {"list": {"type": ["DT_FLOAT"] * k}}
            added += 1
        od = op_def_registry.get(n["op"])
        for at in od.attr if od else []:
            if at.name not in a and at.HasField("default_value"):
                a[at.name] = MessageToDict(at.default_value)
                added += 1
    os.makedirs(work, exist_ok=True)
    out = os.path.join(work, "model.json")
    with open(out, "w") as f:
        json.dump(d, f)
    for group in d["weightsManifest"]:
        for p in group["paths"]:
            shutil.copy(os.path.join(os.path.dirname(src_json), p), os.path.join(work, p))
    print(f"patched tfjs graph: {added} attributes added")
    return out


def surgery(raw, size):
    m = onnx.load(raw)
    g = m.graph
    (inp,) = g.input
    assert inp.type.tensor_type.elem_type == TensorProto.INT32, "expected an int32 input"
    casts = [n for n in g.node if n.op_type == "Cast" and list(n.input) == [inp.name]]
    users = [n for n in g.node if inp.name in n.input]
    assert len(casts) == 1 and len(users) == 1, "expected the input to feed one Cast only"
    cast = casts[0]
    assert helper.get_attribute_value(cast.attribute[0]) == TensorProto.FLOAT
    idx = list(g.node).index(cast)
    tr = helper.make_node(
        "Transpose", [inp.name], list(cast.output), name="input_nchw_to_nhwc", perm=[0, 2, 3, 1]
    )
    g.node.remove(cast)
    g.node.insert(idx, tr)
    new_inp = helper.make_tensor_value_info(inp.name, TensorProto.FLOAT, [1, 3, size, size])
    g.input.remove(inp)
    g.input.insert(0, new_inp)

    # float32 weights that are exact float16 values -> float16 + Cast.
    halved, kept = 0, 0
    casts = []
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


def check(raw, final, size, ref=None):
    import onnxruntime as ort

    rng = np.random.default_rng(20261206)
    img = rng.integers(0, 256, size=(1, size, size, 3), dtype=np.int32)
    nchw = img.transpose(0, 3, 1, 2).astype(np.float32)

    def run(path, x):
        s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        return s.run(None, {s.get_inputs()[0].name: x})[0]

    ra, rb = run(raw, img), run(final, nchw)
    diff = float(np.abs(ra - rb).max())
    print(f"check: output {rb.shape}, max |raw - final| = {diff:.2e}")
    assert rb.shape == (1, 6, 56), rb.shape
    assert diff < 1e-4, diff
    if ref:
        diff = float(np.abs(run(ref, nchw) - rb).max())
        print(f"check: max |{os.path.basename(ref)} (committed) - final| = {diff:.2e}")
        assert diff < 1e-4, diff


def main():
    src_json, work, out, size = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    ref = sys.argv[5] if len(sys.argv) > 5 else None
    assert size % 32 == 0, "MoveNet needs a multiple of 32"
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
    check(raw, out, size, ref)


if __name__ == "__main__":
    main()
