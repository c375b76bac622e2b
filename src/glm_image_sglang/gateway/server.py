"""Runs the gateway with uvicorn: `glm-image-sglang gateway --upstream URL` (alone, in front of any
SGLang server) or as the launcher's second child process."""

from __future__ import annotations

import argparse
import logging
import sys

from ..errors import LauncherError
from ..models import VARIANTS
from ..settings import GatewaySettings


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="glm-image-sglang gateway",
        description="Serve the public API on HOST:PORT in front of an SGLang diffusion server. Limits, the API "
        "key and the readiness probe come from the environment (glm-image-sglang env).",
    )
    parser.add_argument("--upstream", required=True, help="SGLang's base URL, e.g. http://127.0.0.1:31000")
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=30000)
    parser.add_argument("--model-variant", choices=sorted(VARIANTS), help="the served model (defaults, limits)")
    parser.add_argument("--graceful-shutdown-timeout", type=int, default=30)
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    args = parser.parse_args(argv)
    try:
        settings = GatewaySettings.from_env()
    except LauncherError as e:
        print(f"ERROR: {e}", file=sys.stderr)
        return e.exit_code
    logging.basicConfig(level=args.log_level.upper(), format="[gateway] %(message)s", stream=sys.stdout)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per upstream call is noise
    import uvicorn

    from .app import create_app

    variant = VARIANTS.get(args.model_variant or "")
    shown = {k: val for k, val in settings.redacted().items()}
    logging.getLogger("glm_image_sglang.gateway").info(
        "listening on %s:%s, upstream %s, model %s, %s",
        args.host,
        args.port,
        args.upstream,
        variant.name if variant else "(unrecognised)",
        " ".join(f"{k}={val}" for k, val in shown.items()),
    )
    app = create_app(args.upstream, settings, variant)
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        access_log=False,  # our own access log has the request id and route
        timeout_graceful_shutdown=args.graceful_shutdown_timeout,
        log_config=None,
    )
    uvicorn.Server(config).run()
    return 0
