"""Atlas: every unit of a layer, a page at a time, each linking to the unit's own page."""
from ui.navigation import through_app

through_app()  # first: the menu shows before the seconds of imports below

import streamlit as st

from ui import display, execution, widgets
from ui.limits import load_limits
from ui.mixing import mixed_caption, mixed_firsts
from ui.page import PAGES, SETTINGS_GRID, reported, setup
from ui.resources import result_cache
from ui.settings import accentuated_request, to_query
from vitviz.data.photo_sets import current_photo_set_id
from vitviz.models.layers import recommended_layers
from vitviz.quality.judge import independent_judge
from vitviz.rendering.presets import DEFAULT_PRESET, PRESETS, get_preset
from vitviz.store.results import to_uint8
from vitviz.surveys.atlas import read_units, reading_figure, run_atlas, stored_figure, unit_request

PAGE_UNITS = 48
COLUMNS = 8
ORDERS = {"unit": "unit", "activation": "activation",
          "robust": "robust activation (x photo max)", "judge": "independent judge's reading"}
SHOW = {"all": "all units", "computed": "computed units", "missing": "units not computed"}


def figure(result, order: str, minimise: bool = False, read: float | None = None) -> float | None:
    """The number a picture is sorted by and labelled with, or None where it has none. A
    minimising picture has no multiple of the photo maximum: its robust activation itself.
    `read`: the unit's judge reading, stored with its maximising run (`reading_figure`)."""
    if result is None:
        return None
    if order == "judge":
        return read
    if order == "robust":
        return stored_figure(result, "robust_activation" if minimise
                             else "relative_robust_activation")
    return result.activation[0][-1]

state = setup("atlas", "Every unit of a layer with the default method, driven up (what "
                       "excites it) or down (what suppresses it), a page of units at a time, "
                       "each optionally beside its accentuated exemplar. Each picture links to "
                       "the unit's own page (its visualisation, dataset examples and figures; "
                       "driven down, its Optimise page). Units run several per batch and land in "
                       "the result cache as the runs the other pages ask for; `python -m vitviz "
                       "atlas` fills a whole layer from the command line.")

