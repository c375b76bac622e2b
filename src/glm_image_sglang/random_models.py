"""Random-weight Diffusers folders of the four supported models, built offline:
`glm-image-sglang random-model VARIANT OUT_DIR [--scale tiny|full] [--device cpu|cuda]`.

For smoke-testing a cluster before the real weights arrive, for CI (`tiny`: a few MB, seconds on a
CPU) and for GPU measurements (`full`: the real architectures; speed and memory do not depend on
weight values, output quality cannot be judged). Tokenizers and processors are built locally.
The configs and where they come from are in data/model_configs.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from importlib import resources
from pathlib import Path
from typing import Any

from .models import VARIANTS


def configs() -> dict[str, Any]:
    text = resources.files("glm_image_sglang.data").joinpath("model_configs.json").read_text()
    data: dict[str, Any] = json.loads(text)
    return data


def _t5_tokenizer() -> Any:
    """A T5-style Unigram tokenizer (pad 0, </s> 1, <unk> 2) trained on a few sentences."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    corpus = [
        "a cat sitting on a mat", "a red fox in the snow", "a cat surfing a wave at sunset",
        "the quick brown fox jumps over the lazy dog", "make it night", "readiness check",
    ] * 40  # fmt: skip
    tok.train_from_iterator(
        corpus, trainers.UnigramTrainer(vocab_size=200, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>")
    )
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>", model_max_length=512
    )


def _link_second_expert(out: Path, boundary_ratio: float) -> None:
    """transformer_2/ = hard links to transformer/'s files (same shapes, half the disk)."""
    src, dst = out / "transformer", out / "transformer_2"
    dst.mkdir()
    for f in src.iterdir():
        if f.suffix == ".safetensors":
            (dst / f.name).hardlink_to(f)
        else:
            shutil.copy2(f, dst / f.name)
    index_path = out / "model_index.json"
    index = json.loads(index_path.read_text())
    index["transformer_2"] = ["diffusers", "WanTransformer3DModel"]
    index["boundary_ratio"] = boundary_ratio
    index_path.write_text(json.dumps(index, indent=2))


def build_wan(key: str, out: Path, scale: str, device: str, link_experts: bool = False) -> dict[str, Any]:
    import torch
    from diffusers import (
        AutoencoderKLWan,
        UniPCMultistepScheduler,
        WanImageToVideoPipeline,
        WanPipeline,
        WanTransformer3DModel,
    )
    from transformers import UMT5Config, UMT5EncoderModel

    cfg = configs()["wan"][key][scale]
    shared = configs()["wan"]["shared"][scale]
    torch.manual_seed(0)
    with torch.device(device):
        torch.set_default_dtype(torch.bfloat16 if scale == "full" else torch.float32)
        transformer = WanTransformer3DModel(**cfg["transformer"]).eval()
        two_experts = bool(cfg.get("boundary_ratio"))
        transformer_2 = WanTransformer3DModel(**cfg["transformer"]).eval() if two_experts and not link_experts else None
        text_encoder = UMT5EncoderModel(UMT5Config(**shared["text_encoder"])).eval()
        torch.set_default_dtype(torch.float32)
        vae_cfg = dict(cfg["vae"])
        z_dim = vae_cfg.get("z_dim", 16)
        vae_cfg.setdefault("latents_mean", [0.0] * z_dim)  # the defaults have 16 entries (Wan 2.1's VAE)
        vae_cfg.setdefault("latents_std", [1.0] * z_dim)
        vae = AutoencoderKLWan(**vae_cfg).eval()
    scheduler = UniPCMultistepScheduler(**shared["scheduler"])
    kwargs: dict[str, Any] = {"tokenizer": _t5_tokenizer(), "text_encoder": text_encoder, "vae": vae,
                              "scheduler": scheduler, "transformer": transformer}  # fmt: skip
    if key == "wan2.2-i2v-a14b":
        pipe: Any = WanImageToVideoPipeline(
            **kwargs, transformer_2=transformer_2, boundary_ratio=cfg["boundary_ratio"], image_encoder=None,
            image_processor=None,
        )  # fmt: skip
    elif key == "wan2.2-t2v-a14b":
        pipe = WanPipeline(**kwargs, transformer_2=transformer_2, boundary_ratio=cfg["boundary_ratio"])
    else:
        pipe = WanPipeline(**kwargs, expand_timesteps=True)
    pipe.save_pretrained(out, safe_serialization=True, max_shard_size="5GB")
    if two_experts and link_experts:
        _link_second_expert(out, cfg["boundary_ratio"])
    count = sum(p.numel() for p in transformer.parameters())
    return {"dit_params": count, "experts": 2 if two_experts else 1, "experts_linked": two_experts and link_experts}


