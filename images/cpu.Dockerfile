# The CPU image: plan, render, assemble, finalize and on-exit (`python -m steps.<step>`).
# Debian's Chromium and fonts for Latin, Cyrillic, Greek, Arabic, Hebrew, Indic and CJK scripts;
# no torch. Build from the repository root:  make images  (or)
#   docker build -f images/cpu.Dockerfile -t ghcr.io/bookjob/bookjob-cpu:0.1.0 .
# Debian bookworm, like the machines the tests run Chromium on.

# ---- build: a virtual environment with bookjob[render] ----------------------------------------
FROM python:3.11.13-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY steps ./steps
COPY pipeline ./pipeline
# The project itself is the pinned artefact here; its dependencies follow pyproject.toml.
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir ".[render]" \
    && /opt/venv/bin/python -m compileall -q /opt/venv

# ---- runtime -------------------------------------------------------------------------------------
FROM python:3.11.13-slim-bookworm
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="bookjob-cpu" \
      org.opencontainers.image.description="bookjob CPU steps: text rendering in Chromium, PDF assembly, job bookkeeping" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/bookjob/bookjob" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11.13-slim-bookworm"
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# Package versions follow the base image's Debian release (bookworm and its security updates):
# pinning exact Debian versions breaks the build as soon as a security update replaces them.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
       chromium \
       fonts-noto-core fonts-noto-cjk fonts-dejavu-core fontconfig \
    && rm -rf /var/lib/apt/lists/* \
    && fc-cache -f \
    && groupadd --system --gid 10001 bookjob \
    && useradd --system --uid 10001 --gid 10001 --home-dir /tmp --no-create-home \
       --shell /usr/sbin/nologin bookjob
COPY --from=build /opt/venv /opt/venv
# HOME=/tmp: the pods' only writable path is the /tmp emptyDir (read-only root filesystem).
# Chromium comes from Debian; the render step drives it with Playwright (its wheel brings Node.js).
ENV PATH=/opt/venv/bin:$PATH \
    HOME=/tmp \
    BOOKJOB_CHROMIUM=/usr/bin/chromium \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
WORKDIR /tmp
USER 10001:10001
# checkov:skip=CKV_DOCKER_2: a batch-step image run by Argo Workflows; Kubernetes ignores HEALTHCHECK and the step's exit code is its health
CMD ["python", "-m", "pipeline.cli", "--help"]
