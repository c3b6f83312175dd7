import torch
import torch.nn.functional as F

from vitviz.rendering.transforms import RandomResizedCrop, RandomRotate, _affine_grid


def test_a_crop_with_rotation_turns_it_in_the_same_resampling():
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    whole = RandomResizedCrop(16, min_area=1.0, max_area=1.0, degrees=10.0)
    crop_rngs = [torch.Generator().manual_seed(0)]
    rotate_rngs = [torch.Generator().manual_seed(0)]
    for _ in range(3):  # the crop's own draws (side, centre y, centre x) come first
        torch.rand(2, generator=rotate_rngs[0])
    assert torch.allclose(whole(x, crop_rngs, 0.0), RandomRotate(10.0)(x, rotate_rngs, 0.0),
                          atol=1e-6)


def coverage(crop: RandomResizedCrop) -> torch.Tensor:
    """How much each canvas pixel is seen by 256 crops: the gradient of their sum."""
    canvas = torch.zeros(256, 1, 32, 32, requires_grad=True)
    crop(canvas, [torch.Generator().manual_seed(0)], 0.0).sum().backward()
    return canvas.grad.sum(dim=(0, 1))


def test_overhang_lets_crops_see_the_border_nearly_as_often_as_the_centre():
    def border_to_centre(seen: torch.Tensor) -> float:
        return float(seen[:, :2].mean() / seen[12:20, 12:20].mean())

    inside = border_to_centre(coverage(RandomResizedCrop(8, 0.0625, 0.25)))
    reaching = border_to_centre(coverage(RandomResizedCrop(8, 0.0625, 0.25, overhang=0.25)))
    assert inside < 0.5 and reaching > 1.5 * inside, (inside, reaching)


def test_roll_and_jitter_move_each_row_as_its_own_roll_and_slice():
    from vitviz.rendering.transforms import Jitter, Roll

    x = torch.rand(5, 3, 12, 12, generator=torch.Generator().manual_seed(3))
    seeds = [torch.Generator().manual_seed(s) for s in range(5)]
    rolled = Roll(4)(x, seeds, 0.0)
    seeds = [torch.Generator().manual_seed(s) for s in range(5)]
    dy = torch.cat([torch.randint(-4, 5, (1,), generator=g) for g in seeds]).tolist()
    dx = torch.cat([torch.randint(-4, 5, (1,), generator=g) for g in seeds]).tolist()
    assert len(set(zip(dy, dx))) > 1
    for row, y, z, out in zip(x, dy, dx, rolled):
        assert torch.equal(out, row.roll((y, z), dims=(1, 2)))

    seeds = [torch.Generator().manual_seed(s) for s in range(5)]
    cropped = Jitter(3)(x, seeds, 0.0)
    seeds = [torch.Generator().manual_seed(s) for s in range(5)]
    dy = torch.cat([torch.randint(0, 4, (1,), generator=g) for g in seeds]).tolist()
    dx = torch.cat([torch.randint(0, 4, (1,), generator=g) for g in seeds]).tolist()
    assert cropped.shape == (5, 3, 9, 9)
    for row, y, z, out in zip(x, dy, dx, cropped):
        assert torch.equal(out, row[:, y:y + 9, z:z + 9])


def test_the_elementwise_grid_is_affine_grid():
    matrices = torch.randn(6, 2, 3, generator=torch.Generator().manual_seed(0))
    for size in (7, 224):
        expected = F.affine_grid(matrices, [6, 3, size, size], align_corners=False)
        assert torch.allclose(_affine_grid(matrices, size, torch.empty(0)), expected, atol=2e-6)
