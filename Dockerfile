# Face-landmarks service image: the networks' ONNX export on ONNX Runtime (no torch), dlib from
# prebuilt wheels, the model baked in.
#
#   docker build -t face-landmarks .                       # or: docker compose build
#   docker run --rm -p 8000:8000 face-landmarks
#
# Stage 1 builds a virtual environment with every runtime dependency; stage 2 copies only that
# venv onto a clean base, so pip caches, build requirements and wheel files stay out of the image.
# Wheels put in ./wheels (git-ignored) are preferred over the index (offline builds, mirrors). See
# docs/DEPLOYMENT.md.

# The runtime requirements, read from pyproject.toml. Only this file's content reaches the builder,
# so editing other parts of pyproject.toml (extras, tool settings) does not reinstall the dependencies.
FROM python:3.11-slim-bookworm AS requirements
WORKDIR /src
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /requirements.txt \
    && cat /requirements.txt


FROM python:3.11-slim-bookworm AS builder

# Mirrors and offline builds: these reach pip as environment variables during the RUN steps.
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_FIND_LINKS

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_DEFAULT_TIMEOUT=120 \
    PYTHONDONTWRITEBYTECODE=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# strip, for the shared libraries below (in this stage only).
RUN apt-get update \
    && apt-get install --yes --no-install-recommends binutils \
    && rm -rf /var/lib/apt/lists/*

RUN python -m venv /opt/venv

WORKDIR /src

# Dependencies first, in their own layer: changing the code does not reinstall them. The service needs
# no torch (it runs the ONNX export): fail the build if something pulled it in.
COPY wheels/ /wheels/
COPY --from=requirements /requirements.txt /tmp/requirements.txt
RUN pip install --find-links /wheels -r /tmp/requirements.txt \
    && python -c "import importlib.util, sys; sys.exit('torch is in the serving image' if importlib.util.find_spec('torch') else 0)" \
    && pip check

# Files a CPU inference service never opens: ONNX Runtime's C library (the Python module has its own
# copy of the runtime linked in; 35 MB), its model tools, the test suites of numpy and friends,
# numpy's f2py and C headers, Pillow's AVIF plugin (imaging.py accepts no AVIF; 5 MB with libavif), and
# uvloop's symbol table (13 -> 2 MB). Only uvloop's: the libraries that auditwheel patched (numpy's,
# OpenCV's) no longer load once stripped.
RUN sp=/opt/venv/lib/python3.11/site-packages \
    && rm -f "$sp"/onnxruntime/capi/libonnxruntime.so.* \
    && rm -rf "$sp"/onnxruntime/tools "$sp"/onnxruntime/transformers "$sp"/onnxruntime/quantization \
    && find "$sp" -depth -type d -name tests -prune -exec rm -rf {} + \
    && rm -rf "$sp"/numpy/f2py "$sp"/numpy/_core/include "$sp"/bin/f2py /opt/venv/bin/f2py \
    && rm -f "$sp"/PIL/_avif.* "$sp"/pillow.libs/libavif-* \
    && strip --strip-unneeded "$sp"/uvloop/*.so \
    && python -c "import uvloop, onnxruntime, cv2, numpy, dlib"

# The service itself (no extras: training needs torch and lightning, which stay out of this image).
COPY pyproject.toml README.md ./
COPY app/ app/
# The page's HTML, CSS and JavaScript are package data (pyproject's package-data): check they came along.
# Then pip and setuptools leave the venv (25 MB): the image installs nothing at run time.
RUN pip install --no-deps . \
    && python -c "import app.main, sys; sys.exit('app.main imports torch' if 'torch' in sys.modules else 0)" \
    && python -c "import sys; from app.web.routes import PAGE, STATIC_DIR; sys.exit(0 if PAGE.is_file() and (STATIC_DIR / 'app.js').is_file() else 'the page is missing from the installed package')" \
    && pip uninstall --yes pip setuptools wheel


FROM python:3.11-slim-bookworm AS runtime

LABEL org.opencontainers.image.title="face-landmarks" \
      org.opencontainers.image.description="REST service returning the 68 iBUG 300-W landmarks of every face in a photo" \
      org.opencontainers.image.licenses="MIT"

RUN groupadd --system --gid 10001 landmarks \
    && useradd --system --uid 10001 --gid landmarks --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin landmarks

COPY --from=builder /opt/venv /opt/venv
# Owned by root and read-only to the service user: the process cannot alter its own model. The ONNX
# export and its manifest only (checksums checked at start-up); the torch checkpoint stays out.
COPY models/landmarks.json models/landmarks.stage*.onnx /app/models/

# Settings (all overridable with -e / compose `environment:` / the pod spec). uvicorn reads
# WEB_CONCURRENCY itself; keep LANDMARKS_TORCH_THREADS (the runtime's threads per worker, whatever
# the runtime) x WEB_CONCURRENCY <= the CPUs granted.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    WEB_CONCURRENCY=1 \
    LANDMARKS_MODEL_PATH=/app/models/landmarks.json \
    LANDMARKS_RUNTIME=onnxruntime \
    LANDMARKS_LOG_LEVEL=info \
    LANDMARKS_MAX_UPLOAD_BYTES=10485760 \
    LANDMARKS_MAX_PIXELS=40000000 \
    LANDMARKS_DEFAULT_UPSAMPLE=auto \
    LANDMARKS_AUTO_SCAN_PIXELS=2000000 \
    LANDMARKS_TORCH_THREADS=1 \
    LANDMARKS_MAX_IN_FLIGHT=4 \
    LANDMARKS_MAX_QUEUE=64 \
    LANDMARKS_QUEUE_TIMEOUT_SECONDS=10 \
    LANDMARKS_SHUTDOWN_GRACE_SECONDS=2

WORKDIR /app
USER 10001:10001
EXPOSE 8000

# Ready, not merely alive: 503 until the model is loaded and warmed up (about 2 s).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health/ready', timeout=4)"]

# The launcher loads the model once (exit 3 if it is bad, whatever WEB_CONCURRENCY is), then
# replaces itself with uvicorn; other options are passed on to uvicorn.
CMD ["face-landmarks", "serve", "--host", "0.0.0.0", "--port", "8000", "--no-server-header"]
