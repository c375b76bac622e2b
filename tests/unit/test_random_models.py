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


@pytest.mark.parametrize("scale", ["tiny", "full"])
def test_glm_image_patch_geometry_is_the_real_one(scale):
    """Source images for edits must be cut as the real processor cuts them (16-px patches, no temporal patch,
    no merge; zai-org/GLM-Image's processor/preprocessor_config.json) with a vision tower of the same patch:
    the 32-px stand-in made every full-size edit fail ('tensor a (4096) must match tensor b (1024)')."""
    cfg = random_models.configs()["glm-image"][scale]
    processor = cfg["image_processor"]
    assert (processor["patch_size"], processor["temporal_patch_size"], processor["merge_size"]) == (16, 1, 1)
    assert cfg["vision_language_encoder"]["vision_config"]["patch_size"] == 16
    if scale == "full":
        assert processor["size"] == {"shortest_edge": 512 * 512, "longest_edge": 2048 * 2048}  # min/max pixels
