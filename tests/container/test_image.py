"""The built image, run the way OpenShift runs it.

The image is built here with ./build.sh from the real Dockerfile on a locally made base (no
registry is reachable here): Debian (debootstrap) + nvcc from NVIDIA's PyPI wheels, SGLang from
PyPI, flash-attn skipped (compiling it takes hours on 2 cores). No GPU here: the launcher must fail
cleanly, and everything up to that point is checked.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tarfile
import uuid
from pathlib import Path

import pytest

from fakemodels import make
from imagebuild import HOST_CA, OPENSHIFT, RANDOM_UID, ROOT, TAG, docker

pytestmark = pytest.mark.container


def run(image: str, *args: str, user: str = RANDOM_UID, opts: tuple[str, ...] = (), timeout: float = 300):
    name = f"gis-test-{uuid.uuid4().hex[:8]}"
    try:
        return docker(
            "run", "--name", name, "--user", user, *OPENSHIFT, *opts, image, *args, check=False, timeout=timeout
        )
    finally:
        docker("rm", "-f", name, check=False)


@pytest.fixture(scope="session")
def inspect(image):
    return json.loads(docker("image", "inspect", image).stdout)[0]


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """A Wan2.2-T2V-A14B layout in a folder whose name does not say so, world-readable (mounted read-only)."""
    root = tmp_path_factory.mktemp("models")
    make(root / "weights", "wan2.2-t2v-a14b")
    subprocess.run(["chmod", "-R", "a+rX", str(root)], check=True)
    return root


def test_runs_as_uid_1001_group_0(inspect, image):
    """Container should default to UID 1001 in group 0."""
    assert inspect["Config"]["User"] == "1001"
    out = run(image, "id", user="1001").stdout
    assert out.startswith("uid=1001(app) gid=0(root)")


def test_environment(inspect):
    """Container should run offline with its caches and models where the docs say."""
    env = dict(e.split("=", 1) for e in inspect["Config"]["Env"])
    assert env["HF_HUB_OFFLINE"] == "1" and env["TRANSFORMERS_OFFLINE"] == "1"
    assert env["HF_HOME"] == "/app/models" and env["DATA_DIR"] == "/app/data" and env["PORT"] == "30000"
    assert "30000/tcp" in inspect["Config"]["ExposedPorts"]


def test_labels_record_version_and_sources(inspect):
    """Labels should carry the tag, the commit and the sources the image was built from."""
    from imagebuild import sglang_mirror

    mirror = sglang_mirror()
    labels = inspect["Config"]["Labels"]
    assert labels["org.opencontainers.image.version"] == TAG
    assert re.fullmatch(r"[0-9a-f]{40}|unknown", labels["org.opencontainers.image.revision"])
    assert labels["glm-image-sglang.sources"] == (  # the commit build.sh resolved the branch to
        f"sglang=git:{mirror.commit} diffusers=pinned transformers=pinned flash-attn=skip"
    )
    assert labels["io.openshift.expose-services"] == "30000:http"
    requested = f"sglang=git:{mirror.branch} diffusers=pinned transformers=pinned"
    assert labels["glm-image-sglang.requested-sources"] == requested
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0" and "org.opencontainers.image.source" in labels


def test_build_info(image):
    """/app/build-info.json should record the versions that went in, SGLang's as the commit installed."""
    from imagebuild import sglang_mirror

    info = json.loads(run(image, "cat", "/app/build-info.json").stdout)
    packages = info["packages"]
    assert packages["sglang"]["version"] == "0.5.23"
    assert packages["transformers"]["version"] == "5.19.0" and packages["diffusers"]["version"] == "0.37.0"
    assert packages["torch"]["version"].startswith("2.14.1")
    assert "flash-attn" not in packages
    assert info["sources"]["sglang"] == f"git:{sglang_mirror().commit}" and info["image_version"] == TAG


def test_healthcheck_allows_model_load(inspect):
    """HEALTHCHECK should probe /health with a start period long enough for a multi-minute load."""
    health = inspect["Config"]["Healthcheck"]
    assert "/health" in " ".join(health["Test"])
    assert health["StartPeriod"] >= 300 * 10**9


