"""What the diffusion workers' fork server imports before it forks them (WORKER_START=preload, worker_start.py):
the heavy libraries every SGLang diffusion worker imports first, and none of SGLang's runtime modules, which a
worker must import only after its platform is initialised and its plugins and hooks applied. A library that
fails to import here is left to the worker, which imports it as a spawned one would (and reports what fails)."""

from __future__ import annotations

import contextlib
import importlib

MODULES = (
    "torch",
    "transformers",
    "diffusers",
    "diffusers.models",
    "sglang.multimodal_gen.runtime.utils.process",  # SGLang's package and what its worker bootstrap imports first
)

for name in MODULES:
    with contextlib.suppress(Exception):  # the worker imports it again and says why
        importlib.import_module(name)
