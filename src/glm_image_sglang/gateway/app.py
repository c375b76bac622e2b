"""The ASGI gateway on the public port: only the public API passes, validated, with an optional API
key, bounded concurrency, readiness proven by a real generation, metrics and an access log.

It knows nothing about how SGLang was started, only its URL (`upstream`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hmac
import json
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from ..models import Variant
from ..settings import GatewaySettings
from . import readiness
from . import validation as v
from .readiness import Readiness
from .validation import ApiError

log = logging.getLogger("glm_image_sglang.gateway")
access_log = logging.getLogger("glm_image_sglang.access")
ID = re.compile(r"^[A-Za-z0-9_.:-]{1,200}$")
TERMINAL = ("completed", "failed", "cancelled", "canceled", "expired")
POLL_SECONDS = 1.0
DRAIN_POLL_SECONDS = 1.0
DRAIN_LOG_EVERY = 10.0
FETCH_WINDOW = 60.0  # seconds a video that finished during the drain stays downloadable before we exit
REPLICA = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
CONTENT_URL = re.compile(r"(/v1/(?:images|videos)/)([^/?#]+)(/content)")
CALL_TIMEOUT = 30.0  # seconds for an upstream call that is not a generation
FORWARDED = "x-glm-image-sglang-forwarded"  # set on a request passed to its owner replica (no second hop)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "gateway_requests", "Requests by route and status", ["route", "method", "code"], registry=self.registry
        )
        self.latency = Histogram(
            "gateway_request_duration_seconds",
            "Request latency",
            ["route"],
            buckets=(0.05, 0.25, 1, 5, 15, 60, 180, 600, 1800, 3600),
            registry=self.registry,
        )
        self.generation = Histogram(
            "gateway_generation_seconds",
            "Time of successful generations",
            ["kind"],
            buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600),
            registry=self.registry,
        )
        self.in_flight = Gauge("gateway_generations_in_flight", "Generations running in SGLang", registry=self.registry)
        self.queued = Gauge("gateway_generations_queued", "Generations waiting for a slot", registry=self.registry)
        self.ready = Gauge("gateway_ready", "1 when a test generation has succeeded", registry=self.registry)


class Slots:
    """MAX_CONCURRENCY generations at once, MAX_QUEUE waiting; beyond that, 429 at once (never a hang)."""

    def __init__(self, concurrency: int, queue: int, metrics: Metrics) -> None:
        self.sem = asyncio.Semaphore(concurrency)
        self.queue = queue
        self.waiting = 0
        self.running = 0
        self.metrics = metrics

    @property
    def busy(self) -> int:
        """Generations running or waiting for a slot."""
        return self.running + self.waiting

    @contextlib.asynccontextmanager
    async def take(self) -> AsyncIterator[None]:
        if self.sem.locked() and self.waiting >= self.queue:
            raise ApiError(429, "the server is busy: the queue is full. Retry later.", None, "queue_full")
        self.waiting += 1
        self.metrics.queued.set(self.waiting)
        try:
            await self.sem.acquire()
        finally:
            self.waiting -= 1
            self.metrics.queued.set(self.waiting)
        self.metrics.in_flight.inc()
        self.running += 1
        try:
            yield
        finally:
            self.running -= 1
            self.metrics.in_flight.dec()
            self.sem.release()


class Gateway:
    def __init__(
        self, upstream: str, settings: GatewaySettings, variant: Variant | None, ready_timeout: float = 0
    ) -> None:
        self.upstream = upstream.rstrip("/")
        self.started = time.monotonic()
        self.ready_timeout = ready_timeout  # the start-up window for the first test generation (0: none)
        self.settings = settings
        self.variant = variant
        self.limits = v.Limits.of(settings, variant)
        self.metrics = Metrics()
        self.slots = Slots(settings.max_concurrency, settings.max_queue, self.metrics)
        self.ready = Readiness()
        self.client: httpx.AsyncClient | None = None
        self.probe_task: asyncio.Task[None] | None = None
        self.draining_since: float | None = None
        self.fetched: set[str] = set()  # videos downloaded during the drain

    # --- upstream ---------------------------------------------------------------------------------
    @property
    def http(self) -> httpx.AsyncClient:
        assert self.client is not None, "gateway not started"
        return self.client

    async def call(self, method: str, path: str, timeout: float | None = None, **kw: Any) -> httpx.Response:
        try:
            return await self.http.request(method, self.upstream + path, timeout=timeout or CALL_TIMEOUT, **kw)
        except httpx.TimeoutException:
            raise ApiError(
                504,
                f"the model server did not answer within {timeout or CALL_TIMEOUT:.0f} s "
                "(REQUEST_TIMEOUT); the generation may still finish.",
                None,
                "timeout",
            ) from None
        except httpx.TransportError:
            raise ApiError(
                503,
                "the model server is not reachable (loading or restarting); retry shortly.",
                None,
                "upstream_unavailable",
            ) from None

    # --- replicas ---------------------------------------------------------------------------------------
    def public_id(self, upstream_id: str) -> str:
        """The id a client sees: with REPLICA_ID, prefixed by the replica that made it (a DNS label, so the
        first '.' ends it whatever SGLang's id contains)."""
        replica = self.settings.replica_id
        return f"{replica}.{upstream_id}" if replica else upstream_id

    def owner_of(self, public_id: str) -> tuple[str | None, str]:
        """(the replica that made it, SGLang's own id); no owner for ids without a replica prefix."""
        if self.settings.replica_id and "." in public_id:
            owner, rest = public_id.split(".", 1)
            if REPLICA.match(owner) and rest:
                return owner, rest
        return None, public_id

    def publish(self, body: Any) -> Any:
        """SGLang's answer about jobs and files as clients see it: ids and content URLs carry the replica."""
        if not self.settings.replica_id:
            return body
        if isinstance(body, list):
            return [self.publish(item) for item in body]
        if not isinstance(body, dict):
            return body
        out: dict[str, Any] = {}
        for key, value in body.items():
            if key == "id" and isinstance(value, str):
                out[key] = self.public_id(value)
            elif key == "url" and isinstance(value, str):
                out[key] = CONTENT_URL.sub(lambda m: m[1] + self.public_id(m[2]) + m[3], value)
            else:
                out[key] = self.publish(value) if key == "data" else value
        return out

    def relay_public(self, resp: httpx.Response) -> Response:
        """relay() for answers that name jobs or files."""
        if resp.status_code >= 400 or not self.settings.replica_id:
            return self.relay(resp)
        try:
            return JSONResponse(self.publish(resp.json()), resp.status_code)
        except ValueError:
            return self.relay(resp)

    async def forward(self, request: Request, owner: str, public_id: str) -> Response:
        """A request for another replica's job or file, passed to that replica's gateway as it came."""
        if request.headers.get(FORWARDED):
            raise ApiError(404, f"'{public_id}' is not on replica {owner} (forwarded here already).", None, "not_found")
        assert self.settings.peer_url is not None and self.settings.replica_id is not None
        headers = {k: request.headers[k] for k in ("authorization", "x-request-id") if k in request.headers}
        headers[FORWARDED] = self.settings.replica_id
        url = self.settings.peer_url.format(replica=owner) + request.url.path
        req = self.http.build_request(request.method, url, params=request.query_params, headers=headers, timeout=60)
        try:
            resp = await self.http.send(req, stream=True)
        except httpx.TransportError:
            raise ApiError(
                404,
                f"'{public_id}' belongs to replica {owner}, which is gone (restarted, moved or scaled down): its "
                "jobs and files went with it. Create it again.",
                None,
                "replica_gone",
            ) from None
        headers = {
            k: resp.headers[k] for k in ("content-type", "content-length", "content-disposition") if k in resp.headers
        }
        return StreamingResponse(
            resp.aiter_raw(), resp.status_code, headers=headers, background=BackgroundTask(resp.aclose)
        )

    def not_on_this_replica(self, kind: str, public_id: str) -> ApiError:
        return ApiError(
            404,
            f"{kind} '{public_id}' is not on replica {self.settings.replica_id}: an unknown id, or one made before "
            "this replica restarted (SGLang keeps jobs and files in memory and on the pod's own disk).",
            None,
            "not_found",
        )

    @staticmethod
    def relay(resp: httpx.Response) -> Response:
        """Upstream answer to the client; errors normalised to the OpenAI shape."""
        if resp.status_code < 400:
            return Response(resp.content, resp.status_code, media_type=resp.headers.get("content-type"))
        try:
            body = resp.json()
        except ValueError:
            body = {"detail": resp.text[:2000]}
        if not (isinstance(body, dict) and isinstance(body.get("error"), dict)):
            detail = body.get("detail", body) if isinstance(body, dict) else body
            message = detail if isinstance(detail, str) else json.dumps(detail)[:2000]
            body = ApiError(resp.status_code, message, None, "upstream_error").body()
        return JSONResponse(body, resp.status_code)

    def note_prompt(self, request: Request, data: dict[str, Any]) -> None:
        if self.settings.log_prompts:
            access_log.info(
                json.dumps(
                    {
                        "request_id": request.scope.get("request_id"),
                        "prompt": data.get("prompt"),
                        "negative_prompt": data.get("negative_prompt"),
                    }
                )
            )

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

    async def wait_for_job(self, job_id: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            resp = await self.call("GET", f"/v1/videos/{job_id}")
            if resp.status_code != 200:
                raise ApiError(resp.status_code, f"cannot read job {job_id}: {resp.text[:300]}", None, "upstream_error")
            job: dict[str, Any] = resp.json()
            if job.get("status") in TERMINAL:
                return job
            if time.monotonic() > deadline:
                raise ApiError(
                    504,
                    f"video job {job_id} did not finish within {timeout:.0f} s (REQUEST_TIMEOUT); "
                    f"it keeps running: poll GET /v1/videos/{job_id}.",
                    None,
                    "timeout",
                )
            await asyncio.sleep(POLL_SECONDS)

    # --- graceful shutdown ----------------------------------------------------------------------------
    async def job_statuses(self) -> dict[str, str]:
        """Status of every video job SGLang knows; empty when it does not answer (then nothing can finish)."""
        try:
            resp = await self.http.get(self.upstream + "/v1/videos", timeout=10)
            jobs = resp.json().get("data", []) if resp.status_code == 200 else []
        except (httpx.HTTPError, ValueError, AttributeError):
            return {}
        return {str(j.get("id")): str(j.get("status")) for j in jobs if isinstance(j, dict)}

    async def drain(self, grace: float) -> None:
        """After SIGTERM: new generations get 503 while running ones finish, and videos that finish in
        the meantime can still be polled and downloaded (for FETCH_WINDOW s). Returns when nothing is
        left, or after grace seconds."""
        self.draining_since = time.monotonic()
        if self.probe_task is not None:  # a readiness test generation now would be new work
            self.probe_task.cancel()
        self.ready.set("draining", "shutting down: finishing running work, taking no new work")
        self.metrics.ready.set(0)
        deadline = self.draining_since + grace
        watched: dict[str, float | None] = {}  # video id -> when it finished (None: still running)
        next_log = 0.0
        while True:
            now = time.monotonic()
            statuses = await self.job_statuses()
            for job_id, status in statuses.items():
                if status not in TERMINAL:
                    watched[job_id] = None
                elif job_id in watched and watched[job_id] is None:
                    watched[job_id] = now if status == "completed" else now - FETCH_WINDOW  # nothing to fetch
            for job_id in [j for j, done in watched.items() if done is None and j not in statuses]:
                watched[job_id] = now - FETCH_WINDOW  # deleted, or SGLang is gone
            running = [j for j, done in watched.items() if done is None]
            recent = [j for j, done in watched.items() if done is not None and now - done < FETCH_WINDOW]
            unfetched = [j for j in recent if j not in self.fetched]
            if not running and not unfetched and not self.slots.busy:
                log.info("drained in %.1f s: nothing running", now - self.draining_since)
                return
            if now >= deadline:
                log.warning(
                    "shutdown grace of %.0f s is over: stopping with %d video job(s) running, %d finished video(s) "
                    "not downloaded and %d request(s) in flight (raise GRACEFUL_SHUTDOWN_TIMEOUT)",
                    grace, len(running), len(unfetched), self.slots.busy,
                )  # fmt: skip
                return
            if now >= next_log:
                log.info(
                    "draining: %d video job(s) running, %d finished video(s) waiting for download, %d request(s) "
                    "in flight; %.0f s left",
                    len(running), len(unfetched), self.slots.busy, deadline - now,
                )  # fmt: skip
                next_log = now + DRAIN_LOG_EVERY
            await asyncio.sleep(DRAIN_POLL_SECONDS)

    # --- capacity for async video jobs ----------------------------------------------------------------
    async def check_video_capacity(self) -> None:
        resp = await self.call("GET", "/v1/videos")
        if resp.status_code != 200:
            return
        jobs = resp.json().get("data", [])
        active = sum(1 for j in jobs if isinstance(j, dict) and j.get("status") not in TERMINAL)
        if active >= self.settings.max_concurrency + self.settings.max_queue:
            raise ApiError(
                429, f"the server is busy: {active} video jobs are queued or running. Retry later.", None, "queue_full"
            )


# --- request helpers --------------------------------------------------------------------------------


async def read_body(request: Request, limit: int) -> bytes:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise ApiError(413, f"the request body is {length} bytes; the limit is {limit}.", None, "body_too_large")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"the request body exceeds {limit} bytes.", None, "body_too_large")
        chunks.append(chunk)
    body = b"".join(chunks)
    request._body = body  # Starlette's form()/json() reuse it
    return body


async def json_body(request: Request, limit: int) -> Any:
    body = await read_body(request, limit)
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "the request body is not valid JSON.", None, "invalid_json") from None


