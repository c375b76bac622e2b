"""WORKER_START=preload (worker_start.py): SGLang's diffusion workers, and GLM-Image's AR server's processes, come
from a fork server, with the launching process's environment as it is when each starts."""

from __future__ import annotations

import multiprocessing
import os
import sys
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


PRELOAD = {"GLM_IMAGE_WORKER_START": "preload"}
DIFFUSION = ["sglang", "serve", "--model-type", "diffusion"]
AR_SERVER = ["sglang", "serve", "--model-path", "/m/vision_language_encoder"]


def test_nothing_happens_unless_asked(monkeypatch):
    """Without GLM_IMAGE_WORKER_START=preload no fork server is started."""
    started = []
    monkeypatch.setattr(worker_start, "start_fork_server", lambda: started.append(1))
    assert worker_start.install({}, DIFFUSION, main=True) is False
    assert worker_start.install({}, AR_SERVER, main=True) is False
    assert started == []


def test_a_servers_own_children_start_no_fork_server(monkeypatch):
    """SGLang's children load the plugin again with their parent's argv: only a main process starts one."""
    started = []
    monkeypatch.setattr(worker_start, "start_fork_server", lambda: started.append(1))
    assert worker_start.install(PRELOAD, DIFFUSION, main=False) is False
    assert worker_start.install(PRELOAD, AR_SERVER, main=False) is False
    assert started == []


def test_the_ar_server_starts_its_processes_from_a_fork_server(monkeypatch, capsys):
    started = []
    monkeypatch.setattr(worker_start, "start_fork_server", lambda: started.append(1))
    module = fake_engine()
    monkeypatch.setitem(sys.modules, worker_start.ENGINE, module)
    assert worker_start.install(PRELOAD, AR_SERVER, main=True) is True
    assert started == [1]
    assert hasattr(module.Engine._launch_subprocesses, "__wrapped__")
    assert "the AR server's scheduler and detokenizer start from a fork server" in capsys.readouterr().err


def test_numa_binding_keeps_the_ar_servers_processes_spawned(monkeypatch, capsys):
    """SGLANG_NUMA_BIND_V2 puts numactl in front of each spawned interpreter, which a fork would drop."""
    started = []
    monkeypatch.setattr(worker_start, "start_fork_server", lambda: started.append(1))
    assert worker_start.install({**PRELOAD, "SGLANG_NUMA_BIND_V2": "1"}, AR_SERVER, main=True) is False
    assert started == []
    assert "SGLANG_NUMA_BIND_V2" in capsys.readouterr().err


def fake_launch_server() -> types.ModuleType:
    """SGLang's launch_server as far as the patch goes: `mp` is multiprocessing, workers start from its spawn
    context inside _start_scheduler_processes."""
    module = types.ModuleType("fake_launch_server")
    module.mp = multiprocessing

    def _start_scheduler_processes():
        return module.mp.get_context("spawn")

    module._start_scheduler_processes = _start_scheduler_processes
    return module


def fake_engine() -> types.ModuleType:
    """SGLang's LLM runtime engine module as far as the patch goes: `mp` is multiprocessing, and
    Engine._launch_subprocesses (a classmethod) starts its processes with `mp.Process`."""
    module = types.ModuleType("fake_engine")
    module.mp = multiprocessing

    class Engine:
        @classmethod
        def _launch_subprocesses(cls, *args):
            return cls, args, module.mp.Process, module.mp.get_context("spawn"), module.mp.Pipe

    module.Engine = Engine
    return module


def test_the_llm_runtimes_processes_come_from_the_fork_server_while_it_launches():
    module = fake_engine()
    assert worker_start.patch_engine(module)
    cls, args, process, context, pipe = module.Engine._launch_subprocesses("server_args")
    assert (cls, args) == (module.Engine, ("server_args",))  # still a classmethod, arguments passed on
    assert process.__self__.__class__ is worker_start.PreloadedContext  # mp.Process: the fork server's
    assert isinstance(context, worker_start.PreloadedContext)
    assert pipe is multiprocessing.Pipe  # everything else is multiprocessing's own
    assert module.mp is multiprocessing  # restored once it has launched
    assert not worker_start.patch_engine(module)  # once


def test_an_engine_module_of_another_shape_is_left_alone():
    module = fake_engine()
    module.Engine._launch_subprocesses = staticmethod(lambda: None)
    assert not worker_start.patch_engine(module)
    assert not worker_start.patch_engine(types.ModuleType("no_engine"))


def test_worker_groups_start_from_the_fork_server_and_nothing_else_changes():
    module = fake_launch_server()
    assert worker_start.patch_launch_server(module)
    context = module._start_scheduler_processes()
    assert isinstance(context, worker_start.PreloadedContext)
    assert context.get_start_method() == "forkserver"
    assert module.mp is multiprocessing  # restored once the group has started
    assert not worker_start.patch_launch_server(module)  # once


def report_environment(name: str, conn, suffix: str = "") -> None:
    conn.send(f"{os.environ.get(name)}{suffix}")
    conn.close()


def test_a_worker_sees_the_environment_of_its_start_not_the_fork_servers(monkeypatch):
    """SGLang may set variables after the fork server started, and its LLM runtime even between creating a
    process and starting it; a spawned worker would inherit them, so the fork server's child should too."""
    from multiprocessing import forkserver

    monkeypatch.delenv("GLM_IMAGE_TEST_LATE", raising=False)
    forkserver.ensure_running()  # the fork server, started before the variable exists
    context = worker_start.PreloadedContext()
    reader, writer = context.Pipe(duplex=False)
    process = context.Process(target=report_environment, args=("GLM_IMAGE_TEST_LATE", writer),
                              kwargs={"suffix": " (kwargs too)"}, daemon=True)  # fmt: skip
    monkeypatch.setenv("GLM_IMAGE_TEST_LATE", "set after the process was made")
    process.start()
    writer.close()
    assert reader.poll(120), "the worker sent nothing"
    assert reader.recv() == "set after the process was made (kwargs too)"
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
