"""Readiness of the model behind the gateway: /health is 200 only after one small real generation succeeded.

That generation is the only warm-up (the launcher turns SGLang's own server warm-up off, which would
hold every request until it finished): the first generation after a start compiles kernels and may
take minutes, so it waits as long as the start-up window allows (STARTUP_TIMEOUT, `--ready-timeout`)
instead of a per-request limit. A real failure turns /health `failed` with SGLang's reason and is
retried every RETRY_SECONDS.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .validation import ApiError

if TYPE_CHECKING:
    from .app import Gateway

log = logging.getLogger("glm_image_sglang.gateway")
RETRY_SECONDS = 60.0  # after a failed test generation
HEALTH_POLL_SECONDS = 2.0  # while SGLang loads
READY_POLL_SECONDS = 10.0  # once ready: is SGLang still answering?
NO_WINDOW = 7 * 86400.0  # --ready-timeout 0: wait as long as it takes (the supervisor's STARTUP_TIMEOUT still applies)


@dataclass
class Readiness:
    state: str = "loading"  # loading | warming | ready | failed | draining
    detail: str = "waiting for the model server"
    since: float = field(default_factory=time.monotonic)
    was_ready: bool = False
    unanswered: tuple[str, float] | None = None  # once ready: who stopped answering /health, since when

    def stuck(self, limit: float) -> str | None:
        """Why /live should fail: a server that answered once has not answered /health for `limit` seconds."""
        if not limit or self.unanswered is None:
            return None
        who, since = self.unanswered
        silent = time.monotonic() - since
        if silent < limit:
            return None
        return (f"{who} has not answered /health for {silent:.0f} s (UNRESPONSIVE_TIMEOUT {limit:.0f} s) since the "
                "server was ready: restart the container")  # fmt: skip

    def set(self, state: str, detail: str) -> None:
        if (state, detail) != (self.state, self.detail):
            self.state, self.detail, self.since = state, detail, time.monotonic()

    def view(self) -> dict[str, Any]:
        """/health's body: the state, why, and for how long."""
        return {"status": self.state, "detail": self.detail, "seconds": round(time.monotonic() - self.since, 1)}


async def probe_forever(gw: Gateway) -> None:
    """loading -> warming (the test generation) -> ready; failed (retried) when the generation fails."""
    while True:
        status = await gw.upstream.health()
        who = "the model server"
        if status == 200 and gw.ar_health is not None:  # GLM_AR: the AR server may still load beside it
            status = await gw.upstream.health(gw.ar_health)
            who = "the AR server"
        if status != 200:
            if gw.ready.state == "ready":
                log.error("%s stopped answering /health (%s); not ready", who, status)
            if gw.ready.was_ready and gw.ready.unanswered is None:
                gw.ready.unanswered = (who, time.monotonic())
            gw.ready.set("loading", f"{who} is loading" if status is None else f"{who}: /health {status}")
            gw.metrics.ready.set(0)
            await asyncio.sleep(HEALTH_POLL_SECONDS)
            continue
        gw.ready.unanswered = None
        if gw.ready.state == "ready":
            await asyncio.sleep(READY_POLL_SECONDS)
            continue
        if gw.settings.ready_probe == "health" or gw.variant is None:
            why = "READY_PROBE=health" if gw.variant is not None else "unrecognised model: no test generation"
            mark_ready(gw, f"SGLang /health answered 200 ({why})")
            continue
        first = gw.ready.state != "failed"
        gw.ready.set(
            "warming",
            "running a test generation" + (" (the first one after a start also compiles kernels)" if first else ""),
        )
        log.info("the model server answered /health 200; running a test generation")
        t0, limit = time.monotonic(), window(gw)
        try:
            await test_generation(gw, limit)
        except ApiError as e:
            if e.code == "timeout":  # the call's own message names REQUEST_TIMEOUT
                e.message = f"no answer within {limit:.0f} s (the start-up window, STARTUP_TIMEOUT)"
            await failed(gw, e.message)
            continue
        except Exception as e:
            await failed(gw, f"{type(e).__name__}: {e}")
            continue
        mark_ready(gw, f"a test generation succeeded in {time.monotonic() - t0:.1f} s")


async def failed(gw: Gateway, message: str) -> None:
    """Not ready, with the reason on /health; the caller retries after RETRY_SECONDS."""
    log.error("the test generation failed, staying not ready (retry in %.0f s): %s", RETRY_SECONDS, message)
    gw.ready.set("failed", f"the test generation failed: {message}"[:500])
    await asyncio.sleep(RETRY_SECONDS)


def window(gw: Gateway) -> float:
    """Seconds the test generation may take: what is left of the start-up window; once that is over
    (a retry after a failure), REQUEST_TIMEOUT like any request."""
    if not gw.ready_timeout:
        return NO_WINDOW
    left = gw.started + gw.ready_timeout - time.monotonic()
    return left if left > 0 else float(gw.settings.request_timeout)


def mark_ready(gw: Gateway, why: str) -> None:
    gw.ready.set("ready", why)
    gw.ready.was_ready = True
    gw.metrics.ready.set(1)
    log.info("ready: %s", why)


async def test_generation(gw: Gateway, timeout: float) -> None:
    """The smallest generation the model allows: one step, a few frames, the smallest aligned size."""
    assert gw.variant is not None
    size = max(gw.variant.alignment * 8, 128)
    common = {"prompt": "readiness check", "num_inference_steps": 1, "seed": 0, "generator_device": "cpu"}
    if gw.variant.output == "image":
        body = {**common, "size": f"{size}x{size}", "response_format": "b64_json"}
        resp = await gw.upstream.call("POST", "/v1/images/generations", timeout, json=body)
        if resp.status_code != 200 or not resp.json().get("data"):
            raise ApiError(502, f"HTTP {resp.status_code}: {resp.text[:500]}")
        return
    deadline = time.monotonic() + timeout
    video = {**common, "width": size, "height": size, "num_frames": 5}
    if "text-to-video" in gw.variant.tasks:
        resp = await gw.upstream.call("POST", "/v1/videos", timeout, json=video)
    else:  # image-to-video only (I2V-A14B): the test needs a first frame
        fields = {k: str(val) for k, val in video.items()}
        frame = ("probe.png", probe_png(size), "image/png")
        resp = await gw.upstream.call("POST", "/v1/videos", timeout, data=fields, files={"input_reference": frame})
    if resp.status_code != 200:
        raise ApiError(502, f"HTTP {resp.status_code}: {resp.text[:500]}")
    job = await gw.upstream.wait_for_job(resp.json()["id"], max(deadline - time.monotonic(), 1.0))
    if job.get("status") != "completed":
        raise ApiError(502, f"video job {job.get('status')}: {json.dumps(job.get('error'))[:500]}")


def probe_png(size: int) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (size, size), (90, 140, 200)).save(buf, "PNG")
    return buf.getvalue()
