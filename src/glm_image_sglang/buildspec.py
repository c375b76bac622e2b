"""Turns the image's source build arguments into pip requirements (used by the Dockerfile and
download-packages.sh; standard library only, it runs before anything else is installed).

A source spec is one of:
  git:REF        the project's git repository at a branch, tag or commit SHA (default git:main)
  pypi:VERSION   that release from the package index
  pypi           the newest release
  pinned         (diffusers, transformers) exactly what SGLang's requirements pin
  wheelhouse     the newest version found in the offline wheelhouse (pip-cache/)

usage: python3 buildspec.py PACKAGE SPEC [GIT_URL]           -> prints the requirement ('' for pinned)
       python3 buildspec.py resolve PACKAGE SPEC [GIT_URL]   -> git:BRANCH or git:TAG as git:<commit SHA>

build.sh resolves git refs before the build: the SHA becomes the build argument, so BuildKit's cache
key changes exactly when the commit does (a literal `git:main` would reuse the first build's main
forever), and the labels name the commit.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

PACKAGES = {
    # name: (requirement name with extras, default git URL, subdirectory holding the Python package)
    "sglang": ("sglang[diffusion]", "https://github.com/sgl-project/sglang.git", "python"),
    "diffusers": ("diffusers", "https://github.com/huggingface/diffusers.git", ""),
    "transformers": ("transformers", "https://github.com/huggingface/transformers.git", ""),
}

_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$")
_COMMIT = re.compile(r"^[0-9a-f]{7,40}$")  # already a commit: nothing to resolve
_VERSION = re.compile(r"^[0-9][0-9A-Za-z.+!-]{0,63}$")


class SpecError(ValueError):
    pass


def requirement(package: str, spec: str, git_url: str = "") -> str:
    """The pip requirement for a package's source spec; '' means "leave SGLang's pin"."""
    if package not in PACKAGES:
        raise SpecError(f"unknown package {package!r}; expected one of {', '.join(PACKAGES)}")
    name, default_url, subdir = PACKAGES[package]
    env = f"{package.upper()}_SOURCE"
    kind, _, value = spec.strip().partition(":")
    if kind == "git":
        if not _REF.match(value) or ".." in value:
            raise SpecError(f"{env}={spec!r}: git needs a branch, tag or SHA, e.g. git:main or git:3f2a9c1")
        url = git_url or default_url
        suffix = f"#subdirectory={subdir}" if subdir else ""
        return f"{name} @ git+{url}@{value}{suffix}"
    if kind in ("pypi", "wheelhouse"):
        if not value:
            return name
        if kind == "wheelhouse" or not _VERSION.match(value):
            raise SpecError(f"{env}={spec!r}: use pypi:VERSION (e.g. pypi:0.5.23), pypi, or wheelhouse")
        return f"{name}=={value}"
    if kind == "pinned" and not value and package != "sglang":
        return ""
    allowed = "git:REF, pypi:VERSION, pypi, wheelhouse" + ("" if package == "sglang" else ", pinned")
    raise SpecError(f"{env}={spec!r} is not supported; use one of: {allowed}")


def resolve(package: str, spec: str, git_url: str = "", timeout: float = 60) -> str:
    """git:BRANCH or git:TAG -> git:<the commit it points at now>; other specs unchanged."""
    requirement(package, spec, git_url)  # validates
    kind, _, ref = spec.strip().partition(":")
    if kind != "git" or _COMMIT.match(ref):
        return spec.strip()
    url = git_url or PACKAGES[package][1]
    env_url = f"{package.upper()}_GIT_URL"
    fix = (
        f"set {env_url} to a reachable mirror, {package.upper()}_SOURCE=git:<commit SHA>, or "
        f"{package.upper()}_SOURCE=pypi:VERSION"
    )
    try:
        out = subprocess.run(
            ["git", "ls-remote", url, f"refs/heads/{ref}", f"refs/tags/{ref}", f"refs/tags/{ref}^{{}}"],
            capture_output=True, text=True, timeout=timeout, env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise SpecError(
            f"cannot resolve git:{ref} of {package}: {url} did not answer in {timeout:.0f} s; {fix}"
        ) from None
    except FileNotFoundError:
        raise SpecError(f"cannot resolve git:{ref} of {package}: git is not installed here; {fix}") from None
    if out.returncode != 0:
        said = out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}"
        raise SpecError(f"cannot resolve git:{ref} of {package}: {url} is not reachable ({said}); {fix}")
    refs = {name: commit for commit, _, name in (line.partition("\t") for line in out.stdout.splitlines())}
    sha = refs.get(f"refs/tags/{ref}^{{}}") or refs.get(f"refs/tags/{ref}") or refs.get(f"refs/heads/{ref}") or ""
    if not sha:
        raise SpecError(f"{package.upper()}_SOURCE=git:{ref}: {url} has no branch or tag '{ref}'; {fix}")
    return f"git:{sha}"


def main(argv: list[str]) -> int:
    if argv[:1] == ["resolve"] and len(argv) in (3, 4):
        try:
            print(resolve(argv[1], argv[2], argv[3] if len(argv) == 4 else ""))
        except SpecError as e:
            print(f"ERROR: {e}", file=sys.stderr)
            return 2
        return 0
    if len(argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    try:
        print(requirement(*argv))
    except SpecError as e:
        print(f"ERROR: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
