"""Setting widgets shared by the pages. Each renders where it is called and records its value
in the page's state (and so in the URL)."""
from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from ui import execution
from ui.limits import LimitError, Limits, load_limits
from ui.page import SETTINGS_GRID, show_error
from ui.resources import model_card, served_models
from ui.settings import DIRECTIONS, KINDS, NO_PRESET
from ui.state import PageState
from vitviz.models.layers import (
    ROLE_LABELS,
    LayerInfo,
    ModelCard,
    UnknownLayer,
    default_layer,
    find_layer,
    layer_table,
)
from vitviz.models.loaded import RANDOM_ONLY, RANDOM_SUFFIX, ModelError
from vitviz.models.registry import MODELS, default_model, parse_model_name
from vitviz.rendering.presets import DEFAULT_PRESET, PRESETS, get_preset

# The session's current model: picked on any page (or the home page), the default on every other.
MODEL_CHOICE = "vitviz.model"
TOKEN_LABELS = {"patch": "patches", "cls": "class token", "all": "all tokens", "index": "one token"}


def picker_models(vit_only: bool = False) -> list[str]:
    """The base names a picker offers: the models this server serves (all, unless the operator
    lists them), the ViTs only where a page needs one."""
    names = [n for n in served_models() if not vit_only or MODELS[n].architecture == "vit"]
    if not names:
        raise LimitError("This page needs a Vision Transformer, and this server serves none "
                         f"(it serves {', '.join(served_models())}).")
    return names


def served_name(base: str) -> str:
    """`base` as this server serves it: trained where it may, else its untrained copy."""
    return base if load_limits().serves(base) else base + RANDOM_SUFFIX


def preferred_model(vit_only: bool = False) -> str:
    names = picker_models(vit_only)
    name = st.session_state.get(MODEL_CHOICE) or default_model()[0]
    if parse_model_name(name)[0] in names and load_limits().serves(name):
        return name
    if vit_only and MODELS[parse_model_name(name)[0]].architecture != "vit":
        fallback = "dinov2_vits14" if MODELS["dinov2_vits14"].available() else "tiny_vit"
        if fallback in names:
            return served_name(fallback)
    base = parse_model_name(name)[0]
    return served_name(base if base in names else names[0])


def model_label(name: str) -> str:
    spec = MODELS[name]
    missing = "" if spec.available() else " · weights not installed"
    return f"{name} · {'ViT' if spec.architecture == 'vit' else 'CNN'}{missing}"


def model_picker(state: PageState, vit_only: bool = False) -> str:
    """Model selectbox plus an 'untrained copy' toggle, offering only the models this server
    serves; returns a registry name.

    A link naming a model the server does not serve ends the page with a message naming the
    ones it serves, before anything of a model is read or loaded; the picker is left showing
    a served model for the visitor to go on with.
    """
    limits = load_limits()
    names = picker_models(vit_only)
    base_key, random_key = state.key("model"), state.key("random")
    refused = None
    if base_key not in st.session_state:
        wanted = state.wanted("model")
        try:
            base, random_init = parse_model_name(wanted or preferred_model(vit_only))
            limits.check_model(wanted or base + (RANDOM_SUFFIX if random_init else ""))
            names = picker_models(vit_only)  # with a library's model the link named ('timm:...')
            if base not in names:
                raise ModelError(f"This page needs a Vision Transformer; {base} is a CNN. "
                                 f"ViTs: {', '.join(names)}.")
        except LimitError as error:
            refused = error
            base, random_init = parse_model_name(preferred_model(vit_only))
        except ModelError as error:
            state.problems.append(str(error))
            base, random_init = parse_model_name(preferred_model(vit_only))
        st.session_state[base_key] = base
        st.session_state[random_key] = random_init and base not in RANDOM_ONLY
    elif st.session_state[base_key] not in names:  # the operator changed the list
        st.session_state[base_key] = parse_model_name(preferred_model(vit_only))[0]
    base = st.session_state[base_key]
    # Where the server serves one variant of `base` only, the toggle shows it and is fixed.
    trained, untrained_too = limits.serves(base), limits.serves(base + RANDOM_SUFFIX)
    fixed = base in RANDOM_ONLY or not (trained and untrained_too)
    if fixed and base not in RANDOM_ONLY:
        st.session_state[random_key] = not trained
    base = st.selectbox("Model", names, key=base_key, format_func=model_label,
                        help="A model marked 'weights not installed' cannot load here; picking "
                             "it shows how to install its weights.")
    untrained = st.toggle("Untrained", key=random_key, disabled=fixed,
                          help="Random weights: a baseline that shows what the method alone "
                               "produces, without anything learned.")
    name = base + (RANDOM_SUFFIX if untrained and base not in RANDOM_ONLY else "")
    if not limits.serves(name):  # `base` changed in this run: its one served variant
        name = served_name(base)
    st.session_state[MODEL_CHOICE] = name
    if refused is not None:
        raise refused
    return state.keep("model", name)


