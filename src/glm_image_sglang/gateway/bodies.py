"""Reading request bodies within their limits: JSON, multipart forms and uploaded images, which are
checked from their bytes and passed on under names of our own (never the client's file name)."""

from __future__ import annotations

import json
import re
from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request

from . import validation as v
from .images import sniff_image
from .limits import BodyGate
from .validation import ApiError

ID = re.compile(r"^[A-Za-z0-9_.:-]{1,200}$")
EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "image/gif": "gif"}


async def read_body(request: Request, limit: int, gate: BodyGate) -> bytes:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise ApiError(413, f"the request body is {length} bytes; the limit is {limit}.", None, "body_too_large")
    with gate.hold():
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ApiError(413, f"the request body exceeds {limit} bytes.", None, "body_too_large")
            chunks.append(chunk)
    body = b"".join(chunks)
    request._body = body  # Starlette's form()/json() reuse it
    return body


async def json_body(request: Request, limit: int, gate: BodyGate) -> Any:
    body = await read_body(request, limit, gate)
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "the request body is not valid JSON.", None, "invalid_json") from None


Files = list[tuple[str, UploadFile]]


async def form_body(request: Request, limit: int, gate: BodyGate) -> tuple[dict[str, Any], Files]:
    await read_body(request, limit, gate)
    try:
        form = await request.form(max_files=16, max_fields=64)
    except Exception as e:
        raise ApiError(
            400, f"the multipart body cannot be parsed ({getattr(e, 'detail', e)}).", None, "invalid_multipart"
        ) from None
    fields: dict[str, Any] = {}
    files: Files = []
    for key, value in form.multi_items():
        if isinstance(value, UploadFile):
            files.append((key, value))
        elif key in fields:
            raise ApiError(400, f"field '{key}' is given more than once.", key, "duplicate_field")
        else:
            fields[key] = value
    return fields, files


async def images(
    files: Files, accepted: tuple[str, ...], stem: str, limits: v.Limits
) -> list[tuple[str, tuple[str, bytes, str], tuple[int, int]]]:
    """Uploaded images, checked: (field, (our name, bytes, type), (width, height)). Our name comes from
    the sniffed type (`image-0.png`): the client's file name never reaches the server's disk."""
    out = []
    for i, (key, upload) in enumerate(files):
        if key not in accepted:
            raise ApiError(
                400, f"file field '{key}' is not accepted; send the image as '{accepted[0]}'.", key, "unknown_parameter"
            )
        shown = upload.filename or key  # for messages only
        content = await upload.read()
        kind, size = sniff_image(content, shown, limits)
        out.append((key, (f"{stem}-{i}.{EXTENSIONS.get(kind, 'img')}", content, kind), size))
    return out


def is_multipart(request: Request) -> bool:
    return request.headers.get("content-type", "").lower().startswith("multipart/form-data")


def check_id(value: str) -> str:
    if not ID.match(value) or ".." in value:
        raise ApiError(404, "no such id.", None, "not_found")
    return value


def form_strings(data: dict[str, Any]) -> dict[str, str]:
    return {k: str(val).lower() if isinstance(val, bool) else str(val) for k, val in data.items() if val is not None}
