"""The client command against the gateway, and the gateway as its own process (SIGTERM drains)."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest
from PIL import Image

from fake_sglang import MP4, free_port, png
from glm_image_sglang.client import main as client_main

pytestmark = pytest.mark.gateway


def test_client_image(glm, tmp_path, capsys):
    """`client image` should save the generated PNG."""
    out = tmp_path / "fox.png"
    assert client_main(["--base-url", glm.served.url + "/v1", "image", "a fox", "--size", "64x32", "-o", str(out)]) == 0
    assert Image.open(out).size == (64, 32)
    assert capsys.readouterr().out.startswith(f"saved {out}")


def test_client_edit(glm, tmp_path):
    """`client edit` should upload the image and save the result."""
    src = tmp_path / "in.png"
    src.write_bytes(png(32, 32))
    out = tmp_path / "out.png"
    assert (
        client_main(
            [
                "--base-url",
                glm.served.url + "/v1",
                "edit",
                "make it blue",
                "--image",
                str(src),
                "--size",
                "32x32",
                "-o",
                str(out),
            ]
        )
        == 0
    )
    assert Image.open(out).size == (32, 32)


@pytest.mark.parametrize("video_api", ["sdk", "http"])
def test_client_video_progress(ti2v, behaviour, tmp_path, capsys, recwarn, video_api):
    """`client video` should show a progress bar and save the MP4, through the SDK's videos resource or
    plain HTTP (for an SDK without it), without the SDK's deprecation noise."""
    behaviour.job_seconds = 1.0
    out = tmp_path / "v.mp4"
    argv = ["--base-url", ti2v.served.url + "/v1", "--video-api", video_api, "video", "a cat", "--frames", "5"]
    code = client_main([*argv, "--poll", "0.1", "--size", "256x256", "-o", str(out)])
    assert code == 0 and out.read_bytes() == MP4
    err = capsys.readouterr().err
    assert "video video_" in err and "100/100" in err
    assert not [w for w in recwarn if "Sora" in str(w.message)]


def test_client_video_http_with_input_image(ti2v, behaviour, tmp_path):
    """The plain-HTTP video path should upload the first frame like the SDK does."""
    src = tmp_path / "first.png"
    src.write_bytes(png(64, 64))
    argv = ["--base-url", ti2v.served.url + "/v1", "--video-api", "http", "video", "it moves", "--image", str(src)]
    assert client_main([*argv, "--frames", "5", "--poll", "0.1", "-o", str(tmp_path / "v.mp4")]) == 0
    assert [body for _, path, body in behaviour.requests if path == "/v1/videos"][-1][
        "input_reference"
    ] == "input-0.png"


def test_client_reads_the_key_file(make_gateway, tmp_path, monkeypatch):
    """Inside the container the key is a file (API_KEY_FILE): `docker exec ... client` should use it."""
    gw = make_gateway(api_key="file-key-1")
    key_file = tmp_path / "api-key"
    key_file.write_text("file-key-1\n")
    monkeypatch.delenv("API_KEY", raising=False)
    monkeypatch.setenv("API_KEY_FILE", str(key_file))
    out = tmp_path / "a.png"
    assert client_main(["--base-url", gw.served.url + "/v1", "image", "x", "--size", "64x64", "-o", str(out)]) == 0


def test_client_reports_server_error(glm, tmp_path, capsys):
    """A refused request should print the gateway's message, not a traceback."""
    code = client_main(
        ["--base-url", glm.served.url + "/v1", "image", "x", "--size", "33x33", "-o", str(tmp_path / "a.png")]
    )
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("ERROR: BadRequestError:") and "multiple of 32" in err


class GatewayProcess:
    """The gateway as its own process (`glm-image-sglang gateway`), as the launcher runs it."""

    def __init__(self, upstream_url: str, variant: str, grace: int) -> None:
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "glm_image_sglang", "gateway", "--upstream", upstream_url, "--host", "127.0.0.1",
             "--port", str(port), "--model-variant", variant, "--graceful-shutdown-timeout", str(grace)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(self.base + "/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline and self.proc.poll() is None, self.proc.stdout.read()  # type: ignore[union-attr]
            time.sleep(0.1)

    def stop(self) -> tuple[str, float]:
        """SIGTERM; returns the output and the seconds until the process exited."""
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=60)
        return out, time.monotonic() - t0


@pytest.fixture
def gateway_process(upstream):
    made: list[GatewayProcess] = []

    def make(variant: str = "glm-image", grace: int = 20) -> GatewayProcess:
        made.append(GatewayProcess(upstream.url, variant, grace))
        return made[-1]

    yield make
    for gw in made:
        gw.proc.kill()


