"""The outermost ASGI layer: a request id on every answer, the API key check, Prometheus metrics with
bounded labels, and one JSON access-log line per request (never the prompt unless LOG_PROMPTS)."""

from __future__ import annotations

import hmac
import json
import logging
import time
import uuid
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.types import Message, Receive, Scope, Send

from ..settings import GatewaySettings
from .validation import ApiError

access_log = logging.getLogger("glm_image_sglang.access")
OPEN_ROUTES = ("/health", "/live")
QUIET_ROUTES = ("/health", "/live", "/metrics")  # probes and scrapes: counted in metrics, not logged
LATENCY = (0.05, 0.25, 1, 5, 15, 60, 180, 600, 1800, 3600)  # histogram buckets, seconds
GENERATION = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})  # any other: "other"


class Metrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.requests = Counter(
            "gateway_requests", "Requests by route and status", ["route", "method", "code"], registry=r
        )
        self.latency = Histogram(
            "gateway_request_duration_seconds", "Request latency", ["route"], buckets=LATENCY, registry=r
        )
        self.generation = Histogram(
            "gateway_generation_seconds", "Time of successful generations", ["kind"], buckets=GENERATION, registry=r
        )
        self.in_flight = Gauge("gateway_generations_in_flight", "Generations running in SGLang", registry=self.registry)
        self.queued = Gauge("gateway_generations_queued", "Generations waiting for a slot", registry=self.registry)
        self.ready = Gauge("gateway_ready", "1 when a test generation has succeeded", registry=self.registry)


def note_prompt(settings: GatewaySettings, request_id: Any, data: dict[str, Any]) -> None:
    """With LOG_PROMPTS=true, the prompts of a request, under its request id."""
    if settings.log_prompts:
        line = {"request_id": request_id, "prompt": data.get("prompt"), "negative_prompt": data.get("negative_prompt")}
        access_log.info(json.dumps(line))


class ObservedApp:
    def __init__(self, app: Starlette, metrics: Metrics, settings: GatewaySettings) -> None:
        self.app = app
        self.metrics = metrics
        self.key = settings.api_key.encode() if settings.api_key else None
        self.metrics_public = settings.metrics_public
        self.state = app.state

    def route_of(self, path: str) -> str:
        for prefix in ("/v1/images/", "/v1/videos/"):
            if path.startswith(prefix) and path not in ("/v1/images/generations", "/v1/images/edits"):
                return prefix + "{id}" + ("/content" if path.endswith("/content") else "")
        known = {r.path for r in self.app.routes if hasattr(r, "path")}
        return path if path in known else "other"

    def authorized(self, scope: Scope) -> bool:
        if self.key is None or scope["path"] in OPEN_ROUTES:
            return True
        if scope["path"] == "/metrics" and self.metrics_public:
            return True
        header = dict(scope.get("headers", [])).get(b"authorization", b"")
        scheme, _, token = header.partition(b" ")
        return scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self.key)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.monotonic()
        headers = dict(scope.get("headers", []))
        request_id = headers.get(b"x-request-id", b"").decode("latin-1")[:100] or uuid.uuid4().hex
        scope["request_id"] = request_id
        status = {"code": 500}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode("latin-1"))]
            await send(message)

        try:
            if not self.authorized(scope):
                body = ApiError(
                    401, "missing or wrong API key: send 'Authorization: Bearer <API_KEY>'.", None, "invalid_api_key"
                ).body()
                await JSONResponse(body, 401, headers={"WWW-Authenticate": "Bearer"})(scope, receive, send_with_id)
            else:
                await self.app(scope, receive, send_with_id)
        finally:
            route = self.route_of(scope["path"])
            method = scope["method"] if scope["method"] in METHODS else "other"
            elapsed = time.monotonic() - t0
            self.metrics.requests.labels(route, method, str(status["code"])).inc()
            self.metrics.latency.labels(route).observe(elapsed)
            if not (scope["path"] in QUIET_ROUTES and status["code"] in (200, 503)):
                line = {
                    "request_id": request_id,
                    "method": method,
                    "route": route,
                    "path": scope["path"][:200],
                    "status": status["code"],
                    "duration_ms": round(elapsed * 1000, 1),
                }
                access_log.info(json.dumps(line))
