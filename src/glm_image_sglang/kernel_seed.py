"""Kernels built into the image with no GPU, and copied into CACHE_DIR at start so a first start skips them.

A cold GLM-Image start on a CUDA GPU builds FlashInfer's RoPE module and six of SGLang's JIT kernels (three in
its first generation, three in its AR server's CUDA-graph capture; SGLang 0.5.23 on an H200: 60-120 s in all, and
89.9 s to ready with them prebuilt against 212.5 s; with 0.5.16 the Wan DiTs built the RoPE too, 0.5.23's build
nothing). The builds are nvcc for an architecture, not for a GPU, so the image makes them once per
architecture in KERNEL_ARCHS:

    python -m glm_image_sglang.kernel_seed build SEED_DIR ARCH [ARCH ...] [--for WORKSPACE] [--record FILE ...]

(ARCH like 9.0a; the Dockerfile runs this file as a script, with kernel_record.py beside it, before the package
is installed, so that editing the package rebuilds nothing).

FlashInfer: each architecture gets FlashInfer's own JIT cache layout (<version>/<arch>/cached_ops/rope), built at
the path the launcher gives FlashInfer at run time ($CACHE_DIR/flashinfer, by default /app/data/cache/flashinfer),
so that ninja, which FlashInfer runs before every load, finds the same commands and up-to-date outputs and does
nothing. When CACHE_DIR is elsewhere, or the GPU's architecture was not built, FlashInfer compiles on first use
as it always did. Why not FlashInfer's ahead-of-time folder: it is not keyed by architecture, so a module built
for the listed GPUs would be loaded, and fail, on any other.

SGLang (>= 0.5.23): the JIT builds a GPU start recorded (`--record FILE`, written by the image's plugin:
kernel_record.py; docker/kernel-builds/) are replayed for each architecture into seed/sglang-jit. SGLang's cache
is content-addressed and path-independent (keyed by sources, flags, target, compilers and package versions,
checked against the files at load), so it is copied into whatever SGLANG_JIT_CACHE_DIR a start has; a build that
no longer matches is simply not found, and compiled.

At start, seed() copies the files a cache lacks, never overwriting one.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
import types
from collections.abc import Mapping
from pathlib import Path

MANIFEST = "manifest.json"
RUN_TIME_WORKSPACE = Path("/app/data/cache/flashinfer")  # settings' default CACHE_DIR + sglang_args' subfolder
FLASHINFER_MODULES = ("rope",)


def jit_only_flashinfer() -> None:
    """flashinfer/__init__ reads GPU 0's properties at import, so with no GPU `import flashinfer.jit` fails before
    any JIT code runs: stand in an empty package for it, so that only its jit subpackage loads."""
    spec = importlib.util.find_spec("flashinfer")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("flashinfer is not installed")
    package = types.ModuleType("flashinfer")
    package.__path__ = list(spec.submodule_search_locations)
    sys.modules["flashinfer"] = package


def _build_one(arch: str) -> None:
    """In a process of its own (FlashInfer fixes its cache folder from the architectures at import)."""
    jit_only_flashinfer()
    for name in FLASHINFER_MODULES:  # flashinfer.jit.<name>.gen_<name>_module: the names the manifest lists
        spec = getattr(importlib.import_module(f"flashinfer.jit.{name}"), f"gen_{name}_module")()
        spec.build(verbose=False)
        print(f"  {spec.name} for {arch}: {spec.jit_library_path}", flush=True)


def _module(name: str) -> list[str]:
    """How to run this file, or its sibling kernel_record, in a new process: as the package's module, or (in the
    Dockerfile, where both are copied beside each other) as a script. Not as a script from inside the package:
    its folder would come first on sys.path, and its modules could shadow others."""
    if __spec__ is not None and __package__:
        return ["-m", f"{__package__}.{name}"]
    return [str(Path(__file__).with_name(f"{name}.py"))]


def _recorded_modules(record: Path) -> list[str]:
    return sorted({json.loads(line)["module"] for line in record.read_text().splitlines() if line.strip()})


def _version(dist: str) -> str:
    """The installed version of `dist` for the manifest; "unknown" in a site unpacked without its metadata
    (tools/gpu's device stage)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "unknown"


def build_recorded(seed: Path, archs: list[str], records: list[Path]) -> dict[str, object]:
    """Replays the recorded SGLang JIT builds for each architecture into seed/sglang-jit (kernel_record.py, one
    process an architecture: SGLang fixes its target for a process's life). Fails when a kernel fails to build."""
    missing = [str(r) for r in records if not r.is_file()]
    if missing:
        raise SystemExit(f"no kernel record at {', '.join(missing)}: a GPU start with the image's plugin writes one")
    jit = seed / "sglang-jit"
    seed.mkdir(parents=True, exist_ok=True)
    merged = seed / "kernel-builds.jsonl"  # kernel_record reads one file and keeps each build once
    merged.write_text("".join(r.read_text().rstrip("\n") + "\n" for r in records))
    try:
        for arch in archs:
            t0 = time.monotonic()
            env = dict(os.environ, SGLANG_JIT_CACHE_DIR=str(jit))
            done = subprocess.run([sys.executable, *_module("kernel_record"), str(merged), arch], env=env)
            if done.returncode:
                raise SystemExit(
                    f"replaying the SGLang kernel record for {arch} failed (the lines above name the kernel): "
                    "fix or drop that record line, or build with KERNEL_ARCHS=none (a start compiles them instead)"
                )
            print(f"sglang JIT kernels for {arch}: {time.monotonic() - t0:.0f} s", flush=True)
        modules = _recorded_modules(merged)
    finally:
        merged.unlink()
    for lock in jit.rglob("*.lock"):  # SGLang's build locks (".lock"): a start makes its own
        lock.unlink()
    return {"env": "SGLANG_JIT_CACHE_DIR", "path": None, "version": _version("sglang"), "archs": archs,
            "modules": modules}  # fmt: skip


def build(
    seed: Path, archs: list[str], workspace: Path = RUN_TIME_WORKSPACE, records: list[Path] | None = None
) -> dict[str, dict[str, object]]:
    """Builds FlashInfer's modules for each architecture under `workspace`, then moves them into seed/flashinfer,
    replays the kernel `records` into seed/sglang-jit, and writes seed/manifest.json. `workspace` must not exist
    yet: the seed holds only what this build made."""
    if workspace.exists():
        raise SystemExit(f"{workspace} exists: the kernel seed is built into an empty folder")
    for arch in archs:
        t0 = time.monotonic()
        env = dict(os.environ, FLASHINFER_CUDA_ARCH_LIST=arch, FLASHINFER_WORKSPACE_BASE=str(workspace))
        subprocess.run([sys.executable, *_module("kernel_seed"), "_one", arch], env=env, check=True)
        print(f"flashinfer {' '.join(FLASHINFER_MODULES)} for {arch}: {time.monotonic() - t0:.0f} s", flush=True)
    for lock in workspace.rglob("*.lock"):  # FlashInfer's file locks: a start makes its own
        lock.unlink()
    seed.mkdir(parents=True, exist_ok=True)
    shutil.move(str(workspace), str(seed / "flashinfer"))  # a rename on one disk: mtimes kept, as ninja needs
    manifest: dict[str, dict[str, object]] = {
        "flashinfer": {
            "env": "FLASHINFER_WORKSPACE_BASE",
            "path": str(workspace),
            "version": _version("flashinfer-python"),
            "archs": archs,
            "modules": list(FLASHINFER_MODULES),
        }
    }
    if records:
        manifest["sglang-jit"] = build_recorded(seed, archs, records)
    (seed / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def _copy_missing(src: Path, dest: Path) -> int:
    copied = 0
    for path in sorted(src.rglob("*")):
        target = dest / path.relative_to(src)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        elif not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)  # mtimes kept: ninja compares them with the sources'
            copied += 1
    return copied


def seed(seed_dir: Path, env: Mapping[str, str]) -> list[str]:
    """Copies the image's prebuilt kernels into the caches `env` names (the children's environment): FlashInfer's
    where that cache is the folder they were built for, SGLang's (path null: content-addressed) wherever it is.
    Returns one line per kernel set, for the start-up log."""
    manifest_path = seed_dir / MANIFEST
    if not manifest_path.is_file():
        return []
    lines = []
    for name, entry in json.loads(manifest_path.read_text()).items():
        what = f"{name} {', '.join(entry['modules'])} ({' '.join(entry['archs'])})"
        if not env.get(entry["env"]):
            lines.append(f"prebuilt {what} not used: this start sets no {entry['env']}")
            continue
        dest = Path(env[entry["env"]])
        if entry["path"] is not None and dest != Path(entry["path"]):
            lines.append(
                f"prebuilt {what} not used: built for {entry['env']}={entry['path']}, this start has {dest} "
                "(it compiles on first use instead)"
            )
            continue
        try:
            copied = _copy_missing(seed_dir / name, dest)
        except OSError as e:
            lines.append(f"prebuilt {what} not copied into {dest}: {e} (it compiles on first use instead)")
            continue
        kept = "" if copied else ", all there already"
        lines.append(f"prebuilt {what}: {copied} file{'' if copied == 1 else 's'} copied into {dest}{kept}")
    return lines


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "_one":
        _build_one(argv[1])
        return 0
    import argparse

    parser = argparse.ArgumentParser(prog="kernel_seed.py", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    cmd = sub.add_parser("build", help="build the kernels into SEED_DIR (no GPU needed; nvcc, ninja)")
    cmd.add_argument("seed_dir", type=Path)
    cmd.add_argument("archs", nargs="+", metavar="ARCH", help="compute capability, like 9.0a")
    cmd.add_argument("--for", dest="workspace", metavar="WORKSPACE", type=Path, default=RUN_TIME_WORKSPACE,
                     help=f"FlashInfer's cache folder at run time (default {RUN_TIME_WORKSPACE})")  # fmt: skip
    cmd.add_argument("--record", dest="records", metavar="FILE", type=Path, action="append", default=[],
                     help="a GPU start's record of SGLang's JIT builds (kernel-builds.jsonl); repeatable")  # fmt: skip
    args = parser.parse_args(argv)
    build(args.seed_dir, args.archs, args.workspace, args.records)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