def test_image_dirs_group_writable_without_tmpfs(image):
    """Without any volume, /app/data in the image should be writable by an arbitrary UID in group 0, and the
    code (the venv, /app/src, the entrypoint) by nobody at run time."""
    name = f"gis-test-{uuid.uuid4().hex[:8]}"
    try:
        proc = docker("run", "--name", name, "--user", RANDOM_UID, "--network", "none", image, "sh", "-c",
                      "touch /app/data/outputs/x /app/data/cache/x && ! touch /opt/venv/x 2>/dev/null "
                      "&& ! touch /app/src/pyproject.toml 2>/dev/null && ! touch /app/entrypoint.sh 2>/dev/null "
                      "&& echo ok",
                      check=False)  # fmt: skip
    finally:
        docker("rm", "-f", name, check=False)
    assert proc.stdout.strip() == "ok", proc.stderr


def test_arbitrary_uid_has_a_user_name(image):
    """An arbitrary UID has no passwd entry: the entrypoint should name it, or getpass.getuser() raises in
    torch._dynamo, the CuTe DSL and QuACK."""
    proc = run(image, "python3", "-c", "import getpass; print(getpass.getuser())")
    assert (proc.returncode, proc.stdout.strip()) == (0, "default"), proc.stderr[-2000:]


def test_devel_toolchain_present(image):
    """gcc, nvcc, ninja and libnuma.so.1 should be in the running image (Triton and JIT kernels need them)."""
    proc = run(
        image, "sh", "-c", "gcc --version && nvcc --version && ninja --version && ldconfig -p | grep libnuma.so.1"
    )
    assert proc.returncode == 0, proc.stderr
    assert "libnuma.so.1" in proc.stdout


SEEDED_BUILD = """
import json, os
from glm_image_sglang import kernel_seed
from glm_image_sglang.settings import Settings
os.environ.update(FLASHINFER_WORKSPACE_BASE=str(kernel_seed.RUN_TIME_WORKSPACE), FLASHINFER_CUDA_ARCH_LIST="9.0a")
print("\\n".join(kernel_seed.seed(Settings.from_env({"MODEL_PATH": "/m"}).kernel_seed_dir, os.environ)))
kernel_seed.jit_only_flashinfer()
from flashinfer.jit.rope import gen_rope_module
spec = gen_rope_module()
before = spec.jit_library_path.stat().st_mtime_ns
spec.build(verbose=True)  # what FlashInfer does before every load: run ninja
print(json.dumps({"so": str(spec.jit_library_path), "unchanged": spec.jit_library_path.stat().st_mtime_ns == before}))
"""


def test_prebuilt_rope_kernel_is_not_compiled_again(image):
    """FlashInfer's RoPE, built into the image for KERNEL_ARCHS (9.0a here) and copied into the default
    CACHE_DIR the way the launcher does at start, should be up to date for the ninja FlashInfer runs before
    loading it: nothing compiles, the module is the image's."""
    proc = run(image, "python", "-c", SEEDED_BUILD)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert re.fullmatch(r"prebuilt flashinfer rope \(9\.0a\): [1-9]\d* files copied into /app/data/cache/flashinfer",
                        lines[0]), lines[0]  # fmt: skip
    assert "ninja: no work to do." in proc.stdout, proc.stdout[-3000:]
    result = json.loads(lines[-1])
    assert result["unchanged"] and result["so"].startswith("/app/data/cache/flashinfer/"), result


SEEDED_SGLANG_JIT = """
import os
from pathlib import Path
os.environ.update(SGLANG_JIT_CACHE_DIR="/app/data/cache/sglang-jit", SGLANG_CRASH_ON_JIT_COMPILE="1")
from glm_image_sglang import kernel_record, kernel_seed
from glm_image_sglang.settings import Settings
print("\\n".join(kernel_seed.seed(Settings.from_env({"MODEL_PATH": "/m"}).kernel_seed_dir, os.environ)))
for item in kernel_record.read(Path("/usr/local/lib/glm-image-sglang/kernel-builds/glm-image.jsonl")):
    print("loaded", item["module"], kernel_record.replay(item, "9.0a"))
"""


