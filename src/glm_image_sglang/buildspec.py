"""Turns the image's source build arguments into pip requirements (used by the Dockerfile and
download-packages.sh; standard library only, it runs before anything else is installed).

A source spec is one of:
  git:REF        the project's git repository at a branch, tag or commit SHA (default git:main)
  pypi:VERSION   that release from the package index
  pypi           the newest release
  pinned         (diffusers, transformers) exactly what SGLang's requirements pin
  wheelhouse     the newest version found in the offline wheelhouse (pip-cache/)

usage: python3 buildspec.py PACKAGE SPEC [GIT_URL]   -> prints the requirement ('' for pinned)
"""

from __future__ import annotations

import re
import sys

PACKAGES = {
    # name: (requirement name with extras, default git URL, subdirectory holding the Python package)
    "sglang": ("sglang[diffusion]", "https://github.com/sgl-project/sglang.git", "python"),
    "diffusers": ("diffusers", "https://github.com/huggingface/diffusers.git", ""),
    "transformers": ("transformers", "https://github.com/huggingface/transformers.git", ""),
}

_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$")
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


def main(argv: list[str]) -> int:
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
