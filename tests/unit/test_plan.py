"""Planning: parallel layout and weight placement per model and machine."""

import pytest

from fakemodels import make
from glm_image_sglang import models
from glm_image_sglang.errors import ConfigError, ResourceError
from glm_image_sglang.plan import Gpu, Machine, estimate, make_plan
from glm_image_sglang.settings import Settings

pytestmark = pytest.mark.unit

H100 = 81559 * 1024 * 1024  # what nvidia-smi reports for an H100 80GB HBM3
H200 = 143771 * 1024 * 1024
L40S = 46068 * 1024 * 1024
GiB = 1024**3


def machine(n=1, mem=H100, host=None):
    return Machine(tuple(Gpu(i, "GPU", mem) for i in range(n)), "nvidia-smi", host)


def settings(**env):
    return Settings.from_env({"MODEL_PATH": "/m", **{k.upper(): str(v) for k, v in env.items()}})


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return {key: models.inspect(make(root / key, key)) for key in models.VARIANTS}


@pytest.mark.parametrize("key", ["wan2.2-t2v-a14b", "wan2.2-i2v-a14b"])
def test_a14b_on_h100_streams_the_dit(library, key):
    """A14B on one 80 GB GPU where SGLang loads no plugin should stream the DiT: with both experts resident
    the 720p VAE decode and the I2V encode ran out of GPU memory on an H100 (docs/benchmarks.md)."""
    plan = make_plan(settings(), library[key], machine())
    assert plan.offload == "dit-layerwise"
    assert plan.host_need_bytes > 64 * GiB  # and it says so: the 64Gi pod limit is too small for this


@pytest.mark.parametrize("key", ["wan2.2-t2v-a14b", "wan2.2-i2v-a14b"])
def test_a14b_on_h100_swaps_experts_with_the_plugin(library, key):
    """A14B on one 80 GB GPU with the image's plugin should keep one expert on the GPU (expert-swap: 720p
    served on an emulated 80 GB card, 65 GB host), inside a 64Gi pod's limit."""
    plan = make_plan(settings(), library[key], machine(), plugin=True)
    assert plan.offload == "expert-swap"
    assert plan.host_need_bytes < 64 * GiB
    assert any(note.startswith("offload: expert-swap (auto") for note in plan.notes)


def test_expert_swap_host_memory_per_rank(library):
    """Each rank parks its own expert and text encoder: four H100s need four times the parked bytes."""
    model = library["wan2.2-t2v-a14b"]
    one = make_plan(settings(), model, machine(n=1), plugin=True)
    four = make_plan(settings(), model, machine(n=4), plugin=True)
    assert four.offload == "expert-swap"
    assert four.host_need_bytes - 8 * GiB == 4 * (one.host_need_bytes - 8 * GiB)
    assert four.gpu_need_bytes == one.gpu_need_bytes


def test_expert_swap_skipped_past_the_host_limit(library):
    """auto should not pick expert-swap when its parked copies exceed the known host memory limit (four
    ranks in a 144Gi pod): the layerwise stream, as before."""
    plan = make_plan(settings(), library["wan2.2-t2v-a14b"], machine(n=4, host=144 * GiB), plugin=True)
    assert plan.offload == "dit-layerwise"


def test_a14b_on_h200_fully_resident(library):
    """A14B on a 141 GB GPU should keep everything on the GPU."""
    assert make_plan(settings(), library["wan2.2-t2v-a14b"], machine(mem=H200)).offload == "none"


def test_shared_gpu_planned_for_its_free_memory(library):
    """An H200 with only an H100's worth free (another process holds the rest) should get the H100's plan,
    and the plan should say why."""
    shared = Machine((Gpu(0, "H200", H200, free_bytes=H100),), "nvidia-smi", None)
    plan = make_plan(settings(), library["wan2.2-t2v-a14b"], shared)
    assert plan.offload == make_plan(settings(), library["wan2.2-t2v-a14b"], machine()).offload
    assert any("free of" in note and "another process" in note for note in plan.notes)


