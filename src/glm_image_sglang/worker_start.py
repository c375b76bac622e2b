"""Starts SGLang's diffusion workers, and GLM-Image's AR server's scheduler and detokenizer, from a fork server
that imported their heavy modules while the server's main process was still importing its own
(WORKER_START=preload).

SGLang (0.5.23) spawns each diffusion worker as a fresh interpreter, which imports torch, transformers,
diffusers and SGLang again after the main process has done so: ~25 s of every start on an H200, one after the
other (docs/benchmarks.md). Run by the image's plugin in `sglang serve`'s main process (SGLang's
`sglang.srt.plugins` entry point, loaded before the diffusion server's own imports), this starts multiprocessing's
fork server at once with `worker_preload` as its preload, and makes SGLang's worker start ask that fork server
instead of spawning: the fork server imports in parallel with the main process, and each worker is a fork of
it. What a spawned worker gets and a forked one would not, it is given: the main process's environment as it is
when the worker starts (the fork server's is the one it had when it started); argv, sys.path and the working
folder come with multiprocessing's own preparation data, as with spawn. SGLang's worker bootstrap then runs as
written: platform first, then plugins and hooks, then its runtime modules (the preload imports none of them).
The fork server must never initialise CUDA (worker_preload.py), so the workers initialise it as spawned ones do;
before the first worker, a forked child checks that torch in it can still initialise CUDA, and if not, the
workers are spawned as SGLang does, with a WARNING.

GLM-Image's AR server (`sglang serve` of SGLang's LLM runtime, started beside the diffusion server) is the
critical path of a GLM-Image start (docs/benchmarks.md, twelfth run): its scheduler process is spawned the same
way (the runtime sets multiprocessing's start method to spawn and starts its processes with the module's
`mp.Process`), so there the module-level Process is the fork server's too, while `Engine._launch_subprocesses`
runs. Only in a server's main process: SGLang's own children load the plugin again with the main's argv.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

ENV = "GLM_IMAGE_WORKER_START"
LAUNCH = "sglang.multimodal_gen.runtime.launch_server"
ENGINE = "sglang.srt.entrypoints.engine"  # the LLM runtime's process start (GLM-Image's AR server)
PRELOAD = "glm_image_sglang.worker_preload"
NUMA_BIND = "SGLANG_NUMA_BIND_V2"  # the runtime then puts numactl in front of a spawned interpreter: spawn


def serves_diffusion(argv: Sequence[str]) -> bool:
    """`sglang serve --model-type diffusion`, as the launcher starts the diffusion server (never the AR server)."""
    args = list(argv)
    return any(a == "--model-type=diffusion" for a in args) or any(
        a == "--model-type" and args[i + 1 : i + 2] == ["diffusion"] for i, a in enumerate(args)
    )


def run_in(environ: dict[str, str], target: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """A worker's entry: the launching process's environment, then SGLang's own target."""
    os.environ.clear()
    os.environ.update(environ)
    return target(*args, **kwargs)


class PreloadedProcess(multiprocessing.context.ForkServerProcess):
    """A fork-server process whose `run_in` gets the launching process's environment as it is at `start()`
    (SGLang's LLM runtime sets variables for a child between creating and starting it)."""

    def start(self) -> None:
        self._args = (dict(os.environ), *self._args[1:])  # type: ignore[has-type]
        super().start()


class PreloadedContext:
    """The fork-server context, standing in for the spawn context SGLang asks for."""

    def __init__(self) -> None:
        self.context = multiprocessing.get_context("forkserver")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.context, name)

    def Process(
        self,
        target: Callable[..., Any],
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        **rest: Any,
    ) -> Any:
        return PreloadedProcess(target=run_in, args=({}, target, *args), kwargs=dict(kwargs or {}), **rest)


class Multiprocessing:
    """`multiprocessing` as an SGLang launch module sees it while it starts workers: the spawn context is the fork
    server's, and with `processes` (the LLM runtime, whose start method is spawn) the module-level Process too."""

    def __init__(self, processes: bool = False) -> None:
        self.processes = processes

    def __getattr__(self, name: str) -> Any:
        if name == "Process" and self.processes:
            return PreloadedContext().Process
        return getattr(multiprocessing, name)

    def get_context(self, method: str | None = None) -> Any:
        return PreloadedContext() if method == "spawn" else multiprocessing.get_context(method)


def cuda_usable_after_fork(torch: Any, driver: str = "/dev/nvidiactl") -> bool:
    """In a forked child: False where torch refuses CUDA because the parent queried the CUDA driver (torch marks
    every child forked after that) and there is a GPU to refuse (the driver's device node, or NVML's count)."""
    if torch is None or not torch.cuda._is_in_bad_fork():
        return True
    return not os.path.exists(driver) and torch.cuda.device_count() == 0


