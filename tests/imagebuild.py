"""Building the product image for tests: a local Debian base (no registry is reachable here), a CUDA
devel stand-in, then ./build.sh with SGLang from git (a local mirror of the release) and flash-attn
skipped. Shared by the container and end-to-end tiers (the `image` fixture in tests/conftest.py)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
DOCKER = os.environ.get("DOCKER", "/usr/bin/docker")
DEBIAN_BASE = "local/debian:bookworm"
# tagged with its recipe's digest: a changed recipe builds a new stand-in instead of reusing a stale one
CUDA_BASE = (
    "local/cuda-devel-substitute:13.0-"
    + hashlib.sha256((ROOT / "tests/container/cuda-substitute/Dockerfile").read_bytes()).hexdigest()[:12]
)
TAG = "ci"
IMAGE = f"glm-image-sglang:{TAG}"
RANDOM_UID = "1000650000:0"
UNITS = {"Mi": "m", "Gi": "g"}


def manifest_run_flags(manifest: Path = ROOT / "deploy" / "base" / "statefulset.yaml") -> list[str]:
    """`docker run` flags for the pod the manifests declare, so the container tests run the image the
    way the cluster will: each securityContext field, the emptyDir mounts, /dev/shm; plus no network
    (air-gapped). The UID is RANDOM_UID, as OpenShift assigns one. A securityContext field this does
    not know is an error, so the tests cannot silently drift from the manifests."""
    import yaml

    pod = yaml.safe_load(manifest.read_text())["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    sc = container["securityContext"]
    unknown = set(sc) - {"readOnlyRootFilesystem", "capabilities", "allowPrivilegeEscalation", "runAsNonRoot"}
    unknown |= set(pod["securityContext"]) - {"runAsNonRoot", "seccompProfile"}
    assert not unknown, f"{manifest} sets securityContext fields the container tests do not reproduce: {unknown}"
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}  # Docker's default profile
    flags = ["--network", "none"]
    if sc["readOnlyRootFilesystem"]:
        flags.append("--read-only")
    flags += [arg for cap in sc["capabilities"]["drop"] for arg in ("--cap-drop", cap)]
    if sc["allowPrivilegeEscalation"] is False:
        flags += ["--security-opt", "no-new-privileges"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    for mount in container["volumeMounts"]:
        empty = volumes[mount["name"]].get("emptyDir")
        if empty is None:
            continue
        if mount["mountPath"] == "/dev/shm":
            size = empty["sizeLimit"]
            flags += ["--shm-size", size[:-2] + UNITS[size[-2:]]]
        else:
            flags += ["--tmpfs", f"{mount['mountPath']}:rw,exec,mode=1777"]
    return flags


OPENSHIFT = manifest_run_flags()
TITLE_LABEL = "org.opencontainers.image.title=glm-image-sglang"
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")
LOGS = ROOT / ".cache"
SGLANG_VERSION = "0.5.23"
# What the tests build: the real Dockerfile on the local CUDA stand-in, SGLang by the default git path
# (from a local mirror of the release: gitmirror.py), diffusers/transformers as SGLang pins them.
BUILD_ENV = os.environ | {
    "DOCKER": DOCKER,
    "BASE_IMAGE": CUDA_BASE,
    "DIFFUSERS_SOURCE": "pinned",
    "TRANSFORMERS_SOURCE": "pinned",
    "FLASH_ATTN": "skip",
    "KERNEL_ARCHS": "9.0a",  # one architecture: the prebuild is proven, at ~2 min instead of ~8
}
_mirror = None


def sglang_mirror():
    """The local git mirror of SGLang (made once, served while the test session runs)."""
    global _mirror
    if _mirror is None:
        from gitmirror import serve

        python = docker("run", "--rm", "--network", "none", CUDA_BASE, "python3", "-c",
                        "import sys; print('%d.%d' % sys.version_info[:2])").stdout.strip()  # fmt: skip
        _mirror = serve(LOGS / "sglang-mirror", SGLANG_VERSION, python)
    return _mirror


def build_env() -> dict[str, str]:
    """./build.sh's environment for the test image: SGLANG_SOURCE=git:<branch> of the local mirror."""
    mirror = sglang_mirror()
    return BUILD_ENV | {"SGLANG_SOURCE": f"git:{mirror.branch}", "SGLANG_GIT_URL": mirror.url}


def docker(*args: str, check: bool = True, timeout: float = 600, **kw) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([DOCKER, *args], capture_output=True, text=True, timeout=timeout, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"docker {' '.join(args[:3])} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


def image_exists(name: str) -> bool:
    return docker("image", "inspect", name, check=False).returncode == 0


def logged(name: str, cmd: list[str], env: dict[str, str] | None = None, timeout: float = 3600) -> float:
    LOGS.mkdir(exist_ok=True)
    log = LOGS / f"{name}.log"
    t0 = time.monotonic()
    with log.open("w") as f:
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, timeout=timeout, cwd=ROOT)
    elapsed = time.monotonic() - t0
    if proc.returncode != 0:
        raise AssertionError(f"{name} failed after {elapsed:.0f} s:\n{log.read_text()[-6000:]}")
    print(f"{name}: {elapsed:.0f} s (log: {log})")
    return elapsed


def build_image() -> str:
    """Builds the base images if missing, then the product image with ./build.sh (layer cache reused)."""
    if docker("info", check=False).returncode != 0:
        pytest.fail("Docker is not running: tests/run.sh installs and starts it (as root), or start dockerd")
    if not image_exists(DEBIAN_BASE) or os.environ.get("REBUILD"):
        rootfs = ROOT / ".cache" / "rootfs"
        subprocess.run(["rm", "-rf", str(rootfs)], check=True)
        logged("debootstrap", ["debootstrap", "--variant=minbase", "--include=ca-certificates,python3,python3-venv",
                               "bookworm", str(rootfs), os.environ.get("DEBIAN_MIRROR", "http://deb.debian.org/debian")])  # fmt: skip
        logged(
            "import", ["bash", "-c", f"tar -C {rootfs} -c . | {DOCKER} import -c 'ENV LANG=C.UTF-8' - {DEBIAN_BASE}"]
        )
        subprocess.run(["rm", "-rf", str(rootfs)], check=True)
    if not image_exists(CUDA_BASE) or os.environ.get("REBUILD"):
        secret = ["--secret", f"id=ca,src={HOST_CA}"] if HOST_CA.exists() else []
        logged(
            "cuda-substitute",
            [
                DOCKER,
                "build",
                "--progress=plain",
                *secret,
                "-t",
                CUDA_BASE,
                str(ROOT / "tests/container/cuda-substitute"),
            ],
            env=os.environ | {"DOCKER_BUILDKIT": "1"},
        )
    logged("build", ["./build.sh", "--tag", TAG], env=build_env())
    prune_stale_images()
    return IMAGE


def prune_stale_images() -> None:
    """Removes this project's untagged images left by earlier test builds (each rebuild re-tags `ci` and
    leaves the previous one dangling, holding 12 GB of layers when a dependency changed). Only images
    labelled as this project's are touched."""
    docker("image", "prune", "-f", "--filter", "dangling=true", "--filter", f"label={TITLE_LABEL}", check=False)
