# The ComfyUI sidecar image (bookjob-comfyui) for `--face-backend comfyui`: ComfyUI 0.3.64 with
# the IP-Adapter custom nodes (ComfyUI_IPAdapter_plus) and their dependencies (InsightFace,
# ONNX Runtime with CUDA), both at the commits the tests' ComfyUI reference data comes from
# (tests/data/comfyui/README.md). Build from the repository root:  make images  (or)
#   docker build -f images/comfyui.Dockerfile -t ghcr.io/bookjob/comfyui:0.1.0 .
#
# Models are never baked in: the pod mounts them read-only at /models/comfyui, one folder per
# kind (images/comfyui/extra_model_paths.yaml). The Argo template runs the image with the
# command below (= CMD) as uid 10001 on a read-only root filesystem; ComfyUI's input, output,
# temp and user directories live under /tmp (an emptyDir), the only writable path.

# ---- build: ComfyUI and the IP-Adapter nodes at pinned commits, in a virtual environment --------
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04 AS build
ARG COMFYUI_COMMIT=a125cd84b054a57729b5eecab930ca9408719832
ARG IPADAPTER_COMMIT=9d076a3df0d2763cef5510ec5ab807f6632c39f5
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1 \
    DEBIAN_FRONTEND=noninteractive
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# Ubuntu's Python 3.12 (the runtime stage installs the same); a compiler for InsightFace's
# extension (it has no wheel); versions follow the base release.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates git g++ python3 python3-dev python3-venv \
    && rm -rf /var/lib/apt/lists/*
# Exactly the pinned commits: fetched by hash (no branch or tag can move them), checked, no .git kept.
RUN fetch() { git init -q "$2" && git -C "$2" fetch -q --depth 1 "$1" "$3" \
        && git -C "$2" -c advice.detachedHead=false checkout -q FETCH_HEAD \
        && test "$(git -C "$2" rev-parse HEAD)" = "$3" && rm -rf "$2/.git"; } \
    && fetch https://github.com/Comfy-Org/ComfyUI.git /opt/comfyui "${COMFYUI_COMMIT}" \
    && fetch https://github.com/cubiq/ComfyUI_IPAdapter_plus.git \
         /opt/comfyui/custom_nodes/ComfyUI_IPAdapter_plus "${IPADAPTER_COMMIT}"
COPY images/comfyui/constraints.txt images/comfyui/extra_model_paths.yaml /opt/comfyui/
# ComfyUI's requirements (held to constraints.txt), then what the IP-Adapter FaceID nodes import:
# insightface (its requirements.txt; built against the venv's numpy) and onnxruntime-gpu, the
# runtime InsightFace's models run on with the CUDA provider the workflow selects.
RUN python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir -c /opt/comfyui/constraints.txt -r /opt/comfyui/requirements.txt \
    && /opt/venv/bin/pip install --no-cache-dir "setuptools==80.9.0" "wheel==0.45.1" "Cython==3.1.4" \
    && /opt/venv/bin/pip install --no-cache-dir --no-build-isolation -c /opt/comfyui/constraints.txt \
         "insightface==0.7.3" "onnxruntime-gpu==1.22.0" \
    && /opt/venv/bin/python -m compileall -q /opt/venv /opt/comfyui

# ---- runtime -------------------------------------------------------------------------------------
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="bookjob-comfyui" \
      org.opencontainers.image.description="ComfyUI 0.3.64 with ComfyUI_IPAdapter_plus, the sidecar of bookjob's comfyui face backend; models mounted at /models/comfyui" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="GPL-3.0-only" \
      org.opencontainers.image.source="https://github.com/bookjob/bookjob" \
      org.opencontainers.image.base.name="docker.io/nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04" \
      io.bookjob.comfyui.commit="a125cd84b054a57729b5eecab930ca9408719832" \
      io.bookjob.ipadapter-plus.commit="9d076a3df0d2763cef5510ec5ab807f6632c39f5"
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
COPY --from=build /opt/comfyui /opt/comfyui
# InsightFace's models are read from <ComfyUI>/models/insightface only (IPAdapterPlus.py), not
# from extra_model_paths.yaml: that folder is a link into the mounted volume.
RUN rm -rf /opt/comfyui/models/insightface \
    && ln -s /models/comfyui/insightface /opt/comfyui/models/insightface
# HOME=/tmp: the only writable path (torch and matplotlib caches go there); nothing is downloaded.
ENV PATH=/opt/venv/bin:$PATH \
    HOME=/tmp \
    HF_HUB_OFFLINE=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
WORKDIR /tmp
USER 10001:10001
EXPOSE 8188
HEALTHCHECK --interval=30s --timeout=5s --start-period=300s \
    CMD ["/opt/venv/bin/python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8188/system_stats', timeout=4)"]
CMD ["/opt/venv/bin/python", "/opt/comfyui/main.py", "--listen", "127.0.0.1", "--port", "8188", \
     "--input-directory", "/tmp/comfyui/input", "--output-directory", "/tmp/comfyui/output", \
     "--temp-directory", "/tmp/comfyui/temp", "--user-directory", "/tmp/comfyui/user", \
     "--extra-model-paths-config", "/opt/comfyui/extra_model_paths.yaml"]
