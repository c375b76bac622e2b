"""The image's SGLang plugin's GLM-Image AR-stage patch, against stand-ins of the two SGLang classes it
wraps (the e2e tier runs it inside the real SGLang 0.5.23; these cover what that release cannot show)."""

from __future__ import annotations

import types
from typing import Any, ClassVar

import pytest

from glm_image_sglang import sglang_plugin


class Loader:
    """SGLang's VisionLanguageEncoderLoader.load_customized: checks the AR server's /health when a URL is set
    (here: records the call and fails as SGLang does while the server is still starting)."""

    calls: ClassVar[list[Any]] = []
    ar_up = False

    def load_customized(self, component_model_path: str, server_args: Any, component_name: str = "vle") -> Any:
        Loader.calls.append(server_args.srt_encoder_url)
        if server_args.srt_encoder_url is not None:
            if not Loader.ar_up:
                raise RuntimeError("Failed to reach AR encoder server")
            return server_args.srt_encoder_url
        return "in-process model"


class Stage016:
    """GlmImageAR.generate_prior_tokens as SGLang 0.5.16 has it: no seed parameter."""

    def generate_prior_tokens(self, prompt, height, width, server_args, image=None, factor=32):
        return ("tokens", server_args.srt_encoder_url, image)


@pytest.fixture
def sglang(monkeypatch):
    """Fresh stand-in classes in sys.modules where the plugin looks for SGLang's."""
    loader = type("Loader", (Loader,), {})
    stage = type("Stage016", (Stage016,), {})
    Loader.calls, Loader.ar_up = [], False
    monkeypatch.setitem(__import__("sys").modules, sglang_plugin.VL_LOADER,
                        types.SimpleNamespace(VisionLanguageEncoderLoader=loader))  # fmt: skip
    monkeypatch.setitem(__import__("sys").modules, sglang_plugin.GLM_STAGE,
                        types.SimpleNamespace(GlmImageAR=stage))  # fmt: skip
    return loader, stage


def args(url: str | None = "http://127.0.0.1:32000") -> Any:
    return types.SimpleNamespace(srt_encoder_url=url)


def test_started_together_loads_without_asking_the_ar_server(sglang):
    """Started together: loading should not call SGLang's /health check (the AR server may still be starting)
    and should give the in-process model for edits, with no exception while the AR server is down."""
    loader, _ = sglang
    assert sglang_plugin.patch_glm_image_ar_stage(edits_in_process=True, started_together=True)
    assert loader().load_customized("/m/vle", args()) == "in-process model"
    assert Loader.calls == [None]


def test_started_together_without_edits_returns_the_url(sglang):
    """Started together with edits off: the component should be the AR server's URL, as SGLang returns it."""
    loader, _ = sglang
    assert sglang_plugin.patch_glm_image_ar_stage(edits_in_process=False, started_together=True)
    assert loader().load_customized("/m/vle", args()) == "http://127.0.0.1:32000"
    assert Loader.calls == []


def test_after_ready_keeps_sglangs_health_check(sglang):
    """Started after the AR server answered: SGLang's own check should still run first (a URL that does not
    answer fails the load, as in SGLang)."""
    loader, _ = sglang
    assert sglang_plugin.patch_glm_image_ar_stage(edits_in_process=True, started_together=False)
    with pytest.raises(RuntimeError, match="Failed to reach AR encoder server"):
        loader().load_customized("/m/vle", args())
    Loader.ar_up = True
    assert loader().load_customized("/m/vle", args()) == "in-process model"
    assert Loader.calls == ["http://127.0.0.1:32000", "http://127.0.0.1:32000", None]


def test_generate_passes_sglang_0_5_16_arguments_through(sglang):
    """SGLang 0.5.16 calls generate_prior_tokens without seed= and has no such parameter: the wrapper should
    pass on what it was given (it passed seed=None, and every text-to-image failed with a TypeError), send
    text-to-image to the AR server and edits in-process."""
    _, stage = sglang
    assert sglang_plugin.patch_glm_image_ar_stage(edits_in_process=True, started_together=False)
    t2i = stage().generate_prior_tokens(prompt="a fox", height=64, width=64, server_args=args())
    assert t2i == ("tokens", "http://127.0.0.1:32000", None)
    edit = stage().generate_prior_tokens(prompt="night", image=["img"], height=64, width=64, server_args=args())
    assert edit == ("tokens", None, ["img"])


