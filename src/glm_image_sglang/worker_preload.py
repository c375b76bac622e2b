"""What the diffusion workers' fork server imports before it forks them (WORKER_START=preload, worker_start.py):
the heavy libraries every SGLang diffusion worker imports first, and none of SGLang's runtime modules, which a
worker must import only after its platform is initialised and its plugins and hooks applied. A library that
fails to import here is left to the worker, which imports it as a spawned one would (and reports what fails).

The fork server must not initialise CUDA (a forked child of a process that did cannot use it): the imports run
with PYTORCH_NVML_BASED_CUDA_CHECK=1, so an import-time `torch.cuda.is_available()` asks NVML instead of the CUDA
driver; tests/e2e_cpu/test_preloaded_workers.py imports this with torch pretending a GPU and fails on any call
that would initialise CUDA; worker_start.py checks a forked child before any worker comes from here."""

from __future__ import annotations

import contextlib
import importlib
import os

MODULES = (
    "torch",
    "transformers",
    "transformers.modeling_utils",
    "diffusers",
    "diffusers.models.modeling_utils",
)
# Not SGLang: importing its utilities resolves its platform (`sglang.srt.platforms`), which asks
# `torch.cuda.get_device_name()` and so initialises CUDA; on an H200 (2026-12-02) every worker forked after
# that failed with "Cannot re-initialize CUDA in forked subprocess".

NVML_CHECK = "PYTORCH_NVML_BASED_CUDA_CHECK"

before = os.environ.get(NVML_CHECK)
os.environ[NVML_CHECK] = "1"
try:
    for name in MODULES:
        with contextlib.suppress(Exception):  # the worker imports it again and says why
            importlib.import_module(name)
finally:
    if before is None:
        del os.environ[NVML_CHECK]
    else:
        os.environ[NVML_CHECK] = before
