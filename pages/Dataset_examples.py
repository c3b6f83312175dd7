"""Dataset examples: what in real photos drives a unit, next to the unit's visualisation."""
from ui.navigation import through_app

through_app()  # first: the menu shows before the seconds of imports below

import streamlit as st

from ui import display, execution, widgets
from ui.limits import load_limits
from ui.judging import judge_panel
from ui.mixing import mixed_row
from ui.page import reported, setup
from ui.resources import loaded_model
from ui.settings import accentuated_request, examples_request
from vitviz.data import photo_sets
from vitviz.data.examples import crop_image
from vitviz.data.photos import load_photos

KINDS = {"photo": "Whole photos", "crop": "Crops (half-size windows)",
         "patch": "Patches (one token, shown with its neighbourhood)"}
TOP_K = 6
DRIVE_HELP = ("Ranked by the unit's drive, which follows its input: on GELU's negative tail a "
              "value nearer zero can mean a weaker drive, so the values shown need not fall.")
PLAIN_COLOUR_HELP = ("The unit's value on a flat image in the colour of one of its three "
                     "strongest photo views (the best of them), as a multiple of its largest "
                     "activation on the photos. Near or above 1, the unit wants a colour more "
                     "than a shape; above the visualisation's figure, the optimiser has not "
                     "reached what drives the unit.")

state = setup("examples", "A visualisation is only a hypothesis about a unit. Check it against the"
                          " real photos (and their crops and patches) that drive the unit most, "
                          "measured on the offline photo set in batches, and against how strongly "
                          "and how specifically the visualisation itself drives the unit.")

with reported():
    limits = load_limits()
    state.hold_to(limits)
    target = widgets.target_panel(state, objectives=False)
    name, model, layer = target.name, target.model, target.layer
    unit, tokens = target.unit, target.tokens
    widgets.run_pickers(state, target, limits)
    state.publish()
    request = examples_request(state.values, model.preprocessing.size)
    accent_request = accentuated_request(state.values, model.preprocessing.size)
    problems, (cached, accented) = widgets.look_up(state, target.name, target.model,
                                                   [request, accent_request], limits)
    if problems:
        st.stop()

    stats = None
    folder = photo_sets.configured_folder()
    if folder is not None:
        # The operator's folder, through its index: read from disk, no model needed.
        try:
            stats = photo_sets.indexed_examples(model, layer.name, tokens or "patch", folder)
        except photo_sets.IndexMissing as error:
            st.info(str(error), icon=":material/photo_library:")
    else:
        photos = load_photos()
        # Measured on request, not on page load: a link must not start a layer-wide pass.
        loaded = loaded_model(name)
        measured = loaded is not None and photo_sets.has_photo_statistics(loaded, layer.name,
                                                                       tokens or "patch")
        if measured or st.button(
                f"Find the examples: measure {layer.name} on {len(photos)} photos and their "
                "crops", icon=":material/photo_library:"):
            bar = st.progress(0.0, text=f"Measuring {layer.name} on {len(photos)} photos…")
            stats = execution.use_model(name, lambda m: photo_sets.photo_statistics(
                m, layer.name, tokens or "patch", progress=lambda done, total: bar.progress(
                    done / total, text=f"Photo set: {done}/{total}")))
            bar.empty()
    top = stats.top(unit, TOP_K) if stats is not None else {}

    visual, examples = st.columns([1, 3], gap="large")
    with visual:
        st.subheader("Visualisation", anchor=False)
        result = cached
        if result is None and widgets.run_button("Visualise (robust)"):
            view = execution.LiveView([f"seed {state.values['seed']}"], side_by_side=False,
                                      key="examples.live")
            result, _ = execution.compute_live(request, view)
        if result is not None:
            if stats is not None:
                # Raw activation rewards adversarial noise: only what survives shifts and zooms
                # counts. Measured once against the photo set shown here, stored with the run,
                # before the caption that shows it.
                execution.store_figures(request, result, photos=stats)
            st.image(display.enlarge(result.images[0]), caption=display.final_caption(result, 0),
                     width="stretch")
            if stats is not None:
                st.metric("Robust act. / photo max",
                          display.times(result.metrics["relative_robust_activation"][0]),
                          help="The visualisation's mean activation over shifted and zoomed "
                               "views, as a multiple of the unit's largest activation on "
                               f"{stats.label}.")
            plain = result.metrics.get("relative_plain_colour")
            if plain:
                st.metric("Plain colour / photo max", display.times(plain[0]),
                          help=PLAIN_COLOUR_HELP)
            st.caption(display.run_facts(result))
        st.subheader("Accentuated exemplar, by gradient", anchor=False,
                     help="The unit's strongest photo, changed only as much as it takes to drive "
                          "the unit harder: held to the photo's first-block features, so what "
                          "changes is what the unit responds to.")
        if accented is None and widgets.run_button("Accentuate its strongest photo"):
            view = execution.LiveView([f"seed {state.values['seed']}"], side_by_side=False,
                                      key="examples.accent")
            accented, _ = execution.compute_live(accent_request, view)
        if accented is not None:
            display.accentuated_exemplar(accented, wide=False)
        if stats is not None:
            st.metric("Max over the photo set", f"{stats.unit_max(unit):.3g}",
                      help=f"The unit's largest activation on {stats.label}.")
            st.caption(f"Photo set: {stats.label}")
    with examples:
        for kind, title in KINDS.items():
            if kind not in top:
                continue
            st.subheader(title, anchor=False, help=DRIVE_HELP)
            row = st.columns(TOP_K)
            for column, example in zip(row, top[kind]):
                context = 1.5 * (example.box[2] - example.box[0]) if kind == "patch" else 0.0
                column.image(crop_image(stats.image(example.photo), example.box, context=context),
                             caption=f"{example.photo.split('/')[-1]} · {example.activation:.3g}",
                             width="stretch")
        if result is not None and stats is not None:
            mixed_row(request, result, layer.name, unit, tokens or "patch", stats, "examples")
            judge_panel(request, result, "examples", photos=stats)