with reported():
    limits = load_limits()
    state.hold_to(limits)
    columns = st.container(border=True).columns(SETTINGS_GRID, gap="medium")
    with columns[0]:
        name = widgets.model_picker(state)
    card = widgets.card_or_stop(name)
    with columns[1]:
        layer = widgets.layer_picker(state, card)
    with columns[2]:
        seed = widgets.seed_picker(state)
        steps = widgets.steps_picker(state, limits)
        minimise = widgets.direction_picker(state, "Drive the units") == "min"
    with columns[3]:
        key = state.seed("start", 0)
        start = state.keep("start", st.number_input(
            "First unit", min_value=0, max_value=max(layer.units - 1, 0), step=PAGE_UNITS,
            key=key, help=f"{layer.units} units in this layer; {PAGE_UNITS} per page."))
        order = state.keep("order", st.selectbox(
            "Order", list(ORDERS), key=state.seed("order", "unit"), format_func=ORDERS.get,
            help="Unit index; the final activation; the robust activation (over shifted "
                 "and zoomed views, as a multiple of the unit's maximum over the photos: a "
                 "figure adversarial noise cannot win; driven down, the robust activation "
                 "itself); or the independent judge's reading of the unit's pictures up and "
                 "down (photo-disjoint, chance 50%). Strongest first (driven down, the most "
                 "suppressed first; the judge, highest first); units without the figure go "
                 "last."))
        show = state.keep("show", st.selectbox(
            "Show", list(SHOW), key=state.seed("show", "all"), format_func=SHOW.get))
        exemplars = state.keep("exemplars", st.toggle(
            "Exemplars accentuated by gradient", key=state.seed("exemplars", False),
            help="Under each picture, the unit's strongest photo view (its weakest when "
                 "driven down) changed only as much as it takes to drive the unit further, "
                 "and below it what changed, amplified around grey: the run of the unit's "
                 "Optimise and Dataset examples pages."))
        mixed = state.keep("mixed", st.toggle(
            "Mixed exemplars", key=state.seed("mixed", False),
            help="Under each picture, the unit's first photo-disjoint exemplar (the first the "
                 "independent judge reads; its weakest when driven down) mixed with the "
                 "picture as little as it takes to drive the unit as hard as its strongest "
                 "photo (at most 30%): the accentuated exemplars the report judges."))
    state.publish()

    units = list(range(start, min(start + PAGE_UNITS, layer.units)))
    size = get_preset(DEFAULT_PRESET).canvas_size(card.preprocessing.size)
    # Each unit's settings on its own page: the Dataset examples page, or for pictures of what
    # suppresses it, the Optimise page driving it down (the same cache key as the atlas's run).
    settings = {u: {"model": name, "layer": layer.name, "unit": u, "tokens": "patch",
                    "seed": seed, "steps": steps, "size": size} for u in units}
    if minimise:
        knobs = PRESETS[DEFAULT_PRESET]
        for unit_settings in settings.values():
            unit_settings.update(kind="neuron", preset=DEFAULT_PRESET, lr=knobs.lr,
                                 ensemble=knobs.ensemble, tv=knobs.tv_weight, direction="min")
    requests = {u: unit_request(name, layer.name, u, seed, DEFAULT_PRESET, steps,
                                minimise=minimise) for u in units}
    accents = ({u: accentuated_request({**settings[u], "kind": "neuron",
                                        "direction": "min" if minimise else "max"},
                                       card.preprocessing.size) for u in units}
               if exemplars else {})
    problems, found = widgets.look_up(state, name, card,
                                      list(requests.values()) + list(accents.values()), limits)
    if problems:
        st.stop()
    results = dict(zip(units, found))
    accented = dict(zip(accents, found[len(units):]))
    missing = [u for u in units if results[u] is None]

    def compute(todo: list[int], what: str, accentuate: int | None = None) -> None:
        """`todo`'s atlas runs (or accentuated exemplars), several units a batch, with a bar."""
        bar = st.progress(0.0, text="Starting…")

        def progress(done: int, total: int, seconds: float) -> None:
            bar.progress(done / total, text=f"{what}{done} of {total} units · "
                                            f"{done / max(seconds, 1e-9) * 3600:.0f} units/hour")

        execution.use_model(name, lambda model: list(run_atlas(
            model, layer.name, todo, result_cache(), seed=seed, steps=steps,
            batch_units=min(8, limits.max_batch), progress=progress, minimise=minimise,
            accentuate=accentuate)))
        st.rerun()

    if missing and widgets.run_button(f"Compute the {len(missing)} missing units of this page"):
        compute(missing, "")
    unaccented = [u for u in accents if accented[u] is None]
    if unaccented and widgets.run_button(
            f"Accentuate the {len(unaccented)} units of this page without an exemplar"):
        compute(unaccented, "Accentuated exemplars: ", accentuate=0)

    drawn = {u: results[u] for u in units if results[u] is not None}
    mixes = (mixed_firsts(name, layer.name, drawn, minimise,
                          tuple(requests[u].key() for u in drawn), "atlas") if mixed else {})

    # A unit's reading is stored with its maximising run, once it is drawn both ways.
    judge_name, photo_set, cache = independent_judge(name), current_photo_set_id(), result_cache()
    opposite = {u: unit_request(name, layer.name, u, seed, DEFAULT_PRESET, steps,
                                minimise=not minimise).key() for u in units}
    both = [u for u in units if results[u] is not None and opposite[u] in cache]
    driven_up = results if not minimise else {u: cache.get(opposite[u]) for u in both}
    reads = {u: reading_figure(driven_up.get(u), judge_name, photo_set) for u in units}
    unread = [u for u in both if reads[u] is None]
    if unread and st.button(f"Read the {len(unread)} units of this page drawn both ways with "
                            f"an independent judge ({judge_name})", icon=":material/gavel:"):
        bar = st.progress(0.0, text="Judging…")
        execution.use_model(name, lambda model: read_units(
            model, layer.name, unread, cache, seed=seed, steps=steps, judge_name=judge_name,
            progress=lambda done, total, _: bar.progress(done / total,
                                                         text=f"Judged {done} of {total}")))
        st.rerun()

    if order != "unit":
        values = {u: figure(results[u], order, minimise, reads[u]) for u in units}
        # Strongest first: the highest driven up, the lowest (most suppressed) driven down;
        # the judge's reading highest first either way.
        descending = not minimise or order == "judge"
        units.sort(key=lambda u: (-values[u] if descending else values[u])
                   if values[u] is not None else float("inf"))
    if show != "all":
        units = [u for u in units if (results[u] is None) == (show == "missing")]
    st.caption(f"Units {start} to {min(start + PAGE_UNITS, layer.units) - 1} of "
               f"{layer.name} · {len(results) - len(missing)} computed, {len(missing)} missing · "
               f"{DEFAULT_PRESET}, {steps} steps, seed {seed}"
               + (" · driven down: what suppresses each unit" if minimise else ""))
    others = [info.name for info in recommended_layers(card)]
    if len(others) > 1:
        with st.expander(f"The atlas of every layer ({len(others)} recommended)"):
            st.caption("`python -m vitviz atlas --layer mlp_hidden` fills them all from the "
                       "command line, resumable; `export-atlas` makes a site of them.")
            for row in range(0, len(others), 4):
                for column, other in zip(st.columns(4), others[row:row + 4]):
                    column.page_link(PAGES["atlas"].path, label=other,
                                     disabled=other == layer.name,
                                     query_params={k: to_query(v) for k, v in {
                                         **state.values, "layer": other, "start": 0}.items()})
    unit_page = PAGES["optimise" if minimise else "examples"].path
    for row in range(0, len(units), COLUMNS):
        for column, unit in zip(st.columns(COLUMNS), units[row:row + COLUMNS]):
            with column:
                result = results[unit]
                if result is None:
                    st.caption(f"unit {unit} · not computed")
                else:
                    st.image(result.images[0], width="stretch")
                exemplar = accented.get(unit)
                if exemplar is not None:
                    display.accentuated_exemplar(exemplar, wide=False, label="accentuated · ")
                if unit in mixes:
                    st.image(to_uint8(mixes[unit].images[:1])[0], width="stretch",
                             caption=mixed_caption(mixes[unit]))
                if result is None:
                    continue
                value = figure(result, order, minimise, reads[unit])
                if order == "judge":
                    shown = "–" if value is None else f"judge {100 * value:.0f}%"
                else:
                    shown = "–" if value is None else f"{value:.2g}" + (
                        "x" if order == "robust" and not minimise else "")
                    if reads[unit] is not None:
                        shown += f" · judge {100 * reads[unit]:.0f}%"
                st.page_link(unit_page, label=f"#{unit} · {shown}",
                             query_params={k: to_query(v) for k, v in settings[unit].items()})
