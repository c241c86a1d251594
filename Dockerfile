# VoiceLab studio on a CUDA machine:
#   docker build -t voicelab .
#   docker run --gpus all -p 7860:7860 -v "$PWD/workspace:/workspace" -e VOICELAB_AUTH=me:secret voicelab
# The workspace (datasets, experiments, weights, outputs, jobs) and the model assets live in the
# mounted volume; without VOICELAB_AUTH a random password is printed in the container log.
#
# Upstream CosyVoice (pinned commit, with Matcha-TTS) is fetched while building, from GitHub by
# default or from other sources git can clone: a mirror URL, or bundles/clones put in the build
# context under vendor-sources/ (e.g. the two .bundle files of an offline install):
#   docker build --build-arg COSYVOICE_SOURCE=vendor-sources/cosyvoice.bundle \
#                --build-arg MATCHA_SOURCE=vendor-sources/matcha-tts.bundle -t voicelab .
FROM nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    VOICELAB_HOME=/workspace \
    VOICELAB_ASSETS=/workspace/assets \
    VOICELAB_TORCH="torch==2.6.0" \
    VOICELAB_TORCH_INDEX=https://download.pytorch.org/whl/cu124

# Distribution packages follow the base image's release; pinning them breaks on its updates.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv python3-pip git ca-certificates \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/voicelab
COPY pyproject.toml README.md app.py ./
COPY scripts scripts
COPY engines engines
COPY voicelab_ui voicelab_ui
COPY assets assets
# an empty folder is fine: it only matters when a build argument points into it
COPY vendor-sources* vendor-sources/

# Torch first (CUDA build), then the project with upstream CosyVoice's runtime (the same steps as
# scripts/setup.sh); onnxruntime-gpu replaces the CPU package (they share one module folder and
# must not be installed together).
RUN python3 -m venv .venv \
    && .venv/bin/pip install "$VOICELAB_TORCH" --index-url "$VOICELAB_TORCH_INDEX" \
    && .venv/bin/pip install -e ".[cosyvoice]" \
    && .venv/bin/pip install --no-deps "torchcrepe==0.0.24" "torchfcpe==0.0.4" \
    && .venv/bin/pip install --no-deps --no-build-isolation "openai-whisper==20231117" \
    && .venv/bin/pip uninstall -y onnxruntime \
    && .venv/bin/pip install "onnxruntime-gpu>=1.17"

# The pinned upstream checkout, into vendor/CosyVoice (the default cosyvoice_repo).
ARG COSYVOICE_SOURCE=""
ARG MATCHA_SOURCE=""
RUN .venv/bin/voicelab --workspace /tmp/voicelab-build vendor sync --quiet \
        ${COSYVOICE_SOURCE:+--source "$COSYVOICE_SOURCE"} ${MATCHA_SOURCE:+--matcha-source "$MATCHA_SOURCE"} \
    && rm -rf /tmp/voicelab-build vendor-sources

EXPOSE 7860
VOLUME ["/workspace"]
CMD [".venv/bin/python", "app.py", "--lan", "--port", "7860", "--workspace", "/workspace"]