def test_sigterm_drains_in_flight(gateway_process, behaviour):
    """On SIGTERM the gateway process should finish the running request, then exit."""
    gw = gateway_process()
    behaviour.delay = 2
    result: list[httpx.Response] = []
    t = threading.Thread(
        target=lambda: result.append(
            httpx.post(gw.base + "/v1/images/generations", json={"prompt": "x", "size": "64x64"}, timeout=30)
        )
    )
    before = len(behaviour.requests)  # the readiness test generation is one already
    t.start()
    deadline = time.monotonic() + 30
    while not any(path == "/v1/images/generations" for _, path, _ in behaviour.requests[before:]):  # in flight
        assert time.monotonic() < deadline
        time.sleep(0.02)
    t0 = time.monotonic()
    gw.proc.send_signal(signal.SIGTERM)
    t.join(timeout=30)
    out, _ = gw.proc.communicate(timeout=30)
    assert result and result[0].status_code == 200
    assert Image.open(io.BytesIO(__import__("base64").b64decode(result[0].json()["data"][0]["b64_json"]))).size == (
        64,
        64,
    )
    # uvicorn re-raises SIGTERM after its graceful shutdown: "killed by SIGTERM" is the clean exit here
    assert gw.proc.returncode in (0, -signal.SIGTERM), out
    assert "drained in" in out and time.monotonic() - t0 < 10


def test_sigterm_keeps_video_fetchable_and_refuses_new_work(gateway_process, behaviour):
    """A video job running at SIGTERM should finish and stay pollable and downloadable through the
    gateway, while new work gets 503 shutting_down and /health says draining; then the gateway exits."""
    gw = gateway_process("wan2.2-ti2v-5b")
    behaviour.job_seconds = 11  # longer than the readiness re-check (10 s), which must not start new work
    job = httpx.post(gw.base + "/v1/videos", json={"prompt": "a wave", "size": "256x256", "num_frames": 5}).json()
    posts_before = len(behaviour.requests)
    gw.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 30
    while (health := httpx.get(gw.base + "/health")).json()["status"] != "draining":
        assert time.monotonic() < deadline, health.text
        time.sleep(0.05)
    assert health.status_code == 503
    refused = httpx.post(gw.base + "/v1/videos", json={"prompt": "another", "size": "256x256", "num_frames": 5})
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "shutting_down"
    assert refused.headers["retry-after"]
    deadline = time.monotonic() + 20
    while httpx.get(f"{gw.base}/v1/videos/{job['id']}").json()["status"] != "completed":
        assert time.monotonic() < deadline and gw.proc.poll() is None
        time.sleep(0.2)
    assert gw.proc.poll() is None, "exited before the finished video was downloaded"
    content = httpx.get(f"{gw.base}/v1/videos/{job['id']}/content")
    assert content.status_code == 200 and content.content == MP4
    out, _ = gw.proc.communicate(timeout=10)
    assert "draining: 1 video job(s) running" in out and "drained in" in out
    assert [r for r in behaviour.requests[posts_before:] if r[0] == "POST"] == [], "new work reached SGLang"


def test_sigterm_gives_up_after_the_grace_period(gateway_process, behaviour):
    """A job longer than GRACEFUL_SHUTDOWN_TIMEOUT should not hold the gateway: it exits after the
    grace period and says what it left behind."""
    gw = gateway_process("wan2.2-ti2v-5b", grace=2)
    behaviour.job_seconds = 60
    httpx.post(gw.base + "/v1/videos", json={"prompt": "a long one", "size": "256x256", "num_frames": 5})
    out, seconds = gw.stop()
    assert 2 <= seconds < 8, out
    assert "shutdown grace of 2 s is over: stopping with 1 video job(s) running" in out


@pytest.mark.parametrize(
    ("host", "key", "warned"), [("0.0.0.0", None, True), ("127.0.0.1", None, False), ("0.0.0.0", "k", False)]
)
def test_open_gateway_warns_at_start(upstream, host, key, warned):
    """A gateway without API_KEY that listens beyond loopback should say so loudly when it starts."""
    env = {k: val for k, val in os.environ.items() if k != "API_KEY"} | ({"API_KEY": key} if key else {})
    proc = subprocess.Popen(
        [sys.executable, "-m", "glm_image_sglang", "gateway", "--upstream", upstream.url, "--host", host,
         "--port", str(free_port())],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )  # fmt: skip
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # until uvicorn says it runs: everything said at start is before that
            lines.append(line)
            if "Uvicorn running" in line:
                break
    finally:
        proc.kill()
        proc.wait()
    assert ("WARNING: no API_KEY: anyone who reaches" in "".join(lines)) == warned, lines
