"""PRESET=fast on the real SGLang (CPU, tiny T2V-A14B): Cache-DiT with the preset's fixed step mask on both
experts, a different video from the default path's for the same seed, and a server that still gets ready."""

from __future__ import annotations

import io

import numpy as np
import pytest

from harness import serve, wait_job

pytestmark = pytest.mark.e2e
# 10 steps: the high-noise expert takes 7 (mask 1111110: its 7th step reuses the cache), the low-noise one 3
SMALL = {"size": "64x64", "num_frames": 5, "num_inference_steps": 10, "seed": 0, "generator_device": "cpu"}


@pytest.fixture(scope="module", params=[pytest.param("host", id="host")])
def default(request, tmp_path_factory):
    yield from serve(request, "wan2.2-t2v-a14b", tmp_path_factory)


@pytest.fixture(scope="module", params=[pytest.param("host", id="host")])
def fast(request, tmp_path_factory):
    yield from serve(request, "wan2.2-t2v-a14b", tmp_path_factory, env={"PRESET": "fast"})


def video(server, body) -> np.ndarray:
    import av

    job = server.client.post("/v1/videos", json=body).json()
    assert wait_job(server.client, job["id"])["status"] == "completed"
    data = server.client.get(f"/v1/videos/{job['id']}/content").content
    with av.open(io.BytesIO(data)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)]).astype(np.float64)


def test_fast_preset_caches_steps_and_changes_the_video(default, fast):
    """With PRESET=fast SGLang should mount Cache-DiT on both experts with the static step mask (a cached
    step in the 10-step request) and make a video of the same shape that differs from the default path's,
    by a drift small beside the frames themselves (relative L2 of the pixels)."""
    body = {"prompt": "a cat surfing", **SMALL}
    want, got = video(default, body), video(fast, body)
    assert got.shape == want.shape == (5, 64, 64, 3)
    drift = float(np.linalg.norm(got - want) / np.linalg.norm(want))
    assert 0 < drift < 0.5, drift
    logs = fast.logs()
    assert "cache-dit enabled on dual transformers" in logs, logs[-3000:]
    assert "policy=static" in logs and "generated mask with 6 compute steps, 1 cache steps" in logs
    assert "preset: fast (Cache-DiT" in logs  # the plan's note, printed at start
    assert "cache-dit" not in default.logs().lower()
