"""Build what the GPU device lacks, as xz parts small enough to travel with a device call.

usage: python3 tools/gpu/payload.py [--stack 0.5.16|0.5.23] [--part-mib 60] [--level 6]

Reads tools/gpu/packages.txt (--stack 0.5.16, the default) or packages-0.5.23.txt, downloads the wheels for
CPython 3.12 / x86-64 (no dependencies resolved: the list is the resolved, reduced set), unpacks each group
into a site tree and writes .gpu/parts/<group>.tar.xz.NN plus .gpu/parts/MANIFEST (sha256 of every group;
.gpu/parts-0.5.23/ for that stack). Groups of 0.5.16:
  core     SGLang 0.5.16 and the Python packages the device image lacks (about 60 MiB)
  kernels  CuTe DSL, flashinfer, quack: needed by full-size layers (about 75 MiB)
  fa3      sglang-kernel's flash-attention 3 library, flash_ops.abi3.so (about 140 MiB)
0.5.23, the image's SGLang, needs torch 2.14.1 where the device has 2.11: its list adds the groups torch,
triton and nccl (22 parts carried in 19 calls, against 8 parts).
The device side (tools/gpu/device.py stage [--parts DIR]) joins, checks and unpacks them into /tmp/site.

Packing is the slow part (the fa3 library is 1.1 GB): each group's archive is kept in a cache outside
the parts ($GPU_PAYLOAD_CACHE, default .gpu/cache in this checkout: the checkout outlives a session's machine,
~/.cache did not) under a key made of its wheels' names, the xz level and this file's packing rules, so a
second run (a later session in the same checkout, or after a `git pull`) only cuts parts.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from device import entry_points_txt

REPO = Path(__file__).resolve().parents[2]
WORK = REPO / ".gpu"
PLATFORMS = [f"manylinux_2_{n}_x86_64" for n in range(17, 40)] + ["manylinux2014_x86_64", "linux_x86_64", "any"]
FA3_LIB = "flash_ops.abi3.so"
CACHE = Path(os.environ.get("GPU_PAYLOAD_CACHE", WORK / "cache"))
PACK_RULES = "1"  # bump when unpack()/pack() change what goes into an archive


STACKS = {"0.5.16": ("packages.txt", "parts"), "0.5.23": ("packages-0.5.23.txt", "parts-0.5.23")}


def read_packages(listing: str) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for line in (REPO / "tools/gpu" / listing).read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            group, req = line.split()
            groups.setdefault(group, []).append(req)
    return groups


def download(reqs: list[str], dest: Path) -> None:
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
           "--python-version", "3.12", "--implementation", "cp", "-d", str(dest)]  # fmt: skip
    for platform in PLATFORMS:
        cmd += ["--platform", platform]
    subprocess.run(cmd + reqs, check=True)


def wheel_for(req: str, wheels: Path) -> Path:
    name, version = req.split("==")
    stem = name.replace("-", "_").lower()
    found = [w for w in wheels.glob("*.whl") if w.name.lower().startswith(f"{stem}-{version}-")]
    if len(found) != 1:
        raise SystemExit(f"ERROR: expected one wheel for {req} in {wheels}, found {found}")
    return found[0]


def unpack(wheel: Path, site: Path, only_fa3: bool) -> None:
    """Unpack like `pip install --target`, minus console scripts, static libraries, Blackwell builds and
    the FA3 library, which travels as a group of its own (only_fa3: that library alone)."""
    with zipfile.ZipFile(wheel) as zf:
        for info in zf.infolist():
            name = info.filename
            parts = name.split("/")
            if parts[0].endswith(".data"):
                if parts[1] not in ("purelib", "platlib"):
                    continue  # scripts, headers
                name = "/".join(parts[2:])
            if name.endswith(".a") or name.endswith("/"):
                continue  # xgrammar ships a 65 MB static library nothing loads
            if "sgl_kernel/sm100/" in name:
                continue  # Blackwell builds; the device is Hopper (sm90)
            if name.endswith(f"sgl_kernel/{FA3_LIB}") != only_fa3:
                continue
            target = site / name
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, target.open("wb") as dst:
                shutil.copyfileobj(src, dst)
            if (info.external_attr >> 16) & 0o111:
                target.chmod(0o755)


def own_dist_info(site: Path) -> None:
    """Metadata for this project so SGLang finds its plugin entry point; the code itself comes from
    the working tree (PYTHONPATH=src first)."""
    info = site / "glm_image_sglang-0.1.0.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: glm-image-sglang\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text(entry_points_txt())  # device.py's stage writes them again
    (info / "RECORD").write_text("")


def group_key(group: str, wheels: list[Path], level: int) -> str:
    """What an archive's content depends on: the wheels it was unpacked from and how it was packed."""
    text = "\n".join([group, str(level), PACK_RULES, *sorted(w.name for w in wheels)])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def pack(group: str, root: Path, key: str, level: int) -> Path:
    """root's contents, relative to the device's site folder, as one tar.xz in the cache (reused when
    the key matches)."""
    archive = CACHE / f"{group}-{key}.tar.xz"
    if archive.exists():
        print(f"{group}: reusing {archive}", flush=True)
        return archive
    CACHE.mkdir(parents=True, exist_ok=True)
    partial = archive.with_suffix(".partial")
    with partial.open("wb") as sink:
        tar = subprocess.Popen(["tar", "-cf", "-", "-C", str(root), "."], stdout=subprocess.PIPE)
        subprocess.run(["xz", f"-T{os.cpu_count() or 2}", f"-{level}"], stdin=tar.stdout, stdout=sink, check=True)
        if tar.wait() != 0:
            raise SystemExit(f"ERROR: tar of {root} failed")
    partial.rename(archive)
    return archive


