"""kernel_record's pure parts: paths written relative to the package or CUDA folder, records read back once
per build. The recording and replay through SGLang's real loader are in tests/e2e_cpu/test_real_kernel_builds.py."""

import json
from pathlib import Path

import pytest

from glm_image_sglang import kernel_record

pytestmark = pytest.mark.unit


def test_paths_under_an_anchor_travel_to_another_install(tmp_path):
    """A source under the recording machine's site-packages should name the same file under the image's."""
    device = [("site", tmp_path / "device/site"), ("cuda", tmp_path / "device/cuda")]
    image = [("site", tmp_path / "image/site"), ("cuda", tmp_path / "image/cuda")]
    written = kernel_record.anchored(str(tmp_path / "device/site/sglang/csrc/norm.cuh"), device)
    assert written == "<site>/sglang/csrc/norm.cuh"
    assert kernel_record.unanchored(written, image) == str(tmp_path / "image/site/sglang/csrc/norm.cuh")
    assert kernel_record.anchored(str(tmp_path / "device/cuda/include"), device) == "<cuda>/include"


def test_a_path_under_no_anchor_stays_absolute(tmp_path):
    roots = [("site", tmp_path / "site")]
    assert kernel_record.anchored(str(tmp_path / "elsewhere/k.cu"), roots) == str(tmp_path / "elsewhere/k.cu")
    assert kernel_record.unanchored(str(tmp_path / "elsewhere/k.cu"), roots) == str(tmp_path / "elsewhere/k.cu")


def test_only_what_the_caller_added_to_sglangs_defaults_is_kept():
    assert kernel_record.without_prefix(("-O3", "-std=c++20", "-DX=1"), ["-O3", "-std=c++20"]) == ["-DX=1"]
    with pytest.raises(ValueError, match="defaults"):
        kernel_record.without_prefix(("-DX=1", "-O3"), ["-O3"])


def test_each_build_is_read_once_whatever_arch_recorded_it(tmp_path):
    """Every worker of every start appends its own line: the replay should build each kernel once."""
    build = {"module": "m", "args": ["a"], "cpp_files": [], "cuda_files": ["<site>/k.cu"]}
    other = dict(build, args=["b"])
    record = tmp_path / "kernel-builds.jsonl"
    lines = [dict(build, arch="9.0a"), dict(build, arch="8.0"), other, build]
    record.write_text("".join(json.dumps(x) + "\n" for x in lines) + "\n")
    assert kernel_record.read(record) == [build, other]


def test_a_broken_line_names_its_place(tmp_path):
    record = tmp_path / "kernel-builds.jsonl"
    record.write_text('{"module": "m"}\n{"module": \n')
    with pytest.raises(SystemExit, match=r"kernel-builds.jsonl:2 is not a JSON line"):
        kernel_record.read(record)


def test_lines_are_appended_whole(tmp_path):
    record = tmp_path / "cache/kernel-builds.jsonl"
    kernel_record.append(record, {"module": "a"})
    kernel_record.append(record, {"module": "b"})
    assert [json.loads(x)["module"] for x in Path(record).read_text().splitlines()] == ["a", "b"]


def test_the_replay_without_a_record_says_where_one_comes_from(tmp_path, capsys):
    assert kernel_record.main([str(tmp_path / "none.jsonl"), "9.0a"]) == 2
    assert "a start with the image's plugin writes one in CACHE_DIR" in capsys.readouterr().out


def test_a_build_whose_record_fails_still_returns_its_library(tmp_path, monkeypatch, capsys):
    """The record is a convenience: a spec it cannot describe should cost a log line, not the build."""
    monkeypatch.setenv(kernel_record.RECORD_ENV, str(tmp_path / "kernel-builds.jsonl"))
    build = kernel_record.recorded(lambda *, spec: "lib.so")
    assert build(spec=object()) == "lib.so"
    assert "kernel build not recorded in" in capsys.readouterr().err
