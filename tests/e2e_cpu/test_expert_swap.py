"""OFFLOAD=expert-swap on the real SGLang (CPU, tiny T2V-A14B): one expert parked in host RAM, swapped in
when a step needs it, the same video as with both experts resident; and the swap's bookkeeping in torch."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess

import pytest

from harness import E2E_PYTHON, serve, wait_job

pytestmark = pytest.mark.e2e
# 10 steps: with A14B's flow shift of 12 the last 4 fall below the 0.875 boundary (2 steps stay above it)
SMALL = {"size": "64x64", "num_frames": 5, "num_inference_steps": 10, "seed": 0, "generator_device": "cpu"}

# Run in the e2e venv (torch): two experts of one architecture with different weights, parked and swapped.
SWAP_SCRIPT = """
import json, torch
from glm_image_sglang.expert_swap import ExpertSwap
torch.manual_seed(0)
def expert():
    return torch.nn.Sequential(torch.nn.Linear(8, 16).to(torch.bfloat16), torch.nn.LayerNorm(16).to(torch.bfloat16),
                               torch.nn.Linear(16, 4))
a, b = expert(), expert()
x = torch.randn(3, 8, dtype=torch.bfloat16)
def run(m):
    return m[2](m[1](m[0](x)).float())
ref_a, ref_b = run(a), run(b)
swap = ExpertSwap(a, b)
lo, hi = swap.host.data_ptr(), swap.host.data_ptr() + swap.host.numel()
def parked(m):
    return all(lo <= p.data_ptr() < hi for p in m.parameters())
out = {"b_parked": parked(b), "a_parked": parked(a)}
swap.make(b)
out["b_right"] = torch.equal(run(b), ref_b)
out["after_b"] = [parked(a), parked(b), swap.swaps]
swap.make(b)
swap.make(a)
out["a_right"] = torch.equal(run(a), ref_a)
out["after_a"] = [parked(a), parked(b), swap.swaps]
# SGLang's residency manager moves the expert a step uses, and the next one ahead, with module.to(device):
# ignored, the swap alone places experts (make, when a step selects one)
out["to_b"] = [b.to("cpu", non_blocking=True) is b, parked(a), parked(b), swap.swaps]
out["to_meta"] = [a.to("meta") is a, parked(a), swap.swaps]
# the swap made inside inference mode (a denoising step), the next one outside it (SGLang's prefetch)
c, d = expert(), expert()
ref_c = run(c)
with torch.inference_mode():
    inner = ExpertSwap(c, d)
    inner.make(d)
inner.make(c)
out["outside_inference_mode"] = torch.equal(run(c), ref_c)
out["host_bytes"] = swap.host.numel()
out["param_bytes"] = sum(p.numel() * p.element_size() for p in b.parameters())
try:
    ExpertSwap(a, torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.LayerNorm(16), torch.nn.Linear(16, 4)))
    out["mismatch"] = "accepted"
except ValueError as e:
    out["mismatch"] = str(e)
out["to_dtype"] = a.to(torch.float32)[0].weight.dtype == torch.float32  # a cast is torch's own (last: it unpairs)
print(json.dumps(out))
"""


def test_swap_gives_each_expert_its_own_weights():
    """The parked expert's weights should live in the one host buffer; after make(b) b computes exactly its
    own outputs with a parked, after make(a) the reverse, a second make(b) should not swap; moves with to(), as
    SGLang's residency manager makes them, should change nothing (a dtype cast still casts); a swap made in
    inference mode should swap back outside it; and experts of different dtypes should be refused."""
    proc = subprocess.run([str(E2E_PYTHON), "-c", SWAP_SCRIPT], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.splitlines()[-1])
    assert (out["b_parked"], out["a_parked"]) == (True, False)
    assert out["b_right"] and out["after_b"] == [True, False, 1]
    assert out["a_right"] and out["after_a"] == [False, True, 2]
    assert out["to_b"] == [True, False, True, 2]  # b stays parked
    assert out["to_meta"] == [True, False, 2] and out["to_dtype"]
    assert out["outside_inference_mode"]
    assert out["param_bytes"] <= out["host_bytes"] < out["param_bytes"] + 6 * 256  # 6 tensors, 256-byte aligned
    assert out["mismatch"].startswith("experts differ at 0.weight")


@pytest.fixture(scope="module", params=[pytest.param("host", id="host")])
def resident(request, tmp_path_factory):
    yield from serve(request, "wan2.2-t2v-a14b", tmp_path_factory)


@pytest.fixture(scope="module", params=[pytest.param("host", id="host")])
def swapped(request, tmp_path_factory):
    yield from serve(request, "wan2.2-t2v-a14b", tmp_path_factory, env={"OFFLOAD": "expert-swap"})


def frames(server, body):
    import av

    job = server.client.post("/v1/videos", json=body).json()
    assert wait_job(server.client, job["id"])["status"] == "completed"
    data = server.client.get(f"/v1/videos/{job['id']}/content").content
    with av.open(io.BytesIO(data)) as container:
        return [hashlib.sha256(f.to_ndarray(format="rgb24").tobytes()).hexdigest() for f in container.decode(video=0)]


def test_expert_swap_makes_the_same_video(resident, swapped):
    """OFFLOAD=expert-swap should park transformer_2, swap it in for the low-noise step and back for the next
    request's first step, no more often, and make frame for frame the video of the resident server (same
    seed)."""
    body = {"prompt": "a cat surfing", **SMALL}
    want = frames(resident, body)
    assert frames(swapped, body) == want and len(want) == 5
    assert frames(swapped, {**body, "seed": 1}) == frames(resident, {**body, "seed": 1})
    logs = swapped.logs()
    assert "Wan2.2-A14B keeps one expert on the GPU and swaps" in logs, logs[-3000:]
    assert "expert swap: transformer_2 parked in host RAM" in logs
    assert "expert swap: transformer_2 resident after" in logs
    assert "expert swap: transformer resident after" in logs  # the second request starts high-noise again
    # one swap at the first request's boundary, two in the second (its start, its boundary). (SGLang's
    # prefetch of the next expert, which swapped twice more per request on the H200, does not run on the CPU.)
    assert "(swap 3;" in logs and "(swap 4;" not in logs, logs[-3000:]
    assert "expert swap" not in resident.logs()
