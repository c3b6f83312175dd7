"""Forwards that vitviz installs on a network's modules for one pass (the fast self-attention
and patch-embedding paths), and how other code tells them from forwards someone else replaced.

Each module gets one forward for its lifetime: installing the same function every pass lets a
compiled block (vitviz.models.fast.compiled) that traced it run again without recompiling. The functions
are kept beside the modules, not on them, so a module still pickles, and they reach their
module through a weak reference: a strong one, held as the module's value here, would keep the
module alive forever.
"""
from __future__ import annotations

import weakref
from contextlib import contextmanager
from typing import Callable, Iterable, Iterator

from torch import nn

_FORWARDS: "weakref.WeakKeyDictionary[nn.Module, Callable]" = weakref.WeakKeyDictionary()


def is_installed(module: nn.Module, forward) -> bool:
    """Whether `forward`, found on `module`, is a path vitviz installed."""
    return _FORWARDS.get(module) is forward


@contextmanager
def installed(modules: Iterable[nn.Module],
              make: Callable[["weakref.ref[nn.Module]"], Callable]) -> Iterator[None]:
    """Within the block, each module runs the forward `make` builds from a weak reference to
    it (built once per module); on exit each runs its own again."""
    modules = list(modules)
    for module in modules:
        if module not in _FORWARDS:
            _FORWARDS[module] = make(weakref.ref(module))
        module.forward = _FORWARDS[module]
    try:
        yield
    finally:
        for module in modules:
            del module.forward
