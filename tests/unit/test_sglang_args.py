"""The sglang serve argv for each model."""

from pathlib import Path

import pytest

from fakemodels import make
from glm_image_sglang import models, sglang_args
from glm_image_sglang.plan import Gpu, Machine, Plan, make_plan
from glm_image_sglang.settings import MAX_STEPS_LIMIT, Settings

pytestmark = pytest.mark.unit


def plan(n=1, offload="none", cfg=False, ulysses=1, ring=1):
    return Plan(n, cfg, ulysses, ring, offload, 0, 0)


def argv(model, env=None, p=None, supported=None):
    s = Settings.from_env({"MODEL_PATH": str(model.path), "DATA_DIR": "/data", **(env or {})})
    return sglang_args.build(s, model, p or plan(), 5555, 30005, supported)


def flag(args, name):
    return args[args.index(name) + 1]


@pytest.fixture
def t2v(tmp_path):
    return models.inspect(make(tmp_path / "weights", "wan2.2-t2v-a14b"))


def test_wan_gets_model_id(t2v):
    """A Wan2.2 folder with any name should get SGLang's --model-id, not Wan 2.1 defaults."""
    assert flag(argv(t2v).argv, "--model-id") == "Wan2.2-T2V-A14B-Diffusers"


def test_container_flags(t2v):
    """SGLang should listen on all interfaces, on the strict port, with absolute writable dirs."""
    a = argv(t2v).argv
    assert a[:4] == ["sglang", "serve", "--model-type", "diffusion"]
    assert (flag(a, "--host"), flag(a, "--port"), flag(a, "--strict-ports")) == ("0.0.0.0", "30000", "true")
    assert (flag(a, "--output-path"), flag(a, "--input-save-path")) == ("/data/outputs", "/data/uploads")
    assert (flag(a, "--scheduler-port"), flag(a, "--master-port")) == ("5555", "30005")


def test_glm_image_folder_without_name_gets_alias(tmp_path):
    """GLM-Image in a folder without 'glm-image' in its path should be passed via the GLM-Image alias."""
    model = models.inspect(make(tmp_path / "weights", "glm-image"))
    a = argv(model).argv
    assert flag(a, "--model-path") == "/data/cache/model-alias/GLM-Image"
    assert "--model-id" not in a


def test_glm_image_named_folder_used_directly(tmp_path):
    """GLM-Image in a folder named GLM-Image should be passed as it is."""
    model = models.inspect(make(tmp_path / "GLM-Image", "glm-image"))
    assert flag(argv(model).argv, "--model-path") == str(tmp_path / "GLM-Image")


@pytest.mark.parametrize(
    ("offload", "on"),
    [
        ("none", set()),
        ("text-encoder", {"--text-encoder-cpu-offload"}),
        ("expert-swap", {"--text-encoder-cpu-offload"}),  # the experts are the plugin's (GLM_IMAGE_EXPERT_SWAP)
        ("dit-layerwise", {"--text-encoder-cpu-offload", "--dit-layerwise-offload"}),
    ],
)
def test_every_offload_switch_explicit(t2v, offload, on):
    """Every offload switch should be passed explicitly so SGLang's own auto-offload never applies."""
    a = argv(t2v, p=plan(offload=offload)).argv
    values = {f: flag(a, f) for f in sglang_args.ALL_SWITCHES}
    assert values == {f: "true" if f in on else "false" for f in sglang_args.ALL_SWITCHES}


@pytest.mark.parametrize(("offload", "precision"), [("expert-swap", "bf16"), ("none", None), ("dit-layerwise", None)])
def test_expert_swap_runs_the_text_encoder_in_bf16(t2v, offload, precision):
    """OFFLOAD=expert-swap should ask for a bf16 text encoder (half the host RAM of SGLang's fp32); the
    other modes should leave SGLang's precision alone."""
    a = argv(t2v, p=plan(offload=offload)).argv
    assert (flag(a, "--text-encoder-precisions") if "--text-encoder-precisions" in a else None) == precision


@pytest.mark.parametrize(("offload", "pin"), [("expert-swap", "false"), ("none", None), ("dit-layerwise", None)])
def test_expert_swap_keeps_the_text_encoder_unpinned(t2v, offload, pin):
    """OFFLOAD=expert-swap should keep the offloaded text encoder in pageable memory (pinned, PyTorch's host
    allocator rounded it up to 15.9 GB); the other modes should leave SGLang's pinning alone."""
    a = argv(t2v, p=plan(offload=offload)).argv
    assert (flag(a, "--pin-cpu-memory") if "--pin-cpu-memory" in a else None) == pin


