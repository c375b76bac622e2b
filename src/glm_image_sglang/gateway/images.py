"""Input images (uploads for edits and image-to-video): what they are, read from their bytes, how big
they are, and whether an edit's source fits the output's shape."""

from __future__ import annotations

import io
from typing import Any

from .validation import ApiError, Limits, bad

MAGIC = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"), (b"GIF8", "image/gif"))


def check_edit_aspect(data: dict[str, Any], image_size: tuple[int, int], name: str) -> None:
    """GLM-Image edits need the source image in the output's aspect ratio: SGLang sizes the source's
    prior tokens and its latents differently otherwise and fails with a shape error (a 500, seen on
    SGLang 0.5.23). Say so before the request reaches the model."""
    if "width" not in data:
        return
    width, height = image_size
    want = data["width"] / data["height"]
    if abs(width / height - want) > 0.02 * want:
        raise bad(
            f"uploaded image '{name}' is {width}x{height} but size is {data['width']}x{data['height']}: GLM-Image "
            "edits need the image in the output's aspect ratio. Crop the image, or leave size out to keep the "
            "image's own size.",
            "size",
            "aspect_mismatch",
        )


def sniff_image(data: bytes, name: str, limits: Limits) -> tuple[str, tuple[int, int]]:
    """The content type and size of an uploaded image, from its bytes; refuses non-images, huge files
    and sizes."""
    if not data:
        raise bad(f"uploaded file '{name}' is empty.", name, "invalid_image")
    if len(data) > limits.max_upload_bytes:
        raise ApiError(
            413,
            f"uploaded file '{name}' is {len(data)} bytes; the limit is {limits.max_upload_bytes}.",
            name,
            "file_too_large",
        )
    kind = next((t for magic, t in MAGIC if data.startswith(magic)), None)
    if kind is None and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        kind = "image/webp"
    if kind is None:
        raise bad(f"uploaded file '{name}' is not a PNG, JPEG, WebP or GIF image.", name, "invalid_image")
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
            if width * height > limits.max_input_pixels:
                raise bad(
                    f"uploaded image '{name}' is {width}x{height}; the limit is {limits.max_input_pixels} pixels.",
                    name,
                    "image_too_large",
                )
            img.verify()
    except ApiError:
        raise
    except Exception as e:  # PIL raises many types for broken files
        raise bad(
            f"uploaded file '{name}' is not a readable image ({type(e).__name__}).", name, "invalid_image"
        ) from None
    return kind, (width, height)
