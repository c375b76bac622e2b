"""What is in MODEL_PATH: which model it is (from its files, never its folder name), whether the
snapshot is complete, and how many bytes each component weighs.

Pure file reading: no torch, no SGLang import, so it runs in milliseconds and in unit tests.

Why not trust the folder name: SGLang picks its pipeline config by a substring of the path. A Wan2.2
folder named anything but the repo name silently gets Wan 2.1 defaults, and GLM-Image must have
"glm-image" in its path (sglang multimodal_gen/registry.py, configs/pipeline_configs/).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ModelError

GiB = 1024**3


@dataclass(frozen=True)
class Variant:
    """One supported model, with what SGLang needs to recognise it and its generation defaults."""

    key: str  # the value of MODEL_VARIANT that forces it
    name: str  # the Hugging Face repository's short name
    repo_id: str
    output: str  # "image" or "video"
    tasks: tuple[str, ...]
    # SGLang identity: --model-id matches registered repo short names; GLM-Image has no registered
    # repo path, only a detector for "glm-image" in the path, so it gets a path alias instead.
    sglang_model_id: str | None
    path_alias: str | None
    width: int
    height: int
    num_frames: int
    fps: int
    steps: int
    guidance: float
    alignment: int  # width/height must be multiples of this
    experts: int  # number of DiT transformers (Wan2.2 A14B: high- and low-noise experts)
    uses_cfg: bool  # runs a conditional and an unconditional pass per step (CFG-parallel can split them)
    components: tuple[str, ...]  # the component folders of the Hugging Face repository (what to download)


VARIANTS: dict[str, Variant] = {
    v.key: v
    for v in (
        Variant(
            key="glm-image",
            name="GLM-Image",
            repo_id="zai-org/GLM-Image",
            output="image",
            tasks=("text-to-image", "image-edit"),
            sglang_model_id=None,
            path_alias="GLM-Image",
            width=1024,
            height=1024,
            num_frames=1,
            fps=0,
            steps=30,
            guidance=1.5,
            alignment=32,
            experts=1,
            uses_cfg=True,
            components=(
                "processor",
                "scheduler",
                "text_encoder",
                "tokenizer",
                "transformer",
                "vae",
                "vision_language_encoder",
            ),
        ),
        Variant(
            key="wan2.2-t2v-a14b",
            name="Wan2.2-T2V-A14B-Diffusers",
            repo_id="Wan-AI/Wan2.2-T2V-A14B-Diffusers",
            output="video",
            tasks=("text-to-video",),
            sglang_model_id="Wan2.2-T2V-A14B-Diffusers",
            path_alias=None,
            width=1280,
            height=720,
            num_frames=81,
            fps=16,
            steps=40,
            guidance=4.0,
            alignment=16,
            experts=2,
            uses_cfg=True,
            components=("scheduler", "text_encoder", "tokenizer", "transformer", "transformer_2", "vae"),
        ),
        Variant(
            key="wan2.2-i2v-a14b",
            name="Wan2.2-I2V-A14B-Diffusers",
            repo_id="Wan-AI/Wan2.2-I2V-A14B-Diffusers",
            output="video",
            tasks=("image-to-video",),
            sglang_model_id="Wan2.2-I2V-A14B-Diffusers",
            path_alias=None,
            width=1280,
            height=720,
            num_frames=81,
            fps=16,
            steps=40,
            guidance=3.5,
            alignment=16,
            experts=2,
            uses_cfg=True,
            components=("scheduler", "text_encoder", "tokenizer", "transformer", "transformer_2", "vae"),
        ),
        Variant(
            key="wan2.2-ti2v-5b",
            name="Wan2.2-TI2V-5B-Diffusers",
            repo_id="Wan-AI/Wan2.2-TI2V-5B-Diffusers",
            output="video",
            tasks=("text-to-video", "image-to-video"),
            sglang_model_id="Wan2.2-TI2V-5B-Diffusers",
            path_alias=None,
            width=1280,
            height=704,
            num_frames=121,
            fps=24,
            steps=50,
            guidance=5.0,
            alignment=32,
            experts=1,
            uses_cfg=True,
            components=("scheduler", "text_encoder", "tokenizer", "transformer", "vae"),
        ),
    )
}

SUPPORTED_HELP = ", ".join(f"{v.key} ({v.repo_id})" for v in VARIANTS.values())

# Components whose weights sit on the GPU; the others (tokenizer, scheduler, processor) are tiny.
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "spiece.model",
    "vocab.json",
    "tokenizer.model",
)


@dataclass(frozen=True)
class Component:
    name: str
    library: str
    class_name: str
    weight_bytes: int  # bytes on disk
    params: int | None  # parameter count from safetensors headers; None when unknown (.bin files)


@dataclass(frozen=True)
class ModelInfo:
    """Everything the launcher learned from MODEL_PATH."""

    path: Path
    variant: Variant | None  # None: an unknown model passed through because MODEL_VARIANT=other
    pipeline_class: str
    components: tuple[Component, ...]
    problems: tuple[str, ...] = field(default=())  # completeness problems, empty when complete
    dit_heads: int | None = None  # attention heads of the DiT: Ulysses degrees must divide it

    def weight_bytes(self, *names: str) -> int:
        wanted = set(names)
        return sum(c.weight_bytes for c in self.components if not wanted or c.name in wanted)

    @property
    def dit_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.components if c.name.startswith("transformer"))

    @property
    def display_name(self) -> str:
        return self.variant.name if self.variant else f"{self.pipeline_class} (unrecognised)"


def _read_json(path: Path) -> dict[str, Any]:
    try:
        with path.open(encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot read {path}: {e}. The download may be incomplete; fetch it again.") from None
    if not isinstance(data, dict):
        raise ModelError(f"{path} is not a JSON object; fetch the model again.")
    return data


def resolve_model_path(raw: str, hf_home: str | None) -> Path:
    """MODEL_PATH is a folder, or a Hugging Face repo id found in the offline cache under HF_HOME."""
    path = Path(raw)
    if path.is_dir():
        return path
    if path.exists():
        raise ModelError(f"MODEL_PATH={raw} is a file; it must be the model folder that holds model_index.json.")
    if not raw.startswith("/") and raw.count("/") == 1 and hf_home:
        repo_dir = Path(hf_home) / "hub" / ("models--" + raw.replace("/", "--"))
        snapshot = _cached_snapshot(repo_dir)
        if snapshot is not None:
            return snapshot
    where = f" (also looked for the repo id in {hf_home}/hub)" if hf_home and raw.count("/") == 1 else ""
    raise ModelError(
        f"MODEL_PATH={raw} does not exist{where}. Mount the model folder into the container "
        f"(e.g. -v /srv/models:/app/models:ro) and set MODEL_PATH to the folder that holds model_index.json, "
        f"e.g. MODEL_PATH=/app/models/GLM-Image."
    )


def _cached_snapshot(repo_dir: Path) -> Path | None:
    ref = repo_dir / "refs" / "main"
    if ref.is_file():
        snap = repo_dir / "snapshots" / ref.read_text().strip()
        if snap.is_dir():
            return snap
    snaps = sorted((repo_dir / "snapshots").glob("*")) if (repo_dir / "snapshots").is_dir() else []
    return snaps[-1] if len(snaps) == 1 else None


def _is_null_entry(value: Any) -> bool:
    return not (isinstance(value, list) and len(value) == 2 and all(isinstance(x, str) for x in value))


def _component_entries(index: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {
        name: (value[0], value[1])
        for name, value in index.items()
        if not name.startswith("_") and not _is_null_entry(value)
    }


def safetensors_params(path: Path) -> int | None:
    """Parameter count from a .safetensors header (8-byte length + JSON): no tensor data is read."""
    try:
        with path.open("rb") as f:
            size = int.from_bytes(f.read(8), "little")
            if not 2 <= size <= 100 * 1024 * 1024:
                return None
            header = json.loads(f.read(size))
    except (OSError, ValueError):
        return None
    total = 0
    for name, info in header.items():
        if name == "__metadata__" or not isinstance(info, dict):
            continue
        count = 1
        for dim in info.get("shape", []):
            count *= int(dim)
        total += count
    return total


def _weights_of(folder: Path, problems: list[str]) -> tuple[int, int | None]:
    """Bytes and parameters of a component's weight files; records missing shards and weights."""
    total = 0
    params: int | None = 0
    indexed: set[str] = set()
    for index_file in sorted(folder.glob("*.index.json")):
        try:
            weight_map = _read_json(index_file).get("weight_map", {})
        except ModelError as e:
            problems.append(str(e))
            continue
        shards = sorted(set(weight_map.values())) if isinstance(weight_map, dict) else []
        if not shards:
            problems.append(f"{index_file} lists no shards (weight_map is empty)")
        for shard in shards:
            indexed.add(shard)
            shard_path = folder / shard
            if not shard_path.is_file():
                problems.append(f"{shard_path} is missing (listed in {index_file.name})")
            else:
                total += shard_path.stat().st_size
                params = _add(params, shard_path)
    for f in folder.iterdir():
        if f.suffix in WEIGHT_SUFFIXES and f.name not in indexed and f.is_file():
            total += f.stat().st_size
            params = _add(params, f)
            if f.stat().st_size == 0:
                problems.append(f"{f} is empty (0 bytes): an interrupted download")
    has_weights = bool(indexed) or any(f.suffix in WEIGHT_SUFFIXES for f in folder.iterdir())
    if not has_weights:
        problems.append(f"{folder} has no weight files (*.safetensors)")
    for partial in folder.glob("*.incomplete"):
        problems.append(f"{partial} is a partial download")
    return total, params