def test_driver_reservation_is_not_a_shared_gpu(library):
    """The few hundred MiB the driver keeps should not change the plan or add a note."""
    idle = Machine((Gpu(0, "H200", H200, free_bytes=H200 - 600 * 1024**2),), "nvidia-smi", None)
    plan = make_plan(settings(), library["wan2.2-t2v-a14b"], idle)
    assert plan.offload == "none" and not any("free of" in note for note in plan.notes)


def test_a14b_on_48gb_offloads_dit_layerwise(library):
    """A14B on a 48 GB GPU should stream the DiT layer by layer."""
    assert make_plan(settings(), library["wan2.2-i2v-a14b"], machine(mem=L40S)).offload == "dit-layerwise"


@pytest.mark.parametrize("key", ["wan2.2-ti2v-5b", "glm-image"])
def test_smaller_models_resident_on_h100(library, key):
    """TI2V-5B and GLM-Image should fit an 80 GB GPU without offload."""
    assert make_plan(settings(), library[key], machine()).offload == "none"


def test_too_small_gpu_is_refused(library):
    """A GPU too small even for layerwise offload should be refused with the sizes."""
    with pytest.raises(ResourceError, match=r"needs about .* GiB per GPU .* the GPU has 8.0 GiB"):
        make_plan(settings(), library["wan2.2-t2v-a14b"], machine(mem=8 * GiB))


def test_explicit_offload_is_kept(library):
    """OFFLOAD set by the user should be used as given."""
    assert make_plan(settings(offload="dit"), library["glm-image"], machine()).offload == "dit"


@pytest.mark.parametrize(
    ("n", "layout"),
    [(1, (False, 1, 1)), (2, (True, 1, 1)), (4, (True, 2, 1)), (8, (True, 4, 1)), (3, (False, 1, 3))],
)
def test_auto_parallel_layout(library, n, layout):
    """Auto layout: CFG-parallel on an even count, Ulysses dividing the 40 heads, Ring for the rest."""
    plan = make_plan(settings(), library["wan2.2-t2v-a14b"], machine(n))
    assert (plan.cfg_parallel, plan.ulysses, plan.ring) == layout
    assert plan.num_gpus == n


def test_num_gpus_limits_layout(library):
    """NUM_GPUS should use fewer GPUs than visible."""
    plan = make_plan(settings(num_gpus=2), library["wan2.2-ti2v-5b"], machine(4))
    assert (plan.num_gpus, plan.cfg_parallel, plan.ulysses) == (2, True, 1)


def test_more_gpus_than_visible_refused(library):
    """NUM_GPUS above the visible count should be refused."""
    with pytest.raises(ResourceError, match=r"NUM_GPUS=4 but only 2 GPU\(s\) are visible"):
        make_plan(settings(num_gpus=4), library["glm-image"], machine(2))


def test_cfg_on_needs_even_gpus(library):
    """CFG_PARALLEL=on with an odd GPU count should be a config error."""
    with pytest.raises(ConfigError, match="needs an even number of GPUs"):
        make_plan(settings(cfg_parallel="on"), library["glm-image"], machine(3))


def test_ulysses_must_divide_heads(library):
    """A Ulysses degree that does not divide the heads (TI2V-5B: 24) should be refused."""
    with pytest.raises(ConfigError, match="does not divide the model's 24 attention heads"):
        make_plan(settings(cfg_parallel="off", ulysses_degree=5), library["wan2.2-ti2v-5b"], machine(5))


def test_layout_must_use_all_gpus(library):
    """A layout whose product differs from the GPU count should be refused with the arithmetic."""
    with pytest.raises(ConfigError, match=r"CFG 2 x ULYSSES_DEGREE 1 x RING_DEGREE 1 = 2"):
        make_plan(settings(ulysses_degree=1, ring_degree=1), library["glm-image"], machine(4))


def test_no_gpu_refused_with_fix(library):
    """No visible GPU should be refused with the docker and Kubernetes fixes."""
    with pytest.raises(ResourceError, match=r"no GPU visible \(why\).*--gpus all.*nvidia.com/gpu"):
        make_plan(settings(), library["glm-image"], Machine((), "why", None))


