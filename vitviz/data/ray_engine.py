"""Ray as vitviz's engine for work that outgrows one process (`--engine ray`).

Optional: imported only when asked for, with the way to install it when missing. `ray.init()`
starts a local Ray on this machine, or joins a cluster when RAY_ADDRESS (or `address`) names
one; each worker loads the model by its registry name (a model from a user's file needs
$VITVIZ_MODELS in the workers' environment, as in the dashboard's).

Work runs as Ray Data `map_batches` over an actor pool whose actors hold the model (a GPU each
where the cluster has them). Each row of the dataset is one payload, the same unit of work the
local engine does in-process (a fixed group of files for the index, a batch of units for the
atlas), and the results come back in order, so this process folds and stores them exactly as
the local engine does: both engines give the same index and the same pictures. For the index,
Ray's `read_images` is not used: the actors decode with vitviz's own reader (EXIF
orientation, colour modes, centre square), the one the built-in photos and the local engine
use.
"""
from __future__ import annotations

import logging
import os
import pickle
import socket
from typing import Iterator, Sequence

import numpy as np

from vitviz.errors import UserError
from vitviz.models.loaded import LoadedModel


class RayMissing(UserError):
    pass


class RayUnreachable(UserError):
    pass


CONNECT_TIMEOUT_S = 5.0


def _unreachable(address: str, why) -> str:
    return (f"cannot reach the Ray cluster at {address} ({why}): start it (`ray start "
            "--head` on its head node), or unset RAY_ADDRESS for a local Ray on this machine.")


def check_reachable(address: str) -> None:
    """Refuse, within seconds, a cluster address nothing answers at ('host:port' or
    'ray://host:port'; 'auto' is Ray's to find): Ray itself retries for minutes."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as error:
        raise RayUnreachable(_unreachable(address, error)) from error


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
    # vitviz never reports usage anywhere; Ray would otherwise try (and wait, offline).
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    address = address or os.environ.get("RAY_ADDRESS")
    # vitviz draws its own progress bar: Ray's logs and bars would bury it.
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    ray.data.DataContext.get_current().enable_progress_bars = False
    if address:
        check_reachable(address)
        try:
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
        except (ConnectionError, TimeoutError, RuntimeError, SystemExit) as error:
            # Ray ends a failed connection with SystemExit, after minutes of retries.
            raise RayUnreachable(_unreachable(address, error)) from error
    else:
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False,
                 logging_level=logging.WARNING)


class _ModelWorker:
    """A Ray actor holding the model; applies one vitviz function to each payload."""

    def __init__(self, model_name: str, device: str, function: str):
        import importlib

        from vitviz.common import cpu_slot
        from vitviz.models.registry import load_model
        from vitviz.models.user_models import load_user_models

        # Ray hands out the cores; the machine-wide slot would make the actors take turns.
        os.environ[cpu_slot.ENV] = "0"
        load_user_models()
        self.model = load_model(model_name, device)
        module, _, name = function.partition(":")
        self.function = getattr(importlib.import_module(module), name)

    def __call__(self, rows: dict) -> dict:
        results = [pickle.dumps(self.function(self.model, pickle.loads(payload)))
                   for payload in rows["payload"]]
        return {"order": rows["order"], "result": np.array(results, dtype=object)}


def map_in_order(model: LoadedModel, function: str, payloads: Sequence, workers: int = 2,
                 address: str | None = None) -> Iterator:
    """`function(model, payload)` for every payload on Ray actors that each hold the model (a
    GPU each when `model` is on one), yielded in the payloads' order. `function` is named as
    'module:name' so that the workers import it themselves."""
    if not payloads:
        return iter(())
    ray = require_ray()
    start(workers, address)
    gpus = 1 if model.device.type == "cuda" else 0
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True
    rows = [{"order": i, "payload": pickle.dumps(payload)} for i, payload in enumerate(payloads)]
    dataset = ray.data.from_items(rows).map_batches(
        _ModelWorker, batch_size=1, compute=ray.data.ActorPoolStrategy(size=workers),
        num_gpus=gpus,
        num_cpus=0 if gpus else 1,
        fn_constructor_args=(model.registry_name, "cuda" if gpus else "cpu", function))

    def in_order() -> Iterator:
        for expected, row in enumerate(dataset.iter_rows()):
            if row["order"] != expected:  # preserve_order is what makes the engines agree
                raise RuntimeError(f"Ray returned item {row['order']} where {expected} was due")
            yield pickle.loads(row["result"])

    return in_order()
