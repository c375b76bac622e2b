"""The GPU proof and benchmark, device side: this project's launcher + gateway in front of the real
SGLang diffusion server, on random-weight models of the real architectures. Runs from the repo root
on the lent GPU machine (no Docker there); what it measures goes to $OUT as JSON and logs.

  python3 tools/gpu/device.py stage [--parts DIR]   unpack the carried .gpu/parts (or DIR: .gpu/parts-0.5.23,
                                                     the image's SGLang and torch 2.14) into /tmp/site
  python3 tools/gpu/device.py build KEY [KEY ...]    build full-size folders under /tmp/models, in the
                                                     background (survives the call); `wait` joins it
  python3 tools/gpu/device.py scenario KEY [--stock] the scenario of docs/benchmarks.md for one model;
                                                     --stock: plain `sglang serve` with its defaults
  python3 tools/gpu/device.py starts KEY RUN [RUN ...]  start-up comparison in one call: each RUN is
                                                     ours-cold, ours-warm, stock-cold or stock-warm
                                                     (cold: empty kernel caches; warm: those of the
                                                     previous run of the same side), each until ready,
                                                     then the same first requests; prints the table
  python3 tools/gpu/device.py compare KEY --b N=V    ours with settings a (--a N=V, default none), then b,
                                                     the same request: s/step, end to end, ready, memory,
                                                     b's pixel drift from a (e.g. --b PRESET=fast)
  python3 tools/gpu/device.py matmul                 bf16 matmul TFLOP/s (burst and sustained)
  python3 tools/gpu/device.py torch-check            the staged torch on the GPU: versions, cuBLAS, cudnn, SDPA
  python3 tools/gpu/device.py prebuild [9.0a ...]    build the kernels a cold Wan start compiles, GPU hidden;
                                                     `starts ... --seed-kernels` starts cold with them
  python3 tools/gpu/device.py starts KEY ours-cold --image-kernels 9.0a   ours-cold with the image's prebuilt
                                                     kernels (kernel_seed.py, built first with the GPU hidden:
                                                     FlashInfer's RoPE and the last cold start's SGLang record)
  python3 tools/gpu/device.py fa2-build [--archs 90]  compile the flash-attn sdist carried in .gpu/fa2/ as the
                                                     Dockerfile does, in the background; `fa2-check` joins it,
                                                     checks flash_attn_func against SDPA and times it

The call sequence, sizes and results are in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
STAGE = Path("/tmp/stage")
SITE = Path("/tmp/site")
MODELS = Path("/tmp/models")
OUT = Path(os.environ.get("OUT", "/tmp/out"))
NAMES = {
    "glm-image": "GLM-Image",
    "wan2.2-t2v-a14b": "Wan2.2-T2V-A14B-Diffusers",
    "wan2.2-i2v-a14b": "Wan2.2-I2V-A14B-Diffusers",
    "wan2.2-ti2v-5b": "Wan2.2-TI2V-5B-Diffusers",
}
PORT = 30000
T_START = time.monotonic()
# --emulate-mib: a ballast process holds the rest of the GPU so that this much is free, as on a smaller card
# (the launcher plans for the free memory of a shared GPU); --env: settings for our launcher
EMULATE_MIB: int | None = None
SEED_KERNELS = False  # starts --seed-kernels
IMAGE_KERNELS: str | None = None  # starts --image-kernels ARCH
OURS_ENV: dict[str, str] = {}
# --plugin: SGLang 0.5.16 loads no plugins; tools/gpu/plugin_hook makes our SGLang children apply the image's
# plugin as 0.5.23 and main do, and tells our launcher so (e.g. --plugin --env OFFLOAD=expert-swap)
PLUGIN_HOOK = False


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    paths = [str(REPO / "src"), str(SITE), str(SITE / "nvidia_cutlass_dsl/dsl_packages")]
    paths += [p for p in os.environ.get("EXTRA_PYTHONPATH", "").split(":") if p]  # the CPU rehearsal's plugin
    env["PYTHONPATH"] = ":".join(paths)
    libs = sorted({str(p.parent) for p in SITE.glob("nvidia/*/lib/*.so*")})
    try:
        import nvidia  # the device's own CUDA wheels (cudnn, nccl, ...)

        for base in nvidia.__path__:
            libs += sorted({str(p.parent) for p in Path(base).glob("*/lib/*.so*")})
    except ImportError:
        pass
    env["LD_LIBRARY_PATH"] = ":".join([*libs, env.get("LD_LIBRARY_PATH", "")]).strip(":")
    env["PATH"] = f"{STAGE}/bin:{env['PATH']}"
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1")
    # the staged torch 2.14 (--parts .gpu/parts-0.5.23) was built against cudnn 9.24, the device has 9.19: same
    # major, the C API is the same; torch refuses an older minor only at its first cudnn call without this
    env.setdefault("PYTORCH_SKIP_CUDNN_COMPATIBILITY_CHECK", "1")
    # SGLang's stage times are CPU times: without a sync the denoising stage ends while up to a step's worth of
    # kernels is still queued, and that work shows up as decode time (0.5.23's perf_logger says so: "DecodingStage
    # readings came out 2-3x too high"). SYNC_STAGE_PROFILING drains the queue at each timer, but 0.5.16 times
    # (and syncs) each denoising step only with STAGE_LOGGING on; 0.5.23 also syncs at every stage's edges.
    env.update(SGLANG_DIFFUSION_SYNC_STAGE_PROFILING="1", SGLANG_DIFFUSION_STAGE_LOGGING="1")
    return env


# ---------------------------------------------------------------- stage


def entry_points_txt() -> str:
    """This project's entry points (SGLang's plugin groups) as pip writes them, from the working tree's
    pyproject.toml: SGLang finds the plugin through them while the code comes from PYTHONPATH=src."""
    import tomllib

    groups = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["entry-points"]
    return "".join(
        f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()) + "\n" for group, eps in groups.items()
    )


def stage(carried: Path) -> None:
    """Copy carried parts to /tmp/stage (kept while the machine stays warm), unpack complete groups. One stack
    a machine: the parts of another one would unpack over the same /tmp/site."""
    parts = STAGE / "parts"
    parts.mkdir(parents=True, exist_ok=True)
    for p in carried.glob("*"):
        shutil.copy2(p, parts / p.name)
    manifest = {}
    for line in (parts / "MANIFEST").read_text().splitlines():
        sha, name = line.split()
        manifest[name] = sha
    SITE.mkdir(exist_ok=True)
    for archive in sorted(n for n in manifest if n.endswith(".tar.xz")):
        group = archive.removesuffix(".tar.xz")
        done = STAGE / f"{group}.unpacked"
        names = sorted(n for n in manifest if n.startswith(group + ".") and n != archive)
        have = [n for n in names if (parts / n).exists()]
        if done.exists():
            log(f"{group}: unpacked already")
            continue
        if len(have) < len(names):
            log(f"{group}: {len(have)}/{len(names)} parts here, waiting for {sorted(set(names) - set(have))}")
            continue
        digest = hashlib.sha256()
        for n in names:
            digest.update((parts / n).read_bytes())
        if digest.hexdigest() != manifest[archive]:
            raise SystemExit(f"ERROR: {group}: joined parts do not match the MANIFEST checksum")
        t = time.monotonic()
        cat = subprocess.Popen(["cat", *[str(parts / n) for n in names]], stdout=subprocess.PIPE)
        xz = subprocess.Popen(["xz", "-d", "-T8"], stdin=cat.stdout, stdout=subprocess.PIPE)
        subprocess.run(["tar", "-x", "-C", str(SITE)], stdin=xz.stdout, check=True)
        done.touch()
        log(f"{group}: unpacked in {time.monotonic() - t:.0f} s")
    # .pyc files, as pip writes them at install (the image has them). The first starts on a fresh H200 spent
    # 25-39 s in imports, later ones 13-17 s; missing .pyc is one candidate (not established)
    compiled = STAGE / "site.compiled"
    groups = [n.removesuffix(".tar.xz") for n in manifest if n.endswith(".tar.xz")]
    if not compiled.exists() and all((STAGE / f"{g}.unpacked").exists() for g in groups):
        t = time.monotonic()
        subprocess.run([sys.executable, "-m", "compileall", "-q", "-j", "0", str(SITE)], capture_output=True)
        compiled.touch()
        log(f"site compiled to .pyc in {time.monotonic() - t:.0f} s")
    bin_dir = STAGE / "bin"
    bin_dir.mkdir(exist_ok=True)
    wrapper = bin_dir / "sglang"  # the wheel's console script, which a site tree lacks
    wrapper.write_text(
        f'#!/bin/sh\nexec {sys.executable} -c \'import sys; from sglang.cli.main import main; sys.argv[0] = "sglang"; '
        'sys.exit(main())\' "$@"\n'
    )
    wrapper.chmod(0o755)
    info = SITE / "glm_image_sglang-0.1.0.dist-info"  # from the core archive, as old as that archive
    if info.is_dir():
        (info / "entry_points.txt").write_text(entry_points_txt())
    log(f"site {subprocess.run(['du', '-sh', str(SITE)], capture_output=True, text=True).stdout.split()[0]}; "
        f"disk free {shutil.disk_usage('/tmp').free / 1e9:.0f} GB")  # fmt: skip


# ---------------------------------------------------------------- build


def build(keys: list[str], scale: str, device: str) -> None:
    """Build folders one after another in a detached session; `<key>.built` marks each."""
    MODELS.mkdir(exist_ok=True)
    steps = []
    for key in keys:
        out = MODELS / NAMES[key]
        cmd = f"{sys.executable} -m glm_image_sglang random-model {key} {out} --scale {scale} --device {device} --force"
        if "a14b" in key:
            cmd += " --link-experts"
        steps.append(f"rm -f {STAGE}/{key}.built; {cmd} > {STAGE}/build-{key}.log 2>&1 && touch {STAGE}/{key}.built")
    script = " ; ".join(steps) + f" ; touch {STAGE}/builds.idle"
    (STAGE / "builds.idle").unlink(missing_ok=True)
    subprocess.Popen(["bash", "-c", script], env=child_env(), start_new_session=True,
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    log(f"building {keys} in the background")


def wait_built(key: str, limit: float) -> bool:
    """True once `<key>.built` is there (at once when it already is, whatever the limit); else the build's tail."""
    deadline = time.monotonic() + limit
    while not (STAGE / f"{key}.built").exists():
        if (STAGE / "builds.idle").exists() or time.monotonic() >= deadline:
            break
        time.sleep(2)
    else:
        return True
    tail = (STAGE / f"build-{key}.log").read_text()[-1500:] if (STAGE / f"build-{key}.log").exists() else ""
    log(f"build of {key} not done: {tail}")
    return (STAGE / f"{key}.built").exists()


