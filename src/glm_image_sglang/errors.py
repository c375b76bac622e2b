"""The launcher's error types. Each maps to one exit code, documented in README.md.

Every message names the fix: it is what a platform engineer reads in `oc logs`.
"""

from __future__ import annotations

import os
import sys
import traceback


class LauncherError(Exception):
    """Base class: a problem found before or while starting the server."""

    exit_code = 1
    prefix = "ERROR"


class ConfigError(LauncherError):
    """An environment variable or argument has an invalid value."""

    exit_code = 2


class ModelError(LauncherError):
    """MODEL_PATH is missing, incomplete, or not a supported model."""

    exit_code = 3


class ResourceError(LauncherError):
    """The machine cannot run the model: no GPU, too little memory, unwritable dirs, port taken."""

    exit_code = 4


class StartupError(LauncherError):
    """The server process died or never became ready."""

    exit_code = 5


def report_internal_error(context: str, e: BaseException) -> int:
    """A bug of ours (or an answer nobody foresaw): one line on stderr, the traceback only with
    LOG_LEVEL=debug. Returns exit code 1."""
    print(f"ERROR: {context}: {type(e).__name__}: {str(e)[:500]}", file=sys.stderr, flush=True)
    if os.environ.get("LOG_LEVEL", "").lower() == "debug":
        traceback.print_exc()
    else:
        print("ERROR: set LOG_LEVEL=debug for the traceback and report it.", file=sys.stderr, flush=True)
    return 1
