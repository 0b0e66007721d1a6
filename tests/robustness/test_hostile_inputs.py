"""The hostile-input suite, end to end against a real uvicorn process over loopback.

Every kind of broken, huge, odd or malformed upload gets its documented status and JSON error (see
docs/ROBUSTNESS.md), the service answers the next ordinary request normally, and the process's resident
memory after all of it stays within a fixed bound of its memory after warm-up. Every input is generated
here (tests/robustness/inputs.py). tests/api/test_errors.py checks single errors in-process; this is the
whole table over real HTTP, with the memory and the next request checked too.
"""

import base64
import json
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import numpy as np
import pytest
from PIL import Image

from app.api.bodies import json_body_limit
from app.api.schemas import BatchResponse, LandmarksResponse
from tests.conftest import LFPW, LiveServer
from tests.robustness import inputs
from tests.robustness.live import MiB, RawResponse, assert_json_error, rss_bytes, slow_chunked_upload

pytestmark = pytest.mark.slow  # a real uvicorn process

UPLOAD_LIMIT = 2_000_000  # smaller than the default, so that the oversized uploads stay quick
# Resident memory after the whole table (run several times) may exceed the memory after warm-up by this.
RSS_GROWTH_BOUND = 64 * MiB
# Peak growth while four 16-megapixel images are in progress at once (one alone: about 300 MiB).
CONCURRENT_LARGE_BOUND = 500 * MiB
BOUNDARY = "robustness-boundary-7f3a"
FACE = LFPW / "image_0002.png"  # one frontal face, 300x450

Send = Callable[[httpx.Client], httpx.Response]


@dataclass(frozen=True)
class Hostile:
    name: str
    send: Send
    status: int
    code: str | None = None  # the error code; None for a 200 with the landmarks JSON
    size: tuple[int, int] | None = None  # for a 200: the (width, height) the answer must report


def upload(data: bytes, content_type: str | None = "image/jpeg", params: dict | None = None) -> Send:
    return lambda c: c.post("/landmarks", params=params, files={"image": ("upload", data, content_type)})


def raw(body: bytes, content_type: str | None, path: str = "/landmarks") -> Send:
    headers = {"content-type": content_type} if content_type else {}
    return lambda c: c.post(path, content=body, headers=headers)


def multipart(parts: list[tuple[str, str | None, str | None, bytes]]) -> Send:
    return raw(inputs.multipart_body(BOUNDARY, parts), f"multipart/form-data; boundary={BOUNDARY}")


def batch_files(parts: list[tuple[str, str | None, str | None, bytes]]) -> Send:
    return raw(
        inputs.multipart_body(BOUNDARY, parts),
        f"multipart/form-data; boundary={BOUNDARY}",
        "/landmarks/batch",
    )


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def json_body(body: object, path: str = "/landmarks") -> Send:
    return raw(json.dumps(body).encode(), "application/json", path)


def as_json(data: bytes, data_url_type: str | None = None) -> Send:
    prefix = f"data:{data_url_type};base64," if data_url_type else ""
    return json_body({"image": prefix + b64(data)})


JPEG = inputs.small_jpeg()
PNG = inputs.small_png()
RANDOM = np.random.default_rng(7).integers(0, 256, 4096, dtype=np.uint8).tobytes()
ICO = inputs.encode(inputs.rgb_image(16, 16), "ICO")

