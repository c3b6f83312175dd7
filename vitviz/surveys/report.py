"""`python -m vitviz report`: presets compared on the same units, with figures noise cannot win.

Units come from one or more layers (a range, or a fixed-seed random draw per layer). Every
preset runs every unit with every seed at the same number of steps (in chunks of units, so
memory stays bounded; items of a batch are independent, so chunking changes no image). Then,
per preset (see vitviz.quality.metrics and vitviz.quality.judge):

- alive: the fraction of units whose picture ends above the unit's maximum over the photos;
- beyond plain colour: the fraction of pictures whose robust activation passes a flat field in
  the colour of their unit's strongest photos (vitviz.quality.plain_colour);
- robust activation / photo max and robust rank, per image (medians);
- specificity and identification across all units, in MobileNetV2's feature space;
- the judge's score (vitviz.quality.judge: the Machine Interpretability Score's tasks, with the
  unit's maximising and minimising pictures as references), its control (another unit's
  pictures) and their margin, beside the same figures for natural exemplars, for the standard
  and the photo-disjoint query sets. The judge is a network independent of the visualised one
  unless `--judge` names another, which the report then labels an in-model diagnostic.

Every unit runs twice per seed: maximised and minimised. Writes report.json, grid.png (rows:
units; columns: the maximising seeds of each preset) and index.html.
"""
from __future__ import annotations

import html
import json
import math
import random
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw
from tqdm import tqdm

from vitviz.common.paths import writable_folder
from vitviz.errors import UserError
from vitviz.models.layers import find_layer
from vitviz.models.loaded import LoadedModel
from vitviz.models.registry import default_model, load_model
from vitviz.quality import judge, metrics
from vitviz.data.references import disjoint_exemplars, exemplar_ranks
from vitviz.rendering import accentuate, objectives, picture_mix
from vitviz.rendering.loop import resolve_preset
from vitviz.rendering.precision import resolve_precision
from vitviz.rendering.presets import DEFAULT_PRESET, PRESETS
from vitviz.store.cache import ResultCache
from vitviz.store.results import Result, encode_png
from vitviz.store.runs import RunRequest, cached_result, parse_units
from vitviz.surveys.atlas import compute_batch, item_result

UNITS_PER_RUN = 4
ACCENTUATION_LABELS = {"picture": "accentuated exemplars (mixed with the pictures)",
                       "gradient": "accentuated exemplars (run from each photo)"}


def choose_units(spec: str, layer_units: int, layer: str, seed: int) -> list[int]:
    """A unit list ('0-7', '3,9') or 'random:N', N units drawn with a seed fixed per layer;
    checked against the layer before any list is built (`parse_units`)."""
    if spec.startswith("random:"):
        count = spec.split(":", 1)[1].strip()
        if not (count.isdigit() and 0 < int(count) <= layer_units):
            raise UserError(f"random:N draws N units, 1 to the {layer_units} that {layer} has "
                            f"(got random:{count[:20]})")
        return sorted(random.Random(f"{seed}:{layer}").sample(range(layer_units), int(count)))
    return parse_units(spec, layer_units, layer)


def run_preset(model: LoadedModel, layer: str, units: Sequence[int], seeds: Sequence[int],
               preset: str, overrides: dict, cache: ResultCache | None,
               label: str | None = None,
               units_per_run: int = UNITS_PER_RUN,
               minimise: bool = False) -> tuple[np.ndarray, list]:
    """Final images [units, seeds, H, W, 3] for one preset (with knob `overrides`), and each
    image's final activation. `label` names the variant on the progress bar; a GPU wants more
    `units_per_run` than the default, which keeps a CPU's memory small. With `minimise`, the
    pictures of what drives each unit down. A preset that borrows from a unit's photos (the
    exemplar-statistics prior, the drive cap) borrows from its photo-disjoint natural
    exemplars, never from a photo the judge queries (`exemplar_stats.default_ranks`)."""
    images, reached = [], []
    chunks = [units[i:i + units_per_run] for i in range(0, len(units), units_per_run)]
    total = resolve_preset(preset, **overrides).steps * len(chunks)
    desc = f"{label or preset}{' (min)' if minimise else ''} {layer}"
    with tqdm(total=total, desc=desc, unit="step", file=sys.stderr) as bar:
        for chunk in chunks:
            batch_units = tuple(u for u in chunk for _ in seeds)
            batch_seeds = tuple(s for _ in chunk for s in seeds)
            request = RunRequest(model.registry_name,
                                 objectives.neuron(layer, batch_units).spec(),
                                 batch_seeds, preset, overrides, minimise=minimise)
            result, _ = cached_result(request, cache, lambda _: model,
                            lambda record, n: bar.update(1) if record.loss is not None else None)
            images.extend(result.images)
            reached.extend(curve[-1] for curve in result.activation)
    stacked = np.stack(images).reshape(len(units), len(seeds), *images[0].shape)
    return stacked, reached