def test_multi_gpu_layout_flags(t2v):
    """Four GPUs should pass CFG-parallel and the Ulysses/Ring degrees."""
    a = argv(t2v, p=plan(n=4, cfg=True, ulysses=2)).argv
    assert (flag(a, "--num-gpus"), flag(a, "--enable-cfg-parallel")) == ("4", "true")
    assert (flag(a, "--ulysses-degree"), flag(a, "--ring-degree")) == ("2", "1")


def test_single_gpu_has_no_parallel_flags(t2v):
    """One GPU should not pass parallel flags."""
    assert "--enable-cfg-parallel" not in argv(t2v).argv


def test_cpu_plan_has_no_offload_flags(t2v):
    """SGLang's CPU platform (tests) gets no GPU offload switches."""
    a = argv(t2v, p=plan(n=0)).argv
    assert flag(a, "--num-gpus") == "1" and "--dit-cpu-offload" not in a


def test_optional_flags_dropped_when_unsupported(t2v):
    """Flags the installed SGLang lacks (0.5.16 has no --served-model-name) should be left out and reported."""
    launch = argv(t2v, env={"SERVED_MODEL_NAME": "wan"}, supported={"--model-path"})
    assert "--served-model-name" not in launch.argv
    assert set(launch.dropped) == set(sglang_args.OPTIONAL_FLAGS) - {"--warmup-mode"}  # asked for only when off


def test_optional_flags_passed_when_supported(t2v):
    """Newer SGLang should get the graceful-shutdown timeout, metrics and served name."""
    a = argv(t2v, env={"SERVED_MODEL_NAME": "wan", "GRACEFUL_SHUTDOWN_TIMEOUT": "60"}).argv
    assert (flag(a, "--served-model-name"), flag(a, "--http-graceful-shutdown-timeout")) == ("wan", "60")
    assert flag(a, "--enable-metrics") == "true"


def test_extra_args_come_last(t2v):
    """SGLANG_EXTRA_ARGS should be appended last so they override the launcher's choices."""
    a = argv(t2v, env={"SGLANG_EXTRA_ARGS": "--warmup-mode off"}).argv
    assert a[-2:] == ["--warmup-mode", "off"]


def test_child_env_caches_outside_models(tmp_path):
    """Kernel caches should default under CACHE_DIR, and an explicit value should be kept."""
    s = Settings.from_env({"MODEL_PATH": "/m", "CACHE_DIR": "/c"})
    env = sglang_args.child_env(s, plan(), {"TRITON_CACHE_DIR": "/mine"})
    assert env["TRITON_CACHE_DIR"] == "/mine"
    assert env["TORCHINDUCTOR_CACHE_DIR"] == "/c/inductor"
    assert all(Path(v).is_relative_to("/c") for k, v in env.items() if k.endswith("_DIR") and k != "TRITON_CACHE_DIR")


@pytest.mark.parametrize("name", ["TVM_FFI_CACHE_DIR", "CUTE_DSL_CACHE_DIR", "QUACK_CACHE_DIR"])
def test_child_env_keeps_jit_kernel_caches_in_cache_dir(name):
    """The JIT caches that default to HOME or /tmp (SGLang's tvm-ffi kernels, CuTe DSL, QuACK) should go
    under CACHE_DIR too, so a start with a kept CACHE_DIR reuses them."""
    s = Settings.from_env({"MODEL_PATH": "/m", "CACHE_DIR": "/c"})
    assert Path(sglang_args.child_env(s, plan(), {})[name]).parent == Path("/c")


def test_child_env_records_kernel_builds_in_cache_dir():
    """The plugin's record of what SGLang compiled (kernel_record.py) should sit beside the kernels it names."""
    s = Settings.from_env({"MODEL_PATH": "/m", "CACHE_DIR": "/c"})
    assert sglang_args.child_env(s, plan(), {})["GLM_IMAGE_KERNEL_RECORD"] == "/c/kernel-builds.jsonl"


def test_the_image_prebuilds_kernels_for_the_cache_a_default_start_uses():
    """kernel_seed builds FlashInfer's modules at the path a start with the default DATA_DIR/CACHE_DIR hands
    FlashInfer: otherwise ninja sees other commands and compiles them again."""
    from glm_image_sglang import kernel_seed

    s = Settings.from_env({"MODEL_PATH": "/m"})
    assert Path(sglang_args.child_env(s, plan(), {})["FLASHINFER_WORKSPACE_BASE"]) == kernel_seed.RUN_TIME_WORKSPACE


