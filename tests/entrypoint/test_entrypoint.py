"""entrypoint.sh and the launcher, end to end as processes, with test doubles for `sglang` and
`nvidia-smi` (fakebin/) that record what they were given. The real server runs in the e2e tiers."""

import json
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from fakemodels import make
from ports import free_port

pytestmark = pytest.mark.entrypoint

ROOT = Path(__file__).parents[2]
ENTRYPOINT = ROOT / "entrypoint.sh"
FAKEBIN = Path(__file__).parent / "fakebin"


@pytest.fixture
def env(tmp_path):
    """A clean environment: fake GPU, fake sglang, writable DATA_DIR, a free port."""
    return {
        "PATH": f"{FAKEBIN}:{Path(sys.executable).parent}:/usr/bin:/bin",
        "LAUNCHER_PYTHON": sys.executable,
        "DATA_DIR": str(tmp_path / "data"),
        "HOME": str(tmp_path / "home"),
        "PORT": str(free_port()),
        "FAKE_SGLANG_RECORD": str(tmp_path / "record.json"),
    }


def run(env, *args, timeout=60):
    return subprocess.run(["bash", str(ENTRYPOINT), *args], env=env, capture_output=True, text=True, timeout=timeout)


def recorded(env):
    return json.loads(Path(env["FAKE_SGLANG_RECORD"]).read_text())


def assert_clean_error(proc, code, message):
    assert proc.returncode == code, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_missing_model_path(env):
    """Container should exit 2 with the MODEL_PATH fix when MODEL_PATH is unset."""
    assert_clean_error(run(env), 2, "ERROR: MODEL_PATH is not set. Set it to the model folder")


def test_model_path_not_found(env, tmp_path):
    """Container should exit 3 and explain the volume mount when MODEL_PATH does not exist."""
    proc = run(env | {"MODEL_PATH": str(tmp_path / "missing")})
    assert_clean_error(proc, 3, "does not exist")


def test_no_gpu(env, tmp_path):
    """Container should exit 4 with the --gpus all fix when no GPU is visible."""
    env = env | {
        "MODEL_PATH": str(make(tmp_path / "m", "glm-image")),
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
    }
    assert_clean_error(run(env), 4, "ERROR: no GPU visible (nvidia-smi not found")


def test_incomplete_snapshot(env, tmp_path):
    """Container should exit 3 listing what is missing when the snapshot is incomplete."""
    path = make(tmp_path / "m", "wan2.2-ti2v-5b")
    (path / "vae" / "diffusion_pytorch_model.safetensors").unlink()
    assert_clean_error(run(env | {"MODEL_PATH": str(path)}), 3, "is incomplete:\n  - ")


def test_bad_setting(env, tmp_path):
    """Container should exit 2 naming the variable when a setting is invalid."""
    assert_clean_error(run(env | {"MODEL_PATH": "/m", "OFFLOAD": "yes"}), 2, "ERROR: OFFLOAD='yes' is not one of")


def test_bad_gateway_setting_refused_before_the_load(env, tmp_path):
    """A gateway setting that cannot work should stop the container up front, before SGLang starts."""
    proc = run(env | {"MODEL_PATH": str(make(tmp_path / "weights", "wan2.2-ti2v-5b")), "REPLICA_ID": "pod-0"})
    assert_clean_error(proc, 2, "REPLICA_ID and PEER_URL go together")
    assert not Path(env["FAKE_SGLANG_RECORD"]).exists()


def test_required_api_key_missing_refused_before_the_load(env, tmp_path):
    """REQUIRE_API_KEY=true (as deploy/ sets it) with an empty key file should stop the container up front."""
    key_file = tmp_path / "api-key"
    key_file.write_text("")
    env = env | {"MODEL_PATH": str(make(tmp_path / "m", "glm-image")), "REQUIRE_API_KEY": "true"}
    assert_clean_error(run(env | {"API_KEY_FILE": str(key_file)}), 2, "REQUIRE_API_KEY=true but no API_KEY is set")
    assert not Path(env["FAKE_SGLANG_RECORD"]).exists()


def test_served_model_name_reaches_the_gateway(env, tmp_path):
    """SERVED_MODEL_NAME should be what the gateway's /v1/models reports (older SGLang lacks the flag)."""
    env = env | {"MODEL_PATH": str(make(tmp_path / "m", "glm-image")), "SERVED_MODEL_NAME": "house-images"}
    proc = run(env, "check")
    assert proc.returncode == 0 and "--served-model-name house-images" in proc.stdout.split("gateway: ")[1]


