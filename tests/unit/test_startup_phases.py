"""The start-up phase breakdown, from output lines as SGLang (0.5.16/0.5.23) and the gateway print them."""

import pytest

from glm_image_sglang.startup_phases import StartupPhases

pytestmark = pytest.mark.unit

LINES = [
    (20.0, '[11-29 10:00:20] server_args: {"model_path": "/m", ...}'),
    (20.1, "[11-29 10:00:20] Starting server..."),
    (28.0, "[11-29 10:00:28] Loading required components: ['text_encoder', 'tokenizer', 'vae', 'transformer']"),
    (28.5, "[11-29 10:00:28] Loading text_encoder from /m/text_encoder. avail mem: 139.10 GB"),
    (40.5, "[11-29 10:00:40] Loaded text_encoder: UMT5EncoderModel (sgl-diffusion version). model size: 10.6 GB"),
    (40.6, "[11-29 10:00:40] Loading vae from /m/vae. avail mem: 128.20 GB"),
    (41.6, "[11-29 10:00:41] Loaded vae: AutoencoderKLWan (sgl-diffusion version). model size: 1.3 GB"),
    (41.7, "[11-29 10:00:41] Loading transformer from /m/transformer. avail mem: 126.90 GB"),
    (41.7, "[11-29 10:00:41] Loading WanTransformer3DModel from 3 safetensors file(s) , param_dtype: torch.bfloat16"),
    (61.7, "[11-29 10:01:01] Loaded transformer: WanTransformer3DModel (sgl-diffusion version). model size: 9.3 GB"),
    (70.0, "[gateway] the model server answered /health 200; running a test generation"),
]


def phases_of(lines):
    phases = StartupPhases(clock=0.0)
    for t, line in lines:
        phases.observe(line, now=t)
    return phases


def test_each_phase_in_order():
    """The summary should give imports, each component's load, SGLang's own start and the test generation."""
    text = phases_of(LINES).summary(until=110.0)
    assert text == (
        "SGLang imports 20.1 s; worker start (imports again) 7.9 s; "
        "weights 33.7 s (text_encoder 12.0 s, vae 1.0 s, transformer 20.0 s); "
        "SGLang start after the load 8.3 s; readiness generation 40.0 s (the first after a start compiles kernels)"
    )


def test_without_the_gateway_line():
    """Without the gateway (or before it saw SGLang up) the generation phase should be left out, not guessed."""
    text = phases_of(LINES[:-1]).summary(until=70.0)
    assert "readiness generation" not in text and text.startswith("SGLang imports 20.1 s")


def test_without_the_server_start_line():
    """An SGLang that does not print `Starting server...` should get imports and worker start as one phase."""
    text = phases_of(LINES[2:]).summary(until=110.0)
    assert text.startswith("process start and imports 28.0 s; weights 33.7 s")


def test_unrecognised_output_says_so():
    """An SGLang whose log lines changed should give a plain statement, not wrong numbers."""
    assert phases_of([(5.0, "hello")]).summary(until=9.0) == "no phase lines recognised in SGLang's output"


def test_kernel_compiles_are_summed_longest_first():
    """The plugin's compile lines (from any worker, at any phase) should be summed, the longest named first."""
    compiled = [(75.0, f"[worker] glm-image-sglang plugin: compiled CUDA kernel {name} ({source}) in {s} s")
                for name, source, s in (("k1", "SGLang", "2.5"), ("rope", "flashinfer", "38.2"),
                                        ("conv", "tvm-ffi", "5.0"), ("k4", "SGLang", "3.1"))]  # fmt: skip
    text = phases_of(LINES + compiled).summary(until=110.0)
    assert text.endswith("; CUDA kernel compiles 48.8 s summed (rope 38.2 s, conv 5.0 s, k4 3.1 s and 1 more)")


def test_announcements_and_failures_are_not_counted_as_compiles():
    """Only a finished compile has a time to add: the announcement and a failure line should not count."""
    lines = [(75.0, "glm-image-sglang plugin: compiling CUDA kernel rope (flashinfer): its first use with this "
                    "CACHE_DIR; kept there for the next start"),
             (80.0, "glm-image-sglang plugin: compiling CUDA kernel rope (flashinfer) failed after 5.0 s")]  # fmt: skip
    assert "CUDA kernel compiles" not in phases_of(LINES + lines).summary(until=110.0)


def test_a_late_start_counts_its_wait_apart():
    """SGLang started once the AR server answered (GLM_AR_START=after-ready): the wait is its own phase and
    the imports count from SGLang's start, not from the launcher's."""
    phases = StartupPhases(clock=0.0)
    phases.started_after("http://127.0.0.1:32000/health", now=50.0)
    for t, line in LINES:
        phases.observe(line, now=t + 50.0)
    text = phases.summary(until=160.0)
    assert text.startswith("waiting for http://127.0.0.1:32000/health 50.0 s; SGLang imports 20.1 s; worker start")
