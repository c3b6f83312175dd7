"""How alike the images of several seeds are: pairwise similarity and one consistency score.

Two measures. On pixels, each image is standardised (zero mean, unit variance) before the
cosine, so brightness and contrast do not count; this needs no model but punishes images that
show the same feature at different positions. On the model's own layer, each image is described
by the token-averaged (or spatially averaged) activations of the target layer, standardised the
same way: a position-free profile of what the layer sees.
The dashboard's Compare seeds page uses these; vitviz.metrics has the figures that compare
across units in a second model's feature space.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from vitviz.hooks import run_and_capture
from vitviz.layers import find_layer
from vitviz.models import LoadedModel
from vitviz.objectives import unit_values

MEASURES = {
    "layer": "the target layer's activations",
    "pixels": "pixels",
}


def standardised_cosine(vectors: np.ndarray) -> np.ndarray:
    """[N, F] -> [N, N] cosine similarity after standardising each row (its Pearson correlation)."""
    rows = np.asarray(vectors, dtype=np.float64)
    rows = rows - rows.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    rows = rows / np.where(norms > 0, norms, 1.0)
    return np.clip(rows @ rows.T, -1.0, 1.0)


def pixel_vectors(images: Sequence[np.ndarray]) -> np.ndarray:
    """HxWx3 uint8 images of one size -> [N, H*W*3]."""
    return np.stack([np.asarray(image, dtype=np.float64).ravel() for image in images])


@torch.no_grad()
def layer_vectors(model: LoadedModel, layer: str, images: Sequence[np.ndarray],
                  tokens: str | int = "patch") -> np.ndarray:
    """[N, units]: each image's activation profile at `layer`, as the objective reduces tokens.

    Runs the model: call it only where the model is free (inside a queue slot).
    """
    batch = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div(255)
    # Stopping early is only safe when the layer runs once per forward pass (see vitviz.hooks).
    stop_early = find_layer(model, layer).calls == 1
    acts = run_and_capture(model.module, model.to_input(batch), [layer], stop_early)
    return unit_values(acts[layer].float(), tokens).flatten(1).cpu().numpy()


def consistency(matrix: np.ndarray) -> float:
    """Mean similarity of distinct pairs: 1 when every seed gives the same picture."""
    n = matrix.shape[0]
    if n < 2:
        raise ValueError("consistency needs at least two images")
    return float((matrix.sum() - np.trace(matrix)) / (n * (n - 1)))


def group_consistency(matrix: np.ndarray, sizes: Sequence[int]) -> list[float | None]:
    """Consistency within each run of consecutive rows (one run per preset); None below 2 images."""
    scores, start = [], 0
    for size in sizes:
        block = matrix[start:start + size, start:start + size]
        scores.append(consistency(block) if size > 1 else None)
        start += size
    return scores
