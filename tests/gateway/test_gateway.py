"""The gateway against a local SGLang-speaking upstream: routes, auth, validation, limits, readiness."""

from __future__ import annotations

import base64
import io
import json
import logging
import socket
import threading
import time

import httpx
import pytest
from PIL import Image

from fake_sglang import MP4, Behaviour, Served, create_fake, png
from glm_image_sglang.gateway import readiness as gateway_readiness
from glm_image_sglang.gateway import upstream as gateway_upstream

pytestmark = pytest.mark.gateway

KEY = "s3cret-key-123"


def error_of(resp: httpx.Response) -> dict:
    body = resp.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}, body
    return body["error"]


def forwarded(behaviour, path):
    return [body for method, p, body in behaviour.requests if p == path and method == "POST"]


# --- routes --------------------------------------------------------------------------------------


def test_unknown_route_is_json_404(glm):
    """An unknown route should get a 404 with an OpenAI-style error body."""
    resp = glm.client.get("/v1/chat/completions")
    assert resp.status_code == 404 and error_of(resp)["code"] == "not_found"


@pytest.mark.parametrize(
    "path", ["/update_weights_from_disk", "/release_memory_occupation", "/v1/set_lora", "/rollout/x"]
)
def test_admin_routes_unreachable(glm, behaviour, path):
    """SGLang's admin and weight routes should not be reachable through the gateway."""
    assert glm.client.post(path, json={}).status_code == 404
    assert not [r for r in behaviour.requests if r[1] == path]


def test_wrong_method_is_json_405(glm):
    """A wrong method on a public route should get a JSON 405."""
    resp = glm.client.delete("/v1/images/generations")
    assert resp.status_code == 405 and error_of(resp)["code"] == "method_not_allowed"


def test_models_reports_defaults(glm):
    """/v1/models should report the model's defaults and tasks."""
    entry = glm.client.get("/v1/models").json()["data"][0]
    assert entry["defaults"] == {"size": "1024x1024"} and entry["tasks"] == ["text-to-image", "image-edit"]


def test_edits_off_refused_before_sglang(make_gateway, behaviour):
    """With edits off (GLM_AR=srt) an edit should get 400 with the reason, reach nothing upstream, and
    /v1/models should not list the task."""
    gw = make_gateway("glm-image", edits_off="edits are off: use GLM_AR=in-process")
    before = len(forwarded(behaviour, "/v1/images/edits"))
    resp = gw.client.post(
        "/v1/images/edits", data={"prompt": "x"}, files={"image": ("a.png", png(32, 32), "image/png")}
    )
    assert resp.status_code == 400 and error_of(resp)["code"] == "edits_unavailable"
    assert "GLM_AR=in-process" in error_of(resp)["message"]
    assert len(forwarded(behaviour, "/v1/images/edits")) == before
    assert gw.client.get("/v1/models").json()["data"][0]["tasks"] == ["text-to-image"]


def test_request_id_echoed(glm):
    """X-Request-ID should be echoed (or generated) on every response."""
    assert glm.client.get("/live", headers={"X-Request-ID": "abc-1"}).headers["x-request-id"] == "abc-1"
    assert len(glm.client.get("/live").headers["x-request-id"]) == 32


# --- auth ----------------------------------------------------------------------------------------


def test_api_key_required(make_gateway):
    """With API_KEY set, API routes should answer 401 without the key."""
    gw = make_gateway(api_key=KEY)
    resp = gw.client.get("/v1/models")
    assert resp.status_code == 401 and resp.headers["www-authenticate"] == "Bearer"
    assert error_of(resp)["type"] == "authentication_error"


def test_api_key_wrong(make_gateway):
    """A wrong key should be refused."""
    gw = make_gateway(api_key=KEY)
    assert gw.client.get("/v1/models", headers={"Authorization": "Bearer nope"}).status_code == 401