def gpu_used_each_mib() -> list[int] | None:
    """GPU memory in use on each GPU, by nvidia-smi (None without it: the CPU rehearsal)."""
    try:
        q = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                           capture_output=True, text=True)  # fmt: skip
    except FileNotFoundError:
        return None
    return [int(x) for x in q.stdout.split() if x.isdigit()]


# ---------------------------------------------------------------- sampling


class Sampler(threading.Thread):
    """Peak host memory of a process tree and GPU memory used, every 0.5 s. Host memory three ways: RSS
    summed over the processes (what earlier tables report; it counts shared pages once per process: the
    CUDA libraries every SGLang process maps, a checkpoint mmapped by several ranks), PSS (shared pages
    divided among their processes: what the tree really holds) and anonymous RSS (private memory, which a
    pod's limit cannot reclaim, unlike file pages), split further into file-backed and shared-memory RSS
    (pinned CUDA host buffers and mmapped checkpoints land in one or the other)."""

    def __init__(self, root_pid: int, gpu_offset_mib: int = 0) -> None:
        super().__init__(daemon=True)
        self.root, self.stop_flag, self.gpu_offset_mib = root_pid, False, gpu_offset_mib
        self.peak = {"rss": 0, "pss": 0, "anon": 0, "file": 0, "shmem": 0}
        self.peak_gpu_mib, self.samples = 0, 0
        self.peak_each_gpu_mib: list[int] = []  # per GPU, for the several-GPU layouts (the sum is above)
        self.started, self.peak_pss_at = time.monotonic(), 0.0  # seconds after the start: when PSS peaked
        self.peak_pss_by_process: dict[str, int] = {}  # "pid name" -> its PSS bytes at that peak
        self.marks: dict[str, tuple[int, int]] = {}

    def tree(self) -> list[int]:
        kids: dict[int, list[int]] = {}
        for p in os.listdir("/proc"):
            if p.isdigit():
                try:
                    ppid = int(Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[1])
                    kids.setdefault(ppid, []).append(int(p))
                except (OSError, ValueError, IndexError):
                    pass
        todo, pids = [self.root], []
        while todo:
            pid = todo.pop()
            pids.append(pid)
            todo += kids.get(pid, [])
        return pids

    def tree_memory(self) -> tuple[dict[str, int], dict[str, int]]:
        """Bytes of RSS, PSS, anonymous, file-backed and shared-memory RSS summed over the tree (a process that
        exits meanwhile counts 0), and each process's PSS ("pid name" -> bytes)."""
        sources = {
            "status": {"VmRSS:": "rss", "RssAnon:": "anon", "RssFile:": "file", "RssShmem:": "shmem"},
            "smaps_rollup": {"Pss:": "pss"},
        }
        total = {"rss": 0, "anon": 0, "pss": 0, "file": 0, "shmem": 0}
        by_process: dict[str, int] = {}
        for pid in self.tree():
            for source, fields in sources.items():
                try:
                    for line in Path(f"/proc/{pid}/{source}").read_text().splitlines():
                        parts = line.split()
                        if parts and parts[0] in fields:
                            total[fields[parts[0]]] += int(parts[1]) * 1024
                            if fields[parts[0]] == "pss":
                                name = Path(f"/proc/{pid}/comm").read_text().strip()
                                by_process[f"{pid} {name}"] = int(parts[1]) * 1024
                except (OSError, ValueError, IndexError):
                    pass
        return total, by_process

    def run(self) -> None:
        while not self.stop_flag:
            memory, by_process = self.tree_memory()
            each = gpu_used_each_mib()
            gpu = 0 if each is None else sum(each) - self.gpu_offset_mib
            each = each or []
            if len(each) > 1:
                if len(self.peak_each_gpu_mib) != len(each):  # the first sample
                    self.peak_each_gpu_mib = [0] * len(each)
                self.peak_each_gpu_mib = [max(a, b) for a, b in zip(self.peak_each_gpu_mib, each, strict=True)]
            if memory["pss"] > self.peak["pss"]:
                self.peak_pss_at = time.monotonic() - self.started
                self.peak_pss_by_process = by_process
            for key, value in memory.items():
                self.peak[key] = max(self.peak[key], value)
            self.peak_gpu_mib = max(self.peak_gpu_mib, gpu)
            self.samples += 1
            time.sleep(0.5)

    def mark(self, name: str) -> None:
        self.marks[name] = (self.peak["rss"], self.peak_gpu_mib)

    def report(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "peak_rss_gb": round(self.peak["rss"] / 1e9, 1),
            "peak_pss_gb": round(self.peak["pss"] / 1e9, 1),
            "peak_pss_at_s": round(self.peak_pss_at, 1),
            "peak_pss_by_process_gb": {k: round(v / 1e9, 2) for k, v in self.peak_pss_by_process.items() if v > 1e8},
            "peak_anon_gb": round(self.peak["anon"] / 1e9, 1),
            "peak_file_gb": round(self.peak["file"] / 1e9, 1),
            "peak_shmem_gb": round(self.peak["shmem"] / 1e9, 1),
            "peak_gpu_gib": round(self.peak_gpu_mib / 1024, 1),
            "peak_each_gpu_gib": [round(m / 1024, 1) for m in self.peak_each_gpu_mib],
        }
        for name, (rss, gpu) in self.marks.items():
            out[f"{name}_peak_rss_gb"], out[f"{name}_peak_gpu_gib"] = round(rss / 1e9, 1), round(gpu / 1024, 1)
        return out


# ---------------------------------------------------------------- checks of outputs


def ffmpeg() -> str:
    if str(SITE) not in sys.path:
        sys.path.append(str(SITE))  # imageio-ffmpeg travels in the core group
    import imageio_ffmpeg

    return str(imageio_ffmpeg.get_ffmpeg_exe())


def probe_mp4(data: bytes) -> dict[str, Any]:
    """Decode every frame (ffmpeg from imageio-ffmpeg): frame count, fps, resolution; and the file's digest
    (two servers that made the same bytes from the same request made the same video)."""
    path = Path("/tmp/probe.mp4")
    path.write_bytes(data)
    r = subprocess.run([ffmpeg(), "-hide_banner", "-i", str(path), "-map", "0:v:0", "-f", "null", "-"],
                       capture_output=True, text=True)  # fmt: skip
    info: dict[str, Any] = {"bytes": len(data), "decoded": r.returncode == 0,
                            "sha256": hashlib.sha256(data).hexdigest()[:16]}  # fmt: skip
    frames = re.findall(r"frame=\s*(\d+)", r.stderr)
    info["frames"] = int(frames[-1]) if frames else None
    m = re.search(r"Video: .*?, (\d{2,5})x(\d{2,5}).*?, ([\d.]+) fps", r.stderr)
    if m:
        info.update(width=int(m.group(1)), height=int(m.group(2)), fps=float(m.group(3)))
    return info


def probe_png(data: bytes) -> dict[str, Any]:
    from PIL import Image

    img = Image.open(io.BytesIO(data))
    img.load()
    return {"format": img.format, "width": img.width, "height": img.height, "bytes": len(data)}


def test_png(width: int, height: int) -> bytes:
    from PIL import Image

    img = Image.new("RGB", (width, height))
    for x in range(0, width, 8):  # some structure, not a flat colour
        for y in range(0, height, 64):
            img.putpixel((x, y), (x % 256, y % 256, 128))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


# ---------------------------------------------------------------- the scenario


