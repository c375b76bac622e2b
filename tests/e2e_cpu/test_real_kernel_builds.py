"""The plugin's kernel-compile lines against the real build functions of the SGLang, tvm-ffi and flashinfer
this tier installs: the names it wraps exist, and a real tvm-ffi build (C++, no GPU needed) goes through the
wrapper, says what it compiles and still gives a working module. A GPU start is where the lines matter."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from harness import E2E_PYTHON

pytestmark = pytest.mark.e2e

SCRIPT = """
import importlib.util, json, sys, tempfile, types
from glm_image_sglang import kernel_compiles
out = {"installed": kernel_compiles.install(threshold=0.0)}
# flashinfer's own __init__ reads GPU 0's properties: with no GPU only its jit package can load (as in an image
# build); the plugin's import hook should still find and wrap the real JitSpec.build
spec = importlib.util.find_spec("flashinfer")
package = types.ModuleType("flashinfer")
package.__path__ = list(spec.submodule_search_locations)
sys.modules["flashinfer"] = package
from flashinfer.jit.core import JitSpec
out["flashinfer_wrapped"] = hasattr(JitSpec.build, "__wrapped__")
import tvm_ffi.cpp
source = "int add_one(int x) { return x + 1; }"
with tempfile.TemporaryDirectory() as build:
    module = tvm_ffi.cpp.load_inline("glm_kernel_compiles_probe", cpp_sources=source, functions=["add_one"],
                                     build_directory=build)
    out["result"] = module.add_one(41)
print(json.dumps(out))
"""


def test_real_build_functions_are_wrapped_and_a_real_build_still_works():
    env = dict(os.environ, PATH=f"{E2E_PYTHON.parent}:{os.environ.get('PATH', '/usr/bin:/bin')}")  # the venv's ninja
    proc = subprocess.run([str(E2E_PYTHON), "-c", SCRIPT], capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "sglang.kernels.jit.utils.compile.ninja.build" in out["installed"]
    assert "tvm_ffi.cpp.extension._build_impl" in out["installed"]
    assert out["flashinfer_wrapped"] is True
    assert out["result"] == 42
    # threshold 0: the compile outlasts it, so both lines come, naming the module tvm-ffi built
    assert "glm-image-sglang plugin: compiling CUDA kernel glm_kernel_compiles_probe (tvm-ffi)" in proc.stderr
    assert "glm-image-sglang plugin: compiled CUDA kernel glm_kernel_compiles_probe (tvm-ffi) in " in proc.stderr


def test_the_eager_vae_patch_applies_to_the_real_decoding_stage():
    """COMPILE=dit: the plugin's patch that keeps the VAE decode eager should find SGLang's real
    DecodingStage._get_vae_decode_fn, and the patched one should hand back the eager decode with compile on."""
    script = (
        "import types\n"
        "from glm_image_sglang.buildcheck import check_compile_patch\n"
        "from glm_image_sglang.sglang_plugin import DECODING\n"
        "import importlib\n"
        "assert check_compile_patch()\n"
        "stage = importlib.import_module(DECODING).DecodingStage\n"
        "vae = types.SimpleNamespace(decode=len)\n"
        "on = types.SimpleNamespace(enable_torch_compile=True)\n"
        "assert stage._get_vae_decode_fn(object.__new__(stage), vae, on) is len\n"
        "print('eager')\n"
    )
    done = subprocess.run([str(E2E_PYTHON), "-c", script], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and done.stdout.strip().endswith("eager"), done.stderr[-3000:]
    assert "the plugin's eager VAE decode patch applies" in done.stdout


RECORD_SCRIPT = """
import sys
from glm_image_sglang import kernel_compiles
kernel_compiles.install(threshold=60.0)
from sglang.kernels.jit.utils import load_jit
from sglang.kernels.jit.utils.arch import override_jit_cuda_arch
with override_jit_cuda_arch(9, 0):
    for _ in range(2):  # the second load finds the build in the cache: nothing compiled, nothing recorded
        module = load_jit("glm_record_probe", cpp_files=[sys.argv[1]], cpp_wrappers=[("add_one", "add_one")],
                          extra_cflags=["-DGLM_RECORD_PROBE=1"])
