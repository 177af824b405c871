"""Exports of a trained run: a portable .zip of the run, and model files checked at export time.

The .zip holds the run's weights and files, a standalone ``predict.py`` (torch, timm, pillow),
``predict_onnx.py`` (onnxruntime, pillow) for an ONNX export, a model card (``README.md``) and
HOW_TO_LOAD.txt. A model file (ONNX by default, torch.export .pt2, or legacy TorchScript; see
:mod:`tl_core.export.formats`) carries the class names and the preprocessing, and is loaded back
with its own runtime before it is kept: its outputs on real images must match PyTorch's, or the
export fails with a sentence saying what to do, and no file is left behind.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from tl_core.common import TLStudioError, atomic_write, plural
from tl_core.data import load_image
from tl_core.export.formats import MODEL_FORMATS, ModelFormat, output_list, resize_size
from tl_core.export.model_card import model_card_text
from tl_core.inference import (
    NetworkWithReliableHead,
    ReliableHead,
    read_calibration,
    read_open_set,
    read_thresholds,
)
from tl_core.runs import (
    CALIBRATION_FILE,
    CONFIG_FILE,
    LABELS_FILE,
    METRICS_FILE,
    OPEN_SET_FILE,
    SPLIT_FILE,
    THRESHOLDS_FILE,
    WEIGHTS_FILE,
    Run,
    as_run,
    read_json,
)

# ONNX is the default: ONNX Runtime loads it from Python, C++, C#, Java, JavaScript and mobile,
# and most inference servers take it; .pt2 needs PyTorch, TorchScript is deprecated.
DEFAULT_FORMAT = "onnx"
ZIP_FORMAT = "zip"
WEB_FORMAT = "web"  # one HTML page that classifies in any browser (web_export.py)
WEB_SUFFIXES = (".html", ".htm")
# The check's threshold on logits. Float32 reordering by an exporter or a runtime moves logits
# by about 1e-6..1e-5; a wrong normalisation, a lost layer or a bad export moves them by 0.1 or
# more. 1e-3 lies well between the two.
CHECK_TOLERANCE = 1e-3
CHECK_IMAGES = 8
GENERATED_IMAGE = "generated image"
# The standalone scripts shipped in the zip: their source in tl_core, their name in the zip.
STANDALONE_SCRIPTS = {
    "standalone_predict.py": "predict.py",
    "standalone_predict_onnx.py": "predict_onnx.py",
}
MODEL_CARD = "README.md"


class ExportError(TLStudioError):
    """A model could not be exported, or its export does not reproduce the run."""


@dataclass(frozen=True)
class ExportCheck:
    """The exported file, loaded by its own runtime, against PyTorch on the same images.

    Attributes:
        num_images: How many images were compared (in one batch, then the first one alone, so
            the batch dimension is exercised).
        images_from: Where the images came from, in words ("validation images").
        max_abs_difference: The largest difference between any two logits (and, for a file
            with a reliable head, calibrated probabilities or open-set scores).
        tolerance: The largest difference that passes.
        unknown_disagreements: Images the file and PyTorch flag differently as "not one of my
            classes", leaving out those whose score is within ``tolerance`` of the threshold.
    """

    num_images: int
    images_from: str
    max_abs_difference: float
    tolerance: float = CHECK_TOLERANCE
    unknown_disagreements: int = 0

    @property
    def passed(self) -> bool:
        return bool(self.max_abs_difference <= self.tolerance) and not self.unknown_disagreements

    @property
    def text(self) -> str:
        """The check in words: max abs difference vs PyTorch on 8 validation images: 3.1e-06 —
        passed."""
        verdict = "passed" if self.passed else f"FAILED (tolerance {self.tolerance:g})"
        disagreements = (
            f", {plural(self.unknown_disagreements, 'image')} flagged unknown differently"
            if self.unknown_disagreements
            else ""
        )
        return (
            f"max abs difference vs PyTorch on {plural(self.num_images, self.images_from)}: "
            f"{self.max_abs_difference:.1e}{disagreements} — {verdict}"
        )


@dataclass(frozen=True)
class ExportResult:
    """A written export: where, in which format, how big, and its check (None for the zip)."""

    path: Path
    format: str
    size_bytes: int
    check: ExportCheck | None = None


def format_for(out_file: str | Path, requested: str | None = None) -> str:
    """The format to write: the one asked for, else the one the file name's ending names
    (.onnx, .pt2, .pt, .zip, .html), else :data:`DEFAULT_FORMAT`."""
    if requested:
        return requested
    suffix = Path(out_file).suffix.lower()
    if suffix == ".zip":
        return ZIP_FORMAT
    if suffix in WEB_SUFFIXES:
        return WEB_FORMAT
    by_suffix = {f.suffix: f.name for f in MODEL_FORMATS.values()}
    return by_suffix.get(suffix, DEFAULT_FORMAT)


# ---- the check ----------------------------------------------------------------------------------


def run_image_files(run: Run, count: int) -> tuple[list[Path], list[Image.Image], str]:
    """Up to ``count`` of the run's own image files that still load (validation first), the
    images, and what they are in words ("validation image"); empty lists when none is left."""
    try:
        split = read_json(run.path / SPLIT_FILE)
        val, train = list(split.get("val", [])), list(split.get("train", []))
    except (TLStudioError, AttributeError, TypeError):
        val, train = [], []
    paths, images, parts = [], [], set()
    for index, (path, _label) in enumerate([*val, *train]):
        try:
            images.append(load_image(path))
        except (TLStudioError, OSError, TypeError, ValueError):
            continue  # moved or deleted since training: the next one will do
        paths.append(Path(path))
        parts.add("validation" if index < len(val) else "training")
        if len(images) == count:
            break
    return paths, images, " and ".join(sorted(parts)) + " image"


def _check_images(run: Run, count: int) -> tuple[list[Image.Image], str]:
    """Up to ``count`` of the run's own images (validation first) and what they are in words;
    generated noise images only when none is on disk any more (a run copied without its data)."""
    _paths, images, images_from = run_image_files(run, count)
    if images:
        return images, images_from
    return generated_images(run), GENERATED_IMAGE


def generated_images(run: Run) -> list[Image.Image]:
    """Four noise images a little larger than the model's input, not square, always the same:
    for checks on a run whose own images are gone."""
    rng = np.random.default_rng(0)
    size = run.preprocessing.image_size
    noise = [rng.integers(0, 256, (size + 9, size + 3, 3), dtype=np.uint8) for _ in range(4)]
    return [Image.fromarray(pixels) for pixels in noise]


def _pixels(run: Run, images: list[Image.Image]) -> np.ndarray:
    """The images as every export takes them: the run's evaluation transform without its
    normalisation (mean 0, std 1 makes it exactly the identity), as float32 (N, 3, S, S)."""
    unnormalised = replace(run.preprocessing, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    transform = unnormalised.eval_transform()
    return torch.stack([transform(image.convert("RGB")) for image in images]).numpy()


def check_export(
    run: Run, network: torch.nn.Module, model_format: ModelFormat, path: Path
) -> ExportCheck:
    """Loads ``path`` with the format's runtime and compares its outputs with the run's
    PyTorch network (normalising as the app does) on the run's own images: the logits, and
    for a network with a reliable head also the calibrated probabilities, the open-set scores
    and the unknown flags."""
    images, images_from = _check_images(run, CHECK_IMAGES)
    pixels = _pixels(run, images)
    mean = torch.tensor(run.preprocessing.mean).view(1, 3, 1, 1)
    std = torch.tensor(run.preprocessing.std).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = output_list(network((torch.from_numpy(pixels) - mean) / std))
    runner = model_format.load(path)
    batched = runner(pixels)
    single = runner(pixels[:1])  # another batch size than the batch: the dimension is dynamic
    if not _same_shapes(batched, expected) or not _same_shapes(single, [e[:1] for e in expected]):
        return ExportCheck(len(images), images_from, float("inf"))
    # Logits, probabilities and scores are compared as numbers; the flags (last) as flags.
    numbers = slice(0, 3) if len(expected) >= 4 else slice(None)
    difference = max(
        float(np.abs(got - want[: len(got)]).max())
        for outputs in (batched, single)
        for got, want in zip(outputs[numbers], expected[numbers], strict=True)
    )
    disagreements = 0
    if len(expected) >= 4:
        threshold = float(network.head.threshold)
        clear = np.abs(expected[2] - threshold) > CHECK_TOLERANCE
        disagreements = int(((batched[3] != expected[3]) & clear).sum())
        disagreements += int(((single[3] != expected[3][:1]) & clear[:1]).sum())
    if len(expected) == 5:  # a multi-label run's tags at their thresholds
        thresholds = network.head.tag_thresholds.numpy()[None, :]
        clear = np.abs(expected[1] - thresholds) > CHECK_TOLERANCE
        disagreements += int(((batched[4] != expected[4]) & clear).sum())
        disagreements += int(((single[4] != expected[4][:1]) & clear[:1]).sum())
    return ExportCheck(len(images), images_from, difference, unknown_disagreements=disagreements)


def _same_shapes(got: list[np.ndarray], expected: list[np.ndarray]) -> bool:
    return len(got) == len(expected) and all(
        g.shape == e.shape for g, e in zip(got, expected, strict=True)
    )


def reliable_network(run: Run, network: torch.nn.Module) -> NetworkWithReliableHead:
    """The run's network followed by its calibration and open-set model (see
    :class:`tl_core.inference.ReliableHead`), as the ONNX and .pt2 files carry them."""
    thresholds = read_thresholds(run) if run.multi_label else None
    head = ReliableHead(read_calibration(run.path), read_open_set(run.path), thresholds)
    return NetworkWithReliableHead(network, head).eval()


# ---- model files --------------------------------------------------------------------------------


def export_model(
    run: Run | str | Path,
    out_file: str | Path,
    model_format: str = DEFAULT_FORMAT,
    on_step: Callable[[str], None] | None = None,
) -> ExportResult:
    """Writes the run's model as ``model_format`` and checks it against PyTorch.

    Args:
        run: A loaded run or its folder.
        out_file: The file to write; replaced only once the new one has passed its check.
        model_format: A name of :data:`MODEL_FORMATS` ("onnx", "pt2", "torchscript").
        on_step: Called with each slow step in words (export, check), for a progress display.

    Raises:
        RunError: The run folder is damaged: its model cannot be built.
        ExportError: The exporter failed on this backbone, or the exported file's outputs
            differ from PyTorch's (nothing is written then).
    """
    fmt = MODEL_FORMATS[model_format]
    step = on_step or (lambda _text: None)
    run = as_run(run)
    out_file = Path(out_file)
    network = run.build_model("cpu")  # a damaged run says so here, before any step is shown
    if run.multi_label and not fmt.reliable:
        raise ExportError(
            f"A {fmt.title} file returns the logits only, so it cannot carry the thresholds "
            f"of {run.path.name}, which gives several tags per image.",
            "Export as ONNX, .pt2 or the run .zip: they carry each tag's threshold.",
        )
    if fmt.reliable:
        network = reliable_network(run, network)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    # Written and checked under its own name in a hidden folder beside the target (runtimes
    # read the suffix), then moved into place: a failed export never leaves a file.
    with tempfile.TemporaryDirectory(dir=out_file.parent, prefix=f".{out_file.name}.") as tmp:
        written = Path(tmp) / f"model{fmt.suffix}"
        step(f"Exporting to {fmt.title}")
        try:
            fmt.write(network, list(run.labels), run.preprocessing, written)
        except Exception as exc:  # exporters raise many kinds; the user needs one sentence
            first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ExportError(
                f"The backbone {run.backbone} could not be exported to {fmt.title}: "
                f"{first_line[:300]}",
                _other_formats_hint(fmt),
            ) from exc
        step(f"Checking the {fmt.title} file against PyTorch")
        check = check_export(run, network, fmt, written)
        if not check.passed:
            raise ExportError(
                f"The {fmt.title} export does not reproduce the run: {check.text}. "
                "It was not saved.",
                _other_formats_hint(fmt),
            )
        os.replace(written, out_file)
    return ExportResult(out_file, fmt.name, out_file.stat().st_size, check)


def _other_formats_hint(fmt: ModelFormat) -> str:
    others = [name for name, f in MODEL_FORMATS.items() if f is not fmt and not f.legacy]
    return (
        f"Export as {' or '.join(others)} or as the run .zip instead, or update torch"
        + (" and onnxruntime" if fmt.name == "onnx" else "")
        + "; if it persists, report the backbone's name."
    )


def export_torchscript(run: Run | str | Path, out_file: str | Path) -> Path:
    """Legacy TorchScript export (see :mod:`tl_core.export.formats`), checked like the others."""
    return export_model(run, out_file, "torchscript").path


# ---- the run zip --------------------------------------------------------------------------------

HOW_TO_LOAD = """\
TL Studio model: {name}
Backbone: {backbone} ({num_classes} classes: {labels})

