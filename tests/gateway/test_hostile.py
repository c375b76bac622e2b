"""A corpus of malformed and hostile requests: each must get a 4xx, and the gateway keeps serving."""

from __future__ import annotations

import pytest

from fake_sglang import png

pytestmark = pytest.mark.gateway

J = "application/json"
CORPUS: list[tuple[str, str, dict]] = [
    # bad JSON and wrong types
    ("POST", "/v1/images/generations", {"content": b"{", "headers": {"content-type": J}}),
    ("POST", "/v1/images/generations", {"content": b"", "headers": {"content-type": J}}),
    ("POST", "/v1/images/generations", {"content": b"null", "headers": {"content-type": J}}),
    ("POST", "/v1/images/generations", {"content": b"[1, 2]", "headers": {"content-type": J}}),
    ("POST", "/v1/images/generations", {"content": b'"just a string"', "headers": {"content-type": J}}),
    ("POST", "/v1/images/generations", {"content": b"\xff\xfe\x00garbage", "headers": {"content-type": J}}),
    ("POST", "/v1/images/generations", {"json": {"prompt": 123}}),
    ("POST", "/v1/images/generations", {"json": {"prompt": ["a", "b"]}}),
    ("POST", "/v1/images/generations", {"json": {"prompt": {"$ne": 1}}}),
    ("POST", "/v1/images/generations", {"json": {"prompt": "x", "n": "many"}}),
    ("POST", "/v1/images/generations", {"json": {"prompt": "x", "n": True}}),
    ("POST", "/v1/images/generations", {"json": {"prompt": "x", "n": 0}}),
    ("POST", "/v1/images/generations", {"json": {"prompt": "x", "n": -5}}),
    ("POST", "/v1/images/generations", {"json": {"prompt": "x", "seed": "abc"}}),
    ("POST", "/v1/images/generations", {"json": {"prompt": "x", "seed": -1}}),
    ("POST", "/v1/images/generations", {"json": {"prompt": "x", "guidance_scale": "NaN"}}),
    ("POST", "/v1/images/generations", {"json": {"prompt": "x", "guidance_scale": 1e308}}),
    ("POST", "/v1/images/generations", {"json": {"prompt": "x", "num_inference_steps": 10**12}}),
    ("POST", "/v1/images/generations", {"json": {"prompt": "x", "num_inference_steps": 2.5}}),
    # huge or odd sizes
    ("POST", "/v1/images/generations", {"json": {"prompt": "x", "size": "100000x100000"}}),
    ("POST", "/v1/images/generations", {"json": {"prompt": "x", "size": "0x0"}}),
    ("POST", "/v1/images/generations", {"json": {"prompt": "x", "size": "-64x64"}}),
    ("POST", "/v1/images/generations", {"json": {"prompt": "x", "size": "64x64x64"}}),
    ("POST", "/v1/images/generations", {"json": {"prompt": "x", "size": 1024}}),
    ("POST", "/v1/images/generations", {"json": {"prompt": "x", "width": 64}}),
    ("POST", "/v1/images/generations", {"json": {"prompt": "x", "width": 64, "height": 64, "size": "64x64"}}),
    ("POST", "/v1/images/generations", {"json": {"prompt": "x" * 100_000}}),
    ("POST", "/v1/images/generations", {"json": {"prompt": "null\x00byte"}}),
    # server-side paths, internals and unknown fields
    ("POST", "/v1/images/generations", {"json": {"prompt": "x", "output_path": "../../etc"}}),
    ("POST", "/v1/images/generations", {"json": {"prompt": "x", "diffusers_kwargs": {"a": 1}}}),
    ("POST", "/v1/images/generations", {"json": {"prompt": "x", "attention_backend_override": "fa"}}),
    ("POST", "/v1/images/generations", {"json": {"prompt": "x", "profile": True}}),
    ("POST", "/v1/images/generations", {"json": {"prompt": "x", "lora_path": "/tmp/x"}}),
    ("POST", "/v1/images/generations", {"json": {"prompt": "x", "__proto__": {}}}),
    # uploads
    ("POST", "/v1/images/edits", {"json": {"prompt": "x"}}),
    ("POST", "/v1/images/edits", {"data": {"prompt": "x"}, "files": {"image": ("a.png", b"", "image/png")}}),
    (
        "POST",
        "/v1/images/edits",
        {"data": {"prompt": "x"}, "files": {"image": ("a.exe", b"MZ\x90\x00" * 100, "image/png")}},
    ),
    ("POST", "/v1/images/edits", {"data": {"prompt": "x"}, "files": {"image": ("a.png", png(8, 8)[:30], "image/png")}}),
    (
        "POST",
        "/v1/images/edits",
        {"data": {"prompt": "x"}, "files": {"image": ("a.svg", b"<svg onload=alert(1)>", "image/svg+xml")}},
    ),
    ("POST", "/v1/images/edits", {"data": {"prompt": "x"}, "files": {"mask": ("m.png", png(8, 8), "image/png")}}),
    (
        "POST",
        "/v1/images/edits",
        {"data": {"prompt": "x", "url": "file:///etc/passwd"}, "files": {"image": ("a.png", png(32, 32), "image/png")}},
    ),
    (
        "POST",
        "/v1/images/edits",
        {
            "data": {"prompt": "x", "url": "http://10.0.0.1/admin"},
            "files": {"image": ("a.png", png(32, 32), "image/png")},
        },
    ),
    ("POST", "/v1/images/edits", {"files": {"image": ("a.png", png(32, 32), "image/png")}}),
    (
        "POST",
        "/v1/images/edits",
        {"content": b"--x\r\nbroken", "headers": {"content-type": "multipart/form-data; boundary=x"}},
    ),
    (
        "POST",
        "/v1/images/edits",
        {"data": {"prompt": "x", "output_path": "/tmp"}, "files": {"image": ("a.png", png(32, 32), "image/png")}},
    ),
    # path traversal and unknown routes
    ("GET", "/v1/images/..%2F..%2Fetc%2Fpasswd/content", {}),
    ("GET", "/v1/videos/%2e%2e/content", {}),
    ("GET", "/../../etc/passwd", {}),
    ("GET", "/v1/images/generations/../../update_weights_from_disk", {}),
    ("POST", "/update_weights_from_disk", {"json": {"model_path": "/tmp/evil"}}),
    ("POST", "/release_memory_occupation", {"json": {}}),
    ("POST", "/v1/set_lora", {"json": {"lora_path": "/tmp"}}),
    ("GET", "/rollout/abc", {}),
    ("GET", "/model_info", {}),
    ("GET", "/docs", {}),
    ("GET", "/openapi.json", {}),
    ("PUT", "/v1/images/generations", {"json": {"prompt": "x"}}),
    # video on an image model
    ("POST", "/v1/video/generations", {"json": {"prompt": "x"}}),
]


def test_corpus_is_large_enough():
    """The corpus should hold at least 50 requests."""
    assert len(CORPUS) >= 50


def test_hostile_requests_get_4xx_and_gateway_keeps_serving(glm, behaviour):
    """Every malformed or hostile request should get a 4xx JSON error; afterwards a normal generation works."""
    before = len(behaviour.requests)
    failures = []
    for method, path, kw in CORPUS:
        resp = glm.client.request(method, path, **kw)
        if not 400 <= resp.status_code < 500 or "error" not in resp.json():
            failures.append((method, path, resp.status_code, resp.text[:200]))
    assert not failures, failures
    assert len(behaviour.requests) == before, "a hostile request reached SGLang"
    assert glm.client.post("/v1/images/generations", json={"prompt": "fine", "size": "64x64"}).status_code == 200
