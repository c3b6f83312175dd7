"""The moving-target effect, measured: how much of a ViT unit's gain comes from changed context.

A hidden unit at a token sees that token's content and, through attention, every other token.
Changing the image changes both. At each step this probe records how far each block's attention
maps moved since the previous step, and evaluates the target with the tokens and the attention
maps of different steps: act(x, A) is the target on image x's tokens mixed by maps A. For the
image at step t:

    total gain   = act(x_t, A_t) - act(x_0, A_0)
    content part = act(x_t, A_0) - act(x_0, A_0)    (attention context held at the start)
    context part = act(x_t, A_t) - act(x_t, A_0)    (what the moved context added)

That split changes the content first; changing the context first gives other parts
(act(x_0, A_t) - act(x_0, A_0) for the context). The order-free split averages the two orders
(the two-player Shapley value): both add up to the total gain, and they agree when attention
does not depend on the image. `split` gives both.
"""
from __future__ import annotations

import torch

from vitviz.errors import UserError
from vitviz.models.attention import check_attention, explicit_attention_mode
from vitviz.models.forward import activations
from vitviz.models.loaded import LoadedModel
from vitviz.rendering.objectives import Objective

# Bumped when the probe records something new: moving-target runs get new cache keys.
PROBE_VERSION = 4


def where_tokens_look(maps: dict[str, torch.Tensor], prefix: int) -> dict[str, torch.Tensor]:
    """Where the patch tokens attend, per block and rolled out over blocks: [B, patches] each,
    summing to 1 over the patches.

    The unit reads the mean over patch tokens, so the rows of the patch queries are averaged
    (and the heads); the columns of the prefix tokens are left out. The rollout multiplies the
    blocks' head-averaged maps, each mixed half and half with the identity for the residual
    path (Abnar and Zuidema 2020), in forward order.
    """
    def over_patches(attention: torch.Tensor) -> torch.Tensor:
        looked = attention[:, prefix:, prefix:].mean(dim=1)
        return looked / looked.sum(dim=-1, keepdim=True)

    views, rollout = {}, None
    for name, block in maps.items():  # forward order: the order the modules ran
        mean = block.mean(dim=1)  # [B, T, T]
        views[name] = over_patches(mean)
        eye = torch.eye(mean.shape[-1], device=mean.device)
        mixed = 0.5 * mean + 0.5 * eye
        mixed = mixed / mixed.sum(dim=-1, keepdim=True)
        rollout = mixed if rollout is None else mixed @ rollout
    if rollout is not None:
        views["rollout"] = over_patches(rollout)
    return views


def split(context: dict, item: int = 0, step: int = -1) -> dict[str, float]:
    """A run's gain up to `step` split into content and context parts, content first and
    order-free, from the probe's records (`Result.context`)."""
    start = context["activation_live"][0][item]
    live = context["activation_live"][step][item]
    content_moved = context["activation_frozen_start"][step][item]  # act(x_t, A_0)
    context_moved = context["activation_start_tokens"][step][item]  # act(x_0, A_t)
    content_first = content_moved - start
    context_first = context_moved - start
    return {
        "start": start, "total": live - start,
        "content": content_first, "context": live - content_moved,
        "content_order_free": (content_first + live - context_moved) / 2,
        "context_order_free": (context_first + live - content_moved) / 2,
    }


def block_parts(context: dict, item: int = 0, step: int = -1) -> dict[str, float]:
    """Where the context part lives: for each attention module, what the activation loses when
    that module alone keeps its starting maps (`live - act(x_t, A_t with that module at A_0)`),
    and the interaction the single-module parts leave over (`context part - their sum`).

    Recorded every `block_every` steps and at the last step; other steps have none (empty).
    """
    per_module = context["context_blocks"][step]
    if not per_module:
        raise UserError(f"step {step} has no per-block figures (they are recorded every few "
                        "steps and at the last)")
    parts = {name: values[item] for name, values in per_module.items()}
    live = context["activation_live"][step][item]
    context_part = live - context["activation_frozen_start"][step][item]
    return {**parts, "interaction": context_part - sum(parts.values())}


class MovingTargetProbe:
    """Context statistics for the optimisation loop (`optimise(..., probe=...)`).

    Every step costs three no-grad forward passes (live, all attention frozen, starting tokens
    under the current attention); every `block_every` steps and at step `steps`, one more per
    attention module, for `block_parts`.
    """

    def __init__(self, model: LoadedModel, objective: Objective, n_items: int,
                 steps: int, block_every: int = 16):
        check_attention(model, "The moving-target probe")
        self.model = model
        self.target = objective.target
        self.n_items = n_items
        self.steps, self.block_every = steps, max(1, block_every)
        self.start_maps: dict[str, torch.Tensor] | None = None
        self.start_inputs: torch.Tensor | None = None
        self.previous_maps: dict[str, torch.Tensor] | None = None

    def _activation(self, inputs: torch.Tensor, frozen=None) -> tuple[torch.Tensor, dict]:
        with explicit_attention_mode(self.model, frozen) as maps:
            acts = activations(self.model, inputs, self.target.layers)
        return self.target(acts, self.n_items), dict(maps)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, step: int) -> dict:
        inputs = self.model.to_input(images)
        activation, maps = self._activation(inputs)
        if self.start_maps is None:
            self.start_maps, self.start_inputs = maps, inputs
        if self.previous_maps is None:
            change = {name: torch.zeros(self.n_items) for name in maps}
        else:
            change = {
                name: (maps[name] - self.previous_maps[name]).abs().mean(dim=(1, 2, 3)).cpu()
                for name in maps
            }
        self.previous_maps = maps
        frozen, _ = self._activation(inputs, self.start_maps)
        start_tokens, _ = self._activation(self.start_inputs, maps)
        blocks, looking = {}, {}
        if step % self.block_every == 0 or step == self.steps:
            for name in maps:
                alone, _ = self._activation(inputs, {name: self.start_maps[name]})
                blocks[name] = (activation - alone).tolist()
            looking = {name: view.cpu().tolist() for name, view
                       in where_tokens_look(maps, self.model.prefix_tokens).items()}
        per_block = torch.stack(list(change.values()))  # [blocks, items]
        return {
            "attention_change": per_block.mean(dim=0).tolist(),
            "attention_change_blocks": per_block.mean(dim=1).tolist(),
            "activation_live": activation.tolist(),
            "activation_frozen_start": frozen.tolist(),  # act(x_t, A_0)
            "activation_start_tokens": start_tokens.tolist(),  # act(x_0, A_t)
            "context_blocks": blocks,  # module -> per item, at some steps (block_parts)
            "attention_where": looking,  # module or "rollout" -> [item][patch], same steps
        }
