# shellcheck shell=bash
# Sourced by the Dockerfile's RUN steps that fetch packages. Nothing here is stored in a layer:
# the proxy CA is a BuildKit secret mounted only during the RUN, the mirror URLs are build args.
if [[ -s /run/secrets/ca ]]; then
	export PIP_CERT=/run/secrets/ca GIT_SSL_CAINFO=/run/secrets/ca SSL_CERT_FILE=/run/secrets/ca \
		REQUESTS_CA_BUNDLE=/run/secrets/ca
	APT_OPTS=(-o "Acquire::https::CAInfo=/run/secrets/ca")
else
	APT_OPTS=()
fi
export APT_OPTS
# A corporate package mirror, or the offline wheelhouse that ./build.sh --offline serves.
if [[ -n "${PIP_INDEX:-}" ]]; then export PIP_INDEX_URL="$PIP_INDEX"; fi
if [[ -n "${PIP_EXTRA_INDEX:-}" ]]; then export PIP_EXTRA_INDEX_URL="$PIP_EXTRA_INDEX"; fi
if [[ -n "${WHEELHOUSE_URL:-}" ]]; then export PIP_FIND_LINKS="$WHEELHOUSE_URL" PIP_NO_INDEX=1; fi
# SGLang from git (the default) builds its Rust extensions with cargo and crates.io unless told not to
# (python/setup.py). None is used by the diffusion server (they serve SGLang's LLM gRPC/Rust HTTP
# front-ends and LLM radix cache), the image has no Rust toolchain, and an air gap has no crates.io.
# Wheels from PyPI carry them prebuilt either way.
export SGLANG_BUILD_RUST_EXTS="${SGLANG_BUILD_RUST_EXTS:-none}"
