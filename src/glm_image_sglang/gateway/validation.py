"""Request validation for the public API: allow-lists of fields, limits, per-model defaults.

Pure functions over plain data (parsed JSON or form fields); every rule raises ApiError, which the
app turns into an OpenAI-style error body: {"error": {"message", "type", "param", "code"}}.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from ..models import Variant
from ..settings import GatewaySettings


class ApiError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, code: str = "invalid_request") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code

    def body(self) -> dict[str, Any]:
        kind = "invalid_request_error" if self.status < 500 else "server_error"
        if self.status in (401, 403):
            kind = "authentication_error"
        elif self.status == 429:
            kind = "rate_limit_error"
        return {"error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}}


def bad(message: str, param: str | None = None, code: str = "invalid_value") -> ApiError:
    return ApiError(400, message, param, code)


# Fields the public API accepts, per route. Anything else is refused: SGLang accepts extra fields and
# some name server-side paths (output_path, perf_dump_path, upscaling_model_path) or internals.
COMMON = {
    "prompt",
    "model",
    "seed",
    "negative_prompt",
    "num_inference_steps",
    "guidance_scale",
    "generator_device",
    "user",
    "max_sequence_length",
}
IMAGE_GENERATION_FIELDS = COMMON | {
    "n",
    "size",
    "width",
    "height",
    "response_format",
    "output_format",
    "quality",
    "style",
    "background",
    "true_cfg_scale",
}
IMAGE_EDIT_FIELDS = IMAGE_GENERATION_FIELDS | {"image", "image[]", "url", "url[]"}
VIDEO_FIELDS = COMMON | {
    "size",
    "width",
    "height",
    "seconds",
    "fps",
    "num_frames",
    "guidance_scale_2",
    "input_reference",
    "reference_url",
    "n",
}
SYNC_VIDEO_FIELDS = VIDEO_FIELDS | {"response_format"}
PATH_LIKE = re.compile(r"path|file|dir", re.IGNORECASE)
SIZE = re.compile(r"^\s*(\d{1,5})\s*[xX*]\s*(\d{1,5})\s*$")


@dataclass(frozen=True)
class Limits:
    """What a request may ask for, from the gateway settings and the served model."""

    alignment: int
    max_output_pixels: int
    max_steps: int
    max_frames: int
    max_n: int
    max_prompt_chars: int
    max_upload_bytes: int
    max_input_pixels: int
    allow_image_urls: bool
    variant: Variant | None

    @classmethod
    def of(cls, settings: GatewaySettings, variant: Variant | None) -> Limits:
        return cls(
            alignment=variant.alignment if variant else 8,
            max_output_pixels=settings.max_output_pixels,
            max_steps=settings.max_steps,
            max_frames=settings.max_frames,
            max_n=settings.max_n,
            max_prompt_chars=settings.max_prompt_chars,
            max_upload_bytes=settings.max_upload_bytes,
            max_input_pixels=settings.max_input_pixels,
            allow_image_urls=settings.allow_image_urls,
            variant=variant,
        )


def defaults_of(variant: Variant) -> dict[str, Any]:
    """What the gateway fills in when a client leaves it out (also shown in /v1/models)."""
    out: dict[str, Any] = {"size": f"{variant.width}x{variant.height}"}
    if variant.output == "video":
        out.update(num_frames=variant.num_frames, fps=variant.fps)
    return out


def _check_fields(data: dict[str, Any], allowed: set[str]) -> None:
    for key in data:
        if key in allowed:
            continue
        if PATH_LIKE.search(key):
            raise bad(f"'{key}' is not accepted: clients cannot choose server-side paths.", key, "forbidden_parameter")
        raise bad(f"unknown parameter '{key}'. Accepted: {', '.join(sorted(allowed))}.", key, "unknown_parameter")


def _int(data: dict[str, Any], key: str, low: int, high: int) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise bad(f"'{key}' must be an integer.", key)
    try:
        number = int(value)
    except ValueError:
        raise bad(f"'{key}' must be an integer, got {str(value)[:40]!r}.", key) from None
    if not low <= number <= high:
        raise bad(f"'{key}' must be between {low} and {high}, got {number}.", key)
    return number


def _float(data: dict[str, Any], key: str, low: float, high: float) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise bad(f"'{key}' must be a number.", key)
    try:
        number = float(value)
    except ValueError:
        raise bad(f"'{key}' must be a number, got {str(value)[:40]!r}.", key) from None
    if not math.isfinite(number) or not low <= number <= high:
        raise bad(f"'{key}' must be between {low:g} and {high:g}.", key)
    return number


def _text(data: dict[str, Any], key: str, limit: int, required: bool = False) -> str | None:
    value = data.get(key)
    if value is None:
        if required:
            raise bad(f"'{key}' is required.", key, "missing_parameter")
        return None
    if not isinstance(value, str):
        raise bad(f"'{key}' must be a string.", key)
    if required and not value.strip():
        raise bad(f"'{key}' must not be empty.", key)
    if len(value) > limit:
        raise bad(f"'{key}' is {len(value)} characters; the limit is {limit}.", key)
    if "\x00" in value:
        raise bad(f"'{key}' contains a NUL character.", key)
    return value


def _choice(data: dict[str, Any], key: str, choices: tuple[str, ...]) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or value.lower() not in choices:
        raise bad(f"'{key}' must be one of: {', '.join(choices)}.", key)
    return value.lower()


def _size(data: dict[str, Any], limits: Limits, default: str | None) -> None:
    """Normalise size/width/height into width and height and check them; fills the model default."""
    width = _int(data, "width", 1, 16384)
    height = _int(data, "height", 1, 16384)
    size = data.get("size")
    if size not in (None, ""):
        if not isinstance(size, str) or not (match := SIZE.match(size)):
            raise bad(f"'size' must look like 1024x768, got {str(size)[:40]!r}.", "size")
        if width is not None or height is not None:
            raise bad("give either 'size' or 'width' and 'height', not both.", "size")
        width, height = int(match[1]), int(match[2])
    if (width is None) != (height is None):
        raise bad("'width' and 'height' must be given together.", "width" if width is None else "height")
    if width is None and default:
        width, height = (int(x) for x in default.split("x"))
    data.pop("size", None)
    if width is None or height is None:
        return
    a = limits.alignment
    for key, value in (("width", width), ("height", height)):
        if value < a or value % a:
            raise bad(f"{key} {value} must be a positive multiple of {a} for this model.", "size")
    if width * height > limits.max_output_pixels:
        raise bad(f"{width}x{height} is {width * height} pixels; the limit is {limits.max_output_pixels}.", "size")
    data["width"], data["height"] = width, height


def _set(data: dict[str, Any], key: str, value: Any) -> None:
    """Store a validated, normalised value (form fields arrive as strings)."""
    if value is not None:
        data[key] = value


def _common(data: dict[str, Any], limits: Limits) -> None:
    _text(data, "prompt", limits.max_prompt_chars, required=True)
    _text(data, "negative_prompt", limits.max_prompt_chars)
    _text(data, "model", 200)
    _text(data, "user", 200)
    _set(data, "num_inference_steps", _int(data, "num_inference_steps", 1, limits.max_steps))
    _set(data, "max_sequence_length", _int(data, "max_sequence_length", 1, 4096))
    for key in ("guidance_scale", "guidance_scale_2", "true_cfg_scale"):
        _set(data, key, _float(data, key, 0.0, 50.0))
    _set(data, "seed", _int(data, "seed", 0, 2**63 - 1))
    _choice(data, "generator_device", ("cuda", "cpu"))


def _require_output(limits: Limits, kind: str) -> None:
    variant = limits.variant
    if variant and variant.output != kind:
        other = "/v1/videos" if variant.output == "video" else "/v1/images/generations"
        raise ApiError(400, f"{variant.name} generates {variant.output}s; use {other}.", None, "unsupported_route")


def _start(body: Any, allowed: set[str], limits: Limits, kind: str) -> dict[str, Any]:
    """The checks every generation route shares; returns a copy to normalise."""
    if not isinstance(body, dict):
        raise bad("the request body must be a JSON object.", None, "invalid_json")
    data = dict(body)
    _check_fields(data, allowed)
    _require_output(limits, kind)
    _common(data, limits)
    return data


def image_generation(body: Any, limits: Limits, edit: bool = False) -> dict[str, Any]:
    data = _start(body, IMAGE_EDIT_FIELDS if edit else IMAGE_GENERATION_FIELDS, limits, "image")
    _set(data, "n", _int(data, "n", 1, limits.max_n))
    _choice(data, "response_format", ("url", "b64_json"))
    _choice(data, "output_format", ("png", "jpeg", "webp"))
    data.setdefault("output_format", "png")  # OpenAI's default; SGLang's own is JPEG
    for key in ("quality", "style", "background"):
        _text(data, key, 40)
    default = defaults_of(limits.variant)["size"] if limits.variant and not edit else None
    _size(data, limits, default)
    return data


def video_generation(body: Any, limits: Limits, sync: bool = False) -> dict[str, Any]:
    data = _start(body, SYNC_VIDEO_FIELDS if sync else VIDEO_FIELDS, limits, "video")
    if _int(data, "n", 1, 1) is not None:
        data.pop("n")
    fps = _int(data, "fps", 1, 120)
    frames = _int(data, "num_frames", 1, limits.max_frames)
    seconds = _int(data, "seconds", 1, 600)
    variant = limits.variant
    if fps is None and variant:
        fps = variant.fps
    if frames is None and seconds is not None and fps:
        frames = min(4 * round(seconds * fps / 4) + 1, limits.max_frames - (limits.max_frames - 1) % 4)
    if frames is None and variant:
        frames = variant.num_frames
    if frames is not None and (frames - 1) % 4:
        raise bad(f"num_frames must be 4k+1 (e.g. 81 or 121) for Wan models, got {frames}.", "num_frames")
    data.pop("seconds", None)
    if fps is not None:
        data["fps"] = fps
    if frames is not None:
        data["num_frames"] = frames
        if fps:
            data["seconds"] = max(1, round(frames / fps))
    _choice(data, "response_format", ("url", "b64_json"))
    for key in ("input_reference", "reference_url"):
        check_reference(data, key, limits)
    _size(data, limits, defaults_of(variant)["size"] if variant else None)
    return data


def check_reference(data: dict[str, Any], key: str, limits: Limits) -> None:
    """Image references given as strings: never server-local paths; http(s) only when allowed."""
    value = data.get(key)
    if value is None:
        return
    if not isinstance(value, str):
        raise bad(f"'{key}' must be a URL string (or upload the file as multipart).", key)
    lowered = value.strip().lower()
    if lowered.startswith(("http://", "https://")):
        if not limits.allow_image_urls:
            raise bad(
                f"'{key}': image URLs are disabled on this server (ALLOW_IMAGE_URLS=false); upload the image instead.",
                key,
                "urls_disabled",
            )
        return
    if lowered.startswith("data:image/"):
        return
    raise bad(
        f"'{key}' must be an http(s) or data:image URL; server-local paths are not accepted.", key, "forbidden_path"
    )
