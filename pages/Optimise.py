"""Optimise: one unit, one seed, with live progress."""
from ui.navigation import through_app

through_app()  # first: the menu shows before the seconds of imports below

import streamlit as st

from ui import display, execution, widgets
from ui.judging import judge_panel
from ui.limits import load_limits
from ui.mixing import mixed_row
from ui.page import reported, setup
from ui.settings import accentuated_request, optimise_request
from vitviz.quality import metrics
from vitviz.rendering.presets import PRESETS

# The objectives whose units have photo views: to start an accentuated exemplar from, and for
# the judge to ask about.
ACCENTUATED_KINDS = ("neuron", "channel")
ACCENTUATED_HELP = ("The unit's strongest photo view (its weakest when driven down), changed "
                    "only as much as it takes to drive the unit further: held to the photo's "
                    "first-block features, so what changes is what the unit responds to. The "
                    "default method, this page's seed, steps and image size; the same run as "
                    "the Dataset examples and Atlas pages'.")

state = setup("optimise", "Optimise an image to drive one unit of one layer as hard as possible, "
                          "and watch it form. Runs are cached: the same settings, or a link to "
                          "them, open instantly.")

with reported():
    limits = load_limits()
    state.hold_to(limits)
    target = widgets.target_panel(state)
    model, unit = target.model, target.unit
    method = target.row()
    with method[0]:
        preset = widgets.preset_picker(state)
        widgets.direction_picker(state)
    with method[1]:
        st.caption(PRESETS[preset].description)
        widgets.knob_pickers(state, preset, [*st.columns(2), *st.columns(2), *st.columns(2)])
    with method[2]:
        widgets.seed_picker(state)
        widgets.steps_picker(state, limits)
    with method[3]:
        widgets.size_picker(state, model, limits)
    with target.settings:
        widgets.layer_table_expander(model)
    state.publish()

    request = optimise_request(state.values, model.preprocessing.size)
    accent_request = (accentuated_request(state.values, model.preprocessing.size)
                      if target.kind in ACCENTUATED_KINDS else None)
    requests = [request] if accent_request is None else [request, accent_request]
    problems, (result, *accented) = widgets.look_up(state, target.name, target.model, requests,
                                                    limits)
    from_cache = result is not None
    if result is None and widgets.run_button("Run", disabled=bool(problems)):
        view = execution.LiveView([f"seed {state.values['seed']}"], key="optimise.live")
        result, from_cache = execution.compute_live(request, view)
    if result is not None:
        display.run_view(result, from_cache, key="optimise.result",
                         stem=f"vitviz_{model.name}_unit{unit}")
        if target.kind in ACCENTUATED_KINDS:
            mixed_row(request, result, target.layer.name, unit, target.tokens or "patch", None,
                      "optimise")
            judge_panel(request, result, "optimise")

    if accent_request is not None:
        # Its own explanation kind, computed on request only: a link shows a cached one at once.
        (accented,) = accented
        st.subheader("Accentuated exemplar, by gradient", anchor=False, help=ACCENTUATED_HELP)
        which = "weakest" if accent_request.minimise else "strongest"
        if accented is None and widgets.run_button(f"Accentuate its {which} photo",
                                                   disabled=bool(problems)):
            view = execution.LiveView([f"from its {which} photo"], side_by_side=False,
                                      key="optimise.accent")
            accented, _ = execution.compute_live(accent_request, view)
            execution.store_figures(accent_request, accented)
        if accented is not None:
            display.accentuated_exemplar(accented)
            if metrics.has_quality_figures(accented):
                display.accentuated_figure(accented)
            elif st.button("Measure its quality figure", key="optimise.accent.measure",
                           icon=":material/straighten:"):
                execution.store_figures(accent_request, accented)
                display.accentuated_figure(accented)
            st.caption(display.run_facts(accented))