def test_api_key_right(make_gateway):
    """The right Bearer key should pass."""
    gw = make_gateway(api_key=KEY)
    assert gw.client.get("/v1/models", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200


def test_health_open_with_key(make_gateway):
    """/health and /live should stay open for probes when a key is set."""
    gw = make_gateway(api_key=KEY)
    assert gw.client.get("/health").status_code == 200 and gw.client.get("/live").status_code == 200


def test_metrics_can_require_key(make_gateway):
    """METRICS_PUBLIC=false should put /metrics behind the key."""
    gw = make_gateway(api_key=KEY, metrics_public="false")
    assert gw.client.get("/metrics").status_code == 401
    assert gw.client.get("/metrics", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200


def test_key_never_logged(make_gateway, caplog):
    """The API key should never appear in the logs."""
    caplog.set_level(logging.INFO)
    gw = make_gateway(api_key=KEY)
    gw.client.get("/v1/models", headers={"Authorization": f"Bearer {KEY}"})
    gw.client.get("/v1/models", headers={"Authorization": "Bearer wrong-key"})
    assert caplog.records and KEY not in caplog.text and "wrong-key" not in caplog.text


# --- readiness -----------------------------------------------------------------------------------


def test_loading_until_upstream_healthy(make_gateway, behaviour):
    """While SGLang is loading, /health should be 503 'loading' and generations 503 with Retry-After."""
    behaviour.health = 503
    gw = make_gateway(wait_ready=False)
    deadline = time.monotonic() + 60
    while (health := gw.client.get("/health")).json()["detail"] != "the model server: /health 503":  # it was asked
        assert time.monotonic() < deadline, health.text
        time.sleep(0.02)
    assert health.status_code == 503 and health.json()["status"] == "loading"
    resp = gw.client.post("/v1/images/generations", json={"prompt": "x"})
    assert resp.status_code == 503 and resp.headers["retry-after"] == "10"
    assert error_of(resp)["code"] == "model_loading"


def test_loading_until_the_ar_server_answers_too(make_gateway, behaviour):
    """With an AR server (GLM_AR, possibly still loading beside SGLang) /health should stay 'loading' and
    name it, and no test generation should be sent, until its /health answers 200; then ready."""
    ar_behaviour = Behaviour(health=503)
    ar = Served(create_fake(ar_behaviour))
    try:
        gw = make_gateway(wait_ready=False, ar_health=f"{ar.url}/health")
        deadline = time.monotonic() + 60
        while (health := gw.client.get("/health")).json()["detail"] != "the AR server: /health 503":
            assert time.monotonic() < deadline, health.text
            time.sleep(0.02)
        assert health.status_code == 503 and health.json()["status"] == "loading"
        assert not forwarded(behaviour, "/v1/images/generations")
        ar_behaviour.health = 200
        gw.wait_ready()
        assert forwarded(behaviour, "/v1/images/generations")
    finally:
        ar.stop()


def test_ready_after_test_generation(make_gateway, behaviour):
    """/health should turn 200 only after a real 1-step test generation succeeded."""
    gw = make_gateway()
    probe = forwarded(behaviour, "/v1/images/generations")
    assert probe and probe[0]["num_inference_steps"] == 1
    assert gw.client.get("/health").json()["status"] == "ready"


def test_failed_test_generation_stays_not_ready(make_gateway, behaviour, caplog):
    """If the test generation fails, /health should stay 503 and the server's error be logged."""
    caplog.set_level(logging.ERROR)
    behaviour.fail_generation = True
    gw = make_gateway(wait_ready=False)
    deadline = time.monotonic() + 60
    while gw.client.get("/health").json()["status"] != "failed":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    health = gw.client.get("/health")
    assert health.status_code == 503 and "CUDA error: out of memory" in health.json()["detail"]
    assert "the test generation failed" in caplog.text


def health_states(gw, until: str, timeout: float = 20) -> list[str]:
    """Every /health state seen (in order, repeats folded) until `until` shows up."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while not seen or seen[-1] != until:
        assert time.monotonic() < deadline, (seen, gw.client.get("/health").text)
        state = gw.client.get("/health").json()["status"]
        if not seen or seen[-1] != state:
            seen.append(state)
        time.sleep(0.02)
    return seen


@pytest.mark.parametrize("variant", ["wan2.2-ti2v-5b", "glm-image"])
def test_slow_first_generation_is_waited_for(make_gateway, behaviour, monkeypatch, variant):
    """A first generation slower than an ordinary upstream call (kernel compiles; here SGLang's own
    warm-up holding every request, as the real server does) should leave /health 'warming' until it
    succeeds: never 'failed', and one test generation, not a retry on top."""
    monkeypatch.setattr(gateway_upstream, "CALL_TIMEOUT", 0.3)  # the old fixed 30 s limit, scaled down
    behaviour.warmup_seconds, behaviour.started = 1.5, time.monotonic()
    gw = make_gateway(variant, wait_ready=False, ready_timeout=60)
    states = health_states(gw, "ready")
    assert "warming" in states and "failed" not in states, states
    path = "/v1/videos" if variant.startswith("wan") else "/v1/images/generations"
    assert len(forwarded(behaviour, path)) == 1


def test_warming_health_says_what_runs_and_for_how_long(make_gateway, behaviour):
    """While the test generation runs, /health should be 503 'warming', name the kernel compiles and
    count the seconds."""
    behaviour.hang_generation = True
    gw = make_gateway(wait_ready=False, ready_timeout=60)
    health_states(gw, "warming")
    first = gw.client.get("/health")
    assert first.status_code == 503 and "compiles kernels" in first.json()["detail"]
    deadline = time.monotonic() + 60
    while gw.client.get("/health").json()["seconds"] <= first.json()["seconds"]:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_test_generation_bounded_by_the_startup_window(make_gateway, behaviour):
    """A test generation that never answers should turn /health 'failed' once the start-up window
    (--ready-timeout, the launcher's STARTUP_TIMEOUT) is over, naming it."""
    behaviour.hang_generation = True
    gw = make_gateway(wait_ready=False, ready_timeout=1)
    assert health_states(gw, "failed")[-2:] == ["warming", "failed"]
    assert "STARTUP_TIMEOUT" in gw.client.get("/health").json()["detail"]


def wait_live(gw, status: int, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while (live := gw.client.get("/live")).status_code != status:
        assert time.monotonic() < deadline, live.text
        time.sleep(0.02)
    return live.json()


def test_live_fails_once_a_ready_server_stops_answering(make_gateway, behaviour, monkeypatch):
    """A model server that was ready and then stops answering /health (hung: seen on an H200 with the AR
    server) should turn /live 503 after UNRESPONSIVE_TIMEOUT, naming it, so that the livenessProbe restarts
    the container; /live should be 200 again once it answers."""
    monkeypatch.setattr(gateway_readiness, "READY_POLL_SECONDS", 0.05)
    monkeypatch.setattr(gateway_readiness, "HEALTH_POLL_SECONDS", 0.05)
    gw = make_gateway(unresponsive_timeout=1)
    assert gw.client.get("/live").status_code == 200
    behaviour.health = 503
    body = wait_live(gw, 503)
    assert body["status"] == "stuck" and "the model server has not answered /health" in body["detail"]
    assert "UNRESPONSIVE_TIMEOUT" in body["detail"] and gw.client.get("/health").status_code == 503
    behaviour.health = 200
    wait_live(gw, 200)


def test_live_stays_up_while_the_server_first_loads(make_gateway, behaviour, monkeypatch):
    """A load longer than UNRESPONSIVE_TIMEOUT is not a hang (STARTUP_TIMEOUT bounds it): /live stays 200."""
    monkeypatch.setattr(gateway_readiness, "HEALTH_POLL_SECONDS", 0.05)
    behaviour.health = 503
    gw = make_gateway(wait_ready=False, unresponsive_timeout=1)
    deadline = time.monotonic() + 60
    while (health := gw.client.get("/health").json())["detail"] != "the model server: /health 503" or (
        health["seconds"] < 1.5
    ):
        assert time.monotonic() < deadline, health
        time.sleep(0.05)
    assert gw.client.get("/live").status_code == 200


def test_ready_probe_health_only(make_gateway, behaviour):
    """READY_PROBE=health should be ready on SGLang's /health without generating."""
    make_gateway(ready_probe="health")
    assert not forwarded(behaviour, "/v1/images/generations")


def test_video_model_probe_is_a_video_job(make_gateway, behaviour):
    """A video model's test generation should be a short video job polled to completion."""
    make_gateway("wan2.2-ti2v-5b")
    probe = forwarded(behaviour, "/v1/videos")[0]
    assert probe["num_frames"] == 5 and probe["num_inference_steps"] == 1


def test_upstream_down(make_gateway, upstream):
    """With SGLang gone, API routes should answer 503 'not reachable' and /health 503."""
    gw = make_gateway()
    upstream.stop()
    resp = gw.client.get("/v1/models")
    assert resp.status_code == 503 and error_of(resp)["code"] == "upstream_unavailable"
    deadline = time.monotonic() + 15
    while gw.client.get("/health").status_code == 200:
        assert time.monotonic() < deadline
        time.sleep(0.2)


# --- images --------------------------------------------------------------------------------------


def test_generation_b64_with_default_size(glm, behaviour):
    """A generation without size should get the model's default size; the image comes back as b64."""
    resp = glm.client.post("/v1/images/generations", json={"prompt": "a fox", "response_format": "b64_json"})
    assert resp.status_code == 200
    img = Image.open(io.BytesIO(base64.b64decode(resp.json()["data"][0]["b64_json"])))
    assert img.size == (1024, 1024)
    sent = forwarded(behaviour, "/v1/images/generations")[-1]
    assert (sent["width"], sent["height"]) == (1024, 1024) and "size" not in sent


def test_images_default_to_png(glm, behaviour):
    """Images should be PNG unless output_format says otherwise, as in OpenAI's API (SGLang's own
    default is JPEG); a requested format should be passed on."""
    glm.client.post("/v1/images/generations", json={"prompt": "a fox", "size": "64x64"})
    assert forwarded(behaviour, "/v1/images/generations")[-1]["output_format"] == "png"
    glm.client.post("/v1/images/generations", json={"prompt": "a fox", "size": "64x64", "output_format": "webp"})
    assert forwarded(behaviour, "/v1/images/generations")[-1]["output_format"] == "webp"


def test_edit_with_other_aspect_ratio_refused(glm, behaviour):
    """An edit whose image does not have the requested size's aspect ratio should get a 400 that says
    so, not reach SGLang (which fails with a shape error, a 500); the same aspect ratio passes."""
    before = len(forwarded(behaviour, "/v1/images/edits"))
    resp = glm.client.post(
        "/v1/images/edits", data={"prompt": "x", "size": "32x32"}, files={"image": ("a.png", png(48, 32), "image/png")}
    )
    assert resp.status_code == 400 and error_of(resp)["code"] == "aspect_mismatch"
    assert "48x32" in error_of(resp)["message"] and len(forwarded(behaviour, "/v1/images/edits")) == before
    resp = glm.client.post(
        "/v1/images/edits", data={"prompt": "x", "size": "64x64"}, files={"image": ("a.png", png(32, 32), "image/png")}
    )
    assert resp.status_code == 200


def test_generation_url_and_content(glm):
    """response_format=url should give a URL that fetches the PNG through the gateway."""
    resp = glm.client.post(
        "/v1/images/generations", json={"prompt": "a fox", "size": "64x96", "response_format": "url"}
    )
    url = resp.json()["data"][0]["url"]
    content = glm.client.get(url)
    assert content.status_code == 200 and Image.open(io.BytesIO(content.content)).size == (64, 96)


@pytest.mark.parametrize("name", ["in.png", "../../../etc/cron.d/x.png", "a b;$(reboot).jpg"])
def test_edit_with_upload(glm, behaviour, name):
    """An edit with an uploaded PNG should reach SGLang as multipart with the image and the size, the file
    named by the gateway from its sniffed type, never by the client."""
    files = {"image": (name, png(64, 64), "image/png")}
    resp = glm.client.post("/v1/images/edits", files=files, data={"prompt": "make it blue", "size": "64x64"})
    assert resp.status_code == 200, resp.text
    sent = forwarded(behaviour, "/v1/images/edits")[-1]
    assert sent["image"] == "image-0.png" and sent["size"] == "64x64" and sent["prompt"] == "make it blue"


def test_edit_rejects_non_image(glm, behaviour):
    """An upload that is not an image should get 400 and never reach SGLang."""
    files = {"image": ("evil.png", b"#!/bin/sh\nrm -rf /\n", "image/png")}
    resp = glm.client.post("/v1/images/edits", files=files, data={"prompt": "x"})
    assert resp.status_code == 400 and error_of(resp)["code"] == "invalid_image"
    assert not forwarded(behaviour, "/v1/images/edits")


def test_edit_upload_too_large(make_gateway):
    """An upload over MAX_UPLOAD_BYTES should get 413."""
    gw = make_gateway(max_upload_bytes=2048)
    big = png(512, 512) + b"\x00" * 4096
    resp = gw.client.post("/v1/images/edits", files={"image": ("a.png", big, "image/png")}, data={"prompt": "x"})
    assert resp.status_code == 413 and error_of(resp)["code"] == "file_too_large"


def test_edit_image_too_many_pixels(make_gateway):
    """An upload over MAX_INPUT_PIXELS should get 400."""
    gw = make_gateway(max_input_pixels=1000)
    resp = gw.client.post(
        "/v1/images/edits", files={"image": ("a.png", png(64, 64), "image/png")}, data={"prompt": "x"}
    )
    assert resp.status_code == 400 and error_of(resp)["code"] == "image_too_large"


def test_edit_needs_an_image(glm):
    """An edit without an image should get 400 naming the 'image' field."""
    resp = glm.client.post("/v1/images/edits", data={"prompt": "x"}, files={"dummy": ("", b"", "text/plain")})
    assert resp.status_code == 400


@pytest.mark.parametrize("field", ["output_path", "perf_dump_path", "upscaling_model_path"])
def test_server_paths_rejected(glm, behaviour, field):
    """Fields that name server-side paths should be refused."""
    resp = glm.client.post("/v1/images/generations", json={"prompt": "x", field: "/etc/cron.d/x"})
    assert resp.status_code == 400 and error_of(resp) == {
        "message": f"'{field}' is not accepted: clients cannot choose server-side paths.",
        "type": "invalid_request_error",
        "param": field,
        "code": "forbidden_parameter",
    }
    assert not forwarded(behaviour, "/v1/images/generations")[1:]


def test_image_urls_off_by_default(glm):
    """http(s) image URLs should be refused unless ALLOW_IMAGE_URLS=true (SSRF)."""
    resp = glm.client.post(
        "/v1/images/edits",
        data={"prompt": "x", "url": "http://169.254.169.254/latest"},
        files={"image": ("a.png", png(32, 32), "image/png")},
    )
    assert resp.status_code == 400 and error_of(resp)["code"] == "urls_disabled"


def test_local_path_reference_rejected(ti2v):
    """A server-local path given as an image reference should be refused."""
    resp = ti2v.client.post("/v1/videos", json={"prompt": "x", "input_reference": "/app/models/secret.png"})
    assert resp.status_code == 400 and error_of(resp)["code"] == "forbidden_path"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"prompt": "x", "size": "1000x1024"}, "size"),  # not a multiple of 32
        ({"prompt": "x", "size": "4096x4096"}, "size"),  # over MAX_OUTPUT_PIXELS
        ({"prompt": "x", "size": "big"}, "size"),
        ({"prompt": "x", "n": 9}, "n"),
        ({"prompt": "x", "num_inference_steps": 1000}, "num_inference_steps"),
        ({"prompt": "x", "guidance_scale": -1}, "guidance_scale"),
        ({"prompt": ""}, "prompt"),
        ({"size": "64x64"}, "prompt"),
        ({"prompt": "x", "response_format": "gif"}, "response_format"),
    ],
)
def test_invalid_image_requests(glm, body, param):
    """Each invalid parameter should get a 400 naming it."""
    resp = glm.client.post("/v1/images/generations", json=body)
    assert resp.status_code == 400 and error_of(resp)["param"] == param


