"""Fixtures: the fake SGLang upstream and the real gateway, each served by uvicorn on a loopback port."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from fake_sglang import Behaviour, Served, create_fake
from glm_image_sglang.gateway.app import create_app
from glm_image_sglang.models import VARIANTS
from glm_image_sglang.settings import GatewaySettings


@pytest.fixture
def behaviour() -> Behaviour:
    return Behaviour()


@pytest.fixture
def upstream(behaviour: Behaviour) -> Iterator[Served]:
    served = Served(create_fake(behaviour))
    yield served
    served.stop()


class Gateway:
    def __init__(
        self,
        upstream: Served,
        variant: str | None,
        env: dict[str, str],
        wait_ready: bool,
        ready_timeout: float = 0,
        edits_off: str | None = None,
        ar_health: str | None = None,
    ) -> None:
        self.settings = GatewaySettings.from_env(env)
        variant_info = VARIANTS.get(variant or "")
        self.app = create_app(upstream.url, self.settings, variant_info, ready_timeout, None, edits_off, ar_health)
        self.served = Served(self.app)
        self.client = httpx.Client(base_url=self.served.url, timeout=30)
        if wait_ready:
            self.wait_ready()

    def wait_ready(self, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while self.client.get("/health").status_code != 200:
            assert time.monotonic() < deadline, self.client.get("/health").text
            time.sleep(0.05)

    def close(self) -> None:
        self.client.close()
        self.served.stop()


@pytest.fixture
def make_gateway(upstream: Served) -> Iterator[Any]:
    made: list[Gateway] = []

    def make(
        variant: str | None = "glm-image",
        wait_ready: bool = True,
        ready_timeout: float = 0,
        edits_off: str | None = None,
        ar_health: str | None = None,
        **env: Any,
    ) -> Gateway:
        env = {k.upper(): str(v) for k, v in env.items()}
        gw = Gateway(upstream, variant, env, wait_ready, ready_timeout, edits_off, ar_health)
        made.append(gw)
        return gw

    yield make
    for gw in made:
        gw.close()


@pytest.fixture
def glm(make_gateway: Any) -> Gateway:
    return make_gateway("glm-image")


@pytest.fixture
def ti2v(make_gateway: Any) -> Gateway:
    return make_gateway("wan2.2-ti2v-5b")
