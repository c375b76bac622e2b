"""Records the JIT kernel builds SGLang runs, and builds them again, with no GPU, for a given architecture.

A cold start compiles kernels in its first generation (43.8 s of a TI2V-5B start and 54.9 s of a GLM-Image
one on an H200, docs/benchmarks.md), and which ones depends on the model, the GPU and the SGLang version
(0.5.23 reaches many more than 0.5.16, at other module paths), so no list written by hand holds. Instead,
the image's plugin appends each SGLang (>= 0.5.23) JIT build that succeeds to the file GLM_IMAGE_KERNEL_RECORD
names (the launcher sets CACHE_DIR/kernel-builds.jsonl): the arguments SGLang's `load_jit` was given, with
paths relative to the package folder or CUDA's. `python -m glm_image_sglang.kernel_record RECORD ARCH`
calls `load_jit` again with them for ARCH (like 9.0a) under SGLang's own arch override, into
SGLANG_JIT_CACHE_DIR: SGLang's cache is keyed by everything the compiler sees and checks each entry against
the files as they are, so a build made this way is found by a start on that architecture with the same
SGLang, compiler and packages, and ignored by any other. One architecture per process: SGLang keeps the
environment's fingerprint for the life of the process.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

RECORD_ENV = "GLM_IMAGE_KERNEL_RECORD"


def anchors() -> list[tuple[str, Path]]:
    """Folders a recorded path is written relative to, most specific first: where SGLang's package lies
    (site-packages: SGLang's sources and its dependencies' headers) and the CUDA toolkit."""
    import sglang

    roots = [("site", Path(sglang.__file__).resolve().parent.parent)]
    cuda = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH") or "/usr/local/cuda"
    roots.append(("cuda", Path(cuda).resolve()))
    return roots


def anchored(path: str, roots: list[tuple[str, Path]]) -> str:
    resolved = Path(path).resolve()
    for token, root in roots:
        if resolved.is_relative_to(root):
            return f"<{token}>/{resolved.relative_to(root)}"
    return str(resolved)


def unanchored(path: str, roots: list[tuple[str, Path]]) -> str:
    for token, root in roots:
        if path.startswith(f"<{token}>/"):
            return str(root / path[len(token) + 3 :])
    return path


def without_prefix(values: tuple[str, ...] | list[str], prefix: list[str]) -> list[str]:
    """What the caller added to SGLang's defaults (load_jit puts its defaults first)."""
    values = list(values)
    if values[: len(prefix)] != list(prefix):
        raise ValueError(f"expected SGLang's defaults {prefix} first, got {values[: len(prefix)]}")
    return values[len(prefix) :]


def entry(spec: Any) -> dict[str, Any]:
    """The `load_jit` arguments that give this BuildSpec again, SGLang's own defaults taken out."""
    from importlib.metadata import version

    from sglang.kernels.jit.utils.arch import get_default_target_flags, get_jit_cuda_arch
    from sglang.kernels.jit.utils.compile import paths

    roots = anchors()
    return {
        "sglang": version("sglang"),
        "arch": get_jit_cuda_arch().target_name,
        "module": spec.module_name,
        "args": list(spec.module_args),
        "cpp_files": [anchored(str(f), roots) for f in spec.cpp_files],
        "cuda_files": [anchored(str(f), roots) for f in spec.cuda_files],
        "cpp_wrappers": [list(w) for w in spec.cpp_wrappers],
        "cuda_wrappers": [list(w) for w in spec.cuda_wrappers],
        "extra_cflags": without_prefix(spec.cflags, paths.DEFAULT_CFLAGS),
        "extra_cuda_cflags": without_prefix(spec.cuda_cflags, get_default_target_flags()),
        "extra_ldflags": without_prefix(spec.ldflags, paths.DEFAULT_LDFLAGS),
        "extra_include_paths": [anchored(p, roots) for p in without_prefix(spec.include_paths, paths.DEFAULT_INCLUDE)],
        "header_only": spec.header_only,
    }


def append(record: Path, line: dict[str, Any]) -> None:
    """One JSON line, appended whole (O_APPEND: the workers of one start may build at the same moment)."""
    record.parent.mkdir(parents=True, exist_ok=True)
    data = (json.dumps(line, sort_keys=True) + "\n").encode()
    fd = os.open(record, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o664)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def recorded(build: Any) -> Any:
    """SGLang's ninja build that, once it succeeded, appends what it built to GLM_IMAGE_KERNEL_RECORD."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        result = build(*args, **kwargs)
        target = os.environ.get(RECORD_ENV)
        if target:
            try:
                append(Path(target), entry(kwargs["spec"]))
            except Exception as e:  # a record is a convenience: never a reason for a build to fail
                from .sglang_plugin import say

                say(f"kernel build not recorded in {target}: {e!r}")
        return result

    return wrapper


def read(record: Path) -> list[dict[str, Any]]:
    """The record's builds, each once (every worker of a start, and every start, appends its own)."""
    seen: dict[str, dict[str, Any]] = {}
    for number, line in enumerate(record.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError as e:
            raise SystemExit(f"ERROR: {record}:{number} is not a JSON line ({e}): fix or remove that line.") from e
        item.pop("arch", None)
        seen.setdefault(json.dumps(item, sort_keys=True), item)
    return list(seen.values())


def replay(item: dict[str, Any], arch: str) -> str:
    """Builds one recorded kernel for `arch` (or finds it built): "done", or "skipped (why)"."""
    from sglang.kernels.jit.utils import load_jit
    from sglang.kernels.jit.utils.arch import override_jit_cuda_arch

    roots = anchors()
    files = {kind: [unanchored(f, roots) for f in item[kind]] for kind in ("cpp_files", "cuda_files")}
    missing = [f for f in files["cpp_files"] + files["cuda_files"] if not Path(f).exists()]
    if missing:  # recorded with another SGLang: its sources moved or went
        return f"skipped (no {missing[0]})"
    major, _, rest = arch.partition(".")
    minor = "".join(c for c in rest if c.isdigit())
    suffix = rest[len(minor) :]
    with override_jit_cuda_arch(int(major), int(minor), suffix):
        load_jit(
            *item["args"],
            cpp_files=files["cpp_files"] or None,
            cuda_files=files["cuda_files"] or None,
            cpp_wrappers=[tuple(w) for w in item["cpp_wrappers"]] or None,
            cuda_wrappers=[tuple(w) for w in item["cuda_wrappers"]] or None,
            extra_cflags=item["extra_cflags"],
            extra_cuda_cflags=item["extra_cuda_cflags"],
            extra_ldflags=item["extra_ldflags"],
            extra_include_paths=[unanchored(p, roots) for p in item["extra_include_paths"]],
            header_only=item["header_only"],
        )
    return "done"


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m glm_image_sglang.kernel_record RECORD ARCH   (ARCH like 9.0a; one per run)")
        return 2
    record, arch = Path(argv[0]), argv[1]
    if not record.is_file():
        print(f"ERROR: no kernel record at {record}: a start with the image's plugin writes one in CACHE_DIR.")
        return 2
    cache = os.environ.get("SGLANG_JIT_CACHE_DIR", "~/.cache/sglang/jit")
    items = read(record)
    print(f"{len(items)} kernel build(s) from {record} for {arch} into {cache}", flush=True)
    failed = 0
    for item in items:
        started = time.monotonic()
        try:
            outcome = replay(item, arch)
        except Exception as e:  # one kernel that no longer builds must not stop the others
            outcome, failed = f"failed: {e!r}"[:400], failed + 1
        print(f"  {item['module']}: {outcome} ({time.monotonic() - started:.1f} s)", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
