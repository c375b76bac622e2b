"""Source specs for the image build, and the build check's pip-check policy."""

import pytest

from glm_image_sglang.buildcheck import classify_pip_check
from glm_image_sglang.buildspec import SpecError, main, requirement

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("package", "spec", "expected"),
    [
        ("sglang", "git:main", "sglang[diffusion] @ git+https://github.com/sgl-project/sglang.git@main#subdirectory=python"),
        ("sglang", "git:3f2a9c1", "sglang[diffusion] @ git+https://github.com/sgl-project/sglang.git@3f2a9c1#subdirectory=python"),
        ("sglang", "pypi:0.5.23", "sglang[diffusion]==0.5.23"),
        ("sglang", "pypi", "sglang[diffusion]"),
        ("sglang", "wheelhouse", "sglang[diffusion]"),
        ("diffusers", "git:v0.37.0", "diffusers @ git+https://github.com/huggingface/diffusers.git@v0.37.0"),
        ("transformers", "pinned", ""),
    ],
)  # fmt: skip
def test_requirements(package, spec, expected):
    """Each source spec should become the pip requirement the Dockerfile installs."""
    assert requirement(package, spec) == expected


def test_git_mirror():
    """A git mirror URL should replace GitHub."""
    req = requirement("transformers", "git:main", "https://git.corp/hf/transformers.git")
    assert req == "transformers @ git+https://git.corp/hf/transformers.git@main"


@pytest.mark.parametrize(
    ("package", "spec", "message"),
    [
        ("sglang", "pinned", "SGLANG_SOURCE='pinned' is not supported"),
        ("sglang", "svn:trunk", "SGLANG_SOURCE='svn:trunk' is not supported; use one of: git:REF, pypi:VERSION"),
        ("diffusers", "git:", "DIFFUSERS_SOURCE='git:': git needs a branch, tag or SHA"),
        ("diffusers", "git:main;rm -rf /", "git needs a branch"),
        ("transformers", "pypi:latest", "use pypi:VERSION"),
        ("transformers", "git:../x", "git needs a branch"),
    ],
)
def test_invalid_specs_fail_closed(package, spec, message):
    """Unknown or unsafe specs should fail the build with the allowed forms."""
    with pytest.raises(SpecError, match=message.replace("(", r"\(").replace("[", r"\[")):
        requirement(package, spec)


def test_cli_exit_code(capsys):
    """The Dockerfile's call should exit 2 with ERROR: on a bad spec."""
    assert main(["sglang", "bogus"]) == 2
    assert capsys.readouterr().err.startswith("ERROR: SGLANG_SOURCE='bogus' is not supported")


PIP_CHECK = """\
sglang 0.5.23 has requirement transformers==5.19.0, but you have transformers 5.25.0.dev0.
sglang 0.5.23 has requirement diffusers==0.37.0, but you have diffusers 0.43.0.dev0.
torchvision 0.29.1 requires torch, which is not installed.
"""


def test_pip_check_accepts_only_intended_overrides():
    """Pins overridden on purpose should be accepted; every other broken requirement should fail."""
    accepted, failures = classify_pip_check(PIP_CHECK, {"transformers"})
    assert accepted == [PIP_CHECK.splitlines()[0]]
    assert failures == PIP_CHECK.splitlines()[1:]


def test_pip_check_clean():
    """A clean pip check should give nothing to accept or fail."""
    assert classify_pip_check("No broken requirements found.\n", set()) == ([], [])