def report_fork_clean(writer: Any) -> None:
    """In a child of the fork server: `cuda_usable_after_fork`, sent back."""
    writer.send(cuda_usable_after_fork(sys.modules.get("torch")))
    writer.close()


def fork_server_clean(timeout: float = 600.0) -> bool:
    """Fork one child from the fork server (once its preload is done) and ask it `report_fork_clean`."""
    context = multiprocessing.get_context("forkserver")
    reader, writer = context.Pipe(duplex=False)
    child = context.Process(target=report_fork_clean, args=(writer,), name="glm-image-fork-check")
    child.start()
    writer.close()
    try:
        return bool(reader.poll(timeout) and reader.recv())
    except EOFError:
        return False
    finally:
        child.join(timeout=30)


def forked_while(module: Any, original: Callable[..., Any], processes: bool) -> Callable[..., Any]:
    """`original`, run with the module's `mp` swapped for `Multiprocessing(processes)` once the fork server's
    child says it can use the GPU; as it is (spawned, with a WARNING) otherwise."""

    def run(*args: Any, **kwargs: Any) -> Any:
        if not fork_server_clean():
            from .sglang_plugin import say

            say(
                "WARNING: WORKER_START=preload: the fork server's imports initialised CUDA, so its children "
                "could not use the GPU: workers are spawned instead (WORKER_START=spawn skips the fork server)"
            )
            return original(*args, **kwargs)
        module.mp = Multiprocessing(processes)
        try:
            return original(*args, **kwargs)
        finally:
            module.mp = multiprocessing

    run.__wrapped__ = original  # type: ignore[attr-defined]
    return run


def patch_launch_server(module: Any) -> bool:
    """Worker groups started by SGLang's `_start_scheduler_processes` come from the fork server."""
    original = getattr(module, "_start_scheduler_processes", None)
    if original is None or hasattr(original, "__wrapped__") or getattr(module, "mp", None) is not multiprocessing:
        return False
    module._start_scheduler_processes = forked_while(module, original, processes=False)
    return True


def patch_engine(module: Any) -> bool:
    """The LLM runtime's scheduler and detokenizer, started by `Engine._launch_subprocesses` with the module's
    `mp.Process`, come from the fork server."""
    engine = getattr(module, "Engine", None)
    if not isinstance(engine, type):
        return False
    launch = vars(engine).get("_launch_subprocesses")
    if not isinstance(launch, classmethod) or getattr(module, "mp", None) is not multiprocessing:
        return False
    if hasattr(launch.__func__, "__wrapped__"):
        return False
    patched: Any = engine
    patched._launch_subprocesses = classmethod(forked_while(module, launch.__func__, processes=True))
    return True


def start_fork_server() -> None:
    """The fork server, importing the preload now (in parallel with this process); workers come from it."""
    from multiprocessing import forkserver

    multiprocessing.get_context("forkserver").set_forkserver_preload([PRELOAD])
    forkserver.ensure_running()


def install(environ: Mapping[str, str], argv: Sequence[str], main: bool | None = None) -> bool:
    """In an `sglang serve` main process (the diffusion server, or GLM-Image's AR server), with
    GLM_IMAGE_WORKER_START=preload: start the fork server and patch SGLang's process start when its module is
    imported. False (and nothing changed) otherwise. main: whether this is a main process (default: not a
    multiprocessing child, which loads the plugin again with its parent's argv)."""
    if main is None:
        main = multiprocessing.parent_process() is None
    if environ.get(ENV) != "preload" or not main:
        return False
    from .kernel_compiles import AfterImport
    from .sglang_plugin import say

    diffusion = serves_diffusion(argv)
    if not diffusion and environ.get(NUMA_BIND, "").lower() in ("1", "true", "yes"):
        say(f"the AR server's processes are spawned: {NUMA_BIND} binds them with numactl, which a fork cannot")
        return False
    name, patcher = (LAUNCH, patch_launch_server) if diffusion else (ENGINE, patch_engine)

    def patch(module: Any) -> None:
        if not patcher(module):
            say("WARNING: WORKER_START=preload asked, but this SGLang's process start is not the one patched: "
                "its processes are spawned (the fork server idles)")  # fmt: skip

    if name in sys.modules:
        patch(sys.modules[name])
    else:
        sys.meta_path.insert(0, AfterImport(name, patch, "WORKER_START=preload"))
    start_fork_server()
    which = "diffusion workers start" if diffusion else "the AR server's scheduler and detokenizer start"
    say(f"{which} from a fork server that imports torch, transformers and diffusers meanwhile")
    return True
