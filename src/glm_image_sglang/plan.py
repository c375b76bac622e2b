"""Decisions: parallel layout and weight placement, from settings, the model and the machine's facts.

Pure: the machine is passed in as data (preflight.py probes it), so every decision is unit-tested.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import ConfigError, ResourceError
from .models import GiB, ModelInfo
from .settings import Settings

# A GPU with more than this in use before the server starts is shared (another process, or memory held
# back on purpose): the plan is made for what is free. Below it, the driver's own reservation, the total.
SHARED_GPU_THRESHOLD = 2 * GiB


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    memory_bytes: int
    free_bytes: int | None = None  # free at start, where the probe says

    @property
    def usable_bytes(self) -> int:
        if self.free_bytes is not None and self.memory_bytes - self.free_bytes > SHARED_GPU_THRESHOLD:
            return self.free_bytes
        return self.memory_bytes


@dataclass(frozen=True)
class Machine:
    """Facts about the machine, as probed by preflight.probe_machine()."""

    gpus: tuple[Gpu, ...]
    gpu_probe: str  # how the GPUs were found, or why none were
    host_memory_limit: int | None  # cgroup limit, else physical memory; None if unknown


@dataclass(frozen=True)
class Plan:
    num_gpus: int  # 0: SGLang's CPU platform (REQUIRE_GPU=false)
    cfg_parallel: bool
    ulysses: int
    ring: int
    offload: str  # none | text-encoder | expert-swap | dit-layerwise | dit
    gpu_need_bytes: int  # estimated peak per GPU
    host_need_bytes: int  # estimated peak host RSS while loading and serving
    notes: tuple[str, ...] = field(default=())  # each derived default, printed at start
    ar_mem_fraction: float | None = None  # GLM_AR=srt on a GPU: the AR server's share of GPU 0
    glm_ar: str = "in-process"  # GLM_AR resolved: in-process, srt or the URL of a running AR server
    edits_in_process: bool = False  # with an AR server, edits still run in the diffusion server (the plugin)
    preset: str = "default"  # PRESET resolved: fast only for the Wan 2.2 models (sglang_args.FAST_PRESET_ENV)
    ar_together: bool = False  # the AR server started here and the diffusion server start at once
    ar_max_tokens: int | None = None  # the AR server's --max-total-tokens (its KV cache), None: its own sizing
    compile_dit: bool = False  # COMPILE=dit on a GPU: SGLang's --enable-torch-compile, the VAE left eager
    worker_preload: bool = False  # WORKER_START=preload where the plugin loads: workers forked from a fork server


# Bytes per parameter as SGLang loads each component by default (configs/pipeline_configs/base.py:
# dit_precision bf16, vae_precision fp32 (bf16 for GLM-Image), text_encoder_precisions fp32), except the
# text encoder under OFFLOAD=expert-swap, which the launcher loads in bf16 (sglang_args.EXPERT_SWAP_ENCODER_PRECISION).
def _bytes_per_param(component: str, variant_key: str | None, offload: str = "none") -> int:
    if component.startswith("transformer"):
        return 2
    if component == "vae":
        return 2 if variant_key == "glm-image" else 4
    if component.startswith("text_encoder"):
        return 2 if offload == "expert-swap" else 4
    return 2  # vision_language_encoder, image_encoder


# Host RSS with everything on the GPU: measured 8 GB for Wan2.2-T2V-A14B resident (docs/benchmarks.md).
HOST_BASE = 8 * GiB
# Layerwise DiT offload keeps pinned host copies: 93.7 GB RSS measured for A14B's 57 GB of bf16 DiT weights.
DIT_OFFLOAD_HOST_FACTOR = 1.5
# Peak activations + VAE decode on top of the weights, measured on an H100 (docs/benchmarks.md):
# A14B with its 53 GiB of experts resident ran out of GPU memory in the 720p VAE decode and in
# I2V's encode at 480p (79 GiB in use, 2 GiB more wanted), so a video model needs ~28 GiB beyond its
# weights to serve every size it accepts; TI2V-5B peaked at 64.6 GiB for 33 GiB of weights.
# GLM-Image peaked at 45.8 GiB for 33.3 GiB of weights (H200, FA3, 1152x864 and 1024x1024 edits).
ACTIVATION_HEADROOM = {"video": 28 * GiB, "image": 13 * GiB}

# OFFLOAD=expert-swap, I2V-A14B: the first request VAE-encodes its conditioning video (81 frames at 720p's
# area: SGLang 0.5.16 takes it whatever size is asked) while both experts are still on the GPU: 72.7 GiB in
# use (nvidia-smi, emulated 80 GB card, H200, 2026-11-30), 19 GiB over the weights then on the GPU.
EXPERT_SWAP_I2V_ENCODE = 19 * GiB

# auto tries these in order and takes the first that fits the GPU; expert-swap only for two-expert models
# where SGLang loads the image's plugin (A14B on an emulated 80 GB card: 16.4 s/step at 720p against
# dit-layerwise's 18.75 on an H100, 44.6 GB host PSS against 123 GB RSS; docs/benchmarks.md).
OFFLOAD_ORDER = ("none", "text-encoder", "expert-swap", "dit-layerwise")

# GLM_AR=srt: SGLang's LLM runtime holds the AR model's bf16 weights plus its KV cache and CUDA graphs in a
# static share of the GPU (--mem-fraction-static). A GLM-Image request needs ~1300 tokens of KV cache,
# a few MiB; the allowance covers the graphs and the runtime's workspace (an estimate until measured).
AR_SRT_ALLOWANCE = 6 * GiB
AR_COMPONENT = "vision_language_encoder"
# The AR server's own processes in host RAM: 27.8-28.9 GB RSS with GLM_AR=srt, 13.8-16.9 GB in-process (H200).
AR_SRT_HOST = 12 * GiB
# GLM_AR_START=together: SGLang's LLM runtime sizes its KV cache as (free memory after its weights) minus
# (1 - fraction) x (free memory before them); a diffusion server loading at the same time would shrink
# the first and starve or fail it. So its fraction is raised and the cache capped in tokens instead: a
# GLM-Image request needs ~1300, so 16384 serve a dozen at once (the CPU layout has 8192).
AR_TOGETHER_FRACTION = 0.95
AR_TOGETHER_TOKENS = 16384
AR_CPU_TOKENS = 8192


def gpu_bytes(model: ModelInfo, component: str, offload: str = "none") -> int:
    comp = next(c for c in model.components if c.name == component)
    key = model.variant.key if model.variant else None
    if comp.params is None:
        return comp.weight_bytes
    return comp.params * _bytes_per_param(component, key, offload)


def estimate(model: ModelInfo, offload: str, ranks: int = 1) -> tuple[int, int]:
    """(peak GPU bytes per GPU, peak host bytes) for an offload mode on `ranks` GPUs. Every GPU holds all
    weights: CFG-parallel and Ulysses split activations, not weights."""
    gpu_parts = [c.name for c in model.components if c.weight_bytes or c.params]
    on_host: list[str] = []
    host_factor = 1.0
    if offload == "text-encoder":
        on_host = [n for n in gpu_parts if n.startswith("text_encoder")]
    elif offload in ("dit-layerwise", "dit"):
        on_host = [n for n in gpu_parts if n.startswith("text_encoder") or n.startswith("transformer")]
        host_factor = DIT_OFFLOAD_HOST_FACTOR
    kind = model.variant.output if model.variant else "video"
    if offload == "expert-swap":
        # SGLang loads both experts to the GPU; the first denoising step parks one in an exactly sized host
        # buffer. The text encoder waits in host RAM (SGLang's offload moves it in for each prompt): with it on
        # the GPU too, the load ran out of an 80 GB card (72 GiB allocated, 2026-11-30). So the first request
        # peaks with both experts and its encoders: the text encoder (bf16 in this mode), then for I2V the
        # conditioning video's VAE encode; later ones with one expert and the activations. Measured (emulated
        # 80 GB card, H200, 2026-11-30, nvidia-smi): T2V 65.0 GiB at the first prompt (64.3 estimated), I2V
        # 72.7 GiB in its first image encode (72.7); SGLang's peak serving 720p 51.4 GiB (55.1); host PSS
        # 44.6 / 44.5 GB with the text encoder unpinned (48.5 GB estimated).
        expert = max((gpu_bytes(model, n) for n in model.dit_names), default=0)
        weights = sum(gpu_bytes(model, n, offload) for n in gpu_parts)
        encoder = sum(gpu_bytes(model, n, offload) for n in gpu_parts if n.startswith("text_encoder"))
        image_encode = EXPERT_SWAP_I2V_ENCODE if model.variant and "image-to-video" in model.variant.tasks else 0
        first_request = weights - encoder + max(encoder, image_encode)
        gpu = max(first_request, weights - encoder - expert + ACTIVATION_HEADROOM[kind])
        return gpu, HOST_BASE + ranks * (expert + encoder)  # each rank parks its own copies
    gpu = sum(gpu_bytes(model, n) for n in gpu_parts if n not in on_host) + ACTIVATION_HEADROOM[kind]
    if offload in ("dit-layerwise", "dit"):
        # the layers in flight and the largest non-DiT component stay on the GPU
        gpu += max((gpu_bytes(model, n) for n in model.dit_names), default=0) // 10
    host_dit = sum(gpu_bytes(model, n) for n in on_host if n.startswith("transformer"))
    host_other = sum(gpu_bytes(model, n) for n in on_host if not n.startswith("transformer"))
    host = HOST_BASE + int(host_dit * host_factor) + host_other
    return gpu, host


def _layout(settings: Settings, model: ModelInfo, n: int) -> tuple[bool, int, int, list[str]]:
    notes: list[str] = []
    uses_cfg = model.variant.uses_cfg if model.variant else True
    if settings.cfg_parallel == "on":
        if n % 2:
            raise ConfigError(f"CFG_PARALLEL=on needs an even number of GPUs; {n} in use. Set NUM_GPUS.")
        cfg = True
    elif settings.cfg_parallel == "off":
        cfg = False
    else:
        cfg = uses_cfg and n >= 2 and n % 2 == 0
        if n > 1:
            notes.append(f"CFG-parallel: {'on' if cfg else 'off'} (auto: {n} GPUs)")
    sp = n // (2 if cfg else 1)
    heads = model.dit_heads
    if settings.ulysses_degree is None and settings.ring_degree is None:
        # Ulysses is fastest; its degree must divide the attention heads. The rest goes to Ring.
        ulysses = max(d for d in range(1, sp + 1) if sp % d == 0 and (heads is None or heads % d == 0))
        ring = sp // ulysses
        if sp > 1:
            notes.append(f"sequence parallel: ulysses {ulysses} x ring {ring} (auto: {sp} GPUs per CFG branch)")
    else:
        ulysses = settings.ulysses_degree or max(1, sp // (settings.ring_degree or 1))
        ring = settings.ring_degree or max(1, sp // ulysses)
    if (2 if cfg else 1) * ulysses * ring != n:
        raise ConfigError(
            f"parallel layout does not use all {n} GPUs: CFG {'2' if cfg else '1'} x ULYSSES_DEGREE {ulysses} x "
            f"RING_DEGREE {ring} = {(2 if cfg else 1) * ulysses * ring}. Make the product equal NUM_GPUS."
        )
    if heads is not None and heads % ulysses:
        raise ConfigError(
            f"ULYSSES_DEGREE={ulysses} does not divide the model's {heads} attention heads; "
            f"use a divisor of {heads} and put the rest in RING_DEGREE."
        )
    return cfg, ulysses, ring, notes


def _fmt(n: int) -> str:
    return f"{n / GiB:.1f} GiB"


def make_plan(
    settings: Settings,
    model: ModelInfo,
    machine: Machine,
    plugin: bool = False,
    srt_encoder: bool | None = True,
) -> Plan:
    """What the installed SGLang offers: plugin, it loads the image's plugin, which runs GLM-Image edits in
    the diffusion server beside an AR server (that server then also holds the AR model) and does
    OFFLOAD=expert-swap; srt_encoder, the diffusion server takes --srt-encoder-url (None: its flags could
    not be read). GLM_AR=auto picks srt only where both hold and it fits."""
    if not machine.gpus:
        if settings.require_gpu:
            raise ResourceError(
                f"no GPU visible ({machine.gpu_probe}). Start the container with GPU access: "
                "docker run --gpus all ... (NVIDIA Container Toolkit), or on Kubernetes/OpenShift request "
                "nvidia.com/gpu: 1 in the pod's resources."
            )
        offload = "expert-swap" if settings.offload == "expert-swap" else "none"  # the swap runs on the CPU too
        _check_offload(offload, model, plugin)
        gpu, host = estimate(model, offload)
        notes = ["no GPU: SGLang's CPU platform (REQUIRE_GPU=false)"]
        ar = _ar_stage(settings, model, None, 0, plugin, srt_encoder, notes)
        preset = _preset(settings, model, notes)
        if settings.compile != "off":
            notes.append("compile: off (COMPILE=dit compiles for the GPU; there is none)")
        preload = _worker_start(settings, plugin, notes, ar.mode == "srt")
        return Plan(
            0, False, 1, 1, offload, 0, host + ar.host, tuple(notes), None, ar.mode, ar.edits_in_process, preset,
            ar.together, ar.max_tokens, worker_preload=preload,
        )  # fmt: skip
    n = settings.num_gpus or len(machine.gpus)
    notes = [] if settings.num_gpus else [f"GPUs: {n} (all visible)"]
    if n > len(machine.gpus):
        raise ResourceError(
            f"NUM_GPUS={n} but only {len(machine.gpus)} GPU(s) are visible ({machine.gpu_probe}). "
            f"Lower NUM_GPUS or give the container more GPUs."
        )
    cfg, ulysses, ring, layout_notes = _layout(settings, model, n)
    notes += layout_notes
    per_gpu = min(g.usable_bytes for g in machine.gpus[:n])
    for g in machine.gpus[:n]:
        if g.usable_bytes < g.memory_bytes:
            notes.append(
                f"GPU {g.index}: {_fmt(g.usable_bytes)} free of {_fmt(g.memory_bytes)} at start (another process "
                f"holds the rest): planned for {_fmt(g.usable_bytes)}"
            )
    if settings.offload == "auto":
        swaps = len(model.dit_names) == 2 and plugin
        limit = machine.host_memory_limit
        for mode in (m for m in OFFLOAD_ORDER if m != "expert-swap" or swaps):
            gpu, host = estimate(model, mode, n)
            if mode == "expert-swap" and limit is not None and host > limit:
                continue  # one parked copy per rank: several GPUs can need more than the pod has
            if gpu <= per_gpu:
                offload = mode
                break
        else:
            gpu, host = estimate(model, "dit-layerwise", n)
            raise ResourceError(
                f"{model.display_name} needs about {_fmt(gpu)} per GPU even with the DiT offloaded layer by layer, "
                f"but the GPU has {_fmt(per_gpu)}. Use a GPU with more memory."
            )
        notes.append(
            f"offload: {offload} (auto: weights+activations ~{_fmt(estimate(model, 'none')[0])} "
            f"vs {_fmt(per_gpu)} per GPU)"
        )
    else:
        offload = settings.offload
        _check_offload(offload, model, plugin)
        gpu, host = estimate(model, offload, n)
    if offload == "expert-swap":
        notes.append(
            "expert-swap: the text encoder runs in bf16 (Wan's reference precision; SGLang's default is fp32), "
            "so outputs differ slightly from a resident layout's"
        )
    ar = _ar_stage(settings, model, per_gpu, gpu, plugin, srt_encoder, notes)
    preset = _preset(settings, model, notes)
    compile_dit = _compile(settings, plugin, notes)
    preload = _worker_start(settings, plugin, notes, ar.mode == "srt")
    return Plan(
        n, cfg, ulysses, ring, offload, gpu + ar.gpu, host + ar.host, tuple(notes), ar.fraction, ar.mode,
        ar.edits_in_process, preset, ar.together, ar.max_tokens, compile_dit, preload,
    )  # fmt: skip


def _preset(settings: Settings, model: ModelInfo, notes: list[str]) -> str:
    """PRESET resolved: fast where it is built and tested (the Wan 2.2 models, Cache-DiT on their DiTs), else
    the default path with a note saying why."""
    if settings.preset == "default":
        return "default"
    if not (model.variant and model.variant.output == "video"):
        notes.append(
            f"preset: default (PRESET=fast is for the Wan 2.2 models; {model.display_name} runs as it is"
            + ("; its time is mostly the AR stage, see GLM_AR)" if model.variant else ")")
        )
        return "default"
    experts = "each expert's" if len(model.dit_names) == 2 else "the"
    notes.append(
        f"preset: fast (Cache-DiT: {experts} steps 1-5 in full, then 2 of every 5; the other steps run the first "
        "transformer block and reuse the cached rest. Outputs differ from PRESET=default)"
    )
    return "fast"


def _compile(settings: Settings, plugin: bool, notes: list[str]) -> bool:
    """COMPILE=dit: SGLang's --enable-torch-compile compiles the DiT and the VAE decode; the plugin keeps the
    decode eager (compiling it cost TI2V-5B 80-115 s on each new size's first request for 0.9 s of decode,
    torch._dynamo's recompile limit in Wan's VAE; the DiT alone 14 s for 8.5 % a step, H200)."""
    if settings.compile == "off":
        return False
    vae = (
        "the VAE decodes eagerly (the image's SGLang plugin)"
        if plugin
        else "this SGLang loads no plugin, so SGLang compiles the VAE decode too: each new size's first request "
        "80-115 s slower"
    )
    notes.append(
        f"compile: the DiT with torch.compile (inductor mode default); {vae}. The first request at each new size "
        "compiles (kept in CACHE_DIR); outputs differ slightly from COMPILE=off"
    )
    return True


def _worker_start(settings: Settings, plugin: bool, notes: list[str], ar_srt: bool = False) -> bool:
    """WORKER_START=preload: the image's plugin, loaded in SGLang's main process, forks the diffusion workers
    (and with ar_srt the AR server's processes) from a fork server that imported their heavy libraries meanwhile
    (worker_start.py)."""
    if settings.worker_start == "spawn":
        return False
    if not plugin:
        notes.append("worker start: spawned (WORKER_START=preload needs the image's plugin, and this SGLang loads "
                     "none, or GLM_IMAGE_SGLANG_PLUGIN=off)")  # fmt: skip
        return False
    notes.append(
        "worker start: forked from a fork server that imports torch, transformers and diffusers while SGLang's "
        "main process imports (WORKER_START=preload"
        + ("; the AR server's scheduler and detokenizer too)" if ar_srt else ")")
    )
    return True


def _check_offload(offload: str, model: ModelInfo, plugin: bool) -> None:
    if offload != "expert-swap":
        return
    if len(model.dit_names) != 2:
        raise ConfigError(
            f"OFFLOAD=expert-swap applies to Wan2.2-A14B (two DiT experts); {model.display_name} has "
            f"{len(model.dit_names)}. Use OFFLOAD=auto."
        )
    if not plugin:
        raise ConfigError(
            "OFFLOAD=expert-swap needs the image's SGLang plugin, and this SGLang loads none (or "
            "GLM_IMAGE_SGLANG_PLUGIN=off). Use OFFLOAD=auto."
        )


@dataclass(frozen=True)
class _ArStage:
    mode: str = "in-process"  # in-process | srt | URL
    fraction: float | None = None  # srt on a GPU: --mem-fraction-static of the AR server
    gpu: int = 0  # added to the diffusion server's GPU estimate (negative: the AR weights leave it)
    host: int = 0
    edits_in_process: bool = False
    together: bool = False  # started at once with the diffusion server (GLM_AR_START=together)
    max_tokens: int | None = None  # the AR server's --max-total-tokens


def _ar_stage(
    settings: Settings,
    model: ModelInfo,
    per_gpu: int | None,
    diffusion_gpu: int,
    plugin: bool,
    srt_encoder: bool | None,
    notes: list[str],
) -> _ArStage:
    """GLM_AR, resolved: where GLM-Image's AR stage runs and what that layout adds to the estimates. With an
    AR server the AR weights leave the diffusion server unless edits stay in-process; an AR server of ours
    brings its static share of the GPU (srt with a GPU, per_gpu given) and its processes in host RAM."""
    is_glm = bool(model.variant and model.variant.key == "glm-image")
    mode = settings.glm_ar
    if mode == "auto":
        mode = _auto_ar(model, per_gpu, diffusion_gpu, plugin, srt_encoder, notes) if is_glm else "in-process"
    if mode == "in-process":
        return _ArStage()
    if not is_glm:
        raise ConfigError(
            f"GLM_AR={mode} applies to GLM-Image only; {model.display_name} has no AR stage. Unset GLM_AR."
        )
    weights = gpu_bytes(model, AR_COMPONENT)
    fraction, gpu, host = None, (0 if plugin else -weights), 0
    # GLM_AR_START=auto: together where the plugin loads (it skips SGLang's load-time /health check of the
    # AR server); H200, kept caches: ready 58 s together, 114 s after-ready (docs/benchmarks.md)
    together = settings.glm_ar_url is None and settings.glm_ar_start != "after-ready" and plugin
    if settings.glm_ar_url is None and settings.glm_ar_start == "together" and not plugin:
        notes.append(
            "GLM_AR_START=together: the AR server starts first all the same: SGLang checks its /health while "
            "loading and without the image's plugin (this SGLang loads none, or GLM_IMAGE_SGLANG_PLUGIN=off) "
            "cannot wait for it"
        )
    max_tokens = AR_TOGETHER_TOKENS if together else None
    start = "started together with the diffusion server" if together else "the diffusion server starts once it is ready"
    if settings.glm_ar_url is not None:
        notes.append(f"GLM-Image AR stage: the server at {settings.glm_ar_url} (not started here)")
    elif per_gpu is None:
        max_tokens = AR_CPU_TOKENS
        notes.append(f"GLM-Image AR stage: srt on the CPU (KV cache for {max_tokens} tokens; {start})")
        host = AR_SRT_HOST
    else:
        fraction, share = _ar_share(model, per_gpu)  # what the plan counts, either way
        gpu, host = gpu + share, AR_SRT_HOST
        cap = ""
        if together:
            fraction, cap = AR_TOGETHER_FRACTION, f" and its KV cache capped at {max_tokens} tokens"
        notes.append(
            f"GLM-Image AR stage: srt, a second SGLang process with --mem-fraction-static {fraction:.2f}{cap} "
            f"({_fmt(share)} of the GPU planned: {_fmt(weights)} of weights, the rest KV cache and CUDA graphs; "
            f"{start})"
        )
    notes.append(
        "edits: in-process, the AR model also in the diffusion server (the image's SGLang plugin)"
        if plugin
        else "edits: off (this SGLang loads no plugin, and has no edit path through an AR server)"
    )
    return _ArStage(mode, fraction, gpu, host, plugin, together, max_tokens)


def _ar_share(model: ModelInfo, per_gpu: int) -> tuple[float, int]:
    """The AR server's --mem-fraction-static (its weights plus the allowance, rounded up to 0.01) and the
    bytes of the GPU that fraction stands for."""
    fraction = min(0.95, -(-(gpu_bytes(model, AR_COMPONENT) + AR_SRT_ALLOWANCE) * 100 // per_gpu) / 100)
    return fraction, int(fraction * per_gpu)


def _auto_ar(
    model: ModelInfo,
    per_gpu: int | None,
    diffusion_gpu: int,
    plugin: bool,
    srt_encoder: bool | None,
    notes: list[str],
) -> str:
    """GLM_AR=auto: srt (measured 4.7x faster text-to-image on an H200) where there is a GPU, this SGLang can
    use an AR server and still serve edits, and both processes fit; in-process otherwise, saying why."""
    why = None
    if per_gpu is None:
        why = "no GPU"
    elif srt_encoder is None:
        why = "SGLang's flags could not be read to see whether it takes --srt-encoder-url"
    elif not srt_encoder:
        why = "this SGLang has no --srt-encoder-url"
    elif not plugin:
        why = "beside an AR server this SGLang could not serve edits: it loads no plugin; GLM_AR=srt trades them"
    else:
        need = diffusion_gpu + _ar_share(model, per_gpu)[1]
        if need > per_gpu:
            why = f"an AR server would need ~{_fmt(need)} with the diffusion server, the GPU has {_fmt(per_gpu)}"
    if why is not None:
        notes.append(f"GLM-Image AR stage: in-process (auto: {why})")
        return "in-process"
    notes.append("GLM_AR: srt (auto: a GPU with room for both processes, and edits stay in-process)")
    return "srt"