def test_body_too_large(make_gateway):
    """A body over MAX_BODY_BYTES should get 413 before it is parsed."""
    gw = make_gateway(max_body_bytes=4096)
    resp = gw.client.post(
        "/v1/images/generations",
        content=b'{"prompt": "' + b"a" * 8000 + b'"}',
        headers={"content-type": "application/json"},
    )
    assert resp.status_code == 413 and error_of(resp)["code"] == "body_too_large"


def test_invalid_json(glm):
    """A body that is not JSON should get 400 invalid_json."""
    resp = glm.client.post("/v1/images/generations", content=b"{nope", headers={"content-type": "application/json"})
    assert resp.status_code == 400 and error_of(resp)["code"] == "invalid_json"


def test_video_route_on_image_model(glm):
    """Asking an image model for a video should get 400 pointing at the right route."""
    resp = glm.client.post("/v1/videos", json={"prompt": "x"})
    assert resp.status_code == 400 and "use /v1/images/generations" in error_of(resp)["message"]


def test_upstream_error_normalised(glm, behaviour):
    """An SGLang error should reach the client in the OpenAI error shape with its message and the request id
    that finds it in the log."""
    behaviour.fail_generation = True
    resp = glm.client.post("/v1/images/generations", json={"prompt": "x", "size": "64x64"})
    message = error_of(resp)["message"]
    assert resp.status_code == 500 and "CUDA error: out of memory" in message
    assert f"request id {resp.headers['x-request-id']}" in message


