"""SGLang plugin shipped in the image (entry point `sglang.multimodal_gen.plugins`; SGLang calls
register() in every worker before it builds the pipeline). Patches, each applied only where the installed
SGLang has what it patches: GLM-Image edits with transformers 5.19 (below), edits in-process beside an AR
server (patch_glm_image_local_edits), and A14B's expert swap (expert_swap.py, OFFLOAD=expert-swap).

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


def patch_glm_image_local_edits() -> bool:
    """GLM_AR=srt or a URL: SGLang sends text-to-image to the AR server and raises NotImplementedError for
    edits. With GLM_IMAGE_AR_EDITS=in-process (the launcher sets it), the diffusion server also loads the
    AR model itself and runs edits in-process, as without the AR server; text-to-image still goes there."""
    import importlib

    try:
        loader = importlib.import_module(VL_LOADER).VisionLanguageEncoderLoader
        stage = importlib.import_module(GLM_STAGE).GlmImageAR
    except Exception:  # not a GLM-capable SGLang, or the modules moved
        return False
    load, generate = loader.load_customized, stage.generate_prior_tokens
    if hasattr(load, "__wrapped__") or hasattr(generate, "__wrapped__"):
        return False

    def load_customized(self: Any, component_model_path: str, server_args: Any, *args: Any, **kwargs: Any) -> Any:
        found = load(self, component_model_path, server_args, *args, **kwargs)  # checks the AR server's /health
        if getattr(server_args, "srt_encoder_url", None) is None:
            return found
        return load(self, component_model_path, without_ar_server(server_args), *args, **kwargs)

    def generate_prior_tokens(self: Any, prompt: str, height: int, width: int, server_args: Any, image: Any = None,
                              seed: Any = None) -> Any:  # fmt: skip
        if image and getattr(server_args, "srt_encoder_url", None) is not None:
            server_args = without_ar_server(server_args)
        return generate(self, prompt, height, width, server_args, image=image, seed=seed)

    load_customized.__wrapped__ = load  # type: ignore[attr-defined]
    generate_prior_tokens.__wrapped__ = generate  # type: ignore[attr-defined]
    loader.load_customized = load_customized
    stage.generate_prior_tokens = generate_prior_tokens
    return True


def enabled(env: Mapping[str, str]) -> bool:
    """GLM_IMAGE_SGLANG_PLUGIN=off (or 0, false) turns the plugin off; the launcher reads it the same way."""
    return env.get("GLM_IMAGE_SGLANG_PLUGIN", "on").lower() not in ("off", "0", "false")


def register() -> None:
    import os

    if not enabled(os.environ):
        return
    if patch_glm_image_edit():
        # SGLang's logging setup does not show other packages' loggers; this line must reach the pod log.
        print("glm-image-sglang plugin: GLM-Image edits keep per-image vision features", file=sys.stderr, flush=True)
    if os.environ.get("GLM_IMAGE_EXPERT_SWAP") == "on":
        from .expert_swap import patch_denoising_stage

        if patch_denoising_stage():
            print("glm-image-sglang plugin: Wan2.2-A14B keeps one expert on the GPU and swaps (OFFLOAD=expert-swap)",
                  file=sys.stderr, flush=True)  # fmt: skip
        else:
            print("glm-image-sglang plugin: WARNING: OFFLOAD=expert-swap asked, but this SGLang has no "
                  "DenoisingStage._select_and_manage_model to patch: both experts stay on the GPU",
                  file=sys.stderr, flush=True)  # fmt: skip
    if os.environ.get("GLM_IMAGE_AR_EDITS") == "in-process" and patch_glm_image_local_edits():
        print("glm-image-sglang plugin: GLM-Image edits run in-process (text-to-image on the AR server)",
              file=sys.stderr, flush=True)  # fmt: skip