def test_child_env_uses_expandable_segments():
    """SGLang should get PyTorch's expandable segments unless the user set the allocator themselves."""
    s = Settings.from_env({"MODEL_PATH": "/m"})
    assert sglang_args.child_env(s, plan(), {})["PYTORCH_CUDA_ALLOC_CONF"] == "expandable_segments:True"
    assert sglang_args.child_env(s, plan(), {"PYTORCH_CUDA_ALLOC_CONF": "x"})["PYTORCH_CUDA_ALLOC_CONF"] == "x"


def steps_mask(compute_bins: str, cache_bins: str, steps: int) -> list[int]:
    """cache-dit's reading of SCM bins (cache_interface._steps_mask): compute/cache runs, cut at steps."""
    mask: list[int] = []
    for compute, cache in zip(compute_bins.split(","), cache_bins.split(","), strict=True):
        mask += [1] * int(compute) + [0] * int(cache)
    assert len(mask) >= steps, "SGLang fails a request with more steps than the bins cover"
    return mask[:steps]


def test_fast_preset_env_masks_steps_for_any_step_count():
    """PRESET=fast should turn Cache-DiT on with a static mask: steps 1-5 in full, then 2 of every 5, for any
    step count MAX_STEPS allows (its upper bound); the default path sets none of it."""
    s = Settings.from_env({"MODEL_PATH": "/m"})
    env = sglang_args.child_env(s, Plan(1, False, 1, 1, "none", 0, 0, preset="fast"), {})
    assert env["SGLANG_CACHE_DIT_ENABLED"] == "true" and env["SGLANG_CACHE_DIT_SCM_POLICY"] == "static"
    compute, cache = env["SGLANG_CACHE_DIT_SCM_COMPUTE_BINS"], env["SGLANG_CACHE_DIT_SCM_CACHE_BINS"]
    assert steps_mask(compute, cache, 16) == [1] * 5 + [0] + [1, 1, 0, 0, 0] + [1, 1, 0, 0, 0]
    # A14B's 40 steps split 26 / 14 between its experts: 13 + 9 in full, as SGLang logged on the H200
    assert sum(steps_mask(compute, cache, 26)) + sum(steps_mask(compute, cache, 14)) == 22
    assert len(steps_mask(compute, cache, MAX_STEPS_LIMIT)) == MAX_STEPS_LIMIT
    assert not any(k.startswith("SGLANG_CACHE_DIT") for k in sglang_args.child_env(s, plan(), {}))


def test_fast_preset_leaves_cache_dit_variables_that_are_set():
    """A SGLANG_CACHE_DIT_* variable the user set should win over the preset's value."""
    s = Settings.from_env({"MODEL_PATH": "/m"})
    p = Plan(1, False, 1, 1, "none", 0, 0, preset="fast")
    env = sglang_args.child_env(s, p, {"SGLANG_CACHE_DIT_SCM_POLICY": "dynamic"})
    assert env["SGLANG_CACHE_DIT_SCM_POLICY"] == "dynamic" and env["SGLANG_CACHE_DIT_ENABLED"] == "true"


def test_compile_dit_compiles_the_dit_and_leaves_the_vae_to_the_plugin(t2v):
    """COMPILE=dit: SGLang gets --enable-torch-compile, the inductor mode `default` unless one is set (its
    own, max-autotune-no-cudagraphs, autotuned past a 9-minute call on an H200), and the plugin's switch
    that keeps the VAE decode eager; without it none of them."""
    s = Settings.from_env({"MODEL_PATH": str(t2v.path), "COMPILE": "dit"})
    p = Plan(1, False, 1, 1, "none", 0, 0, compile_dit=True)
    assert "--enable-torch-compile" in argv(t2v, p=p).argv
    env = sglang_args.child_env(s, p, {})
    assert (env["SGLANG_TORCH_COMPILE_MODE"], env["GLM_IMAGE_VAE_COMPILE"]) == ("default", "off")
    mine = sglang_args.child_env(s, p, {"SGLANG_TORCH_COMPILE_MODE": "reduce-overhead"})
    assert mine["SGLANG_TORCH_COMPILE_MODE"] == "reduce-overhead"
    s = Settings.from_env({"MODEL_PATH": str(t2v.path)})
    assert "--enable-torch-compile" not in argv(t2v, p=plan()).argv
    assert not {"SGLANG_TORCH_COMPILE_MODE", "GLM_IMAGE_VAE_COMPILE"} & set(sglang_args.child_env(s, plan(), {}))


