"""A local git mirror of SGLang for the image tests, so CI builds the image by the user's default path:
SGLANG_SOURCE=git:<branch>, resolved to a commit by build.sh (git ls-remote), installed by pip from
`git+URL@<commit>#subdirectory=python` inside the build, the commit recorded in labels and build-info.

GitHub is not reachable here and SGLang publishes no sdist of recent releases, so the repository holds the
released wheel from PyPI under python/ with a ten-line PEP 517 backend that hands it to pip. What this
proves: the ref resolution, pip's git clone and build, the cache key, the labels. What it does not: that
SGLang's own source tree compiles (that needs GitHub; see docs/build.md).

The commit is deterministic (fixed author, dates and contents), so BuildKit's cache key, which is the
commit, stays the same from one run to the next. Served over dumb HTTP on a loopback port (build.sh gives
a build with a loopback git URL the host network).
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

BRANCH = "release"
PORT = 39017  # fixed, see serve()
BACKEND = '''"""PEP 517 backend of a test mirror: hands pip the released wheel stored beside it (not SGLang's build)."""
import shutil
import zipfile
from pathlib import Path

WHEEL = next(Path(__file__).parent.glob("*.whl"))


def get_requires_for_build_wheel(config_settings=None):
    return []


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    with zipfile.ZipFile(WHEEL) as z:
        names = [n for n in z.namelist() if n.split("/")[0].endswith(".dist-info")]
        z.extractall(metadata_directory, names)
    return names[0].split("/")[0]


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    shutil.copy(WHEEL, Path(wheel_directory) / WHEEL.name)
    return WHEEL.name
'''
PYPROJECT = """[build-system]
requires = []
build-backend = "wheel_backend"
backend-path = ["."]
"""
GIT_ENV = {
    "GIT_AUTHOR_NAME": "glm-image-sglang tests",
    "GIT_AUTHOR_EMAIL": "tests@localhost",
    "GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z",
    "GIT_COMMITTER_NAME": "glm-image-sglang tests",
    "GIT_COMMITTER_EMAIL": "tests@localhost",
    "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}


@dataclass(frozen=True)
class Mirror:
    url: str  # SGLANG_GIT_URL
    branch: str  # SGLANG_SOURCE=git:<branch>
    commit: str  # what build.sh must resolve the branch to


def _git(*args: str, cwd: Path) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, env=os.environ | GIT_ENV, capture_output=True, text=True)
    if proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {proc.stderr[-2000:]}")
    return proc.stdout.strip()


def _repository(root: Path, version: str, python: str) -> Path:
    """The bare repository (made once, kept under root): python/ = the wheel + its backend."""
    bare = root / "sglang.git"
    if (bare / "info" / "refs").exists():
        return bare
    shutil.rmtree(root, ignore_errors=True)
    work = root / "work"
    (work / "python").mkdir(parents=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                    "--python-version", python, "--platform", "manylinux_2_34_x86_64",
                    "-d", str(work / "python"), f"sglang=={version}"], check=True, timeout=600)  # fmt: skip
    (work / "python" / "wheel_backend.py").write_text(BACKEND)
    (work / "python" / "pyproject.toml").write_text(PYPROJECT)
    _git("init", "-q", "-b", BRANCH, cwd=work)
    _git("add", "-A", cwd=work)
    _git("commit", "-q", "-m", f"SGLang {version} (the released wheel, for the image tests)", cwd=work)
    _git("clone", "-q", "--bare", str(work), str(bare), cwd=root)
    _git("update-server-info", cwd=bare)  # dumb HTTP serving needs info/refs
    shutil.rmtree(work)
    return bare


def _http_server(root: Path, port: int) -> int | None:
    """Serves root on 127.0.0.1:port (0: any free port) until this process ends; the port, or None when
    it could not bind."""
    proc = subprocess.Popen([sys.executable, "-u", "-m", "http.server", "--bind", "127.0.0.1", str(port),
                             "--directory", str(root)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)  # fmt: skip
    # printed once it listens: "Serving HTTP on 127.0.0.1 port N (...)"; "" when it died
    line = proc.stdout.readline() if proc.stdout else ""
    if " port " not in line:
        proc.wait(timeout=30)
        return None
    atexit.register(proc.terminate)
    return int(line.split(" port ")[1].split()[0])


def serve(root: Path, version: str, python: str) -> Mirror:
    """Makes (or reuses) the repository under root and serves it on a loopback port until this process ends.
    The port is fixed where it is free: the URL is a build argument of the SGLang step, so a new port
    would rebuild SGLang (11 GB of layers, kept in BuildKit's cache) on every test session."""
    bare = _repository(root, version, python)
    port = _http_server(root, PORT) or _http_server(root, 0)
    if port is None:
        raise AssertionError("the git mirror's HTTP server did not start")
    url = f"http://127.0.0.1:{port}/sglang.git"
    urllib.request.urlopen(f"{url}/info/refs", timeout=30).read()  # the repository is served
    return Mirror(url=url, branch=BRANCH, commit=_git("rev-parse", BRANCH, cwd=bare))
