"""A static site of an atlas: an index grid and one page per unit, from the result cache.

    python -m vitviz export-atlas --model dinov2_vits14 \\
        --layer encoder.layers.encoder_layer_6.mlp.1 --out site/

It reads the cached single-unit runs that `vitviz atlas` (or the Atlas page) stored and writes
plain files any static host serves: no Python, no GPU and no network at view time. Everything
a page needs is in the folder (no scripts or fonts from elsewhere), and the index's data is
inlined, so the site also works opened from disk.

    index.html              every unit's thumbnail; sort by unit, activation or robust
                            activation; show all, computed or missing units
    unit/<unit>.html        the unit's page (a stable URL): its picture, how it formed, the
                            activation curve, the quality figures and the run's full config
    unit/<unit>.json        the run's config, curves and figures (Result.to_json)
    img/<unit>.png          the picture with its config embedded; thumb/<unit>.png a
                            thumbnail; steps/<unit>_<step>.png the picture as it formed

Several layers (`export_layers`): index.html lists the layers, each layer's site as above in
layers/<layer>/, whose index links to the other layers.
"""
from __future__ import annotations

import html
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image

from vitviz.errors import UserError
from vitviz.rendering.presets import DEFAULT_PRESET
from vitviz.store.cache import ResultCache
from vitviz.store.results import Result
from vitviz.quality.judge import QUERY_SETS
from vitviz.quality.reading import STORED
from vitviz.surveys.atlas import stored_figure, unit_request

THUMB = 160


class AtlasNotComputed(UserError):
    """No unit of the atlas asked for is in the cache: an empty site is never written."""

STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5rem;color:#222;background:#fafafa}
a{color:#1f5fbf}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(170px,1fr));gap:.6rem}
.cell{background:#fff;border:1px solid #ddd;border-radius:6px;padding:5px;font-size:.8rem}
.cell img{width:100%;display:block;border-radius:4px}
.missing{height:160px;display:flex;align-items:center;justify-content:center;color:#888}
table{border-collapse:collapse}td,th{padding:.2rem .6rem;border-bottom:1px solid #ddd;text-align:left}
.strip img{width:112px;margin-right:4px}
pre{background:#fff;border:1px solid #ddd;padding:.6rem;overflow:auto;font-size:.75rem}
"""


def _page(title: str, body: str) -> str:
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8>"
            f"<meta name=viewport content='width=device-width,initial-scale=1'>"
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>"
            f"<body>{body}</body></html>\n")


def _write(path: Path, data: bytes | str) -> None:
    """Whole files only: a reader (a web server mid-export) never sees half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode() if isinstance(data, str) else data
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(handle, "wb") as out:
        out.write(raw)
    os.replace(temporary, path)


def _png(pixels: np.ndarray, side: int | None = None) -> bytes:
    image = Image.fromarray(pixels)
    if side:
        image = image.resize((side, side), Image.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _curve_svg(values: Sequence[float], width: int = 480, height: int = 160) -> str:
    """The activation over steps as an inline SVG polyline (no plotting library at view time)."""
    if len(values) < 2:
        return ""
    low, high = min(values), max(values)
    span = high - low or 1.0
    points = " ".join(f"{i * width / (len(values) - 1):.1f},{height - (v - low) / span * height:.1f}"
                      for i, v in enumerate(values))
    return (f"<svg width={width + 60} height={height + 30} role=img "
            f"aria-label='activation over steps'><g transform='translate(50,10)'>"
            f"<rect width={width} height={height} fill=#fff stroke=#ccc />"
            f"<polyline fill=none stroke=#1f5fbf stroke-width=2 points='{points}' />"
            f"<text x=-6 y=10 text-anchor=end font-size=11>{high:.3g}</text>"
            f"<text x=-6 y={height} text-anchor=end font-size=11>{low:.3g}</text>"
            f"<text x={width / 2} y={height + 18} text-anchor=middle font-size=11>"
            f"step (0 to {len(values) - 1})</text></g></svg>")


def _unit_nav(units: list[int], at: int) -> str:
    """Links from the page of `units[at]` to the index and to its neighbours in `units`."""
    return " · ".join(
        ["<a href='../index.html'>all units</a>"]
        + ([f"<a href='{units[at - 1]}.html'>&larr; unit {units[at - 1]}</a>"] if at else [])
        + ([f"<a href='{units[at + 1]}.html'>unit {units[at + 1]} &rarr;</a>"]
           if at + 1 < len(units) else []))


def _unit_page(result: Result, unit: int, units: list[int], at: int, title: str) -> str:
    """Unit `unit`'s page; it is `units[at]`, and links to its neighbours there."""
    nav = _unit_nav(units, at)
    rows = [("final activation", f"{result.activation[0][-1]:.4g}")]
    for name, label, form in (
            ("relative_robust_activation", "robust activation (x the unit's photo maximum)",
             "{:.3g}x"),
            ("robust_activation", "robust activation (over shifted and zoomed views)", "{:.4g}"),
            ("robust_rank", "robust rank among the layer's units (1 = most specific)", "{:.0f}"),
            ("relative_plain_colour",
             "a plain colour of its strongest photos (x the unit's photo maximum)", "{:.3g}x"),
            ("plain_colour", "a plain colour of its strongest (weakest) photos", "{:.4g}"),
            ("unit_max_over_photos", "the unit's maximum over the photo set", "{:.4g}")):
        value = stored_figure(result, name)
        if value is not None:
            rows.append((label, form.format(value)))
    # Units stored at different times may have been measured on different photo sets (a run
    # that reads no photos keeps its key when the set changes): each page names its own.
    if isinstance(result.metrics.get("photo_set"), str):
        rows.append(("photo set of these figures", result.metrics["photo_set"]))
    rows += _reading_rows(result.metrics.get(STORED))
    table = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    strip = "".join(
        f"<figure style='display:inline-block;margin:0'><img src='../steps/{unit}_{step}.png' "
        f"alt='step {step}'><figcaption>step {step}</figcaption></figure>"
        for step in sorted(result.checkpoints))
    config = html.escape(json.dumps(result.config, indent=1))
    return _page(f"{title}: unit {unit}", (
        f"<p>{nav}</p><h1>unit {unit}</h1><p>{html.escape(title)}</p>"
        f"<img src='../img/{unit}.png' alt='unit {unit}' width=448 style='max-width:100%'>"
        f"<h2>Figures</h2><table>{table}</table>"
        f"<h2>How it formed</h2><div class=strip>{strip}</div>"
        f"<h2>Activation over steps</h2>{_curve_svg(result.activation[0])}"
        f"<h2>Config</h2><p><a href='{unit}.json'>config, curves and figures (JSON)</a></p>"
        f"<pre>{config}</pre>"))


def _reading_rows(found: dict | None) -> list[tuple[str, str]]:
    """The judge's reading of the unit (vitviz.quality.reading), where `vitviz atlas --judge`
    stored one: per query set, the tasks won with its pictures, with its photos, and with
    both together (readings stored before 2026-12-07 have no such figure)."""
    if not found:
        return []
    who = found["judge"]["model"] + (", in-model" if found["judge"]["in_model"] else "")
    kinds = {"pictures": "its pictures up and down", "exemplars": "its photos",
             "together": "both"}
    kinds = {kind: label for kind, label in kinds.items() if kind in found["standard"]}
    return [(f"independent judge ({who}), {query_set.replace('_', '-')} queries: "
             f"{' / '.join(kinds.values())} (chance 50%, ±{100 * found['noise']:.0f})",
             " / ".join(f"{100 * found[query_set][kind]:.0f}%" for kind in kinds))
            for query_set in QUERY_SETS] + [("photo set of the judge's reading",
                                             found["photo_set"])]


_INDEX_SCRIPT = """
const cells = DATA.map(d => {
  const div = document.createElement('div'); div.className = 'cell';
  div.innerHTML = d.computed
    ? `<a href="unit/${d.unit}.html"><img src="thumb/${d.unit}.png" alt="unit ${d.unit}"></a>`
      + `<a href="unit/${d.unit}.html">#${d.unit}</a> · <span class=fig></span>`
    : `<div class=missing>not computed</div>#${d.unit}`;
  return [d, div];
});
function label(d, order) {
  if (order === 'robust') return d.robust === null ? '–' : d.robust.toPrecision(2) + 'x';
  if (order === 'judge')
    return d.judge === null ? '–' : 'judge ' + Math.round(100 * d.judge) + '%';
  return d.activation === null ? '–' : d.activation.toPrecision(2);
}
function draw() {
  const order = document.getElementById('order').value;
  const show = document.getElementById('show').value;
  const key = d => order === 'unit' ? d.unit
    : (d[order] === null ? Infinity : -d[order]);
  const grid = document.getElementById('grid'); grid.replaceChildren();
  cells.filter(([d]) => show === 'all' || d.computed === (show === 'computed'))
    .sort(([a], [b]) => {
      const ka = key(a), kb = key(b);
      return ka === kb ? a.unit - b.unit : (ka < kb ? -1 : 1);
    })
    .forEach(([d, div]) => {
      const fig = div.querySelector('.fig'); if (fig) fig.textContent = label(d, order);
      grid.appendChild(div);
    });
  document.getElementById('count').textContent = grid.children.length + ' shown';
}
document.getElementById('order').onchange = draw;
document.getElementById('show').onchange = draw;
draw();
"""


def export_atlas(model_name: str, layer: str, units: Sequence[int], cache: ResultCache,
                 out: str | Path, *, seed: int = 0, preset: str = DEFAULT_PRESET,
                 steps: int | None = None, tokens: str | int = "patch",
                 minimise: bool = False, nav: str = "",
                 progress: Callable[[int], object] | None = None) -> dict:
    """Write the site for `units` of `layer` into `out`; returns counts of units written and
    missing. Units not in the cache are listed as not computed; when none is there, nothing
    is written (AtlasNotComputed). With `minimise`, the site of the atlas of what suppresses
    each unit. `nav`: HTML put under the title (links to the other layers). `progress(n)`
    is told of each `n` units done, written or found missing."""
    out = Path(out)
    units = list(units)
    if not units:
        raise UserError("an atlas site needs at least one unit")
    title = f"{model_name} · {layer}"
    keys = {unit: unit_request(model_name, layer, unit, seed, preset, steps, tokens,
                               minimise).key() for unit in units}
    # Which units are there is asked first without reading them, so that each unit's page can
    # link its neighbours while the results themselves are read, written and let go one at a
    # time: a whole layer's results (about 5 MB each in memory) would not fit at once.
    computed = [unit for unit in units if keys[unit] in cache]
    if not computed:
        raise AtlasNotComputed(
            f"none of the {len(units)} units of {layer} asked for is in the result cache "
            f"{cache.path} with these settings: `python -m vitviz atlas` with the same model, "
            f"layer, units, preset, steps and seed computes them (nothing was written)")
    rows = {unit: {"unit": unit, "computed": False, "activation": None, "robust": None,
                   "judge": None} for unit in units}
    tell = progress or (lambda done: None)
    tell(len(units) - len(computed))
    steps_used = steps
    for at, unit in enumerate(computed):
        result = cache.get(keys[unit])
        if result is None:
            # Evicted, or found unreadable (and dropped) since the first look: a page that
            # says so keeps its neighbours' links whole.
            _write(out / "unit" / f"{unit}.html", _page(f"{title}: unit {unit}", (
                f"<p>{_unit_nav(computed, at)}</p><h1>unit {unit}</h1><p>Not in the result "
                "cache when this site was written: <code>python -m vitviz atlas</code> with "
                "the same settings computes it again.</p>")))
            tell(1)
            continue
        found = result.metrics.get(STORED)
        rows[unit].update(computed=True, activation=float(result.activation[0][-1]),
                          robust=stored_figure(result, "relative_robust_activation"),
                          judge=found["photo_disjoint"]["pictures"] if found else None)
        steps_used = result.steps[-1]
        _write(out / "img" / f"{unit}.png", result.png(0))
        _write(out / "thumb" / f"{unit}.png", _png(result.images[0], THUMB))
        for step, images in result.checkpoints.items():
            _write(out / "steps" / f"{unit}_{step}.png", _png(images[0], 112))
        _write(out / "unit" / f"{unit}.json", json.dumps(result.to_json(), indent=1))
        _write(out / "unit" / f"{unit}.html", _unit_page(result, unit, computed, at, title))
        tell(1)
    written = sum(row["computed"] for row in rows.values())
    controls = (
        "<label>Order <select id=order><option value=unit>unit</option>"
        "<option value=activation>activation</option>"
        "<option value=robust>robust activation (x photo max)</option>"
        "<option value=judge>independent judge (photo-disjoint)</option></select></label> "
        "<label>Show <select id=show><option value=all>all units</option>"
        "<option value=computed>computed units</option>"
        "<option value=missing>units not computed</option></select></label> "
        "<span id=count></span>")
    # "<\\/" keeps a "</" in the data from ending the script element early.
    data = json.dumps(list(rows.values())).replace("</", "<\\/")
    _write(out / "index.html", _page(f"Atlas: {title}", (
        f"<h1>Atlas: {html.escape(title)}</h1>{nav}"
        f"<p>{written} of {len(units)} units visualised with vitviz's "
        f"<code>{html.escape(preset)}</code> preset, {steps_used} steps, seed {seed}. "
        "Robust activation is the unit's activation over shifted and zoomed views of the "
        "picture, as a multiple of its maximum over the photo set: a figure adversarial noise "
        "cannot win. The independent judge's reading, where <code>vitviz atlas --judge</code> "
        "stored one, is the share of 20 tasks (which of two photos drives the unit more?) that "
        "a network sharing nothing with the model wins from the unit's pictures driven up and "
        "down; chance is 50%.</p>"
        f"<p>{controls}</p><div id=grid class=grid></div>"
        f"<script>const DATA = {data};{_INDEX_SCRIPT}</script>")))
    return {"units": len(units), "computed": written, "missing": len(units) - written}


def layer_folder(layer: str) -> str:
    """A layer's folder in a site of several layers (module names are safe file names)."""
    return f"layers/{layer}"


def export_layers(model_name: str, plan: dict[str, Sequence[int]], cache: ResultCache,
                  out: str | Path, **settings) -> dict[str, dict]:
    """The site of an atlas of several layers (`plan`: layer -> units): each layer's site in
    its own folder, an index of the layers at the top, and on each layer's index links to the
    others. One layer: `export_atlas`'s site as it is. A layer with no unit computed is listed
    as such; when no layer has one, nothing is written (AtlasNotComputed). Returns each
    layer's counts."""
    out = Path(out)
    if len(plan) == 1:
        (layer, units), = plan.items()
        return {layer: export_atlas(model_name, layer, units, cache, out, **settings)}
    counts: dict[str, dict] = {}
    skipped = 0  # units of layers with none computed, told once a layer has been written
    for layer, units in plan.items():
        others = " · ".join(
            html.escape(other) if other == layer else
            f"<a href='../../{layer_folder(other)}/index.html'>{html.escape(other)}</a>"
            for other in plan)
        nav = f"<p><a href='../../index.html'>All layers</a>: {others}</p>"
        try:
            counts[layer] = export_atlas(model_name, layer, units, cache,
                                         out / layer_folder(layer), nav=nav, **settings)
        except AtlasNotComputed:
            counts[layer] = {"units": len(units), "computed": 0, "missing": len(units)}
            skipped += len(units)
    if not any(count["computed"] for count in counts.values()):
        raise AtlasNotComputed(
            f"none of the units of the {len(plan)} layers asked for is in the result cache "
            f"{cache.path} with these settings: `python -m vitviz atlas` with the same model, "
            "layers, units, preset, steps and seed computes them (nothing was written)")
    if skipped and settings.get("progress"):
        settings["progress"](skipped)

    def row(layer: str, count: dict) -> str:
        name = html.escape(layer)
        if count["computed"]:
            name = f"<a href='{layer_folder(layer)}/index.html'>{name}</a>"
        return f"<tr><td>{name}</td><td>{count['computed']} of {count['units']}</td></tr>"

    rows = "".join(row(layer, count) for layer, count in counts.items())
    _write(out / "index.html", _page(f"Atlas: {model_name}", (
        f"<h1>Atlas: {html.escape(model_name)}</h1><p>{len(plan)} layers; each links to its "
        f"units.</p><table><tr><th>layer</th><th>units visualised</th></tr>{rows}</table>")))
    return counts