Files
  model.safetensors  the trained weights (timm architecture "{backbone}")
  config.json        training settings and preprocessing
  labels.json        class names, in the order of the model's outputs
  metrics.json       per-epoch loss and accuracy
  calibration.json   the temperature that calibrates the probabilities (logits / T, softmax)
  open_set.safetensors  what "not one of my classes" is measured against (predict.py reads it)
  README.md          the model card: data, classes, split, backbone, scores per class
  predict.py         classify images with torch, timm and pillow only
  predict_onnx.py    classify images with an ONNX export, with onnxruntime and pillow only

Preprocessing
  RGB image, resize the short side to {resize} px ({interpolation}), centre-crop {size}x{size},
  scale to [0, 1], normalise with mean {mean} and std {std}.

Predict without TL Studio (in the unzipped folder):
  python predict.py image.jpg --top-k 3
Predict with the command line (unzip first):
  tl-studio predict path/to/unzipped_folder image.jpg --top-k 3

Load in Python with timm:
  import json, timm, torch
  from safetensors.torch import load_file
  labels = json.load(open("labels.json"))
  model = timm.create_model("{backbone}", pretrained=False, num_classes=len(labels))
  model.load_state_dict(load_file("model.safetensors"))
  model.eval()

Model files (tl-studio export RUN --format onnx|pt2 --out FILE) take the cropped image scaled
to [0, 1], float32 (N, 3, {size}, {size}), any N, and normalise it themselves. They return four
outputs: logits, calibrated probabilities (output i is labels[i]), ood_score (how unlike the
training images each image is) and unknown (true: "not one of my classes", the score is above
the run's threshold). Each carries its class names, preprocessing, temperature and threshold
as JSON documents labels.json, preprocessing.json and open_set.json, so the file alone is
enough:

ONNX (ONNX Runtime; python predict_onnx.py model.onnx image.jpg):
  import json, onnxruntime
  session = onnxruntime.InferenceSession("model.onnx")
  meta = session.get_modelmeta().custom_metadata_map
  class_names = json.loads(meta["labels.json"])  # {labels_list}
  # pixels: float32 (N, 3, {size}, {size})
  logits, probabilities, ood_score, unknown = session.run(None, {{"images": pixels}})

torch.export (.pt2, PyTorch alone):
  import json, torch
  extra = {{"labels.json": "", "preprocessing.json": "", "open_set.json": ""}}
  model = torch.export.load("model.pt2", extra_files=extra).module()
  class_names = json.loads(extra["labels.json"])
  # images: float tensor (N, 3, {size}, {size}) in [0, 1]
  logits, probabilities, ood_score, unknown = model(images)

TorchScript (legacy, for LibTorch C++; --format torchscript) returns the logits only (softmax
of logits / the temperature in calibration.json gives the calibrated probabilities) and keeps
the class names and preprocessing as attributes too:
  model.class_names, model.image_size, model.resize_size, model.mean, model.std
"""


MULTI_LABEL_HOW_TO = """
Several tags per image
  This run gives each image every tag whose probability reaches the tag's threshold, or none.
  Its outputs are independent sigmoids, not a softmax: probability i = 1 / (1 + exp(-logit i)).
  thresholds.json holds each tag's threshold (chosen on the validation images to maximise the
  tag's F1, or edited since); predict.py and predict_onnx.py print the tags under "tags".
  ONNX and .pt2 files return a fifth output, tags (N, tags): true where probability >=
  threshold, and list the thresholds in open_set.json.
"""


def how_to_load_text(run: Run) -> str:
    prep = run.preprocessing
    return HOW_TO_LOAD.format(
        name=run.path.name,
        backbone=run.backbone,
        num_classes=len(run.labels),
        labels=", ".join(run.labels),
        labels_list=list(run.labels),
        resize=resize_size(prep),
        size=prep.image_size,
        interpolation=prep.interpolation,
        mean=tuple(round(v, 4) for v in prep.mean),
        std=tuple(round(v, 4) for v in prep.std),
    )


def export_zip(run: Run | str | Path, out_file: str | Path) -> Path:
    """Packs the run's weights, config, labels and metrics with the standalone predict
    scripts, the model card (README.md) and HOW_TO_LOAD.txt into one .zip file.

    Raises:
        RunError: The run folder is damaged or was edited: its model cannot be built.
    """
    run = as_run(run)
    run.build_model("cpu")  # an export must load the first time: never pack weights that don't
    out_file = Path(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    here = Path(__file__).parent

    def write(tmp: Path) -> None:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for name in (
                WEIGHTS_FILE,
                CONFIG_FILE,
                LABELS_FILE,
                METRICS_FILE,
                CALIBRATION_FILE,
                OPEN_SET_FILE,
                THRESHOLDS_FILE,
            ):
                if (run.path / name).is_file():
                    archive.write(run.path / name, arcname=name)
            for source, name in STANDALONE_SCRIPTS.items():
                archive.write(here / source, arcname=name)
            archive.writestr(MODEL_CARD, model_card_text(run))
            archive.writestr(
                "HOW_TO_LOAD.txt",
                how_to_load_text(run) + (MULTI_LABEL_HOW_TO if run.multi_label else ""),
            )

    atomic_write(out_file, write)
    return out_file