def test_nothing_to_do_leaves_sglang_alone(sglang):
    """Neither edits in-process nor a start together: nothing should be patched."""
    loader, stage = sglang
    assert not sglang_plugin.patch_glm_image_ar_stage(edits_in_process=False, started_together=False)
    assert not hasattr(loader.load_customized, "__wrapped__") and not hasattr(
        stage.generate_prior_tokens, "__wrapped__"
    )


class Vae:
    def decode(self, latents):
        return latents


class Decoding:
    """SGLang's DecodingStage._get_vae_decode_fn (0.5.23's signature): with --enable-torch-compile it hands
    back a compiled decode."""

    def _get_vae_decode_fn(self, vae, server_args, *, decode_fn=None, compiled_callable=None):
        decode_fn = decode_fn or vae.decode
        return ("compiled", decode_fn) if server_args.enable_torch_compile else decode_fn


def test_vae_decode_stays_eager_beside_a_compiled_dit(monkeypatch):
    """GLM_IMAGE_VAE_COMPILE=off: with torch.compile on, the VAE decode should be the eager one (the given
    decode_fn, else vae.decode), where SGLang would compile it."""
    stage = type("Decoding", (Decoding,), {})
    monkeypatch.setitem(__import__("sys").modules, sglang_plugin.DECODING, types.SimpleNamespace(DecodingStage=stage))
    on = types.SimpleNamespace(enable_torch_compile=True)
    vae = Vae()
    assert stage()._get_vae_decode_fn(vae, on)[0] == "compiled"
    assert sglang_plugin.patch_vae_decode_eager()
    assert stage()._get_vae_decode_fn(vae, on) == vae.decode
    assert stage()._get_vae_decode_fn(vae, on, decode_fn=len) is len


def test_a_failing_kernel_compile_hook_does_not_stop_the_worker(monkeypatch, capsys):
    """The kernel-compile lines are only log lines: if installing them fails, register() should say so and go on."""
    from glm_image_sglang import kernel_compiles

    def broken(threshold: float = 3.0) -> list[str]:
        raise RuntimeError("no meta_path here")

    monkeypatch.setattr(kernel_compiles, "install", broken)
    for name in ("GLM_IMAGE_SGLANG_PLUGIN", "GLM_IMAGE_EXPERT_SWAP", "GLM_IMAGE_VAE_COMPILE", "GLM_IMAGE_AR_EDITS",
                 "GLM_IMAGE_AR_START"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    sglang_plugin.register()
    assert "kernel-compile lines left out: RuntimeError('no meta_path here')" in capsys.readouterr().err


@pytest.mark.parametrize(("setting", "installs"), [(None, True), ("off", False)])
def test_the_llm_runtime_entry_point_installs_the_kernel_compile_lines_alone(monkeypatch, setting, installs):
    """register_srt (SGLang's LLM runtime: GLM-Image's AR server) should install the kernel-compile lines and
    records unless GLM_IMAGE_SGLANG_PLUGIN=off, and apply none of the diffusion patches, even when asked."""
    from glm_image_sglang import kernel_compiles

    calls: list[str] = []
    monkeypatch.setattr(kernel_compiles, "install", lambda threshold=3.0: calls.append("install") or [])
    monkeypatch.setattr(sglang_plugin, "patch_glm_image_edit", lambda: calls.append("edit") or True)
    monkeypatch.setattr(sglang_plugin, "patch_glm_image_ar_stage", lambda *a: calls.append("ar") or True)
    monkeypatch.setattr(sglang_plugin, "patch_vae_decode_eager", lambda: calls.append("vae") or True)
    for name, value in (("GLM_IMAGE_AR_EDITS", "in-process"), ("GLM_IMAGE_VAE_COMPILE", "off")):
        monkeypatch.setenv(name, value)
    if setting is None:
        monkeypatch.delenv("GLM_IMAGE_SGLANG_PLUGIN", raising=False)
    else:
        monkeypatch.setenv("GLM_IMAGE_SGLANG_PLUGIN", setting)
    sglang_plugin.register_srt()
    assert calls == (["install"] if installs else [])
