"""SGLang plugin shipped in the image (entry point `sglang.multimodal_gen.plugins`; SGLang calls
register() in every worker before it builds the pipeline; and `sglang.srt.plugins`, whose register_srt() SGLang's
LLM runtime calls in each of its processes: GLM-Image's AR server). Patches, each applied only where the installed
SGLang has what it patches: GLM-Image edits with transformers 5.19 (below), edits in-process beside an AR
server and an AR server started at the same time (patch_glm_image_ar_stage), A14B's expert swap
(expert_swap.py, OFFLOAD=expert-swap), an eager VAE decode beside a compiled DiT (patch_vae_decode_eager),
and a log line for each CUDA kernel compile of a cold start (kernel_compiles.py).

GLM-Image edits: SGLang turns the vision encoder's image features into one tensor with
`torch.cat(features, dim=0)` (pooled_image_features_to_tensor) and hands it to the AR model's
get_image_tokens. transformers <= 5.12 packs features as [patches, hidden] and expects that packing;
transformers 5.19 (the version SGLang 0.5.23 pins) returns one [hidden, h, w] map per image and
get_image_tokens iterates over images, so the concatenated tensor is read channel by channel and
every edit fails with "expected input[1, 1, h, w] to have <hidden> channels, but got 1 channels".
The patch keeps one entry per image for 3-D maps and leaves everything else to SGLang's function.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

GLM_STAGE = "sglang.multimodal_gen.runtime.pipelines_core.stages.model_specific_stages.glm_image"
PREFIX = "glm-image-sglang plugin:"


def say(line: str) -> None:
    """One line of the plugin's in the worker's log. SGLang's logging setup hides other packages' loggers;
    stderr reaches the pod log and the launcher (which reads the kernel-compile lines)."""
    print(f"{PREFIX} {line}", file=sys.stderr, flush=True)


def per_image_features(original: Any) -> Any:
    def convert(image_features: Any) -> Any:
        import torch

        pooled = getattr(image_features, "pooler_output", None)
        items = pooled if pooled is not None else image_features
        if (
            isinstance(items, (list, tuple))
            and items
            and all(isinstance(t, torch.Tensor) and t.dim() == 3 for t in items)
        ):
            shapes = {tuple(t.shape) for t in items}
            return torch.stack(tuple(items)) if len(shapes) == 1 else list(items)
        return original(image_features)

    convert.__wrapped__ = original  # type: ignore[attr-defined]
    return convert


def patch_glm_image_edit() -> bool:
    import importlib

    try:
        stage = importlib.import_module(GLM_STAGE)
    except Exception:  # not a GLM-capable SGLang, or the module moved: nothing to patch
        return False
    original = getattr(stage, "pooled_image_features_to_tensor", None)
    if original is None or hasattr(original, "__wrapped__"):
        return False
    setattr(stage, "pooled_image_features_to_tensor", per_image_features(original))  # noqa: B010 (a module attribute)
    return True


VL_LOADER = "sglang.multimodal_gen.runtime.loader.component_loaders.vl_encoder_loader"


def without_ar_server(server_args: Any) -> Any:
    """A shallow copy of SGLang's server args that runs the AR stage in-process."""
    import copy

    local = copy.copy(server_args)
    local.srt_encoder_url = None
    return local


def patch_glm_image_ar_stage(edits_in_process: bool, started_together: bool) -> bool:
    """GLM_AR=srt or a URL. Edits: SGLang sends text-to-image to the AR server and raises NotImplementedError
    for edits; with edits_in_process (GLM_IMAGE_AR_EDITS=in-process, which the launcher sets) the diffusion
    server also loads the AR model itself and runs edits in-process, as without the AR server; text-to-image
    still goes there. Started together (GLM_IMAGE_AR_START=together): SGLang checks the AR server's /health
    once, while it loads, and on a refused connection falls back to loading the AR model itself with a
    traceback (on an H200 the AR server answered 29 s after that check; 18.8 GB more on the GPU). The
    launcher's own AR server is then still starting, so the check is left out and the gateway waits for
    that /health before the first generation."""
    import importlib

    if not (edits_in_process or started_together):
        return False
    try:
        loader = importlib.import_module(VL_LOADER).VisionLanguageEncoderLoader
        stage = importlib.import_module(GLM_STAGE).GlmImageAR
    except Exception:  # not a GLM-capable SGLang, or the modules moved
        return False
    load, generate = loader.load_customized, stage.generate_prior_tokens
    if hasattr(load, "__wrapped__") or hasattr(generate, "__wrapped__"):
        return False

    def load_customized(self: Any, component_model_path: str, server_args: Any, *args: Any, **kwargs: Any) -> Any:
        url = getattr(server_args, "srt_encoder_url", None)
        if url is None:
            return load(self, component_model_path, server_args, *args, **kwargs)
        # what SGLang returns for an AR server, after its /health check unless that server is still starting
        found = url if started_together else load(self, component_model_path, server_args, *args, **kwargs)
        if not edits_in_process:
            return found
        return load(self, component_model_path, without_ar_server(server_args), *args, **kwargs)

    def generate_prior_tokens(self: Any, prompt: str, height: int, width: int, server_args: Any, *args: Any,
                              **kwargs: Any) -> Any:  # fmt: skip
        # the rest as SGLang passes it: 0.5.23 adds seed=, 0.5.16 has no such parameter
        image = kwargs.get("image", args[0] if args else None)
        if image and getattr(server_args, "srt_encoder_url", None) is not None:
            server_args = without_ar_server(server_args)
        return generate(self, prompt, height, width, server_args, *args, **kwargs)

    load_customized.__wrapped__ = load  # type: ignore[attr-defined]
    loader.load_customized = load_customized
    if edits_in_process:
        generate_prior_tokens.__wrapped__ = generate  # type: ignore[attr-defined]
        stage.generate_prior_tokens = generate_prior_tokens
    return True