def test_check_prints_command_without_starting(env, tmp_path):
    """`check` should validate, print the final command and start nothing."""
    proc = run(env | {"MODEL_PATH": str(make(tmp_path / "weights", "wan2.2-ti2v-5b"))}, "check")
    assert proc.returncode == 0, proc.stderr
    assert "command: sglang serve --model-type diffusion" in proc.stdout
    assert "--model-id Wan2.2-TI2V-5B-Diffusers" in proc.stdout
    assert "all checks passed (nothing started)" in proc.stdout
    assert not Path(env["FAKE_SGLANG_RECORD"]).exists()


def test_serve_passes_argv_and_cache_env(env, tmp_path):
    """serve should start sglang with the detected identity and kernel caches under DATA_DIR."""
    env = env | {"MODEL_PATH": str(make(tmp_path / "weights", "wan2.2-ti2v-5b")), "FAKE_SGLANG_MODE": "exit:0"}
    run(env)
    rec = recorded(env)
    argv = rec["argv"]
    assert argv[argv.index("--model-id") + 1] == "Wan2.2-TI2V-5B-Diffusers"
    assert rec["env"]["TRITON_CACHE_DIR"] == f"{env['DATA_DIR']}/cache/triton"


def test_serve_copies_the_images_prebuilt_kernels_into_the_cache(env, tmp_path):
    """The kernels the image built (KERNEL_SEED_DIR) should be in FlashInfer's cache under CACHE_DIR before SGLang
    starts, and the log should say so."""
    cache = Path(env["DATA_DIR"]) / "cache/flashinfer"
    seed = tmp_path / "seed"
    (seed / "flashinfer/rope").mkdir(parents=True)
    (seed / "flashinfer/rope/rope.so").write_text("built in the image")
    manifest = {"env": "FLASHINFER_WORKSPACE_BASE", "path": str(cache), "archs": ["9.0a"], "modules": ["rope"]}
    (seed / "manifest.json").write_text(json.dumps({"flashinfer": manifest}))
    env = env | {"MODEL_PATH": str(make(tmp_path / "weights", "wan2.2-ti2v-5b")), "FAKE_SGLANG_MODE": "exit:0",
                 "KERNEL_SEED_DIR": str(seed)}  # fmt: skip
    proc = run(env)
    assert f"prebuilt flashinfer rope (9.0a): 1 file copied into {cache}" in proc.stdout + proc.stderr
    assert (cache / "rope/rope.so").read_text() == "built in the image"
    assert recorded(env)["env"]["FLASHINFER_WORKSPACE_BASE"] == str(cache)


def test_sglang_behind_gateway_on_loopback(env, tmp_path):
    """With the gateway (default), SGLang should listen on a loopback port other than PORT."""
    env = env | {"MODEL_PATH": str(make(tmp_path / "m", "glm-image")), "FAKE_SGLANG_MODE": "exit:0"}
    run(env)
    argv = recorded(env)["argv"]
    assert argv[argv.index("--host") + 1] == "127.0.0.1"
    assert argv[argv.index("--port") + 1] != env["PORT"]


@pytest.mark.parametrize(
    ("extra", "sglang_warms_up"),
    [({}, False), ({"READY_PROBE": "health"}, True), ({"GATEWAY": "false"}, True)],
)
def test_one_warmup_only(env, tmp_path, extra, sglang_warms_up):
    """With the gateway's test generation (the default) SGLang should run no warm-up of its own and the
    gateway should get the start-up window; without that generation SGLang keeps its warm-up."""
    proc = run(env | {"MODEL_PATH": str(make(tmp_path / "m", "wan2.2-ti2v-5b")), **extra}, "check")
    assert proc.returncode == 0, proc.stderr
    assert ("--warmup-mode off" not in proc.stdout) == sglang_warms_up
    if "GATEWAY" not in extra:
        assert "--ready-timeout 1800" in proc.stdout


def test_gateway_off_sglang_on_public_port(env, tmp_path):
    """GATEWAY=false should put SGLang itself on HOST:PORT, with a warning."""
    env = env | {"MODEL_PATH": str(make(tmp_path / "m", "glm-image")), "FAKE_SGLANG_MODE": "exit:0", "GATEWAY": "false"}
    proc = run(env)
    argv = recorded(env)["argv"]
    assert (argv[argv.index("--host") + 1], argv[argv.index("--port") + 1]) == ("0.0.0.0", env["PORT"])
    assert "WARNING: GATEWAY=false: SGLang serves the port directly" in proc.stderr