def cut(group: str, archive: Path, out: Path, part_bytes: int) -> list[tuple[str, str]]:
    """The archive as parts of at most part_bytes, with the sha256 rows of the MANIFEST."""
    data = archive.read_bytes()
    rows = []
    for i in range(0, len(data), part_bytes):
        part = out / f"{group}.{i // part_bytes:02d}"
        part.write_bytes(data[i : i + part_bytes])
        rows.append((part.name, hashlib.sha256(part.read_bytes()).hexdigest()))
    rows.append((f"{group}.tar.xz", hashlib.sha256(data).hexdigest()))
    print(f"{group}: {len(data) / 2**20:.1f} MiB in {len(rows) - 1} part(s)", flush=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part-mib", type=int, default=60)
    parser.add_argument("--stack", choices=sorted(STACKS), default="0.5.16", help="which SGLang (see above)")
    parser.add_argument("--groups", default="all", help="comma-separated groups, or all")
    parser.add_argument("--level", type=int, default=6, help="xz level (6: fa3 in ~5 min on 2 cores; 9 saves little)")
    args = parser.parse_args()
    listing, parts = STACKS[args.stack]
    groups = read_packages(listing)
    # FA3 comes from sglang-kernel: its library travels as a group of its own
    groups["fa3"] = [r for reqs in groups.values() for r in reqs if r.startswith("sglang-kernel==")]
    wanted = list(groups) if args.groups == "all" else args.groups.split(",")
    wheels = WORK / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    download(sorted({r for reqs in groups.values() for r in reqs}), wheels)
    out = WORK / parts
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    manifest = []
    for group in (g for g in groups if g in wanted):
        used = [wheel_for(req, wheels) for req in groups[group]]
        key = group_key(group, used, args.level)
        site = WORK / "build" / args.stack / group  # per stack: both have a core group
        if not (CACHE / f"{group}-{key}.tar.xz").exists():
            shutil.rmtree(site, ignore_errors=True)
            for wheel in used:
                unpack(wheel, site, group == "fa3")
            if group == "core":
                own_dist_info(site)
        manifest += cut(group, pack(group, site, key, args.level), out, args.part_mib * 2**20)
        shutil.rmtree(site, ignore_errors=True)  # the archive is kept; the unpacked tree (GBs) is not needed again
    (out / "MANIFEST").write_text("".join(f"{sha}  {name}\n" for name, sha in manifest))
    print_calls(out, args.part_mib * 2**20)
    return 0


def print_calls(out: Path, limit: int) -> None:
    """The device calls that carry the parts: each call's carry list (MANIFEST each time, so any call can
    unpack what is complete), parts packed first-fit under the call's 64 MiB beside the working tree."""
    calls: list[list[Path]] = []
    for part in sorted((p for p in out.iterdir() if p.name != "MANIFEST"), key=lambda p: -p.stat().st_size):
        for call in calls:
            if sum(p.stat().st_size for p in call) + part.stat().st_size <= limit:
                call.append(part)
                break
        else:
            calls.append([part])
    calls.sort(key=lambda call: min(p.name for p in call))  # group by group: each unpacks as soon as it is whole
    stage = f"python3 tools/gpu/device.py stage --parts {out.relative_to(REPO)}"
    print(f"{len(calls)} calls; carry for each (with `{stage}`):")
    for call in calls:
        print(json.dumps([str(p.relative_to(REPO)) for p in [*sorted(call), out / "MANIFEST"]]))


if __name__ == "__main__":
    sys.exit(main())
