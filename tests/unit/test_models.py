"""Model detection from files, completeness and sizes."""

import json
import shutil

import pytest

from fakemodels import PARAMS, make, make_wan, write_safetensors_header
from glm_image_sglang import models
from glm_image_sglang.errors import ModelError

pytestmark = pytest.mark.unit

KEYS = ["glm-image", "wan2.2-t2v-a14b", "wan2.2-i2v-a14b", "wan2.2-ti2v-5b"]


@pytest.mark.parametrize("key", KEYS)
def test_detects_each_model_whatever_the_folder_name(tmp_path, key):
    """Each supported model should be recognised from its files in a folder named 'weights'."""
    info = models.inspect(make(tmp_path / "weights", key))
    assert info.variant is not None and info.variant.key == key
    assert info.problems == ()


def test_a14b_experts_counted(tmp_path):
    """Wan2.2-T2V-A14B should show two DiT experts with their full parameter counts."""
    info = models.inspect(make(tmp_path / "m", "wan2.2-t2v-a14b"))
    assert info.dit_names == ("transformer", "transformer_2")
    assert {c.name: c.params for c in info.components}["transformer_2"] == PARAMS["wan-a14b-dit"]
    assert info.dit_heads == 40


def test_wan21_layout_is_rejected_with_supported_list(tmp_path):
    """A Wan 2.1 folder should be refused with the list of supported models, not served with wrong defaults."""
    path = make_wan(tmp_path / "m", "wan21-t2v")
    with pytest.raises(ModelError, match=r"WanPipeline model .* Supported: glm-image \(zai-org/GLM-Image\)"):
        models.inspect(path)


def test_other_passes_unknown_model_through(tmp_path):
    """MODEL_VARIANT=other should accept an unrecognised model without a variant."""
    info = models.inspect(make_wan(tmp_path / "m", "wan21-t2v"), forced="other")
    assert info.variant is None and info.pipeline_class == "WanPipeline"


def test_forced_variant_is_trusted(tmp_path):
    """An explicit MODEL_VARIANT should override detection."""
    info = models.inspect(make_wan(tmp_path / "m", "wan21-t2v"), forced="wan2.2-ti2v-5b")
    assert info.variant is models.VARIANTS["wan2.2-ti2v-5b"]


def test_missing_model_index_points_to_nested_folder(tmp_path):
    """MODEL_PATH one level too high should get a 'Did you mean' hint."""
    make(tmp_path / "GLM-Image", "glm-image")
    with pytest.raises(ModelError, match=r"model_index.json not found.*Did you mean MODEL_PATH=.*GLM-Image"):
        models.inspect(tmp_path)


def test_missing_component_folder_reported(tmp_path):
    """A component listed in model_index.json but absent should make the snapshot incomplete."""
    path = make(tmp_path / "m", "wan2.2-t2v-a14b")
    shutil.rmtree(path / "transformer_2")
    info = models.inspect(path)
    assert any("transformer_2" in p and "missing" in p for p in info.problems)
    with pytest.raises(ModelError, match=r"incomplete:\n  - component 'transformer_2'"):
        models.require_complete(info)


def test_missing_shard_reported(tmp_path):
    """A shard named in the safetensors index but not on disk should be reported by name."""
    path = make(tmp_path / "m", "wan2.2-ti2v-5b")
    (path / "transformer" / "diffusion_pytorch_model-00002-of-00002.safetensors").unlink()
    problems = models.inspect(path).problems
    assert problems == (
        f"{path}/transformer/diffusion_pytorch_model-00002-of-00002.safetensors is missing "
        "(listed in diffusion_pytorch_model.safetensors.index.json)",
    )


def test_component_without_weights_reported(tmp_path):
    """A model component folder with a config but no weights should be reported."""
    path = make(tmp_path / "m", "glm-image")
    (path / "vision_language_encoder" / "model.safetensors").unlink()
    assert any("has no weight files" in p for p in models.inspect(path).problems)


def test_partial_download_reported(tmp_path):
    """An *.incomplete file left by an interrupted download should be reported."""
    path = make(tmp_path / "m", "glm-image")
    (path / "vae" / "x.safetensors.incomplete").write_bytes(b"")
    assert any("partial download" in p for p in models.inspect(path).problems)


def test_corrupt_model_index(tmp_path):
    """A truncated model_index.json should be a clear error, not a traceback."""
    path = make(tmp_path / "m", "glm-image")
    (path / "model_index.json").write_text('{"_class_name": "GlmIm')
    with pytest.raises(ModelError, match=r"cannot read .*model_index.json.*fetch it again"):
        models.inspect(path)


def test_missing_path_explains_mount(tmp_path):
    """A MODEL_PATH that does not exist should explain how to mount the models."""
    with pytest.raises(ModelError, match=r"does not exist.*-v /srv/models:/app/models:ro"):
        models.resolve_model_path(str(tmp_path / "nope"), None)


def test_repo_id_resolved_from_hf_cache(tmp_path):
    """A repo id should resolve to its snapshot in HF_HOME's hub cache (refs/main)."""
    repo = tmp_path / "hub" / "models--zai-org--GLM-Image"
    snap = make(repo / "snapshots" / "abc123", "glm-image")
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    assert models.resolve_model_path("zai-org/GLM-Image", str(tmp_path)) == snap


def test_safetensors_params_reads_header_only(tmp_path):
    """Parameter counts should come from the header without reading tensor data."""
    f = tmp_path / "w.safetensors"
    write_safetensors_header(f, 123_456)
    assert models.safetensors_params(f) == 123_456
    assert f.stat().st_size < 200


def test_safetensors_garbage_is_unknown(tmp_path):
    """A file that is not safetensors should give an unknown (None) parameter count."""
    f = tmp_path / "w.safetensors"
    f.write_bytes(b"\xff" * 64)
    assert models.safetensors_params(f) is None


def test_null_components_ignored(tmp_path):
    """[null, null] entries (TI2V-5B's transformer_2, I2V's image_encoder) are not components."""
    path = make(tmp_path / "m", "wan2.2-ti2v-5b")
    assert json.loads((path / "model_index.json").read_text())["transformer_2"] == [None, None]
    assert "transformer_2" not in {c.name for c in models.inspect(path).components}


@pytest.mark.parametrize("key", sorted(models.VARIANTS))
def test_download_components_are_the_model_index(tmp_path, key):
    """The folders `download` fetches should be the components model_index.json lists for the model."""
    folder = make(tmp_path / key, key)
    index = json.loads((folder / "model_index.json").read_text())
    listed = {k for k, v in index.items() if not k.startswith("_") and isinstance(v, list) and v[0] is not None}
    assert set(models.VARIANTS[key].components) == listed
