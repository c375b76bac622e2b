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


def make_jit_seed(root):
    """SGLang's JIT cache as a replay leaves it: content-addressed, so the manifest names no path."""
    leaf = root / "sglang-jit/sm90a/causal_conv3d/build-0123/deps-4567"
    leaf.mkdir(parents=True)
    (leaf / "causal_conv3d.so").write_text("so")
    manifest = {"sglang-jit": {"env": "SGLANG_JIT_CACHE_DIR", "path": None, "version": "0.5.23", "archs": ["9.0a"],
                               "modules": ["causal_conv3d"]}}  # fmt: skip
    (root / kernel_seed.MANIFEST).write_text(json.dumps(manifest))
    return leaf.relative_to(root / "sglang-jit")


def test_sglang_kernels_go_into_whatever_jit_cache_the_start_has(tmp_path):
    leaf = make_jit_seed(tmp_path / "seed")
    cache = tmp_path / "anywhere/sglang-jit"
    lines = kernel_seed.seed(tmp_path / "seed", {"SGLANG_JIT_CACHE_DIR": str(cache)})
    assert lines == [f"prebuilt sglang-jit causal_conv3d (9.0a): 1 file copied into {cache}"]
    assert (cache / leaf / "causal_conv3d.so").read_text() == "so"


def test_a_start_without_the_cache_variable_is_told(tmp_path):
    make_jit_seed(tmp_path / "seed")
    (line,) = kernel_seed.seed(tmp_path / "seed", {})
    assert line == "prebuilt sglang-jit causal_conv3d (9.0a) not used: this start sets no SGLANG_JIT_CACHE_DIR"


FAKE_REPLAY = """import json, os, pathlib, sys
record, arch = sys.argv[1:]
modules = sorted({json.loads(line)["module"] for line in open(record) if line.strip()})
if "broken" in modules:
    print("  broken: failed: nvcc exited 1"); sys.exit(1)
leaf = pathlib.Path(os.environ["SGLANG_JIT_CACHE_DIR"]) / arch
leaf.mkdir(parents=True, exist_ok=True)
(leaf / ".lock").write_text("")
(leaf / "built.txt").write_text(" ".join(modules))
"""


@pytest.fixture
def fake_replay(tmp_path, monkeypatch):
    """kernel_record.py stood in by a script that writes what it was asked for into SGLANG_JIT_CACHE_DIR."""
    script = tmp_path / "fake_record.py"
    script.write_text(FAKE_REPLAY)
    monkeypatch.setattr(kernel_seed, "_module", lambda name: [str(script)])
    monkeypatch.setattr(kernel_seed, "_version", lambda dist: {"sglang": "0.5.23"}[dist])


def record(path, *modules):
    path.write_text("".join(json.dumps({"module": m, "args": [m]}) + "\n" for m in modules))
    return path


def test_recorded_builds_are_replayed_once_per_arch_from_all_records(tmp_path, fake_replay):
    a = record(tmp_path / "wan.jsonl", "causal_conv3d", "timestep_embedding")
    b = record(tmp_path / "glm.jsonl", "timestep_embedding", "rmsnorm")
    entry = kernel_seed.build_recorded(tmp_path / "seed", ["8.0", "9.0a"], [a, b])
    jit = tmp_path / "seed/sglang-jit"
    assert (jit / "9.0a/built.txt").read_text() == "causal_conv3d rmsnorm timestep_embedding"
    assert (jit / "8.0/built.txt").exists()
    assert not list(jit.rglob(".lock")), "a start takes its own locks"
    assert not (tmp_path / "seed/kernel-builds.jsonl").exists(), "the merged record is not part of the seed"
    assert entry == {"env": "SGLANG_JIT_CACHE_DIR", "path": None, "version": "0.5.23", "archs": ["8.0", "9.0a"],
                     "modules": ["causal_conv3d", "rmsnorm", "timestep_embedding"]}  # fmt: skip


def test_a_kernel_that_fails_to_build_fails_the_prebuild_naming_the_way_out(tmp_path, fake_replay):
    bad = record(tmp_path / "bad.jsonl", "broken")
    with pytest.raises(SystemExit, match=r"for 9\.0a failed .*KERNEL_ARCHS=none"):
        kernel_seed.build_recorded(tmp_path / "seed", ["9.0a"], [bad])


def test_a_missing_record_is_named(tmp_path):
    with pytest.raises(SystemExit, match=r"no kernel record at .*nothing\.jsonl"):
        kernel_seed.build_recorded(tmp_path / "seed", ["9.0a"], [tmp_path / "nothing.jsonl"])
