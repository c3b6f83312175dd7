"""Compare seeds: N seeds of one unit, one batch per preset, and figures that noise cannot win."""
from ui.navigation import through_app

through_app()  # first: the menu shows before the seconds of imports below

import streamlit as st

from ui import display, execution, widgets
from ui.limits import load_limits
from ui.page import reported, setup
from ui.settings import compare_presets, compare_requests, compare_seeds
from vitviz.quality import metrics
from vitviz.rendering.presets import PRESETS

state = setup("compare", "Do different random starts find the same picture? Several seeds of one "
                         "unit are optimised as one batch, optionally with a second method for "
                         "contrast.")

with reported():
    limits = load_limits()
    state.hold_to(limits)
    target = widgets.target_panel(state)
    method = target.row()
    with method[0]:
        widgets.preset_picker(state)
        widgets.preset_picker(state, "preset2", "Second method", default="none",
                              allow_none=True)
    with method[1]:
        st.caption("The seeds of one method run as one batch; the second method runs as a "
                   "second batch with the same seeds.")
        seeds = st.columns(2)
        with seeds[0]:
            widgets.seeds_picker(state, limits)
        with seeds[1]:
            widgets.seed_picker(state, "First seed")
    with method[2]:
        widgets.steps_picker(state, limits)
        widgets.size_picker(state, target.model, limits)
    state.publish()

    presets = compare_presets(state.values)
    requests = compare_requests(state.values, target.model.preprocessing.size)
    problems, results = widgets.look_up(state, target.name, target.model, requests, limits)
    labels = [f"seed {s}" for s in compare_seeds(state.values)]
    if None in results and widgets.run_button(
            f"Run {len(labels)} seeds × {len(presets)} method{'s' * (len(presets) > 1)}",
            disabled=bool(problems)):
        for i, request in enumerate(requests):
            if results[i] is None:
                view = execution.LiveView([f"{presets[i]} · {label}" for label in labels],
                                          side_by_side=False, key=f"compare.live{i}")
                results[i], _ = execution.compute_live(request, view)

    if None not in results:
        st.subheader("Images", anchor=False)
        for column, preset, result in zip(st.columns(len(presets), gap="large"), presets, results):
            with column:
                st.markdown(f"**{preset}**", help=PRESETS[preset].description)
                display.image_grid(result.images, [display.final_caption(result, i)
                                                   for i in range(len(result.images))],
                                   columns=min(len(labels), 4 if len(presets) > 1 else 6))
                st.caption(display.run_facts(result))
        st.subheader("Activation over steps", anchor=False)
        curves = [(f"{preset} · {label}", result.steps, curve, display.preset_colour(preset))
                  for preset, result in zip(presets, results)
                  for label, curve in zip(result.item_labels(), result.activation)]
        st.plotly_chart(display.curves_figure(curves, height=380), key="compare.curves")

        st.subheader("Quality figures", anchor=False)
        st.caption("Measured on slightly shifted and zoomed views of each image, which pixel "
                   "noise loses and real features keep: the activation as a multiple of the "
                   "unit's maximum over the offline photos and crops, and the unit's rank among "
                   "all units of its layer (1 = the image drives this unit most). How alike the "
                   "seeds look is not shown as a number: noise images look alike too. Seed "
                   "agreement that noise cannot fake needs other units as a control: "
                   "`python -m vitviz report` gives specificity and identification across units.")
        measured = [metrics.has_quality_figures(result) for result in results]
        display.figures_unavailable(results[0])  # the same folder, so the same reason for all
        if not all(measured) and st.button("Measure against the photo set",
                                           icon=":material/straighten:"):
            for request, result in zip(requests, results):
                execution.store_figures(request, result)
        if all(metrics.has_quality_figures(result) for result in results):
            for column, preset, result in zip(st.columns(len(presets)), presets, results):
                column.metric(
                    f"Robust activation / photo max · {preset}",
                    display.times(display.median(result.metrics["relative_robust_activation"])),
                    help="Median over the seeds of the mean activation over shifted and zoomed "
                         "views, as a multiple of the unit's largest activation on any photo "
                         "or crop.")
            st.dataframe(display.quality_table(presets, results), hide_index=True)
