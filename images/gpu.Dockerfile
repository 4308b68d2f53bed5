# The GPU image: analyze and backgrounds (`python -m steps.<step>`): CUDA runtime, torch,
# transformers (Qwen2-VL), OpenCV; no Chromium. Build from the repository root:  make images  (or)
#   docker build -f images/gpu.Dockerfile -t ghcr.io/bookjob/bookjob-gpu:0.1.0 .
#
# Model weights are never in the repository. Either bake them in at build time with a named
# build context that replaces the `model` stage below:
#   docker build -f images/gpu.Dockerfile --build-context model=/path/to/Qwen2-VL-2B-Instruct .
# or mount them at run time at /models/qwen2-vl (the chart's backends.analyzer.modelVolume).
#
# torch comes from PyPI (its Linux wheels carry their CUDA libraries); TORCH_INDEX_URL picks
# another CUDA build, e.g. --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu130.

# ---- model: empty placeholder unless `--build-context model=DIR` replaces it --------------------
FROM scratch AS model
COPY images/model/ /

# ---- build: a virtual environment with bookjob[gpu] ------------------------------------------
FROM nvidia/cuda:12.8.1-runtime-ubuntu24.04 AS build
ARG TORCH_INDEX_URL=""
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1 \
    DEBIAN_FRONTEND=noninteractive
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# Ubuntu's Python 3.12 (the runtime stage installs the same); versions follow the base release.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY steps ./steps
COPY pipeline ./pipeline
# torch's version is pinned by the `gpu` extra; only its wheel index may change.
RUN python3 -m venv /opt/venv \
    && if [ -n "${TORCH_INDEX_URL}" ]; then \
         /opt/venv/bin/pip install --no-cache-dir --index-url "${TORCH_INDEX_URL}" \
           "torch==$(sed -n 's/.*"torch==\([0-9.]*\)".*/\1/p' pyproject.toml)"; \
       fi \
    && /opt/venv/bin/pip install --no-cache-dir ".[gpu]" \
    && /opt/venv/bin/python -m compileall -q /opt/venv

# ---- runtime -------------------------------------------------------------------------------------
FROM nvidia/cuda:12.8.1-runtime-ubuntu24.04
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="bookjob-gpu" \
      org.opencontainers.image.description="bookjob GPU steps: photo analysis (Qwen2-VL) and face transfer (ComfyUI client, classic)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/bookjob/bookjob" \
      org.opencontainers.image.base.name="docker.io/nvidia/cuda:12.8.1-runtime-ubuntu24.04"
ENV DEBIAN_FRONTEND=noninteractive
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 bookjob \
    && useradd --system --uid 10001 --gid 10001 --home-dir /tmp --no-create-home \
       --shell /usr/sbin/nologin bookjob
COPY --from=build /opt/venv /opt/venv
COPY --from=model / /models/qwen2-vl/
# HOME=/tmp: the pods' only writable path is the /tmp emptyDir (read-only root filesystem);
# Hugging Face caches go there too, and nothing is ever downloaded (offline mode).
ENV PATH=/opt/venv/bin:$PATH \
    HOME=/tmp \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    BOOKJOB_ANALYZER_MODEL=/models/qwen2-vl \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
WORKDIR /tmp
USER 10001:10001
# checkov:skip=CKV_DOCKER_2: a batch-step image run by Argo Workflows; Kubernetes ignores HEALTHCHECK and the step's exit code is its health
CMD ["python", "-m", "pipeline.cli", "--help"]