def card_or_stop(name: str) -> ModelCard:
    """The model's card (`resources.model_card`); if there is none, say why and end the page."""
    try:
        return model_card(name)
    except ModelError as error:
        show_error(str(error))
        st.stop()


def random_init_warning(name: str) -> None:
    if parse_model_name(name)[1]:
        st.warning(f"**{name} has random weights, not trained ones.** Its images show what the "
                   "optimisation does on its own; they say nothing about learned features.",
                   icon=":material/warning:")


def layer_label(info: LayerInfo) -> str:
    mark = "★ " if info.recommended else ""
    return f"{mark}{info.name} · {info.type} {list(info.shape)}"


def layer_picker(state: PageState, model: ModelCard, tokens_only: bool = False) -> LayerInfo:
    table = [i for i in layer_table(model) if not tokens_only or i.layout == "tokens"]
    names = [info.name for info in table]
    default = default_layer(model)
    if default not in names:
        default = next((i.name for i in table if i.recommended), names[0])
    key = state.key("layer")
    if key not in st.session_state:
        wanted = state.wanted("layer")
        if wanted is not None and wanted not in names:
            try:
                find_layer(model, wanted)
                state.problems.append(f"Layer '{wanted}' has no token axis; this page needs one "
                                      "(a ViT block, attention or MLP layer).")
            except UnknownLayer as error:
                state.problems.append(str(error))
            wanted = None
        st.session_state[key] = wanted or default
    elif st.session_state[key] not in names:  # the model changed under the layer
        st.session_state[key] = default
    current = st.session_state[key]
    by_name = {info.name: info for info in table}
    only_key = state.key("recommended")
    if only_key not in st.session_state:
        st.session_state[only_key] = by_name[current].recommended
    only = st.session_state[only_key]
    options = [n for n in names if by_name[n].recommended or not only or n == current]
    st.selectbox("Layer", options, key=key, format_func=lambda n: layer_label(by_name[n]),
                 help="★ recommended targets (MLP hidden layers of ViT blocks, block outputs of "
                      "CNNs). Names are exactly as `named_modules()` prints them; shapes exclude "
                      "the batch axis.")
    st.toggle("★ recommended layers only", key=only_key)
    return by_name[state.keep("layer", st.session_state[key])]


def layer_table_expander(model: ModelCard) -> None:
    with st.expander(f"All {len(layer_table(model))} layers of {model.name}"):
        st.dataframe(
            [{"": "★" if i.recommended else "", "layer": i.name, "type": i.type,
              "shape": str(list(i.shape)), "layout": i.layout, "units": i.units,
              "role": ROLE_LABELS.get(i.role, "")} for i in layer_table(model)],
            hide_index=True, height=300,
        )


def kind_picker(state: PageState) -> str:
    key = state.seed("kind", "neuron")
    return state.keep("kind", st.selectbox("Objective", list(KINDS), key=key,
                                           format_func=lambda k: KINDS[k].split(":")[0],
                                           help="\n\n".join(KINDS.values())))


def unit_picker(state: PageState, info: LayerInfo, kind: str = "neuron") -> int:
    key = state.seed("unit", 0)
    # activation[:, n] indexes axis 1 of the output: tokens on a ViT, channels on a CNN.
    size = info.shape[0] if kind == "seed_compat" else info.units
    what = "token" if kind == "seed_compat" and info.layout == "tokens" else "unit"
    return state.keep("unit", st.number_input(
        "Unit", step=1, key=key, help=f"The {what} to maximise: 0 to {size - 1} in this layer."))


