"""Build what the GPU device lacks, as xz parts small enough to travel with a device call.

usage: python3 tools/gpu/payload.py [--part-mib 60]

Reads tools/gpu/packages.txt, downloads the wheels for CPython 3.12 / x86-64 (no dependencies
resolved: the list is the resolved, reduced set), unpacks each group into a site tree and writes
.gpu/parts/<group>.tar.xz.NN plus .gpu/parts/MANIFEST (sha256 of every group). Groups:
  core     SGLang 0.5.16 and the Python packages the device image lacks (about 60 MiB)
  kernels  CuTe DSL, flashinfer, quack: needed by full-size layers (about 75 MiB)
  fa3      sglang-kernel's flash-attention 3 library, flash_ops.abi3.so (about 140 MiB)
The device side (tools/gpu/device.sh stage) joins, checks and unpacks them into /tmp/site.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
WORK = REPO / ".gpu"
PLATFORMS = [f"manylinux_2_{n}_x86_64" for n in range(17, 40)] + ["manylinux2014_x86_64", "linux_x86_64", "any"]
FA3_LIB = "flash_ops.abi3.so"


def read_packages() -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for line in (REPO / "tools/gpu/packages.txt").read_text().splitlines():
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


def unpack(wheel: Path, site: Path, fa3_dir: Path) -> None:
    """Unpack like `pip install --target`, minus console scripts, static libraries and FA3."""
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
            target = fa3_dir / name if name.endswith(f"sgl_kernel/{FA3_LIB}") else site / name
            if "sgl_kernel/sm100/" in name:
                continue  # Blackwell builds; the device is Hopper (sm90)
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
    (info / "entry_points.txt").write_text(
        "[sglang.multimodal_gen.plugins]\nglm_image_sglang = glm_image_sglang.sglang_plugin:register\n"
    )
    (info / "RECORD").write_text("")


def pack(group: str, root: Path, out: Path, part_bytes: int) -> list[tuple[str, str]]:
    """root's contents, relative to the device's site folder, as tar.xz cut into parts."""
    archive = WORK / f"{group}.tar.xz"
    with archive.open("wb") as sink:
        tar = subprocess.Popen(["tar", "-cf", "-", "-C", str(root), "."], stdout=subprocess.PIPE)
        subprocess.run(["xz", "-T2", "-7"], stdin=tar.stdout, stdout=sink, check=True)
        if tar.wait() != 0:
            raise SystemExit(f"ERROR: tar of {root} failed")
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
    parser.add_argument("--groups", default="core,kernels,fa3")
    args = parser.parse_args()
    groups = read_packages()
    wheels = WORK / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    download([r for reqs in groups.values() for r in reqs], wheels)
    out = WORK / "parts"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    fa3_dir = WORK / "build" / "fa3"
    shutil.rmtree(fa3_dir, ignore_errors=True)
    manifest = []
    for group, reqs in groups.items():
        site = WORK / "build" / group / "site"
        shutil.rmtree(site, ignore_errors=True)
        for req in reqs:
            unpack(wheel_for(req, wheels), site, fa3_dir)
        if group == "core":
            own_dist_info(site)
        if group in args.groups.split(","):
            manifest += pack(group, site, out, args.part_mib * 2**20)
    if "fa3" in args.groups.split(","):
        manifest += pack("fa3", fa3_dir, out, args.part_mib * 2**20)
    (out / "MANIFEST").write_text("".join(f"{sha}  {name}\n" for name, sha in manifest))
    return 0


if __name__ == "__main__":
    sys.exit(main())