def versions() -> dict[str, Any]:
    code = (
        "import json, importlib.metadata as m, torch\n"
        "names = ('sglang', 'sglang-kernel', 'diffusers', 'transformers', 'flashinfer-python')\n"
        "v = {n: m.version(n) for n in names}\n"
        "v['torch'] = torch.__version__\n"
        "v['gpu'] = torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu'\n"
        "import importlib.util as u; v['flash_attn_package'] = u.find_spec('flash_attn') is not None\n"
        "print(json.dumps(v))"
    )
    r = subprocess.run([sys.executable, "-c", code], env=child_env(), capture_output=True, text=True)
    try:
        return dict(json.loads(r.stdout.strip().splitlines()[-1]))
    except (ValueError, IndexError):
        return {"error": r.stderr[-300:]}


class Ballast:
    """Holds all but `keep_mib` of the GPU's free memory in a process of its own until stopped."""

    def __init__(self, keep_mib: int) -> None:
        code = (
            "import sys, time, torch\n"
            "free, total = torch.cuda.mem_get_info()\n"
            f"hold = free - {keep_mib} * 2**20\n"
            "x = torch.empty(hold, dtype=torch.uint8, device='cuda') if hold > 0 else None\n"
            "print(hold // 2**20, torch.cuda.mem_get_info()[0] // 2**20, flush=True)\n"
            "sys.stdin.read()\n"
        )
        self.proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True)  # fmt: skip
        assert self.proc.stdout is not None
        held, free = self.proc.stdout.readline().split()
        # what the GPU shows in use beyond the server's own: the held block and the ballast's CUDA context
        self.used_mib = int(held) + 600
        log(f"ballast: holding {int(held) / 1024:.1f} GiB, {int(free)} MiB free for the server (a {keep_mib} MiB card)")

    def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


