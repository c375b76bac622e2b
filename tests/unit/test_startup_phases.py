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


AR_LINES = [
    (31.6, "[2026-12-02 07:58:31] server_args=ServerArgs(model_path='/m/vision_language_encoder', ...)"),
    (53.8, "[2026-12-02 07:58:53] Init parallel begin."),
    (54.9, "[2026-12-02 07:58:54] Load weight begin. avail mem=138.10 GB"),
    (58.7, "[2026-12-02 07:58:58] Load weight end. elapsed=3.80 s, type=GlmImageForConditionalGeneration"),
    (60.1, "[2026-12-02 07:59:00] Capture decode cuda graph begin. backend=fa3, num_tokens_per_req=1, avail mem=20 GB"),
    (66.5, "[2026-12-02 07:59:06] Capture decode cuda graph end. bs=[1, 2, 4, 8, 12, 16], elapsed=6.40 s"),
    (70.6, "[2026-12-02 07:59:10] The server is fired up and ready to roll!"),
]


def test_the_ar_servers_phases_come_from_its_own_lines():
    """GLM-Image's AR server: its main's imports, its scheduler's start, weights, CUDA graphs and when it was up."""
    phases = phases_of(LINES)
    for t, line in AR_LINES:
        phases.observe_ar(line, now=t)
    assert phases.summary(until=110.0).endswith(
        "; AR server: imports 31.6 s, scheduler start (imports again) 22.2 s, weights 3.8 s, CUDA graphs 6.4 s, "
        "up at 70.6 s"
    )


def test_the_ar_servers_lines_are_not_the_diffusion_servers():
    """A line of the AR server's that looks like one of the diffusion server's does not count for it."""
    phases = StartupPhases(clock=0.0)
    phases.observe_ar("[11-29 10:00:20] Starting server...", now=5.0)
    phases.observe_ar("[11-29 10:00:28] Loading tokenizer from /m/processor.", now=6.0)
    assert phases.summary(until=10.0) == "no phase lines recognised in SGLang's output"


def test_an_ar_server_still_starting_shows_how_far_it_got():
    """Given up before the AR server was up (STARTUP_TIMEOUT): its phases so far, a weight load not yet done left
    out."""
    phases = StartupPhases(clock=0.0)
    for t, line in AR_LINES[:3]:
        phases.observe_ar(line, now=t)
    assert phases.summary(until=60.0) == "AR server: imports 31.6 s, scheduler start (imports again) 22.2 s"


def test_several_cuda_graph_captures_count_from_the_first_begin_to_the_last_end():
    """Prefill and decode graphs captured one after the other: one CUDA graph phase over both."""
    phases = StartupPhases(clock=0.0)
    phases.observe_ar("Capture prefill CUDA graph begin. backend=fa3, num_tokens=[4096], avail mem=20 GB", now=10.0)
    phases.observe_ar("Capture prefill CUDA graph end. elapsed=2.00 s, mem usage=1 GB, avail mem=19 GB.", now=12.0)
    phases.observe_ar("Capture decode cuda graph begin. backend=fa3, num_tokens_per_req=1, avail mem=19 GB", now=12.5)
    phases.observe_ar("Capture decode cuda graph end. bs=[1, 2], elapsed=3.00 s, mem usage=1 GB.", now=15.5)
    assert phases.ar_summary() == "AR server: CUDA graphs 5.5 s"
