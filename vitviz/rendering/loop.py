"""The optimisation loop: a generator of per-step records that the UI, the CLI and tests share."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import torch

from vitviz.errors import UserError
from vitviz.models.attention import check_attention
from vitviz.models.layers import block_depth, find_layer
from vitviz.models.loaded import LoadedModel
from vitviz.rendering import (accentuate, drive_cap, exemplar_stats, natural, plain_start,
                              token_focus, unit_share, yielding)
from vitviz.rendering.objectives import Objective, reads_one_unit
from vitviz.rendering.params import ImageParam, build_param, total_variation
from vitviz.rendering.presets import DEFAULT_PRESET, MAX_CANVAS, Preset, get_preset
from vitviz.rendering.step import ForwardStep
from vitviz.rendering.transforms import augment, build_transforms

# Bumped whenever a change to the optimisation (the loop, parameterisations, transforms, what
# a preset means) changes the pictures a config gives: part of every cache key, so no stale
# picture is served after an upgrade.
ALGORITHM_VERSION = 5

# Called with (clean images [B, 3, H, W] in [0, 1], step) -> statistics to attach to the record.
ContextProbe = Callable[[torch.Tensor, int], dict]


class NonFiniteLoss(UserError):
    pass


@dataclass
class StepRecord:
    """One optimisation step. `activation[i]` is item i's target value on its un-augmented image
    after `step` updates; `images` ([B, 3, H, W] in [0, 1], CPU) come every `record_every` steps
    and at the end."""

    step: int
    loss: list[float] | None
    activation: list[float]
    images: torch.Tensor | None = None
    context: dict = field(default_factory=dict)


def resolve_preset(preset: Preset | str, **overrides) -> Preset:
    base = get_preset(preset) if isinstance(preset, str) else preset
    return base.with_overrides(**{k: v for k, v in overrides.items() if v is not None})


def _transform_specs(preset: Preset, model_size: int) -> list:
    # A crop of size 0 means "the model's input size", so one preset serves every model.
    return [
        (name, {**kwargs, "size": model_size} if name == "crop" and kwargs.get("size") == 0 else kwargs)
        for name, kwargs in preset.transforms
    ]


def _optimiser(preset: Preset, params) -> torch.optim.Optimizer:
    kinds = {"adam": torch.optim.Adam, "nadam": torch.optim.NAdam}
    if preset.optimiser not in kinds:
        raise UserError(f"optimiser '{preset.optimiser}' is unknown: use one of {sorted(kinds)}")
    return kinds[preset.optimiser](params, lr=preset.lr, betas=tuple(preset.betas))


def _learning_rate_factor(preset: Preset, step: int, steps: int) -> float:
    if preset.schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * step / steps))
    return 1.0


def _transform_rngs(seeds: Sequence[int], device: torch.device) -> list[torch.Generator]:
    # Distinct from the parameterisation's stream so that augmentation and start are independent.
    # On the model's device, so augmentation draws need no copy (a GPU's stream differs from the
    # CPU's: a picture is reproducible on the kind of device that made it).
    return [torch.Generator(device).manual_seed(seed * 1_000_003 + 2) for seed in seeds]


def _augment_alike(images: torch.Tensor, transforms, rngs, copies: int,
                   progress: float) -> torch.Tensor:
    """`images` under the very draws the next `augment` call will make (the generators' states
    are put back), so that each copy matches a copy of the optimised picture."""
    states = [rng.get_state() for rng in rngs]
    out = augment(images, transforms, rngs, copies, progress)
    for rng, state in zip(rngs, states):
        rng.set_state(state)
    return out


def prepare(model: LoadedModel, objective: Objective, frozen_context: bool = False) -> None:
    """Check the objective (and a frozen context) against the model: a clear error before
    anything is allocated."""
    objective.validate(lambda name: find_layer(model, name))
    if frozen_context:
        check_attention(model, "A frozen-context run")


def optimise(
    model: LoadedModel,
    objective: Objective,
    seeds: Sequence[int],
    preset: Preset | str = DEFAULT_PRESET,
    steps: int | None = None,
    record_every: int = 16,
    probe: ContextProbe | None = None,
    frozen_context: bool = False,
    minimise: bool = False,
    start: torch.Tensor | None = None,
    held_to: Sequence[torch.Tensor] | None = None,
) -> Iterator[StepRecord]:
    """Maximise `objective` for one image per seed, all in one batch; yields a record per step.
    With `minimise`, drive it down instead: what suppresses a unit (the records still hold the
    objective's own value, which then falls). With `start` ([n_items, 3, H, W] in [0, 1]),
    each picture starts as that image and is held to its first-block features
    (vitviz.rendering.accentuate: accentuated exemplars). With the preset's `exemplar_stats`
    (where it holds: `Preset.scoped`), `exemplar_deep` or `drive_cap`, each item is held to
    reference views of its unit's photos, whose feature distribution (first-block; at the
    unit's block input) the picture keeps (vitviz.rendering.exemplar_stats), whose
    strongest value sets where the objective stops pushing (vitviz.rendering.drive_cap) and
    whose colour a plain start begins at (vitviz.rendering.plain_start):
    `held_to` (per item [k, 3, H, W] in [0, 1]), or else the unit's photo-disjoint natural
    exemplars (`exemplar_stats.unit_views`).

    Item i's result depends only on its seed, not on the rest of the batch (unless the objective
    couples items, like diversity). A non-finite loss stops the run with `NonFiniteLoss`.
    With `frozen_context`, every attention map of the optimised forward pass is held at its
    value for the starting image (the moving target stopped; vitviz.analysis.moving_target); the
    recorded activation stays the real one, with live attention.
    """
    preset = resolve_preset(preset, steps=steps)
    preset.check()
    prepare(model, objective, frozen_context)
    one_unit = reads_one_unit(objective)
    if (preset.exemplar_stats or preset.unit_share or preset.token_focus != 1
            or preset.plain_start):
        depth = (block_depth(model, objective.layer) or 0.0) if one_unit else 0.0
        preset = preset.scoped(one_unit, start is not None, depth, minimise,
                               focusable=one_unit and token_focus.applies(objective.spec()))
    seeds = list(seeds)
    n_items, copies = len(seeds), preset.ensemble
    if preset.reads_reference_views:
        if not one_unit:
            raise UserError("the exemplar-statistics priors and the drive cap read a unit's "
                            "own photos: use a neuron or channel objective, or set "
                            "exemplar_deep and drive_cap to 0")
        if held_to is None:
            held_to = exemplar_stats.unit_views(model, objective, n_items, minimise)
        if len(held_to) != n_items:
            raise UserError(f"held_to holds one set of photo views per seed: {len(held_to)} "
                            f"sets for {n_items} seeds")
    device = model.device
    model_size = model.preprocessing.size
    canvas = preset.canvas_size(model_size)
    if canvas > MAX_CANVAS:  # canvas_scale times this model's input: known only here
        raise UserError(f"a {canvas}-px canvas ({preset.canvas_scale} x {model_size} px) is above "
                        f"the largest vitviz makes, {MAX_CANVAS} px: lower canvas_scale")
    if start is None:
        param: ImageParam = build_param(preset.param, seeds, canvas,
                                        **preset.param_kwargs).to(device)
    else:
        start = torch.nn.functional.interpolate(start.float(), size=(canvas, canvas),
                                                mode="bilinear", antialias=True)
        spectrum = {k: v for k, v in preset.param_kwargs.items() if k in ("decay", "floor")}
        param = accentuate.PhotoImage(start, **spectrum,
                                      residual_decay=preset.accentuate_decay).to(device)
    transforms = build_transforms(_transform_specs(preset, model_size))
    rngs = _transform_rngs(seeds, device)
    optimiser = _optimiser(preset, param.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda step: _learning_rate_factor(preset, step, preset.steps)
    )
    target = objective.target
    needs_first = preset.natural_stats or preset.exemplar_stats or start is not None
    prior = natural.photo_statistics(model) if needs_first else None
    deep = (natural.photo_statistics(model, exemplar_stats.feeding_block(model, target.layers[0]))
            if preset.exemplar_deep else None)
    # The exemplar-statistics priors, first-block and deep: (weight, the photos' statistics at
    # the prior's layer, the references' sorted features there).
    exemplar_priors = [
        (weight, stats, exemplar_stats.reference(model, stats["layer"], held_to))
        for weight, stats in ((preset.exemplar_stats, prior), (preset.exemplar_deep, deep))
        if weight
    ]
    extra = tuple(dict.fromkeys(found["layer"] for found in (prior, deep) if found))
    passes = ForwardStep.for_run(model, objective, preset, extra, frozen_context)

    def pushed(acts, items: int) -> torch.Tensor:
        """Each row's value of the objective as the steps push it: with token focus, over the
        unit's focused tokens (built-in objectives return fp32 already; a user's may return
        the pass's bf16)."""
        if preset.token_focus != 1 and acts[objective.layer].dim() == 3:
            return token_focus.focused(objective, acts[objective.layer], acts.prefix_tokens,
                                       items, preset.token_focus, minimise)
        return objective(acts, items).float()

    # The unit's own term, read as the steps push it, so that a cap set on the reference views
    # compares like with like (token focus holds only where the objective is the unit itself).
    unit_term = pushed if target is objective else target
    references = [v.to(device) for v in held_to] if preset.reads_reference_views else None
    item_caps = (drive_cap.caps(unit_term, passes.clean, references, preset.drive_cap, minimise)
                 if preset.drive_cap else None)
    if preset.plain_start:
        param.start_at(plain_start.start_colours(unit_term, passes.clean, references, minimise))

    yields = preset.priors_yield and bool(exemplar_priors or preset.natural_stats)
    start_images = param().detach() if frozen_context else None
    for step in range(preset.steps):
        images = param()
        frozen = None
        if frozen_context:
            # The starting image under this step's very augmentation (the same random draws),
            # so each copy's maps are those of the same crop of the start: the unit keeps its
            # starting context and only the patch contents can move it.
            held = _augment_alike(start_images, transforms, rngs, copies, step / preset.steps)
            frozen = passes.attention_maps(held, step)
        if start is not None:
            photo = _augment_alike(start.to(device), transforms, rngs, copies,
                                   step / preset.steps)
            photo_features = passes.features(photo, step, prior["layer"])
        augmented = augment(images, transforms, rngs, copies, step / preset.steps)
        acts = passes.optimised(augmented, step, rngs, copies, frozen)
        values = pushed(acts, n_items)
        if item_caps is not None:
            # Only the unit's own term stops pushing; a regulariser (diversity) still acts.
            reached = values if target is objective else unit_term(acts, n_items).float()
            values = values - reached + drive_cap.capped(reached, item_caps, copies, minimise)
        if preset.unit_share:
            excited = unit_share.excitation(objective, acts[objective.layer], acts.prefix_tokens)
            values = unit_share.shared(values, excited, preset.unit_share)
        per_item = values.view(n_items, copies).mean(dim=1)
        loss = (per_item if minimise else -per_item) + preset.tv_weight * total_variation(images)
        if start is not None:
            away = accentuate.feature_distance(acts[prior["layer"]], photo_features,
                                               prior["spread"], acts.prefix_tokens)
            loss = loss + preset.accentuate_weight * away.view(n_items, copies).mean(dim=1)
        # The natural- and exemplar-statistics priors, apart: they may yield to the rest.
        priors = torch.zeros_like(loss)
        for weight, stats, reference in exemplar_priors:
            unlike = exemplar_stats.distance(acts[stats["layer"]], reference, copies,
                                             stats["spread"], acts.prefix_tokens)
            priors = priors + weight * unlike.view(n_items, copies).mean(dim=1)
        if preset.natural_stats:
            off = natural.penalty(acts[prior["layer"]], acts.prefix_tokens, prior)
            priors = priors + preset.natural_stats * (off.view(n_items, copies).mean(dim=1)
                                                      + natural.saturation_excess(images, prior))
        total = loss + priors
        measured = target(passes.clean(images.detach()), n_items).float()
        # Read the image before the update: a pixel parameterisation returns the parameter
        # itself, which the optimiser changes in place.
        snapshot = images.detach().cpu() if record_every and step % record_every == 0 else None
        context = probe(images.detach(), step) if probe else {}
        optimiser.zero_grad(set_to_none=True)
        if yields:
            yielding.backward(loss, priors, param.parameters())
        else:
            total.sum().backward()
        optimiser.step()
        scheduler.step()
        param.after_step()
        # The step's numbers are read once, after all its work is queued: on a GPU a read waits
        # for the queue to drain, and the GPU idles while the host queues the next step.
        losses, activation = torch.stack([total.detach(), measured]).tolist()
        if not all(map(math.isfinite, losses)):
            raise NonFiniteLoss(
                f"The loss became non-finite at step {step} (items {_bad_items(losses, seeds)}). "
                f"The run was stopped; lower the learning rate (now {preset.lr}) or use the "
                "'robust' preset, whose image parameterisation is bounded."
            )
        yield StepRecord(step, losses, activation, snapshot, context)

    with torch.no_grad():
        final = param()
        measured = target(passes.clean(final), n_items).float()
    context = probe(final, preset.steps) if probe else {}
    yield StepRecord(preset.steps, None, measured.tolist(), final.cpu(), context)


def _bad_items(losses: list[float], seeds: Sequence[int]) -> str:
    return ", ".join(f"seed {s}" for s, value in zip(seeds, losses) if not math.isfinite(value))
