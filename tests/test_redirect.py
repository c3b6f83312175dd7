import torch
from torch import nn

from vitviz.rendering.redirect import LEAKY_SLOPE, leaky_targets, redirected


def gradient(module, x, upstream, enabled):
    x = x.clone().requires_grad_(True)
    with redirected(module, enabled):
        out = module(x)
    out.backward(upstream)
    return out.detach(), x.grad


def test_blocked_gradient_passes_only_where_it_would_raise_the_input():
    gelu = nn.Sequential(nn.GELU())
    x = torch.tensor([-6.0, -6.0, 2.0, -0.5])
    upstream = torch.tensor([-1.0, 1.0, -1.0, -1.0])  # loss gradient: negative asks for more
    plain_out, plain = gradient(gelu, x, upstream, False)
    out, redirected_grad = gradient(gelu, x, upstream, True)
    assert torch.equal(out, plain_out)  # forward values are untouched
    assert abs(plain[0]) < 1e-6 and redirected_grad[0] == -1.0  # dead unit revived
    assert redirected_grad[1] == plain[1]  # pushing the input down keeps the true slope
    assert redirected_grad[2] == plain[2]  # positive side unchanged
    assert redirected_grad[3] == -1.0


def test_relu_is_redirected_and_modules_are_restored():
    model = nn.Sequential(nn.ReLU())
    _, grad = gradient(model, torch.tensor([-2.0]), torch.tensor([-1.0]), True)
    assert grad[0] == -1.0
    assert "forward" not in vars(model[0])
    _, grad = gradient(model, torch.tensor([-2.0]), torch.tensor([-1.0]), False)
    assert grad[0] == 0.0


def leaky_gradient(module, name, x, enabled=True):
    x = x.clone().requires_grad_(True)
    with leaky_targets(module, [name], enabled):
        out = module(x)
    out.sum().backward()
    return out.detach(), x.grad


def test_leaky_target_climbs_from_the_negative_tail_with_exact_values():
    model = nn.Sequential(nn.Identity(), nn.GELU())
    x = torch.tensor([-3.0, -1.0, 0.5, 2.0])
    exact, plain = leaky_gradient(model, "1", x, enabled=False)
    values, leaky = leaky_gradient(model, "1", x)
    assert torch.equal(values, exact)  # forward values untouched: reported activations are exact
    assert plain[1] < 0  # below -0.75 ascending GELU's output pushes its input further down
    assert leaky[0] == leaky[1] == LEAKY_SLOPE  # ...the leaky gradient always pushes it up
    assert torch.equal(leaky[2:], plain[2:])  # the positive side keeps GELU's own slope


def test_leaky_target_on_an_in_place_relu_and_only_on_the_target():
    def model(relus):
        # An in-place op cannot act on the leaf itself: a copy comes first.
        return nn.Sequential(nn.Hardtanh(-10, 10), *[nn.ReLU(inplace=True) for _ in range(relus)])

    x = torch.tensor([-2.0, 1.0])
    two = model(2)
    values, grad = leaky_gradient(two, "2", x)
    assert torch.equal(values, torch.tensor([0.0, 1.0]))
    assert grad[0] == 0.0  # the first ReLU is not the target: its zero gradient stays
    assert two[2].inplace and not two[2]._forward_hooks  # restored afterwards
    _, grad = leaky_gradient(model(1), "1", x)
    assert grad[0] == LEAKY_SLOPE and grad[1] == 1.0
