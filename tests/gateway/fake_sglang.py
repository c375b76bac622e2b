"""A local upstream that speaks the SGLang diffusion server's HTTP API (the gateway's contract is
HTTP; the real server is exercised by the e2e tiers). It records what reaches it and can be told to
be slow, loading, or failing."""

from __future__ import annotations

import asyncio
import base64
import io
import itertools
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ports import free_port

MP4 = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + b"\x00" * 64


def png(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buf, "PNG")
    return buf.getvalue()


@dataclass
class Behaviour:
    health: int = 200
    delay: float = 0.0  # seconds each generation takes
    job_seconds: float = 0.3  # how long a video job runs
    fail_generation: bool = False
    image_bytes: bytes | None = None  # what a generation returns instead of a plain PNG of the asked size
    failure: str = "CUDA error: out of memory"  # the detail of a failed generation ("" = a bare 500)
    # SGLang's server warm-up: /health answers 200 while every other request waits until it is over
    warmup_seconds: float = 0.0
    hang_generation: bool = False  # a generation that never answers
    started: float = field(default_factory=time.monotonic)
    requests: list[tuple[str, str, Any]] = field(default_factory=list)  # (method, path, body)
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    images: dict[str, bytes] = field(default_factory=dict)


def create_fake(b: Behaviour) -> Any:
    ids = itertools.count(1)

    def record(request: Request, body: Any) -> None:
        b.requests.append((request.method, request.url.path, body))

    async def warmup_gate(scope: Any, receive: Any, send: Any) -> None:
        """Like SGLang's `wait_for_server_warmup` middleware: requests other than /health wait."""
        if scope["type"] == "http" and scope["path"] != "/health":
            await asyncio.sleep(max(0.0, b.started + b.warmup_seconds - time.monotonic()))
        await app(scope, receive, send)

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok" if b.health == 200 else "loading"}, b.health)

    async def models(request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": "/models/GLM-Image", "object": "model"}]})

    async def generate_image(request: Request) -> Response:
        if request.url.path.endswith("/edits"):
            form = await request.form()
            body: dict[str, Any] = {k: (v.filename if hasattr(v, "filename") else v) for k, v in form.multi_items()}
            size = str(form.get("size") or "64x64")
        else:
            body = await request.json()
            size = f"{body.get('width', 64)}x{body.get('height', 64)}"
        record(request, body)
        await asyncio.sleep(b.delay)
        while b.hang_generation:
            await asyncio.sleep(0.05)
        if b.fail_generation:
            return JSONResponse({"detail": b.failure}, 500) if b.failure else Response("Internal Server Error", 500)
        width, height = (int(x) for x in size.split("x"))
        image_id = f"img{next(ids)}"
        b.images[image_id] = b.image_bytes or png(width, height)
        if body.get("response_format") == "url":
            item = {"url": f"/v1/images/{image_id}/content"}
        else:
            item = {"b64_json": base64.b64encode(b.images[image_id]).decode()}
        item["file_path"] = f"/app/data/outputs/{image_id}.png"  # as SGLang names its own files
        return JSONResponse({"created": int(time.time()), "data": [item], "id": image_id,
                             "file_paths": [f"/app/data/outputs/{image_id}.png"]})  # fmt: skip

    async def image_content(request: Request) -> Response:
        image_id = request.path_params["image_id"]
        if image_id not in b.images:
            return JSONResponse({"detail": "not found"}, 404)
        return Response(b.images[image_id], media_type="image/png")

    def job_view(job: dict[str, Any]) -> dict[str, Any]:
        elapsed = time.monotonic() - job["started"]
        if job["status"] == "in_progress":
            if b.fail_generation:
                job.update(status="failed", error={"message": "worker crashed", "code": "internal"})
            elif elapsed >= b.job_seconds:
                job.update(status="completed", progress=100, completed_at=int(time.time()))
            else:
                job["progress"] = int(100 * elapsed / b.job_seconds)
        return {k: v for k, v in job.items() if k != "started"}

    async def videos(request: Request) -> Response:
        if request.method == "GET":
            return JSONResponse({"object": "list", "data": [job_view(j) for j in b.jobs.values()]})
        if request.headers.get("content-type", "").startswith("multipart/"):
            form = await request.form()
            body = {k: (v.filename if hasattr(v, "filename") else v) for k, v in form.multi_items()}
        else:
            body = await request.json()
        record(request, body)
        job_id = f"video_{next(ids)}"
        b.jobs[job_id] = {"id": job_id, "object": "video", "status": "in_progress", "progress": 0,
                          "created_at": int(time.time()), "file_path": f"/outputs/{job_id}.mp4",
                          "started": time.monotonic()}  # fmt: skip
        return JSONResponse(job_view(b.jobs[job_id]))

    async def video(request: Request) -> Response:
        job = b.jobs.get(request.path_params["video_id"])
        if job is None:
            return JSONResponse({"detail": "Video not found"}, 404)
        if request.method == "DELETE":
            del b.jobs[job["id"]]
            return JSONResponse({**job_view(job), "deleted": True})
        return JSONResponse(job_view(job))

    async def video_content(request: Request) -> Response:
        job = b.jobs.get(request.path_params["video_id"])
        if job is None or job_view(job)["status"] != "completed":
            return JSONResponse({"detail": "not ready"}, 404)
        return Response(MP4, media_type="video/mp4")

    async def admin(request: Request) -> Response:
        record(request, None)
        return JSONResponse({"success": True})

    app = Starlette(
        routes=[
            Route("/health", health),
            Route("/v1/models", models),
            Route("/v1/images/generations", generate_image, methods=["POST"]),
            Route("/v1/images/edits", generate_image, methods=["POST"]),
            Route("/v1/images/{image_id}/content", image_content),
            Route("/v1/videos", videos, methods=["GET", "POST"]),
            Route("/v1/videos/{video_id}", video, methods=["GET", "DELETE"]),
            Route("/v1/videos/{video_id}/content", video_content),
            Route("/update_weights_from_disk", admin, methods=["POST"]),
            Route("/release_memory_occupation", admin, methods=["POST"]),
            Route("/model_info", admin),
        ]
    )
    return warmup_gate  # type: ignore[return-value]


class Served:
    """An ASGI app served by uvicorn in a thread (no signal handlers: they belong to the main thread)."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.host = host
        self.port = port or free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host=host, port=self.port, log_level="warning"))
        self.server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.02)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
