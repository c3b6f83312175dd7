"""Optimise: one unit, one seed, with live progress."""
from ui.navigation import through_app

through_app()  # first: the menu shows before the seconds of imports below

import streamlit as st

from ui import display, execution, widgets
from ui.limits import load_limits
from ui.page import reported, setup
from ui.settings import optimise_request
from vitviz.rendering.presets import PRESETS

state = setup("optimise", "Optimise an image to drive one unit of one layer as hard as possible, "
                          "and watch it form. Runs are cached: the same settings, or a link to "
                          "them, open instantly.")

with reported():
    limits = load_limits()
    target = widgets.target_panel(state)
    model, unit = target.model, target.unit
    method = target.row()
    with method[0]:
        preset = widgets.preset_picker(state)
        widgets.direction_picker(state)
    with method[1]:
        st.caption(PRESETS[preset].description)
        widgets.knob_pickers(state, preset, st.columns(3))
    with method[2]:
        widgets.seed_picker(state)
        widgets.steps_picker(state, limits)
    with method[3]:
        widgets.size_picker(state, model, limits)
    with target.settings:
        widgets.layer_table_expander(model)
    state.publish()

    request = optimise_request(state.values, model.preprocessing.size)
    problems, (result,) = widgets.look_up(state, target.name, target.model, [request], limits)
    from_cache = result is not None
    if result is None and widgets.run_button("Run", disabled=bool(problems)):
        view = execution.LiveView([f"seed {state.values['seed']}"], key="optimise.live")
        result, from_cache = execution.compute_live(request, view)
    if result is not None:
        display.run_view(result, from_cache, key="optimise.result",
                         stem=f"vitviz_{model.name}_unit{unit}")