DECODING = "sglang.multimodal_gen.runtime.pipelines_core.stages.decoding"


def patch_vae_decode_eager() -> bool:
    """GLM_IMAGE_VAE_COMPILE=off: SGLang's --enable-torch-compile compiles the DiT *and* the VAE decode; the
    VAE's compile cost TI2V-5B 80-115 s at every new size on an H200 (torch._dynamo's recompile limit in
    Wan's VAE) for 0.9 s of decode, the DiT's 6-16 s for 8.6 % a step. With this the VAE decodes eagerly
    and the DiT stays compiled."""
    import importlib

    try:
        stage = importlib.import_module(DECODING).DecodingStage
    except Exception:  # no such stage in this SGLang
        return False
    original = getattr(stage, "_get_vae_decode_fn", None)
    if original is None or hasattr(original, "__wrapped__"):
        return False

    def _get_vae_decode_fn(self: Any, vae: Any, server_args: Any, *args: Any, **kwargs: Any) -> Any:
        return kwargs.get("decode_fn") or vae.decode  # what SGLang returns with compile off

    _get_vae_decode_fn.__wrapped__ = original  # type: ignore[attr-defined]
    stage._get_vae_decode_fn = _get_vae_decode_fn
    return True


def enabled(env: Mapping[str, str]) -> bool:
    """GLM_IMAGE_SGLANG_PLUGIN=off (or 0, false) turns the plugin off; the launcher reads it the same way."""
    return env.get("GLM_IMAGE_SGLANG_PLUGIN", "on").lower() not in ("off", "0", "false")


def announce_kernel_compiles() -> None:
    from .kernel_compiles import install

    try:
        install()
    except Exception as e:  # log lines only: never a reason for a worker not to start
        say(f"kernel-compile lines left out: {e!r}")


def register_srt() -> None:
    """SGLang's LLM runtime (>= 0.5.23), which `sglang serve` also loads in the diffusion server's main process:
    kernel-compile lines and the kernel record (GLM-Image's AR server compiles SGLang JIT kernels of its own in
    its first CUDA-graph batch, 22.8 s of a cold start on an H200; recorded, the image builds them too), and in
    the main process of the diffusion server and of GLM-Image's AR server WORKER_START=preload (worker_start.py).
    No diffusion patch applies here."""
    import os

    if not enabled(os.environ):
        return
    announce_kernel_compiles()
    from .worker_start import install

    try:  # in a server's main process, with WORKER_START=preload
        install(os.environ, sys.argv)
    except Exception as e:  # spawned workers, as without it
        say(f"WORKER_START=preload left out: {e!r}")


def register() -> None:
    import os

    if not enabled(os.environ):
        return
    announce_kernel_compiles()
    if patch_glm_image_edit():
        say("GLM-Image edits keep per-image vision features")
    if os.environ.get("GLM_IMAGE_EXPERT_SWAP") == "on":
        from .expert_swap import patch_denoising_stage

        if patch_denoising_stage():
            say("Wan2.2-A14B keeps one expert on the GPU and swaps (OFFLOAD=expert-swap)")
        else:
            say("WARNING: OFFLOAD=expert-swap asked, but this SGLang has no DenoisingStage._select_and_manage_model "
                "to patch: both experts stay on the GPU")  # fmt: skip
    if os.environ.get("GLM_IMAGE_VAE_COMPILE") == "off" and patch_vae_decode_eager():
        say("the VAE decodes eagerly (torch.compile for the DiT only)")
    edits = os.environ.get("GLM_IMAGE_AR_EDITS") == "in-process"
    together = os.environ.get("GLM_IMAGE_AR_START") == "together"
    if patch_glm_image_ar_stage(edits, together):
        if edits:
            say("GLM-Image edits run in-process (text-to-image on the AR server)")
        if together:
            say("the AR server starts beside this one: its /health is left to the gateway, not checked while loading")
