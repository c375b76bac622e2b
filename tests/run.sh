#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what it needs, lints, runs pytest.
# Usage: tests/run.sh [PYTEST_ARGS]     e.g. tests/run.sh -m unit
set -Eeuo pipefail
cd "$(dirname "$0")/.."

log() { echo "== $*"; }

# The -m expression given (empty: none, every tier runs).
marker() {
	local prev=""
	for arg in "$@"; do
		if [[ $prev == -m ]]; then
			echo "$arg"
			return
		fi
		prev=$arg
	done
}

# Does the -m expression select tier $1? Understood: "a", "a or b ...", "not a", "<those> and not b".
# Anything else counts as selecting every tier: set up too much rather than too little.
selected() {
	local tier=$1 expr
	expr=$(marker "${@:2}")
	[[ -z $expr ]] && return 0
	if [[ $expr =~ ^(.+)\ and\ not\ ([a-z0-9_]+)$ ]]; then
		[[ $tier == "${BASH_REMATCH[2]}" ]] && return 1
		expr=${BASH_REMATCH[1]}
	fi
	if [[ $expr =~ ^not\ ([a-z0-9_]+)$ ]]; then
		[[ $tier != "${BASH_REMATCH[1]}" ]]
		return
	fi
	if [[ $expr =~ ^[a-z0-9_]+(\ or\ [a-z0-9_]+)*$ ]]; then
		[[ " ${expr// or / } " == *" $tier "* ]]
		return
	fi
	return 0
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

# System packages for the selected tiers: container (docker.io, debootstrap), e2e and entrypoint
# (libnuma1: the launcher's pre-flight and SGLang's kernels load it). None for unit, gateway, deploy.
install_system_packages() {
	local missing=() wanted=()
	if selected container "$@"; then
		wanted+=(docker.io debootstrap)
		command -v dockerd >/dev/null || missing+=(docker.io)
		command -v debootstrap >/dev/null || missing+=(debootstrap)
	fi
	if selected e2e "$@" || selected entrypoint "$@"; then
		wanted+=(libnuma1)
		ldconfig -p | grep -q 'libnuma.so.1 ' || missing+=(libnuma1)
	fi
	if ((${#wanted[@]} == 0)); then
		log "no system packages needed for -m '$(marker "$@")'"
		return 0
	fi
	((${#missing[@]})) || return 0
	if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
		echo "ERROR: the selected tiers need ${missing[*]}; install them (Debian/Ubuntu: apt-get install ${missing[*]}) or run as root." >&2
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
	install_system_packages "$@"
	if selected container "$@"; then start_docker; else log "skipping Docker: the container tier is not selected"; fi
	# the e2e tests' [image] half is in the container tier too: it makes its random models with .venv-e2e
	if selected e2e "$@" || selected container "$@"; then
		make_e2e_venv
	else
		log "skipping .venv-e2e (real SGLang): neither the e2e nor the container tier is selected"
	fi
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

# sourced (the tests do, to check the tier selection): define only
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then _main "$@"; fi
