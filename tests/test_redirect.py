import torch
from torch import nn

from vitviz.redirect import redirected


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
