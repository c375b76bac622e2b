#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what it needs, lints, runs pytest.
# Usage: tests/run.sh [PYTEST_ARGS]     e.g. tests/run.sh -m unit
set -Eeuo pipefail
cd "$(dirname "$0")/.."

log() { echo "== $*"; }

need_container_tier() {
	[[ " $* " != *" -m unit "* && " $* " != *" -m entrypoint "* && " $* " != *" -m gateway "* && " $* " != *" -m deploy "* && " $* " != *'not container'* ]]
}

need_e2e_tier() {
	[[ " $* " != *" -m unit "* && " $* " != *" -m entrypoint "* && " $* " != *" -m gateway "* && " $* " != *" -m deploy "* ]]
}

# The real SGLang (same release as the image's test build) in its own venv, for the e2e tier.
make_e2e_venv() {
	local venv=.venv-e2e
	if [[ -x "$venv/bin/sglang" ]] && "$venv/bin/python" -c "import glm_image_sglang" 2>/dev/null; then return 0; fi
	log "creating $venv (SGLang ${E2E_SGLANG_VERSION:-0.5.23} from PyPI; a few minutes the first time)"
	python3 -m venv "$venv"
	"$venv/bin/python" -m pip install -q --disable-pip-version-check "sglang[diffusion]==${E2E_SGLANG_VERSION:-0.5.23}"
	"$venv/bin/python" -m pip install -q --disable-pip-version-check -e .
}

install_system_packages() {
	local missing=()
	command -v dockerd >/dev/null || missing+=(docker.io)
	command -v debootstrap >/dev/null || missing+=(debootstrap)
	ldconfig -p | grep -q 'libnuma.so.1 ' || missing+=(libnuma1)
	((${#missing[@]})) || return 0
	if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
		echo "ERROR: missing ${missing[*]}; install them (Debian/Ubuntu: apt-get install ${missing[*]}) or run as root." >&2
		exit 1
	fi
	log "installing ${missing[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

start_docker() {
	if /usr/bin/docker info >/dev/null 2>&1; then return 0; fi
	log "starting dockerd"
	mkdir -p .cache
	nohup /usr/sbin/dockerd --host=unix:///var/run/docker.sock >.cache/dockerd.log 2>&1 &
	for _ in $(seq 60); do
		/usr/bin/docker info >/dev/null 2>&1 && return 0
		sleep 1
	done
	echo "ERROR: dockerd did not start; see .cache/dockerd.log" >&2
	exit 1
}

_main() {
	install_system_packages
	if need_container_tier "$@"; then start_docker; fi
	if need_e2e_tier "$@"; then make_e2e_venv; fi
	local venv="${VENV:-.venv}"
	if [[ ! -x "$venv/bin/python" ]]; then
		log "creating $venv"
		python3 -m venv "$venv"
	fi
	log "installing the package and test tools"
	"$venv/bin/python" -m pip install -q --disable-pip-version-check -e '.[test]'
	export PATH="$PWD/$venv/bin:$PATH"
	log "lint"
	ruff check src tests tools
	ruff format --check src tests tools
	mypy
	shellcheck build.sh download-packages.sh entrypoint.sh tests/run.sh .ci/run docker/build-env.sh
	hadolint Dockerfile tests/container/cuda-substitute/Dockerfile
	log "pytest $*"
	set +e
	python -m pytest "$@"
	local rc=$?
	set -e
	if [[ $rc -eq 5 ]]; then
		echo "ERROR: pytest collected no tests" >&2
	fi
	exit "$rc"
}

_main "$@"
