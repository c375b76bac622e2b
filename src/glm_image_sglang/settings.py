"""The one typed configuration: every environment variable the launcher reads, with its default.

README.md's environment table is generated from FIELDS (tests check they agree). Build a Settings
inside main() with Settings.from_env(); nothing reads os.environ anywhere else.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .models import VARIANTS

TRUE = {"1", "true", "yes", "on"}
FALSE = {"0", "false", "no", "off"}

VARIANT_CHOICES = ("auto", *VARIANTS, "other")
CFG_CHOICES = ("auto", "on", "off")
OFFLOAD_CHOICES = ("auto", "none", "text-encoder", "expert-swap", "dit-layerwise", "dit")
PREFLIGHT_CHOICES = ("enforce", "warn")
ATTENTION_CHOICES = ("auto", "fa3", "fa2", "sdpa")
GLM_AR_CHOICES = ("auto", "in-process", "srt")
GLM_AR_START_CHOICES = ("auto", "after-ready", "together")
PRESET_CHOICES = ("default", "fast")
COMPILE_CHOICES = ("off", "dit")
WORKER_START_CHOICES = ("preload", "spawn")
MAX_STEPS_LIMIT = 10000  # the largest MAX_STEPS accepted (PRESET=fast's step mask covers it)
LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclass(frozen=True)
class Field:
    env: str
    attr: str
    default: str | None  # as written in the environment; None = required or unset
    help: str
    secret: bool = False


FIELDS: tuple[Field, ...] = (
    Field(
        "MODEL_PATH",
        "model_path",
        None,
        "Required. The Diffusers model folder (holds model_index.json), or a repo id such as "
        "zai-org/GLM-Image found in the offline cache under HF_HOME.",
    ),
    Field(
        "MODEL_VARIANT",
        "model_variant",
        "auto",
        f"Which model it is: auto (detected from the files), {', '.join(VARIANTS)}, or other "
        "(an unrecognised model, passed to SGLang as it is).",
    ),
    Field("HOST", "host", "0.0.0.0", "Address the API listens on."),
    Field("PORT", "port", "30000", "Port the API listens on."),
    Field("NUM_GPUS", "num_gpus", None, "GPUs to use. Default: all visible GPUs."),
    Field(
        "CFG_PARALLEL",
        "cfg_parallel",
        "auto",
        "auto, on or off: run the conditional and unconditional passes on two GPU groups. "
        "auto: on when the GPU count is even and >= 2.",
    ),
    Field(
        "ULYSSES_DEGREE",
        "ulysses_degree",
        None,
        "Ulysses sequence-parallel degree. Default: the GPUs left after CFG-parallel.",
    ),
    Field("RING_DEGREE", "ring_degree", None, "Ring sequence-parallel degree. Default: 1."),
    Field(
        "OFFLOAD",
        "offload",
        "auto",
        "auto, none, text-encoder, expert-swap, dit-layerwise or dit: which weights live in host RAM between "
        "uses. auto keeps everything on the GPU when it fits (least host RAM), else offloads the text "
        "encoder, then (Wan2.2-A14B with the image's SGLang plugin) swaps experts, else streams the DiT layer "
        "by layer. expert-swap: one expert on the GPU, the other and the text encoder (in bf16, as Wan's own "
        "code runs it) in host RAM, swapped when a step needs it (an 80 GB GPU: 720p at full speed).",
    ),
    Field(
        "ATTENTION_BACKEND",
        "attention_backend",
        "auto",
        "auto (SGLang's choice: its own FlashAttention kernels where the GPU has them), fa3 (those kernels), "
        "fa2 (the flash-attn package that FLASH_ATTN=source compiles into the image) or sdpa (PyTorch's).",
    ),
    Field(
        "GLM_AR",
        "glm_ar",
        "auto",
        "GLM-Image only: where its autoregressive stage runs. auto (srt where there is a GPU with room for both "
        "processes and edits still work, else in-process; in-process too if that AR server fails to start), "
        "in-process (transformers' generate inside the diffusion server), srt (a second SGLang process, its "
        "LLM runtime with CUDA graphs, started first on the same GPU, or on the CPU without one; text-to-image "
        "4.7x faster on an H200) or the http(s) URL of such "
        "a server that runs already (the launcher waits for its /health and starts none). With srt or a URL, "
        "text-to-image goes there and edits run in-process (the image's SGLang plugin; the AR model is then "
        "loaded twice); an SGLang without plugin loading answers edits with 400.",
    ),
    Field(
        "GLM_AR_START",
        "glm_ar_start",
        "auto",
        "With an AR server started here (GLM_AR srt, or auto choosing it): together starts both servers at once "
        "(H200: ready 58 s with a kept CACHE_DIR against 114 s after-ready): the AR server's KV cache is then "
        "capped at 16384 tokens and its static share raised so that the other's load cannot starve it, the "
        "diffusion server skips its load-time check of the AR server (the image's SGLang plugin), and the "
        "gateway's readiness waits for both; after-ready starts the diffusion server once the AR server answers "
        "/health. auto: together where SGLang loads the image's plugin, else after-ready.",
    ),
    Field(
        "PRESET",
        "preset",
        "default",
        "default or fast. fast (Wan 2.2; changes the outputs; T2V-A14B 480p: 2.84 s/step against 5.10 on an "
        "H200): Cache-DiT runs every transformer block on steps 1-5 of each DiT, then on 2 of every 5 steps "
        "(7-8, 12-13, ...); on the other steps only the first block runs and the cached rest is reused (a fixed "
        "step mask, the same for any prompt: 22 of A14B's 40 steps in full). SGLANG_CACHE_DIT_* variables you "
        "set win over the preset's.",
    ),
    Field(
        "COMPILE",
        "compile",
        "off",
        "off or dit. dit (changes the outputs slightly): torch.compile of the diffusion transformer (SGLang's "
        "--enable-torch-compile, inductor mode default) with the VAE decode left eager by the image's plugin. "
        "TI2V-5B 1280x704x121 on an H200: 1.70 s/step against 1.86 with SGLang 0.5.16, but 1.72 against 1.66 "
        "(slower) with the image's 0.5.23; the first request at each new size 14-23 s slower (compiled kernels "
        "kept in CACHE_DIR). Without the plugin SGLang compiles the VAE too "
        "(80-115 s more on each new size's first request).",
    ),
    Field(
        "WORKER_START",
        "worker_start",
        "preload",
        "preload or spawn. preload (needs SGLang >= 0.5.23 with the image's plugin, else workers are spawned "
        "with a note): SGLang's diffusion workers (and GLM-Image's AR server's scheduler and detokenizer) are "
        "forked from a server that imports torch, transformers and diffusers while SGLang's main process is still "
        "importing, instead of spawned to import them again afterwards. TI2V-5B on an H200: the worker's start "
        "11-13 s against 19-21 s spawned, warm ready 51-57 s against 60-63 s; T2V-A14B warm 68-71 s; outputs "
        "unchanged (the same video file). If that server touched CUDA, workers are spawned, with a WARNING. "
        "spawn: SGLang's own way.",
    ),
    Field(
        "SERVED_MODEL_NAME",
        "served_model_name",
        None,
        "Model name reported by /v1/models. Default: the model's repo name.",
    ),
    Field("LOG_LEVEL", "log_level", "info", "debug, info, warning or error."),
    Field(
        "DATA_DIR",
        "data_dir",
        "/app/data",
        "Writable root for outputs, uploads and kernel caches (mount an emptyDir or a volume here "
        "when the root filesystem is read-only).",
    ),
    Field("OUTPUT_DIR", "output_dir", None, "Where generated files go. Default: $DATA_DIR/outputs."),
    Field("UPLOAD_DIR", "upload_dir", None, "Where uploaded input images go. Default: $DATA_DIR/uploads."),
    Field(
        "CACHE_DIR",
        "cache_dir",
        None,
        "Every compiled-kernel cache: Triton, Inductor, SGLang's JIT kernels (tvm-ffi), CuTe DSL, QuACK, "
        "FlashInfer. Default: $DATA_DIR/cache. Keep it on a volume to skip kernel compiles on restart.",
    ),
    Field(
        "KERNEL_SEED_DIR",
        "kernel_seed_dir",
        "/opt/glm-image-sglang/kernels",
        "Kernels the image built for KERNEL_ARCHS (FlashInfer's RoPE and SGLang's recorded JIT kernels, which a "
        "cold GLM-Image start compiles otherwise): copied into CACHE_DIR at start where missing. FlashInfer's are "
        "used where its cache is the folder they were built for ($CACHE_DIR/flashinfer with the default CACHE_DIR), "
        "SGLang's anywhere; a folder without manifest.json turns it off.",
    ),
    Field("ENABLE_METRICS", "metrics", "true", "Expose Prometheus metrics on /metrics."),
    Field(
        "GRACEFUL_SHUTDOWN_TIMEOUT",
        "graceful_shutdown_timeout",
        "30",
        "Seconds the server keeps finishing running work after SIGTERM (video jobs finish and stay "
        "downloadable, new work gets 503) before it stops; SGLang is killed 10 s after that. Size it to your "
        "longest job; Kubernetes' terminationGracePeriodSeconds must be at least this + 15.",
    ),
    Field(
        "STARTUP_TIMEOUT",
        "startup_timeout",
        "1800",
        "Seconds to wait for the server to become ready before giving up (0 = forever).",
    ),
    Field(
        "PREFLIGHT",
        "preflight",
        "enforce",
        "enforce: memory and GPU-memory shortfalls stop the start; warn: they only warn.",
    ),
    Field(
        "REQUIRE_GPU",
        "require_gpu",
        "true",
        "false lets SGLang start on its CPU platform (tests with tiny models only).",
    ),
    Field(
        "SCHEDULER_PORT",
        "scheduler_port",
        None,
        "SGLang's internal scheduler port. Default: the first free port from 5555.",
    ),
    Field(
        "MASTER_PORT", "master_port", None, "torch.distributed master port. Default: the first free port from 30005."
    ),
    Field("SGLANG_BIN", "sglang_bin", "sglang", "The SGLang executable."),
    Field(
        "SGLANG_EXTRA_ARGS",
        "extra_args",
        "",
        "Extra `sglang serve` flags, split like a shell would (no expansion), appended last.",
    ),
    Field("HF_HOME", "hf_home", None, "Hugging Face cache (the image sets /app/models)."),
    Field("HF_TOKEN", "hf_token", None, "Optional; passed through, never printed.", secret=True),
    Field(
        "GATEWAY",
        "gateway",
        "true",
        "true: the API gateway listens on HOST:PORT and SGLang on a loopback port behind it; "
        "false: raw SGLang on HOST:PORT (no API key, no validation).",
    ),
    Field(
        "SGLANG_PORT",
        "sglang_port",
        None,
        "Loopback port of SGLang behind the gateway. Default: the first free port from 31000.",
    ),
)

# The gateway's own settings (also used when it runs alone: `glm-image-sglang gateway --upstream URL`).
GATEWAY_FIELDS: tuple[Field, ...] = (
    Field(
        "API_KEY",
        "api_key",
        None,
        "Require `Authorization: Bearer <key>` on every route except /health and /live. "
        "API_KEY_FILE reads it from a file.",
        secret=True,
    ),
    Field(
        "REQUIRE_API_KEY",
        "require_api_key",
        "false",
        "Refuse to start without API_KEY (deploy/ sets it). Without a key the gateway serves everyone and "
        "warns at start when it listens beyond loopback.",
    ),
    Field(
        "MAX_CONCURRENCY",
        "max_concurrency",
        "1",
        "Generations sent to SGLang at once (it runs one at a time on a GPU set).",
    ),
    Field(
        "MAX_QUEUE",
        "max_queue",
        "8",
        "Generations waiting beyond MAX_CONCURRENCY (video jobs included); more get 429 with Retry-After.",
    ),
    Field(
        "REQUEST_TIMEOUT",
        "request_timeout",
        "900",
        "Seconds an image request (or the wait of /v1/video/generations) may take before 504.",
    ),
    Field("MAX_BODY_BYTES", "max_body_bytes", "67108864", "Largest request body (64 MiB)."),
    Field(
        "MAX_BODIES_IN_FLIGHT",
        "max_bodies_in_flight",
        "8",
        "Request bodies read into memory at once (each up to MAX_BODY_BYTES); one more gets 503 with Retry-After.",
    ),
    Field("MAX_UPLOAD_BYTES", "max_upload_bytes", "20971520", "Largest uploaded image (20 MiB)."),
    Field("MAX_INPUT_PIXELS", "max_input_pixels", "16777216", "Largest uploaded image in pixels (4096x4096)."),
    Field(
        "MAX_OUTPUT_PIXELS", "max_output_pixels", "4194304", "Largest width x height a client may ask for (2048x2048)."
    ),
    Field("MAX_STEPS", "max_steps", "100", "Largest num_inference_steps."),
    Field("MAX_FRAMES", "max_frames", "241", "Largest num_frames for video (must be 4k+1)."),
    Field("MAX_IMAGES_PER_REQUEST", "max_n", "4", "Largest n for images."),
    Field("MAX_PROMPT_CHARS", "max_prompt_chars", "8000", "Longest prompt and negative_prompt."),
    Field(
        "ALLOW_IMAGE_URLS",
        "allow_image_urls",
        "false",
        "Accept http(s) image URLs in requests (the server fetches them: off by default against SSRF).",
    ),
    Field(
        "READY_PROBE",
        "ready_probe",
        "generate",
        "generate: /health is 200 only after a small real generation succeeded; health: after SGLang's /health.",
    ),
    Field(
        "UNRESPONSIVE_TIMEOUT",
        "unresponsive_timeout",
        "180",
        "Seconds SGLang (or GLM-Image's AR server) may stop answering /health, once the server was ready, "
        "before /live turns 503 so that a livenessProbe restarts the container (a hung server stays hung; "
        "/health is 503 from the first missed answer). 0: /live stays 200.",
    ),
    Field("METRICS_PUBLIC", "metrics_public", "true", "Serve /metrics without the API key."),
    Field("LOG_PROMPTS", "log_prompts", "false", "Include prompts in the access log."),
    Field(
        "REPLICA_ID",
        "replica_id",
        None,
        "Several replicas behind one Service: this replica's name (a DNS label; the deploy/ manifests set "
        "the pod name). Video and image ids it hands out start with it, and any replica forwards a request "
        "for an id to the replica that owns it. Empty: one replica, ids as SGLang makes them.",
    ),
    Field(
        "PEER_URL",
        "peer_url",
        None,
        "With REPLICA_ID: another replica's gateway, {replica} standing for its name, "
        "e.g. http://{replica}.glm-image-sglang-peers:30000.",
    ),
)


@dataclass(frozen=True)
class Settings:
    model_path: str
    model_variant: str = "auto"
    host: str = "0.0.0.0"
    port: int = 30000
    num_gpus: int | None = None
    cfg_parallel: str = "auto"
    ulysses_degree: int | None = None
    ring_degree: int | None = None
    offload: str = "auto"
    attention_backend: str = "auto"
    glm_ar: str = "auto"
    glm_ar_start: str = "auto"
    preset: str = "default"
    compile: str = "off"
    worker_start: str = "preload"
    served_model_name: str | None = None
    log_level: str = "info"
    data_dir: Path = Path("/app/data")
    output_dir: Path | None = None
    upload_dir: Path | None = None
    cache_dir: Path | None = None
    kernel_seed_dir: Path = Path("/opt/glm-image-sglang/kernels")
    metrics: bool = True
    graceful_shutdown_timeout: int = 30
    startup_timeout: int = 1800
    preflight: str = "enforce"
    require_gpu: bool = True
    scheduler_port: int | None = None
    master_port: int | None = None
    sglang_bin: str = "sglang"
    extra_args: tuple[str, ...] = ()
    hf_home: str | None = None
    hf_token: str | None = None
    gateway: bool = True
    sglang_port: int | None = None

    @property
    def outputs(self) -> Path:
        return self.output_dir or self.data_dir / "outputs"

    @property
    def uploads(self) -> Path:
        return self.upload_dir or self.data_dir / "uploads"

    @property
    def glm_ar_url(self) -> str | None:
        """GLM_AR given as the URL of an AR server that runs already (None for in-process and srt)."""
        return None if self.glm_ar in GLM_AR_CHOICES else self.glm_ar

    @property
    def caches(self) -> Path:
        return self.cache_dir or self.data_dir / "cache"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        if not (env.get("MODEL_PATH") or "").strip():
            raise ConfigError(
                "MODEL_PATH is not set. Set it to the model folder inside the container, e.g. "
                "-e MODEL_PATH=/app/models/GLM-Image (with -v /srv/models:/app/models:ro)."
            )
        settings = cls(**_parse(FIELDS, env))
        settings.validate()
        return settings

    def validate(self) -> None:
        if self.num_gpus is not None and self.num_gpus < 1:
            raise ConfigError(f"NUM_GPUS={self.num_gpus}: must be at least 1.")
        for name in ("ulysses_degree", "ring_degree"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name.upper()}={value}: must be at least 1.")
        for name in ("scheduler_port", "master_port", "sglang_port"):
            if getattr(self, name) is not None and getattr(self, name) == self.port:
                raise ConfigError(f"{name.upper()}={self.port} equals PORT; pick another port.")

    def redacted(self) -> dict[str, str]:
        """The effective configuration as printed at start: secrets shown only as set/unset."""
        out = _redacted(FIELDS, self)
        out["OUTPUT_DIR"] = str(self.outputs)
        out["UPLOAD_DIR"] = str(self.uploads)
        out["CACHE_DIR"] = str(self.caches)
        return out


@dataclass(frozen=True)
class GatewaySettings:
    api_key: str | None = None
    require_api_key: bool = False
    max_concurrency: int = 1
    max_queue: int = 8
    request_timeout: int = 900
    max_body_bytes: int = 64 * 1024 * 1024
    max_bodies_in_flight: int = 8
    max_upload_bytes: int = 20 * 1024 * 1024
    max_input_pixels: int = 4096 * 4096
    max_output_pixels: int = 2048 * 2048
    max_steps: int = 100
    max_frames: int = 241
    max_n: int = 4
    max_prompt_chars: int = 8000
    allow_image_urls: bool = False
    ready_probe: str = "generate"
    unresponsive_timeout: int = 180
    metrics_public: bool = True
    log_prompts: bool = False
    replica_id: str | None = None
    peer_url: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> GatewaySettings:
        settings = cls(**_parse(GATEWAY_FIELDS, os.environ if env is None else env))
        if bool(settings.replica_id) != bool(settings.peer_url):
            raise ConfigError(
                "REPLICA_ID and PEER_URL go together: set both (several replicas) or neither (one replica)."
            )
        if settings.require_api_key and not settings.api_key:
            raise ConfigError(
                "REQUIRE_API_KEY=true but no API_KEY is set: set API_KEY (or API_KEY_FILE, e.g. from a Secret), "
                "or REQUIRE_API_KEY=false to serve without one."
            )
        return settings

    def redacted(self) -> dict[str, str]:
        return _redacted(GATEWAY_FIELDS, self)


def _parse(group: tuple[Field, ...], env: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for f in group:
        raw = env.get(f.env)
        if raw is not None and raw.strip() == "" and f.env != "SGLANG_EXTRA_ARGS":
            raw = None  # an empty variable means "use the default", as in a Kubernetes manifest
        if raw is None:
            raw = f.default
        if raw is not None:
            values[f.attr] = _PARSERS.get(f.attr, _as_str)(f.env, raw)
    return values


def _redacted(group: tuple[Field, ...], obj: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    for f in group:
        value = getattr(obj, f.attr)
        if f.secret:
            out[f.env] = "(set)" if value else "(unset)"
        elif isinstance(value, tuple):
            out[f.env] = shlex.join(value)
        elif value is None:
            out[f.env] = "(auto)"
        elif isinstance(value, bool):
            out[f.env] = str(value).lower()
        else:
            out[f.env] = str(value)
    return out


def _as_str(env: str, raw: str) -> str:
    return raw


def _int(low: int, high: int) -> Callable[[str, str], int]:
    def parse(env: str, raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise ConfigError(f"{env}={raw!r} is not a whole number ({low}-{high}).") from None
        if not low <= value <= high:
            raise ConfigError(f"{env}={value} is out of range ({low}-{high}).")
        return value

    return parse


def _choice(choices: tuple[str, ...]) -> Callable[[str, str], str]:
    def parse(env: str, raw: str) -> str:
        value = raw.strip().lower()
        if value not in choices:
            raise ConfigError(f"{env}={raw!r} is not one of: {', '.join(choices)}.")
        return value

    return parse


def _bool(env: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in TRUE:
        return True
    if value in FALSE:
        return False
    raise ConfigError(f"{env}={raw!r} is not a boolean (true/false).")


def _path(env: str, raw: str) -> Path:
    path = Path(raw)
    if not path.is_absolute():
        raise ConfigError(f"{env}={raw!r} must be an absolute path.")
    return path


def _replica(env: str, raw: str) -> str:
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", raw):
        raise ConfigError(f"{env}={raw!r} must be a DNS label (lowercase letters, digits and '-'), e.g. the pod name.")
    return raw


def _peer_url(env: str, raw: str) -> str:
    if not raw.startswith(("http://", "https://")) or "{replica}" not in raw:
        raise ConfigError(
            f"{env}={raw!r} must be an http(s) URL with {{replica}} in it, e.g. http://{{replica}}.svc:30000."
        )
    return raw.rstrip("/")


def _glm_ar(env: str, raw: str) -> str:
    value = raw.strip()
    if value.lower() in GLM_AR_CHOICES:
        return value.lower()
    if re.fullmatch(r"https?://[^\s/]+/?", value):
        return value.rstrip("/")
    raise ConfigError(
        f"{env}={raw!r} is not one of: {', '.join(GLM_AR_CHOICES)}, or the http(s) URL of a running AR server "
        "(scheme, host and port, e.g. http://glm-ar:30000)."
    )


def _args(env: str, raw: str) -> tuple[str, ...]:
    try:
        return tuple(shlex.split(raw))
    except ValueError as e:
        raise ConfigError(f"{env} cannot be split into arguments: {e} (check the quotes).") from None


_PARSERS: dict[str, Callable[[str, str], Any]] = {
    "model_variant": _choice(VARIANT_CHOICES),
    "port": _int(1, 65535),
    "num_gpus": _int(1, 64),
    "cfg_parallel": _choice(CFG_CHOICES),
    "ulysses_degree": _int(1, 64),
    "ring_degree": _int(1, 64),
    "offload": _choice(OFFLOAD_CHOICES),
    "attention_backend": _choice(ATTENTION_CHOICES),
    "glm_ar": _glm_ar,
    "glm_ar_start": _choice(GLM_AR_START_CHOICES),
    "preset": _choice(PRESET_CHOICES),
    "compile": _choice(COMPILE_CHOICES),
    "worker_start": _choice(WORKER_START_CHOICES),
    "log_level": _choice(LOG_LEVELS),
    "data_dir": _path,
    "output_dir": _path,
    "upload_dir": _path,
    "cache_dir": _path,
    "kernel_seed_dir": _path,
    "metrics": _bool,
    "graceful_shutdown_timeout": _int(0, 86400),
    "startup_timeout": _int(0, 7 * 86400),
    "preflight": _choice(PREFLIGHT_CHOICES),
    "require_gpu": _bool,
    "scheduler_port": _int(1, 65535),
    "master_port": _int(1, 65535),
    "extra_args": _args,
    "gateway": _bool,
    "sglang_port": _int(1, 65535),
    "max_concurrency": _int(1, 64),
    "max_queue": _int(0, 10000),
    "request_timeout": _int(1, 7 * 86400),
    "unresponsive_timeout": _int(0, 7 * 86400),
    "max_body_bytes": _int(1024, 1 << 34),
    "max_bodies_in_flight": _int(1, 1024),
    "require_api_key": _bool,
    "max_upload_bytes": _int(1024, 1 << 34),
    "max_input_pixels": _int(64, 1 << 30),
    "max_output_pixels": _int(64, 1 << 30),
    "max_steps": _int(1, MAX_STEPS_LIMIT),
    "max_frames": _int(1, 10001),
    "max_n": _int(1, 64),
    "max_prompt_chars": _int(1, 1 << 20),
    "allow_image_urls": _bool,
    "ready_probe": _choice(("generate", "health")),
    "metrics_public": _bool,
    "log_prompts": _bool,
    "replica_id": _replica,
    "peer_url": _peer_url,
}

assert {f.attr for f in FIELDS} == {f.name for f in fields(Settings)}, "FIELDS and Settings disagree"
assert {f.attr for f in GATEWAY_FIELDS} == {f.name for f in fields(GatewaySettings)}, "GATEWAY_FIELDS disagree"