async def form_body(request: Request, limit: int) -> tuple[dict[str, Any], list[tuple[str, UploadFile]]]:
    await read_body(request, limit)
    try:
        form = await request.form(max_files=16, max_fields=64)
    except Exception as e:
        raise ApiError(
            400, f"the multipart body cannot be parsed ({getattr(e, 'detail', e)}).", None, "invalid_multipart"
        ) from None
    fields: dict[str, Any] = {}
    files: list[tuple[str, UploadFile]] = []
    for key, value in form.multi_items():
        if isinstance(value, UploadFile):
            files.append((key, value))
        elif key in fields:
            raise ApiError(400, f"field '{key}' is given more than once.", key, "duplicate_field")
        else:
            fields[key] = value
    return fields, files


def is_multipart(request: Request) -> bool:
    return request.headers.get("content-type", "").lower().startswith("multipart/form-data")


def check_id(value: str) -> str:
    if not ID.match(value) or ".." in value:
        raise ApiError(404, "no such id.", None, "not_found")
    return value


def form_strings(data: dict[str, Any]) -> dict[str, str]:
    return {k: str(val).lower() if isinstance(val, bool) else str(val) for k, val in data.items() if val is not None}


# --- the ASGI app -------------------------------------------------------------------------------------


def create_app(
    upstream: str, settings: GatewaySettings, variant: Variant | None = None, ready_timeout: float = 0
) -> Starlette:
    """ready_timeout: seconds the first test generation may take (the launcher's STARTUP_TIMEOUT; 0: no limit)."""
    gw = Gateway(upstream, settings, variant, ready_timeout)
    limit = settings.max_body_bytes

    async def health(request: Request) -> Response:
        return JSONResponse(gw.ready.view(), 200 if gw.ready.state == "ready" else 503)

    async def live(request: Request) -> Response:
        return JSONResponse({"status": "alive"})

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(gw.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def list_models(request: Request) -> Response:
        resp = await gw.call("GET", "/v1/models")
        if resp.status_code != 200:
            return gw.relay(resp)
        body = resp.json()
        for entry in body.get("data", []) if isinstance(body, dict) else []:
            if isinstance(entry, dict) and variant is not None:
                entry["defaults"] = v.defaults_of(variant)
                entry["tasks"] = list(variant.tasks)
                entry["output"] = variant.output
                entry["alignment"] = variant.alignment
        return JSONResponse(body)

    async def images_generations(request: Request) -> Response:
        data = v.image_generation(await json_body(request, limit), gw.limits)
        gw.note_prompt(request, data)
        gw.require_ready()
        t0 = time.monotonic()
        async with gw.slots.take():
            resp = await gw.call("POST", "/v1/images/generations", settings.request_timeout, json=data)
        if resp.status_code == 200:
            gw.metrics.generation.labels("image").observe(time.monotonic() - t0)
        return gw.relay_public(resp)

    async def images_edits(request: Request) -> Response:
        if not is_multipart(request):
            raise ApiError(
                400,
                "/v1/images/edits takes multipart/form-data with the image file(s) in 'image'.",
                None,
                "invalid_content_type",
            )
        fields, files = await form_body(request, limit)
        data = v.image_generation(fields, gw.limits, edit=True)
        for key in ("url", "url[]"):
            v.check_reference(data, key, gw.limits)
        uploads = []
        for key, upload in files:
            if key not in ("image", "image[]"):
                raise ApiError(
                    400, f"file field '{key}' is not accepted; send images as 'image'.", key, "unknown_parameter"
                )
            content = await upload.read()
            kind, size = v.sniff_image(content, upload.filename or key, gw.limits)
            v.check_edit_aspect(data, size, upload.filename or key)
            uploads.append((key, (upload.filename or "image", content, kind)))
        if not uploads and not any(k in data for k in ("url", "url[]")):
            raise ApiError(400, "no image given: upload it in the 'image' field.", "image", "missing_parameter")
        if "width" in data:
            data["size"] = f"{data.pop('width')}x{data.pop('height')}"
        gw.note_prompt(request, data)
        gw.require_ready()
        t0 = time.monotonic()
        async with gw.slots.take():
            resp = await gw.call(
                "POST", "/v1/images/edits", settings.request_timeout, data=form_strings(data), files=uploads
            )
        if resp.status_code == 200:
            gw.metrics.generation.labels("image_edit").observe(time.monotonic() - t0)
        return gw.relay_public(resp)

    async def image_content(request: Request) -> Response:
        public_id = check_id(request.path_params["image_id"])
        owner, image_id = gw.owner_of(public_id)
        if owner is not None and owner != settings.replica_id:
            return await gw.forward(request, owner, public_id)
        query = {"variant": request.query_params["variant"]} if "variant" in request.query_params else None
        response = await stream(f"/v1/images/{image_id}/content", query)
        if response.status_code == 404 and owner is not None:
            raise gw.not_on_this_replica("image", public_id)
        return response

    async def stream(path: str, params: dict[str, str] | None = None) -> Response:
        req = gw.http.build_request("GET", gw.upstream + path, params=params, timeout=60)
        try:
            resp = await gw.http.send(req, stream=True)
        except httpx.TransportError:
            raise ApiError(503, "the model server is not reachable.", None, "upstream_unavailable") from None
        if resp.status_code >= 400:
            await resp.aread()
            await resp.aclose()
            return gw.relay(resp)
        headers = {
            k: resp.headers[k] for k in ("content-type", "content-length", "content-disposition") if k in resp.headers
        }
        return StreamingResponse(
            resp.aiter_raw(), resp.status_code, headers=headers, background=BackgroundTask(resp.aclose)
        )

    async def video_request(request: Request, sync: bool) -> tuple[dict[str, Any], list[Any]]:
        if is_multipart(request):
            fields, files = await form_body(request, limit)
            data = v.video_generation(fields, gw.limits, sync=sync)
            uploads = []
            for key, upload in files:
                if key != "input_reference":
                    raise ApiError(
                        400,
                        f"file field '{key}' is not accepted; send the image as 'input_reference'.",
                        key,
                        "unknown_parameter",
                    )
                content = await upload.read()
                kind, _ = v.sniff_image(content, upload.filename or key, gw.limits)
                uploads.append((key, (upload.filename or "image.png", content, kind)))
            return data, uploads
        return v.video_generation(await json_body(request, limit), gw.limits, sync=sync), []

    async def create_job(data: dict[str, Any], uploads: list[Any]) -> httpx.Response:
        data = {k: val for k, val in data.items() if k != "response_format"}
        if uploads:
            return await gw.call("POST", "/v1/videos", 60, data=form_strings(data), files=uploads)
        return await gw.call("POST", "/v1/videos", 60, json=data)

    async def videos(request: Request) -> Response:
        if request.method == "GET":  # this replica's jobs
            return gw.relay_public(await gw.call("GET", "/v1/videos", params=dict(request.query_params)))
        data, uploads = await video_request(request, sync=False)
        gw.note_prompt(request, data)
        gw.require_ready()
        await gw.check_video_capacity()
        return gw.relay_public(await create_job(data, uploads))

    async def video(request: Request) -> Response:
        public_id = check_id(request.path_params["video_id"])
        owner, video_id = gw.owner_of(public_id)
        if owner is not None and owner != settings.replica_id:
            return await gw.forward(request, owner, public_id)
        resp = await gw.call(request.method, f"/v1/videos/{video_id}")
        if resp.status_code == 404 and owner is not None:
            raise gw.not_on_this_replica("video", public_id)
        return gw.relay_public(resp)

    async def video_content(request: Request) -> Response:
        public_id = check_id(request.path_params["video_id"])
        owner, video_id = gw.owner_of(public_id)
        if owner is not None and owner != settings.replica_id:
            return await gw.forward(request, owner, public_id)
        response = await stream(f"/v1/videos/{video_id}/content")
        if response.status_code == 404 and owner is not None:
            raise gw.not_on_this_replica("video", public_id)
        if response.status_code == 200 and gw.draining_since is not None:
            gw.fetched.add(video_id)
        return response

    async def video_generations_sync(request: Request) -> Response:
        """Seed compatibility: create a video job, wait for it, answer with the finished job."""
        data, uploads = await video_request(request, sync=True)
        gw.note_prompt(request, data)
        gw.require_ready()
        t0 = time.monotonic()
        async with gw.slots.take():
            created = await create_job(data, uploads)
            if created.status_code != 200:
                return gw.relay(created)
            job = await gw.wait_for_job(created.json()["id"], settings.request_timeout)
        if job.get("status") != "completed":
            error = job.get("error") or {}
            message = error.get("message") if isinstance(error, dict) else str(error)
            raise ApiError(
                500, f"video generation {job.get('status')}: {message or 'no detail'}", None, "generation_failed"
            )
        gw.metrics.generation.labels("video").observe(time.monotonic() - t0)
        url = f"/v1/videos/{job['id']}/content"
        item: dict[str, Any] = {"url": url}
        if data.get("response_format") == "b64_json":
            content = await gw.call("GET", url, 120)
            if content.status_code != 200:
                return gw.relay(content)
            item = {"b64_json": base64.b64encode(content.content).decode()}
        job = {k: val for k, val in job.items() if k not in ("file_path", "file_paths")}
        return JSONResponse(gw.publish({**job, "url": url, "created": job.get("created_at"), "data": [item]}))

    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # No keep-alive to SGLang: against the real server, the request right after one that raised in
        # SGLang got a 503 "not reachable" while SGLang kept running; a pooled connection it dropped is
        # the likely cause. A fresh loopback connection costs well under a millisecond.
        gw.client = httpx.AsyncClient(limits=httpx.Limits(max_connections=64, max_keepalive_connections=0))
        gw.probe_task = asyncio.create_task(readiness.probe_forever(gw))
        try:
            yield
        finally:
            gw.probe_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await gw.probe_task
            await gw.client.aclose()

    async def api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        headers = {"Retry-After": "10"} if exc.status in (429, 503) else None
        return JSONResponse(exc.body(), exc.status, headers=headers)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        message = {404: "no such route.", 405: "method not allowed on this route."}.get(exc.status_code, exc.detail)
        return JSONResponse(
            ApiError(
                exc.status_code, message, None, "not_found" if exc.status_code == 404 else "method_not_allowed"
            ).body(),
            exc.status_code,
        )

    async def internal_error(request: Request, exc: Exception) -> Response:
        log.exception("internal gateway error on %s", request.url.path)
        return JSONResponse(ApiError(500, "internal gateway error.", None, "internal_error").body(), 500)

    routes = [
        Route("/health", health),
        Route("/live", live),
        Route("/metrics", metrics),
        Route("/v1/models", list_models),
        Route("/v1/images/generations", images_generations, methods=["POST"]),
        Route("/v1/images/edits", images_edits, methods=["POST"]),
        Route("/v1/images/{image_id}/content", image_content),
        Route("/v1/videos", videos, methods=["GET", "POST"]),
        Route("/v1/videos/{video_id}", video, methods=["GET", "DELETE"]),
        Route("/v1/videos/{video_id}/content", video_content),
        Route("/v1/video/generations", video_generations_sync, methods=["POST"]),
    ]
    app = Starlette(
        routes=routes,
        lifespan=contextlib.asynccontextmanager(lifespan),
        exception_handlers={ApiError: api_error, HTTPException: http_error, Exception: internal_error},
    )
    app.state.gateway = gw
    return ObservedApp(app, gw, settings)  # type: ignore[return-value]


OPEN_ROUTES = ("/health", "/live")
QUIET_ROUTES = ("/health", "/live", "/metrics")  # probes and scrapes: counted in metrics, not logged


class ObservedApp:
    """Outermost ASGI layer: request id, API key, metrics and one access-log line per request."""

    def __init__(self, app: Starlette, gw: Gateway, settings: GatewaySettings) -> None:
        self.app = app
        self.gw = gw
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
            elapsed = time.monotonic() - t0
            self.gw.metrics.requests.labels(route, scope["method"], str(status["code"])).inc()
            self.gw.metrics.latency.labels(route).observe(elapsed)
            quiet = scope["path"] in QUIET_ROUTES and status["code"] in (200, 503)
            if not quiet:
                access_log.info(
                    json.dumps(
                        {
                            "request_id": request_id,
                            "method": scope["method"],
                            "route": route,
                            "path": scope["path"][:200],
                            "status": status["code"],
                            "duration_ms": round(elapsed * 1000, 1),
                        }
                    )
                )
