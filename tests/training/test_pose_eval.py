"""The pose evaluation on a small real AFLW2000-3D folder with the shipped model."""

from app.inference import LandmarkPredictor
from tests.training.conftest import AFLW, AFLW_DETECTED
from training.pose_eval import evaluate_pose, markdown_table


def test_pose_evaluation_counts_faces_and_meets_the_yaw_bound(small_aflw, model_path) -> None:
    predictor = LandmarkPredictor.from_checkpoint(model_path)
    result = evaluate_pose(predictor, small_aflw, labels=AFLW.parent / "abs_yaw.json", baseline=True)
    assert result.images == len(AFLW_DETECTED) + 1
    assert len(result.stems) + result.undetected + result.over_limit == result.images
    assert len(result.stems) == len(AFLW_DETECTED)
    summary = result.summary()
    assert summary["methods"]["ours"]["abs_yaw_mae"] <= 8.0
    assert set(summary["methods"]) == {"ours", "dlib"}
    assert "| ours |" in markdown_table(result)
