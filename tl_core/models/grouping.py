"""Layer groups: consecutive layers that freeze and unfreeze together, for any architecture.

Groups are derived from timm's own ``group_matcher(coarse=True)`` (stem, then stages or blocks
from input to output), with the classifier always a separate last group called ``"head"``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from timm.models._manipulate import flatten_modules, group_with_matcher

from tl_core.models.weights import classifier_prefixes, is_classifier_key

HEAD_GROUP = "head"


@dataclass(frozen=True)
class LayerGroup:
    """Consecutive layers that freeze and unfreeze together.

    Attributes:
        index: Position from the input (0) to the head (last).
        name: Short label, e.g. ``"stem"``, ``"blocks.3"``, ``"head"``.
        param_names: Names of the parameters in the group, in model order.
        num_params: Number of scalar parameters in the group.
        is_head: Whether this is the classifier head (always trained).
    """

    index: int
    name: str
    param_names: tuple[str, ...]
    num_params: int
    is_head: bool = False


def layer_groups(model: torch.nn.Module) -> list[LayerGroup]:
    """Splits a model's parameters into layer groups, input to output, head last.

    Uses the model's ``group_matcher(coarse=True)``; models without one are grouped by their
    top-level modules (containers split one level). Every parameter is in exactly one group.
    """
    params = dict(model.named_parameters())
    heads = classifier_prefixes(model)
    head_names = [n for n in params if is_classifier_key(n, heads)]
    body_names = [n for n in params if not is_classifier_key(n, heads)]

    group_matcher = getattr(model, "group_matcher", None)
    matcher = group_matcher(coarse=True) if callable(group_matcher) else None
    if matcher:
        grouped = group_with_matcher(((n, n) for n in body_names), matcher)
        body_groups = [grouped[i] for i in sorted(grouped)]
        label = _matcher_labeler(matcher) if isinstance(matcher, dict) else lambda name: None
        names = [_group_label(members, label) for members in body_groups]
    else:
        names, body_groups = _group_by_top_modules(model, body_names)
    names = _distinct_names(names, body_groups)

    groups = [
        LayerGroup(i, name, tuple(members), sum(params[n].numel() for n in members))
        for i, (name, members) in enumerate(zip(names, body_groups, strict=True))
    ]
    groups.append(
        LayerGroup(
            index=len(groups),
            name=HEAD_GROUP,
            param_names=tuple(head_names),
            num_params=sum(params[n].numel() for n in head_names),
            is_head=True,
        )
    )
    return groups


def _matcher_labeler(matcher: dict[str, Any]) -> Callable[[str], str | None]:
    """Labels a parameter the way a timm group matcher places it.

    A pattern without an index names its group by the matcher's key ("stem"); one that captures
    an index is named by the text it matched ("blocks.3", "layer2"). Mirrors the first-match-wins
    order of ``timm.models._manipulate.group_with_matcher``.
    """
    compiled = []
    for key, spec in matcher.items():
        if spec is None:
            continue
        if isinstance(spec, str):
            rx = re.compile(spec)
            compiled.append((rx, None if rx.groups else key))
        else:
            compiled += [(re.compile(pattern), None) for pattern, _ in spec]

    def label(name: str) -> str | None:
        for rx, key in compiled:
            found = rx.match(name)
            if found:
                return key or found.group(0)
        return None  # timm puts unmatched parameters (e.g. a neck) after every other group

    return label


def _group_label(members: Sequence[str], label: Callable[[str], str | None]) -> str:
    unlabelled = [n for n in members if label(n) is None]
    by_root = _common_module_paths(unlabelled, depth=2)
    labels = [label(n) or by_root[n.split(".")[0]] for n in members]
    return " + ".join(dict.fromkeys(labels))


def _group_by_top_modules(
    model: torch.nn.Module, names: Sequence[str]
) -> tuple[list[str], list[list[str]]]:
    # Parameters set directly on the model (tokens, embeddings) come first, like a stem.
    order = [""] + [
        prefix for prefix, _ in flatten_modules(model.named_children(), module_types="container")
    ]
    buckets: dict[str, list[str]] = {prefix: [] for prefix in order}
    for name in names:
        owner = next((p for p in order if p and name.startswith(p + ".")), "")
        buckets[owner].append(name)
    filled = [(prefix, members) for prefix, members in buckets.items() if members]
    labels = [prefix or _spelled_out(members) for prefix, members in filled]
    return labels, [members for _, members in filled]


def _distinct_names(names: list[str], groups: list[list[str]]) -> list[str]:
    names = ["head (before classifier)" if n == HEAD_GROUP else n for n in names]
    # Names must tell groups apart: spell clashing ones out in full, then number them.
    for rename in (lambda i: _spelled_out(groups[i]), lambda i: f"{names[i]} ({i})"):
        clashing = [i for i, name in enumerate(names) if names.count(name) > 1]
        for i in clashing:
            names[i] = rename(i)
    return names


def _spelled_out(param_names: Iterable[str]) -> str:
    return " + ".join(_common_module_paths(param_names).values())


def _common_module_paths(param_names: Iterable[str], depth: int | None = None) -> dict[str, str]:
    """The module path shared by the parameters under each top-level name.

    For example ``{"blocks": "blocks.6", "conv_head": "conv_head"}``; a parameter set directly
    on the model (``cls_token``) names itself. ``depth`` caps the path's length.
    """
    common: dict[str, list[str]] = {}
    for name in param_names:
        parts = name.split(".")
        path = parts[:-1] or parts
        shared = common.setdefault(parts[0], path)
        n = 0
        while n < min(len(shared), len(path)) and shared[n] == path[n]:
            n += 1
        common[parts[0]] = shared[:n]
    return {root: ".".join(path[:depth]) for root, path in common.items()}
