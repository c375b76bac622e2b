"""Settings + detected model + plan -> the exact `sglang serve` argv. Pure; the one place that knows
SGLang's flags.

Flags that only newer SGLang releases have are passed when the installed SGLang has them
(`supported`, from preflight.probe_sglang_flags); None means "assume the newest".
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .models import ModelInfo
from .plan import Plan
from .settings import MAX_STEPS_LIMIT, Settings

# Passed only when the installed SGLang knows them (the first three came after 0.5.16, the GPU device's version).
OPTIONAL_FLAGS = ("--http-graceful-shutdown-timeout", "--served-model-name", "--enable-metrics", "--warmup-mode")

# offload mode -> SGLang's per-component switches. Every switch is always passed: SGLang otherwise
# picks its own offload from the GPU size (layerwise DiT offload on an 80 GB GPU for Wan2.2-A14B,
# which needs ~94 GB of host RAM and gets a 64Gi pod OOMKilled).
OFFLOAD_SWITCHES: dict[str, dict[str, bool]] = {
    "none": {},
    "text-encoder": {"--text-encoder-cpu-offload": True},
    # loaded resident; the plugin parks one expert in host RAM (GLM_IMAGE_EXPERT_SWAP=on); the text encoder
    # waits there too, or the load runs out of an 80 GB card (plan.estimate)
    "expert-swap": {"--text-encoder-cpu-offload": True},
    "dit-layerwise": {"--text-encoder-cpu-offload": True, "--dit-layerwise-offload": True},
    "dit": {"--text-encoder-cpu-offload": True, "--dit-cpu-offload": True},
}
# OFFLOAD=expert-swap runs Wan's text encoder (umt5-xxl, 5.7 B parameters) in bf16, as Wan's own reference
# code does (t5_dtype bfloat16; its T5 weights ship in bf16), instead of SGLang's fp32 default: 10.6 GiB
# less host RAM, where the parked expert already takes 26.6 GiB. It changes outputs slightly against
# the resident layouts; SGLANG_EXTRA_ARGS="--text-encoder-precisions fp32" restores SGLang's choice. Only on a
# GPU: without one (the CPU tier) SGLang's fp32 stays, and the swapped server's video is the resident one's.
EXPERT_SWAP_ENCODER_PRECISION = "bf16"
# ... and keeps that text encoder in pageable host memory (--pin-cpu-memory false): SGLang offloads it through
# FSDP2 with pinned memory, pinned parameter by parameter through PyTorch's caching host allocator, which rounds
# each block up to a power of two (UMT5's 80 MiB matrices take 128 MiB): 15.9 GB of shared memory for 10.6 GiB
# of weights. Unpinned, host PSS fell from 49.0 to 44.6 GB (T2V) and the text encoding stage from 0.25 s to
# 1.5-1.9 s a prompt (H200, docs/benchmarks.md). The parked expert stays pinned: the plugin pins it itself.
EXPERT_SWAP_PIN_CPU_MEMORY = False
# ATTENTION_BACKEND -> SGLang's --attention-backend (auto passes nothing: SGLang picks per GPU)
ATTENTION_BACKENDS = {"fa3": "fa3", "fa2": "fa2", "sdpa": "torch_sdpa"}
ALL_SWITCHES = (
    "--dit-cpu-offload",
    "--dit-layerwise-offload",
    "--text-encoder-cpu-offload",
    "--image-encoder-cpu-offload",
    "--vae-cpu-offload",
)


@dataclass(frozen=True)
class Launch:
    argv: list[str]
    dropped: tuple[str, ...]  # optional flags this SGLang does not have


def _bool(value: bool) -> str:
    return "true" if value else "false"


def model_path_for_sglang(settings: Settings, model: ModelInfo) -> Path:
    """GLM-Image is recognised only by "glm-image" in its path: other folder names get a path alias
    (a symlink named after the repo, under CACHE_DIR) instead of the silent wrong pipeline."""
    variant = model.variant
    if variant and variant.path_alias and "glm-image" not in str(model.path).lower():
        return settings.caches / "model-alias" / variant.path_alias
    return model.path


def build(
    settings: Settings,
    model: ModelInfo,
    plan: Plan,
    scheduler_port: int,
    master_port: int,
    supported: Iterable[str] | None = None,
    listen: tuple[str, int] | None = None,
    own_warmup: bool = True,
    ar_url: str | None = None,
) -> Launch:
    """listen: where SGLang binds; default HOST:PORT (no gateway), else the gateway's loopback upstream.
    own_warmup=False: the gateway's readiness generation is the warm-up, so SGLang runs none of its own
    (`sglang serve` runs one at the model's default size and holds every request until it is done)."""
    host, port = listen or (settings.host, settings.port)
    have = None if supported is None else set(supported)
    argv = [settings.sglang_bin, "serve", "--model-type", "diffusion"]
    argv += ["--model-path", str(model_path_for_sglang(settings, model))]
    if model.variant and model.variant.sglang_model_id:
        argv += ["--model-id", model.variant.sglang_model_id]
    argv += ["--host", host, "--port", str(port), "--strict-ports", "true"]
    argv += ["--scheduler-port", str(scheduler_port), "--master-port", str(master_port)]
    argv += ["--num-gpus", str(max(plan.num_gpus, 1))]
    if plan.num_gpus > 1:
        argv += ["--enable-cfg-parallel", _bool(plan.cfg_parallel)]
        argv += ["--ulysses-degree", str(plan.ulysses), "--ring-degree", str(plan.ring)]
    if plan.num_gpus > 0:
        switches = OFFLOAD_SWITCHES[plan.offload]
        for flag in ALL_SWITCHES:
            argv += [flag, _bool(switches.get(flag, False))]
        if plan.offload == "expert-swap":
            argv += ["--text-encoder-precisions", EXPERT_SWAP_ENCODER_PRECISION]
            argv += ["--pin-cpu-memory", _bool(EXPERT_SWAP_PIN_CPU_MEMORY)]
    if settings.attention_backend in ATTENTION_BACKENDS:
        argv += ["--attention-backend", ATTENTION_BACKENDS[settings.attention_backend]]
    if ar_url is not None:
        argv += ["--srt-encoder-url", ar_url]
    if plan.compile_dit:
        argv += ["--enable-torch-compile"]
    argv += ["--output-path", str(settings.outputs), "--input-save-path", str(settings.uploads)]
    argv += ["--log-level", settings.log_level]

    optional: list[tuple[str, str]] = [
        ("--http-graceful-shutdown-timeout", str(settings.graceful_shutdown_timeout)),
        ("--enable-metrics", _bool(settings.metrics)),
    ]
    if settings.served_model_name:
        optional.append(("--served-model-name", settings.served_model_name))
    if not own_warmup:
        optional.append(("--warmup-mode", "off"))
    dropped: list[str] = []
    for flag, value in optional:
        if have is None or flag in have:
            argv += [flag, value]
        else:
            dropped.append(flag)
    argv += list(settings.extra_args)
    return Launch(argv, tuple(dropped))


# The AR server's decode CUDA graphs: SGLang captures them for batch sizes up to ~256 by default (10.3 s of
# its start on an H200, on the critical path when both servers start together). GLM-Image's AR stage decodes
# one sequence per image, MAX_CONCURRENCY (1) x n (<= 4) at once by default; larger batches run without graphs.
AR_CUDA_GRAPH_MAX_BS = 16


def build_ar(settings: Settings, model: ModelInfo, plan: Plan, port: int, graph_flag: str | None = None) -> list[str]:
    """GLM_AR=srt: GLM-Image's AR model on SGLang's LLM runtime, on loopback, as SGLang's own two-process
    test starts it (multimodal/test_ar_models.py): the model's vision_language_encoder folder, the tokenizer
    from its processor folder, a static share of GPU 0 (GLM_AR_START=together: a large share, the KV cache
    capped in tokens). Without a GPU (REQUIRE_GPU=false, the CPU tier): SGLang's CPU device with a KV cache
    for 8192 tokens (its default takes 71 % of host RAM). graph_flag: this SGLang's spelling of the decode
    CUDA graph cap (preflight.probe_ar_graph_flag), None to leave its default."""
    argv = [
        settings.sglang_bin, "serve",
        "--model-path", str(model.path / "vision_language_encoder"),
        "--tokenizer-path", str(model.path / "processor"),
        "--enable-multimodal",
        "--host", "127.0.0.1", "--port", str(port),
        "--log-level", settings.log_level,
    ]  # fmt: skip
    if plan.ar_mem_fraction is not None:
        argv += ["--mem-fraction-static", f"{plan.ar_mem_fraction:.2f}"]
        if graph_flag:
            argv += [graph_flag, str(AR_CUDA_GRAPH_MAX_BS)]
    else:
        argv += ["--device", "cpu"]
    if plan.ar_max_tokens is not None:
        argv += ["--max-total-tokens", str(plan.ar_max_tokens)]
    return argv


# PRESET=fast: Cache-DiT (SGLang's integration, configured by environment) with a fixed step mask, so the
# speed-up is the same for any prompt or weights (a dynamic threshold on random test weights would say
# nothing of real ones). Each DiT computes steps 1-5 in full, caches step 6 (SCM bins: compute 5, cache 1),
# then computes 2 of every 5 (compute 2, cache 3: SGLang's "medium" SCM pattern, continued). Measured on an
# H200 (T2V-A14B 480p, 40 steps, 22 in full): 2.84 s/step against 3.10 with a 6-step warm-up (24 in full)
# and 5.10 without the preset. The bins must cover the largest step count a request may ask for (the
# largest MAX_STEPS), else SGLang fails the request.
_FAST_PAIRS = -(-(MAX_STEPS_LIMIT - 6) // 5)
FAST_PRESET_ENV = {
    "SGLANG_CACHE_DIT_ENABLED": "true",
    "SGLANG_CACHE_DIT_SCM_COMPUTE_BINS": ",".join(["5"] + ["2"] * _FAST_PAIRS),
    "SGLANG_CACHE_DIT_SCM_CACHE_BINS": ",".join(["1"] + ["3"] * _FAST_PAIRS),
    "SGLANG_CACHE_DIT_SCM_POLICY": "static",
}


def child_env(settings: Settings, plan: Plan, base: dict[str, str]) -> dict[str, str]:
    """The environment for SGLang: kernel caches under CACHE_DIR (never under the read-only models), the
    preset's knobs (ones already set win) and the switches the image's plugin reads."""
    env = dict(base)
    if plan.preset == "fast":
        for name, value in FAST_PRESET_ENV.items():
            env.setdefault(name, value)
    if plan.edits_in_process:
        env["GLM_IMAGE_AR_EDITS"] = "in-process"
    if plan.ar_together:
        env["GLM_IMAGE_AR_START"] = "together"
    if plan.offload == "expert-swap":
        env["GLM_IMAGE_EXPERT_SWAP"] = "on"
    if plan.worker_preload:  # the plugin's worker_start.py, in SGLang's main process
        env["GLM_IMAGE_WORKER_START"] = "preload"
    if plan.compile_dit:  # SGLang's own DiT mode, max-autotune-no-cudagraphs, autotuned past 9 min (H200)
        env.setdefault("SGLANG_TORCH_COMPILE_MODE", "default")
        env["GLM_IMAGE_VAE_COMPILE"] = "off"
    cache = settings.caches
    # Every compiled-kernel cache the stack keeps, or a start with a kept CACHE_DIR compiles again: SGLang's
    # own JIT kernels (sglang.jit_kernel: the diffusion DiTs' fused QK-norm + RoPE and others) go through
    # tvm-ffi, whose cache is ~/.cache/tvm-ffi, and the CuTe DSL and QuACK caches sit under /tmp (an emptyDir
    # in deploy/) in a folder named after getpass.getuser(), which an OpenShift UID without a passwd entry
    # cannot give.
    defaults = {
        "TRITON_CACHE_DIR": cache / "triton",
        "TORCHINDUCTOR_CACHE_DIR": cache / "inductor",
        "TVM_FFI_CACHE_DIR": cache / "tvm-ffi",
        "CUTE_DSL_CACHE_DIR": cache / "cute-dsl",
        "QUACK_CACHE_DIR": cache / "quack",
        "SGLANG_CACHE_DIR": cache / "sglang",
        "SGLANG_JIT_CACHE_DIR": cache / "sglang-jit",
        "GLM_IMAGE_KERNEL_RECORD": cache / "kernel-builds.jsonl",  # the plugin: what SGLang compiled
        "SGLANG_DIFFUSION_CACHE_ROOT": cache / "sglang-diffusion",
        "FLASHINFER_WORKSPACE_BASE": cache / "flashinfer",
        "CUDA_CACHE_PATH": cache / "cuda",
        "XDG_CACHE_HOME": cache / "xdg",
        "MPLCONFIGDIR": cache / "matplotlib",
    }
    for name, path in defaults.items():
        env.setdefault(name, str(path))
    env.setdefault("PYTHONUNBUFFERED", "1")
    # Measured on an H100 (docs/benchmarks.md): after one out-of-memory request, 6 GiB stayed reserved
    # but unusable and the next small request failed too; with expandable segments it succeeded.
    env.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")
    return env