class Scenario:
    def __init__(self, key: str, stock: bool, deadline: float, cache: Path | None = None, tag: str = "") -> None:
        import httpx

        self.key, self.stock, self.deadline = key, stock, deadline
        self.cache = cache  # ours: CACHE_DIR; stock: HOME (its caches live under ~/.cache, ~/.triton, ~/.nv)
        self.label = f"{key}-{'stock' if stock else 'ours'}{'-' + tag if tag else ''}"
        self.base = f"http://127.0.0.1:{PORT}"
        self.http = httpx.Client(base_url=self.base, timeout=httpx.Timeout(600, connect=5))
        self.result: dict[str, Any] = {"model": key, "mode": "stock" if stock else "ours", "requests": []}
        self.log_path = OUT / f"{self.label}.log"
        self.last_mp4: bytes | None = None  # the last video's content (video())

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def start(self) -> None:
        model = MODELS / NAMES[self.key]
        env = child_env()
        if self.stock:
            argv = ["sglang", "serve", "--model-type", "diffusion", "--model-path", str(model), "--host", "127.0.0.1",
                    "--port", str(PORT)]  # fmt: skip
            if self.key != "glm-image":
                argv += ["--model-id", NAMES[self.key]]
            # SGLang from 0.5.23 loads plugins by entry point, and the staged site declares ours: stock runs without
            env["GLM_IMAGE_SGLANG_PLUGIN"] = "off"
            if self.cache is not None:
                self.cache.mkdir(parents=True, exist_ok=True)
                env.update(HOME=str(self.cache), XDG_CACHE_HOME=str(self.cache / ".cache"))
        else:
            argv = ["bash", "entrypoint.sh", "serve"]
            data = Path(f"/tmp/data-{self.key}")
            shutil.rmtree(data / "outputs", ignore_errors=True)
            env.update(MODEL_PATH=str(model), PORT=str(PORT), DATA_DIR=str(data),
                       CACHE_DIR=str(self.cache or "/tmp/cache"), SGLANG_BIN=str(STAGE / "bin/sglang"),
                       HF_HOME="/tmp/hf", GRACEFUL_SHUTDOWN_TIMEOUT="150", STARTUP_TIMEOUT="900")  # fmt: skip
            env.update(OURS_ENV)
            self.result["settings"] = OURS_ENV
            if PLUGIN_HOOK:
                env["PYTHONPATH"] = f"{REPO / 'tools/gpu/plugin_hook'}:{env['PYTHONPATH']}"
                self.result["plugin_hook"] = True
        held = sum(gpu_used_each_mib() or [])
        if held > 2048:  # a row measured next to another process's memory is not like the others
            log(f"{self.label}: WARNING: the GPU holds {held / 1024:.1f} GiB before this start (a server left over?)")
            self.result["gpu_held_before_start_gib"] = round(held / 1024, 1)
        self.ballast = Ballast(EMULATE_MIB) if EMULATE_MIB else None
        if self.ballast:
            self.result["emulated_gpu_mib"] = EMULATE_MIB
        for _ in range(120):  # the previous scenario's workers may still hold the ports
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", PORT)) != 0 and probe.connect_ex(("127.0.0.1", PORT + 1)) != 0:
                    break
            time.sleep(0.5)
        self.logf = self.log_path.open("w")
        self.t0 = time.monotonic()
        workdir = Path(f"/tmp/stock-{self.key}") if self.stock else REPO  # stock writes outputs/ and inputs/ here
        workdir.mkdir(exist_ok=True)
        self.proc = subprocess.Popen(argv, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     start_new_session=True, text=True, errors="replace", bufsize=1)  # fmt: skip
        threading.Thread(target=self.pump, daemon=True).start()
        self.sampler = Sampler(self.proc.pid, self.ballast.used_mib if self.ballast else 0)
        self.sampler.start()
        log(f"{self.label}: started {' '.join(argv[:3])} pid {self.proc.pid}")

    def pump(self) -> None:
        """The server's output into the log, each line prefixed with its arrival (seconds since start) and cut
        at 4000 characters (a random tokenizer's warnings list 160k ids a line: 21 MB of log, over $OUT's limit)."""
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if len(line) > 4000:
                line = f"{line[:4000]} [... {len(line) - 4000} characters cut]\n"
            self.logf.write(f"+{time.monotonic() - self.t0:7.1f} {line}")
            self.logf.flush()

    def wait_ready(self) -> bool:
        """Ours: the gateway's /health is 200 only after a real test generation. Stock: /health 200,
        then SGLang's own warm-up line ("fired up")."""
        health, failed = None, None
        while self.left() > 30 and self.proc.poll() is None:
            try:
                resp = self.http.get("/health", timeout=3)
                if resp.status_code == 200:
                    health = time.monotonic() - self.t0
                    break
                # ours: a failed readiness generation is a bug to read in the log, not worth device time
                # spent on the gateway's retries (the sixth run waited 6 minutes for nothing)
                body = resp.json() if not self.stock else {}
                if body.get("status") == "failed":
                    failed = body.get("detail")
                    break
            except Exception:
                pass
            time.sleep(0.5)
        self.result["health_200_s"] = round(health, 1) if health else None
        self.sampler.mark("load")
        if health is None:
            why = f"readiness failed: {failed}" if failed else "no /health 200"
            self.result["start_error"] = f"{why} (exit {self.proc.poll()})"
            return False
        if self.stock:
            while self.left() > 30 and "fired up" not in self.log_path.read_text(errors="replace"):
                time.sleep(0.5)
            self.result["warmup_done_s"] = round(time.monotonic() - self.t0, 1)
        if not self.stock:  # the launcher prints its ready and phases lines once its own poll sees the 200
            until = time.monotonic() + 15
            while "[launcher] start-up phases:" not in self.log_path.read_text(errors="replace"):
                if time.monotonic() > until:
                    break
                time.sleep(0.2)
        text = self.log_path.read_text(errors="replace")
        m = re.search(r"\[launcher\] ready: .*? after ([\d.]+) s", text)
        if m:
            self.result["launcher_ready_s"] = float(m.group(1))
        m = re.search(r"\[launcher\] start-up phases: (.*)", text)
        if m:
            self.result["phases"] = m.group(1).strip()
        m = re.search(r"^\+\s*([\d.]+) .*answered /health 200; running a test generation", text, re.M)
        if m:
            self.result["sglang_health_s"] = float(m.group(1))
        if self.stock:  # the same phase reading as the launcher's, on stock's timestamped log
            sys.path.insert(0, str(REPO / "src"))
            from glm_image_sglang.startup_phases import StartupPhases

            phases = StartupPhases(clock=0.0)
            for line in text.splitlines():
                stamp = re.match(r"^\+\s*([\d.]+) (.*)", line)
                if stamp:
                    phases.observe(stamp.group(2), now=float(stamp.group(1)))
            self.result["phases"] = phases.summary(until=self.result["health_200_s"]) + f"; {stock_warmup(text)}"

        log(f"{self.label}: ready {self.result}")
        return True

    def record(self, name: str, t: float, **info: Any) -> dict[str, Any]:
        entry = {"name": name, "seconds": round(time.monotonic() - t, 2), **info}
        self.result["requests"].append(entry)
        with (OUT / f"{self.label}.jsonl").open("a") as f:  # kept even if the call is cut short
            f.write(json.dumps(entry) + "\n")
        log(f"{self.label}: {json.dumps(entry)[:600]}")
        return entry

    def video(
        self, name: str, fields: dict[str, Any], image: bytes | None = None, expect: dict[str, Any] | None = None
    ) -> None:
        t = time.monotonic()
        try:
            if image is not None:
                r = self.http.post("/v1/videos", data={k: str(v) for k, v in fields.items()},
                                   files={"input_reference": ("in.png", image, "image/png")})  # fmt: skip
            else:
                r = self.http.post("/v1/videos", json=fields)
            if r.status_code >= 300:
                self.record(name, t, ok=False, status=r.status_code, body=r.text[:500])
                return
            job = r.json()
            while self.left() > 10:
                job = self.http.get(f"/v1/videos/{job['id']}").json()
                if job.get("status") in ("completed", "failed"):
                    break
                time.sleep(0.5)
            if job.get("status") != "completed":
                self.record(name, t, ok=False, job={k: job.get(k) for k in ("status", "error", "progress")})
                return
            done = time.monotonic() - t
            content = self.http.get(f"/v1/videos/{job['id']}/content")
            self.last_mp4 = content.content if content.status_code == 200 else None
            mp4 = probe_mp4(content.content) if content.status_code == 200 else {"status": content.status_code}
            ok = all(mp4.get(k) == v for k, v in (expect or {}).items())
            self.record(name, t, ok=ok, job_s=round(done, 2), mp4=mp4, expect=expect,
                        server={k: job.get(k) for k in ("inference_time_s", "peak_memory_mb") if k in job})  # fmt: skip
        except Exception as e:
            self.record(name, t, ok=False, error=repr(e)[:500])

    def sync_video(self, fields: dict[str, Any], expect: dict[str, Any]) -> None:
        t = time.monotonic()
        try:
            r = self.http.post("/v1/video/generations", json={**fields, "response_format": "b64_json"})
            if r.status_code != 200:
                self.record("sync /v1/video/generations", t, ok=False, status=r.status_code, body=r.text[:500])
                return
            mp4 = probe_mp4(base64.b64decode(r.json()["data"][0]["b64_json"]))
            ok = all(mp4.get(k) == v for k, v in expect.items())
            self.record("sync /v1/video/generations", t, ok=ok, mp4=mp4, expect=expect)
        except Exception as e:
            self.record("sync /v1/video/generations", t, ok=False, error=repr(e)[:500])

    def image(self, name: str, fields: dict[str, Any], edit_source: bytes | None = None, as_url: bool = False) -> None:
        """One image request, its PNG decoded and its size checked. edit_source: an edit of that image, sent
        as a multipart upload, or with as_url as a data URL in the multipart field `url`."""
        t = time.monotonic()
        try:
            fields = {"output_format": "png", **fields}  # stock SGLang's default is JPEG
            if edit_source is not None:
                source: Any = {"image": ("src.png", edit_source, "image/png")}
                if as_url:
                    source = [("url", (None, "data:image/png;base64," + base64.b64encode(edit_source).decode()))]
                r = self.http.post("/v1/images/edits", data={k: str(v) for k, v in fields.items()}, files=source)
            else:
                r = self.http.post("/v1/images/generations", json=fields)
            if r.status_code != 200:
                self.record(name, t, ok=False, status=r.status_code, body=r.text[:800],
                            cat_bug="cat() received an invalid combination" in r.text)  # fmt: skip
                return
            item = r.json()["data"][0]
            b64 = item.get("b64_json")
            data = base64.b64decode(b64) if b64 else self.http.get(item["url"]).content
            png = probe_png(data)
            want = [int(v) for v in str(fields.get("size", "1024x1024")).split("x")]
            self.record(name, t, ok=[png["width"], png["height"]] == want and png["format"] == "PNG", png=png)
        except Exception as e:
            self.record(name, t, ok=False, error=repr(e)[:500])

    def sigterm_during_job(self, fields: dict[str, Any], video: bool, image: bytes | None = None) -> None:
        """Start a long job, SIGTERM the launcher while it runs: the gateway should drain (the job
        finishes and its output downloads, new work gets 503), then everything exits 0."""
        t = time.monotonic()
        out: dict[str, Any] = {}
        try:
            done: list[Any] = []
            if video:
                if image is not None:
                    job = self.http.post("/v1/videos", data={k: str(v) for k, v in fields.items()},
                                         files={"input_reference": ("in.png", image, "image/png")}).json()  # fmt: skip
                else:
                    job = self.http.post("/v1/videos", json=fields).json()
                for _ in range(120):
                    if self.http.get(f"/v1/videos/{job['id']}").json().get("status") == "in_progress":
                        break
                    time.sleep(0.25)
            else:
                worker = threading.Thread(
                    target=lambda: done.append(self.http.post("/v1/images/generations", json=fields)), daemon=True
                )
                worker.start()
            time.sleep(3)
            sent = time.monotonic()
            os.kill(self.proc.pid, signal.SIGTERM)
            time.sleep(1)
            refused = self.http.post("/v1/images/generations" if not video else "/v1/videos", json=fields)
            out["new_work"] = [refused.status_code, refused.json().get("error", {}).get("code")]
            if video:
                while self.proc.poll() is None:
                    status = self.http.get(f"/v1/videos/{job['id']}").json().get("status")
                    if status in ("completed", "failed"):
                        break
                    time.sleep(1)
                out["job"] = status
                out["job_done_s"] = round(time.monotonic() - sent, 1)
                out["mp4"] = probe_mp4(self.http.get(f"/v1/videos/{job['id']}/content").content)
            else:
                worker.join(timeout=self.left())
                out["job"] = done[0].status_code if done else "no answer"
                out["job_done_s"] = round(time.monotonic() - sent, 1)
            out["exit_code"] = self.proc.wait(timeout=180)
            out["exit_s"] = round(time.monotonic() - sent, 1)
        except Exception as e:
            out["error"] = repr(e)[:300]
        self.result["sigterm"] = out
        log(f"{self.label}: SIGTERM during a job: {out} ({time.monotonic() - t:.0f} s)")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                # the launcher drains a running job for up to 150 s; past the budget (a job the budget cut off) it
                # is not waited for: the call's own time limit would kill this script and leave the server on the
                # GPU, as on 2026-12-02 (the next start found 82 GiB held and planned for the rest)
                self.proc.wait(timeout=min(60.0, max(10.0, self.left())))
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.sampler.stop_flag = True
        self.sampler.join(timeout=5)
        if self.ballast:
            self.ballast.stop()
        self.result["memory"] = self.sampler.report()
        text = self.log_path.read_text(errors="replace")
        pattern = re.compile(
            r"(?i)(attention backend|attn backend|fallback|flash.?attn|FA3|sdpa|Denoising.*(?:finished|took)|"
            r"Decoding.*(?:finished|took)|Encoding.*(?:finished|took)|average time per step|"
            r"offload|WARNING:|ERROR|Traceback|out of memory|gen throughput|\[launcher\])"
        )
        seen: list[str] = []
        for line in text.splitlines():
            short = re.sub(r"\d+\.\d+", "#", line)[:200]
            if pattern.search(line) and short not in seen:
                seen.append(short)
                self.result.setdefault("log_lines", []).append(line[:400])
        self.result["log_lines"] = self.result.get("log_lines", [])[-80:]
        compiles = [
            ln[:200]
            for ln in text.splitlines()
            if re.search(r"(?i)compil|\bjit\b|nvcc|autotun", ln)
            and not re.search(r"\[launcher\]|\[gateway\]|torch\.compile cache:|server_args:", ln)
        ]
        self.result["compile_lines"] = {"count": len(compiles), "first": compiles[:8]}
        if self.stock:  # its caches live in its HOME: only those folders, not the rest of a default HOME
            home = self.cache or Path(os.environ.get("HOME", "/root"))
            self.result["caches"] = cache_inventory(home, [home / ".cache", home / ".triton", home / ".nv"])
        else:
            root = self.cache or Path("/tmp/cache")
            self.result["caches"] = cache_inventory(root, [root])
        (OUT / f"{self.label}.json").write_text(json.dumps(self.result, indent=1))


