"""The iBUG .pts reader and the folder scan."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.training.conftest import AFLW, LFPW
from training.folders import scan_folder
from training.pts import PtsError, read_pts


def write_pts(path: Path, points: np.ndarray, header: str) -> Path:
    body = "\n".join(f"{x:.3f} {y:.3f}" for x, y in points)
    path.write_text(f"{header}\n{{\n{body}\n}}\n")
    return path


def test_reads_a_real_300w_file() -> None:
    points = read_pts(LFPW / "image_0001.pts")
    assert points.shape == (68, 2)
    assert points.dtype == np.float64
    first_line = (LFPW / "image_0001.pts").read_text().splitlines()[3]
    assert points[0].tolist() == [float(v) for v in first_line.split()]


def test_reads_version_1_and_version_2_headers(tmp_path: Path) -> None:
    points = np.arange(136, dtype=float).reshape(68, 2) / 3
    v1 = write_pts(tmp_path / "a.pts", points, "version: 1\nn_points:  68")
    v2 = write_pts(
        tmp_path / "b.pts", points, "version: 2\nimage_size_x: 640\nimage_size_y: 480\nn_points: 68"
    )
    np.testing.assert_allclose(read_pts(v1), points, atol=1e-3)
    np.testing.assert_allclose(read_pts(v2), points, atol=1e-3)


def test_rejects_a_count_that_contradicts_the_header(tmp_path: Path) -> None:
    path = write_pts(tmp_path / "a.pts", np.zeros((67, 2)), "version: 1\nn_points: 68")
    with pytest.raises(PtsError, match="n_points"):
        read_pts(path)


def test_rejects_an_unknown_version_and_a_missing_block(tmp_path: Path) -> None:
    with pytest.raises(PtsError, match="version"):
        read_pts(write_pts(tmp_path / "a.pts", np.zeros((68, 2)), "version: 3\nn_points: 68"))
    (tmp_path / "b.pts").write_text("version: 1\nn_points: 68\n1 2\n")
    with pytest.raises(PtsError):
        read_pts(tmp_path / "b.pts")


def test_scan_keeps_68_point_faces_and_counts_the_others(tmp_path: Path) -> None:
    image = np.full((32, 32, 3), 128, np.uint8)
    for stem, n in [("frontal", 68), ("profile", 39), ("other", 68)]:
        cv2.imwrite(str(tmp_path / f"{stem}.png"), image)
        write_pts(tmp_path / f"{stem}.pts", np.ones((n, 2)), f"version: 1\nn_points: {n}")
    cv2.imwrite(str(tmp_path / "unlabelled.jpg"), image)
    (tmp_path / "broken.pts").write_text("garbage")
    cv2.imwrite(str(tmp_path / "broken.png"), image)
    scan = scan_folder(tmp_path)
    assert [item.stem for item in scan.images] == ["frontal", "other"]
    assert scan.skipped_points == ["profile"]
    assert scan.unreadable == ["broken"]
    assert scan.unlabelled == 1


def test_scan_of_a_real_folder_finds_every_labelled_image() -> None:
    scan = scan_folder(AFLW)
    assert len(scan.images) == 1600
    assert not scan.skipped_points and not scan.unreadable
    assert all(item.points.shape == (68, 2) for item in scan.images[:20])


def test_scan_of_a_missing_folder_says_so(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not found"):
        scan_folder(tmp_path / "nope")