def test_glm_alias_link_created(env, tmp_path):
    """A GLM-Image folder without 'glm-image' in its name should be served through an alias link to it."""
    model = make(tmp_path / "weights", "glm-image")
    env = env | {"MODEL_PATH": str(model), "FAKE_SGLANG_MODE": "exit:0"}
    run(env)
    alias = Path(recorded(env)["argv"][recorded(env)["argv"].index("--model-path") + 1])
    assert alias.name == "GLM-Image" and alias.resolve() == model.resolve()


def test_crash_exit_code_and_last_lines(env, tmp_path):
    """A server that dies during load should give its exit code and its last output lines."""
    env = env | {"MODEL_PATH": str(make(tmp_path / "GLM-Image", "glm-image")), "FAKE_SGLANG_MODE": "exit:7"}
    proc = run(env)
    assert proc.returncode == 7
    assert "ERROR: SGLang exited with code 7 before it was ready. Last lines of its output:" in proc.stderr
    assert "something went wrong in the worker" in proc.stderr


def test_clean_exit_before_ready_is_failure(env, tmp_path):
    """A server that exits 0 before it was ever ready should still fail the container (exit 5)."""
    env = env | {"MODEL_PATH": str(make(tmp_path / "GLM-Image", "glm-image")), "FAKE_SGLANG_MODE": "exit:0"}
    assert run(env).returncode == 5


def test_secret_file_and_never_printed(env, tmp_path):
    """HF_TOKEN_FILE should set HF_TOKEN for SGLang, and the token should never be printed."""
    (tmp_path / "token").write_text("hf_topsecret")
    env = env | {
        "MODEL_PATH": str(make(tmp_path / "GLM-Image", "glm-image")),
        "HF_TOKEN_FILE": str(tmp_path / "token"),
        "FAKE_SGLANG_MODE": "exit:0",
    }
    proc = run(env)
    assert recorded(env)["env"]["HF_TOKEN"] == "hf_topsecret"
    assert "HF_TOKEN_FILE" not in recorded(env)["env"]
    assert "hf_topsecret" not in proc.stdout + proc.stderr
    assert "HF_TOKEN=(set)" in proc.stdout


def test_secret_and_file_both_set(env, tmp_path):
    """Setting both API_KEY and API_KEY_FILE should be refused."""
    proc = run(env | {"API_KEY": "a", "API_KEY_FILE": str(tmp_path)})
    assert_clean_error(proc, 2, "ERROR: both API_KEY and API_KEY_FILE are set")


def test_other_command_runs_as_given(env):
    """A command other than serve/check/env should run as given (docker run IMAGE bash ...)."""
    proc = run(env, "sh", "-c", "echo hello-from-sh")
    assert proc.returncode == 0 and proc.stdout == "hello-from-sh\n"


def test_unwritable_home_replaced(env, tmp_path):
    """An arbitrary UID with HOME=/ should get a writable HOME under DATA_DIR."""
    proc = run(env | {"HOME": "/"}, "sh", "-c", 'echo "$HOME"')
    assert proc.stdout.strip() == f"{env['DATA_DIR']}/home"