def test_cpu_allowed_when_not_required(library):
    """REQUIRE_GPU=false should plan SGLang's CPU platform."""
    plan = make_plan(settings(require_gpu="false"), library["glm-image"], Machine((), "none", None))
    assert (plan.num_gpus, plan.offload) == (0, "none")


def test_offload_estimates_ordered(library):
    """More offload should mean less GPU memory and more host memory."""
    model = library["wan2.2-t2v-a14b"]
    modes = ["none", "text-encoder", "expert-swap", "dit-layerwise"]
    gpu = [estimate(model, m)[0] for m in modes]
    host = [estimate(model, m)[1] for m in modes]
    assert gpu == sorted(gpu, reverse=True) and host == sorted(host)
    assert 85 * GiB < host[3] < 130 * GiB  # stock layerwise offload measured 93.7 GB RSS


def test_glm_ar_srt_gets_a_share_of_the_gpu(library):
    """GLM_AR=srt: the AR server's static share should hold the AR weights plus the allowance, rounded up
    to 0.01 of the GPU, and replace those weights in the GPU estimate."""
    model = library["glm-image"]
    in_process = make_plan(settings(), model, machine(mem=H200))
    srt = make_plan(settings(glm_ar="srt"), model, machine(mem=H200))
    weights = next(c for c in model.components if c.name == "vision_language_encoder").params * 2
    assert in_process.ar_mem_fraction is None
    assert srt.ar_mem_fraction == pytest.approx((weights + 6 * GiB) / H200, abs=0.01)
    assert srt.ar_mem_fraction >= (weights + 6 * GiB) / H200
    share = int(srt.ar_mem_fraction * H200)
    assert srt.gpu_need_bytes == in_process.gpu_need_bytes - weights + share
    assert any("--mem-fraction-static" in note for note in srt.notes)


@pytest.mark.parametrize("mem", [H200, H100])
def test_glm_ar_started_together_plans_the_same_memory(library, mem):
    """GLM_AR_START=together: both servers start at once, the AR server with a 0.95 share and its KV cache
    capped at 16384 tokens; the plan's estimate is the same as starting one after the other, and says so."""
    model = library["glm-image"]
    after = make_plan(settings(glm_ar="srt", glm_ar_start="after-ready"), model, machine(mem=mem), plugin=True)
    together = make_plan(settings(glm_ar="srt", glm_ar_start="together"), model, machine(mem=mem), plugin=True)
    assert (after.ar_together, after.ar_max_tokens) == (False, None)
    assert (together.ar_together, together.ar_mem_fraction, together.ar_max_tokens) == (True, 0.95, 16384)
    assert together.gpu_need_bytes == after.gpu_need_bytes
    assert any("started together with the diffusion server" in n and "16384 tokens" in n for n in together.notes)


def test_glm_ar_start_together_needs_the_plugin(library):
    """GLM_AR_START=together where SGLang loads no plugin: SGLang would check the AR server's /health while
    loading and fall back to loading the AR model itself, so the AR server should start first, with a note
    saying why."""
    plan = make_plan(settings(glm_ar="srt", glm_ar_start="together"), library["glm-image"], machine(), plugin=False)
    assert not plan.ar_together and plan.ar_max_tokens is None
    assert any("GLM_AR_START=together: the AR server starts first all the same" in n for n in plan.notes)


@pytest.mark.parametrize(("plugin", "together"), [(True, True), (False, False)])
def test_glm_ar_start_auto_starts_together_where_the_plugin_loads(library, plugin, together):
    """GLM_AR_START=auto (the default): both servers at once where SGLang loads the image's plugin, one
    after the other where it does not, with no note about a setting nobody asked for."""
    plan = make_plan(settings(glm_ar="srt"), library["glm-image"], machine(), plugin=plugin)
    assert plan.ar_together is together
    assert not any("GLM_AR_START" in n for n in plan.notes)


def test_glm_ar_start_together_leaves_a_running_server_alone(library):
    """GLM_AR_START=together with GLM_AR=<url>: that server is not started here, so nothing starts together."""
    plan = make_plan(settings(glm_ar="http://ar:30000", glm_ar_start="together"), library["glm-image"], machine())
    assert not plan.ar_together and plan.ar_max_tokens is None


