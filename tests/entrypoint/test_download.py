"""`glm-image-sglang download` against a local stand-in for the Hugging Face Hub (the real one is not
reachable here): the HTTP API huggingface_hub speaks (repo info, file tree, resolve with ETag and
Range), serving model folders made by fakemodels, with extra files that must not be fetched."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import subprocess
import sys
import threading
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from fakemodels import make

pytestmark = pytest.mark.entrypoint

ROOT = Path(__file__).parents[2]
SHA = "3" * 40
E2E_PYTHON = ROOT / ".venv-e2e" / "bin" / "python"  # the huggingface_hub SGLang brings (as in the image)


@dataclass
class Hub:
    repos: dict[str, Path]  # repo id -> folder
    token: str | None = None  # required when set
    cut_after: int | None = None  # while set, every GET of a weight file stops after this many bytes
    log: list[str] = field(default_factory=list)

    def files(self, repo: str) -> list[Path]:
        root = self.repos[repo]
        return sorted(p for p in root.rglob("*") if p.is_file())


def handler(hub: Hub) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def json(self, data: object, status: int = 200) -> None:
            self.reply(status, json.dumps(data).encode(), {"Content-Type": "application/json"})

        def route(self) -> None:
            path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
            hub.log.append(f"{self.command} {path} {self.headers.get('Range', '')}".strip())
            if hub.token and self.headers.get("Authorization") != f"Bearer {hub.token}":
                self.reply(401, b'{"error": "Invalid credentials"}', {"X-Error-Code": "GatedRepo",
                           "X-Error-Message": "Access to this model is restricted", "Content-Type": "application/json"})  # fmt: skip
                return
            parts = path.strip("/").split("/")
            if parts[:2] == ["api", "models"]:
                repo = "/".join(parts[2:4])
                if repo not in hub.repos:
                    self.reply(404, b'{"error": "Repository not found"}', {"X-Error-Code": "RepoNotFound"})
                    return
                files = hub.files(repo)
                root = hub.repos[repo]
                if parts[4] == "revision":
                    siblings = [{"rfilename": f.relative_to(root).as_posix()} for f in files]
                    self.json({"id": repo, "modelId": repo, "sha": SHA, "private": False, "siblings": siblings})
                    return
                if parts[4] == "tree":
                    entries = []
                    for d in sorted({p.parent for p in files} - {root}):
                        entries.append({"type": "directory", "oid": "0" * 40, "size": 0,
                                        "path": d.relative_to(root).as_posix()})  # fmt: skip
                    for f in files:
                        data = f.read_bytes()
                        entry = {"type": "file", "oid": git_blob(data), "size": len(data),
                                 "path": f.relative_to(root).as_posix()}  # fmt: skip
                        if f.suffix == ".safetensors":
                            entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data),
                                            "pointerSize": 134}  # fmt: skip
                        entries.append(entry)
                    self.json(entries)
                    return
            if len(parts) > 4 and parts[2] == "resolve":
                repo = "/".join(parts[:2])
                target = hub.repos.get(repo, Path("/nonexistent")) / "/".join(parts[4:])
                if not target.is_file():
                    self.reply(404, b"", {"X-Error-Code": "EntryNotFound"})
                    return
                data = target.read_bytes()
                lfs = target.suffix == ".safetensors"
                etag = hashlib.sha256(data).hexdigest() if lfs else git_blob(data)
                headers = {"X-Repo-Commit": SHA, "ETag": f'"{etag}"', "Accept-Ranges": "bytes",
                           "Content-Type": "application/octet-stream"}  # fmt: skip
                if lfs:
                    headers |= {"X-Linked-Etag": f'"{etag}"', "X-Linked-Size": str(len(data))}
                start = 0
                ranged = self.headers.get("Range", "")
                if ranged.startswith("bytes="):
                    start = int(ranged[6:].split("-")[0] or 0)
                    headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
                if self.command == "HEAD":
                    self.reply(200, data, headers)
                    return
                body = data[start:]
                self.send_response(206 if start else 200)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if hub.cut_after is not None and lfs and len(body) > hub.cut_after:  # a dropped connection mid-file
                    self.wfile.write(body[: hub.cut_after])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)
                return
            self.reply(404, b"", {"X-Error-Code": "EntryNotFound"})

        do_GET = do_HEAD = route

    return Handler


def git_blob(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@pytest.fixture
def hub(tmp_path):
    repos = {}
    for key, repo in (("wan2.2-ti2v-5b", "Wan-AI/Wan2.2-TI2V-5B-Diffusers"), ("glm-image", "zai-org/GLM-Image")):
        folder = make(tmp_path / "hub" / repo, key)
        (folder / "assets").mkdir()
        (folder / "assets" / "demo.mp4").write_bytes(b"not wanted" * 100)  # sample media: not fetched
        (folder / "README.md").write_text("model card")
        repos[repo] = folder
    state = Hub(repos)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler(state))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"  # type: ignore[attr-defined]
    yield state
    server.shutdown()


def download(hub, dest: Path, *args: str, python: str = sys.executable, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    environ |= {"HF_ENDPOINT": hub.url, "HF_HUB_OFFLINE": "1", "HF_HOME": str(dest.parent / "hf-home"),
                "HF_HUB_DISABLE_XET": "1", "PYTHONPATH": str(ROOT / "src"), **env}  # fmt: skip
    return subprocess.run([python, "-m", "glm_image_sglang", "download", *args, "--dest", str(dest)],
                          env=environ, capture_output=True, text=True, timeout=300)  # fmt: skip


PYTHONS = [pytest.param(sys.executable, id="test-venv"),
           pytest.param(str(E2E_PYTHON), id="sglang-venv",
                        marks=pytest.mark.skipif(not E2E_PYTHON.exists(), reason=".venv-e2e not made (tests/run.sh)"))]  # fmt: skip


@pytest.mark.parametrize("python", PYTHONS)
def test_download_lays_out_checks_and_sums(hub, tmp_path, python):
    """download should fetch only the model's files into <dest>/<repo name>, pass the launcher's checks,
    and write a manifest that `sha256sum -c` accepts."""
    dest = tmp_path / "models"
    proc = download(hub, dest, "wan2.2-ti2v-5b", python=python)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    folder = dest / "Wan2.2-TI2V-5B-Diffusers"
    source = hub.repos["Wan-AI/Wan2.2-TI2V-5B-Diffusers"]
    wanted = {p.relative_to(source) for p in source.rglob("*") if p.is_file() and p.parts[-2] != "assets"}
    got = {p.relative_to(folder) for p in folder.rglob("*") if p.is_file() and ".cache" not in p.parts}
    assert got == wanted  # README.md and the components, not assets/demo.mp4
    assert "MODEL_PATH=/app/models/Wan2.2-TI2V-5B-Diffusers" in proc.stdout
    assert "HF_HUB_OFFLINE is set" in proc.stdout and "Traceback" not in proc.stderr
    check = subprocess.run(["sha256sum", "-c", "Wan2.2-TI2V-5B-Diffusers.sha256"], cwd=dest, capture_output=True,
                           text=True)  # fmt: skip
    assert check.returncode == 0 and check.stdout.count(": OK") == len(wanted), check.stdout + check.stderr


def test_interrupted_download_resumes(hub, tmp_path):
    """A download whose connections keep dropping should fail with a message that says to run again; the
    next run should fetch only what is still missing (finished files are not downloaded twice)."""
    hub.cut_after = 20
    dest = tmp_path / "models"
    first = download(hub, dest, "glm-image", "--no-checksums", "--max-workers", "1")
    assert first.returncode == 4, first.stdout + first.stderr
    assert "Run again to resume" in first.stderr and "Traceback" not in first.stderr, first.stderr
    folder = dest / "GLM-Image"
    finished = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and ".cache" not in p.parts}
    assert finished, "nothing finished before the failure: the test proves nothing"
    hub.cut_after = None
    hub.log.clear()
    second = download(hub, dest, "glm-image", "--no-checksums")
    assert second.returncode == 0, second.stdout + second.stderr
    fetched = {line.split("/resolve/")[1].split("/", 1)[1] for line in hub.log if line.startswith("GET /zai-org")}
    assert fetched and not fetched & finished, (fetched, finished)


def test_gated_model_needs_a_token(hub, tmp_path):
    """Without the token the Hub wants, the command should say how to get access; with it, it works."""
    hub.token = "hf_secret"
    dest = tmp_path / "models"
    refused = download(hub, dest, "glm-image", "--no-checksums")
    assert refused.returncode == 4 and "set HF_TOKEN" in refused.stderr, refused.stdout + refused.stderr
    assert "Traceback" not in refused.stderr
    token_file = tmp_path / "token"
    token_file.write_text("hf_secret\n")
    ok = download(hub, dest, "glm-image", "--no-checksums", HF_TOKEN_FILE=str(token_file))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "hf_secret" not in ok.stdout + ok.stderr


def test_unreachable_hub_and_unknown_model(tmp_path):
    """A hub that does not answer, and a model that is not supported, should give one-line errors."""
    dead = Hub({})
    dead.url = "http://127.0.0.1:9"  # type: ignore[attr-defined]
    proc = download(dead, tmp_path / "m", "glm-image")
    assert proc.returncode == 4 and "cannot reach http://127.0.0.1:9" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    proc = download(dead, tmp_path / "m", "stable-diffusion")
    assert proc.returncode == 2 and "unknown model 'stable-diffusion'. Supported: glm-image" in proc.stderr


def test_incomplete_snapshot_is_refused(hub, tmp_path):
    """If the Hub's folder lacks a weight shard, the launcher's own completeness check should refuse it."""
    source = hub.repos["zai-org/GLM-Image"]
    next((source / "transformer").glob("*.safetensors")).unlink()
    proc = download(hub, tmp_path / "models", "glm-image", "--no-checksums")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "is incomplete" in proc.stderr and "transformer" in proc.stderr