def test_bare_upstream_500_explained(glm, behaviour):
    """SGLang's bare 'Internal Server Error' should become a message that says it gave no reason and where
    to look, not the bare words."""
    behaviour.fail_generation, behaviour.failure = True, ""
    resp = glm.client.post(
        "/v1/images/generations", json={"prompt": "x", "size": "64x64"}, headers={"x-request-id": "r-42"}
    )
    message = error_of(resp)["message"]
    assert resp.status_code == 500 and "without saying why" in message and "request id r-42" in message


def test_upstream_failure_names_the_stage_without_traceback_or_paths(glm, behaviour):
    """When SGLang names the stage that failed, the client should learn it, without a traceback or a server path."""
    behaviour.fail_generation = True
    behaviour.failure = (
        "Error executing request 47b6: [GlmImageBeforeDenoisingStage] The size of tensor a (4096) must match "
        "the size of tensor b (1024) at /tmp/site/sglang/models/dits/glm_image.py line 981\n"
        'Traceback (most recent call last):\n  File "/app/venv/lib/python3.12/site-packages/x.py", line 1'
    )
    resp = glm.client.post("/v1/images/generations", json={"prompt": "x", "size": "64x64"})
    message = error_of(resp)["message"]
    assert "in GlmImageBeforeDenoisingStage" in message and "(4096) must match" in message
    assert "Traceback" not in message and "/tmp/site" not in message and "/app/venv" not in message