def _as_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images.reshape(-1, *images.shape[-3:])).permute(0, 3, 1, 2).float() / 255


def picture_views(pictures: np.ndarray, judge_name: str) -> torch.Tensor:
    """The judge's features [units, seeds, PICTURE_VIEWS, F] of pictures [units, seeds, H, W,
    3]: each whole, then its quarters (`judge.embed_pictures`)."""
    units, n_seeds = pictures.shape[:2]
    return judge.embed_pictures(_as_tensor(pictures), judge_name).reshape(
        units, n_seeds, judge.PICTURE_VIEWS, -1)


def picture_references(images: np.ndarray, minimised: np.ndarray, judge_name: str) -> list:
    """Per unit, the judge's (E+, E-) from its maximising and minimising pictures
    [units, seeds, H, W, 3]."""
    high, low = picture_views(images, judge_name), picture_views(minimised, judge_name)
    return [(judge.picture_references(high[i]), judge.picture_references(low[i]))
            for i in range(len(images))]


def preset_figures(model: LoadedModel, layers: dict[str, dict], images: dict[str, np.ndarray],
                   minimised: dict[str, np.ndarray], reached: dict[str, list],
                   judge_name: str) -> dict:
    """Every figure of one preset over the units of every layer: the quality figures from
    `metrics.quality_figures`, over all layers at once, and the judge's."""
    pictures = []
    verdicts: dict[str, list] = {query_set: [] for query_set in judge.QUERY_SETS}
    for layer, info in layers.items():
        units = info["units"]
        n_seeds = images[layer].shape[1]
        pictures.append(metrics.Pictures(layer, [u for u in units for _ in range(n_seeds)],
                                         _as_tensor(images[layer]), info["examples"]))
        references = picture_references(images[layer], minimised[layer], judge_name)
        for query_set, found in verdicts.items():
            found.append(judge.mis(info["pool"], units, references, query_set))
    figures = metrics.quality_figures(model, pictures,
                                      reached=[r for layer in layers for r in reached[layer]])
    relative, ranks, alive = (figures["relative_robust_activation"], figures["robust_rank"],
                              figures["alive"])
    beyond = figures["beyond_plain_colour"]
    units_total = sum(len(info["units"]) for info in layers.values())
    return {
        "alive": sum(alive) / len(alive),
        "beyond_plain_colour": sum(beyond) / len(beyond),
        "relative_robust_activation_median": metrics.finite_median(relative),
        "robust_rank_median": statistics.median(ranks),
        "specificity": figures["specificity"],
        "judge": {query_set: pool_verdicts(found, units_total, list(layers))
                  for query_set, found in verdicts.items()},
        "per_image": {"relative_robust_activation": relative, "robust_rank": ranks,
                      "alive": alive, "beyond_plain_colour": beyond},
    }


def mean_and_se(values: Sequence[float]) -> tuple[float, float]:
    """The mean of per-unit values and its standard error over the units (NaN for one)."""
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else float("nan")
    return statistics.mean(values), se


def pool_verdicts(verdicts: list[dict], units_total: int, layers: Sequence[str]) -> dict:
    """Judge figures of several layers (`verdicts`, one per layer of `layers`), weighted by
    their units, with each margin's standard error over the units, and each layer's margins:
    where pictures explain their units less than exemplars do shows layer by layer. Where the
    exemplars were scored on the same tasks, each other kind's score is also paired against
    theirs unit by unit (`{kind}_above_exemplars`, with its standard error)."""
    keys = [k for k, v in verdicts[0].items() if isinstance(v, float)]
    pooled = {k: sum(v[k] * v["units"] for v in verdicts) / units_total for k in keys}
    margins = {kind: [m for v in verdicts for m in v["unit_margins"][kind]]
               for kind in verdicts[0]["unit_margins"]}
    for kind, values in margins.items():
        pooled[f"{kind}_margin_se"] = mean_and_se(values)[1]
    scores = {kind: [x for v in verdicts for x in v["unit_scores"][kind]]
              for kind in verdicts[0].get("unit_scores", {})}
    for kind, values in scores.items():
        if kind != "exemplars" and "exemplars" in scores:
            pooled[f"{kind}_above_exemplars"], pooled[f"{kind}_above_exemplars_se"] = \
                mean_and_se([a - b for a, b in zip(values, scores["exemplars"])])
    by_layer = {layer: {**{f"{kind}_margin": v[f"{kind}_margin"] for kind in v["unit_margins"]},
                        "units": v["units"]}
                for layer, v in zip(layers, verdicts)}
    return {**pooled, "unit_margins": margins, "units": units_total,
            "tasks_per_unit": verdicts[0]["tasks_per_unit"],
            "references": verdicts[0]["references"], "by_layer": by_layer}


