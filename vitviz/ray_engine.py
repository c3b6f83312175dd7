"""Ray as vitviz's engine for work that outgrows one process (`--engine ray`).

Optional: imported only when asked for, with the way to install it when missing. `ray.init()`
starts a local Ray on this machine, or joins a cluster when RAY_ADDRESS (or `address`) names
one; each worker loads the model by its registry name (a model from a user's file needs
$VITVIZ_MODELS in the workers' environment, as in the dashboard's).

The index's forward passes run as Ray Data `map_batches` over an actor pool whose actors hold
the model (a GPU each where the cluster has them). Each row of the dataset is one fixed group of
files, the same groups the local engine measures, and the results come back in order, so this
process folds them into the index exactly as the local engine does: both give the same index.
Ray's `read_images` is not used: the actors decode with vitviz's own reader (EXIF orientation,
colour modes, centre square), the one the built-in photos and the local engine use.
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from vitviz.errors import UserError
from vitviz.models import LoadedModel


class RayMissing(UserError):
    pass


def require_ray():
    """The ray module, or a UserError that says how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401  (the engine needs Ray Data, an extra of Ray)
    except ImportError as error:
        raise RayMissing("--engine ray needs Ray with Ray Data: pip install 'ray[data]' (or "
                         "pip install -e '.[ray]' in a vitviz checkout); the local engine "
                         "needs nothing more.") from error
    return ray


def start(workers: int, address: str | None = None) -> None:
    """Join the Ray named by `address` or RAY_ADDRESS, else start a local one for `workers`."""
    ray = require_ray()
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)


class _Measurer:
    """A Ray actor holding the model; measures one group of files per call."""

    def __init__(self, model_name: str, device: str, layers: list[str], tokens):
        from vitviz.models import load_model, load_user_models

        load_user_models()
        self.model = load_model(model_name, device)
        self.layers, self.tokens = layers, tokens

    def __call__(self, rows: dict) -> dict:
        from vitviz.index import measure_batch

        results = [pickle.dumps(measure_batch(self.model, self.layers, self.tokens,
                                              [Path(p) for p in paths.split("\n")]))
                   for paths in rows["paths"]]
        return {"group": rows["group"], "measured": np.array(results, dtype=object)}


def measure_batches(model: LoadedModel, layers: Sequence[str], tokens, batches: list[list[Path]],
                    workers: int = 2, address: str | None = None) -> Iterator:
    """`vitviz.index.measure_batch` of every group of files, on Ray actors, in order."""
    if not batches:
        return iter(())
    ray = require_ray()
    start(workers, address)
    gpus = 1 if model.device.type == "cuda" else 0
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True
    rows = [{"group": i, "paths": "\n".join(str(p) for p in paths)}
            for i, paths in enumerate(batches)]
    dataset = ray.data.from_items(rows).map_batches(
        _Measurer, batch_size=1, concurrency=workers, num_gpus=gpus,
        num_cpus=0 if gpus else 1,
        fn_constructor_args=(model.registry_name, "cuda" if gpus else "cpu", list(layers),
                             tokens))
    def in_order() -> Iterator:
        for expected, row in enumerate(dataset.iter_rows()):
            if row["group"] != expected:  # preserve_order is what makes both engines agree
                raise RuntimeError(f"Ray returned group {row['group']} where {expected} was due")
            yield pickle.loads(row["measured"])

    return in_order()