def test_image_answers_carry_no_server_paths(glm):
    """SGLang's file_path/file_paths (its own disk) should never reach the client."""
    resp = glm.client.post("/v1/images/generations", json={"prompt": "x", "size": "64x64", "response_format": "url"})
    assert resp.status_code == 200 and "/app/data" not in resp.text and "file_path" not in resp.text


def test_b64_images_pass_untouched(glm, behaviour):
    """Base64 image data is full of '/' runs that look like paths: it must reach the client byte for byte."""
    behaviour.image_bytes = bytes(range(256)) * 64 + b"/app/data/x/y" * 8  # every byte value, paths in it
    resp = glm.client.post(
        "/v1/images/generations", json={"prompt": "x", "size": "64x64", "response_format": "b64_json"}
    )
    assert base64.b64decode(resp.json()["data"][0]["b64_json"]) == behaviour.image_bytes


def test_failed_video_job_error_has_no_server_paths(ti2v, behaviour):
    """A failed job's error, as SGLang words it, should keep its sense without the server's paths; the image
    data of other answers must stay untouched (base64 has '/' in it)."""
    behaviour.fail_generation = True
    job = ti2v.client.post("/v1/videos", json={"prompt": "x", "size": "256x256", "num_frames": 5}).json()
    behaviour.jobs[job["id"]]["error"] = {"message": "cannot open /app/data/uploads/abc_in.png", "code": "internal"}
    error = ti2v.client.get(f"/v1/videos/{job['id']}").json()["error"]
    assert error["message"] == "cannot open abc_in.png"


