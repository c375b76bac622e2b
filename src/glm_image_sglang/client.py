"""A small client on the official `openai` SDK: `glm-image-sglang client image|edit|video ...`.

Saves what it gets; a video job shows a progress bar (from the job's `progress` field) while it runs.
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
import time
from pathlib import Path
from typing import Any

DEFAULT_URL = "http://localhost:30000/v1"


def _client(args: argparse.Namespace) -> Any:
    from openai import OpenAI

    key = args.api_key or os.environ.get("API_KEY") or os.environ.get("OPENAI_API_KEY") or "none"
    return OpenAI(base_url=args.base_url, api_key=key, timeout=args.timeout, max_retries=0)


def _extra(args: argparse.Namespace, names: tuple[str, ...]) -> dict[str, Any]:
    return {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}


def cmd_image(args: argparse.Namespace) -> int:
    client = _client(args)
    extra = _extra(args, ("seed", "num_inference_steps", "guidance_scale", "negative_prompt"))
    kwargs: dict[str, Any] = {"prompt": args.prompt, "n": args.n, "response_format": "b64_json", "extra_body": extra}
    if args.size:
        kwargs["size"] = args.size
    t0 = time.monotonic()
    if args.command == "edit":
        with open(args.image, "rb") as f:
            result = client.images.edit(image=f, **kwargs)
    else:
        result = client.images.generate(**kwargs)
    paths = []
    for i, item in enumerate(result.data or []):
        path = Path(args.out if args.n == 1 else f"{Path(args.out).stem}-{i}{Path(args.out).suffix}")
        path.write_bytes(base64.b64decode(item.b64_json or ""))
        paths.append(str(path))
    print(f"saved {', '.join(paths)} ({time.monotonic() - t0:.1f} s)")
    return 0


def cmd_video(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    client = _client(args)
    extra = _extra(args, ("seed", "num_inference_steps", "guidance_scale", "negative_prompt", "num_frames", "fps"))
    kwargs: dict[str, Any] = {"prompt": args.prompt, "extra_body": extra}
    if args.size:
        kwargs["size"] = args.size
    t0 = time.monotonic()
    if args.image:
        with open(args.image, "rb") as f:
            job = client.videos.create(input_reference=f, **kwargs)
    else:
        job = client.videos.create(**kwargs)
    with tqdm(total=100, desc=f"video {job.id}", unit="%", file=sys.stderr) as bar:
        while job.status not in ("completed", "failed"):
            time.sleep(args.poll)
            job = client.videos.retrieve(job.id)
            bar.update(max(0, int(job.progress or 0) - bar.n))
        bar.update(100 - bar.n if job.status == "completed" else 0)
    if job.status != "completed":
        message = getattr(job, "error", None)
        print(f"ERROR: video job {job.id} failed: {message}", file=sys.stderr)
        return 1
    client.videos.download_content(job.id).write_to_file(args.out)
    print(f"saved {args.out} ({time.monotonic() - t0:.1f} s)")
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="glm-image-sglang client", description=__doc__.split("\n")[0])
    parser.add_argument("--base-url", default=os.environ.get("OPENAI_BASE_URL", DEFAULT_URL))
    parser.add_argument("--api-key", help="default: $API_KEY or $OPENAI_API_KEY")
    parser.add_argument("--timeout", type=float, default=900)
    sub = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("prompt")
    common.add_argument("--size", help="WIDTHxHEIGHT; default: the model's")
    common.add_argument("--seed", type=int)
    common.add_argument("--steps", dest="num_inference_steps", type=int)
    common.add_argument("--guidance", dest="guidance_scale", type=float)
    common.add_argument("--negative-prompt")
    image = sub.add_parser("image", parents=[common], help="text to image")
    image.add_argument("-n", type=int, default=1)
    image.add_argument("-o", "--out", default="image.png")
    edit = sub.add_parser("edit", parents=[common], help="edit an image")
    edit.add_argument("--image", required=True)
    edit.add_argument("-n", type=int, default=1)
    edit.add_argument("-o", "--out", default="edited.png")
    video = sub.add_parser("video", parents=[common], help="text (or image) to video, with a progress bar")
    video.add_argument("--image", help="input image for image-to-video")
    video.add_argument("--frames", dest="num_frames", type=int)
    video.add_argument("--fps", type=int)
    video.add_argument("--poll", type=float, default=2.0, help="seconds between progress polls")
    video.add_argument("-o", "--out", default="video.mp4")
    args = parser.parse_args(argv)
    try:
        return cmd_video(args) if args.command == "video" else cmd_image(args)
    except OSError as e:
        print(f"ERROR: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # openai.APIError and friends: print the server's message, no traceback
        message = getattr(e, "message", None) or str(e)
        print(f"ERROR: {type(e).__name__}: {message}", file=sys.stderr)
        return 1
