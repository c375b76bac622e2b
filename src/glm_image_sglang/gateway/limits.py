"""How much the gateway takes on at once: generation slots with a bounded queue, request bodies being
read at once, and queued video jobs; beyond each, an immediate 429 or 503 with Retry-After, never a hang."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator

from prometheus_client import Gauge

from .upstream import TERMINAL, Upstream
from .validation import ApiError


class Slots:
    """MAX_CONCURRENCY generations at once, MAX_QUEUE waiting; beyond that, 429 at once."""

    def __init__(self, concurrency: int, queue: int, in_flight: Gauge, queued: Gauge) -> None:
        self.sem = asyncio.Semaphore(concurrency)
        self.queue = queue
        self.waiting = 0
        self.running = 0
        self.in_flight, self.queued = in_flight, queued

    @property
    def busy(self) -> int:
        """Generations running or waiting for a slot."""
        return self.running + self.waiting

    @contextlib.asynccontextmanager
    async def take(self) -> AsyncIterator[None]:
        if self.sem.locked() and self.waiting >= self.queue:
            raise ApiError(429, "the server is busy: the queue is full. Retry later.", None, "queue_full")
        self.waiting += 1
        self.queued.set(self.waiting)
        try:
            await self.sem.acquire()
        finally:
            self.waiting -= 1
            self.queued.set(self.waiting)
        self.in_flight.inc()
        self.running += 1
        try:
            yield
        finally:
            self.running -= 1
            self.in_flight.dec()
            self.sem.release()


class BodyGate:
    """At most MAX_BODIES_IN_FLIGHT request bodies held in memory at once (each up to MAX_BODY_BYTES):
    one more is refused with 503 before it is read."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.reading = 0

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        if self.reading >= self.limit:
            raise ApiError(
                503,
                f"the server is reading {self.reading} other request bodies (MAX_BODIES_IN_FLIGHT); retry shortly.",
                None,
                "too_many_bodies",
            )
        self.reading += 1
        try:
            yield
        finally:
            self.reading -= 1


async def check_video_capacity(upstream: Upstream, concurrency: int, queue: int) -> None:
    """Video jobs run in SGLang's own queue: refuse a new one when running + queued reach the bound."""
    resp = await upstream.call("GET", "/v1/videos")
    if resp.status_code != 200:
        return
    jobs = resp.json().get("data", [])
    active = sum(1 for j in jobs if isinstance(j, dict) and j.get("status") not in TERMINAL)
    if active >= concurrency + queue:
        raise ApiError(
            429, f"the server is busy: {active} video jobs are queued or running. Retry later.", None, "queue_full"
        )
