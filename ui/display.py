"""Figures and result views shared by the pages."""
from __future__ import annotations

import json
import math
import re

import numpy as np
import plotly.graph_objects as go
import streamlit as st
from PIL import Image
from plotly.subplots import make_subplots

from vitviz.analysis.accentuation import accentuation_change
from vitviz.analysis.moving_target import block_parts
from vitviz.quality import metrics
from vitviz.quality.judge import REFERENCES
from vitviz.store.results import Result

SEED_COLOURS = ["#2E86AB", "#E4572E", "#76B041", "#8E5DB2", "#F0A202", "#17BEBB", "#C1666B",
                "#4F6D7A"]
_PRESET_COLOURS = {"naive": "#E4572E", "robust": "#2E86AB", "lucent": "#76B041",
                   "ghiasi": "#8E5DB2", "maco": "#F0A202"}


def preset_colour(preset: str) -> str:
    """A fixed colour per known preset; a new preset gets one by its position, never a KeyError."""
    return _PRESET_COLOURS.get(preset) or SEED_COLOURS[sum(map(ord, preset)) % len(SEED_COLOURS)]
DISPLAY_SIDE = 256  # tiny models make 32 px images: enlarge them without blurring the pixels


def enlarge(image: np.ndarray, side: int = DISPLAY_SIDE) -> np.ndarray:
    factor = side // max(image.shape[:2])
    if factor < 2:
        return image
    return np.asarray(Image.fromarray(image).resize(
        (image.shape[1] * factor, image.shape[0] * factor), Image.NEAREST))


def _layout(fig: go.Figure, height: int, y_title: str) -> go.Figure:
    fig.update_layout(
        height=height, margin=dict(l=10, r=10, t=36, b=10), hovermode="x unified",
        legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0),
    )
    fig.update_xaxes(title_text="step")
    fig.update_yaxes(title_text=y_title)
    return fig


def curves_figure(curves: list[tuple[str, list[int], list[float], str]], height: int = 340,
                  y_title: str = "target activation") -> go.Figure:
    """curves: (label, steps, values, colour). Several per colour are drawn thinner."""
    per_colour: dict[str, int] = {}
    for *_, colour in curves:
        per_colour[colour] = per_colour.get(colour, 0) + 1
    fig = go.Figure()
    for label, steps, values, colour in curves:
        width = 1.5 if per_colour[colour] > 1 else 2.5
        fig.add_trace(go.Scatter(x=steps, y=values, name=label, mode="lines",
                                 line=dict(color=colour, width=width)))
    return _layout(fig, height, y_title)


def result_curves(result: Result) -> list[tuple[str, list[int], list[float], str]]:
    return [(label, result.steps, curve, SEED_COLOURS[i % len(SEED_COLOURS)])
            for i, (label, curve) in enumerate(zip(result.item_labels(), result.activation))]


def moving_target_figure(result: Result, item: int = 0, height: int = 420) -> go.Figure:
    """Target activation with live and with frozen attention, and how far attention moved."""
    context, steps = result.context, result.steps
    live = [row[item] for row in context["activation_live"]]
    frozen = [row[item] for row in context["activation_frozen_start"]]
    change = [row[item] for row in context["attention_change"]]
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.64, 0.36],
                        vertical_spacing=0.09)
    fig.add_trace(go.Scatter(x=steps, y=live, name="activation", mode="lines",
                             line=dict(color="#2E86AB", width=2.5)), 1, 1)
    fig.add_trace(go.Scatter(x=steps, y=frozen, name="attention frozen at step 0", mode="lines",
                             line=dict(color="#E4572E", width=2, dash="dash")), 1, 1)
    fig.add_trace(go.Scatter(x=steps, y=change, name="attention change per step", mode="lines",
                             line=dict(color="#6C757D", width=1.5)), 2, 1)
    _layout(fig, height, "")
    fig.update_xaxes(title_text="", row=1, col=1)
    fig.update_yaxes(title_text="activation", row=1, col=1)
    fig.update_yaxes(title_text="attention Δ", row=2, col=1)
    return fig


