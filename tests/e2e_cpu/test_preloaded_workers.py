"""WORKER_START=preload, the default, on the real SGLang diffusion server (CPU, tiny TI2V-5B): the image's plugin,
loaded in SGLang's main process through its LLM runtime's entry point, starts multiprocessing's fork server, and
the diffusion worker is forked from it rather than spawned; it serves the same video as a spawned worker
(WORKER_START=spawn, SGLang's own way), and SIGTERM still stops every process."""

from __future__ import annotations

import subprocess
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import E2E_PYTHON, Server, forking, process_tree, sync_mp4, sync_video

pytestmark = pytest.mark.e2e
SMALL = {"size": "64x64", "num_frames": 5, "num_inference_steps": 2, "seed": 0, "generator_device": "cpu"}


@pytest.fixture(scope="module")
def server(tiny_models, tmp_path_factory) -> Iterator[Server]:
    """Default settings: WORKER_START is not set."""
    served = Server("host", tiny_models, "wan2.2-ti2v-5b", tmp_path_factory.mktemp("preload"))
    yield served
    served.stop()
    served.remove()


@pytest.fixture(scope="module")
def spawned(tiny_models, tmp_path_factory) -> Iterator[Server]:
    served = Server("host", tiny_models, "wan2.2-ti2v-5b", tmp_path_factory.mktemp("spawn"),
                    {"WORKER_START": "spawn"})  # fmt: skip
    yield served
    served.stop()
    served.remove()


def test_by_default_the_plan_and_the_plugin_say_so(server):
    log = server.logs()
    assert "worker start: forked from a fork server" in log
    assert "glm-image-sglang plugin: diffusion workers start from a fork server" in log


def test_the_worker_is_a_child_of_the_fork_server(server):
    """The process SGLang started for its worker hangs under the fork server, which hangs under SGLang's main
    process: the worker was forked, not spawned."""
    tree = process_tree(server.proc.pid)
    forked = forking(tree)
    servers = [pid for pid in forked if tree[pid][0] not in forked]
    assert len(servers) == 1, tree
    parent_cmd = tree[tree[servers[0]][0]][1]
    assert "serve" in parent_cmd and "diffusion" in parent_cmd, parent_cmd
    assert [pid for pid, (parent, _) in tree.items() if parent == servers[0]], tree


def test_a_forked_worker_generates(server):
    assert sync_video(server.client, "a wave", SMALL)[:3] == (5, 64, 64)


def test_workers_spawned_on_request_have_no_fork_server(spawned):
    assert "worker start: forked" not in spawned.logs()
    assert not forking(process_tree(spawned.proc.pid))


def test_forked_and_spawned_workers_make_the_same_video(server, spawned):
    """Same seed, same request: the fork server changes how the worker starts, not what it computes."""
    assert sync_mp4(server.client, "a kite", SMALL) == sync_mp4(spawned.client, "a kite", SMALL)


def test_sigterm_stops_the_fork_server_and_its_worker(server):
    pids = set(process_tree(server.proc.pid))
    code, _ = server.stop()
    assert code == 0, server.logs()[-3000:]
    deadline = time.monotonic() + 60  # a bound for a failure to show, not a wait: alive ones end it early
    while (left := {pid for pid in pids if Path(f"/proc/{pid}").exists()}) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, {pid: process_tree(pid).get(pid) for pid in left}


# torch as on a GPU host: is_available and device_count answer through NVML (no CUDA), and every function that
# would initialise CUDA is recorded, with its caller, and answered as an H200 would so the imports go on.
PRETEND_GPU = """
import sys, traceback
import torch
calls = []
def recorded(name, value):
    def call(*args, **kwargs):
        calls.append(name + " from " + traceback.format_stack(limit=3)[0].strip())
        return value
    return call
torch.cuda.is_available = lambda: True
torch.cuda.device_count = lambda: 1
for name, value in [("_lazy_init", None), ("init", None), ("current_device", 0), ("get_device_name", "NVIDIA H200"),
                    ("get_device_capability", (9, 0)), ("get_device_properties", None), ("mem_get_info", (1, 1))]:
    setattr(torch.cuda, name, recorded(name, value))
"""


def test_the_fork_servers_imports_never_initialise_cuda():
    """A fork server that initialised CUDA makes children that cannot use it: on an H200 SGLang's platform
    lookup did so (2026-12-02). Imported with torch pretending a GPU, the preload must call nothing that would."""
    script = PRETEND_GPU + textwrap.dedent("""
        import glm_image_sglang.worker_preload as preload
        print("missing:", [m for m in preload.MODULES if m not in sys.modules])
        print("calls:", calls)
    """)
    result = subprocess.run([str(E2E_PYTHON), "-c", script], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "missing: []" in result.stdout, result.stdout  # every module really imported
    assert "calls: []" in result.stdout, result.stdout


def test_a_fork_server_that_initialised_cuda_is_detected(tmp_path):
    """The check before the first worker, against a real fork server: one whose preload queried the CUDA
    driver (torch then marks its children) on a host with a GPU is reported unusable; a clean one is not."""
    (tmp_path / "queried_cuda.py").write_text(
        "import torch\ntorch._C._cuda_getDeviceCount()\ntorch.cuda.device_count = lambda: 1\n"
    )
    (tmp_path / "left_cuda_alone.py").write_text("import torch\ntorch.cuda.device_count = lambda: 1\n")
    script = textwrap.dedent("""
        import multiprocessing, sys
        from glm_image_sglang import worker_start
        multiprocessing.get_context("forkserver").set_forkserver_preload([sys.argv[1]])
        print("clean:", worker_start.fork_server_clean(timeout=300))
    """)
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tmp_path)}
    for module, clean in (("queried_cuda", False), ("left_cuda_alone", True)):
        result = subprocess.run([str(E2E_PYTHON), "-c", script, module], capture_output=True, text=True,
                                timeout=600, env=env)  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        assert f"clean: {clean}" in result.stdout, (module, result.stdout, result.stderr[-2000:])
