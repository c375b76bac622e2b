"""Settings: the environment contract."""

import re
from pathlib import Path

import pytest

from glm_image_sglang.errors import ConfigError
from glm_image_sglang.settings import FIELDS, GATEWAY_FIELDS, GatewaySettings, Settings

pytestmark = pytest.mark.unit
CONFIG_DOC = Path(__file__).parents[2] / "docs" / "configuration.md"


def test_model_path_required():
    """Launcher should refuse to start without MODEL_PATH and show how to set it."""
    with pytest.raises(ConfigError, match=r"MODEL_PATH is not set.*-e MODEL_PATH=/app/models/"):
        Settings.from_env({})


def test_defaults():
    """Defaults should be port 30000 on all interfaces, metrics on, enforcing pre-flight."""
    s = Settings.from_env({"MODEL_PATH": "/m"})
    assert (s.host, s.port, s.metrics, s.preflight, s.num_gpus) == ("0.0.0.0", 30000, True, "enforce", None)
    assert s.outputs == Path("/app/data/outputs") and s.caches == Path("/app/data/cache")


def test_empty_variable_means_default():
    """An empty variable (as Kubernetes manifests often leave them) should mean the default."""
    assert Settings.from_env({"MODEL_PATH": "/m", "PORT": ""}).port == 30000


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PORT": "http"}, r"PORT='http' is not a whole number"),
        ({"PORT": "70000"}, r"PORT=70000 is out of range"),
        ({"OFFLOAD": "gpu"}, r"OFFLOAD='gpu' is not one of: auto, none, text-encoder"),
        ({"ATTENTION_BACKEND": "flash"}, r"ATTENTION_BACKEND='flash' is not one of: auto, fa3, fa2, sdpa"),
        ({"MODEL_VARIANT": "wan2.1"}, r"MODEL_VARIANT='wan2.1' is not one of: auto, glm-image"),
        ({"ENABLE_METRICS": "maybe"}, r"ENABLE_METRICS='maybe' is not a boolean"),
        ({"DATA_DIR": "data"}, r"DATA_DIR='data' must be an absolute path"),
        ({"NUM_GPUS": "0"}, r"NUM_GPUS=0 is out of range"),
        ({"SGLANG_EXTRA_ARGS": "--foo 'bar"}, r"SGLANG_EXTRA_ARGS cannot be split"),
        ({"SCHEDULER_PORT": "30000"}, r"SCHEDULER_PORT=30000 equals PORT"),
        ({"GLM_AR": "remote"}, r"GLM_AR='remote' is not one of: auto, in-process, srt, or the http\(s\) URL"),
        ({"GLM_AR": "http://ar:30000/generate"}, r"scheme, host and port"),
    ],
)
def test_invalid_values_name_the_variable(env, message):
    """Each invalid value should be rejected with the variable's name and what is allowed."""
    with pytest.raises(ConfigError, match=message):
        Settings.from_env({"MODEL_PATH": "/m", **env})


@pytest.mark.parametrize(("raw", "value"), [("SRT", "srt"), ("http://glm-ar:30000/", "http://glm-ar:30000")])
def test_glm_ar_takes_a_mode_or_a_server_url(raw, value):
    """GLM_AR should take its modes in any case, or an AR server's base URL without the trailing slash."""
    assert Settings.from_env({"MODEL_PATH": "/m", "GLM_AR": raw}).glm_ar == value


def test_extra_args_split_without_expansion():
    """SGLANG_EXTRA_ARGS should split like a shell but never expand variables or globs."""
    s = Settings.from_env({"MODEL_PATH": "/m", "SGLANG_EXTRA_ARGS": "--warmup-mode off --x '$HOME *'"})
    assert s.extra_args == ("--warmup-mode", "off", "--x", "$HOME *")


def test_secrets_redacted():
    """The printed configuration should never contain HF_TOKEN's value."""
    s = Settings.from_env({"MODEL_PATH": "/m", "HF_TOKEN": "hf_secret123"})
    shown = s.redacted()
    assert shown["HF_TOKEN"] == "(set)"
    assert "hf_secret123" not in repr(shown)


def test_docs_document_every_variable():
    """docs/configuration.md's tables should list every variable the launcher reads."""
    text = CONFIG_DOC.read_text()
    missing = [f.env for f in (*FIELDS, *GATEWAY_FIELDS) if not re.search(rf"\|\s*`{f.env}`\s*\|", text)]
    assert not missing, f"docs/configuration.md lacks rows for {missing}; regenerate with `glm-image-sglang env`"


def test_gateway_defaults():
    """The gateway should default to one generation at a time, a bounded queue and URLs off."""
    g = GatewaySettings.from_env({})
    assert (g.max_concurrency, g.max_queue, g.allow_image_urls, g.ready_probe) == (1, 8, False, "generate")


def test_gateway_invalid_value():
    """An invalid gateway setting should name the variable."""
    with pytest.raises(ConfigError, match=r"READY_PROBE='never' is not one of: generate, health"):
        GatewaySettings.from_env({"READY_PROBE": "never"})


def test_api_key_redacted():
    """API_KEY should be shown only as set."""
    assert GatewaySettings.from_env({"API_KEY": "k3y"}).redacted()["API_KEY"] == "(set)"


def test_require_api_key_without_one_refused():
    """REQUIRE_API_KEY=true without a key should stop the start, naming both ways out."""
    with pytest.raises(ConfigError, match=r"REQUIRE_API_KEY=true but no API_KEY is set: set API_KEY \(or API_KEY_FILE"):
        GatewaySettings.from_env({"REQUIRE_API_KEY": "true"})
    assert GatewaySettings.from_env({"REQUIRE_API_KEY": "true", "API_KEY": "k"}).require_api_key
