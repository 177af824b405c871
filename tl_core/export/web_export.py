"""``tl-studio export RUN --format web``: the run as one self-contained web page
(:mod:`tl_core.export.web_page`), kept only once its answers on the run's own images match the
app's.

The check runs the written page in a real browser where one is available, else its model in
onnxruntime (:mod:`tl_core.export.web_check`), and compares it with ``tl-studio predict``
(:class:`tl_core.inference.Predictor`): every top-1 answer must agree, and every probability
within :data:`PAGE_TOLERANCE`. The smaller, quantised page (:mod:`tl_core.export.quantized`)
is first measured against the full model on the validation images, then checked against its
own model in onnxruntime (top-1 equal, probabilities within :data:`QUANTIZED_PAGE_TOLERANCE`).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from tl_core.common import check_output_file, format_size, plural
from tl_core.export.formats import write_onnx
from tl_core.export.quantized import (
    AGREEMENT_IMAGES,
    QuantizedAgreement,
    measure_agreement,
    quantize_model,
)
from tl_core.export.run_export import (
    CHECK_IMAGES,
    GENERATED_IMAGE,
    ExportError,
    generated_images,
    reliable_network,
    run_image_files,
)
from tl_core.export.web_check import (
    IN_BROWSER,
    Answers,
    PageRunError,
    classify_in_onnxruntime,
    classify_with_page,
    find_browser,
)
from tl_core.export.web_page import page_config, page_facts, render_page
from tl_core.inference import split_counts
from tl_core.models import Preprocessing
from tl_core.runs import Run, as_run

# Probabilities may differ from `tl-studio predict` by at most 0.001 (0.1 percentage point, the
# page's own display precision). The page's preprocessing gives Pillow's pixels exactly, so
# what is left is float32 arithmetic in another order (ONNX Runtime's WebAssembly kernels
# against PyTorch with folded batch norms: about 1e-6 measured) and a browser's JPEG decoder
# against Pillow's (both libjpeg-turbo; a pixel off by one moves a probability by about 1e-4).
# A wrong normalisation, resize or crop moves them by 0.01 to 0.5.
PAGE_TOLERANCE = 1e-3
# The int8 page against its own model in onnxruntime: integer kernels differ between ONNX
# Runtime's builds (x86 vectorised against WebAssembly), which moved an EfficientNet-Lite0 run's
# probabilities by 2.2e-3; 0.01 holds that with room, and a wrong preprocessing still fails it.
QUANTIZED_PAGE_TOLERANCE = 1e-2


@dataclass(frozen=True)
class PageCheck:
    """A written page's answers against a reference on the run's own images.

    Attributes:
        num_images: Images classified by both.
        images_from: What they are, in words ("validation image").
        checked_in: What ran the page ("headless Chromium" or onnxruntime).
        reference: What it was compared with, in words.
        top1_differences: Images whose top-1 answer differs.
        max_probability_difference: The largest difference of any class's probability.
        tolerance: The largest probability difference that passes.
    """

    num_images: int
    images_from: str
    checked_in: str
    reference: str
    top1_differences: int
    max_probability_difference: float
    tolerance: float = PAGE_TOLERANCE

    @property
    def passed(self) -> bool:
        return self.top1_differences == 0 and self.max_probability_difference <= self.tolerance

    @property
    def text(self) -> str:
        """In words: the page in headless Chromium against tl-studio predict on 8 validation
        images: same top-1 on all, probabilities within 3.1e-08 (tolerance 0.001): passed."""
        verdict = "passed" if self.passed else "FAILED"
        same = self.num_images - self.top1_differences
        return (
            f"the page in {self.checked_in} against {self.reference} on "
            f"{plural(self.num_images, self.images_from)}: same top-1 on {same} of "
            f"{self.num_images}, probabilities within {self.max_probability_difference:.1e} "
            f"(tolerance {self.tolerance:g}): {verdict}"
        )


@dataclass(frozen=True)
class WebExport:
    """A written web page: where, how big, whether quantised, its check, and for the quantised
    page its agreement with the full model."""

    path: Path
    size_bytes: int
    quantized: bool
    check: PageCheck
    agreement: QuantizedAgreement | None = None

    @property
    def text(self) -> str:
        kind = "quantised (int8) web page" if self.quantized else "web page"
        lines = [f"Wrote the {kind} to {self.path} ({format_size(self.size_bytes)})"]
        if self.agreement is not None:
            lines.append(f"Int8 weights: {self.agreement.text}")
        lines.append(f"Check: {self.check.text}")
        return "\n".join(lines)


def compare_answers(
    page: Answers, reference: Answers, images_from: str, checked_in: str, reference_name: str
) -> PageCheck:
    """The page's answers against the reference's, image by image (both in the shape of
    ``tl-studio predict --json``)."""
    differences, worst = 0, 0.0
    for mine, theirs in zip(page, reference, strict=True):
        ranked = mine.get("predictions") or []
        expected = {p["label"]: p["probability"] for p in theirs["predictions"]}
        if not ranked or ranked[0]["label"] != theirs["predictions"][0]["label"]:
            differences += 1
        elif bool(mine.get("unknown")) != bool(theirs.get("unknown")):
            differences += 1  # the same class, but only one of them says "not one of mine"
        for prediction in ranked:
            gap = abs(prediction["probability"] - expected.get(prediction["label"], -1.0))
            worst = max(worst, gap)
    differences += abs(len(page) - len(reference))
    return PageCheck(len(reference), images_from, checked_in, reference_name, differences, worst)


def predict_answers(run: Run, images: list[Path]) -> Answers:
    """``tl-studio predict --json``'s answers on ``images``, every class ranked."""
    from tl_core.inference import Predictor

    predictor = Predictor.from_run(run, device="cpu")
    return [
        {
            "image": Path(result.image).name,
            "predictions": [{"label": lab, "probability": p} for lab, p in result.predictions],
            "unknown": bool(result.unknown),
        }
        for result in predictor.predict_paths(images, top_k=len(run.labels))
    ]


