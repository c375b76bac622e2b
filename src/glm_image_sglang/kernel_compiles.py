"""Says in the log which CUDA kernel is being compiled, and for how long, while SGLang's first generation
after a start compiles kernels silently (a cold TI2V-5B start sat 43.5 s in its first denoising step, an
A14B one 51-57 s, with no line; docs/benchmarks.md). Installed by the image's SGLang plugin in every worker.

A compile that runs longer than `threshold` seconds gets a line when it passes the threshold and one when it
ends; a kernel found in CACHE_DIR (or a no-op ninja run) ends sooner and prints nothing. What it wraps, each
only where the installed version has it:
- SGLang >= 0.5.23's own JIT build (`sglang.kernels.jit.utils.compile.ninja.build`, called only to compile;
  each build that succeeds is also appended to GLM_IMAGE_KERNEL_RECORD: kernel_record.py),
- tvm-ffi's build (`tvm_ffi.cpp.extension._build_impl`), which SGLang 0.5.16's JIT kernels go through,
- flashinfer's JIT build (`flashinfer.jit.core.JitSpec.build`: its RoPE kernel, which SGLang's Wan DiT uses).
  flashinfer is patched when something imports it, not before: importing it at plugin time would move its
  import cost and fails outright where no GPU is visible (its __init__ reads GPU 0's properties).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from .kernel_record import recorded
from .sglang_plugin import say

SGLANG_NINJA = "sglang.kernels.jit.utils.compile.ninja"
TVM_FFI = "tvm_ffi.cpp.extension"
FLASHINFER = "flashinfer.jit.core"


def reported(
    build: Callable[..., Any], name_of: Callable[..., str], source: str, threshold: float
) -> Callable[..., Any]:
    """`build` that announces itself once it has run `threshold` seconds, and then says how long it took."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            name = name_of(*args, **kwargs)
        except Exception:
            name = "?"
        what = f"CUDA kernel {name} ({source})"
        started = time.monotonic()
        announced = threading.Event()

        def announce() -> None:
            announced.set()
            say(f"compiling {what}: its first use with this CACHE_DIR; kept there for the next start")

        timer = threading.Timer(threshold, announce)
        timer.daemon = True
        timer.start()
        built = False
        try:
            result = build(*args, **kwargs)
            built = True
            return result
        finally:
            timer.cancel()
            if announced.is_set():
                seconds = time.monotonic() - started
                say(
                    f"compiled {what} in {seconds:.1f} s" if built else f"compiling {what} failed after {seconds:.1f} s"
                )

    wrapper.__wrapped__ = build  # type: ignore[attr-defined]
    return wrapper


def wrap_attribute(
    owner: Any,
    attribute: str,
    name_of: Callable[..., str],
    source: str,
    threshold: float,
    inner: Callable[[Callable[..., Any]], Callable[..., Any]] | None = None,
) -> bool:
    original = getattr(owner, attribute, None)
    if original is None or hasattr(original, "__wrapped__"):
        return False
    setattr(owner, attribute, reported(inner(original) if inner else original, name_of, source, threshold))
    return True


def sglang_spec_name(*args: Any, **kwargs: Any) -> str:
    return str(kwargs["spec"].module_name)


def tvm_ffi_name(name: str, *args: Any, **kwargs: Any) -> str:
    return name


def flashinfer_name(spec: Any, *args: Any, **kwargs: Any) -> str:
    return str(spec.name)


def patch_flashinfer(module: Any, threshold: float) -> bool:
    spec_class = getattr(module, "JitSpec", None)
    return spec_class is not None and wrap_attribute(spec_class, "build", flashinfer_name, "flashinfer", threshold)


class AfterImport(importlib.abc.MetaPathFinder):
    """Runs `patch(module)` right after `name` is first imported (the module's own code has run, nothing has
    used it yet), then steps out of the import system. `what`: the patch's purpose, for the line saying it was
    left out if it fails."""

    def __init__(self, name: str, patch: Callable[[Any], Any], what: str = "kernel-compile lines") -> None:
        self.name = name
        self.patch = patch
        self.what = what

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: Any = None) -> Any:
        if fullname != self.name:
            return None
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        loader = getattr(spec, "loader", None)
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        exec_module = loader.exec_module
        patch, what = self.patch, self.what

        def exec_then_patch(module: Any) -> None:
            exec_module(module)
            try:
                patch(module)
            except Exception as e:  # never break the import over a log line
                say(f"{what} for {fullname} left out: {e!r}")

        loader.exec_module = exec_then_patch
        return spec


def install(threshold: float = 3.0) -> list[str]:
    """Wraps each build function this environment has; returns what it wrapped (or will, on import)."""
    done = []
    for module_name, owner_attr, name_of, source, inner in (
        (SGLANG_NINJA, "build", sglang_spec_name, "SGLang", recorded),  # and GLM_IMAGE_KERNEL_RECORD gets it
        (TVM_FFI, "_build_impl", tvm_ffi_name, "tvm-ffi", None),
    ):
        try:
            module = importlib.import_module(module_name)
        except Exception:  # not in this version
            continue
        if wrap_attribute(module, owner_attr, name_of, source, threshold, inner):
            done.append(f"{module_name}.{owner_attr}")
    if FLASHINFER in sys.modules:
        if patch_flashinfer(sys.modules[FLASHINFER], threshold):
            done.append(f"{FLASHINFER}.JitSpec.build")
    elif not any(isinstance(f, AfterImport) and f.name == FLASHINFER for f in sys.meta_path):
        sys.meta_path.insert(0, AfterImport(FLASHINFER, lambda m: patch_flashinfer(m, threshold)))
        done.append(f"{FLASHINFER}.JitSpec.build (when imported)")
    return done