def _add(params: int | None, weight_file: Path) -> int | None:
    if params is None or weight_file.suffix != ".safetensors":
        return None
    count = safetensors_params(weight_file)
    return None if count is None else params + count


def _check_component(root: Path, name: str, class_name: str, problems: list[str]) -> tuple[int, int | None]:
    folder = root / name
    if not folder.is_dir():
        problems.append(f"component '{name}' ({class_name}) is listed in model_index.json but {folder} is missing")
        return 0, 0
    lowered = class_name.lower()
    if "scheduler" in lowered:
        if not (folder / "scheduler_config.json").is_file():
            problems.append(f"{folder}/scheduler_config.json is missing")
        return 0, 0
    if "tokenizer" in lowered:
        if not any((folder / f).is_file() for f in TOKENIZER_FILES):
            problems.append(f"{folder} has no tokenizer files ({', '.join(TOKENIZER_FILES)})")
        return 0, 0
    if "processor" in lowered:
        if not any(folder.glob("*_config.json")):
            problems.append(f"{folder} has no processor config (preprocessor_config.json)")
        return 0, 0
    if not (folder / "config.json").is_file():
        problems.append(f"{folder}/config.json is missing")
    return _weights_of(folder, problems)


def _config(root: Path, component: str) -> dict[str, Any]:
    try:
        return _read_json(root / component / "config.json")
    except FileNotFoundError:
        return {}


