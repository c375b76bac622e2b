"""Source specs for the image build, and the build check's pip-check policy."""

import pytest

from glm_image_sglang.buildcheck import classify_pip_check
from glm_image_sglang.buildspec import SpecError, main, requirement, resolve

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


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    """A local git repository standing in for a project's mirror: branch main, a lightweight tag and an
    annotated one (whose own object is not the commit)."""
    import subprocess

    repo = tmp_path_factory.mktemp("mirror")
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}

    def git(*args):
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True,
                              env={**env, "PATH": "/usr/bin:/bin"}).stdout.strip()  # fmt: skip

    git("init", "-q", "-b", "main")
    git("commit", "-q", "--allow-empty", "-m", "one")
    first = git("rev-parse", "HEAD")
    git("tag", "v1")
    git("tag", "-a", "v1-annotated", "-m", "release")
    git("commit", "-q", "--allow-empty", "-m", "two")
    return f"file://{repo}", first, git("rev-parse", "HEAD")


def test_branch_resolved_to_its_commit(mirror):
    """git:main should become the commit main points at now: the build's cache key follows the commit."""
    url, _, head = mirror
    assert resolve("sglang", "git:main", url) == f"git:{head}"


@pytest.mark.parametrize("tag", ["v1", "v1-annotated"])
def test_tag_resolved_to_its_commit(mirror, tag):
    """A tag (also an annotated one) should become the commit it names, not the tag object."""
    url, first, _ = mirror
    assert resolve("diffusers", f"git:{tag}", url) == f"git:{first}"


@pytest.mark.parametrize("spec", ["git:3f2a9c1", f"git:{'a' * 40}", "pypi:0.5.23", "pinned"])
def test_commits_and_releases_need_no_remote(spec):
    """A commit SHA or a release should pass unchanged, without asking any remote."""
    package = "transformers"
    assert resolve(package, spec, "file:///nonexistent/never-asked") == spec


def test_unknown_ref_names_the_fix(mirror):
    """A branch the mirror lacks should say so and name the ways out."""
    url, _, _ = mirror
    with pytest.raises(SpecError, match=r"has no branch or tag 'nope'; set SGLANG_GIT_URL to a reachable mirror"):
        resolve("sglang", "git:nope", url)


def test_unreachable_remote_names_the_mirror_variable(tmp_path):
    """An unreachable remote should be a clear error naming the *_GIT_URL variable, not a hang or traceback."""
    with pytest.raises(SpecError, match=r"is not reachable .*set TRANSFORMERS_GIT_URL to a reachable mirror"):
        resolve("transformers", "git:main", f"file://{tmp_path}/no-such-repo")
