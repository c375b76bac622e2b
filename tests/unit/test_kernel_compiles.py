"""The plugin's kernel-compile lines, against stand-ins of the build functions it wraps (the e2e tier checks
that the wrapped names exist in the SGLang and tvm-ffi versions it installs)."""

from __future__ import annotations

import sys
import threading
import types

import pytest

from glm_image_sglang import kernel_compiles, sglang_plugin
from glm_image_sglang.startup_phases import KERNEL_COMPILED

pytestmark = pytest.mark.unit
WAIT = 60.0  # an upper bound for a condition on a busy machine, never a sleep


@pytest.fixture(autouse=True)
def isolated(monkeypatch):
    """install() touches sys.meta_path and the build modules: give it a copy and empty stand-ins (a test puts
    its own build function in), so that a real tvm-ffi or SGLang in this venv stays as it was."""
    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))
    for name in (kernel_compiles.SGLANG_NINJA, kernel_compiles.TVM_FFI):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))


@pytest.fixture
def said(monkeypatch):
    """The lines the module prints, and an event set at each one."""
    lines: list[str] = []
    new_line = threading.Event()

    def say(line: str) -> None:
        lines.append(line)
        new_line.set()

    monkeypatch.setattr(kernel_compiles, "say", say)
    return lines, new_line


def wait_for(said, text: str) -> None:
    lines, new_line = said
    while not any(text in line for line in lines):
        assert new_line.wait(WAIT), f"no line with {text!r} in {WAIT} s: {lines}"
        new_line.clear()


class Blocked:
    """A build that runs until the test lets it end (and then returns or raises)."""

    def __init__(self, error: Exception | None = None) -> None:
        self.release = threading.Event()
        self.error = error
        self.outcome: list[object] = []

    def build(self, spec: types.SimpleNamespace, verbose: bool = False) -> str:
        assert self.release.wait(WAIT)
        if self.error is not None:
            raise self.error
        return f"/cache/{spec.name}.so"

    def run_in_thread(self, wrapped, *args) -> threading.Thread:
        def run() -> None:
            try:
                self.outcome.append(wrapped(*args))
            except Exception as e:
                self.outcome.append(e)

        thread = threading.Thread(target=run)
        thread.start()
        return thread


def flashinfer_compile(said, error: Exception | None = None) -> Blocked:
    """flashinfer's build of `rope` through the wrapper (threshold 0.05 s), held until announced, then ended."""
    build = Blocked(error)
    wrapped = kernel_compiles.reported(build.build, kernel_compiles.flashinfer_name, "flashinfer", threshold=0.05)
    thread = build.run_in_thread(wrapped, types.SimpleNamespace(name="rope"))
    wait_for(said, "compiling CUDA kernel rope (flashinfer)")
    build.release.set()
    thread.join(WAIT)
    return build


def test_a_long_compile_is_announced_while_it_runs_and_timed_when_it_ends(said):
    """A compile still running at the threshold should get a line saying which kernel, and one with its time
    when it ends; the build's result should come back unchanged."""
    build = flashinfer_compile(said)
    lines, _ = said
    assert build.outcome == ["/cache/rope.so"]
    assert len(lines) == 2 and lines[1].startswith("compiled CUDA kernel rope (flashinfer) in ")


def test_the_launcher_reads_the_compiled_line(said):
    """The line the module prints at the end of a compile should be the one the start-up summary sums."""
    flashinfer_compile(said)
    match = KERNEL_COMPILED.search("[worker] " + sglang_plugin.PREFIX + " " + said[0][-1])
    assert match and match.group(1) == "rope" and float(match.group(3)) >= 0.05


def test_a_build_that_ends_before_the_threshold_says_nothing(said):
    """A kernel found in the cache (a no-op build) should leave the log as it was."""
    wrapped = kernel_compiles.reported(
        lambda spec: "hit", kernel_compiles.flashinfer_name, "flashinfer", threshold=WAIT
    )
    assert wrapped(types.SimpleNamespace(name="rope")) == "hit"
    assert said[0] == []


