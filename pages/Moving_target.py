"""Moving target: how much of a ViT unit's gain is patch content, how much moved attention."""
from ui.navigation import through_app

through_app()  # first: the menu shows before the seconds of imports below

import streamlit as st

from ui import display, execution, widgets
from ui.limits import load_limits
from ui.page import reported, setup
from ui.settings import MOVING_TARGET_RUNS, moving_target_requests
from vitviz.analysis.moving_target import split
from vitviz.rendering.presets import PRESETS

state = setup("moving_target", "A ViT unit sees its own token and, through attention, every other "
                               "token. When the image changes, both change: the target moves. Each"
                               " step is measured twice, with live attention and with every "
                               "attention map frozen at its value for the starting image. The gap "
                               "between the two curves is the part of the gain that came from "
                               "attention moving the context, not from the patch content.")

with reported():
    limits = load_limits()
    state.hold_to(limits)
    target = widgets.target_panel(state, objectives=False, vit_only=True,
                                  tokens_only=True)
    model, layer, unit = target.model, target.layer, target.unit
    widgets.run_pickers(state, target, limits)
    state.publish()

    requests = moving_target_requests(state.values, model.preprocessing.size)
    problems, results = widgets.look_up(state, target.name, target.model, requests, limits)
    run_now = None in results and widgets.run_button("Run naive, robust and frozen naive",
                                                     disabled=bool(problems))

    runs = list(zip(st.columns(len(MOVING_TARGET_RUNS), gap="large"), MOVING_TARGET_RUNS))
    for column, (label, preset, frozen) in runs:
        column.subheader(label, anchor=False)
        column.caption("Optimised with every attention map held at its value for the starting "
                       "image: the target cannot move. Does the noise go?" if frozen
                       else PRESETS[preset].description)
    for (column, (label, _, _)), request, result in zip(runs, requests, results):
        key = label.replace(" ", "_").replace(",", "")
        with column:
            if result is None and run_now:
                view = execution.LiveView([f"seed {state.values['seed']}"], side_by_side=False,
                                          key=f"moving.live.{key}")
                result, _ = execution.compute_live(request, view)
            if result is None:
                continue
            parts = split(result.context)
            st.image(display.enlarge(result.images[0]), caption=display.final_caption(result, 0),
                     width="stretch")
            st.metric("Gain in activation", f"{parts['total']:+.3g}",
                      f"from {parts['start']:.3g} at step 0", delta_color="off", delta_arrow="off")
            order_free = ("content_order_free", "context_order_free")
            for share, part, label in zip(st.columns(2), order_free,
                                          ("Patch content", "Moved context")):
                one_sided = part.removesuffix("_order_free")
                share.metric(label, display.share(parts[part], parts["total"]),
                             f"{parts[part]:+.3g}", delta_color="off", delta_arrow="off",
                             help="Share of the gain, order-free: the average of changing the "
                                  "content first and changing the context first. The two "
                                  "shares add up to 100%; one exceeds it when the parts pull "
                                  "in opposite directions. Content first alone: "
                                  f"{display.share(parts[one_sided], parts['total'])}.")
            st.plotly_chart(display.moving_target_figure(result), key=f"moving.figure.{key}")
            st.markdown("**Where the context lives**", help="For each block (numbered), what the "
                        "activation loses when that block's attention alone keeps its maps from "
                        "step 0, at the last step (bars) and over the run (lines); grey: what "
                        "the blocks do only together (the interaction).")
            st.plotly_chart(display.block_figure(result), key=f"moving.blocks.{key}")
            strip = display.attention_filmstrip(result)
            if strip:
                st.markdown("**Where the patch tokens look**", help="Attention rollout over the "
                            "blocks up to the target: where the tokens the unit reads attend. "
                            "The picture at that step is dark where they do not look.")
                st.image([image for _, image in strip], width=96,
                         caption=[f"step {step}" for step, _ in strip])
            st.caption(display.run_facts(result))
    st.caption(f"Unit {unit} of {layer.name}. Content first: the activation with attention frozen "
               "at step 0, minus the start, is the content part; the live activation minus it is "
               "the context part. Context first: the starting image's tokens mixed by the "
               "current attention give the context part. The shares shown average the two "
               "orders (the Shapley split); both add up to the gain. Attention Δ: mean absolute "
               "change of the attention maps per step, over blocks and heads.")
