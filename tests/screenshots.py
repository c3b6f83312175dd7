"""One screenshot per dashboard page, for docs/screenshots/.

    PYTHONPATH=. .venv/bin/python tests/screenshots.py [--model dinov2_vits14] [--steps 64]
        [--only dataset_examples ...]

Starts `streamlit run app.py` on its own cache (kept in tests/artifacts/, so a second call
serves every run from it and only retakes the pictures), runs each page's default run in
Debian's Chromium, and saves 1280 px wide PNGs reduced to a 256-colour palette.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from PIL import Image

from test_browser import (
    ARTIFACTS,
    ROOT,
    browser_missing,
    chromium_page,
    full_page_screenshot,
    page_url,
    streamlit_server,
)

MAX_BYTES = 200_000
# Buttons that start work: "Run ...", and the Dataset examples page's three steps (measure the
# photos, visualise, ask the judge). Not "Delete this run".
RUN_BUTTON = re.compile(r"^(Run|Find the examples|Visualise|Ask an independent judge)\b")
POLL_MS = 2000
RUN_TIMEOUT_MS = 45 * 60 * 1000  # a few minutes per run on a 2-core CPU, with room to spare


def shots(model: str, steps: int) -> list[tuple[str, str, dict, str, int]]:
    """(file name, page path, query parameters, text that marks the page as done, its count)."""
    common = {"model": model, "unit": 7, "steps": steps}
    # Home comes last, so that its cache figures count the runs made for the other pages.
    return [
        ("optimise", "Optimise", {**common, "preset": "robust"}, "steps in", 1),
        ("compare_seeds", "Compare_seeds", {**common, "preset": "robust", "preset2": "naive",
                                            "seeds": 3}, "Activation over steps", 1),
        ("moving_target", "Moving_target", common, "Moved context", 3),
        ("dataset_examples", "Dataset_examples", common, "Judge: ", 1),
        ("runs", "Runs", {}, "JSON · config and curves", 1),
        ("home", "", {}, "Default model", 1),
    ]


def compress(path: Path) -> int:
    image = Image.open(path).convert("RGB")
    for colours in (256, 128, 64):
        image.quantize(colours, method=Image.Quantize.FASTOCTREE).save(path, optimize=True)
        if path.stat().st_size <= MAX_BYTES:
            break
    return path.stat().st_size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="dinov2_vits14")
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--cache", type=Path, default=ARTIFACTS / "screenshot-cache")
    parser.add_argument("--only", nargs="+", metavar="NAME",
                        help="retake only these (file names without .png)")
    args = parser.parse_args()
    missing = browser_missing()
    if missing:
        print(f"cannot take screenshots: {missing}", file=sys.stderr)
        return 1
    env = {"VITVIZ_MODEL": args.model, "VITVIZ_CACHE_DIR": str(args.cache)}
    with streamlit_server(env, ARTIFACTS / "screenshots.log") as base, chromium_page() as page:
        for name, path, params, done, count in shots(args.model, args.steps):
            if args.only and name not in args.only:
                continue
            page.set_viewport_size({"width": 1280, "height": 900})
            page.goto(page_url(base, path, params) if params else f"{base}/{path}")
            page.get_by_text(done).or_(page.get_by_role("button", name=RUN_BUTTON)).first.wait_for(
                timeout=120_000)
            clicked: set[str] = set()  # each button once: a page may need two (examples)
            for _ in range(RUN_TIMEOUT_MS // POLL_MS):
                if page.evaluate("([text, n]) => document.body.innerText.split(text).length > n",
                                 [done, count]):
                    break
                buttons = page.get_by_role("button", name=RUN_BUTTON)
                for i in range(buttons.count()):
                    label = buttons.nth(i).inner_text()
                    if label not in clicked and buttons.nth(i).is_enabled():
                        clicked.add(label)
                        buttons.nth(i).click()
                        break
                page.wait_for_timeout(POLL_MS)
            else:
                raise TimeoutError(f"{name}: '{done}' did not appear {count} times")
            # Shown as a link shows it, from the cache: without the buttons just clicked.
            page.reload()
            page.get_by_text(done).first.wait_for(timeout=120_000)
            page.wait_for_timeout(1500)  # plotly draws after the element arrives
            target = args.out / f"{name}.png"
            full_page_screenshot(page, target)
            print(f"{target}: {compress(target) // 1000} kB  {page.url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
