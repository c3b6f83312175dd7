"""A unit's exemplars with its picture mixed in (vitviz.rendering.picture_mix): the accentuated
exemplars the report judges, as a row a page puts beside the unit's photos."""
from __future__ import annotations

from typing import Callable, TypeVar

import streamlit as st

from ui import display, execution, widgets
from vitviz.data.photo_sets import configured_folder, examples_for
from vitviz.quality import metrics
from vitviz.rendering import picture_mix
from vitviz.store.results import Result, to_uint8
from vitviz.store.runs import RunRequest

T = TypeVar("T")
SHOWN = 4  # exemplars in the row: the first of the judge's 9
HELP = ("The unit's photos that an independent judge uses as its strongest exemplars (the next "
        "after the 20 views it asks about; its weakest, for a picture driven down), each mixed "
        "with this picture as little as it takes (at most 30% of every pixel) to drive the "
        "unit as hard as its strongest photo view does (as weakly as its weakest). A photo "
        "already there, or one that no mix moves that way, stays as it is. Beside the photos "
        "they start from, these read better to that judge than the photos alone "
        "(docs/quality.md).")


def mixed_row(request: RunRequest, result: Result, layer: str, unit: int, tokens: str | int,
              stats, key: str) -> None:
    """`result`'s first picture (the run `request` of `unit` of `layer`, either direction)
    mixed into the unit's first `SHOWN` photo-disjoint exemplars on that side from `stats`
    (the layer's dataset examples over `tokens`; None: the configured photo set's, measured
    if need be), on request: it runs the model over them. Kept for the page's session."""
    st.subheader("Accentuated exemplars: its photos with the picture mixed in", anchor=False,
                 help=HELP)
    stamp = (request.key(), stats.label if stats is not None else configured_folder())
    made = kept_on_request(key, stamp, "Mix the picture into its photos", request.model,
                           lambda model: picture_mix.unit_exemplars(
                               model, layer, unit,
                               stats if stats is not None else examples_for(model, layer, tokens),
                               metrics.as_tensor([result.images[0]]), minimise=request.minimise,
                               count=SHOWN, tokens=tokens))
    if made is None:
        return
    for item, (column, image) in enumerate(zip(st.columns(SHOWN), to_uint8(made.images))):
        column.image(display.enlarge(image), width="stretch", caption=mixed_caption(made, item))


def mixed_firsts(name: str, layer: str, pictures: dict[int, Result], minimise: bool,
                 stamp: tuple, key: str) -> dict[int, picture_mix.Mixed]:
    """For a page of units (the Atlas), each unit's first photo-disjoint exemplar mixed with
    its picture in `pictures` (driven down with `minimise`: its weakest), on request: one
    model pass for the page, kept for the session while `stamp` (what the pictures are)
    holds."""
    if not pictures:
        return {}

    def work(model) -> dict[int, picture_mix.Mixed]:
        examples = examples_for(model, layer)
        return {unit: picture_mix.unit_exemplars(model, layer, unit, examples,
                                                 metrics.as_tensor([result.images[0]]),
                                                 minimise=minimise, count=1)
                for unit, result in pictures.items()}

    made = kept_on_request(key, stamp, f"Mix each of the {len(pictures)} pictures into its "
                           "unit's first exemplar", name, work)
    return made if made is not None else {}


def kept_on_request(key: str, stamp: tuple, label: str, name: str, work: Callable[[object], T]
                    ) -> T | None:
    """`work(model)` with the model `name`, computed when the visitor presses `label` and kept
    for the session while `stamp` (what it was computed from) holds; None until then."""
    memo = f"{key}.mixed_exemplars"  # apart from any widget's key
    found = st.session_state.get(memo)
    if found is not None and found[0] == stamp:
        return found[1]
    if not widgets.run_button(label):
        return None
    made = execution.use_model(name, work)
    st.session_state[memo] = (stamp, made)
    return made


def mixed_caption(made: picture_mix.Mixed, item: int = 0) -> str:
    """How much of the picture item `item` took and the unit's drive before and after:
    'mixed 30% · 0.12 → 0.8', or 'unchanged · 0.12'."""
    share, before, after = made.shares[item], made.photo_drive[item], made.drive[item]
    return (f"mixed {share:.0%} · {before:.3g} → {after:.3g}" if share
            else f"unchanged · {before:.3g}")
