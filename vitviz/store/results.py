"""A finished run: final and checkpoint images, curves, config, model metadata; export to PNG/JSON."""
from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, PngImagePlugin

# Version of the layout `to_archive` writes. 2: the checkpoints between the first and the last
# are JPEG previews, and a last checkpoint equal to the final images is stored once. A cache
# entry in a layout not in READABLE_FORMATS is unreadable.
ARCHIVE_FORMAT = 2
READABLE_FORMATS = (1, 2)
# The previews' JPEG quality, with full colour resolution (4:4:4): the pictures are saturated
# fine strokes, which halved chroma smears. On a 448 px atlas picture: 134 KB against PNG's
# 424 KB, a mean error of 4 levels of 255, and 2 ms to encode against 98 ms.
PREVIEW_QUALITY = 90


class UnreadableResult(Exception):
    """A stored result that cannot be decoded: damaged, truncated or from another format."""


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """[B, 3, H, W] floats in [0, 1] -> [B, H, W, 3] uint8."""
    return (images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def encode_png(pixels: np.ndarray, text: dict[str, str] | None = None) -> bytes:
    info = PngImagePlugin.PngInfo()
    for key, value in (text or {}).items():
        info.add_text(key, value)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def encode_preview(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=PREVIEW_QUALITY, subsampling=0)
    return buffer.getvalue()


def decode_image(data: bytes) -> np.ndarray:
    """PNG or JPEG bytes -> [H, W, 3] uint8."""
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


@dataclass
class Result:
    config: dict  # canonical config: the cache key is its hash
    model: dict  # LoadedModel.metadata()
    images: list[np.ndarray]  # final image per item, [H, W, 3] uint8
    checkpoints: dict[int, list[np.ndarray]]  # step -> image per item
    steps: list[int]
    activation: list[list[float]]  # [item][step], on the un-augmented image
    loss: list[list[float]]  # [item][step]
    context: dict[str, list] = field(default_factory=dict)  # per-step context statistics
    metrics: dict = field(default_factory=dict)
    elapsed_s: float = 0.0
    created: str = ""
    device: str = ""
    # The arithmetic the run used: its preset's precision resolved on `device` ("auto" is
    # bf16 where the hardware has it); "" for results made before it was recorded.
    precision: str = ""

    @property
    def seeds(self) -> list[int]:
        return list(self.config["seeds"])

    def item_labels(self) -> list[str]:
        """One label per batch item, e.g. 'seed 3' or 'unit 12, seed 3'."""
        units = self.config.get("units")
        if units:
            return [f"unit {u}, seed {s}" for u, s in zip(units, self.seeds)]
        return [f"seed {s}" for s in self.seeds]

    def summary(self) -> dict:
        """Small description for listings (the Runs page) without images or curves."""
        objective = self.config["objective"]
        return {
            "created": self.created,
            "model": self.config["model"],
            "random_init": self.model.get("random_init", False),
            "objective": objective.get("type"),
            "layer": objective.get("layer", ""),
            "unit": objective.get("unit", ""),
            "tokens": objective.get("tokens", ""),
            "preset": self.config["preset"]["name"],
            "seeds": self.seeds,
            "steps": self.steps[-1] if self.steps else 0,
            "moving_target": self.config.get("moving_target", False),
            # Robust activation / photo max per item once measured (raw activation is what
            # adversarial noise wins, so listings do not show it).
            "robust_vs_photo_max": [round(v, 3) for v in
                                    self.metrics.get("relative_robust_activation", [])],
            "elapsed_s": round(self.elapsed_s, 2),
        }

    def to_json(self) -> dict:
        """Everything but the pixels: config, model, curves, metrics."""
        return {
            "config": self.config,
            "model": self.model,
            "steps": self.steps,
            "activation": self.activation,
            "loss": self.loss,
            "context": self.context,
            "metrics": self.metrics,
            "elapsed_s": self.elapsed_s,
            "created": self.created,
            "device": self.device,
            "precision": self.precision,
        }

    def png(self, item: int) -> bytes:
        """Final image of one item, with the run's config embedded as PNG text."""
        meta = {"vitviz:config": json.dumps(self.config), "vitviz:model": json.dumps(self.model)}
        return encode_png(self.images[item], meta)

    def save(self, out_dir: str | Path) -> list[Path]:
        """One PNG per item and `result.json`; returns the written paths."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for item, label in enumerate(self.item_labels()):
            path = out / f"{label.replace(', ', '_').replace(' ', '')}.png"
            path.write_bytes(self.png(item))
            written.append(path)
        path = out / "result.json"
        path.write_text(json.dumps(self.to_json(), indent=1))
        written.append(path)
        return written

    def to_archive(self) -> bytes:
        """The cache's form: an uncompressed zip of `result.json` and one image per item and
        checkpoint.

        Nothing in it executes on load (unlike a pickle), and it opens with any zip tool. What a
        figure or an export reads stays exact (PNG): the final images and the first checkpoint
        (an accentuated exemplar's photo, which its change is measured from). The checkpoints
        between are what the step slider shows, kept as JPEG previews, and the last checkpoint,
        the final images again, is not stored twice: a `dinov2_vits14` atlas unit takes 1.6 MiB
        instead of 4.2, and a third of the time to encode (`bench/archive_size.py`).
        """
        record = self.to_json()
        record["format"] = ARCHIVE_FORMAT
        steps = sorted(self.checkpoints)
        files = {step: self._checkpoint_file(step, steps) for step in steps}
        record["checkpoint_steps"] = steps
        record["checkpoint_files"] = {str(step): kind for step, kind in files.items()}
        encoders = {"png": encode_png, "jpg": encode_preview}
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
            archive.writestr("result.json", json.dumps(record))
            for item, image in enumerate(self.images):
                archive.writestr(f"images/{item}.png", encode_png(image))
            for step, kind in files.items():
                if kind in encoders:
                    for item, image in enumerate(self.checkpoints[step]):
                        archive.writestr(f"checkpoints/{step}/{item}.{kind}",
                                         encoders[kind](image))
        return buffer.getvalue()

    def _checkpoint_file(self, step: int, steps: list[int]) -> str:
        """How checkpoint `step` is stored: "final" (as the final images), "png" or "jpg"."""
        images = self.checkpoints[step]
        if step == steps[-1] and len(images) == len(self.images) and all(
                np.array_equal(a, b) for a, b in zip(images, self.images)):
            return "final"
        return "png" if step in (steps[0], steps[-1]) else "jpg"

    @classmethod
    def from_archive(cls, data: bytes) -> "Result":
        """Raises UnreadableResult when `data` is not a complete archive of a format in
        READABLE_FORMATS."""
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                record = json.loads(archive.read("result.json"))
                if record.get("format") not in READABLE_FORMATS:
                    raise UnreadableResult(f"archive format {record.get('format')!r}, "
                                           f"this vitviz reads {READABLE_FORMATS}")
                items = len(record["config"]["seeds"])

                def images(folder: str, kind: str = "png") -> list[np.ndarray]:
                    return [decode_image(archive.read(f"{folder}/{item}.{kind}"))
                            for item in range(items)]

                final = images("images")
                files = record.get("checkpoint_files", {})

                def checkpoint(step: int) -> list[np.ndarray]:
                    kind = files.get(str(step), "png")
                    return final if kind == "final" else images(f"checkpoints/{step}", kind)

                return cls(
                    config=record["config"],
                    model=record["model"],
                    images=final,
                    checkpoints={int(step): checkpoint(int(step))
                                 for step in record["checkpoint_steps"]},
                    steps=record["steps"],
                    activation=record["activation"],
                    loss=record["loss"],
                    context=record.get("context", {}),
                    metrics=record.get("metrics", {}),
                    elapsed_s=record.get("elapsed_s", 0.0),
                    created=record.get("created", ""),
                    device=record.get("device", ""),
                    precision=record.get("precision", ""),
                )
        except UnreadableResult:
            raise
        except Exception as error:  # a damaged file can fail in zip, JSON, PNG or a missing field
            raise UnreadableResult(f"{type(error).__name__}: {error}") from error
