"""Property-based tests (hypothesis): decoding arbitrary bytes, and the box -> crop -> image geometry."""

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image
from torch import nn

from app.inference.checkpoint import LoadedModel
from app.inference.detector import Box, FaceDetector
from app.inference.errors import InvalidImageError, TooManyPixelsError, UnsupportedMediaTypeError
from app.inference.geometry import Frame, crop_box
from app.inference.imaging import decode_image
from app.inference.model import ONetConfig
from app.inference.predictor import LandmarkPredictor
from tests.robustness import inputs

# Pillow warns about the corrupt metadata these tests feed it; that is expected, and no failure.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:PIL")

DOMAIN_ERRORS = (InvalidImageError, UnsupportedMediaTypeError, TooManyPixelsError)
LIMIT = 4_000_000
SIZE = 62  # the network's input size

FUZZ = settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
GEOMETRY = settings(max_examples=150, deadline=None, database=None)


def decodes_or_refuses(data: bytes) -> None:
    """The property: an upright RGB uint8 array, or one of the domain errors; nothing else."""
    try:
        image = decode_image(data, LIMIT)
    except DOMAIN_ERRORS:
        return
    assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8
    assert image.shape[0] * image.shape[1] <= LIMIT


def tiff_with_strip_offsets_of_type(field_type: int) -> bytes:
    """A Pillow TIFF whose StripOffsets tag claims another field type: Pillow raised TypeError on it."""
    data = bytearray(inputs.encode(inputs.rgb_image(24, 16), "TIFF"))
    assert data[:4] == b"II*\x00"
    ifd = int.from_bytes(data[4:8], "little")
    for i in range(int.from_bytes(data[ifd : ifd + 2], "little")):
        entry = ifd + 2 + 12 * i
        if int.from_bytes(data[entry : entry + 2], "little") == 273:  # StripOffsets
            data[entry + 2 : entry + 4] = field_type.to_bytes(2, "little")
    return bytes(data)


def _bases() -> list[bytes]:
    image = inputs.rgb_image(24, 16)
    formats = [inputs.encode(image, fmt) for fmt in ("JPEG", "PNG", "BMP", "WEBP", "TIFF", "PPM", "GIF")]
    return [
        *formats,
        inputs.animated_gif(3, 12, 10),
        inputs.exif_png(image, 6),
        inputs.cmyk_jpeg(),
        inputs.png_16bit(),
        inputs.rgba_png(),
        inputs.encode(Image.fromarray((np.arange(16 * 24, dtype=np.uint16) * 150).reshape(16, 24)), "TIFF"),
        inputs.encode(Image.fromarray(inputs.noise(24, 16, 4), "CMYK"), "TIFF"),
        inputs.encode(Image.fromarray(inputs.noise(24, 16, 4), "RGBA"), "WEBP", lossless=True),
    ]


BASES = _bases()


