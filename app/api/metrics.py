"""Prometheus metrics. They are process-wide by nature, so they live at module level.

With several worker processes set ``PROMETHEUS_MULTIPROC_DIR`` to an empty writable folder and
/metrics aggregates all workers (prometheus-client's multiprocess mode).
"""

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from app.inference.pipeline import Batch

REQUESTS = Counter(
    "landmarks_http_requests_total",
    "HTTP requests by route, method and status.",
    ["route", "method", "status"],
)
LATENCY = Histogram(
    "landmarks_http_request_duration_seconds",
    "Time from the first byte of the request to the last byte of the response.",
    ["route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
STAGE_LATENCY = Histogram(
    "landmarks_stage_duration_seconds",
    "Time spent in each stage of the inference path.",
    ["stage"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
FACES = Counter("landmarks_faces_detected_total", "Faces found in all processed images.")
FACES_PER_IMAGE = Histogram(
    "landmarks_faces_per_image", "Faces found per processed image.", buckets=(0, 1, 2, 5, 10, 20, 50, 100)
)
DETECTIONS_BY_UPSAMPLE = Counter(
    "landmarks_detections_by_upsample_total",
    "Detections by the dlib upsampling they ran at (after resolving upsample=auto).",
    ["upsample"],
)
REJECTED = Counter(
    "landmarks_images_rejected_total",
    "Uploads rejected, by reason (the error code, or queue_full, queue_timeout, shutting_down for a 503).",
    ["reason"],
)
# Seconds a request waits for its turn (the admission queue, the pixel budget).
WAIT_BUCKETS = (0.0, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
IN_FLIGHT = Gauge(
    "landmarks_requests_in_flight",
    "Landmark requests running (admission slots held; a batch holds one per image).",
    multiprocess_mode="livesum",
)
QUEUE_DEPTH = Gauge(
    "landmarks_queue_depth",
    "Landmark requests waiting in the admission queue (slots wanted; a batch wants one per image).",
    multiprocess_mode="livesum",
)
QUEUE_WAIT = Histogram(
    "landmarks_queue_wait_seconds",
    "Time spent in the admission queue, by how the wait ended: started, queue_timeout, shutting_down, "
    "disconnected (the client left), cancelled.",
    ["outcome"],
    buckets=WAIT_BUCKETS,
)
PIXEL_BUDGET_WAIT = Histogram(
    "landmarks_pixel_budget_wait_seconds",
    "Time an admitted request waited for the worker's pixel budget before decoding, by budget: photos "
    "(LANDMARKS_MAX_PIXELS_IN_FLIGHT: photos and stream frames) or videos (LANDMARKS_MAX_PIXELS of frames, "
    "each video holding its frame size for its whole length).",
    ["budget"],
    buckets=WAIT_BUCKETS,
)

FRAMES = Counter(
    "landmarks_frames_total",
    "Frames of videos and live streams, by source (video, stream) and outcome (processed, dropped).",
    ["source", "outcome"],
)
STREAMS = Gauge(
    "landmarks_streams_active",
    "Video requests and WebSocket streams open, by source.",
    ["source"],
    multiprocess_mode="livesum",
)


def render_metrics() -> tuple[bytes, str]:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def record_photos(batch: Batch) -> None:
    """The metrics of one call of the photo pipeline, single photo or batch alike: the time of each
    stage, and per photo the upsampling its detection ran at and the faces it found."""
    for stage, seconds in batch.stage_seconds:
        STAGE_LATENCY.labels(stage=stage).observe(seconds)
    for photo in batch.photos:
        DETECTIONS_BY_UPSAMPLE.labels(upsample=str(photo.level)).inc()
        FACES.inc(len(photo.faces))
        FACES_PER_IMAGE.observe(len(photo.faces))
