"""Optimise: one unit, one seed, with live progress."""
import streamlit as st

from vitviz.presets import PRESETS

from ui import display, execution, widgets
from ui.limits import load_limits
from ui.page import SETTINGS_GRID, reported, setup
from ui.settings import optimise_request
from ui.state import PageState

setup("optimise", "Optimise an image to drive one unit of one layer as hard as possible, and "
      "watch it form. Runs are cached: the same settings, or a link to them, open instantly.")

state = PageState("optimise")
with reported():
    limits = load_limits()
    settings = st.container(border=True)
    target = settings.columns(SETTINGS_GRID, gap="medium")
    with target[0]:
        name = widgets.model_picker(state)
    model = widgets.load_or_stop(name)
    with target[1]:
        layer = widgets.layer_picker(state, model)
    with target[2]:
        kind = widgets.kind_picker(state)
    with target[3]:
        unit = widgets.unit_picker(state, layer, kind)
        if kind == "neuron":
            widgets.tokens_picker(state, layer)
    method = settings.columns(SETTINGS_GRID, gap="medium")
    with method[0]:
        preset = widgets.preset_picker(state)
    with method[1]:
        st.caption(PRESETS[preset].description)
        widgets.knob_pickers(state, preset, st.columns(3))
    with method[2]:
        widgets.seed_picker(state)
        widgets.steps_picker(state, limits)
    with method[3]:
        widgets.size_picker(state, model, limits)
    with settings:
        widgets.layer_table_expander(model)
    state.publish()

    request = optimise_request(state.values, model.preprocessing.size)
    widgets.random_init_warning(name)
    problems = state.problems + execution.request_problems(request, model, limits)
    widgets.problems(problems)
    result = None if problems else execution.cached(request)
    from_cache = result is not None
    if result is None and widgets.run_button("Run", disabled=bool(problems)):
        view = execution.LiveView([f"seed {state.values['seed']}"], key="optimise.live")
        result, from_cache = execution.compute(request, view)
    if result is not None:
        display.run_view(result, from_cache, key="optimise.result",
                         stem=f"vitviz_{model.name}_unit{unit}")
