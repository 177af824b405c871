"""The one-file web page of a run: its ONNX model, class names, preprocessing and facts, with
ONNX Runtime Web (vendored in ``web_assets/onnxruntime-web``) embedded, so that the file opens by
double-click, offline, in any current browser, phones included.

Browsers refuse to fetch scripts and WebAssembly from ``file://``, so everything the page needs
is inside it as base64: the runtime's JavaScript (imported from a blob URL), its WebAssembly
binary (gzipped, ungzipped by the browser's DecompressionStream) and the model. A
Content-Security-Policy in the page forbids every network request, so "nothing leaves this
device" holds by construction, not by promise.

Preprocessing is JavaScript (``web_assets/preprocess.js``), a port of Pillow's resampling: it
gives Pillow's pixels byte for byte (no pixel differs on 12 photographs and sample images),
where resizing inside the ONNX graph (opset 18 ``Resize``, antialias, cubic a = -0.5) left
0.6 % of the pixels off by up to 5/255 on uint8 and 18 % off by up to 6/255 on float (measured
with ``bench/web_resize.py``).
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import asdict, dataclass
from datetime import datetime
from importlib import resources

from tl_core.common import format_accuracy, plural
from tl_core.export.formats import INPUT_NAME, OUTPUT_NAME, resize_size
from tl_core.inference import OUTPUT_NAMES, recorded_validation_scores
from tl_core.models import Preprocessing
from tl_core.runs import CONFIG_FILE, Run, read_json

ORT_WEB_VERSION = "1.30.0"
ORT_FOLDER = "onnxruntime-web"
ORT_SCRIPT = "ort.wasm.bundle.min.mjs"
ORT_WASM = "ort-wasm-simd-threaded.wasm.gz"
# As many bars as `tl-studio predict` shows by default.
TOP_K = 5


@dataclass(frozen=True)
class PageFacts:
    """What the page says about the model, each as one line of text.

    Attributes:
        title: The run's name.
        accuracy: Validation accuracy with its interval, in words.
        dates: When it was trained and exported.
        model_card: One line: backbone, classes, images it learned from.
        footer: Which runtime the page carries.
    """

    title: str
    accuracy: str
    dates: str
    model_card: str
    footer: str


def page_facts(run: Run, exported_at: datetime | None = None, quantized: bool = False) -> PageFacts:
    """The facts of ``run`` for its page, read from its files (never typed by hand)."""
    exported_at = exported_at or datetime.now()
    best = run.metrics.get("best_val_accuracy")
    scores = recorded_validation_scores(run)
    if best is not None and scores is not None:
        accuracy = f"Validation accuracy: {format_accuracy(best, int(scores.support.sum()))}"
    elif best is not None:
        accuracy = f"Validation accuracy: {best:.1%}"
    else:
        accuracy = "Validation accuracy: not recorded"
    created = str(read_json(run.path / CONFIG_FILE).get("created", "unknown")).replace("T", " ")
    classes = ", ".join(run.labels)
    weights = "int8 (quantised) weights" if quantized else "float32 weights"
    return PageFacts(
        title=run.path.name,
        accuracy=accuracy,
        dates=f"Trained {created[:16]}; page made {exported_at:%Y-%m-%d %H:%M}.",
        model_card=(
            f"Model card: an image classifier for {plural(len(run.labels), 'class')} "
            f"({classes}), made with TL Studio from the {run.backbone} backbone, {weights}; "
            "it only knows these classes."
        ),
        footer=f"Runs on ONNX Runtime Web {ORT_WEB_VERSION} (MIT licence), inside this page.",
    )


def page_config(
    labels: list[str], preprocessing: Preprocessing, facts: PageFacts
) -> dict[str, object]:
    """The JSON the page's script reads: labels, preprocessing, the model's tensor names and
    the facts it shows."""
    return {
        **asdict(facts),
        "labels": list(labels),
        "preprocessing": {
            "image_size": int(preprocessing.image_size),
            "resize_size": resize_size(preprocessing),
            "interpolation": str(preprocessing.interpolation),
        },
        "input_name": INPUT_NAME,
        "output_name": OUTPUT_NAME,
        # The calibrated probabilities and the "not one of my classes" verdict (reliable head).
        "probabilities_name": OUTPUT_NAMES[1],
        "unknown_name": OUTPUT_NAMES[3],
        "top_k": min(TOP_K, len(labels)),
    }


def _asset(*parts: str) -> bytes:
    return resources.files("tl_core.export").joinpath("web_assets", *parts).read_bytes()


def _base64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def render_page(model: bytes, config: dict[str, object]) -> str:
    """The page's HTML: the template with the config, the model and the runtime filled in.

    Args:
        model: The ONNX model's bytes (input: [0, 1] pixels; normalisation inside).
        config: From :func:`page_config`.
    """
    template = _asset("page.html").decode("utf-8")
    # Class names are the user's: "</script" or "<!--" in them would change how the script
    # element holding the JSON is parsed; JSON's own escape of "<" keeps them inert.
    config_json = json.dumps(config, ensure_ascii=False).replace("<", "\\u003c")
    script = (_asset("preprocess.js") + b"\n" + _asset("page.js")).decode("utf-8")
    filled = {
        "TITLE": html.escape(str(config["title"])),
        "CONFIG": config_json,
        "MODEL": _base64(model),
        "ORT_JS": _base64(_asset(ORT_FOLDER, ORT_SCRIPT)),
        "ORT_WASM": _base64(_asset(ORT_FOLDER, ORT_WASM)),
        "SCRIPT": script,
    }
    for name, value in filled.items():
        template = template.replace(f"<!--TL:{name}-->", value)
    return template


def page_config_of(page_html: str) -> dict[str, object]:
    """The config a written page carries (what its script will use), read back from it."""
    start = page_html.index('id="tl-config">') + len('id="tl-config">')
    end = page_html.index("</script>", start)
    return json.loads(page_html[start:end])


def page_model_of(page_html: str) -> bytes:
    """The ONNX model a written page carries, read back from it."""
    start = page_html.index('id="tl-model">') + len('id="tl-model">')
    end = page_html.index("</script>", start)
    return base64.b64decode(page_html[start:end])