@pytest.mark.parametrize("key", ["wan2.2-ti2v-5b", "wan2.2-t2v-a14b"])
def test_glm_ar_srt_refused_for_wan(library, key):
    """GLM_AR=srt on a model without an AR stage should say it applies to GLM-Image only."""
    with pytest.raises(ConfigError, match="GLM_AR=srt applies to GLM-Image only"):
        make_plan(settings(glm_ar="srt"), library[key], machine())


def test_glm_ar_srt_without_gpu_on_the_cpu(library):
    """GLM_AR=srt without a GPU (the CPU tier): no GPU share, and the plan says the AR server runs on the CPU."""
    plan = make_plan(settings(glm_ar="srt", require_gpu="false"), library["glm-image"], Machine((), "none", None))
    assert plan.ar_mem_fraction is None and any("srt on the CPU" in note for note in plan.notes)


def test_glm_ar_url_uses_a_server_that_runs_already(library):
    """GLM_AR=<url>: no AR server of ours, the AR weights out of the GPU estimate, also without a GPU (the
    CPU tier's stand-in)."""
    model = library["glm-image"]
    weights = next(c for c in model.components if c.name == "vision_language_encoder").params * 2
    on_gpu = make_plan(settings(glm_ar="http://ar:30000"), model, machine(mem=H200))
    assert on_gpu.ar_mem_fraction is None
    assert on_gpu.gpu_need_bytes == make_plan(settings(), model, machine(mem=H200)).gpu_need_bytes - weights
    cpu = make_plan(settings(glm_ar="http://ar:30000", require_gpu="false"), model, Machine((), "none", None))
    assert any("the server at http://ar:30000 (not started here)" in note for note in cpu.notes)


def test_local_edits_keep_the_ar_model_in_the_estimate(library):
    """With an AR server and edits in-process (the plugin), the diffusion server holds the AR model too:
    its weights count again, and the plan says where edits run."""
    model = library["glm-image"]
    weights = next(c for c in model.components if c.name == "vision_language_encoder").params * 2
    without = make_plan(settings(glm_ar="srt"), model, machine(mem=H200))
    local = make_plan(settings(glm_ar="srt"), model, machine(mem=H200), plugin=True)
    assert local.gpu_need_bytes == without.gpu_need_bytes + weights
    assert any(n.startswith("edits: in-process") for n in local.notes)
    assert any(n.startswith("edits: off") for n in without.notes)


@pytest.mark.parametrize("mem", [H200, H100])
def test_glm_ar_auto_runs_an_ar_server_where_both_fit(library, mem):
    """GLM_AR=auto on an 80 or 141 GB GPU, where this SGLang serves edits beside an AR server: srt, edits
    in-process, and the estimate holds the AR model twice plus the server's share."""
    model = library["glm-image"]
    plan = make_plan(settings(glm_ar_start="after-ready"), model, machine(mem=mem), plugin=True)  # its own share
    assert (plan.glm_ar, plan.edits_in_process) == ("srt", True)
    share = int(plan.ar_mem_fraction * mem)
    in_process = make_plan(settings(glm_ar="in-process"), model, machine(mem=mem), plugin=True)
    assert plan.gpu_need_bytes == in_process.gpu_need_bytes + share <= mem
    assert plan.host_need_bytes > in_process.host_need_bytes  # the AR server's own processes
    assert any(n.startswith("GLM_AR: srt (auto") for n in plan.notes)


@pytest.mark.parametrize(
    ("gpus", "plugin", "srt_encoder", "why"),
    [
        ((), True, True, "no GPU"),
        ((Gpu(0, "GPU", H200),), False, True, "could not serve edits"),
        ((Gpu(0, "GPU", H200),), True, False, "this SGLang has no --srt-encoder-url"),
        ((Gpu(0, "GPU", H200),), True, None, "flags could not be read"),
        ((Gpu(0, "GPU", L40S),), True, True, "an AR server would need"),
    ],
)
def test_glm_ar_auto_stays_in_process_and_says_why(library, gpus, plugin, srt_encoder, why):
    """GLM_AR=auto keeps the AR stage in-process without a GPU, where edits would be lost, where this SGLang
    cannot use an AR server, or where both processes do not fit; a note says which."""
    s = settings(require_gpu="false") if not gpus else settings()
    plan = make_plan(s, library["glm-image"], Machine(gpus, "nvidia-smi", None), plugin, srt_encoder)
    assert (plan.glm_ar, plan.ar_mem_fraction, plan.edits_in_process) == ("in-process", None, False)
    assert any(n.startswith("GLM-Image AR stage: in-process (auto: ") and why in n for n in plan.notes)