def build_glm_image(out: Path, scale: str, device: str) -> dict[str, Any]:
    """GLM-Image with the AR model, its processor, vision tower and VQ sized so that edits work:
    processor patch = vision patch = 16 px (the real processor's), no temporal patching, no spatial merge."""
    import torch
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, GlmImagePipeline, GlmImageTransformer2DModel
    from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers
    from transformers import (
        GlmImageConfig,
        GlmImageForConditionalGeneration,
        GlmImageImageProcessor,
        GlmImageProcessor,
        PreTrainedTokenizerFast,
        T5Config,
        T5EncoderModel,
    )

    cfg = configs()["glm-image"][scale]
    torch.manual_seed(0)
    # The AR model's tokenizer: a word-level vocabulary plus GLM-Image's special tokens at their real ids.
    vocab = {"<unk>": 0, "<pad>": 1}
    words = ["a", "photo", "of", "cat", "red", "fox", "snow", "car", "at", "night", "make", "it", "readiness", "check"]
    for word in words:
        vocab.setdefault(word, len(vocab))
    for i in range(257):
        vocab.setdefault(str(i), len(vocab))
    special = {name: int(idx) for name, idx in configs()["glm-image"]["special_tokens"].items()}
    vocab.update(special)
    word_level = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    word_level.pre_tokenizer = pre_tokenizers.Whitespace()
    word_level.add_special_tokens([AddedToken(k, special=True, normalized=False) for k in special])
    ar_tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=word_level, unk_token="<unk>", pad_token="<pad>", bos_token="<|dit_token_16384|>",
        extra_special_tokens={"image_token": "<|image|>", "grid_bos_token": "<sop>", "grid_eos_token": "<eop>"},
    )  # fmt: skip
    processor = GlmImageProcessor(
        image_processor=GlmImageImageProcessor(**cfg["image_processor"]),
        tokenizer=ar_tokenizer,
        chat_template=cfg["chat_template"],
    )
    with torch.device(device):
        text_encoder = T5EncoderModel(T5Config(**cfg["text_encoder"])).eval()  # the glyph encoder stays fp32
        torch.set_default_dtype(torch.bfloat16 if scale == "full" else torch.float32)
        vision_language_encoder = GlmImageForConditionalGeneration(GlmImageConfig(**cfg["vision_language_encoder"]))
        transformer = GlmImageTransformer2DModel(**cfg["transformer"]).eval()
        vae = AutoencoderKL(**cfg["vae"]).eval()
        torch.set_default_dtype(torch.float32)
    pipe = GlmImagePipeline(
        tokenizer=_t5_tokenizer(), processor=processor, text_encoder=text_encoder,
        vision_language_encoder=vision_language_encoder.eval(), vae=vae, transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(),
    )  # fmt: skip
    pipe.save_pretrained(out, safe_serialization=True, max_shard_size="5GB")
    # As in the real repository: the AR model and its processor load through transformers.
    index_path = out / "model_index.json"
    index = json.loads(index_path.read_text())
    for name in ("processor", "vision_language_encoder"):
        index[name][0] = "transformers"
    index_path.write_text(json.dumps(index, indent=2))
    return {
        "dit_params": sum(p.numel() for p in transformer.parameters()),
        "ar_params": sum(p.numel() for p in vision_language_encoder.parameters()),
        "experts": 1,
    }


def build(
    key: str, out: Path, scale: str = "tiny", device: str = "cpu", force: bool = False, link_experts: bool = False
) -> dict[str, Any]:
    if key not in VARIANTS:
        raise SystemExit(f"ERROR: unknown model {key!r}; choose one of {', '.join(VARIANTS)}")
    if out.exists():
        if not force:
            raise SystemExit(f"ERROR: {out} exists; pass --force to replace it")
        shutil.rmtree(out)
    t0 = time.monotonic()
    if key == "glm-image":
        info = build_glm_image(out, scale, device)
    else:
        info = build_wan(key, out, scale, device, link_experts)
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    info.update(model=key, scale=scale, path=str(out), bytes=size, seconds=round(time.monotonic() - t0, 1))
    return info


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="glm-image-sglang random-model", description=__doc__.split("\n")[0])
    parser.add_argument("model", choices=sorted(VARIANTS))
    parser.add_argument("out", type=Path, help="folder to create (name it after the repo, e.g. GLM-Image)")
    parser.add_argument("--scale", choices=["tiny", "full"], default="tiny")
    parser.add_argument("--device", default="cpu", help="where to initialise the weights (cuda: faster at full size)")
    parser.add_argument("--force", action="store_true", help="replace OUT if it exists")
    parser.add_argument(
        "--link-experts", action="store_true",
        help="A14B: write one expert and hard-link transformer_2/ to it (same compute and memory when served, "
        "half the disk: 28 GB instead of 57 GB at full size)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    info = build(args.model, args.out, args.scale, args.device, args.force, args.link_experts)
    print(json.dumps(info))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
