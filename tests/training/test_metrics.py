"""The evaluation metrics against cases computed by hand."""

import math

import numpy as np
import pytest
import torch

from app.inference import Box
from training.metrics import auc, ced, failure_rate, nme_box, nme_interocular, roc_auc, spearman, summarise
from training.module import l2_loss, warmup_cosine, wing_loss
from training.module import nme_box as nme_box_torch


def face(offset: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    truth = np.zeros((68, 2))
    truth[36] = (0.0, 0.0)
    truth[45] = (10.0, 0.0)
    return truth + np.array(offset), truth


def test_nme_box_divides_the_mean_error_by_the_root_of_the_box_area() -> None:
    pred, truth = face((3.0, 4.0))  # every point 5 px off
    box = Box(left=0, top=0, right=9, bottom=39)  # 10 x 40 (inclusive corners) -> sqrt(400) = 20
    assert nme_box(pred, truth, box) == pytest.approx(5.0 / 20.0)


def test_nme_box_averages_point_errors() -> None:
    truth = np.zeros((68, 2))
    pred = truth.copy()
    pred[:34, 0] = 2.0  # half the points 2 px off, half exact: mean 1 px
    assert nme_box(pred, truth, Box(0, 0, 99, 99)) == pytest.approx(0.01)


def test_interocular_nme_uses_the_outer_eye_corners_of_the_ground_truth() -> None:
    pred, truth = face((0.0, 1.0))  # 1 px off, eyes 10 px apart
    assert nme_interocular(pred, truth) == pytest.approx(0.1)


def test_ced_is_the_share_of_faces_at_or_below_each_threshold() -> None:
    errors = np.array([0.05, 0.01, 0.1, 0.02])
    assert ced(errors, np.array([0.0, 0.01, 0.03, 0.08])).tolist() == [0.0, 0.25, 0.5, 0.75]


def test_auc_is_the_normalised_area_under_the_ced() -> None:
    errors = np.array([0.0, 0.04, 0.08, 0.2])
    # Areas by hand: 0.08, 0.04, 0, 0 -> mean 0.03 -> / 0.08
    assert auc(errors, 0.08) == pytest.approx(0.375)
    x = np.linspace(0, 0.08, 80001)
    assert auc(errors, 0.08) == pytest.approx(np.trapezoid(ced(errors, x), x) / 0.08, abs=1e-4)


def test_auc_of_perfect_and_hopeless_faces() -> None:
    assert auc(np.zeros(5)) == pytest.approx(1.0)
    assert auc(np.full(5, 0.5)) == 0.0


def test_failure_rate_counts_errors_strictly_above_the_threshold() -> None:
    assert failure_rate(np.array([0.01, 0.08, 0.0801, 0.5]), 0.08) == pytest.approx(0.5)


def test_summary_of_no_faces_is_nan_not_an_error() -> None:
    summary = summarise(np.array([]), np.array([]))
    assert summary["faces"] == 0 and math.isnan(summary["auc"])


def test_training_nme_matches_the_evaluation_nme() -> None:
    rng = np.random.default_rng(0)
    box = Box(10, 20, 129, 149)  # 120 x 130
    truth_px = rng.uniform(0, 150, size=(68, 2))
    pred_px = truth_px + rng.normal(0, 3, size=(68, 2))
    size = np.array([box.width, box.height], dtype=np.float64)
    origin = np.array([box.left - 0.5, box.top - 0.5])
    to_norm = lambda p: (p - origin) / size  # noqa: E731
    value = nme_box_torch(
        torch.tensor(to_norm(pred_px))[None], torch.tensor(to_norm(truth_px))[None], torch.tensor(size)[None]
    )
    assert float(value) == pytest.approx(nme_box(pred_px, truth_px, box))


def test_wing_loss_is_logarithmic_for_small_errors_and_linear_for_large_ones() -> None:
    target = torch.zeros(1, 1, 2)
    small = wing_loss(torch.tensor([[[1.0, 0.0]]]), target, width=10.0, curvature=2.0)
    assert float(small) == pytest.approx(10 * math.log(1.5))
    large = wing_loss(torch.tensor([[[12.0, 0.0]]]), target, width=10.0, curvature=2.0)
    assert float(large) == pytest.approx(12.0 - (10.0 - 10.0 * math.log(6.0)))
    at_width = wing_loss(torch.tensor([[[10.0, 0.0]]]), target, width=10.0, curvature=2.0)
    assert float(at_width) == pytest.approx(10.0 * math.log(6.0))  # continuous at |x| = w


def test_l2_loss_is_half_the_squared_distance() -> None:
    assert float(l2_loss(torch.tensor([[[3.0, 4.0]]]), torch.zeros(1, 1, 2))) == pytest.approx(12.5)


def test_learning_rate_warms_up_linearly_then_decays_by_cosine() -> None:
    assert warmup_cosine(0, 10, 110, 0.01) == pytest.approx(0.1)
    assert warmup_cosine(9, 10, 110, 0.01) == pytest.approx(1.0)
    assert warmup_cosine(60, 10, 110, 0.01) == pytest.approx(0.01 + 0.99 * 0.5)
    assert warmup_cosine(110, 10, 110, 0.01) == pytest.approx(0.01)


def test_spearman_is_one_for_any_increasing_relation_and_minus_one_for_a_decreasing_one() -> None:
    x = np.array([0.01, 0.02, 0.05, 0.2, 0.03])
    assert spearman(x, np.exp(10 * x)) == pytest.approx(1.0)
    assert spearman(x, -(x**3)) == pytest.approx(-1.0)


def test_roc_auc_counts_ordered_pairs_and_halves_ties() -> None:
    scores = np.array([0.1, 0.4, 0.35, 0.8])
    positive = np.array([False, False, True, True])
    # Pairs (pos, neg): (0.35 > 0.1), (0.35 < 0.4), (0.8 > 0.1), (0.8 > 0.4): 3 of 4.
    assert roc_auc(scores, positive) == pytest.approx(0.75)
    assert roc_auc(np.array([1.0, 1.0]), np.array([True, False])) == pytest.approx(0.5)
    assert math.isnan(roc_auc(scores, np.zeros(4, bool)))


def test_summary_reports_the_error_estimate_only_when_there_is_one() -> None:
    nme = np.array([0.02, 0.03, 0.1, 0.05])
    plain = summarise(nme, nme * 4)
    assert "estimate_spearman" not in plain
    with_estimate = summarise(nme, nme * 4, estimate=nme * 2, nme_in=nme / 2)
    assert with_estimate["estimate_spearman"] == pytest.approx(1.0)
    assert with_estimate["estimate_roc_auc"] == pytest.approx(1.0)
    assert with_estimate["nme_inner_mean"] == pytest.approx(nme.mean() / 2)


def test_supervision_trains_each_face_through_its_head_and_the_served_head_on_inner_points() -> None:
    from training.config import TrainConfig
    from training.module import LandmarkModule

    module = LandmarkModule(torch.nn.Identity(), TrainConfig(), np.zeros(3), np.ones(3))
    mask = module.supervision(torch.tensor([0, 1]), num_heads=2, num_points=68)
    assert mask[0, 0].sum() == 68 and mask[0, 1].sum() == 0  # a 300-W face: its own head only
    assert mask[1, 1].sum() == 68  # an AFLW face: all its points through its own head,
    assert mask[1, 0, :17].sum() == 0 and mask[1, 0, 17:].sum() == 51  # and its inner points via head 0
    alone = LandmarkModule(torch.nn.Identity(), TrainConfig(share_inner=False), np.zeros(3), np.ones(3))
    assert alone.supervision(torch.tensor([1]), 2, 68)[0, 0].sum() == 0


def test_the_module_standardises_its_crops_as_the_served_stage_does() -> None:
    from training.config import TrainConfig
    from training.module import LandmarkModule

    mean, std = np.array([0.5, 0.4, 0.3], np.float32), np.array([0.25, 0.2, 0.3], np.float32)
    module = LandmarkModule(torch.nn.Identity(), TrainConfig(), mean, std)
    images = torch.randint(
        0, 256, (4, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    expected = (
        images.double() / 255.0 - torch.from_numpy(mean).double().view(1, 3, 1, 1)
    ) / torch.from_numpy(std).double().view(1, 3, 1, 1)
    got = module.standardise(images)
    assert got.dtype == torch.float32 and got.shape == images.shape
    torch.testing.assert_close(got.double(), expected, rtol=0, atol=1e-5)
