"""build.sh and download-packages.sh as a user runs them (--dry-run: the docker command they would run)."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.entrypoint
ROOT = Path(__file__).parents[2]


# Released sources unless a test sets its own: GitHub, where git:main points, is not reachable here, and
# resolving git refs has tests of its own below (against a local mirror).
RELEASED = {"SGLANG_SOURCE": "pypi:0.5.23", "DIFFUSERS_SOURCE": "pinned", "TRANSFORMERS_SOURCE": "pinned"}


def script(*args, env=None, cwd=ROOT):
    return subprocess.run(
        [str(ROOT / args[0]), *args[1:]], capture_output=True, text=True, timeout=120, cwd=cwd,
        env={"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"), **RELEASED, **(env or {})},
    )  # fmt: skip


def mirror(path: Path) -> tuple[str, str]:
    """A local git repository standing in for a project's mirror, with a branch main: (URL, its commit)."""
    ids = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    for args in (["init", "-q", "-b", "main"], ["commit", "-q", "--allow-empty", "-m", "one"]):
        subprocess.run(["git", "-C", str(path), *args], check=True, capture_output=True, env={**os.environ, **ids})
    head = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
    return f"file://{path}", head.stdout.strip()


def test_build_resolves_git_main_to_a_commit(tmp_path):
    """The default git:main should reach the build as the commit main points at (the cache key follows
    the commit), be printed by --dry-run, and what was asked for should go to a label."""
    url, head = mirror(tmp_path)
    urls = {f"{p}_GIT_URL": url for p in ("SGLANG", "DIFFUSERS", "TRANSFORMERS")}
    unset = {f"{p}_SOURCE": "" for p in ("SGLANG", "DIFFUSERS", "TRANSFORMERS")}  # the defaults
    proc = script("build.sh", "--tag", "t1", "--dry-run", env={**urls, **unset})
    assert proc.returncode == 0, proc.stderr
    assert f"sglang: git:main is git:{head}" in proc.stdout
    for var in ("SGLANG_SOURCE", "DIFFUSERS_SOURCE", "TRANSFORMERS_SOURCE"):
        assert f"--build-arg {var}=git:{head}" in proc.stdout, var
    assert "--build-arg REQUESTED_SOURCES=sglang=git:main diffusers=git:main transformers=git:main" in proc.stdout


def test_build_unreachable_git_remote_names_the_mirror_variable(tmp_path):
    """A git source whose remote does not answer should stop the build before docker runs, naming the fix."""
    proc = script("build.sh", "--tag", "t1", "--dry-run",
                  env={"SGLANG_SOURCE": "git:main", "SGLANG_GIT_URL": f"file://{tmp_path}/missing"})  # fmt: skip
    assert proc.returncode == 2 and "set SGLANG_GIT_URL to a reachable mirror" in proc.stderr
    assert "docker build" not in proc.stdout


def git(*args):
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True).stdout.strip()


def test_build_refuses_latest():
    """build.sh should refuse to tag 'latest' with a clear error."""
    proc = script("build.sh", "--tag", "latest", "--dry-run")
    assert proc.returncode == 2 and "ERROR: refusing to tag 'latest'" in proc.stderr


