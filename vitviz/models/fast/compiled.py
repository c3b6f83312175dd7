"""torch.compile of a ViT's blocks before the target layer ("regional" compilation).

Compiling the whole network does not fit how vitviz reads it: forward hooks capture the target,
the pass stops early once it has it, and the moving-target probe and the gradient redirection
replace modules' forward methods for a pass. So only whole transformer blocks are compiled, and
only blocks with nothing attached: no hook on any module inside and no replaced forward (the
paths vitviz installs the same way every pass, `installed_forwards`, are the exception). Those
blocks run their compiled copy; the target's block and everything attached stays eager.

The blocks of a ViT share one class, so they share compiled code: a pass compiles once per
shape and grad mode, not once per block. A copy is swapped into the parent container only for
the pass, so module names, state dicts and every other caller see the model unchanged.

Where compilation is unavailable or fails (no C++ compiler for the CPU backend, an unsupported
Python), the first failure is remembered and the model runs eagerly from then on, with one
warning: the results are the same up to rounding.
"""
from __future__ import annotations

import warnings
import weakref
from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

from vitviz.models.fast.installed import is_installed

# Per network (weakly: a compiled block holds its block, not the network, so an evicted model
# is freed with its compiled blocks), block name -> compiled block.
_COMPILED: "weakref.WeakKeyDictionary[nn.Module, dict[str, nn.Module]]" = \
    weakref.WeakKeyDictionary()
_broken: list[str] = []  # why compilation failed in this process, once it has


def compile_failure() -> str | None:
    """Why compiled blocks are off in this process, or None while they work."""
    return _broken[0] if _broken else None


def _has_attachments(block: nn.Module) -> bool:
    for module in block.modules():
        if (module._forward_hooks or module._forward_pre_hooks or module._backward_hooks
                or module._backward_pre_hooks):
            return True
        replaced = module.__dict__.get("forward")
        if replaced is not None and not is_installed(module, replaced):
            return True
    return False


def compilable_blocks(model, layer_names) -> list[str]:
    """The blocks a pass reading `layer_names` may run compiled: the model's transformer blocks
    that hold none of the targets and finish before every target in forward order."""
    from vitviz.models.layers import layer_table, transformer_blocks

    table = layer_table(model)
    order = {info.name: i for i, info in enumerate(table)}
    targets = list(layer_names)
    if not all(name in order for name in targets):
        return []
    return [block for block in transformer_blocks(model)
            if all(order[block] < order[t] and not t.startswith(block + ".") for t in targets)]


def _compiled(network: nn.Module, name: str, block: nn.Module) -> nn.Module:
    blocks = _COMPILED.setdefault(network, {})
    if name not in blocks:
        blocks[name] = torch.compile(block)
    return blocks[name]


@contextmanager
def compiled_blocks(model, layer_names) -> Iterator[bool]:
    """Within the block, the eligible blocks of `model` run compiled; yields whether any do.

    Attachments are checked at the start of every pass: a patch made for this pass (gradient
    redirection, the moving-target probe) keeps its block eager. The capture hooks go on the
    targets, which are never inside a compiled block."""
    if _broken or not model.compile:
        yield False
        return
    swapped = []
    for name in compilable_blocks(model, layer_names):
        block = model.module.get_submodule(name)
        if _has_attachments(block):
            continue
        parent_name, _, child = name.rpartition(".")
        parent = model.module.get_submodule(parent_name)
        parent._modules[child] = _compiled(model.module, name, block)
        swapped.append((parent, child, block))
    try:
        yield bool(swapped)
    finally:
        for parent, child, block in swapped:
            parent._modules[child] = block


def compile_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that mean "compilation failed" rather than "the model failed"."""
    import torch._dynamo

    errors: list[type[BaseException]] = [torch._dynamo.exc.TorchDynamoException]
    try:
        from torch._inductor.exc import InductorError
    except ImportError:  # older torch: inductor's failures arrive as dynamo's
        pass
    else:
        errors.append(InductorError)
    return tuple(errors)


def give_up(error: BaseException) -> None:
    """Turn compiled blocks off for this process after `error`, with one warning."""
    reason = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
    _broken.append(reason)
    warnings.warn(f"torch.compile failed ({reason}); vitviz runs the model eagerly from now on "
                  "(same results up to rounding, slower steps)", RuntimeWarning, stacklevel=3)