def page_preprocessing(run: Run) -> Preprocessing:
    """The preprocessing the page is built with: the run's own (one place, so that a test can
    give a page a wrong one and see the check refuse it)."""
    return run.preprocessing


def _check_files(run: Run, folder: Path) -> tuple[list[Path], str]:
    paths, _images, images_from = run_image_files(run, CHECK_IMAGES)
    if paths:
        return paths, images_from
    # A run copied without its data: generated images, written as files for the page's input.
    for index, image in enumerate(generated_images(run)):
        paths.append(folder / f"generated_{index}.png")
        image.save(paths[-1])
    return paths, GENERATED_IMAGE


def _validation_files(run: Run) -> tuple[list[Path], str]:
    counts = split_counts(run)
    wanted = min(AGREEMENT_IMAGES, sum(counts[1].values())) if counts else 0
    paths, _images, images_from = run_image_files(run, wanted) if wanted else ([], [], "")
    return paths, images_from or "validation image"


def _write_model(run: Run, folder: Path, step) -> tuple[Path, dict[str, object]]:
    """The run's ONNX model in ``folder`` and the page config that goes with it."""
    preprocessing = page_preprocessing(run)
    labels = list(run.labels)
    model = folder / "model.onnx"
    # With its calibration and open-set model, so the page gives the app's calibrated
    # probabilities and answers "Not one of my classes" for the same images.
    network = reliable_network(run, run.build_model("cpu"))  # a damaged run says so here
    step("Exporting to ONNX")
    try:
        write_onnx(network, labels, preprocessing, model)
    except Exception as exc:  # exporters raise many kinds; the user needs one sentence
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ExportError(
            f"The backbone {run.backbone} could not be exported to ONNX for the web page: "
            f"{first_line[:300]}",
            "Export the run .zip instead, or update torch; if it persists, report the "
            "backbone's name.",
        ) from exc
    return model, page_config(labels, preprocessing, page_facts(run))


def _quantize(run: Run, model: Path, config: dict, step) -> tuple[Path, QuantizedAgreement]:
    step("Quantising the weights to int8 and comparing with the full model")
    small = model.with_name("model.int8.onnx")
    quantize_model(model, small)
    return small, measure_agreement(model, small, config, *_validation_files(run))


def _write_page(
    run: Run, folder: Path, quantized: bool, step
) -> tuple[Path, QuantizedAgreement | None]:
    model, config = _write_model(run, folder, step)
    agreement = None
    if quantized:
        model, agreement = _quantize(run, model, config, step)
        if not agreement.acceptable:
            raise ExportError(
                f"The quantised page would change too many answers: {agreement.text}.",
                "Export the full web page instead (without --quantized).",
            )
        config = {**config, **asdict(page_facts(run, quantized=True))}
    page = folder / "page.html"
    page.write_text(render_page(model.read_bytes(), config), encoding="utf-8")
    return page, agreement


