"""The model card of an exported run: README.md in the export zip, written from the run itself.

It says what a reader of the zip needs before trusting the model: the data it learned from,
its classes, how the data was split, the backbone and what was frozen, how well it does on
each class of the validation images (with the interval of the overall accuracy), and when it
was trained and exported. Every figure is read from the run's files, none is typed by hand.
"""

from __future__ import annotations

from datetime import datetime

from tl_core.common import escape_markdown, format_accuracy, plural
from tl_core.export.formats import resize_size
from tl_core.inference import recorded_validation_scores, split_counts
from tl_core.runs import CONFIG_FILE, Run, describe_freeze, read_json


def _cell(text: object) -> str:
    """A value as it may stand in a Markdown table cell: user names render literally."""
    return escape_markdown(str(text))


def _data_section(run: Run) -> list[str]:
    train = run.config
    lines = ["## Data", "", f"- Source: `{train.data}`"]
    if train.val_data:
        lines.append(f"- Validation images: a separate folder, `{train.val_data}`")
    else:
        lines.append(
            f"- Split: {train.val_fraction:.0%} of each class held out for validation "
            f"(stratified, seed {train.seed})"
        )
    counts = split_counts(run)
    lines += ["", f"{plural(len(run.labels), 'class')}, in the order of the model's outputs:", ""]
    if counts is None:
        lines += [f"{i}. {_cell(label)}" for i, label in enumerate(run.labels)]
        return lines + ["", "(split.json is missing: images per class are unknown.)"]
    train_counts, val_counts = counts
    lines += ["| output | class | training images | validation images |", "|---|---|---|---|"]
    lines += [
        f"| {i} | {_cell(label)} | {train_counts[label]} | {val_counts[label]} |"
        for i, label in enumerate(run.labels)
    ]
    total_train, total_val = sum(train_counts.values()), sum(val_counts.values())
    return lines + [f"| | **all** | {total_train} | {total_val} |"]


def _model_section(run: Run) -> list[str]:
    train, prep = run.config, run.preprocessing
    config = read_json(run.path / CONFIG_FILE)
    source = run.model_info.get("weights_source") or (
        "ImageNet-pretrained" if train.pretrained else "random initialisation"
    )
    return [
        "## Model",
        "",
        f"- Backbone: `{run.backbone}` (timm), starting weights: {source}",
        f"- Trained: {describe_freeze(config)}; {train.epochs} epochs planned, batch size "
        f"{train.batch_size}, learning rate {train.lr:g}, augmentation {train.augment}",
        f"- Input: RGB, short side resized to {resize_size(prep)} px ({prep.interpolation}), "
        f"centre-cropped to {prep.image_size}x{prep.image_size}, scaled to [0, 1], normalised "
        f"with mean {tuple(round(v, 4) for v in prep.mean)} and std "
        f"{tuple(round(v, 4) for v in prep.std)}",
    ]


def _metrics_section(run: Run) -> list[str]:
    lines = ["## Results on the validation images", ""]
    best, epoch = run.metrics.get("best_val_accuracy"), run.metrics.get("best_epoch")
    scores = recorded_validation_scores(run)
    if best is not None and scores is not None:
        accuracy = format_accuracy(best, int(scores.support.sum()))
        lines.append(f"Accuracy: {accuracy}, best epoch {epoch} (its weights are exported).")
    elif best is not None:
        lines.append(f"Accuracy: {best:.1%}, best epoch {epoch} (its weights are exported).")
    if scores is None:
        return lines + ["", "Per-class scores were not recorded for this run."]
    lines += ["", "| class | precision | recall | F1 | images |", "|---|---|---|---|---|"]
    lines += [
        f"| {_cell(row.label)} | {row.precision:.1%} | {row.recall:.1%} | {row.f1:.1%} "
        f"| {row.support} |"
        for row in scores.itertuples()
    ]
    return lines + [
        "",
        "Validation images chose the best epoch, so these figures are slightly optimistic; "
        "evaluate on images the model never saw (`tl-studio evaluate RUN --data FOLDER`) "
        "before relying on it.",
    ]


def model_card_text(run: Run, exported_at: datetime | None = None) -> str:
    """The model card (Markdown) of ``run``, dated ``exported_at`` (default: now)."""
    exported_at = exported_at or datetime.now()
    created = read_json(run.path / CONFIG_FILE).get("created", "unknown")
    lines = [
        f"# {_cell(run.path.name)}: image classifier, {plural(len(run.labels), 'class')}",
        "",
        f"Trained with TL Studio on {str(created).replace('T', ' ')}; "
        f"exported on {exported_at:%Y-%m-%d %H:%M}.",
        "",
        *_data_section(run),
        "",
        *_model_section(run),
        "",
        *_metrics_section(run),
        "",
        "## Use it",
        "",
        "- `python predict.py image.jpg --top-k 3` in this folder (needs torch, timm, pillow).",
        "- `python predict_onnx.py model.onnx image.jpg` with the file of "
        "`tl-studio export RUN --format onnx` (needs onnxruntime, pillow).",
        "- HOW_TO_LOAD.txt says how to load the weights in your own code.",
        "",
    ]
    return "\n".join(lines)
