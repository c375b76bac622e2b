"""Model folders for tests: the real model_index.json and config field names of the four supported
models (from their Hugging Face repos' Diffusers layouts), with safetensors files that hold only a
header. The header declares the real parameter count, so memory planning sees full-size models while
the files stay a few hundred bytes.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

# parameter counts of the real checkpoints (rounded)
PARAMS = {
    "wan-a14b-dit": 14_288_000_000,
    "umt5-xxl-encoder": 5_680_000_000,
    "wan21-vae": 127_000_000,
    "wan22-5b-dit": 4_999_000_000,
    "wan22-vae": 705_000_000,
    "glm-dit": 7_000_000_000,
    "glm-ar": 9_000_000_000,
    "glm-t5": 220_000_000,
    "glm-vae": 84_000_000,
}


def write_safetensors_header(path: Path, params: int, dtype: str = "BF16") -> None:
    header = json.dumps({"weight": {"dtype": dtype, "shape": [params], "data_offsets": [0, 0]}}).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<Q", len(header)) + header)


def _json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))


def _weights(folder: Path, params: int, shards: int = 1) -> None:
    if shards == 1:
        write_safetensors_header(folder / "diffusion_pytorch_model.safetensors", params)
        return
    weight_map = {}
    for i in range(shards):
        name = f"diffusion_pytorch_model-{i + 1:05d}-of-{shards:05d}.safetensors"
        write_safetensors_header(folder / name, params // shards)
        weight_map[f"blocks.{i}.weight"] = name
    _json(folder / "diffusion_pytorch_model.safetensors.index.json", {"metadata": {}, "weight_map": weight_map})


def _tokenizer(folder: Path) -> None:
    _json(folder / "tokenizer_config.json", {"model_max_length": 512})
    _json(folder / "tokenizer.json", {"version": "1.0"})


def _scheduler(folder: Path, cls: str) -> None:
    _json(folder / "scheduler_config.json", {"_class_name": cls, "num_train_timesteps": 1000})


def _wan_dit(folder: Path, in_channels: int, heads: int, layers: int, params: int, shards: int) -> None:
    _json(
        folder / "config.json",
        {
            "_class_name": "WanTransformer3DModel",
            "patch_size": [1, 2, 2],
            "num_attention_heads": heads,
            "attention_head_dim": 128,
            "in_channels": in_channels,
            "out_channels": 16 if in_channels != 48 else 48,
            "text_dim": 4096,
            "freq_dim": 256,
            "ffn_dim": 13824 if heads == 40 else 14336,
            "num_layers": layers,
            "cross_attn_norm": True,
            "qk_norm": "rms_norm_across_heads",
            "eps": 1e-6,
            "rope_max_seq_len": 1024,
        },
    )
    _weights(folder, params, shards)


def _wan_common(root: Path, vae_z: int, vae_params: int) -> None:
    _json(root / "text_encoder" / "config.json", {"architectures": ["UMT5EncoderModel"], "d_model": 4096})
    write_safetensors_header(root / "text_encoder" / "model.safetensors", PARAMS["umt5-xxl-encoder"])
    _tokenizer(root / "tokenizer")
    _scheduler(root / "scheduler", "UniPCMultistepScheduler")
    _json(
        root / "vae" / "config.json",
        {
            "_class_name": "AutoencoderKLWan",
            "z_dim": vae_z,
            "base_dim": 96 if vae_z == 16 else 160,
            "is_residual": vae_z == 48,
        },
    )
    _weights(root / "vae", vae_params)


def make_wan(root: Path, kind: str, shards: int = 2) -> Path:
    """kind: t2v-a14b, i2v-a14b, ti2v-5b, or wan21-t2v (an unsupported Wan 2.1 layout)."""
    index: dict[str, Any] = {
        "_class_name": "WanImageToVideoPipeline" if kind == "i2v-a14b" else "WanPipeline",
        "_diffusers_version": "0.35.0.dev0",
        "scheduler": ["diffusers", "UniPCMultistepScheduler"],
        "text_encoder": ["transformers", "UMT5EncoderModel"],
        "tokenizer": ["transformers", "T5TokenizerFast"],
        "transformer": ["diffusers", "WanTransformer3DModel"],
        "vae": ["diffusers", "AutoencoderKLWan"],
    }
    if kind in ("t2v-a14b", "i2v-a14b"):
        index["transformer_2"] = ["diffusers", "WanTransformer3DModel"]
        index["boundary_ratio"] = 0.875 if kind == "t2v-a14b" else 0.9
        index["expand_timesteps"] = False
        if kind == "i2v-a14b":
            index["image_encoder"] = [None, None]
            index["image_processor"] = [None, None]
        in_ch = 16 if kind == "t2v-a14b" else 36
        for name in ("transformer", "transformer_2"):
            _wan_dit(root / name, in_ch, 40, 40, PARAMS["wan-a14b-dit"], shards)
        _wan_common(root, 16, PARAMS["wan21-vae"])
    elif kind == "ti2v-5b":
        index["transformer_2"] = [None, None]
        index["boundary_ratio"] = None
        index["expand_timesteps"] = True
        _wan_dit(root / "transformer", 48, 24, 30, PARAMS["wan22-5b-dit"], shards)
        _wan_common(root, 48, PARAMS["wan22-vae"])
    elif kind == "wan21-t2v":
        _wan_dit(root / "transformer", 16, 12, 30, 1_300_000_000, 1)
        _wan_common(root, 16, PARAMS["wan21-vae"])
    else:
        raise ValueError(kind)
    _json(root / "model_index.json", index)
    return root


def make_glm_image(root: Path, shards: int = 2) -> Path:
    _json(
        root / "model_index.json",
        {
            "_class_name": "GlmImagePipeline",
            "_diffusers_version": "0.37.0.dev0",
            "processor": ["transformers", "GlmImageProcessor"],
            "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
            "text_encoder": ["transformers", "T5EncoderModel"],
            "tokenizer": ["transformers", "ByT5Tokenizer"],
            "transformer": ["diffusers", "GlmImageTransformer2DModel"],
            "vae": ["diffusers", "AutoencoderKL"],
            "vision_language_encoder": ["transformers", "GlmImageForConditionalGeneration"],
        },
    )
    _json(root / "processor" / "preprocessor_config.json", {"image_processor_type": "GlmImageImageProcessor"})
    _scheduler(root / "scheduler", "FlowMatchEulerDiscreteScheduler")
    _json(root / "text_encoder" / "config.json", {"architectures": ["T5EncoderModel"], "d_model": 1472})
    write_safetensors_header(root / "text_encoder" / "model.safetensors", PARAMS["glm-t5"])
    _tokenizer(root / "tokenizer")
    _json(
        root / "transformer" / "config.json",
        {
            "_class_name": "GlmImageTransformer2DModel",
            "num_layers": 30,
            "num_attention_heads": 32,
            "attention_head_dim": 128,
            "in_channels": 16,
            "out_channels": 16,
        },
    )
    _weights(root / "transformer", PARAMS["glm-dit"], shards)
    _json(root / "vae" / "config.json", {"_class_name": "AutoencoderKL", "latent_channels": 16})
    _weights(root / "vae", PARAMS["glm-vae"])
    _json(
        root / "vision_language_encoder" / "config.json",
        {"architectures": ["GlmImageForConditionalGeneration"], "model_type": "glm_image"},
    )
    write_safetensors_header(root / "vision_language_encoder" / "model.safetensors", PARAMS["glm-ar"])
    return root


def make(root: Path, key: str) -> Path:
    """A model folder by MODEL_VARIANT key."""
    if key == "glm-image":
        return make_glm_image(root)
    return make_wan(root, key.removeprefix("wan2.2-"))
