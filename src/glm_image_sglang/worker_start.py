"""Starts SGLang's diffusion workers from a fork server that imported their heavy modules while the server's
main process was still importing its own (WORKER_START=preload).

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
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

ENV = "GLM_IMAGE_WORKER_START"
LAUNCH = "sglang.multimodal_gen.runtime.launch_server"
PRELOAD = "glm_image_sglang.worker_preload"


def serves_diffusion(argv: Sequence[str]) -> bool:
    """`sglang serve --model-type diffusion`, as the launcher starts the diffusion server (never the AR server)."""
    args = list(argv)
    return any(a == "--model-type=diffusion" for a in args) or any(
        a == "--model-type" and args[i + 1 : i + 2] == ["diffusion"] for i, a in enumerate(args)
    )


def run_in(environ: dict[str, str], target: Callable[..., Any], *args: Any) -> Any:
    """A worker's entry: the launching process's environment, then SGLang's own target."""
    os.environ.clear()
    os.environ.update(environ)
    return target(*args)


class PreloadedContext:
    """The fork-server context, standing in for the spawn context SGLang asks for."""

    def __init__(self) -> None:
        self.context = multiprocessing.get_context("forkserver")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.context, name)

    def Process(self, target: Callable[..., Any], args: Sequence[Any] = (), **kwargs: Any) -> Any:
        return self.context.Process(target=run_in, args=(dict(os.environ), target, *args), **kwargs)


class Multiprocessing:
    """`multiprocessing` as SGLang's launch_server module sees it: the spawn context is the fork server's."""

    def __getattr__(self, name: str) -> Any:
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


def patch_launch_server(module: Any) -> bool:
    """Worker groups started by SGLang's `_start_scheduler_processes` come from the fork server."""
    original = getattr(module, "_start_scheduler_processes", None)
    if original is None or hasattr(original, "__wrapped__") or getattr(module, "mp", None) is not multiprocessing:
        return False

    def _start_scheduler_processes(*args: Any, **kwargs: Any) -> Any:
        if not fork_server_clean():
            from .sglang_plugin import say

            say(
                "WARNING: WORKER_START=preload: the fork server's imports initialised CUDA, so its children "
                "could not use the GPU: workers are spawned instead (WORKER_START=spawn skips the fork server)"
            )
            return original(*args, **kwargs)
        module.mp = Multiprocessing()
        try:
            return original(*args, **kwargs)
        finally:
            module.mp = multiprocessing

    _start_scheduler_processes.__wrapped__ = original  # type: ignore[attr-defined]
    module._start_scheduler_processes = _start_scheduler_processes
    return True


def start_fork_server() -> None:
    """The fork server, importing the preload now (in parallel with this process); workers come from it."""
    from multiprocessing import forkserver

    multiprocessing.get_context("forkserver").set_forkserver_preload([PRELOAD])
    forkserver.ensure_running()


def install(environ: Mapping[str, str], argv: Sequence[str]) -> bool:
    """In the diffusion server's main process, with GLM_IMAGE_WORKER_START=preload: start the fork server and
    patch SGLang's worker start when its module is imported. False (and nothing changed) otherwise."""
    if environ.get(ENV) != "preload" or not serves_diffusion(argv):
        return False
    from .kernel_compiles import AfterImport
    from .sglang_plugin import say

    def patch(module: Any) -> None:
        if not patch_launch_server(module):
            say("WARNING: WORKER_START=preload asked, but this SGLang's worker start is not the one patched: workers "
                "are spawned (the fork server idles)")  # fmt: skip

    if LAUNCH in sys.modules:
        patch(sys.modules[LAUNCH])
    else:
        sys.meta_path.insert(0, AfterImport(LAUNCH, patch, "WORKER_START=preload"))
    start_fork_server()
    say("diffusion workers start from a fork server that imports torch, transformers and diffusers meanwhile")
    return True
