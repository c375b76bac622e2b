#!/usr/bin/env bash
# Fills pip-cache/ with every Python package the image needs, so that ./build.sh --offline can build
# it on a machine with no package index. Run it on a connected machine with Docker.
set -Eeuo pipefail

usage() {
	cat <<'EOF_USAGE'
Usage: ./download-packages.sh [--dry-run]

Resolves and downloads (or builds) wheels for SGLang, diffusers, transformers and all their
dependencies into pip-cache/, plus the flash-attn source archive. It runs inside BASE_IMAGE so the
wheels match the image's Python version and platform; git sources are built into wheels.

Uses the same variables as ./build.sh: BASE_IMAGE, SGLANG_SOURCE, DIFFUSERS_SOURCE,
TRANSFORMERS_SOURCE, *_GIT_URL, FLASH_ATTN, FLASH_ATTN_VERSION, PIP_INDEX, PIP_EXTRA_INDEX, CA_BUNDLE,
DOCKER. Then: carry the repository with pip-cache/ (and the base image: docker save BASE_IMAGE) and
run ./build.sh --offline on the other side.
EOF_USAGE
}

_main() {
	local here dry_run=0
	here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
	case "${1:-}" in
	-h | --help) usage; exit 0 ;;
	--dry-run) dry_run=1 ;;
	"") ;;
	*) echo "ERROR: unknown option $1 (see ./download-packages.sh --help)" >&2; exit 2 ;;
	esac
	local cmd=("${DOCKER:-docker}" run --rm
		-v "$here/pip-cache:/pip-cache"
		-v "$here/docker:/build:ro"
		-v "$here/src/glm_image_sglang/buildspec.py:/build-spec/buildspec.py:ro"
		-e "HOST_UID=$(id -u)" -e "HOST_GID=$(id -g)")
	local var
	for var in SGLANG_SOURCE DIFFUSERS_SOURCE TRANSFORMERS_SOURCE SGLANG_GIT_URL DIFFUSERS_GIT_URL TRANSFORMERS_GIT_URL \
		FLASH_ATTN FLASH_ATTN_VERSION PIP_INDEX PIP_EXTRA_INDEX HTTP_PROXY HTTPS_PROXY NO_PROXY; do
		if [[ -n "${!var:-}" ]]; then cmd+=(-e "$var=${!var}"); fi
	done
	local ca="${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
	if [[ -r "$ca" ]]; then cmd+=(-v "$ca:/run/secrets/ca:ro"); fi
	cmd+=("${BASE_IMAGE:-nvidia/cuda:13.0.2-cudnn-devel-ubuntu24.04}" bash /build/download-wheels.sh)
	echo "+ ${cmd[*]}"
	((dry_run)) && exit 0
	mkdir -p "$here/pip-cache"
	"${cmd[@]}"
	echo "pip-cache/: $(find "$here/pip-cache" -maxdepth 1 -type f | wc -l) files, $(du -sh "$here/pip-cache" | cut -f1)"
}

_main "$@"