def _block_label(module: str) -> str:
    """'encoder.layers.encoder_layer_3.self_attention' -> '3': the last number in the name."""
    numbers = re.findall(r"\d+", module)
    return numbers[-1] if numbers else module


def block_figure(result: Result, item: int = 0, height: int = 420) -> go.Figure:
    """Each attention module's part of the context: at the last step (bars), and over the
    recorded steps (lines); grey, the interaction."""
    parts = block_parts(result.context, item)
    names = list(parts)
    labels = [name if name == "interaction" else _block_label(name) for name in names]
    colours = ["#6C757D" if name == "interaction" else "#E4572E" for name in names]
    fig = make_subplots(rows=2, cols=1, row_heights=[0.5, 0.5], vertical_spacing=0.2)
    fig.add_trace(go.Bar(x=labels, y=[parts[n] for n in names], marker_color=colours,
                         hovertext=names, showlegend=False), 1, 1)
    recorded = [step for step, blocks in zip(result.steps, result.context["context_blocks"])
                if blocks]
    over_steps = [block_parts(result.context, item, result.steps.index(step))
                  for step in recorded]
    for name, label in zip(names, labels):
        fig.add_trace(go.Scatter(
            x=recorded, y=[row[name] for row in over_steps], name=f"block {label}"
            if name != "interaction" else label, mode="lines+markers",
            line=dict(color="#6C757D" if name == "interaction" else None, width=1.5)), 2, 1)
    _layout(fig, height, "")
    fig.update_layout(showlegend=False)  # the blocks are named on hover and on the bars' axis
    fig.update_xaxes(type="category", title_text="", row=1, col=1)
    fig.update_xaxes(title_text="step", row=2, col=1)
    fig.update_yaxes(title_text="activation lost", row=1, col=1)
    fig.update_yaxes(title_text="over steps", row=2, col=1)
    return fig


def attention_filmstrip(result: Result, item: int = 0, view: str = "rollout",
                        frames: int = 5) -> list[tuple[int, np.ndarray]]:
    """(step, image) pairs: the picture at a recorded step, darkened where its patch tokens do
    not attend (`moving_target.where_tokens_look`); up to `frames`, spread over the run."""
    recorded = [(step, looks[view][item]) for step, looks
                in zip(result.steps, result.context.get("attention_where", []))
                if looks and step in result.checkpoints]
    if not recorded:
        return []
    picks = sorted({round(i * (len(recorded) - 1) / max(frames - 1, 1)) for i in range(frames)})
    strip = []
    for step, weights in (recorded[i] for i in picks):
        image = result.checkpoints[step][item]
        side = math.isqrt(len(weights))
        heat = np.asarray(weights, dtype=np.float32).reshape(side, side)
        # Scaled to the 95th percentile, not the maximum: ViTs put much of their attention on a
        # few sink patches, which would otherwise leave everything else black.
        heat = np.clip(heat / max(float(np.quantile(heat, 0.95)), 1e-12), 0, 1)
        heat = np.asarray(Image.fromarray((heat * 255).astype(np.uint8)).resize(
            image.shape[1::-1], Image.Resampling.BILINEAR), dtype=np.float32) / 255
        strip.append((step, (image * (0.2 + 0.8 * heat[..., None])).astype(np.uint8)))
    return strip


def share(part: float, total: float) -> str:
    """`part` as a percentage of `total`; a dash where there is no gain to share."""
    return f"{part / total:.0%}" if abs(total) > 1e-9 else "—"


def run_facts(result: Result) -> str:
    return (f"{result.model['name']} ({result.model['weights']}) · "
            f"{result.steps[-1] if result.steps else 0} steps in {result.elapsed_s:.1f} s on "
            f"{result.device}{f' ({result.precision})' if result.precision else ''} · "
            f"{result.created}")


def provenance(result: Result, from_cache: bool) -> str:
    how = "Served from the result cache" if from_cache else "Computed just now"
    return f"{how} · {run_facts(result)}"


def checkpoint_step(result: Result, key: str) -> int:
    """A slider over the stored checkpoints, starting at the final image."""
    steps = sorted(result.checkpoints)
    if len(steps) < 2:
        return steps[-1] if steps else 0
    return st.select_slider("Step", steps, value=steps[-1], key=key,
                            help="Images are kept every few steps; slide to watch the run.")