def test_video_jobs_carry_no_server_paths(ti2v):
    """A video job, its poll and the job list should carry no server path."""
    job = ti2v.client.post("/v1/videos", json={"prompt": "x", "size": "256x256", "num_frames": 5})
    polled = ti2v.client.get(f"/v1/videos/{job.json()['id']}")
    listed = ti2v.client.get("/v1/videos")
    for resp in (job, polled, listed):
        assert resp.status_code == 200 and "file_path" not in resp.text and "/outputs/" not in resp.text


@pytest.mark.parametrize(
    ("variant", "name"), [("glm-image", "GLM-Image"), ("wan2.2-ti2v-5b", "Wan2.2-TI2V-5B-Diffusers")]
)
def test_models_named_by_repo_name(make_gateway, variant, name):
    """/v1/models should name the model by its repo name, never SGLang's path (GLM-Image's is an alias path)."""
    assert make_gateway(variant).client.get("/v1/models").json()["data"][0]["id"] == name


def test_metric_labels_bounded(glm):
    """Made-up HTTP methods should share one 'other' label: no unauthenticated growth of the label set."""
    for method in ("FOO1", "FOO2", "BAR"):
        glm.client.request(method, "/health")
    deadline = time.monotonic() + 60
    while 'method="other"' not in (text := glm.client.get("/metrics").text):
        assert time.monotonic() < deadline, text
        time.sleep(0.02)
    assert "FOO1" not in text and "BAR" not in text


def test_bodies_in_flight_bounded(make_gateway):
    """Beyond MAX_BODIES_IN_FLIGHT request bodies being read at once, another request should get 503 with
    Retry-After at once instead of more memory."""
    gw = make_gateway(max_bodies_in_flight="1")
    slow = socket.create_connection((gw.served.host, gw.served.port))
    try:
        slow.sendall(b"POST /v1/images/generations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100000\r\n\r\n{\"prompt\": \"")  # fmt: skip
        gate = gw.app.state.gateway.bodies
        deadline = time.monotonic() + 120  # a condition, not a time: generous for a loaded machine
        while gate.reading < 1:
            assert time.monotonic() < deadline, "the gateway never started reading the slow body"
            time.sleep(0.05)
        resp = gw.client.post("/v1/images/generations", json={"prompt": "x"})
        assert resp.status_code == 503, resp.text
        assert error_of(resp)["code"] == "too_many_bodies" and resp.headers["retry-after"] == "10"
    finally:
        slow.close()
    deadline = time.monotonic() + 120
    while gate.reading:  # the slot is free again once that client went away
        assert time.monotonic() < deadline, "the slow client's body slot was never released"
        time.sleep(0.05)
    assert gw.client.post("/v1/images/generations", json={"prompt": "x", "size": "64x64"}).status_code == 200


