"""The patch embedding as a matrix product computes what the convolution computes, and steps
aside where it must (convolutions that are not patch embeddings, inputs that are not whole
patches, a forward someone else replaced)."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vitviz.models.fast import patches as fast_patches
from vitviz.models.fast.patches import fast_patch_embedding, patches_as_matmul

from conftest import assert_same_pass, fast_and_plain_passes


@pytest.mark.parametrize("kernel", [(4, 4), (14, 14), (2, 3)])
def test_the_product_equals_the_strided_convolution(kernel):
    torch.manual_seed(0)
    x = torch.randn(3, 5, kernel[0] * 4, kernel[1] * 6)
    weight, bias = torch.randn(7, 5, *kernel), torch.randn(7)
    expected = F.conv2d(x, weight, bias, stride=kernel)
    assert torch.allclose(patches_as_matmul(x, weight, bias), expected, atol=1e-4)
    assert torch.allclose(patches_as_matmul(x, weight, None), expected - bias[:, None, None],
                          atol=1e-4)


def test_activations_and_input_gradients_match_the_convolution(tiny_vit, monkeypatch):
    calls = []
    monkeypatch.setattr(fast_patches, "patches_as_matmul",
                        lambda *args: calls.append(1) or patches_as_matmul(*args))
    fast, plain = fast_and_plain_passes(tiny_vit)
    assert calls, "torchvision's patch embedding did not take the product"
    assert "forward" not in tiny_vit.module.conv_proj.__dict__, "the forward was not restored"
    assert_same_pass(fast, plain)


def test_other_convolutions_and_inputs_run_the_modules_own_forward():
    net = nn.Sequential(nn.Conv2d(3, 4, 4, stride=4), nn.Conv2d(4, 4, 3, stride=1),
                        nn.Conv2d(4, 4, 2, stride=2, padding=1), nn.Conv2d(4, 4, 2, stride=2))
    replaced = lambda x: x  # noqa: E731 - a forward someone else installed
    net[3].forward = replaced
    with fast_patch_embedding(net):
        assert "forward" in net[0].__dict__
        assert all("forward" not in net[i].__dict__ for i in (1, 2))
        assert net[3].forward is replaced
        x = torch.randn(2, 3, 18, 18)  # not whole 4-px patches: the convolution drops the rest
        assert torch.allclose(net[0](x), F.conv2d(x, net[0].weight, net[0].bias, stride=4),
                              atol=1e-5)
    assert net[3].forward is replaced