def start(env):
    return subprocess.Popen(
        ["bash", str(ENTRYPOINT)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def wait_for(predicate, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


class Lines:
    """A child's output lines, read as they come (so a test can wait for one)."""

    def __init__(self, stream):
        self.lines: list[str] = []
        self.thread = threading.Thread(target=lambda: self.lines.extend(stream), daemon=True)
        self.thread.start()

    def has(self, text):
        return any(text in line for line in list(self.lines))

    @property
    def text(self):
        return "".join(self.lines)


def test_ready_reported_and_sigterm_reaches_server(env, tmp_path):
    """The launcher should log loading progress, readiness with the start-up phases, forward SIGTERM to
    SGLang and exit 0."""
    env = env | {
        "MODEL_PATH": str(make(tmp_path / "GLM-Image", "glm-image")),
        "FAKE_SGLANG_MODE": "serve",
        "FAKE_SGLANG_LOAD_S": "11",  # more than one progress interval (10 s)
        "READY_PROBE": "health",  # the fake answers /health only; the real test generation is in e2e tiers
    }
    proc = start(env)
    out = Lines(proc.stdout)
    signal_file = Path(env["FAKE_SGLANG_RECORD"] + ".signal")
    try:
        assert wait_for(lambda: out.has("[launcher] start-up phases:"), timeout=300), out.text[-3000:]
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        out.thread.join(timeout=10)
        err = proc.stderr.read()
    finally:
        proc.kill()
    assert "still loading... (1" in out.text and '/health 503 {"status":"loading"' in out.text
    assert "[launcher] ready: http://127.0.0.1:" in out.text
    assert "start-up phases: process start and imports " in out.text and "transformer " in out.text
    assert signal_file.read_text() == "SIGTERM"
    assert proc.returncode == 0, err


def test_sigkill_after_grace(env, tmp_path):
    """A server that ignores SIGTERM should be killed after GRACEFUL_SHUTDOWN_TIMEOUT + 10 s (exit 137)."""
    env = env | {
        "MODEL_PATH": str(make(tmp_path / "GLM-Image", "glm-image")),
        "FAKE_SGLANG_MODE": "ignore-term",
        "GRACEFUL_SHUTDOWN_TIMEOUT": "1",
    }
    proc = start(env)
    try:
        assert wait_for(lambda: Path(env["FAKE_SGLANG_RECORD"] + ".up").exists())
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        elapsed = time.monotonic() - t0
    finally:
        proc.kill()
    assert proc.returncode == 137
    assert "not stopped within 11 s of SIGTERM: killing" in err
    assert 10 <= elapsed < 20


def test_startup_timeout(env, tmp_path):
    """A server that never becomes ready should be stopped after STARTUP_TIMEOUT with exit 5."""
    env = env | {
        "MODEL_PATH": str(make(tmp_path / "GLM-Image", "glm-image")),
        "FAKE_SGLANG_MODE": "serve",
        "FAKE_SGLANG_LOAD_S": "600",
        "STARTUP_TIMEOUT": "2",
    }
    proc = start(env)
    try:
        _, err = proc.communicate(timeout=40)
    finally:
        proc.kill()
    assert proc.returncode == 5
    assert "not ready after 2 s (STARTUP_TIMEOUT; last state: " in err
    assert "Phases so far: " in err  # where the seconds went, even when it never got ready


def test_server_crash_while_serving_stops_container(env, tmp_path):
    """If SGLang dies while serving, the gateway should be stopped too and its exit code propagate."""
    env = env | {
        "MODEL_PATH": str(make(tmp_path / "GLM-Image", "glm-image")),
        "FAKE_SGLANG_MODE": "crash-after:4:9",
        "READY_PROBE": "health",
    }
    proc = run(env)
    assert proc.returncode == 9
    assert "[launcher] ready:" in proc.stdout
    assert "ERROR: SGLang exited with code 9 while serving" in proc.stderr


def test_broker_port_in_use(env, tmp_path):
    """Without the gateway, PORT + 1 (SGLang's request broker) taken should be refused up front."""
    with socket.socket() as blocker:
        blocker.bind(("0.0.0.0", int(env["PORT"]) + 1))
        blocker.listen()
        proc = run(env | {"MODEL_PATH": str(make(tmp_path / "m", "glm-image")), "GATEWAY": "false"})
    assert_clean_error(proc, 4, f"port {int(env['PORT']) + 1} on 0.0.0.0, needed by SGLang's request broker (PORT + 1)")


def test_children_stop_when_launcher_is_killed(env, tmp_path):
    """If the launcher is SIGKILLed, SGLang should get SIGTERM instead of living on as an orphan."""
    env = env | {"MODEL_PATH": str(make(tmp_path / "GLM-Image", "glm-image")), "FAKE_SGLANG_MODE": "serve",
                 "READY_PROBE": "health"}  # fmt: skip
    proc = start(env)
    try:
        assert wait_for(lambda: Path(env["FAKE_SGLANG_RECORD"] + ".up").exists())
        proc.kill()
        proc.wait(timeout=10)
        assert wait_for(lambda: Path(env["FAKE_SGLANG_RECORD"] + ".signal").exists(), timeout=10)
    finally:
        proc.kill()
    assert Path(env["FAKE_SGLANG_RECORD"] + ".signal").read_text() == "SIGTERM"


def test_glm_ar_srt_check_prints_both_commands(env, tmp_path):
    """GLM_AR=srt: `check` should print the AR server's command, the diffusion server pointed at its port,
    and the gateway told to refuse edits."""
    model = make(tmp_path / "GLM-Image", "glm-image")
    proc = run(env | {"MODEL_PATH": str(model), "GLM_AR": "srt"}, "check")
    assert proc.returncode == 0, proc.stderr
    ar = proc.stdout.split("AR server (started first; SGLang once it is ready): ")[1].splitlines()[0].split()
    assert ar[ar.index("--model-path") + 1] == str(model / "vision_language_encoder")
    command = proc.stdout.split("command: ")[1].splitlines()[0].split()
    assert command[command.index("--srt-encoder-url") + 1] == f"http://127.0.0.1:{ar[ar.index('--port') + 1]}"
    assert "--edits-off" in proc.stdout.split("gateway: ")[1]
    assert "GLM-Image AR stage: srt" in proc.stdout


def serve_until_ready_then_stop(env):
    """Start the launcher, wait for its ready line, SIGTERM it and wait for its exit: (process, its output)."""
    proc = start(env)
    out = Lines(proc.stdout)
    try:
        assert wait_for(lambda: out.has("[launcher] ready: "), timeout=300), out.text[-3000:]
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        out.thread.join(timeout=10)
    finally:
        proc.kill()
    return proc, out


def test_glm_ar_srt_serves_once_both_are_up(env, tmp_path):
    """GLM_AR=srt: SGLang should start only once the AR server answers /health, the container should
    become ready, and SIGTERM should stop both (exit 0)."""
    env = env | {
        "MODEL_PATH": str(make(tmp_path / "GLM-Image", "glm-image")),
        "GLM_AR": "srt",
        "FAKE_SGLANG_MODE": "serve",
        "FAKE_SGLANG_LOAD_S": "2",
        "READY_PROBE": "health",
    }
    proc, out = serve_until_ready_then_stop(env)
    text = out.text
    assert text.index("/health answered 200 after") < text.index("[launcher] ready: "), text[-3000:]
    assert "--srt-encoder-url" in recorded(env)["argv"]  # the diffusion server, started second, wrote last
    assert proc.returncode == 0 and "exit codes: {'AR server': 0, 'SGLang': 0" in text


def test_glm_ar_started_together_is_ready_once_both_answer(env, tmp_path):
    """GLM_AR_START=together: SGLang should start at once beside the AR server (no wait for its /health),
    the AR server should get its KV cache cap, and the container should turn ready only once the slower
    AR server answers too (the gateway asks both); SIGTERM stops both. The SGLang here loads the image's
    plugin, which together needs."""
    env = (
        env
        | sglang_dist(tmp_path / "site")
        | {
            "MODEL_PATH": str(make(tmp_path / "GLM-Image", "glm-image")),
            "GLM_AR": "srt",
            "GLM_AR_START": "together",
            "FAKE_SGLANG_MODE": "serve",
            "FAKE_SGLANG_AR_LOAD_S": "4",
            "READY_PROBE": "health",
        }
    )
    proc, out = serve_until_ready_then_stop(env)
    text = out.text
    ar = text.split("AR server (started together with SGLang): ")[1].splitlines()[0]
    assert "--mem-fraction-static 0.95" in ar and "--max-total-tokens 16384" in ar, text[-3000:]
    assert "answered 200 after" not in text.split("[launcher] ready: ")[0].split("gateway: ")[1]
    ready_after = int(text.split("[launcher] ready: ")[1].split(" answered 200 after ")[1].split(" s")[0])
    assert ready_after >= 4  # not before the AR server's load was over
    assert "--ar-health" in text.split("gateway: ")[1].splitlines()[0]
    assert proc.returncode == 0 and "exit codes: {'AR server': 0, 'SGLang': 0" in text


def test_glm_ar_auto_says_where_the_ar_stage_runs(env, tmp_path):
    """GLM_AR=auto (the default): `check` should say where the AR stage runs and why; here SGLang's flags
    cannot be read (a stand-in binary), so in-process, with no AR server and edits left on."""
    proc = run(env | {"MODEL_PATH": str(make(tmp_path / "GLM-Image", "glm-image"))}, "check")
    assert proc.returncode == 0, proc.stderr
    assert "GLM-Image AR stage: in-process (auto: SGLang's flags could not be read" in proc.stdout
    assert "AR server (started first" not in proc.stdout
    assert "--srt-encoder-url" not in proc.stdout.split("command: ")[1].splitlines()[0]
    assert "--edits-off" not in proc.stdout.split("gateway: ")[1]


def sglang_dist(root):
    """A stand-in SGLang distribution on PYTHONPATH, for what pre-flight reads from SGLang's source without
    importing it: the diffusion server's flags (with --srt-encoder-url) and plugin loading (as 0.5.23)."""
    flags = ("--srt-encoder-url", "--http-graceful-shutdown-timeout", "--enable-metrics", "--warmup-mode")
    files = {
        "sglang/multimodal_gen/runtime/server_args/server_args.py": " ".join(f'"{flag}"' for flag in flags),
        "sglang/multimodal_gen/runtime/platforms/plugins.py": 'GENERAL_PLUGINS_GROUP = "sglang.multimodal_gen.plugins"',
    }
    info = root / "sglang-0.5.99.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: sglang\nVersion: 0.5.99\n")
    (info / "RECORD").write_text("".join(f"{name},,\n" for name in files))
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return {"PYTHONPATH": str(root)}


def test_glm_ar_auto_picks_the_ar_server_where_sglang_allows(env, tmp_path):
    """GLM_AR=auto with a GPU and an SGLang that takes --srt-encoder-url and loads plugins: `check` should
    plan the AR server, started together with SGLang (GLM_AR_START=auto), with edits in-process (no
    --edits-off for the gateway)."""
    env = env | sglang_dist(tmp_path / "site") | {"MODEL_PATH": str(make(tmp_path / "GLM-Image", "glm-image"))}
    proc = run(env, "check")
    assert proc.returncode == 0, proc.stderr
    assert "GLM_AR: srt (auto" in proc.stdout and "AR server (started together with SGLang)" in proc.stdout
    assert "--srt-encoder-url" in proc.stdout.split("command: ")[1].splitlines()[0]
    assert "--edits-off" not in proc.stdout.split("gateway: ")[1]


@pytest.mark.parametrize("start", ["after-ready", "together"])
def test_glm_ar_auto_falls_back_when_the_ar_server_fails(env, tmp_path, start):
    """GLM_AR=auto: if the AR server it chose exits before it is ready (SGLang not yet started, or started
    beside it), the launcher should say so and serve with the AR stage in-process (ready, SGLang without
    --srt-encoder-url), not stop the container."""
    env = (
        env
        | sglang_dist(tmp_path / "site")
        | {
            "GLM_AR_START": start,
            "MODEL_PATH": str(make(tmp_path / "GLM-Image", "glm-image")),
            "FAKE_SGLANG_MODE": "serve",
            "FAKE_SGLANG_AR_MODE": "exit:1",
            "READY_PROBE": "health",
        }
    )
    proc, out = serve_until_ready_then_stop(env)
    assert "GLM_AR=auto: the AR server exited with code 1 before it was ready" in proc.stderr.read()
    assert "--srt-encoder-url" not in recorded(env)["argv"]
    assert proc.returncode == 0, out.text[-3000:]


def test_glm_ar_srt_stops_when_the_ar_server_fails(env, tmp_path):
    """GLM_AR=srt (asked for, not auto): an AR server that exits before it is ready should stop the container
    with its last lines, and SGLang should never start."""
    env = env | {
        "MODEL_PATH": str(make(tmp_path / "GLM-Image", "glm-image")),
        "GLM_AR": "srt",
        "FAKE_SGLANG_MODE": "serve",
        "FAKE_SGLANG_AR_MODE": "exit:1",
    }
    proc = run(env, "serve", timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert "AR server exited with code 1 before it was ready" in proc.stderr
    assert "something went wrong in the worker" in proc.stderr
    assert "--enable-multimodal" in recorded(env)["argv"]  # the diffusion server never started


def test_glm_ar_url_waits_for_that_server(env, tmp_path):
    """GLM_AR=<url>: `check` should name the server it will wait for, start no AR server of its own, and
    point the diffusion server at it."""
    model = make(tmp_path / "GLM-Image", "glm-image")
    proc = run(env | {"MODEL_PATH": str(model), "GLM_AR": "http://glm-ar:30000"}, "check")
    assert proc.returncode == 0, proc.stderr
    assert "AR server: http://glm-ar:30000 (runs elsewhere; SGLang starts once its /health answers 200)" in proc.stdout
    assert "--srt-encoder-url http://glm-ar:30000" in proc.stdout.split("command: ")[1]
    assert "--edits-off" in proc.stdout.split("gateway: ")[1]
