"""Runs the gateway with uvicorn: `glm-image-sglang gateway --upstream URL` (alone, in front of any
SGLang server) or as the launcher's second child process."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import time
from typing import Any

import uvicorn

from ..errors import LauncherError
from ..models import VARIANTS
from ..settings import GatewaySettings

LOOPBACK = ("127.0.0.1", "::1", "localhost")


class DrainingServer(uvicorn.Server):
    """uvicorn, except that the first SIGTERM drains (Gateway.drain) before uvicorn's own shutdown:
    uvicorn alone would close the port at once, so nobody could poll or download a video that
    finishes during the grace period. A second signal (or SIGINT) stops at once."""

    def __init__(self, config: uvicorn.Config, gw: Any, grace: float) -> None:
        super().__init__(config)
        self.gw, self.grace = gw, grace
        self.loop: asyncio.AbstractEventLoop | None = None
        self.drain_task: asyncio.Task[None] | None = None

    async def startup(self, sockets: Any = None) -> None:
        self.loop = asyncio.get_running_loop()
        await super().startup(sockets)

    def handle_exit(self, sig: int, frame: Any) -> None:
        if sig != signal.SIGTERM or self.drain_task is not None or self.loop is None or self.should_exit:
            super().handle_exit(sig, frame)
            return
        self.loop.call_soon_threadsafe(self._start_drain)

    def _start_drain(self) -> None:
        if self.drain_task is None:
            self.drain_task = asyncio.ensure_future(self.gw.drain(self.grace))
            self.drain_task.add_done_callback(self._after_drain)

    def _after_drain(self, _: asyncio.Task[None]) -> None:
        # downloads still open get what is left of the grace period
        self.config.timeout_graceful_shutdown = max(1, int(self.grace - (time.monotonic() - self.gw.draining_since)))
        self.should_exit = True


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
    parser.add_argument(
        "--ready-timeout",
        type=float,
        default=0,
        help="seconds the first test generation may take (it compiles kernels); the launcher passes "
        "STARTUP_TIMEOUT. 0: no limit",
    )
    parser.add_argument("--served-model-name", help="the model id /v1/models reports (default: its repo name)")
    parser.add_argument("--edits-off", metavar="REASON", help="answer /v1/images/edits with 400 and this reason")
    parser.add_argument(
        "--ar-health", metavar="URL", help="the AR server's /health (GLM_AR): ready only while it answers 200 too"
    )
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    args = parser.parse_args(argv)
    try:
        settings = GatewaySettings.from_env()
    except LauncherError as e:
        print(f"ERROR: {e}", file=sys.stderr)
        return e.exit_code
    logging.basicConfig(level=args.log_level.upper(), format="[gateway] %(message)s", stream=sys.stdout)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per upstream call is noise
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
    if not settings.api_key and args.host not in LOOPBACK:
        logging.getLogger("glm_image_sglang.gateway").warning(
            "WARNING: no API_KEY: anyone who reaches %s:%s can generate. Set API_KEY (or API_KEY_FILE), and "
            "REQUIRE_API_KEY=true to make a missing key stop the start.",
            args.host,
            args.port,
        )
    app = create_app(
        args.upstream, settings, variant, args.ready_timeout, args.served_model_name, args.edits_off, args.ar_health
    )
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        access_log=False,  # our own access log has the request id and route
        timeout_graceful_shutdown=args.graceful_shutdown_timeout,
        log_config=None,
    )
    DrainingServer(config, app.state.gateway, args.graceful_shutdown_timeout).run()
    return 0