def test_worker_preload_is_the_plugins_switch(t2v):
    """A plan with worker_preload sets the switch the plugin reads in SGLang's main process; others do not."""
    s = Settings.from_env({"MODEL_PATH": str(t2v.path), "WORKER_START": "preload"})
    assert (
        sglang_args.child_env(s, Plan(1, False, 1, 1, "none", 0, 0, worker_preload=True), {})["GLM_IMAGE_WORKER_START"]
        == "preload"
    )
    assert "GLM_IMAGE_WORKER_START" not in sglang_args.child_env(s, plan(), {})


def test_listen_behind_gateway(t2v):
    """Behind the gateway, SGLang should bind the loopback upstream address given."""
    s = Settings.from_env({"MODEL_PATH": str(t2v.path)})
    a = sglang_args.build(s, t2v, plan(), 5555, 30005, None, ("127.0.0.1", 31000)).argv
    assert (flag(a, "--host"), flag(a, "--port")) == ("127.0.0.1", "31000")


def test_no_own_warmup_when_the_gateway_probes(t2v):
    """When the gateway's test generation is the warm-up, SGLang should run none of its own (it would
    hold every request until it is done, the test generation too)."""
    s = Settings.from_env({"MODEL_PATH": str(t2v.path)})
    a = sglang_args.build(s, t2v, plan(), 5555, 30005, None, ("127.0.0.1", 31000), own_warmup=False).argv
    assert flag(a, "--warmup-mode") == "off"
    assert "--warmup-mode" not in sglang_args.build(s, t2v, plan(), 5555, 30005).argv


def test_warmup_switch_left_out_when_sglang_lacks_it(t2v):
    """An SGLang without --warmup-mode should not get it (and the launcher says it left it out)."""
    s = Settings.from_env({"MODEL_PATH": str(t2v.path)})
    launch = sglang_args.build(s, t2v, plan(), 5555, 30005, {"--model-path"}, own_warmup=False)
    assert "--warmup-mode" not in launch.argv and "--warmup-mode" in launch.dropped


def test_attention_backend_auto_leaves_sglang_to_choose(t2v):
    """ATTENTION_BACKEND=auto (the default) should pass no --attention-backend: SGLang picks per GPU."""
    assert "--attention-backend" not in argv(t2v).argv


@pytest.mark.parametrize(("ours", "sglang"), [("fa2", "fa2"), ("fa3", "fa3"), ("sdpa", "torch_sdpa")])
def test_attention_backend_is_passed_by_sglang_name(t2v, ours, sglang):
    """A chosen ATTENTION_BACKEND should reach SGLang under SGLang's own name for it."""
    assert flag(argv(t2v, {"ATTENTION_BACKEND": ours}).argv, "--attention-backend") == sglang


def test_ar_server_as_sglang_starts_it(tmp_path):
    """GLM_AR=srt: the AR server should serve the model's vision_language_encoder with the processor's
    tokenizer, multimodal, on loopback, in its planned share of the GPU."""
    model = models.inspect(make(tmp_path / "GLM-Image", "glm-image"))
    s = Settings.from_env({"MODEL_PATH": str(model.path), "GLM_AR": "srt"})
    a = sglang_args.build_ar(s, model, Plan(1, False, 1, 1, "none", 0, 0, (), 0.21), 32000)
    assert a[:2] == ["sglang", "serve"] and "--enable-multimodal" in a
    assert flag(a, "--model-path") == str(tmp_path / "GLM-Image" / "vision_language_encoder")
    assert flag(a, "--tokenizer-path") == str(tmp_path / "GLM-Image" / "processor")
    assert (flag(a, "--host"), flag(a, "--port"), flag(a, "--mem-fraction-static")) == ("127.0.0.1", "32000", "0.21")


def test_diffusion_server_pointed_at_the_ar_server(tmp_path):
    """With an AR server the diffusion server should get its URL; without, no such flag."""
    model = models.inspect(make(tmp_path / "GLM-Image", "glm-image"))
    s = Settings.from_env({"MODEL_PATH": str(model.path)})
    with_ar = sglang_args.build(s, model, plan(), 5555, 30005, ar_url="http://127.0.0.1:32000").argv
    assert flag(with_ar, "--srt-encoder-url") == "http://127.0.0.1:32000"
    assert "--srt-encoder-url" not in argv(model).argv


