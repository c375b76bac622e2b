#!/usr/bin/env bash
# Runs inside BASE_IMAGE for ./download-packages.sh: the same Python and platform as the image.
set -Eeuo pipefail
# shellcheck source=docker/build-env.sh
source /build/build-env.sh
apt-get "${APT_OPTS[@]}" update -qq
apt-get "${APT_OPTS[@]}" install -y -qq --no-install-recommends python3 python3-venv python3-dev build-essential git \
	ca-certificates >/dev/null
python3 -m venv /tmp/venv
pip() { /tmp/venv/bin/python -m pip "$@"; }
spec() { python3 /build-spec/buildspec.py "$@"; }
pip install -q --upgrade "pip==25.3"
sglang_req="$(spec sglang "${SGLANG_SOURCE:-git:main}" "${SGLANG_GIT_URL:-}")"
diffusers_req="$(spec diffusers "${DIFFUSERS_SOURCE:-git:main}" "${DIFFUSERS_GIT_URL:-}")"
transformers_req="$(spec transformers "${TRANSFORMERS_SOURCE:-git:main}" "${TRANSFORMERS_GIT_URL:-}")"
# what the Dockerfile installs before anything else, and what builds our own package
pip download -q -d /pip-cache "pip==25.3" setuptools wheel packaging
# SGLang with every dependency; sdists and git sources are built into wheels here
pip wheel -w /pip-cache "$sglang_req"
for req in "$diffusers_req" "$transformers_req"; do
	if [[ -n "$req" ]]; then pip wheel --no-deps -w /pip-cache "$req"; fi
done
if [[ "${FLASH_ATTN:-source}" == "source" ]]; then
	# compiled in the image build (--no-build-isolation): its source and build helpers
	pip download -q --no-deps --no-binary :all: -d /pip-cache "flash-attn==${FLASH_ATTN_VERSION:-2.8.3}"
	pip download -q -d /pip-cache psutil ninja einops
fi
chown -R "${HOST_UID:-0}:${HOST_GID:-0}" /pip-cache