CASES: list[Hostile] = [
    # Not an image
    Hostile("empty file", upload(b""), 400, "invalid_image"),
    Hostile("random bytes", upload(RANDOM), 400, "invalid_image"),
    Hostile("text declared as an image", upload(b"hello, world\n" * 50), 400, "invalid_image"),
    Hostile(
        "text declared as text", upload(b"hello, world\n" * 50, "text/plain"), 415, "unsupported_media_type"
    ),
    Hostile("recognised non-image format (ICO)", upload(ICO, "image/x-icon"), 415, "unsupported_media_type"),
    *[
        Hostile(f"truncated JPEG ({keep:.0%})", upload(inputs.truncated(JPEG, keep)), 400, "invalid_image")
        for keep in (0.02, 0.3, 0.9, 0.99)
    ],
    *[
        Hostile(
            f"truncated PNG ({keep:.0%})",
            upload(inputs.truncated(PNG, keep), "image/png"),
            400,
            "invalid_image",
        )
        for keep in (0.02, 0.3, 0.9, 0.99)
    ],
    # Decompression bombs: refused from the header, before a pixel is decoded
    Hostile(
        "PNG header claiming 30000x30000", upload(inputs.png_claiming(30000, 30000)), 413, "too_many_pixels"
    ),
    Hostile(
        "JPEG header claiming 30000x30000", upload(inputs.jpeg_claiming(30000, 30000)), 413, "too_many_pixels"
    ),
    # ... and a legal image whose detection at upsample=2 would cost gigabytes: refused by the detector budget
    Hostile(
        "4000x4000 flat PNG (60 kB) with upsample=2",
        upload(inputs.large_flat_png(4000), "image/png", {"upsample": 2}),
        413,
        "too_many_pixels",
    ),
    Hostile(
        "4000x4000 flat PNG at upsample=0",
        upload(inputs.large_flat_png(4000), "image/png"),
        200,
        size=(4000, 4000),
    ),
    # Odd but valid images
    Hostile(
        "1x1 image, upsample=2", upload(inputs.tiny(1, 1), "image/png", {"upsample": 2}), 200, size=(1, 1)
    ),
    Hostile("2x2 image", upload(inputs.tiny(2, 2), "image/png"), 200, size=(2, 2)),
    Hostile("animated GIF", upload(inputs.animated_gif(), "image/gif"), 200, size=(40, 30)),
    Hostile("CMYK JPEG", upload(inputs.cmyk_jpeg()), 200, size=(64, 48)),
    Hostile("16-bit PNG", upload(inputs.png_16bit(), "image/png"), 200, size=(64, 48)),
    Hostile("RGBA PNG", upload(inputs.rgba_png(), "image/png"), 200, size=(64, 48)),
    Hostile("grayscale PNG", upload(inputs.grayscale_png(), "image/png"), 200, size=(64, 48)),
    Hostile("grayscale JPEG", upload(inputs.grayscale_jpeg()), 200, size=(64, 48)),
    Hostile(
        "palette PNG with transparency",
        upload(inputs.palette_png_with_transparency(), "image/png"),
        200,
        size=(64, 48),
    ),
    Hostile("1-bit PNG", upload(inputs.bilevel_png(), "image/png"), 200, size=(64, 48)),
    # Content types: the bytes decide; a declared type only names the 415 when the bytes are no image
    Hostile("JPEG declared as text/plain", upload(JPEG, "text/plain"), 200, size=(96, 80)),
    Hostile("JPEG declared as PNG", upload(JPEG, "image/png"), 200, size=(96, 80)),
    Hostile(
        "JPEG part without content type", multipart([("image", "a.jpg", None, JPEG)]), 200, size=(96, 80)
    ),
    # The form itself
    Hostile("no body, no content type", raw(b"", None), 415, "unsupported_media_type"),
    Hostile("non-multipart body (raw JPEG)", raw(JPEG, "image/jpeg"), 415, "unsupported_media_type"),
    Hostile(
        "url-encoded form",
        raw(b"image=aGVsbG8%3D", "application/x-www-form-urlencoded"),
        415,
        "unsupported_media_type",
    ),
    Hostile(
        "empty multipart body", raw(b"", f"multipart/form-data; boundary={BOUNDARY}"), 422, "validation_error"
    ),
    Hostile("multipart without boundary", raw(b"--x\r\n", "multipart/form-data"), 400, "invalid_request"),
    Hostile(
        "garbage multipart",
        raw(b"\x00garbage\r\n--", f"multipart/form-data; boundary={BOUNDARY}"),
        400,
        "invalid_request",
    ),
    Hostile("missing field", multipart([("photo", "a.jpg", "image/jpeg", JPEG)]), 422, "validation_error"),
    Hostile(
        "text instead of a file", multipart([("image", None, None, b"not a file")]), 422, "validation_error"
    ),
    Hostile(
        "two files",
        multipart([("image", "a.jpg", "image/jpeg", JPEG), ("image", "b.jpg", "image/jpeg", JPEG)]),
        422,
        "validation_error",
    ),
    Hostile(
        "nine files",
        multipart([("image", f"{i}.jpg", "image/jpeg", JPEG) for i in range(9)]),
        400,
        "invalid_request",
    ),
    Hostile("GET instead of POST", lambda c: c.get("/landmarks"), 405, "method_not_allowed"),
    # Parameters
    *[
        Hostile(f"parameter {params}", upload(JPEG, params=params), 422, "validation_error")
        for params in (
            {"upsample": 3},
            {"upsample": -1},
            {"upsample": "x"},
            {"upsample": "1.5"},
            {"upsample": "9" * 30},
            {"max_faces": 0},
            {"max_faces": 10**6},
            {"max_faces": "nan"},
        )
    ],
    Hostile(
        "render: unknown format",
        lambda c: c.post(
            "/landmarks/render", params={"format": "gif"}, files={"image": ("a", JPEG, "image/jpeg")}
        ),
        422,
        "validation_error",
    ),
    Hostile(
        "render: truncated PNG",
        lambda c: c.post(
            "/landmarks/render", files={"image": ("a", inputs.truncated(PNG, 0.5), "image/png")}
        ),
        400,
        "invalid_image",
    ),
    # Size: announced too large (answered at once) and too large without announcing it
    Hostile("upload over the byte limit", upload(JPEG + b"\0" * UPLOAD_LIMIT), 413, "payload_too_large"),
    # Base64 in JSON: the same answers as the multipart file, and the JSON's own 422s
    Hostile("JSON: base64 of text", as_json(b"hello, world\n" * 50), 400, "invalid_image"),
    Hostile("JSON: not base64", json_body({"image": "not base64 at all!"}), 400, "invalid_image"),
    Hostile("JSON: empty string", json_body({"image": ""}), 400, "invalid_image"),
    Hostile(
        "JSON: data URL declaring text",
        json_body({"image": "data:text/plain;base64," + b64(b"hello, world\n" * 50)}),
        415,
        "unsupported_media_type",
    ),
    Hostile(
        "JSON: PNG header claiming 30000x30000",
        as_json(inputs.png_claiming(30000, 30000)),
        413,
        "too_many_pixels",
    ),
    Hostile(
        "JSON: base64 that would decode past the byte limit (not decoded: it is no base64)",
        json_body({"image": "A" * (UPLOAD_LIMIT // 3 * 4 + 8) + "!"}),
        413,
        "payload_too_large",
    ),
    Hostile(
        "JSON: body over the limit for JSON",
        json_body({"image": "A" * (2 * UPLOAD_LIMIT)}),
        413,
        "payload_too_large",
    ),
    Hostile("JSON: data URL of a 16-bit PNG", as_json(inputs.png_16bit(), "image/png"), 200, size=(64, 48)),
    Hostile(
        "JSON: base64 with line breaks every 76 characters",
        json_body({"image": "\r\n".join(textwrap.wrap(b64(JPEG), 76))}),
        200,
        size=(96, 80),
    ),
    Hostile(
        "JSON: URL-safe base64 without padding",
        json_body({"image": base64.urlsafe_b64encode(PNG).decode().rstrip("=")}),
        200,
        size=(96, 80),
    ),
    Hostile("JSON: malformed", raw(b'{"image": "aGVsbG8=', "application/json"), 422, "validation_error"),
    Hostile("JSON: not UTF-8", raw(b'{"image": "\xff\xfe"}', "application/json"), 422, "validation_error"),
    Hostile("JSON: nested 100000 deep", raw(b"[" * 100_000, "application/json"), 422, "validation_error"),
    Hostile("JSON: an array", json_body([b64(JPEG)]), 422, "validation_error"),
    Hostile("JSON: image is a number", json_body({"image": 12}), 422, "validation_error"),
    Hostile("JSON: missing image", json_body({"photo": b64(JPEG)}), 422, "validation_error"),
    Hostile("JSON: unknown field", json_body({"image": b64(JPEG), "upsample": 1}), 422, "validation_error"),
    # The batch: a bad image is an error in its result (tested apart); these fail the request
    Hostile(
        "batch: raw JPEG body", raw(JPEG, "image/jpeg", "/landmarks/batch"), 415, "unsupported_media_type"
    ),
    Hostile("batch: empty list", json_body({"images": []}, "/landmarks/batch"), 422, "validation_error"),
    Hostile(
        "batch: 100000 items",
        json_body({"images": [{"image": "QQ=="}] * 100_000}, "/landmarks/batch"),
        422,
        "validation_error",
    ),
    Hostile(
        "batch: item id a number",
        json_body({"images": [{"id": 1, "image": b64(JPEG)}]}, "/landmarks/batch"),
        422,
        "validation_error",
    ),
    Hostile(
        "batch: 17 files",
        batch_files([("images", f"{i}.jpg", "image/jpeg", JPEG) for i in range(17)]),
        422,
        "validation_error",
    ),
    Hostile(
        "batch: 30 files",
        batch_files([("images", f"{i}.jpg", "image/jpeg", JPEG) for i in range(30)]),
        400,
        "invalid_request",
    ),
    Hostile(
        "batch: files in the field 'image'",
        batch_files([("image", "a.jpg", "image/jpeg", JPEG)]),
        422,
        "validation_error",
    ),
    Hostile(
        "batch: images together over the byte limit",
        # Within the framing allowance of the body limit: refused by the sum of the files.
        batch_files(
            [
                ("images", f"{i}.jpg", "image/jpeg", JPEG.ljust(UPLOAD_LIMIT // 4 + 1000, b"\0"))
                for i in range(4)
            ]
        ),
        413,
        "payload_too_large",
    ),
]


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    live = LiveServer(env={"LANDMARKS_MAX_UPLOAD_BYTES": str(UPLOAD_LIMIT)})
    try:
        live.wait_ready()
        yield live
    finally:
        code, output = live.stop()
        assert code in (0, -15), output[-3000:]


@pytest.fixture(scope="module")
def http(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as client:
        yield client


def check(case: Hostile, response: httpx.Response) -> None:
    if case.code is not None:
        assert_json_error(response, case.status, case.code)
        return
    assert response.status_code == case.status, response.text
    body = LandmarksResponse.model_validate(response.json())
    assert (body.image.width, body.image.height) == case.size


def face_request(client: httpx.Client) -> httpx.Response:
    return client.post("/landmarks", files={"image": ("face.png", FACE.read_bytes(), "image/png")})


def assert_serves_normally(client: httpx.Client) -> None:
    response = face_request(client)
    assert response.status_code == 200, response.text
    assert len(response.json()["faces"]) == 1


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_input_gets_its_documented_answer_and_the_next_request_is_served(http, case):
    check(case, case.send(http))
    assert_serves_normally(http)


def oversized_chunks(total: int, kind: str, size: int = 32 * 1024) -> Iterator[bytes]:
    for _ in range(total // size):
        yield (b"A" if kind == "json" else b"\xff") * size


SLOW_BODIES = {
    # (the body before the endless part, its content type, the body limit it must be refused at)
    "multipart": (
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="image"; filename="big.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode(),
        f"multipart/form-data; boundary={BOUNDARY}",
        UPLOAD_LIMIT,
    ),
    "json": (b'{"image": "data:image/jpeg;base64,', "application/json", json_body_limit(UPLOAD_LIMIT)),
}


def send_slow_oversized(server: LiveServer, kind: str = "multipart") -> RawResponse:
    preamble, content_type, limit = SLOW_BODIES[kind]
    # Ten times the limit, announced nowhere: the server can only notice while it reads.
    return slow_chunked_upload(
        "127.0.0.1", server.port, "/landmarks", preamble, oversized_chunks(10 * limit, kind), content_type
    )


@pytest.mark.parametrize("kind", SLOW_BODIES)
def test_slow_chunked_upload_over_the_limit_is_refused_while_it_streams(server, http, kind):
    limit = SLOW_BODIES[kind][2]
    answer = send_slow_oversized(server, kind)
    assert answer.status == 413
    error = answer.json()["error"]
    assert error["code"] == "payload_too_large" and error["request_id"] == answer.headers["x-request-id"]
    assert answer.headers.get("connection") == "close"
    # Answered once the limit was passed, long before the client's ten times the limit.
    assert limit <= answer.sent_bytes <= 2 * limit, answer.sent_bytes
    assert_serves_normally(http)


def test_batch_with_a_corrupt_image_among_good_ones_answers_each_image(http):
    good = FACE.read_bytes()
    files = [
        ("images", ("face.png", good, "image/png")),
        ("images", ("broken.jpg", inputs.truncated(JPEG, 0.3), "image/jpeg")),
        ("images", ("bomb.png", inputs.png_claiming(30000, 30000), "image/png")),
        ("images", ("again.png", good, "image/png")),
    ]
    response = http.post("/landmarks/batch", files=files)
    assert response.status_code == 200, response.text
    results = BatchResponse.model_validate(response.json()).results
    assert [r.id for r in results] == ["face.png", "broken.jpg", "bomb.png", "again.png"]
    assert [r.index for r in results] == [0, 1, 2, 3]
    assert [(r.error.status, r.error.code) for r in results[1:3]] == [
        (400, "invalid_image"),
        (413, "too_many_pixels"),
    ]
    single = face_request(http).json()
    for result in (results[0], results[3]):
        assert result.error is None
        assert result.model_dump(include={"image", "faces"}) == {
            "image": single["image"],
            "faces": [LandmarksResponse.model_validate(single).faces[0].model_dump()],
        }
    assert_serves_normally(http)


def test_exif_orientations_give_the_landmarks_of_the_upright_photo(http):
    upright = Image.open(FACE).convert("RGB")
    reference = face_request(http).json()
    (face,) = reference["faces"]
    box = face["box"]
    tolerance = 0.02 * np.sqrt(box["width"] * box["height"])
    for orientation in range(1, 9):
        data = inputs.exif_png(upright, orientation)
        response = http.post("/landmarks", files={"image": (f"o{orientation}.png", data, "image/png")})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["image"] == reference["image"], f"orientation {orientation} was not applied"
        assert len(body["faces"]) == 1, f"orientation {orientation}"
        assert body["faces"][0]["box"] == box, f"orientation {orientation}"
        offsets = np.linalg.norm(
            np.array(body["faces"][0]["landmarks"]) - np.array(face["landmarks"]), axis=1
        )
        assert offsets.max() <= tolerance, f"orientation {orientation}: {offsets.max():.2f} px"


def test_memory_stays_bounded_under_the_whole_table(server, http):
    # Warm-up: every path once (lazy imports, allocator pools, the first large decode).
    for case in CASES:
        case.send(http)
    send_slow_oversized(server)
    assert_serves_normally(http)
    baseline = rss_bytes(server.process.pid)
    peak = baseline
    for _ in range(3):
        for case in CASES:
            check(case, case.send(http))
            peak = max(peak, rss_bytes(server.process.pid))
        assert send_slow_oversized(server).status == 413
    assert_serves_normally(http)
    after = rss_bytes(server.process.pid)
    print(
        f"RSS after warm-up {baseline / MiB:.0f} MiB, peak {peak / MiB:.0f} MiB, after {after / MiB:.0f} MiB"
    )
    assert after - baseline <= RSS_GROWTH_BOUND, (
        f"resident memory grew by {(after - baseline) / MiB:.0f} MiB (bound {RSS_GROWTH_BOUND / MiB:.0f} MiB)"
    )


def test_concurrent_large_images_take_turns_so_memory_stays_near_that_of_one():
    """Four 55 kB uploads of a flat 4000x4000 image at once, with the pixel limit at 16 megapixels: each
    is more than the worker's pixel budget (LANDMARKS_MAX_PIXELS_IN_FLIGHT), which runs them one after
    the other. (Side by side they took one worker from 359 to
    1148 MiB here; in turn, to 673 MiB.)"""
    data = inputs.large_flat_png(4000)
    # Seconds each here: the last would wait past the queue timeout, and this test is about memory.
    env = {"LANDMARKS_QUEUE_TIMEOUT_SECONDS": "300", "LANDMARKS_LOG_LEVEL": "warning"}
    server = LiveServer(env={"LANDMARKS_MAX_PIXELS": str(16_000_000), **env})
    try:
        server.wait_ready()
        baseline = rss_bytes(server.process.pid)
        peak, done = [baseline], threading.Event()

        def sample() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], rss_bytes(server.process.pid))
                time.sleep(0.01)

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            with ThreadPoolExecutor(4) as pool:
                statuses = list(
                    pool.map(
                        lambda _: (
                            httpx.post(
                                f"{server.url}/landmarks",
                                files={"image": ("big.png", data, "image/png")},
                                timeout=120,
                            ).status_code
                        ),
                        range(4),
                    )
                )
        finally:
            done.set()
            sampler.join()
    finally:
        server.stop()
    assert statuses == [200] * 4
    growth = peak[0] - baseline
    print(f"peak RSS {baseline / MiB:.0f} -> {peak[0] / MiB:.0f} MiB")
    assert growth <= CONCURRENT_LARGE_BOUND, f"peak grew by {growth / MiB:.0f} MiB"