def tokens_picker(state: PageState, info: LayerInfo) -> str | int | None:
    """Token mode for neurons of token layers; None where the layer has no token axis."""
    if info.layout != "tokens":
        return None
    mode_key, index_key = state.key("tokens"), state.key("token")
    if mode_key not in st.session_state:
        wanted = state.wanted("tokens")
        st.session_state[mode_key] = "index" if isinstance(wanted, int) else (wanted or "patch")
        st.session_state[index_key] = wanted if isinstance(wanted, int) else 1
    mode = st.selectbox("Tokens", list(TOKEN_LABELS), key=mode_key, format_func=TOKEN_LABELS.get,
                        help="Which tokens the neuron is averaged over: the patch tokens (the "
                             "unit's response across the image; default), the class token only, "
                             "all tokens, or one token by index.")
    if mode != "index":
        return state.keep("tokens", mode)
    st.session_state.setdefault(index_key, 1)
    index = st.number_input("Token index", step=1, key=index_key,
                            help=f"0 is the class token; 1 to {info.shape[0] - 1} are patches.")
    return state.keep("tokens", index)


@dataclass
class Target:
    """What the target panel chose; its bordered settings box, for the page's other settings;
    and the column of its row that it left free (or None)."""

    settings: object
    name: str
    model: ModelCard
    layer: LayerInfo
    kind: str
    unit: int
    tokens: str | int | None
    spare: object | None

    def row(self) -> list:
        """Another row of the settings box, in the target row's columns."""
        return self.settings.columns(SETTINGS_GRID, gap="medium")


def target_panel(state: PageState, *, objectives: bool = True,
                 vit_only: bool = False, tokens_only: bool = False) -> Target:
    """The first row of every page's settings: model, layer, objective, unit, token mode.

    `objectives=False` fixes the objective to a neuron (the pages that measure one) and leaves
    the row's last column to the page. Ends the page with the reason if the model cannot load.
    The model itself is not loaded: its card answers (`resources.model_card`).
    """
    settings = st.container(border=True)
    columns = settings.columns(SETTINGS_GRID, gap="medium")
    with columns[0]:
        name = model_picker(state, vit_only=vit_only)
    model = card_or_stop(name)
    with columns[1]:
        layer = layer_picker(state, model, tokens_only=tokens_only)
    kind = "neuron"
    if objectives:
        with columns[2]:
            kind = kind_picker(state)
    with columns[3 if objectives else 2]:
        unit = unit_picker(state, layer, kind)
        tokens = tokens_picker(state, layer) if kind == "neuron" else None
    return Target(settings, name, model, layer, kind, unit, tokens,
                  None if objectives else columns[3])


def run_pickers(state: PageState, target: Target, limits: Limits) -> None:
    """Seed, steps and image size, stacked in the target row's free column."""
    with target.spare:
        seed_picker(state)
        steps_picker(state, limits)
        size_picker(state, target.model, limits)


def look_up(state: PageState, name: str, card: ModelCard, requests: list, limits: Limits
            ) -> tuple[list[str], list]:
    """Every problem of the page's settings and requests on model `name`, shown; and each
    request's cached result (None where it must be computed, or where a problem stops it)."""
    random_init_warning(name)
    found = state.problems + [problem for request in requests
                              for problem in execution.request_problems(request, card, limits)]
    problems(found)
    return found, [None if found else execution.cached(request) for request in requests]


def direction_picker(state: PageState, label: str = "Drive the unit") -> str:
    key = state.seed("direction", "max")
    chosen = st.radio(label, list(DIRECTIONS), key=key, horizontal=True,
                      format_func=DIRECTIONS.get,
                      help="Down: the same method with the objective negated, the pictures of "
                           "what suppresses the unit (its minimising references).")
    return state.keep("direction", chosen)


def preset_picker(state: PageState, name: str = "preset", label: str = "Method",
                  default: str = DEFAULT_PRESET, allow_none: bool = False) -> str:
    options = ([NO_PRESET] if allow_none else []) + list(PRESETS)
    key = state.seed(name, default)
    chosen = st.selectbox(label, options, key=key,
                          format_func=lambda p: "— none —" if p == NO_PRESET else p,
                          help="\n\n".join(f"**{p.name}**: {p.description}"
                                           for p in PRESETS.values()))
    return state.keep(name, chosen)