def identify(index: dict[str, Any], root: Path) -> Variant | None:
    """Tell the four supported models apart by pipeline class and component configs."""
    cls = str(index.get("_class_name", ""))
    entries = _component_entries(index)
    if cls == "GlmImagePipeline":
        return VARIANTS["glm-image"]
    if cls not in ("WanPipeline", "WanImageToVideoPipeline"):
        return None
    dit = _config(root, "transformer")
    in_channels = dit.get("in_channels")
    two_experts = "transformer_2" in entries or index.get("boundary_ratio") is not None
    if cls == "WanImageToVideoPipeline":
        # Wan2.1 I2V has one DiT and an image encoder (CLIP); Wan2.2 I2V-A14B has two experts, no CLIP.
        return VARIANTS["wan2.2-i2v-a14b"] if two_experts else None
    if two_experts and in_channels in (16, None):
        return VARIANTS["wan2.2-t2v-a14b"]
    vae = _config(root, "vae")
    if not two_experts and (index.get("expand_timesteps") is True or in_channels == 48 or vae.get("z_dim") == 48):
        return VARIANTS["wan2.2-ti2v-5b"]
    return None


def inspect(path: Path, forced: str = "auto") -> ModelInfo:
    """Read model_index.json and the component folders of a Diffusers snapshot.

    forced: "auto" detects; a variant key trusts the user; "other" passes an unknown model through.
    """
    if not os.access(path, os.R_OK | os.X_OK):
        raise ModelError(
            f"MODEL_PATH={path} is not readable by UID {os.getuid()} (GID {os.getgid()}). Make the model "
            f"files world- or group-readable (chmod -R a+rX), or run with a group that can read them."
        )
    index_path = path / "model_index.json"
    try:
        index = _read_json(index_path)
    except FileNotFoundError:
        nested = sorted(p.parent for p in path.glob("*/model_index.json"))
        hint = f" Did you mean MODEL_PATH={nested[0]}?" if nested else ""
        raise ModelError(
            f"{index_path} not found: MODEL_PATH must point at a Diffusers-format model folder "
            f"(the one with model_index.json).{hint} Supported: {SUPPORTED_HELP}."
        ) from None
    pipeline_class = str(index.get("_class_name", "?"))
    if forced == "auto":
        variant = identify(index, path)
        if variant is None:
            raise ModelError(
                f"{path} holds a {pipeline_class} model that this image does not recognise as a supported model. "
                f"Supported: {SUPPORTED_HELP}. If this is one of them in an unusual layout, set "
                f"MODEL_VARIANT to its key; to start SGLang with it anyway, set MODEL_VARIANT=other."
            )
    elif forced == "other":
        variant = None
    else:
        variant = VARIANTS[forced]
    problems: list[str] = []
    components = tuple(
        Component(name, lib, cls, *_check_component(path, name, cls, problems))
        for name, (lib, cls) in sorted(_component_entries(index).items())
    )
    heads = _config(path, "transformer").get("num_attention_heads")
    return ModelInfo(
        path, variant, pipeline_class, components, tuple(problems), heads if isinstance(heads, int) else None
    )


def require_complete(model: ModelInfo) -> None:
    if model.problems:
        listing = "\n  - ".join(model.problems)
        raise ModelError(
            f"the model snapshot in {model.path} is incomplete:\n  - {listing}\n"
            f"Download it again (huggingface-cli download {model.variant.repo_id if model.variant else '<repo>'} "
            f"--local-dir ...; it resumes) and copy the whole folder."
        )
