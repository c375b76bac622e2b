#!/usr/bin/env bash
# Container entrypoint: stays thin. Reads *_FILE secrets, then hands over to the Python launcher,
# which validates everything before it starts SGLang (see src/glm_image_sglang/cli.py).
#   (no arguments) | serve | check | env | download   -> the launcher
#   any other command (bash, sglang, ...)   -> run as given
set -Eeuo pipefail

# file_env VAR: VAR_FILE=/run/secrets/x sets VAR from that file (as postgres's entrypoint does),
# so secrets come from mounted files instead of the process environment.
file_env() {
	local var="$1" file_var="${1}_FILE"
	if [[ -n "${!var:-}" && -n "${!file_var:-}" ]]; then
		echo "ERROR: both $var and $file_var are set; set only one of them." >&2
		exit 2
	fi
	if [[ -n "${!file_var:-}" ]]; then
		if [[ ! -r "${!file_var}" ]]; then
			echo "ERROR: $file_var=${!file_var} is not a readable file; mount the secret there." >&2
			exit 2
		fi
		export "$var"="$(<"${!file_var}")"
	fi
	unset "$file_var"
}

_main() {
	file_env HF_TOKEN
	file_env API_KEY

	# An arbitrary OpenShift UID has no passwd entry and would get HOME=/ (read-only).
	if [[ -z "${HOME:-}" || "${HOME}" == "/" || ! -w "${HOME}" ]]; then
		export HOME="${DATA_DIR:-/app/data}/home"
		mkdir -p "$HOME" 2>/dev/null || export HOME=/tmp
	fi
	# ... nor a user name: getpass.getuser() raises then, and torch._dynamo, the CuTe DSL and QuACK call it
	# (FlashInfer sets USER itself for this). Give it one, as OpenShift's own images do.
	if ! id -un >/dev/null 2>&1; then
		export USER="${USER:-default}"
		export LOGNAME="${LOGNAME:-$USER}"
	fi

	if [[ $# -eq 0 || "$1" == "serve" || "$1" == "check" || "$1" == "env" || "$1" == "download" || "$1" == -* ]]; then
		exec "${LAUNCHER_PYTHON:-python3}" -m glm_image_sglang "$@"
	fi
	exec "$@"
}

_main "$@"