def knob_pickers(state: PageState, preset: str,
                 columns) -> tuple[float, int, float, float, float]:
    """Learning rate, augmented copies, TV weight, photo prior and token focus, each
    defaulting to the preset's own."""
    base = PRESETS[preset]
    from_url = state.incoming.get("preset", DEFAULT_PRESET) == preset
    lr_key = state.seed("lr", base.lr, scope=preset, from_url=from_url)
    ensemble_key = state.seed("ensemble", base.ensemble, scope=preset, from_url=from_url)
    tv_key = state.seed("tv", base.tv_weight, scope=preset, from_url=from_url)
    prior_key = state.seed("photo_prior", base.exemplar_stats, scope=preset, from_url=from_url)
    focus_key = state.seed("focus", base.token_focus, scope=preset, from_url=from_url)
    lr = columns[0].number_input(
        "Learning rate", key=lr_key, step=0.01, format="%g",
        help=f"{base.optimiser} step size; {preset}'s default is {base.lr:g}.")
    ensemble = columns[1].number_input(
        "Copies", key=ensemble_key, step=1,
        help=f"Augmented (randomly transformed) copies of each image per step; {preset}'s "
             f"default is {base.ensemble}. More copies: steadier images, slower steps.")
    tv = columns[2].number_input("TV weight", key=tv_key, step=1e-4, format="%g",
                                 help=f"Total-variation penalty against pixel noise; {preset}'s "
                                      f"default is {base.tv_weight:g}.")
    yielding = ", yielding to the drive" if base.priors_yield else ""
    prior = columns[3].number_input(
        "Photo prior", key=prior_key, step=1.0, format="%g",
        help=f"How hard a unit's picture is held to the kinds of patches its own photos hold "
             f"(the patch statistics of its strongest photo views, its weakest when driven "
             f"down){yielding}; {preset}'s default is {base.exemplar_stats:g}. 0 leaves the "
             "picture free of its photos' colours and textures, and the run needs no photos. "
             "Pictures of one neuron or channel only.")
    focus = columns[4].number_input(
        "Token focus", key=focus_key, step=0.05, format="%g",
        help="The share of its patch tokens over which a unit's picture drives it: 1 drives "
             "their mean, 0.25 the quarter where the unit is strongest (weakest when driven "
             f"down), so the picture need not tile one motif over the canvas; {preset}'s "
             f"default is {base.token_focus:g}. On the last block of dinov2_vits14 the "
             "independent judges read focused pictures a few points better, on early blocks "
             "worse (docs/quality.md). Pictures of one neuron or channel read over the patch "
             "tokens only.")
    return (state.keep("lr", lr), state.keep("ensemble", ensemble), state.keep("tv", tv),
            state.keep("photo_prior", prior), state.keep("focus", focus))


def seed_picker(state: PageState, label: str = "Seed") -> int:
    key = state.seed("seed", 0)
    return state.keep("seed", st.number_input(label, step=1, key=key,
                                              help="Random start and augmentations."))


def steps_picker(state: PageState, limits: Limits) -> int:
    key = state.seed("steps", min(get_preset(DEFAULT_PRESET).steps, limits.max_steps))
    return state.keep("steps", st.number_input(
        "Steps", step=16, key=key,
        help=f"Optimisation steps, at most {limits.max_steps} on this server. On a 2-core CPU a "
             "224 px ViT-S takes about 0.2-0.5 s per step per image."))


def size_picker(state: PageState, model: ModelCard, limits: Limits) -> int:
    native = model.preprocessing.size
    scope = model.registry_name
    from_url = state.incoming.get("model") in (None, scope)
    key = state.seed("size", get_preset(DEFAULT_PRESET).canvas_size(native), scope=scope,
                     from_url=from_url)
    return state.keep("size", st.number_input(
        "Image size", step=16, key=key,
        help=f"Side of the optimised image in pixels (at most {limits.max_image_size}); "
             f"{model.name} sees it resized to {native}."))


def seeds_picker(state: PageState, limits: Limits, default: int = 3) -> int:
    key = state.seed("seeds", min(default, limits.max_batch))
    return state.keep("seeds", st.number_input(
        "Seeds", step=1, key=key,
        help=f"Images of the unit, one per seed, optimised together in one batch (at most "
             f"{limits.max_batch} on this server)."))


def run_button(label: str, disabled: bool = False) -> bool:
    """A primary button that gives its place to the run's progress once clicked."""
    slot = st.empty()
    if slot.button(label, type="primary", disabled=disabled, icon=":material/play_arrow:"):
        slot.empty()
        return True
    return False


def problems(messages: list[str]) -> None:
    for message in dict.fromkeys(messages):
        show_error(message)
