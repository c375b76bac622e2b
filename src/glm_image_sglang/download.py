"""`glm-image-sglang download`: fetch supported models from the Hugging Face Hub (or a mirror set with
HF_ENDPOINT) on a connected machine, laid out the way /app/models expects (one folder per model, named
as the repository), checked the way the launcher's pre-flight checks them, with a sha256 manifest for
the trip into the closed network (docs/airgap.md).

    glm-image-sglang download glm-image wan2.2-ti2v-5b --dest ./models

Downloads resume: run the same command again after an interruption. Only the model's component
folders and model_index.json are fetched (no sample videos or original-format checkpoints).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from pathlib import Path
from typing import Any

from .errors import ConfigError, LauncherError, ModelError, ResourceError, report_internal_error
from .models import SUPPORTED_HELP, VARIANTS, GiB, Variant, inspect, require_complete

CHUNK = 8 * 1024 * 1024
IMAGE_MODELS_DIR = Path("/app/models")


def allow_patterns(variant: Variant) -> list[str]:
    return ["model_index.json", "LICENSE*", "README.md", *(f"{c}/*" for c in variant.components)]


def default_dest() -> Path:
    """/app/models inside the image (mount the host folder there), ./models elsewhere."""
    return IMAGE_MODELS_DIR if Path("/app/build-info.json").is_file() else Path("models")


def _variant(name: str) -> Variant:
    for v in VARIANTS.values():
        if name in (v.key, v.repo_id, v.name):
            return v
    raise ConfigError(f"unknown model '{name}'. Supported: {SUPPORTED_HELP}.")


def _token() -> str | None:
    path = os.environ.get("HF_TOKEN_FILE")
    if path:
        try:
            return Path(path).read_text().strip() or None
        except OSError as e:
            raise ConfigError(f"HF_TOKEN_FILE={path} is not readable: {e.strerror}.") from None
    return os.environ.get("HF_TOKEN") or None


def _hub() -> Any:
    """huggingface_hub, imported online: the image sets HF_HUB_OFFLINE=1 for serving."""
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on"):
        print("[download] HF_HUB_OFFLINE is set (the image's serving default); ignored by this command", flush=True)
    os.environ["HF_HUB_OFFLINE"] = "0"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    try:
        import huggingface_hub
        import huggingface_hub.errors
    except ImportError:
        raise ResourceError(
            "huggingface_hub is not installed: `pip install huggingface_hub`, or run this command in the image "
            "(docker run --rm -v $PWD/models:/app/models glm-image-sglang:<tag> download ...)."
        ) from None
    return huggingface_hub


def _is_transport_error(e: Exception) -> bool:
    """A dropped or refused connection from whichever HTTP library this huggingface_hub uses (httpx,
    httpx2 or requests)."""
    names = {"TransportError", "RequestException", "TimeoutException", "ProtocolError", "NetworkError"}
    return any(c.__name__ in names for c in type(e).__mro__)


def fetch(variant: Variant, dest: Path, revision: str | None, token: str | None, workers: int) -> Path:
    hub = _hub()
    errors = hub.errors
    target = dest / variant.name
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    print(f"[download] {variant.repo_id} -> {target} (from {endpoint})", flush=True)
    try:
        hub.snapshot_download(
            variant.repo_id,
            revision=revision,
            local_dir=target,
            allow_patterns=allow_patterns(variant),
            token=token,
            max_workers=workers,
        )
    except (errors.GatedRepoError, errors.RepositoryNotFoundError) as e:
        status = getattr(getattr(e, "response", None), "status_code", None)
        raise ResourceError(
            f"{variant.repo_id}: the Hub refused access (HTTP {status}). Accept the model's license on its Hub "
            f"page with your account and set HF_TOKEN (or HF_TOKEN_FILE) to a token of that account."
        ) from None
    except errors.RevisionNotFoundError:
        raise ConfigError(f"{variant.repo_id} has no revision '{revision}'.") from None
    except errors.LocalEntryNotFoundError as e:  # the Hub did not answer and nothing is downloaded yet
        raise ResourceError(
            f"cannot reach {endpoint} for {variant.repo_id} ({str(e.__cause__ or e)[:300]}). Check the network; "
            f"behind a proxy set HTTPS_PROXY; for a mirror set HF_ENDPOINT."
        ) from None
    except errors.HfHubHTTPError as e:
        raise ResourceError(
            f"{variant.repo_id}: the Hub answered with an error: {str(e)[:300]}. Run again to resume."
        ) from None
    except Exception as e:
        if not isinstance(e, OSError) and not _is_transport_error(e):
            raise
        raise ResourceError(
            f"downloading {variant.repo_id} into {target} failed: {type(e).__name__}: {str(e)[:300]}. "
            f"Check free disk space and the network. Run again to resume."
        ) from None
    return target


def verify(variant: Variant, target: Path) -> int:
    """The launcher's own checks: identified as this model, every component present, no partial files."""
    info = inspect(target)
    require_complete(info)
    if info.variant is not variant:
        found = info.variant.name if info.variant else info.pipeline_class
        raise ModelError(f"{target} was downloaded from {variant.repo_id} but looks like {found}.")
    return sum(c.weight_bytes for c in info.components)


