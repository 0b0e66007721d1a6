# Face-landmarks service image: CPU-only torch, dlib from prebuilt wheels, the checkpoint baked in.
#
#   docker build -t face-landmarks .                       # or: docker compose build
#   docker run --rm -p 8000:8000 face-landmarks
#
# Stage 1 builds a virtual environment with every runtime dependency; stage 2 copies only that
# venv onto a clean base, so pip caches, build requirements and wheel files stay out of the image.
# Wheels put in ./wheels (git-ignored) are preferred over the index: that is how a CPU build of
# torch gets in without reaching a torch-specific index. See docs/DEPLOYMENT.md.

# The runtime requirements, read from pyproject.toml. Only this file's content reaches the builder,
# so editing other parts of pyproject.toml (extras, tool settings) does not reinstall torch.
FROM python:3.11-slim-bookworm AS requirements
# The torch build that pyproject's `torch==X` pin is narrowed to (`torch==X+cpu`), so that a
# missing CPU wheel fails the build at once instead of pulling several GB of CUDA libraries.
ARG TORCH_LOCAL_VERSION=cpu
WORKDIR /src
COPY pyproject.toml ./
RUN python -c "import re, tomllib; deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; print('\n'.join(re.sub(r'^torch==([^+;\s]+)$', r'torch==\1+${TORCH_LOCAL_VERSION}', d) for d in deps))" > /requirements.txt \
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

RUN python -m venv /opt/venv

WORKDIR /src

# Dependencies first, in their own layer: changing the code does not reinstall torch.
COPY wheels/ /wheels/
COPY --from=requirements /requirements.txt /tmp/requirements.txt
RUN pip install --find-links /wheels -r /tmp/requirements.txt \
    && python -c "import torch, sys; sys.exit(f'torch {torch.__version__} is a CUDA build' if torch.version.cuda else 0)" \
    && pip check

# Files that a CPU inference service never opens: C++ headers and test binaries of torch, the test
# suites of numpy/sympy/networkx and friends (about 250 MB together).
RUN sp=/opt/venv/lib/python3.11/site-packages \
    && rm -rf "$sp"/torch/include "$sp"/torch/test "$sp"/torch/share \
        "$sp"/torch/bin/test_* "$sp"/torch/bin/*Test "$sp"/torch/bin/protoc* \
        "$sp"/torch/lib/libjitbackend_test.so "$sp"/torch/lib/libtorchbind_test.so \
        "$sp"/torch/lib/libbackend_with_compiler.so "$sp"/torch/lib/libaoti_custom_ops.so \
    && find "$sp" -depth -type d -name tests -prune -exec rm -rf {} +

# The service itself (no extras: training needs lightning, which stays out of this image).
COPY pyproject.toml README.md ./
COPY app/ app/
# The page's HTML, CSS and JavaScript are package data (pyproject's package-data): check they came along.
RUN pip install --no-deps . \
    && python -c "import app.main" \
    && python -c "import sys; from app.web.routes import PAGE, STATIC_DIR; sys.exit(0 if PAGE.is_file() and (STATIC_DIR / 'app.js').is_file() else 'the page is missing from the installed package')"


FROM python:3.11-slim-bookworm AS runtime

LABEL org.opencontainers.image.title="face-landmarks" \
      org.opencontainers.image.description="REST service returning the 68 iBUG 300-W landmarks of every face in a photo" \
      org.opencontainers.image.licenses="MIT"

RUN groupadd --system --gid 10001 landmarks \
    && useradd --system --uid 10001 --gid landmarks --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin landmarks

COPY --from=builder /opt/venv /opt/venv
# Owned by root and read-only to the service user: the process cannot alter its own model.
COPY models/landmarks.pt /app/models/landmarks.pt

# Settings (all overridable with -e / compose `environment:` / the pod spec). uvicorn reads
# WEB_CONCURRENCY itself; keep LANDMARKS_TORCH_THREADS x WEB_CONCURRENCY <= the CPUs granted.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    WEB_CONCURRENCY=1 \
    LANDMARKS_MODEL_PATH=/app/models/landmarks.pt \
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

# Ready, not merely alive: 503 until the checkpoint is loaded. The first start loads torch + model.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health/ready', timeout=4)"]

# The launcher loads the checkpoint once (exit 3 if it is bad, whatever WEB_CONCURRENCY is), then
# replaces itself with uvicorn; other options are passed on to uvicorn.
CMD ["face-landmarks", "serve", "--host", "0.0.0.0", "--port", "8000", "--no-server-header"]