def cache_inventory(base: Path, roots: list[Path]) -> dict[str, dict[str, float]]:
    """Files and MiB under each folder two levels below base (triton/<hash>, .cache/flashinfer, ...) within
    roots: which kernel caches a start filled, so a cold start's silent compile time can be put on the
    right cache (issue 15)."""
    found: dict[str, dict[str, float]] = {}
    for path in (p for root in roots if root.is_dir() for p in root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            rel = path.relative_to(base).parts
            key = "/".join(rel[:2]) if len(rel) > 2 else rel[0]
            entry = found.setdefault(key, {"files": 0, "mib": 0.0})
            entry["files"] += 1
            entry["mib"] += path.stat().st_size / 2**20
    return {k: {"files": v["files"], "mib": round(v["mib"], 1)} for k, v in sorted(found.items())}


def run_scenario(key: str, stock: bool, budget: float, sigterm: bool, rehearse: bool = False) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    s = Scenario(key, stock, time.monotonic() + budget)
    s.result["versions"] = versions()
    s.start()
    try:
        if not s.wait_ready():
            return
        if not stock:
            s.result["models"] = s.http.get("/v1/models").json()
        if key == "glm-image":
            size = "32x32" if rehearse else "1024x1024"  # tiny: its processor allows 64x64 pixels at most
            side = int(size.split("x")[0])
            b64 = {"prompt": "a red fox in the snow", "size": size, "response_format": "b64_json"}
            s.image(f"t2i {size} b64 10 steps", {**b64, "num_inference_steps": 10, "seed": 1})
            if not stock:
                small = "32x32" if rehearse else "512x512"
                url = {"prompt": "a cat", "size": small, "response_format": "url", "num_inference_steps": 10}
                s.image(f"t2i {small} url", url)
                edit = {**b64, "prompt": "make it night", "num_inference_steps": 10}
                s.image(f"edit {size} upload", edit, edit_source=test_png(side, side))
                if OURS_ENV.get("GLM_AR", "in-process") != "in-process":  # edits are refused there (400)
                    s.image(f"t2i {size} b64 10 steps, again", {**b64, "num_inference_steps": 10, "seed": 3})
                    s.image(f"t2i {size} b64 default steps", {**b64, "seed": 4})
                    return
                wide = (48, 32) if rehearse else (1152, 864)  # non-square: the source's tokens on both axes
                s.image(f"edit {wide[0]}x{wide[1]} upload", {**edit, "size": f"{wide[0]}x{wide[1]}"},
                        edit_source=test_png(*wide))  # fmt: skip
                s.image(f"edit {size} data URL", edit, edit_source=test_png(side, side), as_url=True)
                other = (48, 32) if rehearse else (1536, 1152)
                if s.left() > 120:
                    s.image(f"edit {size} from a {other[0]}x{other[1]} upload", edit, edit_source=test_png(*other))
            if s.left() > 150:
                s.image(f"t2i {size} b64 30 steps", {**b64, "num_inference_steps": 30, "seed": 2})
            long_image = None
            long_job = {"prompt": "a long one", "size": size, "num_inference_steps": 30, "response_format": "b64_json"}
        else:
            wide = key == "wan2.2-ti2v-5b"
            w, h, frames, fps = (1280, 704, 121, 24) if wide else (832, 480, 81, 16)
            if rehearse:
                w, h, frames = 256, 256, 9
            expect = {"frames": frames, "width": w, "height": h, "decoded": True}
            base = {"prompt": "a cat surfing a wave", "size": f"{w}x{h}", "num_frames": frames, "seed": 1}
            if stock:
                base["fps"] = fps
            image = test_png(w, h) if key != "wan2.2-t2v-a14b" else None
            s.video(f"{w}x{h}x{frames} 2 steps", {**base, "num_inference_steps": 2}, image, expect)
            s.video(f"{w}x{h}x{frames} 6 steps", {**base, "num_inference_steps": 6}, image, expect)
            if not wide and not rehearse and s.left() > 200:
                s.video(f"1280x720x{frames} 2 steps", {**base, "size": "1280x720", "num_inference_steps": 2},
                        test_png(1280, 720) if image else None, {**expect, "width": 1280, "height": 720})  # fmt: skip
            if not stock and image is not None and wide:
                s.video("t2v (no image) 2 steps", {**base, "num_inference_steps": 2}, None, expect)
            if not stock and image is None:
                s.sync_video({**base, "num_frames": 17, "num_inference_steps": 2}, {**expect, "frames": 17})
            # long enough to be running at SIGTERM, short enough to finish within the 150 s drain
            steps = {"wan2.2-ti2v-5b": 30, "wan2.2-t2v-a14b": 12, "wan2.2-i2v-a14b": 6}[key]
            long_job, long_image = {**base, "num_inference_steps": 2 if rehearse else steps}, image
        if sigterm and not stock and s.left() > 60:
            s.sigterm_during_job(long_job, video=key != "glm-image", image=long_image)
    finally:
        s.stop()
        log(f"{s.label}: memory {s.result['memory']}")


# ---------------------------------------------------------------- two sets of settings, the same request


def pixels(data: bytes) -> Any:
    """Every frame of an mp4 as one flat float64 array (ffmpeg to raw RGB)."""
    import numpy as np

    path = Path("/tmp/compare.mp4")
    path.write_bytes(data)
    r = subprocess.run([ffmpeg(), "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                       capture_output=True, check=True)  # fmt: skip
    return np.frombuffer(r.stdout, dtype=np.uint8).astype(np.float64)


def step_times(log_text: str) -> list[float]:
    """SGLang's "[DenoisingStage] average time per step" figures, in order (the readiness generation first)."""
    return [float(x) for x in re.findall(r"\[DenoisingStage\] average time per step: ([\d.]+)", log_text)]


def decode_times(log_text: str) -> list[float]:
    """SGLang's "[DecodingStage] finished in" figures, in order (the VAE decode of each request)."""
    return [float(x) for x in re.findall(r"\[DecodingStage\] finished in ([\d.]+) seconds", log_text)]


def run_compare(
    key: str, sides: dict[str, dict[str, str]], steps: int | None, budget: float, rehearse: bool, repeat: int = 1
) -> None:
    """Ours twice in one call, the settings of side a then of side b (each on top of --env), the same request
    (seed, size, steps; `repeat` times, the last one counted: a first one may pay for torch.compile): the
    seconds per step SGLang reports, end to end, ready, memory, and how far b's video drifts from a's
    (relative L2 over every decoded frame's pixels, H.264 on both sides; random weights, so no judgement of
    visual quality)."""
    import numpy as np

    OUT.mkdir(parents=True, exist_ok=True)
    deadline = T_START + budget
    wide = key == "wan2.2-ti2v-5b"
    w, h, frames = (1280, 704, 121) if wide else (832, 480, 81)
    steps = steps or (50 if wide else 40)  # SGLang's defaults for the model
    if rehearse:
        w, h, frames = 64, 64, 5
    body = {"prompt": "a cat surfing a wave", "size": f"{w}x{h}", "num_frames": frames, "seed": 1,
            "num_inference_steps": steps}  # fmt: skip
    image = test_png(w, h) if key != "wan2.2-t2v-a14b" else None
    expect = {"frames": frames, "width": w, "height": h, "decoded": True}
    common = dict(OURS_ENV)
    table: list[dict[str, Any]] = []
    videos: dict[str, Any] = {}
    for side, extra in sides.items():
        OURS_ENV.clear()
        OURS_ENV.update({**common, **extra})
        s = Scenario(key, False, deadline, tag=f"compare-{side}")
        s.result["versions"] = versions()
        s.start()
        try:
            if s.wait_ready():
                for i in range(repeat):
                    s.video(f"{w}x{h}x{frames} {steps} steps ({i + 1} of {repeat})", body, image, expect)
                if s.last_mp4:
                    videos[side] = pixels(s.last_mp4)
        finally:
            s.stop()
        log_text = s.log_path.read_text(errors="replace")
        per_step, decodes = step_times(log_text), decode_times(log_text)
        request = s.result["requests"][-1] if s.result["requests"] else {}
        memory = s.result["memory"]
        table.append({"side": side, "settings": extra, "ok": request.get("ok"), "seconds": request.get("seconds"),
                      "all_seconds": [r.get("seconds") for r in s.result["requests"]],
                      "s_per_step": per_step[-1] if len(per_step) > 1 else None,
                      "decode_s": decodes[-1] if len(decodes) > 1 else None,
                      "ready_s": s.result.get("health_200_s"), "peak_rss_gb": memory["peak_rss_gb"],
                      "peak_pss_gb": memory["peak_pss_gb"], "peak_anon_gb": memory["peak_anon_gb"],
                      "peak_gpu_gib": memory["peak_gpu_gib"],
                      "peak_each_gpu_gib": memory["peak_each_gpu_gib"]})  # fmt: skip
    result: dict[str, Any] = {"model": key, "size": body["size"], "frames": frames, "steps": steps,
                              "common": common, "runs": table}  # fmt: skip
    if len(videos) == 2 and videos["a"].shape == videos["b"].shape:
        a, b = videos["a"], videos["b"]
        result["pixel_drift_rel_l2"] = round(float(np.linalg.norm(b - a) / np.linalg.norm(a)), 5)
        result["pixel_max_abs"] = float(np.abs(b - a).max())
    (OUT / f"compare-{key}.json").write_text(json.dumps(result, indent=1))
    log(f"compare, {key} {body['size']}x{frames}, {steps} steps: {json.dumps(result)}")


def stock_warmup(text: str) -> str:
    """SGLang's own warm-up request at start, from its timestamped log: 0.5.23 sends one (GLM-Image 512x512, 2
    steps; Wan 960x928x17f, 2 steps) before its /health turns 200, so that 200 comes after a real generation."""
    began = re.search(r"^\+\s*([\d.]+) Warmup requests:", text, re.M)
    done = re.search(r"^\+\s*([\d.]+) .*fired up and ready to roll", text, re.M)
    if not (began and done):
        return "no warm-up request in SGLang's log"
    what = re.search(r"server warmup req \(([^)]*)\)", text)
    return f"SGLang's warm-up request {float(done.group(1)) - float(began.group(1)):.1f} s" + (
        f" ({what.group(1)})" if what else ""
    )


# ---------------------------------------------------------------- start-up comparison


def first_requests(key: str, rehearse: bool) -> list[tuple[str, dict[str, Any], bool]]:
    """What a user sends first, at the model's usual size: (name, fields, is_video). Twice the same
    request, so a first one that pays for kernel compiles shows against the second."""
    if key == "glm-image":
        size = "32x32" if rehearse else "1024x1024"
        one = {"prompt": "a red fox in the snow", "size": size, "num_inference_steps": 10, "seed": 1,
               "response_format": "b64_json"}  # fmt: skip
        return [(f"t2i {size} 10 steps", one, False)]  # the AR stage makes a second one ~50 s: once is enough
    w, h, frames = (1280, 704, 121) if key == "wan2.2-ti2v-5b" else (832, 480, 81)
    if rehearse:
        w, h, frames = 256, 256, 9
    one = {"prompt": "a cat surfing", "size": f"{w}x{h}", "num_frames": frames, "seed": 1, "num_inference_steps": 2}
    return [(f"{w}x{h}x{frames} 2 steps (first)", one, True), (f"{w}x{h}x{frames} 2 steps (again)", one, True)]


def run_starts(key: str, runs: list[str], budget: float, rehearse: bool, tag: str = "") -> None:
    """Start the model once per run (cold: its cache emptied first), prove it ready, send the first requests.
    tag: added to every file name, so several `starts` in one call (other --env) keep their outputs apart."""
    OUT.mkdir(parents=True, exist_ok=True)
    deadline = T_START + budget
    table = []
    for i, run in enumerate(runs):
        side, temp = run.split("-")
        again = runs[:i].count(run)  # a repeated run keeps its own files (the twelfth run's second warm log was lost)
        cache = Path(f"/tmp/starts-cache/{key}-{side}")
        if temp == "cold":
            if (cache / "kernel-builds.jsonl").exists():  # an earlier start's record, for --image-kernels to replay
                KERNEL_RECORDS.mkdir(exist_ok=True)
                shutil.copy2(cache / "kernel-builds.jsonl", KERNEL_RECORDS / f"{key}.jsonl")
            shutil.rmtree(cache, ignore_errors=True)
            if SEED_KERNELS and side == "ours":
                seed_kernels(cache)
            if IMAGE_KERNELS and side == "ours":
                image_kernels(key, cache, IMAGE_KERNELS)
        if deadline - time.monotonic() < 120:
            log(f"{run}: skipped, {deadline - time.monotonic():.0f} s left")
            continue
        name = temp + (f"-{again + 1}" if again else "") + (f"-{tag}" if tag else "")
        s = Scenario(key, side == "stock", deadline, cache=cache, tag=name)
        s.result["versions"] = versions()
        s.start()
        try:
            if s.wait_ready():
                image = test_png(1280, 704) if key == "wan2.2-ti2v-5b" and not rehearse else None
                for name, fields, video in first_requests(key, rehearse):
                    if s.left() < 60:
                        break
                    if video:
                        s.video(name, {**fields, **({"fps": 24} if side == "stock" else {})}, image)
                    else:
                        s.image(name, fields)
        finally:
            s.stop()
        r = s.result
        ready = r.get("health_200_s") if side == "ours" else r.get("warmup_done_s")
        row = {"run": run, "settings": {} if side == "stock" else dict(OURS_ENV), "ready_s": ready,
               "sglang_health_s": r.get("sglang_health_s") or r.get("health_200_s"),
               "requests_s": [q.get("seconds") for q in r["requests"]], "ok": [q.get("ok") for q in r["requests"]],
               "outputs": [(q.get("mp4") or q.get("png") or {}).get("sha256") for q in r["requests"]],
               "peak_rss_gb": r["memory"]["peak_rss_gb"], "peak_pss_gb": r["memory"]["peak_pss_gb"],
               "peak_anon_gb": r["memory"]["peak_anon_gb"], "peak_gpu_gib": r["memory"]["peak_gpu_gib"],
               "peak_each_gpu_gib": r["memory"]["peak_each_gpu_gib"],
               "compile_lines": r.get("compile_lines", {}).get("count"), "phases": r.get("phases"),
               "caches": r.get("caches")}  # fmt: skip
        record = cache / "kernel-builds.jsonl"  # the plugin's record of SGLang's JIT builds (>= 0.5.23)
        if side == "ours" and record.exists():
            row["kernel_builds"] = len(record.read_text().splitlines())
            shutil.copy2(record, OUT / f"kernel-builds-{key}.jsonl")  # what an image-side prebuild replays
        table.append(row)
        (OUT / f"starts-{key}{'-' + tag if tag else ''}.json").write_text(json.dumps(table, indent=1))
    log(f"start-up comparison, {key} (ready: ours = proven /health 200, stock = its warm-up done):")
    for row in table:
        log(f"  {row['run']:11} ready {row['ready_s']} s (SGLang /health {row['sglang_health_s']} s), requests "
            f"{row['requests_s']} ok {row['ok']}, RSS {row['peak_rss_gb']} GB (PSS {row['peak_pss_gb']}, anon "
            f"{row['peak_anon_gb']}), GPU {row['peak_gpu_gib']} GiB, "
            f"compile lines {row['compile_lines']}")  # fmt: skip
        log(f"  {'':11} {row['phases']}")
        log(f"  {'':11} caches after it: {row['caches']}")


PREBUILT = Path("/tmp/prebuilt")


def prebuild(archs: list[str]) -> bool:
    """Issue 15's lever, tried before it goes into the image: build the kernels a cold Wan start compiles
    (tools/gpu/prebuild_kernels.py) with the GPU hidden, as an image build would, and put them where a start
    finds them: flashinfer's AOT folder in /tmp/site (loaded before any JIT cache, for every later start in
    this machine hold) and /tmp/prebuilt/tvm-ffi (`starts --seed-kernels` copies it into a cold start's
    CACHE_DIR/tvm-ffi, as the launcher would seed CACHE_DIR from the image)."""
    shutil.rmtree(PREBUILT, ignore_errors=True)
    (PREBUILT / "tvm-ffi").mkdir(parents=True)
    env = dict(child_env(), CUDA_VISIBLE_DEVICES="")
    t = time.monotonic()
    r = subprocess.run([sys.executable, str(REPO / "tools/gpu/prebuild_kernels.py"), str(PREBUILT), *archs], env=env,
                       capture_output=True, text=True)  # fmt: skip
    log(f"prebuild for {archs} without a GPU: exit {r.returncode} in {time.monotonic() - t:.0f} s")
    log((r.stdout + r.stderr).strip()[-3000:])
    return r.returncode == 0


def seed_kernels(cache: Path) -> None:
    """A cold start's CACHE_DIR with the prebuilt tvm-ffi modules in it (the flashinfer one sits in the site)."""
    if (PREBUILT / "tvm-ffi").is_dir():
        shutil.copytree(PREBUILT / "tvm-ffi", cache / "tvm-ffi", dirs_exist_ok=True)
        log(f"seeded {cache / 'tvm-ffi'} with {sorted(p.name for p in (PREBUILT / 'tvm-ffi').iterdir())}")


KERNEL_RECORDS = Path("/tmp/kernel-records")  # {key}.jsonl: the last cold start's record of SGLang's JIT builds


def image_kernels(key: str, cache: Path, arch: str) -> None:
    """What the image does, for a cold start of ours: kernel_seed.py builds FlashInfer's RoPE with the GPU hidden,
    at the path this start's FlashInfer cache will have ({cache}/flashinfer), and replays the record of SGLang's JIT
    builds (an earlier start's in this machine hold, else the one committed in docker/kernel-builds/), into a seed
    folder that our launcher (KERNEL_SEED_DIR) copies into CACHE_DIR before SGLang starts."""
    seed = Path(f"/tmp/kernel-seed-{key}")
    shutil.rmtree(seed, ignore_errors=True)
    env = dict(child_env(), CUDA_VISIBLE_DEVICES="", MAX_JOBS="16")
    cmd = [sys.executable, "-m", "glm_image_sglang.kernel_seed", "build", str(seed), arch]
    cmd += ["--for", f"{cache}/flashinfer"]
    for record in (KERNEL_RECORDS / f"{key}.jsonl", REPO / f"docker/kernel-builds/{key}.jsonl"):
        if record.exists():
            cmd += ["--record", str(record)]
            log(f"image kernels: replaying {record} ({len(record.read_text().splitlines())} lines)")
            break
    t = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    log(f"image kernels for {arch}: exit {r.returncode} in {time.monotonic() - t:.0f} s")
    log((r.stdout + r.stderr).strip()[-2000:])
    if r.returncode == 0:
        OURS_ENV["KERNEL_SEED_DIR"] = str(seed)


FA2 = Path("/tmp/fa2")


def fa2_build(archs: str, jobs: int) -> None:
    """Compile the carried flash-attn sdist (.gpu/fa2/) with the Dockerfile's flags (FLASH_ATTENTION_FORCE_BUILD,
    NVCC_THREADS=1, pip --no-build-isolation), in a detached session that outlives the call; `fa2-check` joins
    it. Built in the unpacked tree, so ninja's log of every object's compile time stays behind."""
    sdist = next((REPO / ".gpu/fa2").glob("flash_attn-*.tar.gz"))
    shutil.rmtree(FA2, ignore_errors=True)
    (FA2 / "src").mkdir(parents=True)
    shutil.unpack_archive(sdist, FA2 / "src")
    src = next((FA2 / "src").glob("flash_attn-*"))
    env = dict(os.environ, FLASH_ATTENTION_FORCE_BUILD="TRUE", FLASH_ATTN_CUDA_ARCHS=archs, MAX_JOBS=str(jobs),
               NVCC_THREADS="1")  # fmt: skip
    script = (
        f"date +%s.%N > {FA2}/t0; nvcc --version | tail -1 > {FA2}/nvcc; "
        f"{sys.executable} -m pip wheel -v --no-build-isolation --no-deps --no-index -w {FA2}/wheel {src} "
        f"> {FA2}/build.log 2>&1; echo $? > {FA2}/rc; date +%s.%N > {FA2}/t1"
    )
    subprocess.Popen(["bash", "-c", script], env=env, start_new_session=True, stdin=subprocess.DEVNULL,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    log(f"flash-attn {src.name}: compiling for sm {archs} with MAX_JOBS={jobs} in the background")


def fa2_compile_report() -> dict[str, Any]:
    """Wall time, and per object from ninja's log (start and end in ms): count, CPU-seconds, the slowest."""
    report: dict[str, Any] = {"nvcc": (FA2 / "nvcc").read_text().strip() if (FA2 / "nvcc").exists() else None}
    report["wall_s"] = round(float((FA2 / "t1").read_text()) - float((FA2 / "t0").read_text()), 1)
    objects = []
    for ninja_log in FA2.glob("src/*/build/*/.ninja_log"):
        for line in ninja_log.read_text().splitlines():
            fields = line.split("\t")
            if len(fields) >= 4 and fields[0].isdigit() and fields[1].isdigit():
                objects.append(((int(fields[1]) - int(fields[0])) / 1000, Path(fields[3]).name))
    if objects:
        objects.sort()
        report.update(objects=len(objects), object_s_sum=round(sum(t for t, _ in objects)),
                      object_s_median=objects[len(objects) // 2][0], slowest=objects[-3:])  # fmt: skip
    return report


def fa2_check(limit: float) -> int:
    """Wait for the compile, install its wheel, check flash_attn_func against SDPA and time it beside SDPA's
    default and sgl-kernel's FA3 at Wan-like shapes (one process: the same GPU state for all three)."""
    deadline = time.monotonic() + limit
    while not (FA2 / "rc").exists() and time.monotonic() < deadline:
        time.sleep(5)
    if not (FA2 / "rc").exists():
        log(f"flash-attn: still compiling after {limit:.0f} s more; {(FA2 / 'build.log').read_text()[-800:]}")
        return 1
    rc = int((FA2 / "rc").read_text())
    OUT.mkdir(parents=True, exist_ok=True)
    shutil.copy(FA2 / "build.log", OUT / "fa2-build.log")
    report = fa2_compile_report()
    log(f"flash-attn compile: exit {rc}, {json.dumps(report)}")
    if rc != 0:
        log((FA2 / "build.log").read_text()[-3000:])
        return 1
    wheel = next((FA2 / "wheel").glob("flash_attn-*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target",
                    str(FA2 / "site"), str(wheel)], check=True)  # fmt: skip
    env = child_env()  # SITE (sgl-kernel's FA3, for the comparison) and its libraries
    env["PYTHONPATH"] = f"{FA2 / 'site'}:{env['PYTHONPATH']}"
    r = subprocess.run([sys.executable, __file__, "fa2-measure"], env=env, capture_output=True, text=True)
    print(r.stdout[-6000:], r.stderr[-3000:], sep="\n")
    (OUT / "fa2.json").write_text(json.dumps({"compile": report, "wheel": wheel.name,
                                              "wheel_mb": round(wheel.stat().st_size / 1e6, 1)}, indent=1))  # fmt: skip
    return r.returncode


def fa2_measure() -> None:
    """In the process that imports the built flash_attn: numbers against an fp32 reference, then times."""
    import torch
    import torch.nn.functional as F
    import triton.testing
    from flash_attn import __version__, flash_attn_func

    log(f"flash_attn {__version__} on {torch.cuda.get_device_name()}, torch {torch.__version__}")
    torch.manual_seed(0)

    def sdpa(q: Any, k: Any, v: Any) -> Any:  # flash_attn's layout (B, S, H, D) in and out
        return F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)).transpose(1, 2)

    def rel(a: Any, b: Any) -> float:
        return float((a.float() - b.float()).norm() / b.float().norm())

    # (B, Sq, Sk, H, D): self-attention and a text cross-attention (512 tokens), head dims of Wan (128) and 64
    for b, sq, sk, h, d in ((2, 4096, 4096, 8, 128), (1, 4096, 512, 16, 128), (2, 2048, 2048, 8, 64)):
        q = torch.randn(b, sq, h, d, device="cuda", dtype=torch.bfloat16)
        k = torch.randn(b, sk, h, d, device="cuda", dtype=torch.bfloat16)
        v = torch.randn(b, sk, h, d, device="cuda", dtype=torch.bfloat16)
        ref = sdpa(q.float(), k.float(), v.float())
        out = torch.full_like(q, float("nan"))
        out.copy_(flash_attn_func(q, k, v))
        log(f"  ({b},{sq},{sk},{h},{d}): flash_attn vs fp32 {rel(out, ref):.2e}, SDPA bf16 vs fp32 "
            f"{rel(sdpa(q, k, v), ref):.2e}, NaN {bool(out.isnan().any())}")  # fmt: skip
    fa3 = None
    try:
        from sgl_kernel.flash_attn import flash_attn_varlen_func as fa3_varlen

        def fa3(q: Any, k: Any, v: Any) -> Any:
            b, s, h, d = q.shape
            cu = torch.arange(0, (b + 1) * s, s, device="cuda", dtype=torch.int32)
            out = fa3_varlen(q.flatten(0, 1), k.flatten(0, 1), v.flatten(0, 1), cu, cu, s, s)
            return (out[0] if isinstance(out, tuple) else out).view(b, s, h, d)
    except Exception as e:
        log(f"  sgl-kernel FA3 not measured: {e!r}"[:300])
    # Wan self-attention: T2V-A14B 832x480x81 (21x30x52 tokens, 40 heads), TI2V-5B 1280x704x121 (31x22x40, 24)
    for name, s_len, h in (("A14B 480p", 32760, 40), ("TI2V-5B 704p", 27280, 24)):
        q, k, v = (torch.randn(1, s_len, h, 128, device="cuda", dtype=torch.bfloat16) for _ in range(3))
        flops = 4 * s_len * s_len * h * 128
        row = [f"  {name} ({s_len} tokens, {h} heads):"]
        for label, fn in (("flash_attn 2", flash_attn_func), ("SDPA default", sdpa), ("sgl-kernel FA3", fa3)):
            if fn is None:
                continue
            try:
                if label != "flash_attn 2":
                    row.append(f"[{label} vs fa2 {rel(fn(q, k, v), flash_attn_func(q, k, v)):.1e}]")
                call = lambda fn=fn, q=q, k=k, v=v: fn(q, k, v)  # noqa: E731
                ms = triton.testing.do_bench(call, warmup=100, rep=500, return_mode="median")
                row.append(f"{label} {ms:.2f} ms = {flops / ms / 1e9:.0f} TFLOP/s;")
            except Exception as e:
                row.append(f"{label} failed: {e!r}"[:200])
        log(" ".join(row))


def run_logged(code: str) -> int:
    """Python code in the staged site's environment, its output logged (the end of it)."""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=child_env())
    log((r.stdout + r.stderr).strip()[-3000:])
    return r.returncode


def torch_check() -> int:
    """The staged site's torch on this GPU (what `stage --parts .gpu/parts-0.5.23` brings: torch 2.14 on the
    device's CUDA 13.0 libraries): its versions, and a cuBLAS, a cudnn and an attention call."""
    code = (
        "import time; t = time.perf_counter()\n"
        "import torch\n"
        "print(f'import {time.perf_counter() - t:.1f} s: torch {torch.__version__} from {torch.__file__}, nccl '\n"
        "      f'{torch.cuda.nccl.version()}, cudnn {torch.backends.cudnn.version()}')\n"
        "a = torch.randn(1024, 1024, device='cuda', dtype=torch.bfloat16)\n"
        "conv = torch.nn.Conv3d(16, 16, 3, padding=1).cuda().to(torch.bfloat16)\n"
        "x = torch.randn(1, 16, 8, 64, 64, device='cuda', dtype=torch.bfloat16)\n"
        "q = torch.randn(1, 8, 1024, 128, device='cuda', dtype=torch.bfloat16)\n"
        "sdpa = torch.nn.functional.scaled_dot_product_attention(q, q, q)\n"
        "print('matmul', tuple((a @ a).shape), 'conv3d', tuple(conv(x).shape), 'sdpa', tuple(sdpa.shape))\n"
    )
    return run_logged(code)


def matmul() -> None:
    """bf16 8192^3 products: burst (mean of 20 after warm-up) and sustained (10 s), in TFLOP/s."""
    code = (
        "import torch, time\n"
        "n = 8192; a = torch.randn(n, n, device='cuda', dtype=torch.bfloat16); b = torch.randn_like(a)\n"
        "for _ in range(5): a @ b\n"
        "torch.cuda.synchronize(); t = time.perf_counter()\n"
        "for _ in range(20): a @ b\n"
        "torch.cuda.synchronize(); burst = 20 * 2 * n**3 / (time.perf_counter() - t) / 1e12\n"
        "k, t = 0, time.perf_counter()\n"
        "while time.perf_counter() - t < 10:\n"
        "    for _ in range(50): a @ b\n"
        "    torch.cuda.synchronize(); k += 50\n"
        "sustained = k * 2 * n**3 / (time.perf_counter() - t) / 1e12\n"
        "print(f'matmul bf16 8192^3: burst {burst:.0f} TFLOP/s, sustained (10 s) {sustained:.0f} TFLOP/s on '\n"
        "      f'{torch.cuda.get_device_name()}')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    log((r.stdout or r.stderr).strip()[-500:])


def swapbench(gib: float) -> None:
    """The plugin's ExpertSwap on its own: two experts of `gib` GiB of bf16 4096x8192 tensors (A14B: 26.6 GiB,
    425 of them), each direction timed with the GPU idle before it, then both experts'
    checksums against their originals. Explains swap times logged mid-request (queued GPU work counts there)."""
    code = (
        "import time, torch\n"
        "from glm_image_sglang.expert_swap import ExpertSwap\n"
        f"n = max(1, int({gib} * 2**30 / (2 * 4096 * 8192)))\n"
        "def expert(seed):\n"
        "    g = torch.Generator(device='cuda').manual_seed(seed)\n"
        "    m = torch.nn.ParameterList([torch.nn.Parameter(torch.randn(4096, 8192, device='cuda', "
        "dtype=torch.bfloat16, generator=g), requires_grad=False) for _ in range(n)])\n"
        "    return m, [float(p.double().sum()) for p in m]\n"
        "a, sum_a = expert(1); b, sum_b = expert(2)\n"
        "t = time.perf_counter(); swap = ExpertSwap(a, b); torch.cuda.synchronize()\n"
        'print(f\'{n} tensors, {swap.host.numel() / 2**30:.1f} GiB parked ({"pinned" if swap.pinned else '
        '"pageable"}) in {time.perf_counter() - t:.1f} s\')\n'
        "for k, m in enumerate([b, a, b, a]):\n"
        "    torch.cuda.synchronize(); t = time.perf_counter(); swap.make(m); torch.cuda.synchronize()\n"
        '    print(f\'swap {k + 1} to {"b" if m is b else "a"}: {time.perf_counter() - t:.2f} s\')\n'
        "ok_b = [round(float(p.double().sum()), 3) for p in b] == [round(x, 3) for x in sum_b]\n"
        "swap.make(b)\n"
        "ok_a = [round(float(p.double().sum()), 3) for p in a] == [round(x, 3) for x in sum_a]\n"
        "print(f'a keeps its weights: {ok_a}; b keeps its weights: {ok_b}')\n"
    )
    run_logged(code)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    sg = sub.add_parser("stage")
    sg.add_argument("--parts", type=Path, default=REPO / ".gpu/parts", help="the carried parts (payload.py --stack)")
    b = sub.add_parser("build")
    b.add_argument("keys", nargs="+", choices=sorted(NAMES))
    b.add_argument("--scale", default="full")
    b.add_argument("--device", default="cuda")
    w = sub.add_parser("wait")
    w.add_argument("key", choices=sorted(NAMES))
    w.add_argument("--limit", type=float, default=300)
    sc = sub.add_parser("scenario")
    sc.add_argument("key", choices=sorted(NAMES))
    sc.add_argument("--stock", action="store_true")
    sc.add_argument("--budget", type=float, default=540, help="seconds from this command's start to the scenario's end")
    sc.add_argument("--no-sigterm", action="store_true")
    sc.add_argument("--rehearse", action="store_true", help="small sizes: the CPU rehearsal with tiny models")
    st = sub.add_parser("starts")
    st.add_argument("key", choices=sorted(NAMES))
    st.add_argument("runs", nargs="+", choices=["ours-cold", "ours-warm", "stock-cold", "stock-warm"])
    st.add_argument("--budget", type=float, default=560, help="seconds from this command's start")
    st.add_argument("--tag", default="", help="added to the output files' names (several `starts` in one call)")
    st.add_argument("--rehearse", action="store_true")
    st.add_argument("--seed-kernels", action="store_true", help="ours-cold starts with `prebuild`'s kernels")
    st.add_argument("--image-kernels", metavar="ARCH", help="ours-cold starts with the image's prebuilt kernels, "
                    "built for ARCH (9.0a) by kernel_seed.py first, as the Dockerfile does")  # fmt: skip
    cp = sub.add_parser("compare", help="ours with two sets of settings, one model, the same request")
    cp.add_argument("key", choices=sorted(k for k in NAMES if k != "glm-image"))
    cp.add_argument("--a", action="append", default=[], metavar="NAME=VALUE", help="side a's settings (default: none)")
    cp.add_argument("--b", action="append", default=[], metavar="NAME=VALUE", help="side b's settings")
    cp.add_argument("--steps", type=int, help="the request's steps (default: the model's, 40 or 50)")
    cp.add_argument("--repeat", type=int, default=1, help="send the request this many times; the last counts")
    cp.add_argument("--budget", type=float, default=570, help="seconds from this command's start")
    cp.add_argument("--rehearse", action="store_true")
    for p in (sc, st, cp):
        p.add_argument("--emulate-mib", type=int, help="leave only this much GPU memory free (81559: an H100 80GB)")
        p.add_argument("--env", action="append", default=[], metavar="NAME=VALUE", help="a setting for our launcher")
        p.add_argument("--plugin", action="store_true", help="our SGLang children apply the image's plugin (0.5.16)")
    sub.add_parser("matmul")
    sub.add_parser("torch-check", help="the staged torch on this GPU: versions, a matmul, conv3d and SDPA")
    pb = sub.add_parser("prebuild", help="build the kernels a cold Wan start compiles, with the GPU hidden")
    pb.add_argument("archs", nargs="*", default=["9.0a"])
    sb = sub.add_parser("swapbench", help="the expert swap alone: each direction timed with the GPU idle")
    sb.add_argument("--gib", type=float, default=26.6)
    fb = sub.add_parser("fa2-build", help="compile the carried flash-attn sdist in the background")
    fb.add_argument("--archs", default="90")
    fb.add_argument("--jobs", type=int, default=12)
    fc = sub.add_parser("fa2-check", help="join the compile, check and time the result")
    fc.add_argument("--limit", type=float, default=480)
    sub.add_parser("fa2-measure")
    args = parser.parse_args()
    # a call's time limit (or `timeout`) sends SIGTERM: unwind, so every running server is stopped (Scenario.stop)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    global EMULATE_MIB
    EMULATE_MIB = getattr(args, "emulate_mib", None)
    OURS_ENV.update(item.split("=", 1) for item in getattr(args, "env", []))
    global PLUGIN_HOOK, SEED_KERNELS, IMAGE_KERNELS
    PLUGIN_HOOK = getattr(args, "plugin", False)
    SEED_KERNELS = getattr(args, "seed_kernels", False)
    IMAGE_KERNELS = getattr(args, "image_kernels", None)
    if args.cmd == "stage":
        stage(args.parts)
    elif args.cmd == "build":
        build(args.keys, args.scale, args.device)
    elif args.cmd == "wait":
        return 0 if wait_built(args.key, args.limit) else 1
    elif args.cmd == "matmul":
        matmul()
    elif args.cmd == "torch-check":
        return torch_check()
    elif args.cmd == "prebuild":
        return 0 if prebuild(args.archs) else 1
    elif args.cmd == "swapbench":
        swapbench(args.gib)
    elif args.cmd == "fa2-build":
        fa2_build(args.archs, args.jobs)
    elif args.cmd == "fa2-check":
        return fa2_check(args.limit)
    elif args.cmd == "fa2-measure":
        fa2_measure()
    elif args.cmd == "compare":
        if not wait_built(args.key, args.budget - 300):
            return 1
        sides = {side: dict(item.split("=", 1) for item in items) for side, items in (("a", args.a), ("b", args.b))}
        run_compare(args.key, sides, args.steps, args.budget, args.rehearse, args.repeat)
    elif args.cmd == "starts":
        if not wait_built(args.key, args.budget - 300):
            return 1
        run_starts(args.key, args.runs, args.budget, args.rehearse, args.tag)
    else:
        if not wait_built(args.key, args.budget - 240):
            return 1
        run_scenario(
            args.key, args.stock, args.budget - (time.monotonic() - T_START), not args.no_sigterm, args.rehearse
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
