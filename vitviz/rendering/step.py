"""The loop's forward passes, with every speed lever of a run set up in one place.

`optimise()` asks for three kinds of pass: the optimised one (augmented copies, with gradients),
the clean one (the un-augmented pictures, for the recorded activation), and passes without
gradients that read what a step holds fixed (the frozen context's attention maps, an
accentuated exemplar's photo features). What each pass needs besides the network is decided
here, once per run: the arithmetic (`precision`), a coarse input for the early steps
(`resolution`), token dropout, gradients past GELUs and ReLUs (`redirect`), and attention held
at the start (`models.attention`). A new lever is a field of `ForwardStep`, not another nested
`with` in the loop.
"""
from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass
from typing import Sequence

import torch

from vitviz.models.attention import explicit_attention_mode
from vitviz.models.forward import Activations, activations
from vitviz.models.loaded import LoadedModel
from vitviz.models.resolution import at_input_size, coarse_size
from vitviz.rendering.objectives import Objective
from vitviz.rendering.precision import network, resolve_precision
from vitviz.rendering.presets import Preset
from vitviz.rendering.redirect import leaky_targets, redirected
from vitviz.rendering.token_dropout import kept_tokens


@dataclass
class ForwardStep:
    model: LoadedModel  # as loaded: how images become its input
    net: LoadedModel  # the network in the run's arithmetic (a bf16 copy, or the model itself)
    autocast: bool
    layers: tuple[str, ...]  # what every pass captures: the objective's layers and the priors'
    targets: tuple[str, ...]  # the objective's layers, where the leaky target acts
    coarse_until: int  # steps before this one run at `small` px
    small: int
    keep: float  # fraction of patch tokens each augmented copy keeps
    redirect_until: int
    leaky_target: bool

    @classmethod
    def for_run(cls, model: LoadedModel, objective: Objective, preset: Preset,
                extra_layers: Sequence[str] = (), frozen_context: bool = False) -> "ForwardStep":
        net, autocast = network(model, resolve_precision(preset.precision, model.device))
        coarse = (preset.coarse_steps > 0 and model.resizable
                  and not objective.reads_token_positions)
        return cls(
            model=model, net=net, autocast=autocast,
            layers=tuple(objective.layers) + tuple(extra_layers),
            targets=tuple(objective.layers),
            coarse_until=round(preset.coarse_steps * preset.steps) if coarse else 0,
            small=coarse_size(model, preset.coarse_scale) if coarse else model.preprocessing.size,
            # A frozen context holds attention maps of every token, so it keeps every token.
            keep=1.0 if objective.reads_token_positions or frozen_context else preset.keep_tokens,
            redirect_until=preset.redirect_steps, leaky_target=preset.leaky_target,
        )

    def size(self, step: int) -> int:
        return self.small if step < self.coarse_until else self.model.preprocessing.size

    def _run(self, images: torch.Tensor, size: int, layers: Sequence[str],
             autocast: bool = True) -> Activations:
        inputs = self.model.to_input(images, size).to(self.net.dtype)
        with torch.autocast(inputs.device.type, dtype=torch.bfloat16,
                            enabled=self.autocast and autocast):
            return activations(self.net, inputs, layers)

    def optimised(self, augmented: torch.Tensor, step: int, rngs: Sequence[torch.Generator],
                  copies: int, frozen: dict | None = None) -> Activations:
        """The pass the loss is taken on: augmented copies with every lever of this step."""
        size = self.size(step)
        module = self.net.module
        with ExitStack() as levers:
            levers.enter_context(redirected(module, step < self.redirect_until))
            levers.enter_context(leaky_targets(module, self.targets, self.leaky_target))
            levers.enter_context(at_input_size(self.net, size))
            levers.enter_context(kept_tokens(self.net, self.keep, rngs, copies))
            if frozen is not None:
                levers.enter_context(explicit_attention_mode(self.net, frozen))
            return self._run(augmented, size, self.layers)

    @torch.no_grad()
    def clean(self, images: torch.Tensor) -> Activations:
        """The un-augmented pictures at the model's own size, without autograd: riding along in
        the augmented batch made the backward pass carry them too (measured: 2x slower steps on
        the CPU for the naive preset)."""
        return self._run(images, self.model.preprocessing.size, self.layers)

    @torch.no_grad()
    def attention_maps(self, held: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
        """Every attention map of `held` (the start under this step's augmentation) at this
        step's size: what a frozen-context step mixes the values with."""
        size = self.size(step)
        with at_input_size(self.net, size), explicit_attention_mode(self.net) as maps:
            self._run(held, size, self.layers)
        return dict(maps)

    @torch.no_grad()
    def features(self, images: torch.Tensor, step: int, layer: str) -> torch.Tensor:
        """`layer`'s output for `images` at this step's size (an exemplar's photo features), in
        the network's own dtype, without autocast."""
        size = self.size(step)
        with at_input_size(self.net, size):
            return self._run(images, size, [layer], autocast=False)[layer]
