"""The gateway's state and its ASGI app: the public API on the public port, in front of an SGLang server
of which it knows only the URL. Each job lives in its own module: routes (handlers), bodies (reading
requests), upstream (talking to SGLang), replicas (ids and forwarding), readiness, drain, limits and
observe (request ids, API key, metrics, access log).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..models import Variant
from ..settings import GatewaySettings
from . import readiness, routes
from . import validation as v
from .drain import drain
from .limits import BodyGate, Slots
from .observe import Metrics, ObservedApp
from .readiness import Readiness
from .replicas import Replicas
from .upstream import Upstream
from .validation import ApiError

log = logging.getLogger("glm_image_sglang.gateway")


class Gateway:
    def __init__(
        self,
        upstream: str,
        settings: GatewaySettings,
        variant: Variant | None,
        ready_timeout: float = 0,
        model_name: str | None = None,
    ) -> None:
        self.settings = settings
        self.variant = variant
        self.model_name = model_name or (variant.name if variant else None)  # what /v1/models calls it
        self.started = time.monotonic()
        self.ready_timeout = ready_timeout  # the start-up window for the first test generation (0: none)
        self.limits = v.Limits.of(settings, variant)
        self.metrics = Metrics()
        self.slots = Slots(settings.max_concurrency, settings.max_queue, self.metrics.in_flight, self.metrics.queued)
        self.bodies = BodyGate(settings.max_bodies_in_flight)
        self.ready = Readiness()
        self.upstream = Upstream(upstream)
        self.replicas = Replicas(settings, self.upstream)
        self.probe_task: asyncio.Task[None] | None = None
        self.draining_since: float | None = None
        self.fetched: set[str] = set()  # videos downloaded during the drain
        self.edits_off: str | None = None  # why edits are refused in this deployment (GLM_AR=srt)
        self.ar_health: str | None = None  # GLM_AR: the AR server's /health, part of readiness

    def require_ready(self) -> None:
        if self.draining_since is not None:
            raise ApiError(
                503,
                "the server is shutting down and takes no new work; retry (another replica, or this one "
                "after its restart).",
                None,
                "shutting_down",
            )
        if self.ready.state != "ready":
            raise ApiError(
                503, f"the model is not ready yet ({self.ready.state}: {self.ready.detail}).", None, "model_loading"
            )

    async def drain(self, grace: float) -> None:
        await drain(self, grace)


async def api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    headers = {"Retry-After": "10"} if exc.status in (429, 503) else None
    return JSONResponse(exc.body(), exc.status, headers=headers)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = {404: "no such route.", 405: "method not allowed on this route."}.get(exc.status_code, exc.detail)
    code = "not_found" if exc.status_code == 404 else "method_not_allowed"
    return JSONResponse(ApiError(exc.status_code, message, None, code).body(), exc.status_code)


async def internal_error(request: Request, exc: Exception) -> Response:
    log.exception("internal gateway error on %s", request.url.path)
    return JSONResponse(ApiError(500, "internal gateway error.", None, "internal_error").body(), 500)


ROUTES = [
    Route("/health", routes.health),
    Route("/live", routes.live),
    Route("/metrics", routes.metrics),
    Route("/v1/models", routes.list_models),
    Route("/v1/images/generations", routes.images_generations, methods=["POST"]),
    Route("/v1/images/edits", routes.images_edits, methods=["POST"]),
    Route("/v1/images/{image_id}/content", routes.image_content),
    Route("/v1/videos", routes.videos, methods=["GET", "POST"]),
    Route("/v1/videos/{video_id}", routes.video, methods=["GET", "DELETE"]),
    Route("/v1/videos/{video_id}/content", routes.video_content),
    Route("/v1/video/generations", routes.video_generations_sync, methods=["POST"]),
]


def create_app(
    upstream: str,
    settings: GatewaySettings,
    variant: Variant | None = None,
    ready_timeout: float = 0,
    model_name: str | None = None,
    edits_off: str | None = None,
    ar_health: str | None = None,
) -> Starlette:
    """ready_timeout: seconds the first test generation may take (the launcher's STARTUP_TIMEOUT; 0: no
    limit); model_name: the id /v1/models reports (default the model's repo name); edits_off: why
    /v1/images/edits is refused here (None: edits are served); ar_health: the AR server's /health URL, which
    must answer 200 too before the test generation and while serving."""
    gw = Gateway(upstream, settings, variant, ready_timeout, model_name)
    gw.edits_off = edits_off
    gw.ar_health = ar_health

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        gw.upstream.open()
        gw.probe_task = asyncio.create_task(readiness.probe_forever(gw))
        try:
            yield
        finally:
            gw.probe_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await gw.probe_task
            await gw.upstream.close()

    app = Starlette(
        routes=ROUTES,
        lifespan=lifespan,
        exception_handlers={ApiError: api_error, HTTPException: http_error, Exception: internal_error},
    )
    app.state.gateway = gw
    return ObservedApp(app, gw.metrics, settings)  # type: ignore[return-value]