print(module.add_one(41))
"""


def build_dirs(cache):
    return sorted(str(p.relative_to(cache)) for p in cache.glob("*/*/build-*"))


def test_a_recorded_sglang_build_replays_into_the_same_cache_entry_for_its_arch(tmp_path):
    """A real SGLang 0.5.23 JIT build (C++, no GPU) with the plugin's wrappers should be recorded once, and the
    record replayed for the same arch into an empty cache should make the entry a start there would look up:
    the same arch folder, module and build key (SGLang's key covers sources, flags and compilers)."""
    source = tmp_path / "probe.cpp"
    source.write_text("#include <tvm/ffi/function.h>\nint add_one(int x) { return x + 1; }\n")
    record = tmp_path / "kernel-builds.jsonl"
    env = dict(os.environ, PATH=f"{E2E_PYTHON.parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
               SGLANG_JIT_CACHE_DIR=str(tmp_path / "start"), GLM_IMAGE_KERNEL_RECORD=str(record))  # fmt: skip
    start = subprocess.run([str(E2E_PYTHON), "-c", RECORD_SCRIPT, str(source)], capture_output=True, text=True,
                           timeout=600, env=env)  # fmt: skip
    assert start.returncode == 0 and start.stdout.strip() == "42", start.stderr[-3000:]
    lines = [json.loads(line) for line in record.read_text().splitlines()]
    assert [(x["module"], x["arch"], x["extra_cflags"]) for x in lines] == [
        ("sgl_kernel_jit_glm_record_probe", "9.0a", ["-DGLM_RECORD_PROBE=1"])
    ]
    env.update(SGLANG_JIT_CACHE_DIR=str(tmp_path / "image"))
    del env["GLM_IMAGE_KERNEL_RECORD"]
    replay = subprocess.run([str(E2E_PYTHON), "-m", "glm_image_sglang.kernel_record", str(record), "9.0a"],
                            capture_output=True, text=True, timeout=600, env=env)  # fmt: skip
    assert replay.returncode == 0, replay.stdout + replay.stderr[-3000:]
    assert "sgl_kernel_jit_glm_record_probe: done" in replay.stdout
    assert build_dirs(tmp_path / "image") == build_dirs(tmp_path / "start")
    assert build_dirs(tmp_path / "image")[0].startswith("sm90a/sgl_kernel_jit_glm_record_probe/build-")


def test_a_record_from_another_sglang_is_skipped_not_fatal(tmp_path):
    """A recorded build whose source file this SGLang no longer has should be skipped with the reason, and the
    replay should still succeed (the kernel is then compiled at the first start, as without a record)."""
    gone = {"module": "sgl_kernel_jit_gone", "args": ["gone"], "cpp_files": ["<site>/sglang/no/such/file.cpp"],
            "cuda_files": [], "cpp_wrappers": [], "cuda_wrappers": [], "extra_cflags": [], "extra_cuda_cflags": [],
            "extra_ldflags": [], "extra_include_paths": [], "header_only": True}  # fmt: skip
    record = tmp_path / "kernel-builds.jsonl"
    record.write_text(json.dumps(gone) + "\n")
    env = dict(os.environ, SGLANG_JIT_CACHE_DIR=str(tmp_path / "image"))
    replay = subprocess.run([str(E2E_PYTHON), "-m", "glm_image_sglang.kernel_record", str(record), "9.0a"],
                            capture_output=True, text=True, timeout=600, env=env)  # fmt: skip
    assert replay.returncode == 0, replay.stdout + replay.stderr[-3000:]
    assert "sgl_kernel_jit_gone: skipped (no " in replay.stdout and "sglang/no/such/file.cpp)" in replay.stdout


def test_the_llm_runtime_loads_the_plugin_and_records_its_builds(tmp_path):
    """GLM-Image's AR server is SGLang's LLM runtime, which loads general plugins from `sglang.srt.plugins` in
    each process: through SGLang's own loader, the image's plugin should be found and a real JIT build there
    recorded (the AR server's first CUDA-graph batch compiles kernels of its own)."""
    source = tmp_path / "probe.cpp"
    source.write_text("#include <tvm/ffi/function.h>\nint add_one(int x) { return x + 1; }\n")
    record = tmp_path / "kernel-builds.jsonl"
    script = RECORD_SCRIPT.replace(
        "from glm_image_sglang import kernel_compiles\nkernel_compiles.install(threshold=60.0)\n",
        "from sglang.srt.plugins import load_plugins\nload_plugins()\n",
    )
    assert "load_plugins()" in script
    env = dict(os.environ, PATH=f"{E2E_PYTHON.parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
               SGLANG_JIT_CACHE_DIR=str(tmp_path / "start"), GLM_IMAGE_KERNEL_RECORD=str(record),
               SGLANG_PLUGINS="glm_image_sglang")  # fmt: skip
    start = subprocess.run([str(E2E_PYTHON), "-c", script, str(source)], capture_output=True, text=True,
                           timeout=600, env=env)  # fmt: skip
    assert start.returncode == 0 and start.stdout.strip() == "42", start.stderr[-3000:]
    assert [json.loads(line)["module"] for line in record.read_text().splitlines()] == [
        "sgl_kernel_jit_glm_record_probe"
    ]