def test_build_tag_from_git():
    """Without --tag, the image tag should be the git tag or short commit, plus -dirty for a changed tree."""
    proc = script("build.sh", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    expected = git("describe", "--tags", "--exact-match") if subprocess.run(
        ["git", "-C", str(ROOT), "describe", "--tags", "--exact-match"], capture_output=True).returncode == 0 \
        else git("rev-parse", "--short=12", "HEAD")  # fmt: skip
    dirty = "-dirty" if git("status", "--porcelain", "--untracked-files=no") else ""
    assert f"-t glm-image-sglang:{expected}{dirty} " in proc.stdout


def test_build_command_defaults():
    """The build should use plain progress, MAX_JOBS=2 and record version and commit."""
    out = script("build.sh", "--tag", "v1.2.3", "--dry-run").stdout
    assert "build --progress=plain -t glm-image-sglang:v1.2.3" in out
    assert "--build-arg MAX_JOBS=2" in out and "--build-arg IMAGE_VERSION=v1.2.3" in out
    assert f"--build-arg VCS_REF={git('rev-parse', 'HEAD')}" in out


def test_build_passes_documented_arguments():
    """Every documented build variable that is set should reach docker build."""
    env = {"SGLANG_SOURCE": "git:3f2a9c1", "DIFFUSERS_SOURCE": "pinned", "FLASH_ATTN": "skip",
           "FLASH_ATTN_CUDA_ARCHS": "90", "MAX_JOBS": "4", "PIP_INDEX": "https://mirror/simple", "KERNEL_ARCHS": "9.0a",
           "BASE_IMAGE": "registry.local/cuda:13-devel", "HTTPS_PROXY": "http://proxy:3128"}  # fmt: skip
    out = script("build.sh", "--tag", "t1", "--dry-run", env=env).stdout
    for key, value in env.items():
        assert f"--build-arg {key}={value}" in out, key


def test_build_ca_is_a_secret(tmp_path):
    """A CA bundle should go to the build as a BuildKit secret, never as a build argument."""
    ca = tmp_path / "corp.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    out = script("build.sh", "--tag", "t1", "--dry-run", env={"CA_BUNDLE": str(ca)}).stdout
    assert f"--secret id=ca,src={ca}" in out and "corp.pem" not in out.replace(f"src={ca}", "")


def test_build_missing_ca_bundle(tmp_path):
    """A CA_BUNDLE that does not exist should be an error, not a silent build without it."""
    proc = script("build.sh", "--tag", "t1", "--dry-run", env={"CA_BUNDLE": str(tmp_path / "nope.pem")})
    assert proc.returncode == 2 and "CA_BUNDLE=" in proc.stderr


def test_build_offline_needs_pip_cache(tmp_path):
    """--offline without a filled pip-cache/ should say to run download-packages.sh first."""
    proc = script("build.sh", "--offline", "--tag", "t1", "--dry-run")
    if (ROOT / "pip-cache").is_dir() and any((ROOT / "pip-cache").glob("*.whl")):
        pytest.skip("this checkout has a filled pip-cache/")
    assert proc.returncode == 2 and "run ./download-packages.sh" in proc.stderr


def test_build_unknown_option():
    """An unknown option should point at --help."""
    proc = script("build.sh", "--fast")
    assert proc.returncode == 2 and "see ./build.sh --help" in proc.stderr


def test_build_help_documents_every_variable():
    """--help should name every build variable the script passes."""
    text = script("build.sh", "--help").stdout
    for var in (
        "BASE_IMAGE",
        "SGLANG_SOURCE",
        "DIFFUSERS_SOURCE",
        "TRANSFORMERS_SOURCE",
        "FLASH_ATTN",
        "FLASH_ATTN_VERSION",
        "FLASH_ATTN_CUDA_ARCHS",
        "MAX_JOBS",
        "KERNEL_ARCHS",
        "PIP_INDEX",
        "CA_BUNDLE",
        "--save",
        "--offline",
    ):
        assert var in text, var


def test_download_packages_runs_in_the_base_image():
    """download-packages.sh should resolve wheels inside BASE_IMAGE (its Python and platform) into pip-cache/."""
    out = script(
        "download-packages.sh", "--dry-run", env={"BASE_IMAGE": "local/base:1", "SGLANG_SOURCE": "pypi:0.5.23"}
    ).stdout
    assert f"-v {ROOT}/pip-cache:/pip-cache" in out and "-e SGLANG_SOURCE=pypi:0.5.23" in out
    assert out.rstrip().endswith("local/base:1 bash /build/download-wheels.sh")


def test_build_offline_serves_pip_cache(tmp_path):
    """--offline should serve pip-cache/ on loopback to a host-network build, and exit cleanly."""
    (tmp_path / "pip-cache").mkdir()
    (tmp_path / "pip-cache" / "pip-25.3-py3-none-any.whl").write_bytes(b"")
    (tmp_path / "build.sh").write_bytes((ROOT / "build.sh").read_bytes())
    (tmp_path / "build.sh").chmod(0o755)
    env = {
        "PATH": os.environ["PATH"],
        "DOCKER": "true",
    }  # a docker that "builds" at once, so the script runs to its end
    proc = subprocess.run([str(tmp_path / "build.sh"), "--offline", "--tag", "t1"], env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert "built glm-image-sglang:t1" in proc.stdout
    assert "--network host --build-arg WHEELHOUSE_URL=http://127.0.0.1:" in proc.stdout
    assert "--build-arg SGLANG_SOURCE=wheelhouse" in proc.stdout


def test_build_loopback_git_mirror_gets_the_host_network():
    """A git mirror on this machine (loopback URL) should be reachable from the build: --network host."""
    env = {"SGLANG_SOURCE": "git:abcdef1", "SGLANG_GIT_URL": "http://127.0.0.1:8080/sglang.git"}
    assert "--network host" in script("build.sh", "--tag", "t1", "--dry-run", env=env).stdout


def test_build_remote_git_mirror_keeps_the_build_network():
    """A mirror elsewhere should not widen the build's network."""
    env = {"SGLANG_SOURCE": "git:abcdef1", "SGLANG_GIT_URL": "https://git.corp.example/sglang.git"}
    assert "--network" not in script("build.sh", "--tag", "t1", "--dry-run", env=env).stdout


def _save_with_fake_docker(
    tmp_path, save_output: str, size: int = 1000, root: str = ""
) -> subprocess.CompletedProcess[str]:
    """./build.sh --save against a docker that builds at once, reports an image of `size` bytes and the data
    root `root` (default: the output folder's disk), and whose `save` prints save_output (or fails when
    save_output is empty). Each save is logged to saves.log."""
    fake = tmp_path / "docker"
    out = tmp_path / "out"
    out.mkdir()
    fake.write_text(
        "#!/bin/sh\n"
        f'case "$*" in "image inspect"*) echo {size};; "info -f {{{{.DockerRootDir}}}}") echo {root or out};; esac\n'
        f'if [ "$1" = save ]; then echo save >> {tmp_path}/saves.log; [ -n "{save_output}" ] || exit 1; '
        f'printf "{save_output}"; fi\n'
    )
    fake.chmod(0o755)
    return subprocess.run([str(ROOT / "build.sh"), "--tag", "t1", "--save"], cwd=out,
                          env={"PATH": os.environ["PATH"], "DOCKER": str(fake), "SGLANG_SOURCE": "pypi:0.5.23",
                               "DIFFUSERS_SOURCE": "pinned", "TRANSFORMERS_SOURCE": "pinned"},
                          capture_output=True, text=True, timeout=60)  # fmt: skip


def test_build_save_writes_gzip_and_checksum(tmp_path):
    """--save should write docker save's stream gzip-compressed, with a checksum that verifies."""
    import gzip

    proc = _save_with_fake_docker(tmp_path, "image-archive-bytes")
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["glm-image-sglang-t1.tar.gz", "glm-image-sglang-t1.tar.gz.sha256"]
    assert gzip.decompress((out / "glm-image-sglang-t1.tar.gz").read_bytes()) == b"image-archive-bytes"
    check = subprocess.run(["sha256sum", "-c", "glm-image-sglang-t1.tar.gz.sha256"], cwd=out, capture_output=True)
    assert check.returncode == 0


def test_build_save_failure_leaves_no_archive(tmp_path):
    """A failed docker save should be an error naming the likely cause, and leave no file behind that
    looks like a complete archive."""
    proc = _save_with_fake_docker(tmp_path, "")
    assert proc.returncode == 2 and "docker save" in proc.stderr and "free disk" in proc.stderr
    assert list((tmp_path / "out").iterdir()) == []


def test_build_save_refuses_an_image_the_disk_cannot_hold(tmp_path):
    """When the image (written whole under docker's data root, here the same disk) plus its .tar.gz cannot fit,
    --save should stop before docker save runs, saying how much is needed and what to free."""
    free = shutil.disk_usage(tmp_path).free
    proc = _save_with_fake_docker(tmp_path, "image-archive-bytes", size=free)  # needs 1.5 x free
    assert proc.returncode == 2 and "not enough disk to save glm-image-sglang:t1" in proc.stderr
    assert "on the same disk" in proc.stderr and "docker builder prune" in proc.stderr
    assert not (tmp_path / "saves.log").exists() and list((tmp_path / "out").iterdir()) == []


def test_build_save_names_a_full_docker_data_root(tmp_path):
    """A data root on another, full disk (here /proc: 0 bytes free) should be named, with DOCKER_TMPDIR."""
    proc = _save_with_fake_docker(tmp_path, "image-archive-bytes", root="/proc")
    assert proc.returncode == 2 and "docker's data root /proc" in proc.stderr and "DOCKER_TMPDIR" in proc.stderr
    assert not (tmp_path / "saves.log").exists()


def run_sh_function(call: str, uid: int = 1000) -> subprocess.CompletedProcess[str]:
    """One function of tests/run.sh, sourced, as a non-root user (uid faked) on a machine without apt-get."""
    code = f"id() {{ echo {uid}; }}; apt-get() {{ echo 'apt-get called' >&2; return 1; }}; source tests/run.sh; {call}"
    return subprocess.run(["bash", "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)


@pytest.mark.parametrize(
    ("marker", "tiers"),
    [
        ("", "unit gateway entrypoint e2e container deploy"),
        ("-m unit", "unit"),
        ("-m 'unit or gateway'", "unit gateway"),
        ("-m 'not container'", "unit gateway entrypoint e2e deploy"),
        ("-m 'e2e and not container'", "e2e"),
        ("-m 'weird(x)'", "unit gateway entrypoint e2e container deploy"),
    ],
)
def test_run_sh_sets_up_only_the_selected_tiers(marker, tiers):
    """tests/run.sh should read which tiers a -m expression selects (anything it cannot read: all of them)."""
    loop = "for t in unit gateway entrypoint e2e container deploy; do selected $t " + marker + ' && echo -n "$t "; done'
    assert run_sh_function(loop).stdout.strip() == tiers


@pytest.mark.parametrize("marker", ["-m unit", "-m gateway", "-m deploy", "-m 'unit or gateway or deploy'"])
def test_run_sh_unit_tiers_need_no_system_packages(marker):
    """As a non-root user, the tiers that need no system package should not try to install any."""
    proc = run_sh_function(f"install_system_packages {marker}")
    assert proc.returncode == 0 and "no system packages needed" in proc.stdout and "apt-get" not in proc.stderr


@pytest.mark.parametrize(("marker", "made"), [("-m container", True), ("-m e2e", True), ("-m unit", False)])
def test_run_sh_makes_the_e2e_venv_for_the_container_tier_too(marker, made):
    """The e2e tests' [image] half belongs to the container tier and makes its models with .venv-e2e:
    -m container must set it up (a container-only run errored on every [image] test without it)."""
    fakes = "install_system_packages() { :; }; start_docker() { :; }; make_e2e_venv() { echo MADE; exit 0; }; "
    proc = run_sh_function(fakes + f"python3() {{ exit 0; }}; _main {marker}")
    assert ("MADE" in proc.stdout) == made, proc.stdout + proc.stderr
