"""Harness for the real SGLang diffusion server on the CPU, started the way users start it, with tiny random
models of the four supported layouts:

- host:  entrypoint.sh -> launcher -> gateway + `sglang serve`, from the e2e venv (.venv-e2e,
         SGLang 0.5.23 from PyPI, made by tests/run.sh);
- image: the built image, run as OpenShift runs it (random UID in group 0, read-only root,
         no capabilities, --network none, models mounted read-only). With no network, requests
         travel through `docker exec` into the container's own loopback.

A test-only SGLang plugin (cpu_plugin/, mounted, never installed) gives SGLang's CPU platform
torch fallbacks where it expects a CPU build of sgl_kernel.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from imagebuild import DOCKER, OPENSHIFT, RANDOM_UID, ROOT
from ports import free_port

PLUGIN = Path(__file__).parent / "cpu_plugin"
E2E_PYTHON = Path(os.environ.get("E2E_PYTHON", ROOT / ".venv-e2e" / "bin" / "python"))
READY_TIMEOUT = 420
# Long enough for the SIGTERM test's running job to finish on a busy machine (it ran past 20 s under two
# busy loops on 2 cores); a drain with nothing left ends at once, so this costs nothing otherwise.
GRACE = 120
CPU_ENV = {
    "REQUIRE_GPU": "false",
    "TORCHDYNAMO_DISABLE": "1",  # torch.compile costs ~10 s per new shape on 2 cores
    "GRACEFUL_SHUTDOWN_TIMEOUT": str(GRACE),
    # as the deploy/ manifests run it: ids carry the replica name (the forwarding itself is in the gateway tier)
    "REPLICA_ID": "e2e-0",
    "PEER_URL": "http://{replica}.e2e-peers:30000",
}
FOLDERS = {  # names that do not contain the repo names: detection must come from the files
    "glm-image": "weights-glm",
    "wan2.2-t2v-a14b": "weights-t2v",
    "wan2.2-i2v-a14b": "weights-i2v",
    "wan2.2-ti2v-5b": "weights-ti2v",
}


class DockerExecTransport(httpx.BaseTransport):
    """HTTP to 127.0.0.1:30000 inside a container that has no network, via `docker exec`."""

    SCRIPT = (
        "import sys, json, base64, urllib.request, urllib.error\n"
        "r = json.load(sys.stdin)\n"
        "req = urllib.request.Request('http://127.0.0.1:30000' + r['path'], method=r['method'], headers=r['headers'],\n"
        "                             data=base64.b64decode(r['body']) if r['body'] else None)\n"
        "try:\n"
        "    resp = urllib.request.urlopen(req, timeout=r['timeout'])\n"
        "except urllib.error.HTTPError as e:\n"
        "    resp = e\n"
        "except OSError as e:\n"
        "    print(json.dumps({'error': str(e)})); sys.exit(0)\n"
        "print(json.dumps({'status': resp.status, 'headers': dict(resp.headers.items()),\n"
        "                  'body': base64.b64encode(resp.read()).decode()}))\n"
    )

    def __init__(self, container: str) -> None:
        self.container = container

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        timeout = request.extensions.get("timeout", {}).get("read") or 600
        spec = {
            "method": request.method,
            "path": request.url.raw_path.decode(),
            "headers": {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")},
            "body": base64.b64encode(request.read()).decode(),
            "timeout": timeout,
        }
        proc = subprocess.run(
            [DOCKER, "exec", "-i", self.container, "python", "-c", self.SCRIPT],
            input=json.dumps(spec), capture_output=True, text=True, timeout=timeout + 30,
        )  # fmt: skip
        if proc.returncode != 0:
            raise httpx.ConnectError(f"docker exec failed: {proc.stderr[-500:]}", request=request)
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        if "error" in out:
            raise httpx.ConnectError(out["error"], request=request)
        headers = {
            k: v for k, v in out["headers"].items() if k.lower() not in ("transfer-encoding", "content-encoding")
        }
        return httpx.Response(out["status"], headers=headers, content=base64.b64decode(out["body"]), request=request)


class Server:
    """One running server (host process or container) with an httpx client and its log."""

    def __init__(
        self,
        backend: str,
        models: Path,
        key: str,
        tmp: Path,
        env: dict[str, str] | None = None,
        ready_timeout: float = READY_TIMEOUT,
    ) -> None:
        self.backend = backend
        self.ready_timeout = ready_timeout
        self.key = key
        self.health_seen: list[Any] = []
        folder = FOLDERS[key]
        if backend == "host":
            self.port = free_port()
            self.log_path = tmp / f"{key}.log"
            env = {
                "PATH": f"{E2E_PYTHON.parent}:/usr/bin:/bin",
                "LAUNCHER_PYTHON": str(E2E_PYTHON),
                "HOME": str(tmp / "home"),
                "DATA_DIR": str(tmp / "data"),
                "PORT": str(self.port),
                "MODEL_PATH": str(models / folder),
                "PYTHONPATH": str(PLUGIN),
                **CPU_ENV,
                **(env or {}),
            }
            self.proc = subprocess.Popen(
                ["bash", str(ROOT / "entrypoint.sh")], env=env, stdout=self.log_path.open("w"), stderr=subprocess.STDOUT
            )
            self.client = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=600)
        else:
            self.name = f"gis-e2e-{uuid.uuid4().hex[:8]}"
            args = [DOCKER, "run", "-d", "--name", self.name, "--user", RANDOM_UID, *OPENSHIFT,
                    "-v", f"{models}:/app/models:ro", "-v", f"{PLUGIN}:/opt/test-plugin:ro",
                    "-e", "PYTHONPATH=/opt/test-plugin", "-e", f"MODEL_PATH=/app/models/{folder}"]  # fmt: skip
            for k, v in {**CPU_ENV, **(env or {})}.items():
                args += ["-e", f"{k}={v}"]
            from imagebuild import IMAGE

            subprocess.run([*args, IMAGE], check=True, capture_output=True, text=True)
            self.client = httpx.Client(
                transport=DockerExecTransport(self.name), base_url="http://127.0.0.1", timeout=600
            )
        try:
            self.wait_ready()
        except BaseException:  # never leave a half-started server behind
            self.stop()
            self.remove()
            raise

    def alive(self) -> bool:
        if self.backend == "host":
            return self.proc.poll() is None
        state = subprocess.run(
            [DOCKER, "inspect", "-f", "{{.State.Running}}", self.name], capture_output=True, text=True
        )
        return state.stdout.strip() == "true"

    def wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while True:
            try:
                resp = self.client.get("/health", timeout=5)
                self.health_seen.append((resp.status_code, resp.json().get("status")))
                if resp.status_code == 200:
                    return
            except (httpx.TransportError, ValueError):
                self.health_seen.append(None)
            if not self.alive() or time.monotonic() > deadline:
                raise AssertionError(f"{self.key} ({self.backend}) never became ready:\n{self.logs()[-6000:]}")
            time.sleep(1)

    def logs(self) -> str:
        if self.backend == "host":
            return self.log_path.read_text(errors="replace")
        proc = subprocess.run([DOCKER, "logs", self.name], capture_output=True, text=True)
        return proc.stdout + proc.stderr

    def phases_line(self) -> str:
        """The launcher's `start-up phases` line, which it prints at its next look at /health, just after ready."""
        deadline = time.monotonic() + 60  # a bound for a failure to show: the line ends the wait as it comes
        while "[launcher] start-up phases:" not in (logs := self.logs()):
            assert time.monotonic() < deadline, logs[-3000:]
            time.sleep(0.2)
        return next(line for line in logs.splitlines() if "[launcher] start-up phases:" in line)

    def terminate(self) -> None:
        """SIGTERM without waiting (what Kubernetes sends at a rolling update or `docker stop`)."""
        if self.backend == "host":
            self.proc.send_signal(signal.SIGTERM)
        else:
            subprocess.run([DOCKER, "kill", "-s", "TERM", self.name], capture_output=True, check=True)

    def wait_exit(self, timeout: float) -> int:
        """The exit code once the server has stopped by itself within timeout seconds."""
        if self.backend == "host":
            return self.proc.wait(timeout=timeout)
        proc = subprocess.run([DOCKER, "wait", self.name], capture_output=True, text=True, timeout=timeout)
        return int(proc.stdout.strip())

    def stop(self) -> tuple[int, float]:
        """SIGTERM (docker stop) and wait; returns (exit code, seconds to exit)."""
        t0 = time.monotonic()
        if self.backend == "host":
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
            try:
                code = self.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                code = -9
            return code, time.monotonic() - t0
        subprocess.run([DOCKER, "stop", "-t", "120", self.name], capture_output=True)
        state = subprocess.run(
            [DOCKER, "inspect", "-f", "{{.State.ExitCode}}", self.name], capture_output=True, text=True
        )
        return int(state.stdout.strip() or -1), time.monotonic() - t0

    def remove(self) -> None:
        self.client.close()
        if self.backend == "host":
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        else:
            subprocess.run([DOCKER, "rm", "-f", self.name], capture_output=True)