# --- video ---------------------------------------------------------------------------------------


def test_video_defaults_filled(ti2v, behaviour):
    """A video job without size/frames/fps should get TI2V-5B's 1280x704, 121 frames at 24 fps."""
    resp = ti2v.client.post("/v1/videos", json={"prompt": "a cat surfing"})
    assert resp.status_code == 200, resp.text
    sent = forwarded(behaviour, "/v1/videos")[-1]
    assert (sent["width"], sent["height"], sent["num_frames"], sent["fps"]) == (1280, 704, 121, 24)


def test_a14b_defaults(make_gateway, behaviour):
    """Wan2.2-A14B jobs should default to 81 frames at 16 fps (not SGLang's 96 at 24)."""
    gw = make_gateway("wan2.2-t2v-a14b")
    gw.client.post("/v1/videos", json={"prompt": "x", "size": "832x480"})
    sent = forwarded(behaviour, "/v1/videos")[-1]
    assert (sent["num_frames"], sent["fps"], sent["width"]) == (81, 16, 832)


def test_seconds_become_frames(ti2v, behaviour):
    """seconds should become 4k+1 frames at the model's fps."""
    ti2v.client.post("/v1/videos", json={"prompt": "x", "seconds": 5})
    assert forwarded(behaviour, "/v1/videos")[-1]["num_frames"] == 121


def test_frames_must_be_4k_plus_1(ti2v):
    """num_frames that is not 4k+1 should get 400."""
    resp = ti2v.client.post("/v1/videos", json={"prompt": "x", "num_frames": 80})
    assert resp.status_code == 400 and error_of(resp)["param"] == "num_frames"


def test_video_job_poll_content_delete(ti2v):
    """A video job should be pollable, its MP4 downloadable, and deletable, all through the gateway."""
    job = ti2v.client.post("/v1/videos", json={"prompt": "x", "size": "256x256", "num_frames": 5}).json()
    deadline = time.monotonic() + 60
    while (state := ti2v.client.get(f"/v1/videos/{job['id']}").json())["status"] != "completed":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert state["progress"] == 100
    content = ti2v.client.get(f"/v1/videos/{job['id']}/content")
    assert content.status_code == 200 and content.content == MP4
    assert ti2v.client.get("/v1/videos").json()["data"]
    assert ti2v.client.delete(f"/v1/videos/{job['id']}").status_code == 200


def test_video_id_traversal(ti2v):
    """Path-like ids should never reach SGLang."""
    assert ti2v.client.get("/v1/videos/..%2f..%2fhealth").status_code == 404


def test_video_with_input_image(ti2v, behaviour):
    """An image-to-video job with an uploaded image should reach SGLang as multipart."""
    resp = ti2v.client.post(
        "/v1/videos",
        data={"prompt": "the cat jumps", "num_frames": "5", "size": "256x256"},
        files={"input_reference": ("cat.png", png(64, 64), "image/png")},
    )
    assert resp.status_code == 200, resp.text
    sent = forwarded(behaviour, "/v1/videos")[-1]
    assert sent["input_reference"] == "input-0.png" and sent["num_frames"] == "5"


def test_sync_video_route(ti2v):
    """/v1/video/generations should wait and answer with the finished job and its content URL."""
    resp = ti2v.client.post("/v1/video/generations", json={"prompt": "x", "size": "256x256", "num_frames": 5})
    body = resp.json()
    assert resp.status_code == 200 and body["status"] == "completed"
    assert body["data"][0]["url"] == f"/v1/videos/{body['id']}/content" and "file_path" not in body


def test_sync_video_b64(ti2v):
    """/v1/video/generations with response_format=b64_json should return the MP4 inline."""
    resp = ti2v.client.post(
        "/v1/video/generations", json={"prompt": "x", "num_frames": 5, "response_format": "b64_json"}
    )
    assert base64.b64decode(resp.json()["data"][0]["b64_json"]) == MP4


def test_sync_video_failure(ti2v, behaviour):
    """A failed job on the sync route should give 500 with the job's error message."""
    behaviour.fail_generation = True
    resp = ti2v.client.post("/v1/video/generations", json={"prompt": "x", "num_frames": 5})
    assert resp.status_code == 500 and "worker crashed" in error_of(resp)["message"]


# --- limits --------------------------------------------------------------------------------------