def test_glm_ar_auto_is_silent_for_wan(library):
    """GLM_AR=auto on a Wan model: in-process (nothing to run), no AR note and no error."""
    plan = make_plan(settings(), library["wan2.2-ti2v-5b"], machine(mem=H200), plugin=True)
    assert plan.glm_ar == "in-process"
    assert not any(n.startswith(("GLM-Image AR", "GLM_AR")) for n in plan.notes), plan.notes


@pytest.mark.parametrize("key", ["wan2.2-t2v-a14b", "wan2.2-i2v-a14b"])
def test_expert_swap_holds_one_expert_on_each_side(library, key):
    """OFFLOAD=expert-swap: the GPU holds both experts and the text encoder (bf16) for the first prompt (I2V:
    then its image encode, 72.7 GiB measured), and one expert fewer (plus the activations) when serving,
    whichever is more; host RAM holds one expert and the text encoder in bf16 (half of SGLang's fp32 default)
    beside the base, inside a 64Gi pod."""
    model = library[key]
    plan = make_plan(settings(offload="expert-swap"), model, machine(mem=H100), plugin=True)
    resident, _ = estimate(model, "none")
    expert = max(c.params for c in model.components if c.name.startswith("transformer")) * 2
    encoder = next(c.params for c in model.components if c.name == "text_encoder") * 2
    weights = resident - 28 * GiB - encoder  # none's estimate has the headroom and the fp32 text encoder
    assert plan.offload == "expert-swap"
    first = weights - encoder + max(encoder, 19 * GiB if key == "wan2.2-i2v-a14b" else 0)
    assert plan.gpu_need_bytes == max(first, weights - encoder - expert + 28 * GiB)
    assert plan.gpu_need_bytes <= H100
    assert plan.host_need_bytes == 8 * GiB + expert + encoder < 64 * GiB
    assert any(n.startswith("expert-swap: the text encoder runs in bf16") for n in plan.notes)


@pytest.mark.parametrize(
    ("key", "plugin", "message"),
    [
        ("wan2.2-ti2v-5b", True, r"applies to Wan2.2-A14B \(two DiT experts\)"),
        ("glm-image", True, r"applies to Wan2.2-A14B \(two DiT experts\)"),
        ("wan2.2-t2v-a14b", False, "needs the image's SGLang plugin"),
    ],
)
def test_expert_swap_refused_where_it_cannot_run(library, key, plugin, message):
    """OFFLOAD=expert-swap on a one-DiT model, or where SGLang loads no plugin, should stop with the reason."""
    with pytest.raises(ConfigError, match=message):
        make_plan(settings(offload="expert-swap"), library[key], machine(mem=H100), plugin=plugin)


def test_expert_swap_kept_without_gpu(library):
    """Without a GPU (the CPU tier) OFFLOAD=expert-swap is kept (the swap runs there too), other modes are not."""
    cpu = Machine((), "none", None)
    model = library["wan2.2-t2v-a14b"]
    assert make_plan(settings(offload="expert-swap", require_gpu="false"), model, cpu, plugin=True).offload == (
        "expert-swap"
    )
    assert make_plan(settings(offload="dit", require_gpu="false"), model, cpu, plugin=True).offload == "none"


@pytest.mark.parametrize("key", ["wan2.2-t2v-a14b", "wan2.2-i2v-a14b", "wan2.2-ti2v-5b"])
def test_fast_preset_for_wan_says_what_it_skips(library, key):
    """PRESET=fast on a Wan 2.2 model: the plan carries it (on a GPU and on the CPU) with a note that the
    outputs change, naming per-expert masks for the two-expert models."""
    for mach in (machine(mem=H200), Machine((), "none", None)):
        plan = make_plan(settings(preset="fast", require_gpu="false"), library[key], mach)
        assert plan.preset == "fast"
        note = next(n for n in plan.notes if n.startswith("preset: fast"))
        assert "Outputs differ from PRESET=default" in note
        assert ("each expert's" in note) == key.endswith("a14b")


