"""Build-time gate (the Dockerfile's last step): a combination of SGLang, diffusers and transformers
that does not work together must fail the *build*, not the first request.

1. `pip check`: every conflict fails, except pins that the build arguments overrode on purpose
   (DIFFUSERS_SOURCE / TRANSFORMERS_SOURCE set to git or pypi): those are recorded as warnings.
2. The SGLang diffusion HTTP server and the GLM-Image pipeline stages import.
3. The GLM-Image edit path, as SGLang's worker runs it with this image's plugin loaded: a tiny random
   GlmImageForConditionalGeneration runs get_image_features on the CPU, SGLang's
   pooled_image_features_to_tensor converts them, and get_image_tokens must turn them into one token
   per patch. Older SGLang with transformers 5 failed every edit with "cat() received an invalid
   combination of arguments" (sglang PR #25697); SGLang 0.5.23 with its pinned transformers 5.19 fails
   with "expected input[1, 1, h, w] to have N channels" unless sglang_plugin.py's patch applies.
4. Writes build-info.json: versions, git commits, sources, and what was overridden.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

REPORTED = (
    "sglang",
    "sglang-kernel",
    "diffusers",
    "transformers",
    "torch",
    "torchvision",
    "triton",
    "flash-attn",
    "flashinfer-python",
    "glm-image-sglang",
)
PIN_CONFLICT = re.compile(r"^(?P<who>\S+) \S+ has requirement (?P<pkg>[A-Za-z0-9_.-]+)\S*, but you have ")


class CheckFailed(Exception):
    pass


def package_info(name: str) -> dict[str, Any] | None:
    try:
        dist = metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return None
    info: dict[str, Any] = {"version": dist.version}
    direct = dist.read_text("direct_url.json")
    if direct:
        data = json.loads(direct)
        vcs = data.get("vcs_info")
        if vcs:
            info["source"] = "git"
            info["url"] = data.get("url")
            info["commit"] = vcs.get("commit_id")
            info["requested_ref"] = vcs.get("requested_revision")
        else:
            info["source"] = "local"
    else:
        info["source"] = "index"
    return info


def classify_pip_check(output: str, overridden: set[str]) -> tuple[list[str], list[str]]:
    """Split `pip check` lines into (accepted overrides, failures)."""
    accepted, failures = [], []
    for line in output.splitlines():
        line = line.strip()
        if not line or line.startswith("No broken requirements"):
            continue
        match = PIN_CONFLICT.match(line)
        if match and match["pkg"].lower().replace("_", "-") in overridden:
            accepted.append(line)
        else:
            failures.append(line)
    return accepted, failures


def run_pip_check(overridden: set[str]) -> list[str]:
    proc = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True, check=False)
    accepted, failures = classify_pip_check(proc.stdout + proc.stderr, overridden)
    for line in accepted:
        print(f"WARNING: pip check: {line} (overridden on purpose by the build arguments)")
    if failures:
        raise CheckFailed("pip check found broken requirements:\n  " + "\n  ".join(failures))
    print(f"pip check: OK ({len(accepted)} intended override(s))")
    return accepted


def check_imports() -> None:
    t0 = time.time()
    import diffusers
    import transformers
    from sglang.multimodal_gen.runtime.entrypoints import http_server  # noqa: F401

    missing = [n for n in ("GlmImagePipeline", "WanPipeline", "WanImageToVideoPipeline") if not hasattr(diffusers, n)]
    missing += [n for n in ("GlmImageForConditionalGeneration",) if not hasattr(transformers, n)]
    if missing:
        raise CheckFailed(f"these classes are missing from diffusers/transformers: {', '.join(missing)}")
    print(f"imports: SGLang diffusion server, GLM-Image and Wan pipelines OK ({time.time() - t0:.1f} s)")


def check_glm_edit_path() -> None:
    import torch
    from transformers import GlmImageConfig, GlmImageForConditionalGeneration

    try:
        from sglang.multimodal_gen.runtime.pipelines_core.stages.model_specific_stages.glm_image import (
            pooled_image_features_to_tensor,
        )
    except ImportError as e:
        raise CheckFailed(
            f"this SGLang has no pooled_image_features_to_tensor ({e}): with transformers 5 every GLM-Image "
            "edit fails with 'cat() received an invalid combination of arguments'. Use an SGLang that has "
            "the fix (sglang PR #25697, release 0.5.16 or newer)."
        ) from None
    from importlib.metadata import entry_points

    from .sglang_plugin import patch_glm_image_edit

    plugins = {ep.name for ep in entry_points(group="sglang.multimodal_gen.plugins")}
    if "glm_image_sglang" not in plugins:
        raise CheckFailed(f"the SGLang plugin entry point is not registered (found: {sorted(plugins)})")
    patched = patch_glm_image_edit()
    from sglang.multimodal_gen.runtime.pipelines_core.stages.model_specific_stages import glm_image as stage

    pooled_image_features_to_tensor = stage.pooled_image_features_to_tensor
    torch.manual_seed(0)
    config = GlmImageConfig(
        text_config={
            "vocab_size": 168064,
            "hidden_size": 32,
            "intermediate_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "num_key_value_heads": 2,
            "max_position_embeddings": 64,
            "vision_vocab_size": 64,
            "rope_parameters": {"mrope_section": (4, 2, 2)},
        },
        vision_config={
            "depth": 1,
            "hidden_size": 32,
            "num_heads": 2,
            "image_size": 32,
            "patch_size": 8,
            "intermediate_size": 32,
        },
        vq_config={"embed_dim": 32, "num_embeddings": 64, "latent_channels": 32},
    )
    model = GlmImageForConditionalGeneration(config).eval()
    vision = config.vision_config
    grid = torch.tensor([[1, 4, 4]])
    channels = getattr(vision, "in_channels", 3) * getattr(vision, "temporal_patch_size", 1) * vision.patch_size**2
    pixels = torch.randn(int(grid.prod()), channels)
    try:
        with torch.no_grad():
            features = model.get_image_features(pixels, grid)
            converted = pooled_image_features_to_tensor(features)
            tokens = model.get_image_tokens(converted, grid)
    except (TypeError, RuntimeError) as e:
        raise CheckFailed(f"GLM-Image edits would fail in SGLang with this transformers: {e}") from None
    if tuple(tokens.shape) != (int(grid.prod()),):
        raise CheckFailed(f"GLM-Image edit path: {tuple(tokens.shape)} image tokens instead of {int(grid.prod())}")
    note = "with the plugin's per-image features" if patched else "SGLang's own conversion"
    print(f"GLM-Image edit path: features -> {int(grid.prod())} image tokens OK ({note})")


def check_ar_server_edits() -> bool:
    """GLM_AR=srt|URL serves edits in-process through the plugin (and GLM_AR_START=together needs the same
    patch); a warning where this SGLang has moved what the plugin patches. Returns whether the patch applies."""
    from .sglang_plugin import patch_glm_image_ar_stage

    if patch_glm_image_ar_stage(edits_in_process=True, started_together=True):
        print("GLM_AR edits: the plugin's in-process edit patch applies")
        return True
    print("WARNING: GLM_AR edits: this SGLang has no VisionLanguageEncoderLoader.load_customized or "
          "GlmImageAR.generate_prior_tokens to patch; with GLM_AR=srt or a URL, edits will fail, and so "
          "will GLM_AR_START=together")  # fmt: skip
    return False


def check_compile_patch() -> bool:
    """COMPILE=dit leaves the VAE decode eager through the plugin; a warning where this SGLang has moved what
    it patches. Returns whether the patch applies."""
    from .sglang_plugin import patch_vae_decode_eager

    if patch_vae_decode_eager():
        print("COMPILE=dit: the plugin's eager VAE decode patch applies")
        return True
    print("WARNING: COMPILE=dit: this SGLang has no DecodingStage._get_vae_decode_fn to patch; with COMPILE=dit "
          "it compiles the VAE decode too (minutes on each new size's first request)")  # fmt: skip
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="glm-image-sglang-build-check", description=__doc__.split("\n")[0])
    parser.add_argument("--write", type=Path, help="write build-info.json here")
    parser.add_argument("--image-version", default="dev")
    parser.add_argument("--vcs-ref", default="unknown")
    parser.add_argument("--build-date", default="unknown")
    parser.add_argument("--source", action="append", default=[], help="NAME=SPEC as given to the build")
    args = parser.parse_args(argv)
    sources = dict(s.split("=", 1) for s in args.source if "=" in s)
    overridden = {
        name for name in ("diffusers", "transformers") if sources.get(name, "pinned").split(":")[0] in ("git", "pypi")
    }
    try:
        accepted = run_pip_check(overridden)
        check_imports()
        check_glm_edit_path()
        check_ar_server_edits()
        check_compile_patch()
    except CheckFailed as e:
        print(f"ERROR: build check failed: {e}", file=sys.stderr)
        return 1
    info = {
        "image_version": args.image_version,
        "vcs_ref": args.vcs_ref,
        "build_date": args.build_date,
        "python": platform.python_version(),
        "sources": sources,
        "pip_check_overrides": accepted,
        "packages": {name: package_info(name) for name in REPORTED if package_info(name)},
    }
    if args.write:
        args.write.write_text(json.dumps(info, indent=2) + "\n")
        print(f"wrote {args.write}")
    print(json.dumps(info["packages"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