def test_queue_full_gives_429(make_gateway, behaviour):
    """Beyond MAX_CONCURRENCY + MAX_QUEUE, requests should get 429 with Retry-After at once, never hang."""
    gw = make_gateway(max_concurrency=1, max_queue=1)
    behaviour.delay = 1.5
    results: list[httpx.Response] = []

    def send():
        with httpx.Client(base_url=gw.served.url, timeout=30) as c:
            results.append(c.post("/v1/images/generations", json={"prompt": "x", "size": "64x64"}))

    threads = [threading.Thread(target=send) for _ in range(4)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
        time.sleep(0.1)
    for t in threads:
        t.join(timeout=20)
    codes = sorted(r.status_code for r in results)
    assert codes == [200, 200, 429, 429], codes
    rejected = [r for r in results if r.status_code == 429]
    assert all(r.headers["retry-after"] for r in rejected) and time.monotonic() - t0 < 10


def test_video_queue_full(make_gateway, behaviour):
    """Creating a video job while MAX_CONCURRENCY + MAX_QUEUE jobs are active should get 429."""
    gw = make_gateway("wan2.2-ti2v-5b", max_concurrency=1, max_queue=0)
    behaviour.job_seconds = 5
    assert gw.client.post("/v1/videos", json={"prompt": "x", "num_frames": 5}).status_code == 200
    resp = gw.client.post("/v1/videos", json={"prompt": "y", "num_frames": 5})
    assert resp.status_code == 429 and error_of(resp)["code"] == "queue_full"


def test_slow_upstream_gives_504(make_gateway, behaviour):
    """A generation slower than REQUEST_TIMEOUT should get 504 with a message."""
    gw = make_gateway(request_timeout=1)
    behaviour.delay = 3
    resp = gw.client.post("/v1/images/generations", json={"prompt": "x", "size": "64x64"})
    assert resp.status_code == 504 and "REQUEST_TIMEOUT" in error_of(resp)["message"]


def test_client_disconnect_handled(make_gateway, behaviour):
    """A client that hangs up mid-generation should not break the gateway."""
    gw = make_gateway()
    behaviour.delay = 1
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(gw.served.url + "/v1/images/generations", json={"prompt": "x", "size": "64x64"}, timeout=0.2)
    deadline = time.monotonic() + 60
    while "gateway_generations_in_flight 0.0" not in gw.client.get("/metrics").text:  # the abandoned one ended
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert gw.client.post("/v1/images/generations", json={"prompt": "x", "size": "64x64"}).status_code == 200


# --- observability -------------------------------------------------------------------------------


def test_metrics(glm):
    """/metrics should count requests by route and code in Prometheus format."""
    glm.client.post("/v1/images/generations", json={"prompt": "x", "size": "64x64"})
    wanted = 'gateway_requests_total{code="200",method="POST",route="/v1/images/generations"} 1.0'
    deadline = time.monotonic() + 60  # counted just after the response is sent
    while wanted not in (text := glm.client.get("/metrics").text):
        assert time.monotonic() < deadline, text
        time.sleep(0.02)
    assert "gateway_generation_seconds_bucket" in text and "gateway_ready 1.0" in text


def test_access_log_without_prompt(glm, caplog):
    """Each request should log one JSON line with id, route, status and duration, without the prompt."""
    caplog.set_level(logging.INFO, logger="glm_image_sglang.access")
    glm.client.post("/v1/images/generations", json={"prompt": "secret plans", "size": "64x64"})

    def entries():  # the line is written just after the response is sent
        return [json.loads(r.message) for r in caplog.records if r.name == "glm_image_sglang.access"]

    deadline = time.monotonic() + 60
    while not any(e.get("route") == "/v1/images/generations" for e in entries()):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    entry = next(e for e in entries() if e.get("route") == "/v1/images/generations")
    assert entry["status"] == 200 and entry["duration_ms"] > 0 and len(entry["request_id"]) == 32
    assert "secret plans" not in caplog.text


def test_prompts_logged_on_request(make_gateway, caplog):
    """LOG_PROMPTS=true should add the prompt to the log."""
    caplog.set_level(logging.INFO, logger="glm_image_sglang.access")
    gw = make_gateway(log_prompts="true")
    gw.client.post("/v1/images/generations", json={"prompt": "secret plans", "size": "64x64"})
    assert "secret plans" in caplog.text  # logged before the request is forwarded


def test_i2v_probe_sends_a_first_frame(make_gateway, behaviour):
    """An image-to-video-only model's test generation should upload a first frame."""
    make_gateway("wan2.2-i2v-a14b")
    probe = forwarded(behaviour, "/v1/videos")[0]
    assert probe["input_reference"] == "probe.png" and probe["num_frames"] == "5"
