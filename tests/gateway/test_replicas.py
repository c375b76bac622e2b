"""Several replicas behind one Service: two gateways, each in front of its own SGLang-speaking upstream,
on two loopback addresses with the same port (as two pods with one container port). Ids name the
replica that made them; any replica forwards requests for them to that replica."""

from __future__ import annotations

import io
import time
from typing import Any

import httpx
import pytest
from PIL import Image

from fake_sglang import MP4, Behaviour, Served, create_fake, free_port
from glm_image_sglang.errors import ConfigError
from glm_image_sglang.gateway.app import create_app
from glm_image_sglang.models import VARIANTS
from glm_image_sglang.settings import GatewaySettings

pytestmark = pytest.mark.gateway
KEY = "replica-test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


class Replica:
    def __init__(self, name: str, port: int, variant: str) -> None:
        self.name = name
        self.behaviour = Behaviour()
        self.upstream = Served(create_fake(self.behaviour))
        settings = GatewaySettings.from_env(
            {"REPLICA_ID": name, "PEER_URL": f"http://127.0.0.{{replica}}:{port}", "API_KEY": KEY}
        )
        self.gateway = Served(create_app(self.upstream.url, settings, VARIANTS[variant]), host=f"127.0.0.{name}",
                              port=port)  # fmt: skip
        self.client = httpx.Client(base_url=self.gateway.url, headers=AUTH, timeout=30)
        deadline = time.monotonic() + 60
        while self.client.get("/health").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)

    def close(self) -> None:
        self.client.close()
        self.gateway.stop()
        self.upstream.stop()


@pytest.fixture
def replicas(request: Any) -> Any:
    variant = getattr(request, "param", "wan2.2-ti2v-5b")
    port = free_port()
    made = [Replica("2", port, variant), Replica("3", port, variant)]
    yield made
    for r in made:
        r.close()


def wait_completed(client: httpx.Client, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        job: dict[str, Any] = client.get(f"/v1/videos/{job_id}").json()
        if job["status"] == "completed":
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.1)


def test_job_made_on_one_replica_is_polled_and_fetched_through_the_other(replicas):
    """A job created through replica 2 should carry its name; replica 3 should forward the polls and
    the download to replica 2 (whose SGLang has the job), with the API key passed along."""
    a, b = replicas
    job = a.client.post("/v1/videos", json={"prompt": "a wave", "size": "256x256", "num_frames": 5}).json()
    assert job["id"].startswith("2.") and job["id"].count(".") == 1
    assert wait_completed(b.client, job["id"])["id"] == job["id"]
    content = b.client.get(f"/v1/videos/{job['id']}/content")
    assert content.status_code == 200 and content.content == MP4
    upstream_id = job["id"].split(".", 1)[1]
    assert upstream_id in a.behaviour.jobs and upstream_id not in b.behaviour.jobs


def test_job_list_shows_this_replicas_jobs_with_their_ids(replicas):
    """GET /v1/videos should list the replica's own jobs (here also its readiness test job) under the
    ids clients were given."""
    a, b = replicas
    job = a.client.post("/v1/videos", json={"prompt": "a wave", "size": "256x256", "num_frames": 5}).json()
    listed = [j["id"] for j in a.client.get("/v1/videos").json()["data"]]
    assert job["id"] in listed and all(i.startswith("2.") for i in listed)
    assert job["id"] not in [j["id"] for j in b.client.get("/v1/videos").json()["data"]]


@pytest.mark.parametrize("replicas", ["glm-image"], indirect=True)
def test_image_url_works_through_any_replica(replicas):
    """An image made with response_format=url through replica 3 should download through replica 2."""
    a, b = replicas
    resp = b.client.post("/v1/images/generations", json={"prompt": "x", "size": "64x32", "response_format": "url"})
    url = resp.json()["data"][0]["url"]
    assert url.startswith("/v1/images/3.") and url.endswith("/content")
    image = a.client.get(url)
    assert image.status_code == 200 and Image.open(io.BytesIO(image.content)).size == (64, 32)


def test_owner_gone_says_so(replicas):
    """A request for a job whose replica no longer answers should be a 404 that says which replica and
    why, not SGLang's bare 'not found'."""
    a, b = replicas
    job = b.client.post("/v1/videos", json={"prompt": "a wave", "size": "256x256", "num_frames": 5}).json()
    b.gateway.stop()
    resp = a.client.get(f"/v1/videos/{job['id']}")
    assert resp.status_code == 404
    error = resp.json()["error"]
    assert error["code"] == "replica_gone" and "belongs to replica 3, which is gone" in error["message"]


def test_unknown_id_on_its_own_replica(replicas):
    """An id naming this replica that its SGLang does not know (e.g. made before a restart) should say so."""
    a, _ = replicas
    resp = a.client.get("/v1/videos/2.0d1e2f3a-not-here")
    assert resp.status_code == 404 and "is not on replica 2" in resp.json()["error"]["message"]
    assert "restarted" in resp.json()["error"]["message"]


@pytest.mark.parametrize("owner", ["evil", "attacker-2", "metadata.google.internal", "20000000"])
def test_foreign_owner_is_unknown_without_a_call(replicas, owner):
    """An id whose owner is not a pod of this StatefulSet (REPLICA_ID's name with another ordinal) should be
    a plain 404, with nothing sent anywhere (the client's API key would go along)."""
    a, _ = replicas
    sent = len(a.behaviour.requests)
    resp = a.client.get(f"/v1/videos/{owner}.abc/content")
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "not_found"
    assert "replica_gone" not in resp.text and len(a.behaviour.requests) == sent


def test_forwarded_request_is_not_forwarded_again(replicas):
    """A request that was already forwarded once should not bounce between replicas."""
    a, _ = replicas
    resp = a.client.get("/v1/videos/3.abc", headers={"x-glm-image-sglang-forwarded": "3"})
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "not_found"


def test_forwarding_keeps_the_api_key_check(replicas):
    """Without the key, the first replica refuses before anything is forwarded."""
    a, b = replicas
    job = b.client.post("/v1/videos", json={"prompt": "a wave", "size": "256x256", "num_frames": 5}).json()
    assert httpx.get(f"{a.gateway.url}/v1/videos/{job['id']}").status_code == 401


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"REPLICA_ID": "2"}, "REPLICA_ID and PEER_URL go together"),
        ({"PEER_URL": "http://{replica}.peers:30000"}, "REPLICA_ID and PEER_URL go together"),
        ({"REPLICA_ID": "Pod_1", "PEER_URL": "http://{replica}.peers:30000"}, "must be a DNS label"),
        ({"REPLICA_ID": "pod-1", "PEER_URL": "http://peers:30000"}, "with {replica} in it"),
    ],
)
def test_replica_settings_are_checked(env, message):
    """REPLICA_ID and PEER_URL should be checked together, with the fix in the message."""
    with pytest.raises(ConfigError, match=message.replace("{", r"\{").replace("}", r"\}")):
        GatewaySettings.from_env(env)
