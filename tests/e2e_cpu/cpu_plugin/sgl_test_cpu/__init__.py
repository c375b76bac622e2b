"""TEST-ONLY SGLang plugin: lets SGLang's CPU platform run without a CPU build of sgl_kernel.

SGLang's CPU code paths call torch.ops.sgl_kernel.*_cpu ops that only a source-built CPU sgl-kernel
provides (PyPI ships CUDA builds). When they are missing, route those calls to the PyTorch-native
implementations SGLang already has. Never installed in the image: a test mounts this folder and puts
it on PYTHONPATH (the .dist-info beside it registers the entry point).
"""

import importlib
import logging

logger = logging.getLogger(__name__)


def _cpu_kernels_available() -> bool:
    try:
        import sgl_kernel  # noqa: F401
        import torch

        return hasattr(torch.ops.sgl_kernel, "fused_scale_shift_cpu")
    except Exception:  # the CUDA build fails to import without a driver: same as missing
        return False


def register() -> None:
    from sglang.multimodal_gen.runtime.platforms import current_platform

    if not current_platform.is_cpu() or _cpu_kernels_available():
        return
    from sglang.kernels.ops.diffusion.common.fallback_torch import fuse_scale_shift_kernel_native
    from sglang.multimodal_gen.runtime.layers import layernorm

    for name in ("_NormScaleShift", "_ScaleResidualNormScaleShift"):
        getattr(layernorm, name).forward_cpu = lambda self, *a, **k: self.forward_native(*a, **k)
    for module in (
        "sglang.kernels.ops.diffusion.modulate.scale_shift_triton",
        "sglang.kernels.ops.diffusion",
        "sglang.multimodal_gen.runtime.layers.layernorm",
        "sglang.multimodal_gen.runtime.layers.elementwise",
    ):
        mod = importlib.import_module(module)
        if hasattr(mod, "fuse_scale_shift_kernel"):
            mod.fuse_scale_shift_kernel = fuse_scale_shift_kernel_native
    logger.warning("sgl_test_cpu (TEST ONLY): PyTorch-native norm/scale-shift on SGLang's CPU platform")
