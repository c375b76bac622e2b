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
