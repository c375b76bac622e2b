"""A small client on the official `openai` SDK: `glm-image-sglang client image|edit|video ...`.

Saves what it gets; a video job shows a progress bar (from the job's `progress` field) while it runs.
Videos go through the SDK's `videos` resource where the installed SDK has it (openai 2.x-3.x, tested
with 3.57; OpenAI has announced the end of its own video API, so a later SDK may drop it), else
through plain HTTP to the same routes (`--video-api` chooses).
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

DEFAULT_URL = "http://localhost:30000/v1"


def api_key(args: argparse.Namespace) -> str:
    """--api-key, else $API_KEY, else the file in $API_KEY_FILE (as the container reads it: a `docker exec`
    into it has the file, not the variable), else $OPENAI_API_KEY."""
    if args.api_key or os.environ.get("API_KEY"):
        return str(args.api_key or os.environ["API_KEY"])
    if os.environ.get("API_KEY_FILE"):
        try:
            return Path(os.environ["API_KEY_FILE"]).read_text().strip() or "none"
        except OSError:
            pass
    return os.environ.get("OPENAI_API_KEY") or "none"


def _client(args: argparse.Namespace) -> Any:
    from openai import OpenAI

    return OpenAI(base_url=args.base_url, api_key=api_key(args), timeout=args.timeout, max_retries=0)


@contextmanager
def quiet_sdk() -> Iterator[None]:
    """The SDK warns on every videos call that OpenAI's own video API is being retired: not news here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"openai(\.|$)")
        warnings.filterwarnings("ignore", message=".*Sora.*", category=DeprecationWarning)
        yield


class HttpVideos:
    """The routes the SDK's `videos` resource calls, in plain HTTP: for SDKs without it."""

    def __init__(self, args: argparse.Namespace) -> None:
        import httpx

        self.http = httpx.Client(
            base_url=args.base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {api_key(args)}"},
            timeout=args.timeout,
        )

    def _json(self, resp: Any) -> Any:
        if resp.status_code >= 400:
            try:
                message = resp.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = resp.text[:500]
            raise RuntimeError(f"HTTP {resp.status_code}: {message}")
        from types import SimpleNamespace

        return SimpleNamespace(**resp.json())

    def create(self, input_reference: Any = None, extra_body: dict[str, Any] | None = None, **fields: Any) -> Any:
        body = {**fields, **(extra_body or {})}
        if input_reference is None:
            return self._json(self.http.post("/videos", json=body))
        data = {k: str(v) for k, v in body.items()}
        return self._json(self.http.post("/videos", data=data, files={"input_reference": input_reference}))

    def retrieve(self, video_id: str) -> Any:
        return self._json(self.http.get(f"/videos/{video_id}"))

    def save_content(self, video_id: str, out: str) -> None:
        with self.http.stream("GET", f"/videos/{video_id}/content") as resp:
            if resp.status_code >= 400:
                resp.read()
                self._json(resp)
            with open(out, "wb") as f:
                for chunk in resp.iter_bytes():
                    f.write(chunk)


class SdkVideos:
    def __init__(self, args: argparse.Namespace) -> None:
        self.videos = _client(args).videos

    def create(self, **kwargs: Any) -> Any:
        with quiet_sdk():
            return self.videos.create(**kwargs)

    def retrieve(self, video_id: str) -> Any:
        with quiet_sdk():
            return self.videos.retrieve(video_id)

    def save_content(self, video_id: str, out: str) -> None:
        with quiet_sdk():
            self.videos.download_content(video_id).write_to_file(out)


def video_api(args: argparse.Namespace) -> SdkVideos | HttpVideos:
    """The SDK's videos resource where it exists (or --video-api sdk), else plain HTTP."""
    if args.video_api == "http":
        return HttpVideos(args)
    from openai import OpenAI

    if args.video_api == "auto" and not hasattr(OpenAI, "videos"):
        return HttpVideos(args)
    return SdkVideos(args)


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

    videos = video_api(args)
    extra = _extra(args, ("seed", "num_inference_steps", "guidance_scale", "negative_prompt", "num_frames", "fps"))
    kwargs: dict[str, Any] = {"prompt": args.prompt, "extra_body": extra}
    if args.size:
        kwargs["size"] = args.size
    t0 = time.monotonic()
    with ExitStack() as stack:
        if args.image:
            kwargs["input_reference"] = stack.enter_context(open(args.image, "rb"))
        job = videos.create(**kwargs)
    with tqdm(total=100, desc=f"video {job.id}", unit="%", file=sys.stderr) as bar:
        while job.status not in ("completed", "failed"):
            time.sleep(args.poll)
            job = videos.retrieve(job.id)
            bar.update(max(0, int(getattr(job, "progress", 0) or 0) - bar.n))
        bar.update(100 - bar.n if job.status == "completed" else 0)
    if job.status != "completed":
        message = getattr(job, "error", None)
        print(f"ERROR: video job {job.id} failed: {message}", file=sys.stderr)
        return 1
    videos.save_content(job.id, args.out)
    print(f"saved {args.out} ({time.monotonic() - t0:.1f} s)")
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="glm-image-sglang client", description=__doc__.split("\n")[0])
    parser.add_argument("--base-url", default=os.environ.get("OPENAI_BASE_URL", DEFAULT_URL))
    parser.add_argument("--api-key", help="default: $API_KEY, the file in $API_KEY_FILE, or $OPENAI_API_KEY")
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument(
        "--video-api",
        choices=["auto", "sdk", "http"],
        default="auto",
        help="videos through the openai SDK's videos resource (auto: when the installed SDK has it) or plain HTTP",
    )
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
