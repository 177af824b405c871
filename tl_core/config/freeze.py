"""The freeze depth: how many leading layer groups of a backbone stay frozen while it trains.

A depth is parsed once where it enters (the Model page's slider, the command line's
``--freeze``, config.json when read), carried as a :class:`FreezeDepth` or its one canonical
text (``str(depth)``: "all", "none" or a number of groups, as config.json's "train" section
stores it), resolved against a backbone's layer groups by :meth:`FreezeDepth.resolve`, and put
into words here only.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass

from tl_core.common import TLStudioError

ALL, NONE = "all", "none"


@dataclass(frozen=True, eq=False)
class FreezeDepth:
    """How many leading layer groups are frozen (the head always trains).

    Build one with :meth:`parse`. Depths that freeze the same groups are equal ("none" and
    "0"); "all" equals a number only once resolved against a backbone.

    Attributes:
        text: The canonical text: "all" (every backbone group, however many the backbone
            has), "none" or a number of groups without leading zeros. "none" and "0" freeze the
            same groups; the text keeps which was given, because a recipe calls full
            fine-tuning "none" while a sweep counts its depths from "0".
    """

    text: str

    @classmethod
    def parse(cls, value: FreezeDepth | str | int, num_backbone_groups: int | None = None):
        """The depth a person or a file gave: "all", "none" or a whole number of groups.

        Args:
            value: The depth as given; text is read without regard to case or spaces.
            num_backbone_groups: The backbone's layer groups before the head, when known: the
                hint of a refusal then names the range.

        Raises:
            TLStudioError: ``value`` is none of those (true and false are not numbers).
        """
        if isinstance(value, FreezeDepth):
            return value
        text = value.strip().lower() if isinstance(value, str) else value
        if text in (ALL, NONE):
            return cls(text)
        if isinstance(text, str) and re.fullmatch(r"\+?\d+", text):
            text = int(text)
        if isinstance(text, int) and not isinstance(text, bool) and text >= 0:
            return cls(str(text))
        raise TLStudioError(
            f"Freeze depth {value!r} is not understood.", _allowed(num_backbone_groups)
        )

    @classmethod
    def count(cls, frozen_groups: int) -> FreezeDepth:
        """The depth that freezes ``frozen_groups`` leading groups (none: "none").

        Raises:
            TLStudioError: ``frozen_groups`` is negative.
        """
        return cls.parse(NONE if frozen_groups == 0 else frozen_groups)

    @property
    def is_all(self) -> bool:
        """Whether it freezes every backbone group (trains the head only), however many."""
        return self.text == ALL

    @property
    def groups(self) -> int | None:
        """The number of groups it freezes; None for "all" (it depends on the backbone)."""
        return None if self.is_all else 0 if self.text == NONE else int(self.text)

    def resolve(self, num_backbone_groups: int) -> int:
        """The number of leading groups it freezes in a backbone with this many groups.

        Raises:
            TLStudioError: It freezes more groups than the backbone has before its head.
        """
        if self.is_all:
            return num_backbone_groups
        if self.groups > num_backbone_groups:
            raise TLStudioError(
                f"Freeze depth {self.groups} is out of range: this backbone has "
                f"{num_backbone_groups} layer groups before the head.",
                _allowed(num_backbone_groups),
            )
        return self.groups

    def counted(self) -> FreezeDepth:
        """The same depth spelled as a number where it is one ("none" becomes "0")."""
        return self if self.is_all else FreezeDepth(str(self.groups))

    def words(self, num_backbone_groups: int | None = None) -> str:
        """What trains, in a few words: "head only", "full fine-tune", "3/7 groups frozen".

        Args:
            num_backbone_groups: The backbone's groups before the head; None when unknown
                (then a number reads "3 groups frozen").
        """
        return frozen_words(self._frozen(num_backbone_groups), num_backbone_groups)

    def headline(self, num_backbone_groups: int) -> str:
        """The depth as the start of a sentence: "Freezing the first 2 of 6 groups"."""
        frozen = self.resolve(num_backbone_groups)
        if frozen >= num_backbone_groups:
            return f"Training only the head (all {num_backbone_groups} layer groups frozen)"
        if frozen == 0:
            return "Fine-tuning every layer (no group frozen)"
        return f"Freezing the first {frozen} of {num_backbone_groups} groups"

    @property
    def label(self) -> str:
        """The depth's name in lists of runs and jobs: "freeze 2", "freeze all"."""
        return f"freeze {self.text}"

    def _frozen(self, num_backbone_groups: int | None) -> int | None:
        if num_backbone_groups is None:
            return None if self.is_all else self.groups
        return self.resolve(num_backbone_groups)

    def __str__(self) -> str:
        return self.text

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FreezeDepth):
            return NotImplemented
        return self.groups == other.groups

    def __hash__(self) -> int:
        return hash(self.groups)


def frozen_words(frozen: int | None, num_backbone_groups: int | None = None) -> str:
    """What trains when ``frozen`` leading groups are frozen, in a few words.

    Args:
        frozen: Frozen groups; None for every backbone group.
        num_backbone_groups: The backbone's groups before the head; None when unknown.
    """
    if frozen is None or (num_backbone_groups is not None and frozen >= num_backbone_groups):
        return "head only"
    if frozen == 0:
        return "full fine-tune"
    if num_backbone_groups is None:
        return f"{frozen} groups frozen"
    return f"{frozen}/{num_backbone_groups} groups frozen"


def gradual_words(depth_words: str) -> str:
    """Gradual unfreezing that ends at a depth, in words."""
    return f"gradual unfreezing to {depth_words}"


def parse_freeze(spec: FreezeDepth | str | int, num_backbone_groups: int) -> int:
    """The number of leading groups a depth as given freezes in a backbone (parse, then resolve).

    Raises:
        TLStudioError: ``spec`` is not a depth, or freezes more groups than the backbone has.
    """
    return FreezeDepth.parse(spec, num_backbone_groups).resolve(num_backbone_groups)


def freeze_option(text: str) -> FreezeDepth:
    """The ``--freeze`` option's type: a refusal reads as the option's own usage error."""
    try:
        return FreezeDepth.parse(text)
    except TLStudioError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _allowed(num_backbone_groups: int | None) -> str:
    if num_backbone_groups is None:
        return 'Use "all", "none" or a whole number of layer groups.'
    return f'Use "all", "none" or a whole number from 0 to {num_backbone_groups}.'