def test_fast_preset_is_a_note_for_glm_image(library):
    """PRESET=fast on GLM-Image: the default path, with a note that points at what its time is."""
    plan = make_plan(settings(preset="fast"), library["glm-image"], machine(mem=H200), plugin=True)
    assert plan.preset == "default"
    assert any(
        n.startswith("preset: default (PRESET=fast is for the Wan 2.2 models") and "GLM_AR" in n for n in plan.notes
    )


@pytest.mark.parametrize(
    ("plugin", "says"), [(True, "the VAE decodes eagerly"), (False, "compiles the VAE decode too")]
)
def test_compile_dit_says_what_it_compiles(library, plugin, says):
    """COMPILE=dit on a GPU: the plan carries it with a note that outputs change and, without the plugin,
    that SGLang compiles the VAE decode as well (the 80-115 s per new size it was meant to avoid)."""
    plan = make_plan(settings(compile="dit"), library["wan2.2-ti2v-5b"], machine(mem=H200), plugin=plugin)
    assert plan.compile_dit
    note = next(n for n in plan.notes if n.startswith("compile: the DiT"))
    assert says in note and "outputs differ slightly" in note


def test_compile_is_off_without_a_gpu(library):
    """COMPILE=dit on SGLang's CPU platform: nothing is compiled, and a note says why."""
    cpu = Machine((), "none", None)
    plan = make_plan(settings(compile="dit", require_gpu="false"), library["wan2.2-ti2v-5b"], cpu, plugin=True)
    assert not plan.compile_dit and any(n.startswith("compile: off") for n in plan.notes)


def test_default_preset_is_silent(library):
    """Without PRESET the plan runs the default path and adds no preset note."""
    plan = make_plan(settings(), library["wan2.2-t2v-a14b"], machine(mem=H200))
    assert plan.preset == "default" and not any(n.startswith("preset") for n in plan.notes)


@pytest.mark.parametrize(("plugin", "preload", "says"), [(True, True, "forked from a fork server"),
                                                         (False, False, "spawned (WORKER_START=preload needs")])  # fmt: skip
@pytest.mark.parametrize("gpu", [True, False])
def test_worker_preload_needs_the_plugin_and_says_so(library, plugin, preload, says, gpu):
    """WORKER_START=preload, on a GPU or SGLang's CPU platform: the plan carries it where SGLang loads the image's
    plugin (which does it), else spawned workers with a note naming why."""
    env = settings(worker_start="preload") if gpu else settings(worker_start="preload", require_gpu="false")
    box = machine(mem=H200) if gpu else Machine((), "none", None)
    plan = make_plan(env, library["wan2.2-ti2v-5b"], box, plugin=plugin)
    assert plan.worker_preload is preload
    assert any(n.startswith("worker start: ") and says in n for n in plan.notes), plan.notes


def test_workers_are_forked_by_default(library):
    plan = make_plan(settings(), library["wan2.2-ti2v-5b"], machine(mem=H200), plugin=True)
    assert plan.worker_preload


@pytest.mark.parametrize(("glm_ar", "ar_too"), [("srt", True), ("in-process", False)])
def test_the_worker_start_note_names_the_ar_server_when_there_is_one(library, glm_ar, ar_too):
    plan = make_plan(settings(glm_ar=glm_ar), library["glm-image"], machine(mem=H200), plugin=True)
    note = next(n for n in plan.notes if n.startswith("worker start: forked"))
    assert ("the AR server's scheduler and detokenizer too" in note) is ar_too, note


def test_spawned_workers_on_request_are_silent(library):
    """WORKER_START=spawn is SGLang's own way: no fork server, no note."""
    plan = make_plan(settings(worker_start="spawn"), library["wan2.2-ti2v-5b"], machine(mem=H200), plugin=True)
    assert not plan.worker_preload and not any(n.startswith("worker start") for n in plan.notes)
