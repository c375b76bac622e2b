"""Graceful shutdown: after SIGTERM new generations get 503 while running ones finish, and videos that
finish in the meantime can still be polled and downloaded, for up to GRACEFUL_SHUTDOWN_TIMEOUT."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from .upstream import TERMINAL

if TYPE_CHECKING:
    from .app import Gateway

log = logging.getLogger("glm_image_sglang.gateway")
DRAIN_POLL_SECONDS = 1.0
DRAIN_LOG_EVERY = 10.0
FETCH_WINDOW = 60.0  # seconds a video that finished during the drain stays downloadable before we exit


async def drain(gw: Gateway, grace: float) -> None:
    """Returns when nothing is left to finish or fetch, or after grace seconds."""
    gw.draining_since = time.monotonic()
    if gw.probe_task is not None:  # a readiness test generation now would be new work
        gw.probe_task.cancel()
    gw.ready.set("draining", "shutting down: finishing running work, taking no new work")
    gw.metrics.ready.set(0)
    deadline = gw.draining_since + grace
    watched: dict[str, float | None] = {}  # video id -> when it finished (None: still running)
    next_log = 0.0
    while True:
        now = time.monotonic()
        statuses = await gw.upstream.job_statuses()
        for job_id, status in statuses.items():
            if status not in TERMINAL:
                watched[job_id] = None
            elif job_id in watched and watched[job_id] is None:
                watched[job_id] = now if status == "completed" else now - FETCH_WINDOW  # nothing to fetch
        for job_id in [j for j, done in watched.items() if done is None and j not in statuses]:
            watched[job_id] = now - FETCH_WINDOW  # deleted, or SGLang is gone
        running = [j for j, done in watched.items() if done is None]
        recent = [j for j, done in watched.items() if done is not None and now - done < FETCH_WINDOW]
        unfetched = [j for j in recent if j not in gw.fetched]
        if not running and not unfetched and not gw.slots.busy:
            log.info("drained in %.1f s: nothing running", now - gw.draining_since)
            return
        if now >= deadline:
            log.warning(
                "shutdown grace of %.0f s is over: stopping with %d video job(s) running, %d finished video(s) "
                "not downloaded and %d request(s) in flight (raise GRACEFUL_SHUTDOWN_TIMEOUT)",
                grace, len(running), len(unfetched), gw.slots.busy,
            )  # fmt: skip
            return
        if now >= next_log:
            log.info(
                "draining: %d video job(s) running, %d finished video(s) waiting for download, %d request(s) "
                "in flight; %.0f s left",
                len(running), len(unfetched), gw.slots.busy, deadline - now,
            )  # fmt: skip
            next_log = now + DRAIN_LOG_EVERY
        await asyncio.sleep(DRAIN_POLL_SECONDS)
