"""Talking to SGLang: calls with their timeouts, streamed downloads, and SGLang's answers as clients
see them: OpenAI-shaped errors that say what failed, with no server path, traceback or bare
'Internal Server Error'.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any

import httpx
from starlette.background import BackgroundTask
from starlette.responses import JSONResponse, Response, StreamingResponse

from .validation import ApiError

CALL_TIMEOUT = 30.0  # seconds for an upstream call that is not a generation
POLL_SECONDS = 1.0
TERMINAL = ("completed", "failed", "cancelled", "canceled", "expired")
# keys of SGLang's answers that name files on the server (its output and upload folders)
PATH_KEYS = frozenset(
    {"file_path", "file_paths", "output_path", "output_file_path", "input_path", "image_path", "local_path", "root"}
)
# an absolute filesystem path inside a text (not one of the API's own /v1/ routes): only its last part stays
ABS_PATH = re.compile(r"(?<![\w.:/-])/(?!v1/)(?:[\w.@+~-]+/)+([\w.@+~-]*)")
TEXT_KEYS = frozenset({"message", "detail", "error", "reason"})  # SGLang's words about a failure
STAGE = re.compile(r"\b([A-Z][A-Za-z0-9]*Stage)\b")
PASSED_HEADERS = ("content-type", "content-length", "content-disposition")


def scrub_text(text: str) -> str:
    """A message for clients: no traceback, no server path (the file name alone stays)."""
    text = text.split("Traceback (most recent call last)")[0]
    return ABS_PATH.sub(lambda m: m[1] or "<path>", text).strip()


def scrub(body: Any, key: str = "") -> Any:
    """SGLang's JSON without the keys that name server files, and without paths in its messages (only
    there: other strings, base64 images above all, are data)."""
    if isinstance(body, list):
        return [scrub(item, key) for item in body]
    if isinstance(body, dict):
        return {k: scrub(val, k) for k, val in body.items() if k not in PATH_KEYS}
    if isinstance(body, str) and key in TEXT_KEYS:
        return scrub_text(body)
    return body


def detail_of(resp: httpx.Response) -> str:
    """What SGLang said about a failure, as one string."""
    try:
        body = resp.json()
    except ValueError:
        return resp.text[:4000]
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return str(body["error"].get("message", ""))
    detail = body.get("detail", body) if isinstance(body, dict) else body
    return detail if isinstance(detail, str) else json.dumps(detail)[:4000]


def failure(status: int, detail: str, request_id: str | None) -> ApiError:
    """An error of the model server as the client sees it: the stage when SGLang names it, SGLang's own
    words when it has any, and the request id that finds the whole story in the server's log."""
    said = scrub_text(detail)
    stage = STAGE.search(said)
    where = f" in {stage[1]}" if stage else ""
    if not said or said.lower() in ("internal server error", "internal error"):
        message = f"the model server failed this request{where} (HTTP {status}) without saying why"
    else:
        message = f"the model server failed this request{where}: {said[:600]}"
    if request_id:
        message += f" (request id {request_id}: the server log has the details)"
    return ApiError(status, message, None, "upstream_error")


def relay(resp: httpx.Response, request_id: str | None = None) -> Response:
    """SGLang's answer to the client: JSON scrubbed of server paths, errors in the OpenAI shape."""
    if resp.status_code >= 400:
        detail = detail_of(resp)
        if resp.status_code >= 500:
            error = failure(resp.status_code, detail, request_id)
        else:
            error = ApiError(resp.status_code, scrub_text(detail)[:2000], None, "upstream_error")
        return JSONResponse(error.body(), resp.status_code)
    if "json" in resp.headers.get("content-type", ""):
        try:
            return JSONResponse(scrub(resp.json()), resp.status_code)
        except ValueError:
            pass
    return Response(resp.content, resp.status_code, media_type=resp.headers.get("content-type"))


def streamed(resp: httpx.Response) -> StreamingResponse:
    """A download passed through as it arrives."""
    headers = {k: resp.headers[k] for k in PASSED_HEADERS if k in resp.headers}
    return StreamingResponse(
        resp.aiter_raw(), resp.status_code, headers=headers, background=BackgroundTask(resp.aclose)
    )


class Upstream:
    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self.client: httpx.AsyncClient | None = None

    @property
    def http(self) -> httpx.AsyncClient:
        assert self.client is not None, "gateway not started"
        return self.client

    def open(self) -> None:
        # No keep-alive to SGLang: against the real server, the request right after one that raised in
        # SGLang got a 503 "not reachable" while SGLang kept running; a pooled connection it dropped is
        # the likely cause. A fresh loopback connection costs well under a millisecond.
        self.client = httpx.AsyncClient(limits=httpx.Limits(max_connections=64, max_keepalive_connections=0))

    async def close(self) -> None:
        if self.client is not None:
            await self.client.aclose()

    async def call(self, method: str, path: str, timeout: float | None = None, **kw: Any) -> httpx.Response:
        try:
            return await self.http.request(method, self.url + path, timeout=timeout or CALL_TIMEOUT, **kw)
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

    async def stream(self, path: str, params: dict[str, str] | None = None) -> Response:
        req = self.http.build_request("GET", self.url + path, params=params, timeout=60)
        try:
            resp = await self.http.send(req, stream=True)
        except httpx.TransportError:
            raise ApiError(503, "the model server is not reachable.", None, "upstream_unavailable") from None
        if resp.status_code >= 400:
            await resp.aread()
            await resp.aclose()
            return relay(resp)
        return streamed(resp)

    async def wait_for_job(self, job_id: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            resp = await self.call("GET", f"/v1/videos/{job_id}")
            if resp.status_code != 200:
                raise ApiError(
                    resp.status_code, f"cannot read job {job_id}: {scrub_text(resp.text[:300])}", None, "upstream_error"
                )
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

    async def job_statuses(self) -> dict[str, str]:
        """Status of every video job SGLang knows; empty when it does not answer (then nothing can finish)."""
        try:
            resp = await self.http.get(self.url + "/v1/videos", timeout=10)
            jobs = resp.json().get("data", []) if resp.status_code == 200 else []
        except (httpx.HTTPError, ValueError, AttributeError):
            return {}
        return {str(j.get("id")): str(j.get("status")) for j in jobs if isinstance(j, dict)}

    async def health(self, url: str | None = None) -> int | None:
        """SGLang's /health status (or that of url); None while nothing answers."""
        try:
            return (await self.http.get(url or self.url + "/health", timeout=5)).status_code
        except httpx.HTTPError:
            return None
