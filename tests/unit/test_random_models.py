"""`glm-image-sglang random-model` helpers that need no torch."""

import json

import pytest

from glm_image_sglang import random_models

pytestmark = pytest.mark.unit


def test_link_experts_hard_links_weights(tmp_path):
    """--link-experts should make transformer_2/ hard links to transformer/'s weights and register it."""
    (tmp_path / "transformer").mkdir()
    weights = tmp_path / "transformer" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(b"w" * 64)
    (tmp_path / "transformer" / "config.json").write_text("{}")
    (tmp_path / "model_index.json").write_text(
        json.dumps({"_class_name": "WanPipeline", "transformer_2": [None, None]})
    )
    random_models._link_second_expert(tmp_path, 0.875)
    linked = tmp_path / "transformer_2" / weights.name
    assert linked.stat().st_ino == weights.stat().st_ino and weights.stat().st_nlink == 2
    assert (tmp_path / "transformer_2" / "config.json").read_text() == "{}"
    index = json.loads((tmp_path / "model_index.json").read_text())
    assert index["transformer_2"] == ["diffusers", "WanTransformer3DModel"] and index["boundary_ratio"] == 0.875


def test_full_glm_image_config_keeps_prior_codes_in_range():
    """The full GLM-Image AR head must not be wider than the DiT's prior codebook (a random head
    samples every id it has; ids past the codebook crashed the H100 run)."""
    full = random_models.configs()["glm-image"]["full"]
    text = full["vision_language_encoder"]["text_config"]
    assert text["vision_vocab_size"] <= full["transformer"]["prior_vq_quantizer_codebook_size"]
    rope = text["rope_parameters"]
    assert sum(rope["mrope_section"]) * 2 == 4096 // 32 * rope["partial_rotary_factor"]
