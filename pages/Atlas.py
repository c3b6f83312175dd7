"""Atlas: every unit of a layer, a page at a time, each linking to the unit's own page."""
from ui.navigation import through_app

through_app()  # first: the menu shows before the seconds of imports below

import streamlit as st

from ui import execution, widgets
from ui.limits import load_limits
from ui.page import PAGES, SETTINGS_GRID, reported, setup
from ui.resources import result_cache
from ui.settings import to_query
from vitviz.rendering.presets import DEFAULT_PRESET, get_preset
from vitviz.surveys.atlas import run_atlas, stored_figure, unit_request

PAGE_UNITS = 48
COLUMNS = 8
ORDERS = {"unit": "unit", "activation": "activation",
          "robust": "robust activation (x photo max)"}
SHOW = {"all": "all units", "computed": "computed units", "missing": "units not computed"}


def figure(result, order: str) -> float | None:
    """The number a picture is sorted by and labelled with, or None where it has none."""
    if result is None:
        return None
    if order == "robust":
        return stored_figure(result, "relative_robust_activation")
    return result.activation[0][-1]

state = setup("atlas", "Every unit of a layer with the default method, a page of units at a "
                       "time. Each picture links to the unit's own page (its visualisation, "
                       "dataset examples and figures). Units run several per batch and land in "
                       "the result cache as the runs the other pages ask for; `python -m vitviz "
                       "atlas` fills a whole layer from the command line.")

with reported():
    limits = load_limits()
    columns = st.container(border=True).columns(SETTINGS_GRID, gap="medium")
    with columns[0]:
        name = widgets.model_picker(state)
    card = widgets.card_or_stop(name)
    with columns[1]:
        layer = widgets.layer_picker(state, card)
    with columns[2]:
        seed = widgets.seed_picker(state)
        steps = widgets.steps_picker(state, limits)
    with columns[3]:
        key = state.seed("start", 0)
        start = state.keep("start", st.number_input(
            "First unit", min_value=0, max_value=max(layer.units - 1, 0), step=PAGE_UNITS,
            key=key, help=f"{layer.units} units in this layer; {PAGE_UNITS} per page."))
        order = state.keep("order", st.selectbox(
            "Order", list(ORDERS), key=state.seed("order", "unit"), format_func=ORDERS.get,
            help="Unit index; the final activation; or the robust activation (over shifted "
                 "and zoomed views, as a multiple of the unit's maximum over the photos: a "
                 "figure adversarial noise cannot win). Strongest first; units without the "
                 "figure go last."))
        show = state.keep("show", st.selectbox(
            "Show", list(SHOW), key=state.seed("show", "all"), format_func=SHOW.get))
    state.publish()

    units = list(range(start, min(start + PAGE_UNITS, layer.units)))
    requests = {u: unit_request(name, layer.name, u, seed, DEFAULT_PRESET, steps) for u in units}
    problems, found = widgets.look_up(state, name, card, list(requests.values()), limits)
    if problems:
        st.stop()
    results = dict(zip(units, found))
    missing = [u for u in units if results[u] is None]
    if missing and widgets.run_button(f"Compute the {len(missing)} missing units of this page"):
        bar = st.progress(0.0, text="Starting…")

        def progress(done: int, total: int, seconds: float) -> None:
            bar.progress(done / total, text=f"{done} of {total} units · "
                                            f"{done / max(seconds, 1e-9) * 3600:.0f} units/hour")

        execution.use_model(name, lambda model: list(run_atlas(
            model, layer.name, missing, result_cache(), seed=seed, steps=steps,
            batch_units=min(8, limits.max_batch), progress=progress)))
        st.rerun()

    if order != "unit":
        values = {u: figure(results[u], order) for u in units}
        units.sort(key=lambda u: -values[u] if values[u] is not None else float("inf"))
    if show != "all":
        units = [u for u in units if (results[u] is None) == (show == "missing")]
    size = get_preset(DEFAULT_PRESET).canvas_size(card.preprocessing.size)
    st.caption(f"Units {start} to {min(start + PAGE_UNITS, layer.units) - 1} of "
               f"{layer.name} · {len(results) - len(missing)} computed, {len(missing)} missing · "
               f"{DEFAULT_PRESET}, {steps} steps, seed {seed}")
    for row in range(0, len(units), COLUMNS):
        for column, unit in zip(st.columns(COLUMNS), units[row:row + COLUMNS]):
            with column:
                result = results[unit]
                if result is None:
                    st.caption(f"unit {unit} · not computed")
                    continue
                st.image(result.images[0], width="stretch")
                settings = {"model": name, "layer": layer.name, "unit": unit, "tokens": "patch",
                            "seed": seed, "steps": steps, "size": size}
                value = figure(result, order)
                shown = "–" if value is None else f"{value:.2g}" + ("x" if order == "robust" else "")
                st.page_link(PAGES["examples"].path, label=f"#{unit} · {shown}",
                             query_params={k: to_query(v) for k, v in settings.items()})
