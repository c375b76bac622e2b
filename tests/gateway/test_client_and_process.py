"""The client command against the gateway, and the gateway as its own process (SIGTERM drains)."""

from __future__ import annotations

import io
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


def test_client_video_progress(ti2v, behaviour, tmp_path, capsys):
    """`client video` should show a progress bar and save the MP4."""
    behaviour.job_seconds = 1.0
    out = tmp_path / "v.mp4"
    code = client_main(
        [
            "--base-url",
            ti2v.served.url + "/v1",
            "video",
            "a cat",
            "--frames",
            "5",
            "--poll",
            "0.1",
            "--size",
            "256x256",
            "-o",
            str(out),
        ]
    )
    assert code == 0 and out.read_bytes() == MP4
    err = capsys.readouterr().err
    assert "video video_" in err and "100/100" in err


def test_client_reports_server_error(glm, tmp_path, capsys):
    """A refused request should print the gateway's message, not a traceback."""
    code = client_main(
        ["--base-url", glm.served.url + "/v1", "image", "x", "--size", "33x33", "-o", str(tmp_path / "a.png")]
    )
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("ERROR: BadRequestError:") and "multiple of 32" in err


def test_sigterm_drains_in_flight(upstream, behaviour):
    """On SIGTERM the gateway process should finish the running request, then exit."""
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "glm_image_sglang",
            "gateway",
            "--upstream",
            upstream.url,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--model-variant",
            "glm-image",
            "--graceful-shutdown-timeout",
            "20",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(base + "/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.1)
        behaviour.delay = 2
        result: list[httpx.Response] = []
        t = threading.Thread(
            target=lambda: result.append(
                httpx.post(base + "/v1/images/generations", json={"prompt": "x", "size": "64x64"}, timeout=30)
            )
        )
        t.start()
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        t.join(timeout=30)
        out, _ = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert result and result[0].status_code == 200
    assert Image.open(io.BytesIO(__import__("base64").b64decode(result[0].json()["data"][0]["b64_json"]))).size == (
        64,
        64,
    )
    # uvicorn re-raises SIGTERM after its graceful shutdown: "killed by SIGTERM" is the clean exit here
    assert proc.returncode in (0, -signal.SIGTERM), out
    assert "Waiting for connections to close" in out
