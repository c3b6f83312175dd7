"""Token focus: a unit's picture drives the unit over its strongest patch tokens only."""
import pytest
import torch

from vitviz.errors import UserError
from vitviz.models.forward import activations
from vitviz.models.tokens import reduce_tokens
from vitviz.rendering import objectives as O
from vitviz.rendering import token_focus
from vitviz.rendering.loop import optimise, resolve_preset
from vitviz.rendering.presets import PRESETS, from_knobs
from vitviz.store.runs import RunRequest

from conftest import NO_PHOTO_PRIOR, VIT_HIDDEN


def test_focus_is_the_mean_over_the_units_strongest_or_weakest_patch_tokens():
    act = torch.randn(2, 9, 6)  # one prefix token and 8 patches
    rows = O.Neuron("l", (1, 4))
    strongest = token_focus.focused(rows, act, 1, 2, 0.25, minimise=False)
    weakest = token_focus.focused(rows, act, 1, 2, 0.25, minimise=True)
    for row, unit in enumerate((1, 4)):
        patches = act[row, 1:, unit].sort().values
        assert torch.isclose(strongest[row], patches[-2:].mean())
        assert torch.isclose(weakest[row], patches[:2].mean())
    # The whole of the patches is the objective's own mean; a sliver is still one token.
    assert torch.allclose(token_focus.focused(rows, act, 1, 2, 1.0, False),
                          rows(_acts(act), 2))
    one = token_focus.focused(rows, act, 1, 2, 0.01, False)
    assert torch.allclose(one, act[torch.arange(2), 1:, torch.tensor([1, 4])].max(dim=1).values)


def _acts(act):
    """A pass's activations of layer "l", behind one prefix token."""
    class Acts(dict):
        prefix_tokens = 1
    return Acts(l=act)


def test_focus_holds_only_a_unit_read_over_its_patch_tokens():
    assert token_focus.applies({"type": "neuron", "tokens": "patch"})
    assert token_focus.applies({"type": "channel"})
    assert not token_focus.applies({"type": "neuron", "tokens": "cls"})
    assert not token_focus.applies({"type": "neuron", "tokens": 3})
    assert not token_focus.applies({"type": "direction", "tokens": "patch"})

    robust = PRESETS["robust"]
    assert "token_focus" not in robust.knobs()  # off: every key made before it holds
    on = robust.with_overrides(token_focus=0.25)
    assert on.knobs()["token_focus"] == 0.25
    assert from_knobs({**on.knobs(), "name": "robust"}) == on
    for wrong in (0.0, 1.5):
        with pytest.raises(UserError, match=r"token_focus is the fraction .* in \(0, 1\]"):
            robust.with_overrides(token_focus=wrong).check()

    def key(objective, **knobs):
        return RunRequest("tiny_vit", objective, (0,), "robust", knobs).key()

    patch = {"type": "neuron", "layer": VIT_HIDDEN, "unit": 3, "tokens": "patch"}
    cls = {**patch, "tokens": "cls"}
    assert key(patch, token_focus=0.25) != key(patch)
    assert key(cls, token_focus=0.25) == key(cls)
    accentuated = RunRequest("tiny_vit", patch, (0,), "robust", {"token_focus": 0.25},
                             accentuate=0)
    assert accentuated.key() == RunRequest("tiny_vit", patch, (0,), "robust", accentuate=0).key()


def test_focused_pictures_rise_on_their_strongest_tokens_more_than_on_their_mean(tiny_vit):
    # A rate over 16 units of the untrained test ViT, at the end of 40 steps: the focused
    # pictures' units, against the unfocused ones', on their strongest quarter of patches
    # relative to the mean over all of them; and they still rise from their start.
    units = tuple(range(0, 64, 4))
    objective = O.neuron(VIT_HIDDEN, units)
    found = {}
    for focus in (1.0, 0.25):
        preset = resolve_preset("robust", **NO_PHOTO_PRIOR, precision="fp32", token_focus=focus)
        records = list(optimise(tiny_vit, objective, [0] * len(units), preset, steps=40,
                                record_every=0))
        with torch.no_grad():
            act = activations(tiny_vit, tiny_vit.to_input(records[-1].images),
                              [VIT_HIDDEN])[VIT_HIDDEN]
        top = token_focus.focused(objective, act, tiny_vit.prefix_tokens, len(units), 0.25,
                                  False)
        index = torch.arange(len(units))
        mean = reduce_tokens(act[index, :, torch.tensor(units)], "patch",
                             tiny_vit.prefix_tokens)
        found[focus] = top - mean, torch.tensor(records[-1].activation), \
            torch.tensor(records[0].activation)
    assert (found[0.25][0] > found[1.0][0]).float().mean() >= 0.75, found
    assert (found[0.25][1] > found[0.25][2]).float().mean() >= 0.75, found
