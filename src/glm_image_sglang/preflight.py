"""Checks that need the machine, run before the multi-minute model load. Each failure names the fix.

probe_* functions read the machine; check_* functions turn facts into findings. Warnings print
`WARNING: ...`, errors raise (exit codes in errors.py).
"""

from __future__ import annotations

import ctypes
import errno
import importlib.util
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable
from importlib import metadata
from pathlib import Path

from .errors import ConfigError, ResourceError
from .models import GiB
from .plan import Gpu, Machine, Plan
from .settings import Settings


def warn(message: str) -> None:
    print(f"WARNING: {message}", file=sys.stderr, flush=True)


# --- probes -------------------------------------------------------------------------------------


def probe_gpus(env: dict[str, str] | None = None) -> tuple[tuple[Gpu, ...], str]:
    """GPUs from nvidia-smi (injected by the NVIDIA runtime), filtered by CUDA_VISIBLE_DEVICES: memory in
    total and free now (a GPU shared with another process is planned for what is free)."""
    env = dict(os.environ if env is None else env)
    smi = shutil.which("nvidia-smi", path=env.get("PATH"))
    if smi is None:
        return (), "nvidia-smi not found: the container has no GPU access"
    try:
        out = subprocess.run(
            [smi, "--query-gpu=index,name,memory.total,memory.free", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=30,
            env=env,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return (), f"nvidia-smi failed: {e}"
    if out.returncode != 0:
        detail = (out.stderr or out.stdout).strip().splitlines()
        return (), f"nvidia-smi failed: {detail[-1] if detail else f'exit {out.returncode}'}"
    gpus = []
    for line in out.stdout.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) in (3, 4) and parts[0].isdigit() and parts[2].isdigit():
            free = int(parts[3]) * 1024 * 1024 if len(parts) == 4 and parts[3].isdigit() else None
            gpus.append(Gpu(int(parts[0]), parts[1], int(parts[2]) * 1024 * 1024, free))
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and re.fullmatch(r"\s*(\d+\s*(,\s*\d+\s*)*)?", visible):
        wanted = [int(x) for x in visible.split(",") if x.strip()]
        by_index = {g.index: g for g in gpus}
        gpus = [by_index[i] for i in wanted if i in by_index]
        if not gpus:
            return (), f"CUDA_VISIBLE_DEVICES={visible!r} hides every GPU nvidia-smi lists"
    return tuple(gpus), "nvidia-smi" if gpus else "nvidia-smi lists no GPU"


def probe_memory_limit(cgroup_root: Path = Path("/sys/fs/cgroup"), meminfo: Path = Path("/proc/meminfo")) -> int | None:
    """The container's memory limit (cgroup v2, then v1), else physical memory."""
    for candidate in (cgroup_root / "memory.max", cgroup_root / "memory" / "memory.limit_in_bytes"):
        try:
            raw = candidate.read_text().strip()
        except OSError:
            continue
        if raw.isdigit() and int(raw) < (1 << 60):
            return int(raw)
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def probe_machine(env: dict[str, str] | None = None) -> Machine:
    gpus, how = probe_gpus(env)
    return Machine(gpus, how, probe_memory_limit())


def _sglang_sources(wanted: Callable[[str], bool]) -> list[str] | None:
    """The text of the installed SGLang's source files whose path `wanted` accepts, read without importing
    SGLang (importing takes ~20 s). None when SGLang is not installed as a distribution."""
    try:
        dist = metadata.distribution("sglang")
    except metadata.PackageNotFoundError:
        return None
    texts = []
    for f in dist.files or []:
        if wanted(str(f)):
            try:
                texts.append(Path(str(dist.locate_file(f))).read_text(encoding="utf-8", errors="replace"))
            except OSError:
                continue
    return texts


def probe_sglang_flags() -> frozenset[str] | None:
    """The `sglang serve` flags of the installed SGLang, read from its source. None when SGLang is not
    installed as a distribution."""
    texts = _sglang_sources(lambda f: "multimodal_gen/runtime/server_args" in f and f.endswith(".py"))
    flags = {flag for text in texts or [] for flag in re.findall(r"[\"'](--[a-z0-9][a-z0-9-]*)[\"']", text)}
    return frozenset(flags) or None


def ar_graph_flag_from(texts: list[str]) -> str | None:
    """The flag that caps the batch sizes SGLang's LLM runtime captures decode CUDA graphs for, in its own
    spelling: 0.5.23 derives its flags from dataclass fields (`cuda_graph_max_bs_decode`, where
    `--cuda-graph-max-bs` is an ambiguous prefix), 0.5.16 names `--cuda-graph-max-bs`. None: neither."""
    joined = "\n".join(texts)
    if re.search(r"\bcuda_graph_max_bs_decode\s*:", joined):
        return "--cuda-graph-max-bs-decode"
    if re.search(r"[\"']--cuda-graph-max-bs[\"']", joined):
        return "--cuda-graph-max-bs"
    return None


def probe_ar_graph_flag() -> str | None:
    """ar_graph_flag_from the installed SGLang's LLM-runtime arguments (GLM_AR=srt), read from its source."""
    texts = _sglang_sources(lambda f: "sglang/srt/server_args" in f or "sglang/srt/arg_groups/" in f)
    return ar_graph_flag_from(texts) if texts else None


def sglang_loads_plugins() -> bool:
    """Whether the installed SGLang loads `sglang.multimodal_gen.plugins` entry points in its workers
    (0.5.23 does, 0.5.16 does not), read from its source."""
    texts = _sglang_sources(lambda f: f.endswith("multimodal_gen/runtime/platforms/plugins.py"))
    return any('"sglang.multimodal_gen.plugins"' in text for text in texts or [])


def sglang_version() -> str | None:
    try:
        return metadata.version("sglang")
    except metadata.PackageNotFoundError:
        return None


def free_port(host: str, start: int, avoid: Iterable[int] = ()) -> int:
    skip = set(avoid)
    for port in range(start, min(start + 200, 65536)):
        if port not in skip and port_free(host, port):
            return port
    raise ResourceError(f"no free port in {start}-{start + 199} on {host}; set SCHEDULER_PORT/MASTER_PORT.")


def free_port_pair(host: str, start: int, avoid: Iterable[int] = ()) -> int:
    """The first port p from start with p and p + 1 free (SGLang binds its broker on p + 1)."""
    skip = set(avoid)
    for port in range(start, min(start + 200, 65535)):
        if not {port, port + 1} & skip and port_free(host, port) and port_free(host, port + 1):
            return port
    raise ResourceError(f"no two adjacent free ports in {start}-{start + 199} on {host}; set SGLANG_PORT.")


def port_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        # as servers bind: a port whose last connections linger in TIME_WAIT (a restarted container
        # in the same pod) is free; one with a listener is not
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


# --- checks -------------------------------------------------------------------------------------


def _fmt(n: int) -> str:
    return f"{n / GiB:.1f} GiB"


def check_resources(settings: Settings, plan: Plan, machine: Machine, model_name: str) -> None:
    """Host memory (the field's 40-50 GB OOMKill at load) and GPU memory against the plan's estimates."""
    limit = machine.host_memory_limit
    if limit is not None and plan.host_need_bytes > limit:
        message = (
            f"{model_name} with OFFLOAD={plan.offload} needs about {_fmt(plan.host_need_bytes)} of host RAM "
            f"while loading, but the memory limit is {_fmt(limit)}: the pod would be OOMKilled during load. "
            "Raise the memory limit, or serve it on GPUs with more memory so that OFFLOAD=auto keeps it there "
            "(host RAM then stays near 8 GiB; Wan2.2-A14B needs a 141 GB GPU such as an H200 for that)."
        )
        if settings.preflight == "enforce" and plan.offload in ("expert-swap", "dit-layerwise", "dit"):
            raise ResourceError(message + " Set PREFLIGHT=warn to start anyway.")
        warn(message)
    if plan.num_gpus and machine.gpus:
        gpus = machine.gpus[: plan.num_gpus]
        per_gpu = min(g.usable_bytes for g in gpus)
        shared = any(g.usable_bytes < g.memory_bytes for g in gpus)
        if plan.gpu_need_bytes > per_gpu:
            message = (
                f"{model_name} with OFFLOAD={plan.offload} needs about {_fmt(plan.gpu_need_bytes)} per GPU, "
                f"the GPU has {_fmt(per_gpu)}{' free (another process holds the rest)' if shared else ''}: it "
                f"would run out of GPU memory. Set OFFLOAD=auto to let the launcher choose what to keep in host RAM."
            )
            if settings.preflight == "enforce":
                raise ResourceError(message + " Set PREFLIGHT=warn to start anyway.")
            warn(message)


def check_writable(paths: Iterable[Path]) -> None:
    """Outputs, uploads and caches must be writable by this UID (OpenShift assigns a random one)."""
    uid, gid = os.getuid(), os.getgid()
    for path in paths:
        try:
            path.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
                pass
        except OSError as e:
            hint = (
                "the root filesystem is read-only: mount a writable volume (emptyDir) there or set DATA_DIR"
                if e.errno == errno.EROFS
                else f"run with group 0 (docker run --user {uid}:0) so the image's group-writable dirs apply, "
                "or mount a writable volume there"
            )
            raise ResourceError(f"{path} is not writable for UID {uid} GID {gid} ({e.strerror}): {hint}.") from None


def check_port(host: str, port: int, what: str = "") -> None:
    if not port_free(host, port):
        if what:
            raise ResourceError(
                f"port {port} on {host}, needed by {what}, is already in use. Stop the other process or move "
                f"the server to another port (PORT / SGLANG_PORT)."
            )
        raise ResourceError(
            f"port {port} on {host} is already in use. Stop the other process, or set PORT to a free port "
            f"(and publish it: -p {port}:{port})."
        )


def check_toolchain(require_gpu: bool) -> None:
    """The field's run-time failures: Triton needs a C compiler; SGLang's kernels need libnuma.so.1."""
    if not require_gpu:
        return
    if not any(shutil.which(cc) for cc in ("cc", "gcc", "clang")):
        raise ResourceError(
            "no C compiler (cc/gcc) on PATH: Triton compiles a helper at first use and would fail with "
            "'Failed to find C compiler'. Use the image as built (CUDA devel base with gcc)."
        )
    try:
        ctypes.CDLL("libnuma.so.1")
    except OSError:
        raise ResourceError(
            "libnuma.so.1 is missing: SGLang's kernels fail with 'ImportError: libnuma.so.1'. "
            "Install libnuma1 in the image (apt-get install libnuma1)."
        ) from None


def check_attention_backend(backend: str) -> None:
    """ATTENTION_BACKEND=fa2 runs on the flash-attn package, which only an image built with
    FLASH_ATTN=source has: say so now, not as an ImportError in SGLang's worker after the load."""
    if backend == "fa2" and importlib.util.find_spec("flash_attn") is None:
        raise ConfigError(
            "ATTENTION_BACKEND=fa2 needs the flash-attn package, and this image has none (built with "
            "FLASH_ATTN=skip). Use ATTENTION_BACKEND=auto (SGLang's FlashAttention 3), or rebuild the image "
            "with FLASH_ATTN=source."
        )
