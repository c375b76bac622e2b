"""GLM-Image with its AR stage on a separate server, on the real SGLang diffusion server: text-to-image
through that server, edits in-process through the image's SGLang plugin.

Two layouts: GLM_AR=srt, where the launcher starts SGLang's own LLM runtime on the CPU with the tiny AR
model (the product's layout, for real), and GLM_AR=<url> pointed at a stand-in that answers /health and
/generate as that runtime does and records each call, so the tests can check what the diffusion server
asked of it (the runtime logs no request parameters).
"""

from __future__ import annotations

import base64
import http.server
import io
import json
import random
import subprocess
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from PIL import Image

from harness import E2E_PYTHON, READY_TIMEOUT, Server, forking, free_port, process_tree

pytestmark = pytest.mark.e2e


class StandIn:
    """An AR server stand-in on loopback: image tokens drawn from the DiT's codebook, every call kept."""

    def __init__(self, codebook: int) -> None:
        self.calls: list[dict[str, Any]] = []
        stand_in = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.reply(200 if self.path == "/health" else 404, {})

            def do_POST(self) -> None:
                payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stand_in.calls.append(payload)
                budget = payload["sampling_params"]["max_new_tokens"]
                ids = [random.randrange(codebook) for _ in range(budget)]
                self.reply(200, {"output_ids": ids, "meta_info": {"prompt_tokens": len(payload["input_ids"]),
                                                                  "completion_tokens": budget}})  # fmt: skip

            def reply(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.port = free_port()
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()


@pytest.fixture(scope="module")
def stand_in(tiny_models) -> Iterator[StandIn]:
    config = json.loads((tiny_models / "weights-glm" / "transformer" / "config.json").read_text())
    served = StandIn(config["prior_vq_quantizer_codebook_size"])
    yield served
    served.stop()


@pytest.fixture(scope="module")
def server(stand_in, tiny_models, tmp_path_factory) -> Iterator[Server]:
    """Host backend only: the container tier runs with --network none and cannot reach a stand-in."""
    served = Server("host", tiny_models, "glm-image", tmp_path_factory.mktemp("glm-ar"),
                    {"GLM_AR": f"http://127.0.0.1:{stand_in.port}"})  # fmt: skip
    try:
        yield served
    finally:
        served.stop()
        served.remove()


def test_readiness_generation_went_through_the_ar_server(server, stand_in):
    """The gateway's readiness generation should have reached the AR server before /health turned 200."""
    assert stand_in.calls, server.logs()[-3000:]
    assert "--srt-encoder-url http://127.0.0.1:" in server.logs()


def test_text_to_image_asks_for_the_token_budget_of_its_grids(server, stand_in):
    """A 64x32 request should come back as a 64x32 image, the AR server asked for exactly one token per
    cell of the image grids the processor gave (target and preview) plus the end token, sampled."""
    before = len(stand_in.calls)
    resp = server.client.post("/v1/images/generations", json={"prompt": "a fox", "size": "64x32",
                                                               "num_inference_steps": 2, "response_format": "b64_json"})  # fmt: skip
    assert resp.status_code == 200, resp.text[-2000:]
    assert Image.open(io.BytesIO(base64.b64decode(resp.json()["data"][0]["b64_json"]))).size == (64, 32)
    (call,) = stand_in.calls[before:]
    grids = call["image_data"][0]["image_grid_thw"]
    assert call["sampling_params"]["max_new_tokens"] == sum(t * h * w for t, h, w in grids) + 1
    assert call["sampling_params"]["temperature"] == 1.0 and call["sampling_params"]["ignore_eos"] is True
    # the target grid first, height by width, in 32-px cells (the DiT upsamples the tokens to its 16-px grid)
    assert grids[0][1:] == [32 // 32, 64 // 32]


def test_edit_runs_in_process_beside_the_ar_server(server, stand_in):
    """SGLang has no edit path through the AR server; the image's plugin (SGLang 0.5.23 loads it) runs edits
    in-process instead: a 64x32 edit should come back at its size without a call to the AR server."""
    before = len(stand_in.calls)
    buf = io.BytesIO()
    Image.new("RGB", (64, 32), (9, 90, 200)).save(buf, "PNG")
    data = {"prompt": "night", "size": "64x32", "num_inference_steps": "2", "generator_device": "cpu",
            "response_format": "b64_json"}  # fmt: skip
    resp = server.client.post("/v1/images/edits", data=data, files={"image": ("a.png", buf.getvalue(), "image/png")})
    assert resp.status_code == 200, resp.text[-2000:]
    assert Image.open(io.BytesIO(base64.b64decode(resp.json()["data"][0]["b64_json"]))).size == (64, 32)
    assert len(stand_in.calls) == before
    assert "GLM-Image edits run in-process (text-to-image on the AR server)" in server.logs()


def test_models_lists_both_tasks(server):
    """With edits served in-process, /v1/models should list both tasks."""
    assert server.client.get("/v1/models").json()["data"][0]["tasks"] == ["text-to-image", "image-edit"]


@pytest.fixture(scope="module")
def srt_server(tiny_models, tmp_path_factory) -> Iterator[Server]:
    """GLM_AR=srt, GLM_AR_START=after-ready: the launcher starts SGLang's LLM runtime on the CPU first, the
    diffusion server after it (the default, auto, starts both together where the plugin loads: below)."""
    env = {"GLM_AR": "srt", "GLM_AR_START": "after-ready"}
    served = Server("host", tiny_models, "glm-image", tmp_path_factory.mktemp("glm-srt"), env)
    try:
        yield served
    finally:
        served.stop()
        served.remove()


def assert_text_to_image_through_the_llm_runtime(server: Server) -> None:
    """The readiness generation and then a 64x32 text-to-image request went through the AR server's
    /generate, and the image came back at its size."""
    before = server.logs().count('"POST /generate HTTP/1.1" 200')
    assert before >= 1, server.logs()[-3000:]  # the readiness generation went through it
    resp = server.client.post("/v1/images/generations", json={"prompt": "a fox", "size": "64x32",
                                                               "num_inference_steps": 2, "response_format": "b64_json"})  # fmt: skip
    assert resp.status_code == 200, resp.text[-2000:]
    assert Image.open(io.BytesIO(base64.b64decode(resp.json()["data"][0]["b64_json"]))).size == (64, 32)
    assert server.logs().count('"POST /generate HTTP/1.1" 200') == before + 1


def test_srt_layout_serves_text_to_image_through_sglangs_llm_runtime(srt_server):
    """With GLM_AR=srt the AR server should start first, the diffusion server once it answers, and a
    64x32 text-to-image request should come back at its size with the AR stage on the LLM runtime."""
    logs = srt_server.logs()
    assert "AR server (started first; SGLang once it is ready): " in logs and "--device cpu" in logs
    assert "/health answered 200 after" in logs and "starting SGLang" in logs
    assert_text_to_image_through_the_llm_runtime(srt_server)


def test_the_ar_servers_scheduler_is_forked_by_default(srt_server):
    """WORKER_START=preload (the default) reaches the AR server too: its scheduler and detokenizer hang under a
    fork server, which hangs under the AR server's main process; they were forked, not spawned."""
    assert "the AR server's scheduler and detokenizer start from a fork server" in srt_server.logs()
    tree = process_tree(srt_server.proc.pid)
    forked = forking(tree)
    fork_servers = {tree[pid][0]: pid for pid in forked if tree[pid][0] not in forked}  # main process -> server
    ar_main = [main for main in fork_servers if "--enable-multimodal" in tree[main][1]]
    assert len(ar_main) == 1, tree
    children = [pid for pid, (parent, _) in tree.items() if parent == fork_servers[ar_main[0]]]
    assert len(children) >= 2, tree  # the scheduler and the detokenizer


def test_the_start_up_phases_include_the_ar_servers(srt_server):
    """The launcher's start-up phases should say where the AR server's start went: its main's imports and its
    scheduler's start, read off the real LLM runtime's own lines."""
    phases = srt_server.phases_line()
    assert "; AR server: imports " in phases and ", scheduler start (imports again) " in phases, phases


def test_srt_layout_stops_both_on_sigterm(srt_server):
    """SIGTERM should stop the gateway, the diffusion server and the AR server, and the container exit 0."""
    code, _ = srt_server.stop()
    assert code == 0, srt_server.logs()[-3000:]
    assert "'AR server': " in srt_server.logs().split("stopped after")[-1]


# SGLANG_BIN for the together layout: holds the AR server (the command with --enable-multimodal) until the
# diffusion server, started beside it, listens on its port, i.e. has loaded every component. On an H200 the
# AR server answered /health 29 s after the diffusion server had checked it while loading; on the CPU either
# may come first, so the test makes the GPU's order certain.
HOLD_AR = """#!/bin/bash
case " $* " in *" --enable-multimodal "*)
  until (exec 3<>/dev/tcp/127.0.0.1/{port}) 2>/dev/null; do sleep 0.5; done;;
esac
exec {sglang} "$@"
"""


@pytest.fixture(scope="module")
def together_server(tiny_models, tmp_path_factory) -> Iterator[Server]:
    """GLM_AR=srt with GLM_AR_START=together, the AR server ready only after the diffusion server's load."""
    tmp = tmp_path_factory.mktemp("glm-together")
    port = free_port()
    wrapper = tmp / "sglang"
    wrapper.write_text(HOLD_AR.format(port=port, sglang=E2E_PYTHON.parent / "sglang"))
    wrapper.chmod(0o755)
    env = {"GLM_AR": "srt", "GLM_AR_START": "together", "SGLANG_PORT": str(port), "SGLANG_BIN": str(wrapper)}
    # the two servers' loads run one after the other here (376 s on 2 busy cores): more than one load's limit
    served = Server("host", tiny_models, "glm-image", tmp, env, ready_timeout=2 * READY_TIMEOUT)
    try:
        yield served
    finally:
        served.stop()
        served.remove()


def test_together_layout_serves_text_to_image_through_an_ar_server_that_came_last(together_server):
    """GLM_AR_START=together with an AR server that answers only after the diffusion server has loaded:
    the diffusion server should not give up on it while loading (SGLang falls back to loading the AR
    model itself, with a traceback), the container should turn ready, and text-to-image should go through
    the AR server."""
    logs = together_server.logs()
    assert "AR server (started together with SGLang): " in logs
    assert "its /health is left to the gateway" in logs, logs[-3000:]
    assert "Failed to reach AR encoder server" not in logs and "falling back to native" not in logs
    assert_text_to_image_through_the_llm_runtime(together_server)


def test_the_ar_servers_cuda_graph_cap_is_a_flag_this_sglang_takes():
    """The launcher's spelling of the AR server's decode CUDA graph cap, read from the installed SGLang's source,
    should be one its real LLM-runtime parser accepts and applies (0.5.16's `--cuda-graph-max-bs` is an
    ambiguous prefix there and would stop the AR server)."""
    script = (
        "import argparse\n"
        "from glm_image_sglang import preflight, sglang_args\n"
        "from sglang.srt.server_args import ServerArgs\n"
        "flag = preflight.probe_ar_graph_flag()\n"
        "parser = argparse.ArgumentParser()\n"
        "ServerArgs.add_cli_args(parser)\n"
        "args = parser.parse_args(['--model-path', 'm', flag, str(sglang_args.AR_CUDA_GRAPH_MAX_BS)])\n"
        "print(flag, args.cuda_graph_max_bs_decode)\n"
    )
    done = subprocess.run([str(E2E_PYTHON), "-c", script], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split()[-2:] == ["--cuda-graph-max-bs-decode", "16"]
