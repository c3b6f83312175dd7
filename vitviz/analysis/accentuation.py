"""What an accentuation changed in its photo, made visible.

An accentuated exemplar is held close to its photo, so the picture alone hides most of what the
unit asked for: a few specks on block 2's units, and dark spots where one is driven down
(docs/quality.md). Beside the photo and the picture, the difference between them, amplified
around mid-grey, shows where the unit's push went and which colour it added (a colour the
change took away shows as its complement).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# The share of pixel differences that stays inside the shown range: the rest saturate, so that
# one outlying pixel does not flatten the whole change to grey.
SHOWN_QUANTILE = 99
# Below a level of 8-bit difference (the step-0 picture's own rounding), nothing changed.
SMALLEST_CHANGE = 1.0


@dataclass(frozen=True)
class Change:
    """An accentuated picture beside its photo: both [H, W, 3] uint8, the amplified difference
    (mid-grey where nothing changed), its gain, and the mean change in 8-bit levels."""

    photo: np.ndarray
    picture: np.ndarray
    difference: np.ndarray
    gain: float
    mean_levels: float


def change(photo: np.ndarray, picture: np.ndarray) -> Change:
    """The difference `picture` - `photo`, scaled so that its `SHOWN_QUANTILE`-th percentile of
    absolute values spans half the range, around mid-grey; no gain where nothing changed."""
    difference = picture.astype(np.float32) - photo.astype(np.float32)
    spread = float(np.percentile(np.abs(difference), SHOWN_QUANTILE))
    gain = 127.5 / spread if spread >= SMALLEST_CHANGE else 0.0
    shown = np.clip(np.round(127.5 + gain * difference), 0, 255).astype(np.uint8)
    return Change(photo, picture, shown, gain, float(np.abs(difference).mean()))


def accentuation_change(result, item: int = 0) -> Change | None:
    """What accentuation changed in item `item` of an accentuated run (`vitviz.store.results.
    Result`): its step-0 picture is the photo it started from (recorded with every run), its
    last the accentuated exemplar. None for a run that is no accentuation or recorded no step 0."""
    if "accentuated_from" not in result.metrics or 0 not in result.checkpoints:
        return None
    return change(np.asarray(result.checkpoints[0][item]), np.asarray(result.images[item]))
