"""Builds, with no GPU visible, the CUDA kernels a cold Wan start compiles in its first denoising step.

Usage: prebuild_kernels.py OUT ARCH [ARCH ...]   (ARCH like 9.0a; run by `device.py prebuild`, and runnable
on a CPU-only machine with nvcc, flashinfer and SGLang 0.5.16 installed).

What a cold TI2V-5B start filled (2026-12-01, the sixth GPU run): flashinfer's JIT cache (its RoPE module:
SGLang's Wan DiT calls flashinfer.rope.apply_rope_with_cos_sin_cache_inplace) and one tvm-ffi module
(SGLang's VAE kernel causal_conv3d_cat_pad, fp32). Both are nvcc builds for an architecture, not for a GPU:
- flashinfer's module goes to its ahead-of-time folder (flashinfer/data/aot/rope/rope.so), which flashinfer
  loads before it looks at any JIT cache. That folder is not keyed by architecture: build it for every
  architecture the machine's GPUs have (FLASHINFER_CUDA_ARCH_LIST takes them all, one fat binary).
- SGLang's module goes to TVM_FFI_CACHE_DIR under a name that carries the architecture
  (`..._arch_9.0a__tvmffi_...`); SGLang loads such a .so directly, without asking ninja.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

from glm_image_sglang.kernel_seed import jit_only_flashinfer  # on PYTHONPATH: device.py's child_env


def flashinfer_rope(archs: list[str]) -> Path:
    os.environ["FLASHINFER_CUDA_ARCH_LIST"] = " ".join(archs)
    jit_only_flashinfer()
    from flashinfer.jit import env as fi_env
    from flashinfer.jit.rope import gen_rope_module

    spec = gen_rope_module()
    spec.build(verbose=False)
    aot = Path(fi_env.FLASHINFER_AOT_DIR) / spec.name / f"{spec.name}.so"
    aot.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(spec.jit_library_path, aot)
    return aot


def sglang_vae_conv(arch: str) -> None:
    import torch
    from sglang.jit_kernel.diffusion import causal_conv3d_cat_pad as conv
    from sglang.jit_kernel.utils import override_jit_cuda_arch

    major, minor = arch.rstrip("af").split(".")
    with override_jit_cuda_arch(int(major), int(minor), arch[len(major) + 1 + len(minor) :]):
        conv._jit_causal_conv3d_cat_pad_module.__wrapped__(torch.float32)


def main(out: Path, archs: list[str]) -> int:
    os.environ["TVM_FFI_CACHE_DIR"] = str(out / "tvm-ffi")
    os.environ.setdefault("FLASHINFER_WORKSPACE_BASE", str(out / "flashinfer-work"))
    t = time.monotonic()
    aot = flashinfer_rope(archs)
    print(f"flashinfer rope for {archs}: {time.monotonic() - t:.1f} s -> {aot} ({aot.stat().st_size >> 10} KiB)")
    for arch in archs:
        t = time.monotonic()
        sglang_vae_conv(arch)
        print(f"sglang causal_conv3d_cat_pad fp32 for {arch}: {time.monotonic() - t:.1f} s", flush=True)
    print("tvm-ffi:", sorted(p.name for p in (out / "tvm-ffi").iterdir()), flush=True)
    return 0


if __name__ == "__main__":
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    sys.exit(main(Path(sys.argv[1]), sys.argv[2:]))
