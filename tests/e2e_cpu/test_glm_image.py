"""GLM-Image on the real SGLang server (CPU, tiny random weights): generations and edits."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image

from harness import BACKENDS, GRACE, serve

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module", params=BACKENDS)
def server(request, tmp_path_factory):
    yield from serve(request, "glm-image", tmp_path_factory)


def png(width, height):
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (20, 120, 200)).save(buf, "PNG")
    return buf.getvalue()


def test_health_only_after_load(server):
    """/health should answer 503 (or nothing) while loading and 200 only afterwards."""
    assert server.health_seen[-1] == (200, "ready")
    assert any(seen is None or seen[0] == 503 for seen in server.health_seen[:-1])


def test_one_warmup_and_start_up_phases(server):
    """The gateway's test generation should be the only warm-up (the launcher turns SGLang's own off), and
    the launcher should say where the start-up seconds went, with each component's weight load."""
    phases = server.phases_line()
    logs = server.logs()
    assert "--warmup-mode off" in logs and "fired up and ready to roll" not in logs
    assert "SGLang imports" in phases and "worker start" in phases and "transformer " in phases, phases
    assert "readiness generation" in phases, phases


def test_served_through_alias(server):
    """A GLM-Image folder without 'glm-image' in its name should be served through the GLM-Image alias."""
    logs = server.logs()
    assert "model: GLM-Image at /" in logs and "/model-alias/GLM-Image" in logs


def test_models(server):
    """/v1/models should name the model and report its defaults."""
    entry = server.client.get("/v1/models").json()["data"][0]
    assert entry["defaults"] == {"size": "1024x1024"} and entry["output"] == "image"


def test_generation_b64(server):
    """A text-to-image request should return a decodable 32x32 image."""
    resp = server.client.post("/v1/images/generations", json={
        "prompt": "a photo of a cat", "size": "32x32", "num_inference_steps": 2, "seed": 0,
        "generator_device": "cpu", "response_format": "b64_json"})  # fmt: skip
    assert resp.status_code == 200, resp.text
    img = Image.open(io.BytesIO(base64.b64decode(resp.json()["data"][0]["b64_json"])))
    assert img.size == (32, 32)


def test_generation_url_and_content(server):
    """response_format=url should give a URL whose content is the image."""
    resp = server.client.post("/v1/images/generations", json={
        "prompt": "a red fox", "size": "32x32", "num_inference_steps": 2, "generator_device": "cpu",
        "response_format": "url"})  # fmt: skip
    assert resp.status_code == 200, resp.text
    assert resp.json()["data"][0]["url"].startswith("/v1/images/e2e-0.")  # REPLICA_ID in the URL
    content = server.client.get(resp.json()["data"][0]["url"])
    assert content.status_code == 200 and Image.open(io.BytesIO(content.content)).size == (32, 32)


def test_edit_with_uploaded_png(server):
    """An edit with an uploaded PNG should succeed: the field's cat() bug (and its transformers 5.19 successor) must not appear."""
    resp = server.client.post(
        "/v1/images/edits",
        files={"image": ("in.png", png(32, 32), "image/png")},
        data={"prompt": "make it night", "size": "32x32", "num_inference_steps": "2", "generator_device": "cpu",
              "response_format": "b64_json"},
    )  # fmt: skip
    logs = server.logs()
    assert "cat() received an invalid combination" not in logs
    assert resp.status_code == 200, resp.text[-2000:]
    img = Image.open(io.BytesIO(base64.b64decode(resp.json()["data"][0]["b64_json"])))
    assert img.size == (32, 32)


def edit(server, size, **source):
    """An edit through the gateway; source: files={...} (upload) or url=... (a data URL), always multipart."""
    files = source.get("files") or [("url", (None, source["url"]))]
    data = {"prompt": "make it night", "size": size, "num_inference_steps": "2", "generator_device": "cpu",
            "response_format": "b64_json"}  # fmt: skip
    return server.client.post("/v1/images/edits", files=files, data=data)


def test_edit_non_square(server):
    """A non-square edit should come back at its size: the source image's tokens must land on the DiT's
    latent grid in both directions (the full-size failure on the GPU was a grid mismatch)."""
    resp = edit(server, "64x32", files={"image": ("in.png", png(64, 32), "image/png")})
    assert resp.status_code == 200, resp.text[-2000:]
    assert Image.open(io.BytesIO(base64.b64decode(resp.json()["data"][0]["b64_json"]))).size == (64, 32)


def test_edit_from_a_data_url(server):
    """The source image may come as a data URL instead of an upload."""
    resp = edit(server, "32x64", url="data:image/png;base64," + base64.b64encode(png(32, 64)).decode())
    assert resp.status_code == 200, resp.text[-2000:]
    assert Image.open(io.BytesIO(base64.b64decode(resp.json()["data"][0]["b64_json"]))).size == (32, 64)


def test_sigterm_exits_in_time(server):
    """SIGTERM should stop the whole server within the grace period."""
    code, seconds = server.stop()
    assert seconds < GRACE + 10 + 5 and code in (0, 143), server.logs()[-3000:]