def image_grid(images: list[np.ndarray], captions: list[str], columns: int | None = None) -> None:
    columns = columns or len(images)
    for start in range(0, len(images), columns):
        row = st.columns(columns)
        for column, image, caption in zip(row, images[start:start + columns],
                                          captions[start:start + columns]):
            column.image(enlarge(image), caption=caption, width="stretch")


def downloads(result: Result, key: str, stem: str) -> None:
    """PNG per image (the run's config embedded as PNG text) and the JSON of the run."""
    row = st.container(horizontal=True)
    for i, label in enumerate(result.item_labels()):
        slug = label.replace(", ", "_").replace(" ", "")
        row.download_button(
            f"PNG · {label}", result.png(i), file_name=f"{stem}_{slug}.png", mime="image/png",
            key=f"{key}.png{i}", on_click="ignore", icon=":material/image:")
    row.download_button(
        "JSON · config and curves", json.dumps(result.to_json(), indent=1),
        file_name=f"{stem}.json", mime="application/json", key=f"{key}.json",
        on_click="ignore", icon=":material/data_object:")


def final_caption(result: Result, item: int) -> str:
    """Item label, and once measured its robust activation and the plain-colour baseline
    (`vitviz.quality.plain_colour`): 'seed 2 · 1.23× photo max, shifted & zoomed · a plain
    colour 0.40×'.

    Not the raw activation: adversarial noise reaches the largest raw values (the curves show
    them as the optimisation record).
    """
    label = result.item_labels()[item]
    relative = result.metrics.get("relative_robust_activation")
    if not relative:
        return label
    caption = f"{label} · {times(relative[item])} photo max, shifted & zoomed"
    plain = result.metrics.get("relative_plain_colour")
    # Measured since vitviz.quality.plain_colour exists: older stored figures go without it.
    return caption + (f" · a plain colour {times(plain[item])}" if plain else "")


def accentuated_caption(result: Result) -> str:
    """Where an accentuated exemplar started and where the unit now stands: 'from 12.jpg
    (1.5) · now 3.2'."""
    source = result.metrics["accentuated_from"][0]
    return (f"from {source['photo'].split('/')[-1]} ({source['activation']:.3g}) · now "
            f"{result.activation[0][-1]:.3g}")


def change_caption(gain: float, mean_levels: float) -> str:
    """'what changed, x12 around grey (mean 3.1 levels)', or 'unchanged'."""
    if not gain:
        return "unchanged"
    return f"what changed, ×{gain:.3g} around grey (mean {mean_levels:.2g} levels)"


def accentuated_exemplar(result: Result, wide: bool = True, label: str = "") -> None:
    """An accentuated exemplar with what accentuation changed in its photo: wide, the photo,
    the exemplar and the change side by side; narrow, the exemplar above the change (the
    page shows the photos already, or the column is an atlas cell). `label` opens the
    exemplar's caption."""
    caption = label + accentuated_caption(result)
    shown = accentuation_change(result)
    if shown is None:
        st.image(enlarge(result.images[0]), width="stretch", caption=caption)
        return
    changed = change_caption(shown.gain, shown.mean_levels)
    if wide:
        photo, picture, difference = st.columns(3)
        photo.image(enlarge(shown.photo), width="stretch", caption="its photo, unchanged")
    else:
        picture = difference = st.container()
    picture.image(enlarge(shown.picture), width="stretch", caption=caption)
    difference.image(enlarge(shown.difference), width="stretch", caption=changed)


def accentuated_figure(result: Result) -> None:
    """An accentuated exemplar's quality figure, once measured (`metrics.result_metrics`):
    against the photos' maximum, or for a minimising one their minimum."""
    figures = result.metrics
    if "relative_robust_activation" in figures:
        st.metric("Robust act. / photo max", times(figures["relative_robust_activation"][0]),
                  help="The exemplar's mean activation over shifted and zoomed views, as a "
                       "multiple of the unit's largest activation on the photos.")
    elif "unit_min_over_photos" in figures:
        st.metric("Robust act. · photo min", f"{figures['robust_activation'][0]:.3g} · "
                  f"{figures['unit_min_over_photos'][0]:.3g}",
                  help="The exemplar's mean activation over shifted and zoomed views, and the "
                       "unit's smallest activation on the photos.")