def files_of(target: Path) -> list[Path]:
    """Every file of the model folder, without huggingface_hub's own download metadata (.cache)."""
    return sorted(p for p in target.rglob("*") if p.is_file() and ".cache" not in p.relative_to(target).parts)


def write_checksums(target: Path) -> Path:
    """<dest>/<model>.sha256 in `sha256sum -c` format, paths relative to <dest>."""
    manifest = target.parent / f"{target.name}.sha256"
    files = files_of(target)
    total = sum(f.stat().st_size for f in files)
    done, t0, next_report = 0, time.monotonic(), time.monotonic() + 10
    lines = []
    for f in files:
        digest = hashlib.sha256()
        with f.open("rb") as fh:
            while chunk := fh.read(CHUNK):
                digest.update(chunk)
                done += len(chunk)
                if time.monotonic() >= next_report:
                    print(f"[download] hashing {target.name}: {done / GiB:.1f} of {total / GiB:.1f} GiB", flush=True)
                    next_report = time.monotonic() + 10
        lines.append(f"{digest.hexdigest()}  {f.relative_to(target.parent).as_posix()}\n")
    manifest.write_text("".join(lines))
    print(f"[download] {len(files)} checksums in {time.monotonic() - t0:.0f} s", flush=True)
    return manifest


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="glm-image-sglang download",
        description="Download supported models for air-gapped serving. Resumable: run again after an "
        "interruption. HF_TOKEN (or HF_TOKEN_FILE) for gated models, HF_ENDPOINT for a mirror.",
    )
    parser.add_argument("models", nargs="+", metavar="MODEL", help=f"a key or repository id: {SUPPORTED_HELP}")
    parser.add_argument("--dest", type=Path, default=None, help="where the model folders go (default: /app/models "
                        "in the image, ./models elsewhere)")  # fmt: skip
    parser.add_argument("--revision", default=None, help="a branch, tag or commit (default: main)")
    parser.add_argument("--max-workers", type=int, default=8, help="parallel file downloads (default 8)")
    parser.add_argument("--no-checksums", action="store_true", help="skip the <model>.sha256 manifest")
    args = parser.parse_args(argv)
    dest: Path = args.dest or default_dest()
    try:
        variants = [_variant(name) for name in args.models]
        token = _token()
        try:
            dest.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ResourceError(f"cannot create {dest}: {e.strerror}. Choose a writable --dest.") from None
        for variant in variants:
            target = fetch(variant, dest, args.revision, token, args.max_workers)
            size = verify(variant, target)
            manifest = None if args.no_checksums else write_checksums(target)
            print(f"[download] {variant.name}: complete, {size / GiB:.1f} GiB of weights", flush=True)
            print(f"  serve it with MODEL_PATH=/app/models/{variant.name} (mount {dest.resolve()} at /app/models)")
            if manifest is not None:
                print(f"  verify a copy with: cd <models dir> && sha256sum -c {manifest.name}")
    except LauncherError as e:
        print(f"{e.prefix}: {e}", file=sys.stderr, flush=True)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted: run the same command again to resume", file=sys.stderr)
        return 130
    except Exception as e:  # a bug of ours or an answer nobody foresaw
        return report_internal_error("download failed (run the same command again to resume)", e)
    return 0
