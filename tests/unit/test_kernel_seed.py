"""kernel_seed.seed: the image's prebuilt kernels copied into the cache a start uses. The build itself (nvcc, in
the image) and a start finding nothing to compile are in tests/container/test_image.py."""

import json
import os

import pytest

from glm_image_sglang import kernel_seed

pytestmark = pytest.mark.unit


def make_seed(root, built_for):
    """A seed as the image build leaves it: FlashInfer's cache layout and the manifest naming its path."""
    rope = root / "flashinfer/.cache/flashinfer/0.7.2/90a/cached_ops/rope"
    rope.mkdir(parents=True)
    for name in ("rope.so", "build.ninja", ".ninja_log"):
        (rope / name).write_text(name)
        os.utime(rope / name, ns=(1_000_000_000, 1_000_000_000))
    manifest = {"flashinfer": {"env": "FLASHINFER_WORKSPACE_BASE", "path": str(built_for), "version": "0.7.2",
                               "archs": ["9.0a"], "modules": ["rope"]}}  # fmt: skip
    (root / kernel_seed.MANIFEST).write_text(json.dumps(manifest))
    return rope.relative_to(root / "flashinfer")


def test_copies_into_the_cache_it_was_built_for_keeping_mtimes(tmp_path):
    """ninja compares the outputs' times with the sources': the copies should keep the build's."""
    cache = tmp_path / "cache/flashinfer"
    rope = make_seed(tmp_path / "seed", cache)
    lines = kernel_seed.seed(tmp_path / "seed", {"FLASHINFER_WORKSPACE_BASE": str(cache)})
    assert lines == [f"prebuilt flashinfer rope (9.0a): 3 files copied into {cache}"]
    assert (cache / rope / "rope.so").read_text() == "rope.so"
    assert (cache / rope / "rope.so").stat().st_mtime_ns == 1_000_000_000


def test_never_overwrites_what_the_cache_has(tmp_path):
    """A kept CACHE_DIR may hold its own build of the module: it stays."""
    cache = tmp_path / "cache/flashinfer"
    rope = make_seed(tmp_path / "seed", cache)
    (cache / rope).mkdir(parents=True)
    (cache / rope / "rope.so").write_text("built by an earlier start")
    lines = kernel_seed.seed(tmp_path / "seed", {"FLASHINFER_WORKSPACE_BASE": str(cache)})
    assert lines == [f"prebuilt flashinfer rope (9.0a): 2 files copied into {cache}"]
    assert (cache / rope / "rope.so").read_text() == "built by an earlier start"
    again = kernel_seed.seed(tmp_path / "seed", {"FLASHINFER_WORKSPACE_BASE": str(cache)})
    assert again == [f"prebuilt flashinfer rope (9.0a): 0 files copied into {cache}, all there already"]


def test_another_cache_path_is_left_alone_and_said(tmp_path):
    """Built for /app/data/cache/flashinfer, a start with CACHE_DIR elsewhere would find ninja's commands
    changed and compile anyway: nothing is copied, and the log says why."""
    make_seed(tmp_path / "seed", tmp_path / "built-for")
    elsewhere = tmp_path / "elsewhere"
    (line,) = kernel_seed.seed(tmp_path / "seed", {"FLASHINFER_WORKSPACE_BASE": str(elsewhere)})
    assert "not used" in line and f"this start has {elsewhere}" in line and "compiles on first use" in line
    assert not elsewhere.exists()


def test_a_cache_that_cannot_be_written_is_a_line_not_a_failed_start(tmp_path):
    cache = tmp_path / "cache"
    cache.write_text("a file where the cache folder should be")
    make_seed(tmp_path / "seed", cache)
    (line,) = kernel_seed.seed(tmp_path / "seed", {"FLASHINFER_WORKSPACE_BASE": str(cache)})
    assert line.startswith(f"prebuilt flashinfer rope (9.0a) not copied into {cache}: ")


def test_an_image_without_a_seed_copies_nothing(tmp_path):
    assert kernel_seed.seed(tmp_path / "none", {"FLASHINFER_WORKSPACE_BASE": str(tmp_path / "c")}) == []
    assert not (tmp_path / "c").exists()