BACKENDS = [pytest.param("host", id="host"), pytest.param("image", id="image", marks=pytest.mark.container)]


def serve(
    request: pytest.FixtureRequest,
    key: str,
    tmp_path_factory: pytest.TempPathFactory,
    env: dict[str, str] | None = None,
) -> Iterator[Server]:
    """A server of the fixture's backend (its param) for `key`, with extra settings in env."""
    backend = request.param
    models = request.getfixturevalue("tiny_models")
    if backend == "image":
        request.getfixturevalue("image")  # built (or reused) by the container tier's fixture
    server = Server(backend, models, key, tmp_path_factory.mktemp(f"{backend}-{key}"), env)
    try:
        yield server
    finally:
        server.stop()
        server.remove()


def decode_mp4(data: bytes) -> tuple[int, int, int, float]:
    """(frames, width, height, fps) decoded with PyAV."""
    import io

    import av

    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        return frames, stream.codec_context.width, stream.codec_context.height, float(stream.average_rate or 0)


def sync_mp4(client: httpx.Client, prompt: str, fields: dict[str, Any]) -> bytes:
    """One video by the sync route (`/v1/video/generations`, inline b64): the MP4 file."""
    resp = client.post("/v1/video/generations", json={"prompt": prompt, **fields, "response_format": "b64_json"})
    assert resp.status_code == 200, resp.text[-2000:]
    return base64.b64decode(resp.json()["data"][0]["b64_json"])


def sync_video(client: httpx.Client, prompt: str, fields: dict[str, Any]) -> tuple[int, int, int, float]:
    """One video by the sync route, its MP4 decoded (decode_mp4)."""
    return decode_mp4(sync_mp4(client, prompt, fields))


def wait_job(client: httpx.Client, job_id: str, timeout: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = client.get(f"/v1/videos/{job_id}").json()
        if job["status"] in ("completed", "failed"):
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.5)


def process_tree(root: int) -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) for root and everything under it, from /proc."""
    table = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
            cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone meanwhile
            continue
        fields = text[text.rindex(")") + 2 :].split()
        table[int(stat.parent.name)] = (int(fields[1]), cmdline)
    tree, frontier = {}, [root]
    while frontier:
        pid = frontier.pop()
        if pid in table:
            tree[pid] = table[pid]
            frontier += [child for child, (parent, _) in table.items() if parent == pid]
    return tree


def forking(tree: dict[int, tuple[int, str]]) -> set[int]:
    """The fork server and its children in a process tree (multiprocessing names it in their command line)."""
    return {pid for pid, (_, cmd) in tree.items() if "forkserver" in cmd}
