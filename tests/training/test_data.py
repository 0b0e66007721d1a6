"""Detector matching, the split, the cache and the training crops (against the inference crops)."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from app.inference import Box, Detection, LandmarkPredictor
from app.inference.geometry import Frame, crop_frame
from app.inference.imaging import decode_image
from app.inference.landmarks import FLIP_PERMUTATION
from tests.conftest import exit_codes_at_once
from tests.training.conftest import AFLW, AFLW_DETECTED, AFLW_UNDETECTED
from training.augment import occlude
from training.cache import FaceCache, frame_in_patch, prepare_folder
from training.cli import main
from training.config import AugmentConfig, PrepareConfig
from training.dataset import FaceCropDataset, split_items
from training.folders import match_detection, scan_folder
from training.split import SPLIT_SALT, VAL_FRACTION, is_validation, subset_folder

NO_PHOTOMETRIC = dict(brightness=0.0, contrast=0.0, colour=0.0, grayscale=0.0, blur=0.0)


@pytest.fixture(scope="module")
def cache(small_aflw: Path, tmp_path_factory: pytest.TempPathFactory) -> FaceCache:
    return prepare_folder(small_aflw, PrepareConfig(cache=str(tmp_path_factory.mktemp("cache"))))


def square_points(cx: float, cy: float, half: float) -> np.ndarray:
    return np.array([[cx - half, cy - half], [cx + half, cy + half]])


def test_match_takes_the_box_that_holds_the_centre_of_the_points() -> None:
    left = Detection(Box(0, 0, 99, 99), 1.0)
    right = Detection(Box(200, 0, 279, 79), 2.0)
    assert match_detection([left, right], square_points(240, 40, 30)) is right
    assert match_detection([left, right], square_points(150, 40, 30)) is None
    assert match_detection([], square_points(50, 50, 30)) is None


def test_match_prefers_the_largest_box_holding_the_centre() -> None:
    small = Detection(Box(40, 40, 79, 79), 3.0)
    large = Detection(Box(0, 0, 119, 119), 1.0)
    assert match_detection([small, large], square_points(60, 60, 10)) is large


def test_split_is_a_stable_hash_of_the_stem() -> None:
    # Fixed values: changing the rule or the salt would silently move images between the splits.
    salt = "face-landmarks-split-v1"
    assert (salt, 0.15) == (SPLIT_SALT, VAL_FRACTION)
    assert [
        is_validation(s, 0.15, salt) for s in ["image00041", "image00044", "image00002", "image00006"]
    ] == [
        True,
        True,
        False,
        False,
    ]
    stems = [item.stem for item in scan_folder(AFLW).images]
    share = np.mean([is_validation(s, 0.15, salt) for s in stems])
    assert 0.12 < share < 0.18
    assert not any(is_validation(s, 0.0, salt) for s in stems[:50])


def test_prepare_caches_detected_faces_and_reports_the_missed_ones(cache: FaceCache) -> None:
    assert sorted(cache.stems) == sorted(AFLW_DETECTED)
    assert cache.report["undetected_stems"] == [AFLW_UNDETECTED]
    assert cache.report["undetected"] == 1 and cache.report["faces"] == len(AFLW_DETECTED)
    assert cache.points.shape == (len(AFLW_DETECTED), 68, 2)
    for i in range(len(cache)):
        cx, cy = cache.points[i].min(0) / 2 + cache.points[i].max(0) / 2
        assert cache.box(i).contains(cx, cy)


def test_prepare_reuses_a_valid_cache(small_aflw: Path, cache: FaceCache, tmp_path: Path) -> None:
    config = PrepareConfig(cache=str(tmp_path))
    first = prepare_folder(small_aflw, config)
    reloaded = prepare_folder(small_aflw, config, detector=object())  # type: ignore[arg-type]
    assert reloaded.stems == first.stems
    np.testing.assert_array_equal(reloaded.patch_data, first.patch_data)
    assert json.loads((next(tmp_path.glob("*.json"))).read_text())["undetected"] == 1


def _save_repeatedly(cache: FaceCache, path: Path, times: int) -> None:
    for _ in range(times):
        cache.save(path)


def test_two_runs_building_the_same_cache_at_once_both_succeed(cache: FaceCache, tmp_path: Path) -> None:
    # Two trainings started together both build a missing cache; they once shared a temporary file
    # name, and the second rename failed (FileNotFoundError) and killed its run.
    path = tmp_path / "aflw-train-0123456789.npz"
    assert exit_codes_at_once(_save_repeatedly, (cache, path, 8)) == [0, 0]
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temporary file left
    assert path.stat().st_mode & 0o777 == 0o644
    np.testing.assert_array_equal(FaceCache.load(path).patch_data, cache.patch_data)


def test_an_unaugmented_training_crop_is_the_inference_crop(
    cache: FaceCache, random_checkpoint: Path
) -> None:
    predictor = LandmarkPredictor.from_checkpoint(random_checkpoint)
    dataset = FaceCropDataset([(cache, i) for i in range(len(cache))], predictor.input_size)
    differences = []
    for i, stem in enumerate(cache.stems):
        image = decode_image((AFLW / f"{stem}.jpg").read_bytes(), 10**8)
        served = predictor.stages[0].crops(image, [Frame.from_box(cache.box(i))])[0].astype(float)
        crop, target, frame = dataset.sample(i, None)
        differences.append(np.abs(crop.astype(float) - served).mean())
        np.testing.assert_allclose(frame.to_image(target), cache.points[i], atol=1e-9)
        assert frame == Frame.from_box(cache.box(i))
    # Grey levels (0..255): boxes up to cache_box_size are cached unreduced and give the served crop;
    # larger ones go through one more area reduction, a blur of ~1-2 levels.
    assert np.mean(differences) < 0.5, differences
    assert max(differences) < 2.5, differences


def test_an_augmented_crop_is_the_jittered_frame_of_the_whole_image(cache: FaceCache) -> None:
    augment = AugmentConfig(flip=0.0, rotation=20.0, scale=0.1, shift=0.08, **NO_PHOTOMETRIC)
    dataset = FaceCropDataset([(cache, i) for i in range(len(cache))], 62, augment)
    rng = np.random.default_rng(1)
    for i in range(4):
        crop, target, frame = dataset.sample(i, rng)
        assert frame.angle != 0.0
        image = decode_image((AFLW / f"{cache.stems[i]}.jpg").read_bytes(), 10**8)
        direct = crop_frame(image, frame, 62).astype(float)
        # Same geometry (a one-pixel shift would cost >10 levels); the area reduction of a rotated frame
        # works on a region of slightly different extent in the patch than in the image: ~2 levels.
        assert np.abs(crop.astype(float) - direct).mean() < 3.0
        np.testing.assert_allclose(frame.to_image(target), cache.points[i], atol=1e-9)


def test_a_flip_mirrors_the_crop_and_permutes_the_points(cache: FaceCache) -> None:
    square = [i for i in range(len(cache)) if cache.box(i).width == cache.box(i).height]
    flip_only = AugmentConfig(flip=1.0, rotation=0.0, scale=0.0, shift=0.0, **NO_PHOTOMETRIC)
    plain = FaceCropDataset([(cache, i) for i in square], 62)
    flipped = FaceCropDataset([(cache, i) for i in square], 62, flip_only)
    for k in range(len(square)):
        crop, target, _ = plain.sample(k, None)
        crop_f, target_f, _ = flipped.sample(k, np.random.default_rng(k))
        # Equal up to rounding of the interpolation weights: at most 1 grey level with OpenCV 5, up to 4
        # on a few pixels with 4.11 (mean under 0.03); a one-pixel shift would cost several levels on average.
        diff = np.abs(crop_f.astype(int) - crop[:, ::-1])
        assert diff.max() <= 5 and diff.mean() < 0.1
        mirrored = target_f[FLIP_PERMUTATION]
        mirrored[:, 0] = 1.0 - mirrored[:, 0]
        np.testing.assert_allclose(mirrored, target, atol=1e-9)


def test_an_occlusion_paints_one_rectangle_of_one_colour_and_leaves_the_points(cache: FaceCache) -> None:
    still = AugmentConfig(flip=0.0, rotation=0.0, scale=0.0, shift=0.0, **NO_PHOTOMETRIC)
    plain = FaceCropDataset([(cache, 0)], 62, still)
    occluded = FaceCropDataset([(cache, 0)], 62, dataclasses.replace(still, occlusion=1.0))
    areas = []
    for seed in range(20):
        crop, target, _ = plain.sample(0, np.random.default_rng(seed))
        crop_o, target_o, _ = occluded.sample(0, np.random.default_rng(seed))
        np.testing.assert_array_equal(target_o, target)
        changed = np.argwhere((crop_o != crop).any(axis=2))
        (top, left), (bottom, right) = changed.min(0), changed.max(0)
        block = crop_o[top : bottom + 1, left : right + 1].reshape(-1, 3)
        assert (block == block[0]).all()  # one rectangle, one colour
        assert 6 <= max(bottom - top, right - left) + 1 <= round(0.4 * 62)
        areas.append(len(block) / 62**2)
    assert 0.01 < np.mean(areas) < 0.16
    # Probability 0 (the default) draws nothing from the generator: runs from before it repeat.
    rng = np.random.default_rng(3)
    assert occlude(crop, rng, still) is crop
    assert rng.random() == np.random.default_rng(3).random()


def test_frame_in_patch_maps_patch_pixels_back_to_image_pixels() -> None:
    patch_frame = Frame(cx=100.5, cy=80.5, width=200.0, height=200.0)
    frame = Frame(cx=110.0, cy=90.0, width=50.0, height=60.0, angle=0.3)
    inside = frame_in_patch(frame, patch_frame, 100)
    # A corner of the frame, in patch pixels, is the same corner mapped through the patch's geometry.
    corner_patch = inside.to_image(np.array([0.0, 1.0]))
    corner_image = frame.to_image(np.array([0.0, 1.0]))
    np.testing.assert_allclose(patch_frame.to_image((corner_patch + 0.5) / 100), corner_image)


def test_training_and_validation_items_split_by_image(cache: FaceCache) -> None:
    train, val = split_items([cache], VAL_FRACTION, SPLIT_SALT)
    assert {cache.stems[i] for _, i in val} == {"image00041", "image00044", "image00049"}
    assert len(train) + len(val) == len(cache)


def test_subset_keeps_the_validation_split_and_nested_fractions_of_the_rest(tmp_path: Path) -> None:
    source = AFLW
    stems = sorted(p.stem for p in source.glob("*.pts"))[:40]
    folder = tmp_path / "all"
    folder.mkdir()
    for stem in stems:  # a small labelled folder: each image with its .pts
        for path in source.glob(stem + ".*"):
            (folder / path.name).symlink_to(path)
    val = {s for s in stems if is_validation(s, VAL_FRACTION, SPLIT_SALT)}
    assert 0 < len(val) < len(stems)

    kept = {}
    for fraction in (0.25, 0.5, 1.0):
        out = tmp_path / f"f{fraction}"
        assert main(["subset", "--folder", str(folder), "--fraction", str(fraction), "--out", str(out)]) == 0
        kept[fraction] = {p.stem for p in out.glob("*.pts")}
        assert {p.stem for p in out.iterdir()} == kept[fraction]  # each image comes with its .pts
        assert all(p.is_symlink() and p.resolve().parent == source.resolve() for p in out.iterdir())
        assert val <= kept[fraction]
        assert len(kept[fraction] - val) == round(fraction * (len(stems) - len(val)))
    assert kept[0.25] <= kept[0.5] <= kept[1.0] == set(stems)
    again = subset_folder(folder, 0.25, tmp_path / "again", 0, VAL_FRACTION, SPLIT_SALT)
    assert {p.stem for p in (tmp_path / "again").glob("*.pts")} == kept[0.25]
    assert again == {
        "validation": len(val),
        "training": len(kept[0.25] - val),
        "training_available": 40 - len(val),
    }

    with pytest.raises(FileExistsError):
        subset_folder(folder, 0.5, tmp_path / "again", 0, VAL_FRACTION, SPLIT_SALT)
    with pytest.raises(ValueError, match="fraction"):
        subset_folder(folder, 0.0, tmp_path / "none", 0, VAL_FRACTION, SPLIT_SALT)