def test_ar_server_caps_its_decode_cuda_graphs_on_a_gpu(tmp_path):
    """On a GPU the AR server should capture decode CUDA graphs only up to a small batch, in the flag spelling
    given; without a spelling (an SGLang that declares neither) or on the CPU, no such flag."""
    model = models.inspect(make(tmp_path / "GLM-Image", "glm-image"))
    s = Settings.from_env({"MODEL_PATH": str(model.path), "GLM_AR": "srt"})
    gpu = Plan(1, False, 1, 1, "none", 0, 0, (), 0.21)
    a = sglang_args.build_ar(s, model, gpu, 32000, "--cuda-graph-max-bs-decode")
    assert flag(a, "--cuda-graph-max-bs-decode") == str(sglang_args.AR_CUDA_GRAPH_MAX_BS)
    assert not any(x.startswith("--cuda-graph") for x in sglang_args.build_ar(s, model, gpu, 32000))
    cpu_settings = Settings.from_env({"MODEL_PATH": str(model.path), "GLM_AR": "srt", "REQUIRE_GPU": "false"})
    cpu = make_plan(cpu_settings, model, Machine((), "none", None))
    assert not any(
        x.startswith("--cuda-graph") for x in sglang_args.build_ar(s, model, cpu, 32000, "--cuda-graph-max-bs")
    )


def test_ar_server_on_the_cpu_gets_a_small_kv_cache(tmp_path):
    """Without a GPU the AR server should run on SGLang's CPU device with a bounded KV cache (its default
    reserves 71 % of host RAM), and no GPU share."""
    model = models.inspect(make(tmp_path / "GLM-Image", "glm-image"))
    s = Settings.from_env({"MODEL_PATH": str(model.path), "GLM_AR": "srt", "REQUIRE_GPU": "false"})
    a = sglang_args.build_ar(s, model, make_plan(s, model, Machine((), "none", None)), 32000)
    assert (flag(a, "--device"), flag(a, "--max-total-tokens")) == ("cpu", "8192") and "--mem-fraction-static" not in a


def test_ar_server_started_together_caps_its_kv_cache(tmp_path):
    """GLM_AR_START=together on a GPU: the AR server gets a large static share with its KV cache capped in
    tokens, so a diffusion server loading beside it cannot starve its sizing; after-ready keeps its own."""
    model = models.inspect(make(tmp_path / "GLM-Image", "glm-image"))
    h200 = Machine((Gpu(0, "H200", 143771 * 2**20),), "nvidia-smi", None)
    env = {"MODEL_PATH": str(model.path), "GLM_AR": "srt"}
    s = Settings.from_env({**env, "GLM_AR_START": "together"})
    a = sglang_args.build_ar(s, model, make_plan(s, model, h200, plugin=True), 32000)
    assert (flag(a, "--mem-fraction-static"), flag(a, "--max-total-tokens")) == ("0.95", "16384")
    s = Settings.from_env({**env, "GLM_AR_START": "after-ready"})
    a = sglang_args.build_ar(s, model, make_plan(s, model, h200, plugin=True), 32000)
    assert float(flag(a, "--mem-fraction-static")) < 0.3 and "--max-total-tokens" not in a


def test_ar_server_started_together_tells_the_plugin(tmp_path):
    """GLM_AR_START=together: the diffusion server's environment should carry GLM_IMAGE_AR_START=together, so
    the image's plugin leaves out SGLang's load-time /health check of an AR server that is still starting;
    after-ready should not set it."""
    model = models.inspect(make(tmp_path / "GLM-Image", "glm-image"))
    h200 = Machine((Gpu(0, "H200", 143771 * 2**20),), "nvidia-smi", None)
    env = {"MODEL_PATH": str(model.path), "GLM_AR": "srt"}
    s = Settings.from_env({**env, "GLM_AR_START": "together"})
    assert sglang_args.child_env(s, make_plan(s, model, h200, plugin=True), {})["GLM_IMAGE_AR_START"] == "together"
    s = Settings.from_env({**env, "GLM_AR_START": "after-ready"})
    assert "GLM_IMAGE_AR_START" not in sglang_args.child_env(s, make_plan(s, model, h200, plugin=True), {})
