"""The room and the encoding time of a stored run: the archive vitviz writes now against a PNG
for every picture and checkpoint (what archive format 1 stored), on runs already in a cache
(not a test).

    python bench/archive_size.py --cache CACHE --runs 20

For each of up to --runs stored results, one after the other so that drift hits both: the
archive as `Result.to_archive` writes it, and the PNGs of the final pictures and of every
checkpoint. Prints the mean size and encoding time of each and their ratios. Run it alone: on
2 cores another process shares the encoder's core.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from vitviz.store.cache import ResultCache
from vitviz.store.results import encode_png


def every_png(result) -> int:
    """Bytes of one PNG per final picture and per checkpoint picture."""
    pictures = [*result.images, *(i for images in result.checkpoints.values() for i in images)]
    return sum(len(encode_png(picture)) for picture in pictures)


def timed(encode, result) -> tuple[int, float]:
    start = time.perf_counter()
    size = encode(result)
    return size, time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    cache = ResultCache(args.cache)
    found = {"now": [], "every picture a PNG": []}
    for key in list(cache.summaries())[:args.runs]:
        result = cache.get(key)
        if result is None or not result.checkpoints:
            continue
        found["now"].append(timed(lambda r: len(r.to_archive()), result))
        found["every picture a PNG"].append(timed(every_png, result))
    runs = len(found["now"])
    if not runs:
        raise SystemExit(f"no stored run with checkpoints in {args.cache}")
    figures = {name: {"mib": statistics.mean(s for s, _ in rows) / 2**20,
                      "encode_s": statistics.mean(t for _, t in rows)}
               for name, rows in found.items()}
    old, new = figures["every picture a PNG"], figures["now"]
    figures["size_ratio"] = new["mib"] / old["mib"]
    figures["encode_ratio"] = new["encode_s"] / old["encode_s"]
    figures["runs"] = runs
    print(f"{runs} runs: {new['mib']:.2f} MiB each, encoded in {new['encode_s']:.3f} s; every "
          f"picture a PNG: {old['mib']:.2f} MiB, {old['encode_s']:.3f} s; ratios: size "
          f"{figures['size_ratio']:.2f}, encoding {figures['encode_ratio']:.2f}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