def check_page(run: Run, page: Path, quantized: bool, browser: str | None) -> PageCheck:
    """Runs ``page`` on the run's own images (in ``browser`` if given, else onnxruntime) and
    compares it with ``tl-studio predict``, or for a quantised page with its own model in
    onnxruntime.

    Raises:
        ExportError: The page did not load or did not answer.
    """
    images, images_from = _check_files(run, page.parent)
    try:
        answers, checked_in = classify_with_page(page, images, browser)
    except PageRunError as exc:
        raise ExportError(
            f"The web page does not work: {exc.message}", "Report the backbone's name."
        ) from exc
    if quantized:
        html = page.read_text(encoding="utf-8")
        expected = classify_in_onnxruntime(html, images)
        check = compare_answers(answers, expected, images_from, checked_in, "its int8 model")
        return replace(check, tolerance=QUANTIZED_PAGE_TOLERANCE)
    expected = predict_answers(run, images)
    return compare_answers(answers, expected, images_from, checked_in, "tl-studio predict")


def web_page_refusal(run: Run | str | Path) -> ExportError | None:
    """Why ``run`` cannot become a web page (it gives several tags per image, which the page
    cannot show yet), for a page to say before offering the button; None when it can."""
    run = as_run(run)
    if not run.multi_label:
        return None
    return ExportError(
        f"The run {run.path.name} gives several tags per image, which the web page cannot "
        "show yet.",
        "Export it as ONNX, .pt2 or the run .zip instead: they carry each tag's threshold.",
    )


def export_web_page(
    run: Run | str | Path,
    out_file: str | Path,
    quantized: bool = False,
    on_step: Callable[[str], None] | None = None,
    browser: str | None | bool = True,
) -> WebExport:
    """Writes ``run`` as one self-contained HTML page and checks its answers first.

    Args:
        run: A loaded run or its folder.
        out_file: The page to write (``model.html``); replaced only once the new one passed.
        quantized: Int8 weights (about a quarter of the model's size); refused when they change
            more than :data:`tl_core.export.quantized.MAX_CHANGED_SHARE` of the validation
            answers.
        on_step: Called with each slow step in words, for a progress display.
        browser: True finds Chromium (:func:`find_browser`) and falls back to onnxruntime;
            False always checks in onnxruntime; a path names the browser to use.

    Raises:
        RunError: The run folder is damaged: its model cannot be built.
        ExportError: The backbone cannot be exported, the quantised model changes too many
            answers, or the page's answers differ from the app's (nothing is written then).
    """
    step = on_step or (lambda _text: None)
    run = as_run(run)
    if (refusal := web_page_refusal(run)) is not None:
        raise refusal
    out_file = check_output_file(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    chromium = find_browser() if browser is True else (browser or None)
    with tempfile.TemporaryDirectory(dir=out_file.parent, prefix=f".{out_file.name}.") as tmp:
        page, agreement = _write_page(run, Path(tmp), quantized, step)
        step(f"Checking the page's answers in {IN_BROWSER if chromium else 'onnxruntime'}")
        check = check_page(run, page, quantized, chromium)
        if not check.passed:
            raise ExportError(
                f"The web page does not give the app's answers: {check.text}. It was not saved.",
                "Export the run .zip or ONNX instead; if it persists, report the backbone's name.",
            )
        os.replace(page, out_file)
    return WebExport(out_file, out_file.stat().st_size, quantized, check, agreement)


def quantized_agreement(
    run: Run | str | Path, on_step: Callable[[str], None] | None = None
) -> QuantizedAgreement:
    """How the int8 page's model agrees with the full model on the validation images, to show
    before a person picks the smaller page (nothing is written).

    Raises:
        RunError: The run folder is damaged.
        ExportError: The backbone cannot be exported to ONNX.
    """
    step = on_step or (lambda _text: None)
    run = as_run(run)
    with tempfile.TemporaryDirectory(prefix="tl-studio-int8-") as tmp:
        model, config = _write_model(run, Path(tmp), step)
        return _quantize(run, model, config, step)[1]
