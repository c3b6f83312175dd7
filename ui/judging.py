"""The independent judge's reading of one unit, as a panel a page puts beside its pictures."""
from __future__ import annotations

import dataclasses

import streamlit as st

from ui import display, execution, widgets
from vitviz.data.photo_sets import current_photo_set_id
from vitviz.quality.judge import independent_judge
from vitviz.quality.reading import stored_reading
from vitviz.store.results import Result
from vitviz.store.runs import RunRequest

HELP = ("Shown the unit's picture driven up and its picture driven down (each whole and by "
        "quarters), which of two photos drives the unit more? A network that shares nothing "
        "with the model answers 20 such questions per column, each pair more extreme than any "
        "reference; the same questions answered from the unit's own photos (its next strongest "
        "and weakest) are the yardstick; both together, the judge reads the pictures beside the "
        "photos, as a person does here. Photo-disjoint: those photos never come from a "
        "question's photo.")


def judge_panel(request: RunRequest, result: Result, key: str, photos=None) -> None:
    """`result` (of `request`, either direction) read with its twin driven the other way:
    on request, since that may draw the twin (unless cached) and loads the judge's network;
    stored with the maximising run, so a link shows it at once. `photos`: the layer's photo
    statistics when the page holds them."""
    st.subheader("Read by another network", anchor=False, help=HELP)
    up_request, down_request = (dataclasses.replace(request, minimise=minimise)
                                for minimise in (False, True))
    up = result if not request.minimise else execution.cached(up_request)
    down = result if request.minimise else execution.cached(down_request)
    found = (stored_reading(up, independent_judge(request.model), current_photo_set_id())
             if up is not None else None)
    if found is None and widgets.run_button("Ask an independent judge"):
        seeds = ", ".join(map(str, request.seeds))
        if up is None:
            up, _ = execution.compute_live(up_request, execution.LiveView(
                [f"seed {seeds}, driven up"], side_by_side=False, key=f"{key}.up"))
        if down is None:
            down, _ = execution.compute_live(down_request, execution.LiveView(
                [f"seed {seeds}, driven down"], side_by_side=False, key=f"{key}.down"))
        found = execution.store_reading(up_request, up, down, photos=photos)
    if found is None:
        return
    up_column, down_column, table = st.columns([1, 1, 3], gap="medium")
    up_column.image(display.enlarge(up.images[0]), width="stretch", caption="driven up")
    if down is not None:
        down_column.image(display.enlarge(down.images[0]), width="stretch",
                          caption="driven down: what suppresses it")
    table.dataframe(display.reading_table(found), hide_index=True)
    table.caption(display.reading_caption(found))