def run_view(result: Result, from_cache: bool, key: str, stem: str) -> None:
    """A run's images (with the checkpoint slider), curves and exports."""
    left, right = st.columns([2, 3], gap="large")
    with left:
        step = checkpoint_step(result, f"{key}.step")
        images = result.checkpoints.get(step, result.images)
        captions = [f"{label} · step {step}" for label in result.item_labels()]
        image_grid(images, captions, columns=min(len(images), 2))
    with right:
        if "activation_frozen_start" in result.context:
            st.plotly_chart(moving_target_figure(result), key=f"{key}.moving")
        else:
            st.plotly_chart(curves_figure(result_curves(result)), key=f"{key}.curves")
    st.caption(provenance(result, from_cache))
    figures_unavailable(result)
    downloads(result, key, stem)


def figures_unavailable(result: Result) -> None:
    """Why a finished run has no quality figures yet (its photo folder has no index), if so."""
    reason = result.metrics.get("figures_unavailable")
    if reason:
        st.info(f"No quality figures yet: {reason}", icon=":material/info:")


def reading_table(found: dict) -> list[dict]:
    """A judge's reading (`vitviz.quality.reading`) as rows: the unit's pictures, its
    natural exemplars, both together and its accentuated exemplars (readings stored before
    2026-12-07 and 2026-12-08 have no such rows), scored on each query set."""
    names = {"pictures": "its pictures", "exemplars": "its photos",
             "together": "both together", "accentuated": "its photos mixed with the pictures"}
    return [{"references": label,
             **{QUERY_SET_LABELS[query_set]: f"{100 * found[query_set][kind]:.0f}%"
                for query_set in QUERY_SET_LABELS}}
            for kind, label in names.items() if kind in found["standard"]]


def reading_caption(found: dict) -> str:
    """Who judged, how many tasks, and one unit's noise."""
    who = found["judge"]["model"] + (" (the model's own family: a diagnostic only)"
                                      if found["judge"]["in_model"] else "")
    up, down = found["references"]
    return (f"Judge: {who}, against {found['photo_set']}. {found['tasks']} tasks per column, "
            f"chance 50%; one unit's score moves by about ±{100 * found['noise']:.0f} points "
            f"with its photos. Its pictures gave {up} references driven up and {down} driven "
            f"down (each seed whole, then by quarters); its photos give {REFERENCES} a side; "
            f"both together: the two sets at once, each weighing the same, as Dataset examples "
            f"shows them; mixed with the pictures: its photo-disjoint exemplars, each mixed "
            f"with its pictures as little as it takes (Accentuated exemplars).")


QUERY_SET_LABELS = {"standard": "standard", "photo_disjoint": "photo-disjoint"}


def quality_table(presets: list[str], results: list[Result]) -> list[dict]:
    """One row per method: medians over its seeds of the figures in `result.metrics`.

    Only figures that noise cannot win: raw activation and how alike the seeds look are left
    out, as adversarial noise scores highest on both.
    """
    rows = []
    for preset, result in zip(presets, results):
        figures = result.metrics
        row = {
            "method": preset,
            "shifted & zoomed / photo max": median(figures["relative_robust_activation"]),
            f"robust rank of {figures['layer_units']}": median(figures["robust_rank"]),
        }
        if "specificity" in figures:  # only for runs of several units, two seeds or more each
            row["specificity (MobileNetV2)"] = figures["specificity"]["specificity"]
            row["identification"] = figures["specificity"]["identification"]
        rows.append(row)
    return rows


def median(values) -> float | None:
    """Median of the finite values (`metrics.finite_median`, as the report's); None when there
    are none."""
    value = metrics.finite_median(values)
    return None if math.isnan(value) else value


def times(value: float | None) -> str:
    """A multiple such as '1.23×'; '—' where there is none."""
    return f"{value:.2f}×" if value is not None and math.isfinite(value) else "—"