GRID_PHOTOS = 3  # the unit's strongest photo views beside its pictures
GRID_TILE = 160  # pixels per picture


def unit_photos(layers: dict[str, dict], count: int = GRID_PHOTOS) -> dict[tuple, list]:
    """(layer, unit) -> the unit's `count` strongest photo views (whole or crop, by its drive),
    as images."""
    from vitviz.data.examples import crop_image

    found = {}
    for layer, info in layers.items():
        examples = info["examples"]
        for unit in info["units"]:
            found[(layer, unit)] = [np.asarray(crop_image(examples.image(e.photo), e.box))
                                    for e in examples.extreme_views(unit, count)]
    return found


def grid_image(per_preset: dict[str, dict[str, np.ndarray]], rows: list[tuple[str, int]],
               tile: int = GRID_TILE, minimised: dict[str, dict[str, np.ndarray]] | None = None,
               photos: dict[tuple, list] | None = None) -> Image.Image:
    """Rows: units (layer, unit). Columns: the unit's strongest photos (when given), then per
    preset its maximising seeds and (when given) its first minimising seed, labelled."""
    presets = list(per_preset)
    first = next(iter(per_preset.values()))
    n_seeds = next(iter(first.values())).shape[1]
    per_block = n_seeds + (1 if minimised else 0)
    blocks = [("photos", GRID_PHOTOS)] * bool(photos) + [(name, per_block) for name in presets]
    gap, header, label = tile // 6, 22, 120
    width = label + sum(count * tile + gap for _, count in blocks)
    canvas = Image.new("RGB", (width, header + len(rows) * tile), "white")
    draw = ImageDraw.Draw(canvas)
    starts, x = {}, label
    for name, count in blocks:
        starts[name] = x
        title = f"{name} (max x{n_seeds}, min)" if name in per_preset and minimised else name
        draw.text((x + 4, 4), title, fill="black")
        x += count * tile + gap

    def paste(image: np.ndarray, left: int, row: int) -> None:
        picture = Image.fromarray(image).resize((tile, tile), Image.Resampling.LANCZOS)
        canvas.paste(picture, (left, header + row * tile))

    index: dict[str, int] = {}
    for r, (layer, unit) in enumerate(rows):
        position = index[layer] = index.get(layer, -1) + 1
        block = layer.split(".")[-3] if layer.count(".") >= 3 else layer
        draw.text((4, header + r * tile + tile // 2 - 12), f"{block}\nunit {unit}", fill="black")
        for i, image in enumerate((photos or {}).get((layer, unit), [])):
            paste(image, starts["photos"] + i * tile, r)
        for name in presets:
            columns = list(per_preset[name][layer][position])
            if minimised:
                columns.append(minimised[name][layer][position, 0])
            for s, image in enumerate(columns):
                paste(image, starts[name] + s * tile, r)
    return canvas


def comparison_grid(found: Comparison, chosen: dict[str, list[int]],
                    tile: int = GRID_TILE) -> bytes:
    """`grid_image` of a comparison as PNG bytes: a row per unit of `chosen` (layer -> units),
    its strongest photos, then every variant's maximising seeds and first minimising seed."""
    rows = [(layer, unit) for layer, units in chosen.items() for unit in units]
    grid = grid_image(found.pictures, rows, tile, found.minimised, unit_photos(found.layers))
    return encode_png(np.asarray(grid))


def _judge_cells(judged: dict, kind: str, baseline: float | None) -> list[str]:
    """Score, its ratio to the exemplars' score, control and margin of one query set."""
    ratio = f"{judged[kind] / baseline:.2f}" if baseline else ""
    return [f"{judged[kind]:.0%}", ratio, f"{judged[f'{kind}_control']:.0%}",
            _margin(judged, kind)]


def summary_rows(summary: dict) -> list[list[str]]:
    """The report table: one row per preset, then the natural exemplars' judge figures."""
    exemplars = summary["exemplars"]
    rows = []
    for name, f in summary["presets"].items():
        s, j = f["specificity"], f["judge"]
        cells = [name, f"{f['alive']:.0%}", f"{f['relative_robust_activation_median']:.2f}",
                 f"{f['robust_rank_median']:.0f}", f"{s['specificity']:.3f}",
                 f"{s['identification']:.0%}"]
        for query_set in judge.QUERY_SETS:
            cells += _judge_cells(j[query_set], "pictures", exemplars[query_set]["exemplars"])
        rows.append(cells)
    cells = ["natural exemplars", "", "", "", "", ""]
    for query_set in judge.QUERY_SETS:
        cells += _judge_cells(exemplars[query_set], "exemplars", None)
    rows.append(cells)
    for name, f in summary["presets"].items():
        if "together" in f["judge"]["standard"]:
            cells = [f"{name} with the exemplars", "", "", "", "", ""]
            for query_set in judge.QUERY_SETS:
                cells += _judge_cells(f["judge"][query_set], "together",
                                      exemplars[query_set]["exemplars"])
            rows.append(cells)
    if summary.get("accentuated"):
        method = summary["accentuated"]["standard"].get("method", "gradient")
        cells = [ACCENTUATION_LABELS[method], "", "", "", "", ""]
        for query_set in judge.QUERY_SETS:
            cells += _judge_cells(summary["accentuated"][query_set], "pictures",
                                  exemplars[query_set]["exemplars"])
        rows.append(cells)
        cells = ["their start photos", "", "", "", "", ""]
        for query_set in judge.QUERY_SETS:
            cells += _judge_cells(summary["accentuated"][query_set]["starts"], "pictures",
                                  exemplars[query_set]["exemplars"])
        rows.append(cells)
    return rows


def _margin(judged: dict, kind: str) -> str:
    se = judged.get(f"{kind}_margin_se", float("nan"))
    return f"{judged[f'{kind}_margin']:+.0%}" + (f" ± {se:.0%}" if math.isfinite(se) else "")


def layer_margin_rows(summary: dict, query_set: str = "standard") -> list[list[str]]:
    """The judge's margin layer by layer for one query set: a header row (layer, each preset,
    the exemplars), then one row per layer."""
    presets, exemplars = summary["presets"], summary["exemplars"][query_set]["by_layer"]
    rows = [[f"judge margin by layer ({query_set})", *presets, "natural exemplars"]]
    for layer, found in exemplars.items():
        cells = [f"{f['judge'][query_set]['by_layer'][layer]['pictures_margin']:+.0%}"
                 for f in presets.values()]
        rows.append([f"{layer} ({found['units']} units)", *cells,
                     f"{found['exemplars_margin']:+.0%}"])
    return rows


HEADERS = ["preset", "alive", "robust act. / photo max", "robust rank", "specificity",
           "identification"] + [
    f"{title} ({short})" for short in ("std", "disjoint")
    for title in ("judge", "÷ exemplars", "control", "margin ± s.e.")]


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def judge_note(summary: dict) -> str:
    """What the judge is, and whether it may be read as a headline."""
    j = summary["judge"]
    kind = ("independent of the visualised model" if j["independent"] else
            "IN-MODEL: it shares weights or training with the visualised model, a diagnostic "
            "only")
    return (f"judge: {j['label']} ({kind}); {j['tasks_per_unit']} tasks per unit, "
            f"{j['references']} maximising and {j['references']} minimising references; "
            f"std: exemplars may come from a query's photo, disjoint: never")


def write_html(out: Path, summary: dict) -> None:
    config = html.escape(json.dumps({k: v for k, v in summary.items()
                                     if k not in ("presets", "exemplars")}, indent=1))
    by_layer = "".join(
        f"<h2>The judge's margin, layer by layer ({query_set})</h2>"
        f"{_html_table(rows[0], rows[1:])}"
        for query_set in judge.QUERY_SETS
        for rows in [layer_margin_rows(summary, query_set)])
    (out / "index.html").write_text(
        "<!doctype html><meta charset='utf-8'><title>vitviz report</title>"
        "<style>body{font-family:sans-serif;max-width:1400px;margin:2em auto}"
        "td,th{padding:4px 10px;border-bottom:1px solid #ddd;text-align:right}</style>"
        f"<h1>vitviz report: {html.escape(summary['model'])}</h1>"
        f"{_html_table(HEADERS, summary_rows(summary))}"
        f"<p>{html.escape(together_line(summary))}</p>"
        f"<p>{html.escape(plain_colour_line(summary))}</p>"
        f"<p>{html.escape(judge_note(summary))}</p>{by_layer}"
        f"<p>Identification chance: {summary['presets'][next(iter(summary['presets']))]['specificity']['chance']:.1%}; "
        f"judge chance: 50%. Photo max and the judge's photos: "
        f"{html.escape(summary['photo_set'])}. Grid: one row per unit; columns are the "
        f"maximising seeds of {html.escape(', '.join(summary['presets']))}, left to right.</p>"
        "<img src='grid.png' style='max-width:100%'>"
        f"<pre>{config}</pre>"
    )


def _print_rows(rows: list[list[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.rjust(width) for cell, width in zip(row, widths)))


def target_lines(summary: dict) -> list[str]:
    """Whether the default's pictures meet the targets against the natural exemplars, per query
    set: at least 0.9 of their score, and a margin at least theirs; and whether accentuated
    exemplars score above the photos they start from, paired over units."""
    default = summary["presets"].get(summary.get("default_preset", DEFAULT_PRESET))
    lines = []
    for query_set in judge.QUERY_SETS:
        natural = summary["exemplars"][query_set]
        checks = []
        if default is not None:
            judged = default["judge"][query_set]
            ratio = judged["pictures"] / natural["exemplars"] if natural["exemplars"] else 0.0
            checks += [f"score {ratio:.2f} of the exemplars' (target 0.9): "
                       f"{'met' if ratio >= 0.9 else 'not met'}",
                       f"margin {judged['pictures_margin']:+.0%} against "
                       f"{natural['exemplars_margin']:+.0%}: "
                       f"{'met' if judged['pictures_margin'] >= natural['exemplars_margin'] else 'not met'}"]
        if summary.get("accentuated"):
            accented = summary["accentuated"][query_set]
            above, se = accented["above_starts"], accented["above_starts_se"]
            # Within two standard errors the sign is noise: say so rather than call it.
            noise = ", within its noise" if math.isfinite(se) and abs(above) < 2 * se else ""
            checks.append(f"accentuated {accented['pictures']:.0%} against the "
                          f"{accented['starts']['pictures']:.0%} of the photos they start from "
                          f"(paired over units: {above:+.0%}"
                          + (f" ± {se:.0%}" if math.isfinite(se) else "") + "): "
                          f"{'above' if above > 0 else 'not above'}{noise}")
        if checks:  # a sweep without the default and without accentuation has none
            lines.append(f"targets ({query_set}): " + "; ".join(checks))
    return lines


def plain_colour_line(summary: dict) -> str:
    """How many of each preset's pictures drive their unit past a plain colour of the unit's
    strongest photos (vitviz.quality.plain_colour): one that does not has not found what the
    unit wants, whatever its multiple of the photo maximum."""
    shares = ", ".join(f"{name} {found['beyond_plain_colour']:.0%}"
                       for name, found in summary["presets"].items())
    return f"pictures past a plain colour of their unit's strongest photos: {shares}"


def together_line(summary: dict) -> str:
    """What each preset's pictures add to the natural exemplars a person sees beside them: the
    judge's score with both as references less its score with the exemplars alone, paired
    over units, per query set."""
    def added(judged: dict) -> str:
        se = judged["together_above_exemplars_se"]
        return (f"{judged['together_above_exemplars']:+.0%}"
                + (f" ± {se:.0%}" if math.isfinite(se) else ""))

    shares = "; ".join(
        f"{name} " + ", ".join(f"{added(found['judge'][query_set])} {query_set.replace('_', '-')}"
                               for query_set in judge.QUERY_SETS)
        for name, found in summary["presets"].items()
        if "together_above_exemplars" in found["judge"]["standard"])
    return f"pictures beside the natural exemplars, above the exemplars alone: {shares}"


def print_table(summary: dict) -> None:
    _print_rows([HEADERS] + summary_rows(summary))
    print(together_line(summary))
    print(plain_colour_line(summary))
    for line in target_lines(summary):
        print(line)
    print(judge_note(summary))
    print(f"photo max and the judge's photos: {summary['photo_set']}")
    for query_set in judge.QUERY_SETS:
        print()
        _print_rows(layer_margin_rows(summary, query_set))


@dataclass
class Comparison:
    """Variants of the optimisation compared on the same units: their pictures and figures."""

    layers: dict[str, dict]  # layer -> units, the judge's pool, the photo set, unit maxima
    pictures: dict[str, dict[str, np.ndarray]]  # variant -> layer -> [units, seeds, H, W, 3]
    minimised: dict[str, dict[str, np.ndarray]]  # the same, of the minimising pictures
    figures: dict[str, dict]  # variant -> preset_figures
    exemplars: dict  # query set -> the judge's figures for natural exemplars
    # query set -> the judge's figures with accentuated exemplars as references (when asked),
    # and under "method" how they were made (`accentuate.METHODS`)
    accentuated: dict | None = None


def compare(model: LoadedModel, layer_units: dict[str, list[int]],
            variants: dict[str, tuple[str, dict]], seeds: Sequence[int],
            cache: ResultCache | None, judge_name: str,
            units_per_run: int = UNITS_PER_RUN,
            accentuated: tuple[str, dict] | None = None,
            accentuate_by: str = "picture") -> Comparison:
    """Run every variant (a preset name and knob overrides) on every unit, and measure each;
    with `accentuated` (a preset and overrides), judge accentuated exemplars too, made by
    `accentuate_by` (`accentuate.METHODS`): mixed with that preset's pictures, or its run
    started from each photo."""
    from vitviz.data.photo_sets import examples_for

    if accentuate_by not in accentuate.METHODS:
        raise UserError(f"accentuated exemplars are made by one of "
                        f"{', '.join(accentuate.METHODS)} (got {accentuate_by!r})")
    layers: dict[str, dict] = {}
    for layer, units in layer_units.items():
        # The configured set (the built-in one, or the index of $VITVIZ_PHOTOS) gives the
        # photo maximum and the judge's queries and exemplars.
        examples = examples_for(model, layer)
        layers[layer] = {"units": units, "pool": judge.pool_for(examples, judge_name),
                         "photo_set": examples.label, "examples": examples,
                         "unit_max": [examples.unit_max(u) for u in units]}
    pictures, minimised, figures = {}, {}, {}
    for label, (preset, overrides) in variants.items():
        images, lowest, reached = {}, {}, {}
        for layer, info in layers.items():
            images[layer], reached[layer] = run_preset(model, layer, info["units"], seeds,
                                                       preset, overrides, cache, label,
                                                       units_per_run)
            lowest[layer], _ = run_preset(model, layer, info["units"], seeds, preset,
                                          overrides, cache, label, units_per_run, minimise=True)
        pictures[label], minimised[label] = images, lowest
        figures[label] = preset_figures(model, layers, images, lowest, reached, judge_name)
    units_total = sum(len(units) for units in layer_units.values())
    exemplars = {query_set: pool_verdicts([judge.mis(info["pool"], info["units"],
                                                     query_set=query_set)
                                           for info in layers.values()],
                                          units_total, list(layers))
                 for query_set in judge.QUERY_SETS}
    judged = None
    if accentuated:
        if accentuate_by == "picture":
            # The variant's pictures where the comparison drew them, else drawn (or read) here.
            drawn = next((label for label, variant in variants.items()
                          if variant == accentuated), None)
            references, shares = {}, []
            for layer, info in layers.items():
                both = ((pictures[drawn][layer], minimised[drawn][layer]) if drawn else
                        tuple(run_preset(model, layer, info["units"], seeds, *accentuated, cache,
                                         units_per_run=units_per_run, minimise=minimise)[0]
                              for minimise in (False, True)))
                references[layer], unit_shares = mixed_references(model, layer, info,
                                                                  judge_name, both)
                shares += unit_shares
        else:
            references = {layer: accentuated_references(model, layer, info, cache,
                                                        judge_name, accentuated)
                          for layer, info in layers.items()}
        judged = {query_set: {**accentuated_verdicts(layers, references, query_set, units_total),
                              "method": accentuate_by}
                  for query_set in judge.QUERY_SETS}
        if accentuate_by == "picture":
            for found in judged.values():
                found["shares"] = share_summary(shares)
    return Comparison(layers, pictures, minimised, figures, exemplars, judged)


def accentuated_verdicts(layers: dict[str, dict], references: dict[str, list], query_set: str,
                         units_total: int) -> dict:
    """The judge's figures for accentuated exemplars in one query set, and under "starts" the
    same figures for the photos they start from, with the paired difference of their scores
    over units ("above_starts" and its standard error).

    The photos they start from are the like-for-like baseline in both query sets. The standard
    set's natural exemplars may be crops of a query's own photo, which no accentuated exemplar
    starts from; in the photo-disjoint set the start photos are its natural exemplars. Both
    controls keep only what the query set's natural exemplars could be
    (`judge.control_references`): another unit's start photos may be this unit's queries."""
    found, starts = [], []
    for layer, info in layers.items():
        pool = info["pool"]
        # Each accentuated exemplar's row is the view it starts from (`accentuated_references`).
        origins = [disjoint_exemplars(pool, unit, judge.REFERENCES) for unit in info["units"]]
        plain = [tuple(pool.features(keys) for keys in sides) for sides in origins]
        found.append(judge.mis(pool, info["units"], references[layer], query_set,
                               origins=origins))
        starts.append(judge.mis(pool, info["units"], plain, query_set, origins=origins))
    differences = [a - b for made, plain in zip(found, starts)
                   for a, b in zip(made["unit_scores"]["pictures"],
                                   plain["unit_scores"]["pictures"])]
    pooled = pool_verdicts(found, units_total, list(layers))
    pooled["starts"] = pool_verdicts(starts, units_total, list(layers))
    pooled["above_starts"], pooled["above_starts_se"] = mean_and_se(differences)
    return pooled


def accentuated_references(model: LoadedModel, layer: str, info: dict,
                           cache: ResultCache | None, judge_name: str,
                           variant: tuple[str, dict]) -> list:
    """Per unit, the judge's (E+, E-): each view of `disjoint_exemplars` accentuated
    (`judge.REFERENCES` a side), made with the preset and overrides of `variant`: the
    photo-disjoint natural references, each changed only as much as it takes to drive the unit
    harder (or, on the E- side, lower). `accentuated_verdicts` judges them beside those photos."""
    preset, overrides = variant
    resolved = resolve_preset(preset, **overrides)
    with tqdm(total=resolved.steps * 2 * len(info["units"]), desc=f"accentuated {layer}",
              unit="step", file=sys.stderr) as bar:
        found = []
        for unit in info["units"]:
            sides = []
            for minimise, ranks in zip((False, True), exemplar_ranks(
                    info["pool"], unit, judge.REFERENCES)):
                # A drive cap reads the unit's photo-disjoint natural exemplars by default: the
                # same views the pictures start from.
                images = [run.images[0] for run in accentuated_batch(
                    model, layer, unit, ranks, minimise, preset, overrides, cache, bar)]
                sides.append(judge.picture_references(
                    judge.embed_pictures(_as_tensor(np.stack(images)), judge_name)))
            found.append(tuple(sides))
    return found


def mixed_references(model: LoadedModel, layer: str, info: dict, judge_name: str,
                     pictures: tuple[np.ndarray, np.ndarray]) -> tuple[list, list]:
    """Per unit, the judge's (E+, E-): each view of `disjoint_exemplars` mixed with the unit's
    `pictures` (maximising, minimising: [units, seeds, H, W, 3]; maximising ones on the E+
    side) as little as it takes to drive the unit as hard as its most extreme view
    (`picture_mix.accentuated`); and per unit, (E+ shares, E- shares)."""
    up, down = pictures
    found, shares = [], []
    for i, unit in enumerate(info["units"]):
        made = [picture_mix.unit_exemplars(model, layer, unit, info["examples"],
                                           _as_tensor(side[i]), minimise)
                for minimise, side in ((False, up), (True, down))]
        found.append(tuple(judge.embed(side.images, judge_name) for side in made))
        shares.append(tuple(side.shares for side in made))
    return found, shares


def share_summary(shares: list[tuple[list, list]]) -> dict:
    """How much of the pictures the mixed exemplars took, per side: the mean share and the
    part of exemplars left as their photos (no share moved the unit their way)."""
    found = {}
    for side, name in enumerate(("high", "low")):
        values = [share for unit in shares for share in unit[side]]
        found[name] = {"mean_share": statistics.fmean(values),
                       "unchanged": sum(share == 0 for share in values) / len(values)}
    return found


def accentuated_batch(model: LoadedModel, layer: str, unit: int, ranks: Sequence[int],
                      minimise: bool, preset: str, overrides: dict, cache: ResultCache | None,
                      bar=None) -> list[Result]:
    """The accentuated exemplars of `unit` from its views of `ranks`, one single-picture run
    each (its step-0 picture is the photo: `vitviz.analysis.accentuation`): the missing ones
    computed in one batch (items are independent, so each is stored under the key
    of its own single run, as a page or `run --accentuate` would ask for it)."""
    objective = objectives.neuron(layer, unit).spec()
    singles = [RunRequest(model.registry_name, objective, (0,), preset, overrides,
                          minimise=minimise, accentuate=rank) for rank in ranks]
    found = {i: cache.get(request.key()) if cache else None for i, request in enumerate(singles)}
    missing = [i for i, result in found.items() if result is None]
    if missing:
        batch = RunRequest(model.registry_name, objective, (0,) * len(missing), preset,
                           overrides, minimise=minimise,
                           accentuate=tuple(ranks[i] for i in missing))
        computed = compute_batch(model, batch, lambda record, n: bar.update(1)
                                 if bar is not None and record.loss is not None else None)
        for item, i in enumerate(missing):
            found[i] = item_result(computed, item, singles[i])
            if cache:
                cache.put(singles[i].key(), found[i])
    elif bar is not None:
        bar.update(resolve_preset(preset, **overrides).steps)
    return [found[i] for i in range(len(singles))]


MAX_SEEDS = 64  # seeds per unit
TILES = (16, 1024)  # pixels per picture in grid.png


def check_settings(seeds: int, presets: Sequence[str], judge_name: str | None,
                   steps: int | None = None, tile: int | None = None) -> None:
    """The checks that need no model: made before anything is loaded or allocated."""
    unknown = [p for p in presets if p not in PRESETS]
    if unknown:
        raise UserError(f"unknown presets {unknown}: use some of {', '.join(PRESETS)}")
    if seeds < 2:
        raise UserError("the report needs at least 2 seeds per unit (--seeds 2): "
                         "specificity compares two seeds' pictures of each unit")
    if seeds > MAX_SEEDS:
        raise UserError(f"the report takes at most {MAX_SEEDS} seeds per unit (got {seeds})")
    if tile is not None and not TILES[0] <= tile <= TILES[1]:
        raise UserError(f"--tile must be {TILES[0]} to {TILES[1]} px (got {tile})")
    for preset in presets:  # steps 0 is refused, never replaced by the preset's own
        resolve_preset(preset, **({"steps": steps} if steps is not None else {})).check()
    if judge_name is not None:
        judge.get_judge(judge_name)


def judge_summary(judge_name: str, model_name: str) -> dict:
    """What report.json says of its judge: its network (`model`) and whether it is
    independent of the visualised model (else an in-model diagnostic)."""
    spec = judge.get_judge(judge_name)
    return {"name": judge_name, "model": spec.model, "layer": spec.layer,
            "label": spec.label, "independent": judge.is_independent(judge_name, model_name),
            "tasks_per_unit": judge.TASKS, "references": judge.REFERENCES,
            "query_sets": list(judge.QUERY_SETS)}


def layer_units(model: LoadedModel, layers: Sequence[str], units: str,
                unit_seed: int) -> dict[str, list[int]]:
    """The units of each layer, checked against the model before any run."""
    chosen = {layer: choose_units(units, find_layer(model, layer).units, layer, unit_seed)
              for layer in dict.fromkeys(layers)}
    if sum(len(v) for v in chosen.values()) < 2:
        raise UserError("the report needs at least 2 units in all (specificity and the judge "
                         "compare units with each other)")
    return chosen


def main(args) -> int:
    presets = list(dict.fromkeys(args.presets))
    check_settings(args.seeds, presets, args.judge, args.steps, args.tile)
    model = load_model(args.model or default_model()[0], args.device, args.compile)
    chosen = layer_units(model, args.layers, args.units, args.unit_seed)
    out = writable_folder(Path(args.out))  # checked now, made when there is a report to write
    overrides = {"steps": args.steps} if args.steps is not None else {}
    cache = ResultCache(writable_folder(args.cache)) if args.cache else ResultCache()
    seeds = list(range(args.seeds))
    judge_name = args.judge or judge.independent_judge(model.registry_name)
    judged = judge_summary(judge_name, model.registry_name)
    if not judged["independent"]:
        print(f"warning: the judge {judged['model']} shares weights or training with "
              f"{model.registry_name}: its figures are an in-model diagnostic, not a measure "
              "of what a viewer can read", file=sys.stderr)
    found = compare(model, chosen, {p: (p, overrides) for p in presets}, seeds, cache,
                    judge_name, accentuated=(DEFAULT_PRESET, overrides)
                    if args.accentuated else None,
                    accentuate_by=args.accentuated or accentuate.METHODS[0])
    summary = {
        "model": model.label, "model_metadata": model.metadata(),
        "layers": chosen,
        "seeds": seeds, "steps": args.steps or {p: PRESETS[p].steps for p in presets},
        # The arithmetic of the runs made here ("auto" resolved on this device).
        "device": str(model.device),
        "precision": {p: resolve_precision(PRESETS[p].precision, model.device) for p in presets},
        "judge": judged,
        "specificity_model": metrics.FEATURE_MODEL,
        "unit_max_over_photos": {layer: info["unit_max"] for layer, info in found.layers.items()},
        "photo_set": next(iter(found.layers.values()))["photo_set"],
        "default_preset": DEFAULT_PRESET,
        "presets": found.figures,
        "exemplars": found.exemplars,
        **({"accentuated": found.accentuated} if found.accentuated else {}),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(summary, indent=1))
    (out / "grid.png").write_bytes(comparison_grid(found, chosen, args.tile))
    write_html(out, summary)
    print_table(summary)
    print(out / "index.html")
    return 0
