"""Which resize agrees better with the app's (Pillow's, through timm's eval transform) for the web
page: resizing inside the ONNX graph (opset 18 Resize: cubic, a = -0.5, antialias, on uint8 or
on float) or the page's JavaScript port of Pillow (tl_core/export/web_assets/preprocess.js,
run by Node).

    .venv/bin/python bench/web_resize.py

Prints, for each way, the share of pixels that differ from Pillow's and the largest difference
(in 1/255) over scikit-image's photographs and the sample dataset's images, resized to 256 on
the short side as EfficientNet-Lite0's preprocessing does.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime
import skimage.data
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tl_core.data import load_image, sample_dataset_path  # noqa: E402

SHORT_SIDE = 256


def graph_resizer(on_float: bool) -> onnxruntime.InferenceSession:
    """An ONNX graph: uint8 (H, W, 3) -> short side resized to SHORT_SIDE, (3, H', W')."""
    constants = {
        "channel_axis_first": [0],
        "zero": [0],
        "two": [2],
        "short_side": [SHORT_SIDE],
        "batch_and_channels": [1, 3],
    }
    nodes = [
        helper.make_node("Transpose", ["rgb"], ["chw"], perm=[2, 0, 1]),
        helper.make_node("Unsqueeze", ["chw", "channel_axis_first"], ["nchw"]),
        helper.make_node("Cast", ["nchw"], ["source"], to=TensorProto.FLOAT)
        if on_float
        else helper.make_node("Identity", ["nchw"], ["source"]),
        helper.make_node("Shape", ["rgb"], ["shape"]),
        helper.make_node("Slice", ["shape", "zero", "two"], ["height_width"]),
        helper.make_node("ReduceMin", ["height_width"], ["short"], keepdims=1),
        helper.make_node("Mul", ["height_width", "short_side"], ["scaled"]),
        helper.make_node("Div", ["scaled", "short"], ["new_height_width"]),  # truncates, as int()
        helper.make_node("Concat", ["batch_and_channels", "new_height_width"], ["sizes"], axis=0),
        helper.make_node(
            "Resize",
            ["source", "", "", "sizes"],
            ["resized"],
            mode="cubic",
            antialias=1,
            cubic_coeff_a=-0.5,
            coordinate_transformation_mode="half_pixel",
        ),
    ]
    initializers = [numpy_helper.from_array(np.array(v), k) for k, v in constants.items()]
    graph = helper.make_graph(
        nodes,
        "resize",
        [helper.make_tensor_value_info("rgb", TensorProto.UINT8, ["h", "w", 3])],
        [
            helper.make_tensor_value_info(
                "resized", TensorProto.FLOAT if on_float else TensorProto.UINT8, None
            )
        ],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    return onnxruntime.InferenceSession(model.SerializeToString())


def pillow(image: Image.Image) -> np.ndarray:
    width, height = image.size
    short, long = min(width, height), max(width, height)
    new = (SHORT_SIDE, int(SHORT_SIDE * long / short))
    size = new if width <= height else new[::-1]
    return np.asarray(image.resize(size, Image.BICUBIC)).transpose(2, 0, 1).astype(np.int16)


def javascript(images: list[Image.Image]) -> list[np.ndarray] | None:
    if shutil.which("node") is None:
        return None
    script = REPO / "tl_core" / "export" / "web_assets" / "preprocess.js"
    with tempfile.TemporaryDirectory() as tmp:
        sizes = []
        for index, image in enumerate(images):
            (Path(tmp) / f"{index}.rgb").write_bytes(np.asarray(image).tobytes())
            sizes.append(image.size)
        code = f"""
const fs = require("fs");
const {{ pillowResize, resizedSize }} = require({json.dumps(str(script))});
{json.dumps(sizes)}.forEach(([w, h], i) => {{
  const [nw, nh] = resizedSize(w, h, {SHORT_SIDE});
  const rgb = new Uint8Array(fs.readFileSync({json.dumps(tmp)} + "/" + i + ".rgb"));
  const out = pillowResize(rgb, w, h, nw, nh, "bicubic");
  fs.writeFileSync({json.dumps(tmp)} + "/" + i + ".out", out);
}});
"""
        subprocess.run(["node", "-e", code], check=True)
        out = []
        for index, image in enumerate(images):
            expected = pillow(image)
            pixels = np.frombuffer((Path(tmp) / f"{index}.out").read_bytes(), np.uint8)
            out.append(pixels.reshape(*expected.shape[1:], 3).transpose(2, 0, 1))
        return out


def main() -> None:
    photos = [skimage.data.chelsea(), skimage.data.coffee(), skimage.data.astronaut()]
    images = [Image.fromarray(photo) for photo in photos]
    images += [load_image(p) for p in sorted(sample_dataset_path().rglob("*.jpg"))[::10]]
    expected = [pillow(image) for image in images]
    ways = {
        "ONNX Resize on uint8": [
            graph_resizer(False).run(None, {"rgb": np.asarray(i)})[0][0] for i in images
        ],
        "ONNX Resize on float (rounded)": [
            np.clip(np.rint(graph_resizer(True).run(None, {"rgb": np.asarray(i)})[0][0]), 0, 255)
            for i in images
        ],
    }
    js = javascript(images)
    if js is not None:
        ways["JavaScript port of Pillow"] = js
    print(f"{len(images)} images, short side resized to {SHORT_SIDE}, bicubic, against Pillow:")
    for name, outputs in ways.items():
        diffs = [np.abs(o.astype(np.int16) - e) for o, e in zip(outputs, expected, strict=True)]
        share = sum(int((d > 0).sum()) for d in diffs) / sum(d.size for d in diffs)
        worst = max(int(d.max()) for d in diffs)
        print(f"  {name:32s} {share:8.3%} of pixels differ, by up to {worst}/255")
    if js is None:
        print("  (Node.js not found: the JavaScript port was not measured)")


if __name__ == "__main__":
    main()