def test_recorded_sglang_kernels_are_found_without_compiling(image):
    """The SGLang JIT kernels a GPU start of GLM-Image recorded (docker/kernel-builds/: its diffusion server's and its
    AR server's), replayed into the image for 9.0a and copied into a start's SGLANG_JIT_CACHE_DIR, should be found
    by SGLang's own cache lookup: with SGLANG_CRASH_ON_JIT_COMPILE set, a lookup that missed would raise instead of
    compiling."""
    proc = run(image, "python", "-c", SEEDED_SGLANG_JIT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert re.search(r"^prebuilt sglang-jit \S+(, \S+)* \(9\.0a\): [1-9]\d* files copied into "
                     r"/app/data/cache/sglang-jit$", proc.stdout, re.M), proc.stdout  # fmt: skip
    recorded = {json.loads(line)["module"] for line in (ROOT / "docker/kernel-builds/glm-image.jsonl").open()}
    loaded = re.findall(r"^loaded (\S+) done$", proc.stdout, re.M)
    assert sorted(loaded) == sorted(recorded), proc.stdout[-3000:]
    # the diffusion server's and the AR server's (SGLang's LLM runtime: the srt plugin entry point) alike
    assert {"sgl_kernel_jit_timestep_embedding_bf16_t", "sgl_kernel_jit_kvcache_512_512_32_true"} <= recorded


def test_tini_is_pid_1(inspect):
    """tini should be PID 1 so signals reach the launcher and zombies are reaped."""
    assert inspect["Config"]["Entrypoint"] == ["/usr/bin/tini", "--", "/app/entrypoint.sh"]


def test_sglang_serve_help(image):
    """`sglang serve --help` should work as an arbitrary UID, offline, on a read-only root."""
    proc = run(image, "sglang", "serve", "--model-type", "diffusion", "--help")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "--model-path" in proc.stdout


def test_server_modules_import(image):
    """The SGLang diffusion HTTP server and the GLM-Image stage should import."""
    code = (
        "import sglang.multimodal_gen.runtime.entrypoints.http_server; "
        "from sglang.multimodal_gen.runtime.pipelines_core.stages.model_specific_stages.glm_image "
        "import pooled_image_features_to_tensor; print('ok')"
    )
    proc = run(image, "python", "-c", code)
    assert proc.stdout.strip().endswith("ok"), proc.stderr[-2000:]


def test_the_plugin_is_registered_for_both_sglang_runtimes(image):
    """The installed package should name its plugin to SGLang's diffusion runtime (the patches) and to its LLM
    runtime (the AR server's kernel records; WORKER_START=preload in the diffusion server's main process)."""
    code = (
        "from importlib.metadata import entry_points as e; "
        "print(sorted((p.group, p.value) for g in ('sglang.multimodal_gen.plugins', 'sglang.srt.plugins') "
        "for p in e(group=g) if p.name == 'glm_image_sglang'))"
    )
    proc = run(image, "python", "-c", code)
    assert proc.stdout.strip() == str(
        [
            ("sglang.multimodal_gen.plugins", "glm_image_sglang.sglang_plugin:register"),
            ("sglang.srt.plugins", "glm_image_sglang.sglang_plugin:register_srt"),
        ]
    ), proc.stdout + proc.stderr[-2000:]


def test_gateway_and_client_run_in_image(image):
    """The gateway's and the client's dependencies should be in the image (they start and print help)."""
    proc = run(
        image,
        "sh",
        "-c",
        "glm-image-sglang gateway --help && glm-image-sglang client --help && "
        "python -c 'import glm_image_sglang.gateway.app'",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "--upstream" in proc.stdout and "video" in proc.stdout


def test_missing_model_path(image):
    """Container should exit 2 with the MODEL_PATH fix, not a traceback."""
    proc = run(image)
    assert proc.returncode == 2
    assert "ERROR: MODEL_PATH is not set" in proc.stderr and "Traceback" not in proc.stderr


def test_no_gpu_clear_failure(image, tiny_model):
    """Without a GPU, the container should exit 4 with the --gpus all advice and no traceback."""
    proc = run(image, opts=("-v", f"{tiny_model}:/app/models:ro", "-e", "MODEL_PATH=/app/models/weights"))
    assert proc.returncode == 4, proc.stderr
    assert "ERROR: no GPU visible (nvidia-smi not found: the container has no GPU access)" in proc.stderr
    assert "docker run --gpus all" in proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr


def test_check_with_real_sglang(image, tiny_model):
    """`check` should detect the model, read the real SGLang's flags and print the full command."""
    proc = run(
        image, "check",
        opts=("-v", f"{tiny_model}:/app/models:ro", "-e", "MODEL_PATH=/app/models/weights", "-e", "REQUIRE_GPU=false"),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "[launcher] SGLang 0.5.23" in proc.stdout
    assert "--model-id Wan2.2-T2V-A14B-Diffusers" in proc.stdout
    assert "--http-graceful-shutdown-timeout 30" in proc.stdout  # SGLang 0.5.23 has it: detected from its source
    assert "[launcher] gateway: " in proc.stdout and "--model-variant wan2.2-t2v-a14b" in proc.stdout
    assert "WARNING" not in proc.stderr


def test_read_only_root_without_data_volume(image, tiny_model):
    """On a read-only root without a /app/data volume, the launcher should say to mount one."""
    name = f"gis-test-{uuid.uuid4().hex[:8]}"
    try:
        proc = docker(
            "run", "--name", name, "--user", RANDOM_UID, "--read-only", "--tmpfs", "/tmp:rw,exec,mode=1777",
            "--network", "none", "-v", f"{tiny_model}:/app/models:ro", "-e", "MODEL_PATH=/app/models/weights",
            "-e", "REQUIRE_GPU=false", image, "check", check=False,
        )  # fmt: skip
    finally:
        docker("rm", "-f", name, check=False)
    assert proc.returncode == 4, proc.stderr
    assert "the root filesystem is read-only: mount a writable volume (emptyDir) there" in proc.stderr


def _proxy_only_certs() -> list[str]:
    """First base64 line of each certificate in the host bundle that Debian's own bundle lacks (the proxy CA)."""
    if not HOST_CA.exists():
        return []
    stock = Path("/usr/share/ca-certificates/mozilla")
    stock_text = "".join(p.read_text() for p in stock.glob("*.crt")) if stock.is_dir() else ""
    blocks = re.findall(r"-----BEGIN CERTIFICATE-----\n(.+?)\n", HOST_CA.read_text())
    return [line for line in blocks if line not in stock_text]


def test_no_secret_in_history(image):
    """docker history should show no CA certificate or token (they were BuildKit secrets)."""
    history = docker("history", "--no-trunc", image).stdout
    assert "BEGIN CERTIFICATE" not in history
    for line in _proxy_only_certs():
        assert line not in history


def test_save_load_round_trip_without_secrets(image, tmp_path):
    """./build.sh --save should write the compressed tar and its checksum; the tar should load back, and no
    layer should contain the build's CA secret."""
    from imagebuild import build_env

    size = int(docker("image", "inspect", "-f", "{{.Size}}", image).stdout)  # build.sh checks the disk
    proc = subprocess.run([str(ROOT / "build.sh"), "--tag", TAG, "--save"], cwd=tmp_path, env=build_env(),
                          capture_output=True, text=True, timeout=3600)  # fmt: skip
    if proc.returncode == 2 and f"ERROR: not enough disk to save {image}" in proc.stderr:
        # build.sh's own check, before docker save: the round trip needs about 1.5 x the image's size on a disk
        # this machine does not have; everything before it ran (the build, the check's message), nothing after
        pytest.skip(proc.stderr.strip().splitlines()[-1])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    tar = tmp_path / f"glm-image-sglang-{TAG}.tar.gz"
    assert sorted(p.name for p in tmp_path.iterdir()) == [tar.name, tar.name + ".sha256"]  # no .partial left
    assert tar.stat().st_size < size * 0.75, "the saved image is not compressed"
    check = subprocess.run(["sha256sum", "-c", tar.name + ".sha256"], cwd=tmp_path, capture_output=True, text=True)
    assert check.returncode == 0 and check.stdout.strip() == f"{tar.name}: OK"
    secrets = [line.encode() for line in _proxy_only_certs()]
    assert secrets, "the host CA bundle has no proxy CA here, so the secret scan would prove nothing"
    found, layers = [], 0
    with tarfile.open(tar, mode="r|gz") as outer:  # streamed: the archive is read once, never unpacked
        for member in outer:
            if not member.name.endswith("layer.tar"):
                continue
            layers += 1
            layer = outer.extractfile(member)
            assert layer is not None
            with tarfile.open(fileobj=layer, mode="r|") as inner:
                for entry in inner:
                    if not entry.isfile() or entry.size > 64 * 1024 * 1024:
                        continue
                    data = inner.extractfile(entry).read()  # type: ignore[union-attr]
                    found += [f"{member.name}:{entry.name}" for s in secrets if s in data]
    assert layers > 5, f"only {layers} layers found in {tar.name}: the secret scan would prove nothing"
    assert not found, f"the build's CA secret is stored in the image: {found}"
    image_id = docker("image", "inspect", "-f", "{{.Id}}", image).stdout.strip()
    loaded = docker("load", "-i", str(tar), timeout=1800).stdout
    assert f"Loaded image: {image}" in loaded
    assert docker("image", "inspect", "-f", "{{.Id}}", image).stdout.strip() == image_id
    tar.unlink()  # ~6 GB: do not leave it in pytest's kept temp dirs


def _layer_steps(dockerfile: Path) -> list[str]:
    """The Dockerfile's layer-making instructions, first line of each, in order: RUN, COPY, ADD, and
    WORKDIR (BuildKit makes a layer for it even when the directory exists, and for a RUN that changes
    nothing)."""
    steps = []
    for line in dockerfile.read_text().splitlines():
        word = line.split(" ", 1)[0]
        if word in ("RUN", "COPY", "ADD", "WORKDIR"):
            steps.append(line)
    return steps


def test_editing_package_code_keeps_the_dependency_layers(image, tmp_path):
    """Editing a file under src/ should rebuild only from the code's COPY on: every layer before it (the
    system packages, SGLang, flash-attn, the user) comes from the cache with the same id, so a code change
    never costs a dependency rebuild."""
    from imagebuild import build_env

    copy = tmp_path / "repo"
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.split("\0")  # fmt: skip
    for name in filter(None, listed):
        if (ROOT / name).is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, copy / name)
    cli = copy / "src/glm_image_sglang/cli.py"
    cli.write_text(cli.read_text() + "\n# edited by test_editing_package_code_keeps_the_dependency_layers\n")
    touched = "glm-image-sglang:ci-edited"
    proc = subprocess.run([str(copy / "build.sh"), "--tag", "ci-edited"], cwd=copy, env=build_env(),
                          capture_output=True, text=True, timeout=3600)  # fmt: skip
    try:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        steps = _layer_steps(ROOT / "Dockerfile")
        (code,) = [i for i, step in enumerate(steps) if step.startswith("COPY src ")]
        rebuilt = len(steps) - code  # the code's COPY and every layer after it
        before = json.loads(docker("image", "inspect", "-f", "{{json .RootFS.Layers}}", image).stdout)
        after = json.loads(docker("image", "inspect", "-f", "{{json .RootFS.Layers}}", touched).stdout)
        assert len(before) == len(after)
        assert before[:-rebuilt] == after[:-rebuilt], f"layers before `{steps[code]}` were rebuilt"
        assert before[-rebuilt] != after[-rebuilt], "the edited code did not reach the image: the check proves nothing"
    finally:
        docker("rmi", touched, check=False)
