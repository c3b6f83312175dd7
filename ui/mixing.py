"""A unit's exemplars with its picture mixed in (vitviz.rendering.picture_mix): the accentuated
exemplars the report judges, as a row a page puts beside the unit's photos."""
from __future__ import annotations

import streamlit as st

from ui import display, execution, widgets
from vitviz.data.photo_sets import configured_folder, examples_for
from vitviz.quality import metrics
from vitviz.rendering import picture_mix
from vitviz.store.results import Result, to_uint8
from vitviz.store.runs import RunRequest

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
    memo = f"{key}.mixed"
    stamp = (request.key(), stats.label if stats is not None else configured_folder())
    found = st.session_state.get(memo)
    if found is None or found[0] != stamp:
        if not widgets.run_button("Mix the picture into its photos"):
            return
        picture = metrics.as_tensor([result.images[0]])
        made = execution.use_model(request.model, lambda model: picture_mix.unit_exemplars(
            model, layer, unit, stats if stats is not None else examples_for(model, layer, tokens),
            picture, minimise=request.minimise, count=SHOWN, tokens=tokens))
        found = st.session_state[memo] = (stamp, made)
    made = found[1]
    for column, image, share, before, after in zip(st.columns(SHOWN), made.images, made.shares,
                                                   made.photo_drive, made.drive):
        column.image(display.enlarge(to_uint8(image[None])[0]), width="stretch",
                     caption=(f"{share:.0%} of the picture · {before:.3g} → {after:.3g}"
                              if share else f"unchanged · {before:.3g}"))
