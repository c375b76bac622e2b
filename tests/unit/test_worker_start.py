"""WORKER_START=preload (worker_start.py): SGLang's diffusion workers come from a fork server, with the
launching process's environment as it is when each worker starts."""

from __future__ import annotations

import multiprocessing
import os
import types

import pytest

from glm_image_sglang import worker_start


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["sglang", "serve", "--model-type", "diffusion", "--model-path", "/m"], True),
        (["sglang", "serve", "--model-type=diffusion"], True),
        (["sglang", "serve", "--model-path", "/m/vision_language_encoder"], False),  # GLM-Image's AR server
        (["sglang", "serve", "--model-type"], False),
    ],
)
def test_only_the_diffusion_server_is_recognised(argv, expected):
    assert worker_start.serves_diffusion(argv) is expected


def test_nothing_happens_unless_asked(monkeypatch):
    """Without GLM_IMAGE_WORKER_START=preload, or in the AR server, no fork server is started."""
    started = []
    monkeypatch.setattr(worker_start, "start_fork_server", lambda: started.append(1))
    diffusion = ["sglang", "serve", "--model-type", "diffusion"]
    assert worker_start.install({}, diffusion) is False
    assert worker_start.install({"GLM_IMAGE_WORKER_START": "preload"}, ["sglang", "serve"]) is False
    assert started == []


def fake_launch_server() -> types.ModuleType:
    """SGLang's launch_server as far as the patch goes: `mp` is multiprocessing, workers start from its spawn
    context inside _start_scheduler_processes."""
    module = types.ModuleType("fake_launch_server")
    module.mp = multiprocessing

    def _start_scheduler_processes():
        return module.mp.get_context("spawn")

    module._start_scheduler_processes = _start_scheduler_processes
    return module


def test_worker_groups_start_from_the_fork_server_and_nothing_else_changes():
    module = fake_launch_server()
    assert worker_start.patch_launch_server(module)
    context = module._start_scheduler_processes()
    assert isinstance(context, worker_start.PreloadedContext)
    assert context.get_start_method() == "forkserver"
    assert module.mp is multiprocessing  # restored once the group has started
    assert not worker_start.patch_launch_server(module)  # once


def report_environment(name: str, conn) -> None:
    conn.send(os.environ.get(name))
    conn.close()


def test_a_worker_sees_the_environment_of_its_start_not_the_fork_servers(monkeypatch):
    """SGLang may set variables after the fork server started; a spawned worker would inherit them, so the
    fork server's child should too."""
    from multiprocessing import forkserver

    monkeypatch.delenv("GLM_IMAGE_TEST_LATE", raising=False)
    forkserver.ensure_running()  # the fork server, started before the variable exists
    monkeypatch.setenv("GLM_IMAGE_TEST_LATE", "set after the fork server started")
    context = worker_start.PreloadedContext()
    reader, writer = context.Pipe(duplex=False)
    process = context.Process(target=report_environment, args=("GLM_IMAGE_TEST_LATE", writer), daemon=True)
    process.start()
    writer.close()
    assert reader.poll(120), "the worker sent nothing"
    assert reader.recv() == "set after the fork server started"
    process.join(120)
    assert process.exitcode == 0


def fake_torch(bad_fork: bool, devices: int) -> types.SimpleNamespace:
    cuda = types.SimpleNamespace(_is_in_bad_fork=lambda: bad_fork, device_count=lambda: devices)
    return types.SimpleNamespace(cuda=cuda)


@pytest.mark.parametrize(
    ("torch", "driver_node", "usable"),
    [
        (None, True, True),  # the fork server never imported torch
        (fake_torch(bad_fork=False, devices=1), True, True),  # it imported torch and left CUDA alone
        (fake_torch(bad_fork=True, devices=1), False, False),  # it queried CUDA, and NVML counts a GPU
        (fake_torch(bad_fork=True, devices=0), True, False),  # it queried CUDA, and the driver is there
        (fake_torch(bad_fork=True, devices=0), False, True),  # a CPU host: there is no GPU to refuse
    ],
)
def test_a_forked_child_knows_whether_it_can_use_the_gpu(tmp_path, torch, driver_node, usable):
    driver = tmp_path / "nvidiactl"
    if driver_node:
        driver.touch()
    assert worker_start.cuda_usable_after_fork(torch, str(driver)) is usable


def test_a_fork_server_that_touched_cuda_is_passed_over_for_spawn(monkeypatch, capsys):
    """If the fork server's imports initialised CUDA, its children could not use the GPU: SGLang's own spawn
    start is used instead, and the log says why."""
    monkeypatch.setattr(worker_start, "fork_server_clean", lambda: False)
    module = fake_launch_server()
    assert worker_start.patch_launch_server(module)
    context = module._start_scheduler_processes()
    assert context.get_start_method() == "spawn"
    assert not isinstance(context, worker_start.PreloadedContext)
    assert "workers are spawned instead" in capsys.readouterr().err
