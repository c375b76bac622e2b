"""The public API's handlers: each validates its request, asks SGLang through the gateway's state
(request.app.state.gateway) and answers in the OpenAI shape."""

from __future__ import annotations

import base64
import time
from typing import TYPE_CHECKING, Any

import httpx
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from . import validation as v
from .bodies import check_id, form_body, form_strings, images, is_multipart, json_body
from .images import check_edit_aspect
from .limits import check_video_capacity
from .observe import note_prompt
from .upstream import scrub, scrub_text
from .validation import ApiError

if TYPE_CHECKING:
    from .app import Gateway


def state(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


def rid(request: Request) -> str | None:
    return request.scope.get("request_id")


async def health(request: Request) -> Response:
    gw = state(request)
    return JSONResponse(gw.ready.view(), 200 if gw.ready.state == "ready" else 503)


async def live(request: Request) -> Response:
    """200 while the gateway runs (long jobs included); 503 once a model server that was ready has stopped
    answering /health for UNRESPONSIVE_TIMEOUT, so that a livenessProbe restarts the container."""
    gw = state(request)
    stuck = gw.ready.stuck(gw.settings.unresponsive_timeout)
    if stuck:
        return JSONResponse({"status": "stuck", "detail": stuck}, 503)
    return JSONResponse({"status": "alive"})


async def metrics(request: Request) -> Response:
    return Response(generate_latest(state(request).metrics.registry), media_type=CONTENT_TYPE_LATEST)


async def list_models(request: Request) -> Response:
    """SGLang's list, each model named by its repo name (or SERVED_MODEL_NAME), never a server path, with
    what the gateway fills in when a request leaves it out."""
    gw = state(request)
    resp = await gw.upstream.call("GET", "/v1/models")
    if resp.status_code != 200:
        return gw.replicas.answer(resp, rid(request))
    body = resp.json()
    for entry in body.get("data", []) if isinstance(body, dict) else []:
        if not isinstance(entry, dict):
            continue
        if gw.model_name:
            entry["id"] = gw.model_name
        if gw.variant is not None:
            tasks = [t for t in gw.variant.tasks if not (gw.edits_off and t == "image-edit")]
            entry.update(defaults=v.defaults_of(gw.variant), tasks=tasks)
            entry.update(output=gw.variant.output, alignment=gw.variant.alignment)
    return JSONResponse(scrub(body))


async def images_generations(request: Request) -> Response:
    gw = state(request)
    data = v.image_generation(await json_body(request, gw.settings.max_body_bytes, gw.bodies), gw.limits)
    return await generate_image(request, gw, "/v1/images/generations", "image", json=data)


async def images_edits(request: Request) -> Response:
    gw = state(request)
    if gw.edits_off:
        raise ApiError(400, gw.edits_off, None, "edits_unavailable")
    if not is_multipart(request):
        raise ApiError(
            400,
            "/v1/images/edits takes multipart/form-data with the image file(s) in 'image'.",
            None,
            "invalid_content_type",
        )
    fields, files = await form_body(request, gw.settings.max_body_bytes, gw.bodies)
    data = v.image_generation(fields, gw.limits, edit=True)
    for key in ("url", "url[]"):
        v.check_reference(data, key, gw.limits)
    checked = await images(files, ("image", "image[]"), "image", gw.limits)
    for (key, upload), (_, _, size) in zip(files, checked, strict=True):
        check_edit_aspect(data, size, upload.filename or key)
    uploads = [(key, named) for key, named, _ in checked]
    if not uploads and not any(k in data for k in ("url", "url[]")):
        raise ApiError(400, "no image given: upload it in the 'image' field.", "image", "missing_parameter")
    if "width" in data:
        data["size"] = f"{data.pop('width')}x{data.pop('height')}"
    return await generate_image(request, gw, "/v1/images/edits", "image_edit", data=form_strings(data), files=uploads)


async def generate_image(request: Request, gw: Gateway, path: str, kind: str, **payload: Any) -> Response:
    """A generation or edit, once a slot is free; its time counts in the metrics when it succeeds."""
    note_prompt(gw.settings, rid(request), payload.get("json") or payload.get("data") or {})
    gw.require_ready()
    t0 = time.monotonic()
    async with gw.slots.take():
        resp = await gw.upstream.call("POST", path, gw.settings.request_timeout, **payload)
    if resp.status_code == 200:
        gw.metrics.generation.labels(kind).observe(time.monotonic() - t0)
    return gw.replicas.answer(resp, rid(request))


async def image_content(request: Request) -> Response:
    gw = state(request)
    query = {"variant": request.query_params["variant"]} if "variant" in request.query_params else None

    async def local(image_id: str) -> Response:
        return await gw.upstream.stream(f"/v1/images/{image_id}/content", query)

    return await gw.replicas.owned(request, "image", check_id(request.path_params["image_id"]), local)


async def video_request(request: Request, gw: Gateway, sync: bool) -> tuple[dict[str, Any], list[Any]]:
    if is_multipart(request):
        fields, files = await form_body(request, gw.settings.max_body_bytes, gw.bodies)
        data = v.video_generation(fields, gw.limits, sync=sync)
        uploads = [(key, named) for key, named, _ in await images(files, ("input_reference",), "input", gw.limits)]
        return data, uploads
    body = await json_body(request, gw.settings.max_body_bytes, gw.bodies)
    return v.video_generation(body, gw.limits, sync=sync), []


async def create_job(gw: Gateway, data: dict[str, Any], uploads: list[Any]) -> httpx.Response:
    data = {k: val for k, val in data.items() if k != "response_format"}
    if uploads:
        return await gw.upstream.call("POST", "/v1/videos", 60, data=form_strings(data), files=uploads)
    return await gw.upstream.call("POST", "/v1/videos", 60, json=data)


async def videos(request: Request) -> Response:
    gw = state(request)
    if request.method == "GET":  # this replica's jobs
        listed = await gw.upstream.call("GET", "/v1/videos", params=dict(request.query_params))
        return gw.replicas.answer(listed, rid(request))
    data, uploads = await video_request(request, gw, sync=False)
    note_prompt(gw.settings, rid(request), data)
    gw.require_ready()
    await check_video_capacity(gw.upstream, gw.settings.max_concurrency, gw.settings.max_queue)
    return gw.replicas.answer(await create_job(gw, data, uploads), rid(request))


async def video(request: Request) -> Response:
    gw = state(request)

    async def local(video_id: str) -> Response:
        return gw.replicas.answer(await gw.upstream.call(request.method, f"/v1/videos/{video_id}"), rid(request))

    return await gw.replicas.owned(request, "video", check_id(request.path_params["video_id"]), local)


async def video_content(request: Request) -> Response:
    gw = state(request)

    async def local(video_id: str) -> Response:
        response = await gw.upstream.stream(f"/v1/videos/{video_id}/content")
        if response.status_code == 200 and gw.draining_since is not None:
            gw.fetched.add(video_id)
        return response

    return await gw.replicas.owned(request, "video", check_id(request.path_params["video_id"]), local)


async def video_generations_sync(request: Request) -> Response:
    """Seed compatibility: create a video job, wait for it, answer with the finished job."""
    gw = state(request)
    data, uploads = await video_request(request, gw, sync=True)
    note_prompt(gw.settings, rid(request), data)
    gw.require_ready()
    t0 = time.monotonic()
    async with gw.slots.take():
        created = await create_job(gw, data, uploads)
        if created.status_code != 200:
            return gw.replicas.answer(created, rid(request))
        job = await gw.upstream.wait_for_job(created.json()["id"], gw.settings.request_timeout)
    if job.get("status") != "completed":
        error = job.get("error") or {}
        message = error.get("message") if isinstance(error, dict) else str(error)
        said = scrub_text(str(message or "no detail"))
        raise ApiError(500, f"video generation {job.get('status')}: {said}", None, "generation_failed")
    gw.metrics.generation.labels("video").observe(time.monotonic() - t0)
    url = f"/v1/videos/{job['id']}/content"
    item: dict[str, Any] = {"url": url}
    if data.get("response_format") == "b64_json":
        content = await gw.upstream.call("GET", url, 120)
        if content.status_code != 200:
            return gw.replicas.answer(content, rid(request))
        item = {"b64_json": base64.b64encode(content.content).decode()}
    return JSONResponse(
        gw.replicas.publish(scrub({**job, "url": url, "created": job.get("created_at"), "data": [item]}))
    )
