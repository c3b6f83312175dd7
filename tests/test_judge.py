import pytest
import torch
import torch.nn.functional as F

from vitviz import judge
from vitviz.examples import LayerActivations


def ranked_layer(photos: int = 10) -> tuple[LayerActivations, torch.Tensor]:
    """Two units over `photos` photos (whole photo and one crop each): unit 0 prefers high photo
    numbers, unit 1 low ones; the judge's features place each view by its photo number."""
    views = [(p, (0.0, 0.0, 1.0, 1.0), kind) for p in range(photos) for kind in ("photo", "crop")]
    number = torch.tensor([float(p) + (0.5 if kind == "crop" else 0.0) for p, _, kind in views])
    values = torch.stack([number, -number], dim=1)
    stats = LayerActivations("layer", "patch", views, values, None,
                             [f"photo{p}" for p in range(photos)])
    angle = number / photos * (torch.pi / 2)
    features = torch.stack([angle.cos(), angle.sin()], dim=1)
    return stats, F.normalize(features, dim=1)


def test_queries_are_the_extreme_photos_and_never_serve_as_exemplars():
    stats, views = ranked_layer()
    pool = judge.ViewPool(stats, views)
    query = pool.queries(0, per_side=3)
    assert [stats.views[v][0] for v in query.high] == [9, 8, 7]
    assert [stats.views[v][0] for v in query.low] == [0, 1, 2]
    assert all(stats.views[v][2] == "crop" for v in query.high)  # each photo's strongest view
    assert all(stats.views[v][2] == "photo" for v in query.low)  # ...and weakest
    chosen = pool.exemplars(0, 3, query.photos)
    assert [stats.views[v][0] for v in chosen] == [6, 5, 4]  # one view per photo, held out


def test_references_that_explain_the_unit_score_high_and_the_control_low():
    stats, views = ranked_layer()
    pool = judge.ViewPool(stats, views)
    like_high, like_low = views[[19]], views[[0]]  # a picture like each unit's own exemplars
    figures = judge.two_afc(pool, [0, 1], [like_high, like_low], per_side=3)
    assert figures["exemplars"] == figures["pictures"] == 1.0
    assert figures["exemplars_control"] == figures["pictures_control"] == 0.0
    assert figures["pictures_margin"] == 1.0 and figures["pairs_per_unit"] == 9
    assert figures["unit_margins"] == {"exemplars": [1.0, 1.0], "pictures": [1.0, 1.0]}
    uninformative = F.normalize(torch.ones(1, 2), dim=1)  # equally near both kinds of photo
    flat = judge.two_afc(pool, [0, 1], [uninformative, uninformative], per_side=3)
    assert 0.0 < flat["pictures"] < 1.0 and flat["pictures_margin"] == 0.0


def test_layers_pool_by_unit_and_each_margin_gets_its_standard_error_over_units():
    from vitviz.report import layer_margin_rows, pool_verdicts, summary_rows

    def layer(margins):
        return {"pictures": 0.5 + sum(margins) / len(margins) / 2, "units": len(margins),
                "pairs_per_unit": 9, "unit_margins": {"pictures": margins},
                "pictures_margin": sum(margins) / len(margins)}

    pooled = pool_verdicts([layer([0.2, 0.4]), layer([0.0, 0.2, 0.2])], 5, ["a", "b"])
    assert pooled["unit_margins"]["pictures"] == [0.2, 0.4, 0.0, 0.2, 0.2]
    assert pooled["pictures"] == pytest.approx(0.5 + 1.0 / 5 / 2)  # weighted by units
    assert pooled["pictures_margin_se"] == pytest.approx(0.1414214 / 5 ** 0.5)
    # Each layer keeps its own margin: where pictures fall behind shows layer by layer.
    assert pooled["by_layer"]["a"] == {"pictures_margin": pytest.approx(0.3), "units": 2}
    assert pooled["by_layer"]["b"]["pictures_margin"] == pytest.approx(0.4 / 3)
    one = pool_verdicts([layer([0.3])], 1, ["a"])
    assert one["pictures_margin_se"] != one["pictures_margin_se"]  # NaN: one unit has no spread
    summary = {"presets": {}, "exemplars": {"exemplars": 0.7, "exemplars_control": 0.6,
                                            "exemplars_margin": 0.1, "exemplars_margin_se": 0.05}}
    assert summary_rows(summary)[-1][-1] == "+10% ± 5%"
    exemplars = {"by_layer": {"a": {"exemplars_margin": 0.25, "units": 2},
                              "b": {"exemplars_margin": -0.05, "units": 3}}}
    table = layer_margin_rows({"presets": {"robust": {"judge": pooled}}, "exemplars": exemplars})
    assert table == [["judge margin by layer", "robust", "natural exemplars"],
                     ["a (2 units)", "+30%", "+25%"], ["b (3 units)", "+13%", "-5%"]]


def test_the_judge_needs_enough_photos_and_two_units():
    pool = judge.ViewPool(*ranked_layer(photos=6))
    with pytest.raises(ValueError, match="at least 7 photos"):
        pool.queries(0, per_side=3)
    with pytest.raises(ValueError, match="two units"):
        judge.two_afc(pool, [0], count=2)
    with pytest.raises(ValueError, match="number of exemplars"):
        judge.two_afc(pool, [0, 1])
    with pytest.raises(ValueError, match="unknown"):
        judge.get_judge("humans")


def test_pictures_are_judged_whole_and_by_their_quarters(monkeypatch):
    seen = []

    def fake_embed(images, judge_name):
        seen.append(tuple(images.shape))
        return F.normalize(images.mean(dim=(2, 3)), dim=1)

    monkeypatch.setattr(judge, "embed", fake_embed)
    pictures = torch.zeros(2, 3, 8, 8)
    pictures[0, 0, :4, 4:] = 1.0  # picture 0: red in its top-right quarter only
    features = judge.embed_pictures(pictures, "dinov2")
    assert seen == [(2, 3, 8, 8), (8, 3, 4, 4)] and features.shape == (2, judge.PICTURE_VIEWS, 3)
    red = features[0, :, 0]
    assert red[2] == 1.0 and red[1] == red[3] == red[4] == 0.0  # whole, then TL, TR, BL, BR