@st.composite
def mutated_images(draw: st.DrawFn) -> bytes:
    """A valid file of some format with a few bytes overwritten, inserted or deleted: this reaches far
    deeper into the decoders than random bytes, which rarely get past the signature."""
    data = bytearray(draw(st.sampled_from(BASES)))
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(data) - 1))
        kind = draw(st.sampled_from(["set", "insert", "delete", "extreme"]))
        if kind == "set":
            data[at] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 16))]
        else:
            data[at : at + 4] = draw(
                st.sampled_from([b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\x7f\xff\xff\xff"])
            )
        if not data:
            data = bytearray(b"\x00")
    return bytes(data)


SIGNATURES = [
    b"\xff\xd8\xff",
    b"\x89PNG\r\n\x1a\n",
    b"GIF89a",
    b"BM",
    b"II*\x00",
    b"MM\x00*",
    b"RIFF",
    b"P6\n",
]


@FUZZ
@given(st.binary(max_size=2048))
def test_random_bytes_decode_or_raise_a_domain_error(data):
    decodes_or_refuses(data)


@FUZZ
@given(st.sampled_from(SIGNATURES), st.binary(max_size=512))
def test_a_format_signature_followed_by_junk_decodes_or_raises_a_domain_error(signature, tail):
    decodes_or_refuses(signature + tail)


@FUZZ
@given(mutated_images())
@example(tiff_with_strip_offsets_of_type(5))  # RATIONAL: found by this test, once a 500
@example(tiff_with_strip_offsets_of_type(11))  # FLOAT
def test_corrupted_images_decode_or_raise_a_domain_error(data):
    decodes_or_refuses(data)


@settings(max_examples=100, deadline=None, database=None)
@given(
    st.integers(1, 40),
    st.integers(1, 40),
    st.sampled_from(["L", "RGB", "RGBA"]),
    st.sampled_from(["PNG", "BMP", "TIFF", "PPM", "WEBP"]),
    st.integers(0, 2**32 - 1),
)
def test_lossless_files_decode_to_exactly_their_pixels(width, height, mode, fmt, seed):
    channels = {"L": 1, "RGB": 3, "RGBA": 4}[mode]
    image = Image.fromarray(inputs.noise(width, height, channels, seed), mode)
    if fmt == "PPM" and mode == "RGBA":
        image = image.convert("RGB")
    kwargs = {"lossless": True, "exact": True} if fmt == "WEBP" else {}
    decoded = decode_image(inputs.encode(image, fmt, **kwargs), LIMIT)
    np.testing.assert_array_equal(decoded, np.asarray(image.convert("RGB")))


@settings(max_examples=60, deadline=None, database=None)
@given(st.integers(1, 30), st.integers(1, 30), st.integers(1, 8), st.integers(0, 2**32 - 1))
def test_every_exif_orientation_decodes_to_the_upright_pixels(width, height, orientation, seed):
    upright = inputs.rgb_image(width, height, seed)
    decoded = decode_image(inputs.exif_png(upright, orientation), LIMIT)
    np.testing.assert_array_equal(decoded, np.asarray(upright))


@settings(max_examples=100, deadline=None, database=None)
@given(st.integers(1, 65535), st.integers(1, 65535), st.integers(1, 10**9), st.booleans())
def test_the_pixel_limit_is_decided_from_the_header_alone(width, height, limit, jpeg):
    data = inputs.jpeg_claiming(width, height) if jpeg else inputs.png_claiming(width, height)
    try:
        decode_image(data, limit)
    except TooManyPixelsError:
        assert width * height > limit
    except InvalidImageError:  # the header passed; the (bogus) pixel data did not
        assert width * height <= limit


# --- Geometry -----------------------------------------------------------------------------------------


class FixedOutput(nn.Module):
    """Stands in for the network: answers the normalised points it is given, for every crop."""

    def __init__(self) -> None:
        super().__init__()
        self.points = torch.zeros(68, 2)

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self.points.expand(batch.shape[0], 68, 2).clone()


NETWORK = FixedOutput()
PREDICTOR = LandmarkPredictor(
    LoadedModel(NETWORK, ONetConfig(), np.full(3, 0.5, np.float32), np.full(3, 0.25, np.float32), {}),
    FaceDetector(),
    flip_test_time=False,
    runtime="torch",
    optimise=False,  # a traced copy would freeze the stand-in's answer
)

boxes = st.builds(
    lambda left, top, width, height: Box(left, top, left + width - 1, top + height - 1),
    st.integers(-400, 600),
    st.integers(-400, 600),
    st.integers(1, 500),
    st.integers(1, 500),
)


@GEOMETRY
@given(
    boxes,
    st.floats(0.0, 0.5),
    st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1)), min_size=68, max_size=68),
)
def test_points_mapped_back_land_inside_the_padded_box(box, pad, unit_points):
    """The network's points, anywhere in the box padded by ``pad`` of its size on each side, come back
    in image pixels inside that same padded region of the box (dlib's inclusive box covers
    [left - 0.5, right + 0.5]), whatever the box's position, size or overlap with the image."""
    normalised = np.array(unit_points) * (1 + 2 * pad) - pad  # in [-pad, 1 + pad]
    NETWORK.points = torch.tensor(normalised, dtype=torch.float32)
    image = np.zeros((120, 160, 3), np.uint8)
    (((points,), _),) = PREDICTOR.estimate([image], [[box]])
    eps = 1e-3 * max(box.width, box.height)
    x0, x1 = box.left - 0.5 - pad * box.width - eps, box.right + 0.5 + pad * box.width + eps
    y0, y1 = box.top - 0.5 - pad * box.height - eps, box.bottom + 0.5 + pad * box.height + eps
    assert np.all((points[:, 0] >= x0) & (points[:, 0] <= x1)), (box, pad)
    assert np.all((points[:, 1] >= y0) & (points[:, 1] <= y1)), (box, pad)
    np.testing.assert_allclose(
        points, Frame.from_box(box).to_image(NETWORK.points.double().numpy()), atol=1e-4
    )


@GEOMETRY
@given(st.integers(8, 160), st.integers(8, 160), boxes)
def test_a_crop_of_a_box_partly_outside_the_image_keeps_the_box_geometry(width, height, box):
    """Every crop pixel shows what lies under its centre in the box's own geometry: image where that
    centre is inside the image, zero padding where it is outside (up to one resampling step at the edge),
    so a face cut by the border is never shifted or stretched."""
    image = np.full((height, width, 3), 255, np.uint8)
    crop = crop_box(image, box, SIZE)
    centres = (np.stack(np.meshgrid(np.arange(SIZE), np.arange(SIZE)), axis=-1) + 0.5) / SIZE
    where = Frame.from_box(box).to_image(centres)  # (SIZE, SIZE, 2) image coordinates, x then y
    margin = 1.0 + 1.5 * max(1.0, box.width / SIZE, box.height / SIZE)
    x, y = where[..., 0], where[..., 1]
    inside = (
        (x > -0.5 + margin) & (x < width - 0.5 - margin) & (y > -0.5 + margin) & (y < height - 0.5 - margin)
    )
    outside = (
        (x < -0.5 - margin) | (x > width - 0.5 + margin) | (y < -0.5 - margin) | (y > height - 0.5 + margin)
    )
    assert crop[inside].min(initial=255) >= 250
    assert crop[outside].max(initial=0) == 0


@GEOMETRY
@given(
    st.integers(8, 120),
    st.integers(8, 120),
    st.integers(-80, 150),
    st.integers(-80, 150),
    st.integers(8, SIZE),
    st.integers(0, 2**32 - 1),
)
def test_cropping_at_the_border_equals_cropping_from_a_zero_padded_image(
    width, height, left, top, side, seed
):
    """For boxes no larger than the crop (no area reduction first), cutting a box that leaves the image
    gives the same pixels as cutting it from the image zero-padded on all sides."""
    image = inputs.noise(width, height, 3, seed)
    box = Box(left, top, left + side - 1, top + side - 1)
    pad = 200
    padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)))
    moved = Box(box.left + pad, box.top + pad, box.right + pad, box.bottom + pad)
    difference = np.abs(crop_box(image, box, SIZE).astype(int) - crop_box(padded, moved, SIZE).astype(int))
    assert difference.max() <= 1