def test_a_failed_compile_says_so_and_raises_the_original_error(said):
    """A compile that fails after its announcement should say it failed and let SGLang see the same error."""
    build = flashinfer_compile(said, RuntimeError("nvcc: error"))
    assert isinstance(build.outcome[0], RuntimeError) and str(build.outcome[0]) == "nvcc: error"
    assert said[0][-1].startswith("compiling CUDA kernel rope (flashinfer) failed after ")


def test_sglang_ninja_build_is_named_by_its_spec(said, monkeypatch):
    """SGLang >= 0.5.23 calls its ninja build with keyword arguments: the line should name the spec's module."""
    build = Blocked()

    def ninja_build(*, spec, build_dir, build_file):
        return build.build(types.SimpleNamespace(name=spec.module_name))

    ninja = types.ModuleType(kernel_compiles.SGLANG_NINJA)
    ninja.build = ninja_build  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, kernel_compiles.SGLANG_NINJA, ninja)
    assert f"{kernel_compiles.SGLANG_NINJA}.build" in kernel_compiles.install(threshold=0.05)
    thread = threading.Thread(target=lambda: ninja.build(spec=types.SimpleNamespace(module_name="sgl_kernel_jit_x"),
                                                         build_dir="/tmp/s", build_file="f"))  # fmt: skip
    thread.start()
    wait_for(said, "compiling CUDA kernel sgl_kernel_jit_x (SGLang)")
    build.release.set()
    thread.join(WAIT)
    assert said[0][-1].startswith("compiled CUDA kernel sgl_kernel_jit_x (SGLang) in ")


def test_installing_twice_wraps_once(monkeypatch):
    """A second install (a second plugin load in one process) should not wrap the wrapper."""
    ninja = types.ModuleType(kernel_compiles.SGLANG_NINJA)
    ninja.build = lambda **kw: "built"  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, kernel_compiles.SGLANG_NINJA, ninja)
    kernel_compiles.install()
    first = ninja.build
    kernel_compiles.install()
    assert ninja.build is first and not hasattr(first.__wrapped__, "__wrapped__")
    assert sum(isinstance(f, kernel_compiles.AfterImport) for f in sys.meta_path) <= 1


@pytest.fixture
def fake_flashinfer(tmp_path, monkeypatch):
    """A flashinfer package on sys.path whose jit.core has a JitSpec, none of it imported yet."""
    core = tmp_path / "flashinfer" / "jit"
    core.mkdir(parents=True)
    (tmp_path / "flashinfer" / "__init__.py").write_text("")
    (core / "__init__.py").write_text("")
    (core / "core.py").write_text(
        "class JitSpec:\n    def __init__(self, name):\n        self.name = name\n"
        "    def build(self, verbose, need_lock=True):\n        return 'built ' + self.name\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in [m for m in sys.modules if m == "flashinfer" or m.startswith("flashinfer.")]:
        monkeypatch.delitem(sys.modules, name)
    yield
    for name in [m for m in sys.modules if m == "flashinfer" or m.startswith("flashinfer.")]:
        del sys.modules[name]


def test_flashinfer_is_patched_when_imported_and_not_imported_by_the_plugin(fake_flashinfer):
    """Installing should not import flashinfer (it fails with no GPU); its JitSpec.build should be wrapped
    once something imports it, and work as before."""
    assert f"{kernel_compiles.FLASHINFER}.JitSpec.build (when imported)" in kernel_compiles.install()
    assert kernel_compiles.FLASHINFER not in sys.modules
    from flashinfer.jit.core import JitSpec  # type: ignore[import-not-found]

    assert hasattr(JitSpec.build, "__wrapped__")
    assert JitSpec("rope").build(False) == "built rope"
    assert not any(isinstance(f, kernel_compiles.AfterImport) for f in sys.meta_path)


def test_flashinfer_already_imported_is_patched_at_once(fake_flashinfer):
    """Where SGLang imported flashinfer before the plugin loaded, install should wrap it directly."""
    from flashinfer.jit.core import JitSpec  # type: ignore[import-not-found]

    assert f"{kernel_compiles.FLASHINFER}.JitSpec.build" in kernel_compiles.install()
    assert hasattr(JitSpec.build, "__wrapped__")
