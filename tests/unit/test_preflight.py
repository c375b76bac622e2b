"""Pre-flight probes and checks."""

import os
import socket
import stat

import pytest

from glm_image_sglang import preflight
from glm_image_sglang.errors import ResourceError
from glm_image_sglang.plan import Gpu, Machine, Plan
from glm_image_sglang.settings import Settings

pytestmark = pytest.mark.unit
GiB = 1024**3


def fake_smi(tmp_path, output, rc=0):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    smi = bin_dir / "nvidia-smi"
    smi.write_text(f"#!/bin/sh\ncat <<'X'\n{output}\nX\nexit {rc}\n")
    smi.chmod(smi.stat().st_mode | stat.S_IEXEC)
    return {"PATH": f"{bin_dir}:/usr/bin:/bin"}


def test_gpus_from_nvidia_smi(tmp_path):
    """GPUs should be read from nvidia-smi's CSV with their memory."""
    env = fake_smi(tmp_path, "0, NVIDIA H100 80GB HBM3, 81559\n1, NVIDIA H100 80GB HBM3, 81559")
    gpus, how = preflight.probe_gpus(env)
    assert [g.index for g in gpus] == [0, 1] and gpus[0].memory_bytes == 81559 * 1024**2 and how == "nvidia-smi"


def test_free_gpu_memory_read_with_the_total(tmp_path):
    """nvidia-smi's fourth column, the memory free now, should be kept beside the total."""
    env = fake_smi(tmp_path, "0, NVIDIA H200, 143771, 81559")
    (gpu,), _ = preflight.probe_gpus(env)
    assert (gpu.memory_bytes, gpu.free_bytes) == (143771 * 1024**2, 81559 * 1024**2)


def test_cuda_visible_devices_filters(tmp_path):
    """CUDA_VISIBLE_DEVICES should limit the GPUs counted."""
    env = fake_smi(tmp_path, "0, A, 100\n1, B, 100\n2, C, 100") | {"CUDA_VISIBLE_DEVICES": "2,0"}
    assert [g.name for g in preflight.probe_gpus(env)[0]] == ["C", "A"]


def test_no_nvidia_smi_explains(tmp_path):
    """Without nvidia-smi the reason should say the container has no GPU access."""
    gpus, how = preflight.probe_gpus({"PATH": str(tmp_path)})
    assert gpus == () and "no GPU access" in how


def test_failing_nvidia_smi_explains(tmp_path):
    """A failing nvidia-smi (driver mismatch) should carry its last message."""
    env = fake_smi(tmp_path, "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver", rc=9)
    gpus, how = preflight.probe_gpus(env)
    assert gpus == () and "couldn't communicate" in how


def test_memory_limit_cgroup_v2(tmp_path):
    """The cgroup v2 memory.max should be the host memory limit."""
    (tmp_path / "memory.max").write_text(f"{64 * GiB}\n")
    assert preflight.probe_memory_limit(tmp_path, tmp_path / "none") == 64 * GiB


def test_memory_limit_unlimited_falls_back_to_meminfo(tmp_path):
    """An unlimited cgroup ('max') should fall back to physical memory."""
    (tmp_path / "memory.max").write_text("max\n")
    (tmp_path / "meminfo").write_text("MemTotal:       2048 kB\n")
    assert preflight.probe_memory_limit(tmp_path, tmp_path / "meminfo") == 2048 * 1024


def test_memory_limit_cgroup_v1(tmp_path):
    """The cgroup v1 limit should be read when v2 is absent."""
    (tmp_path / "memory").mkdir()
    (tmp_path / "memory" / "memory.limit_in_bytes").write_text(str(32 * GiB))
    assert preflight.probe_memory_limit(tmp_path, tmp_path / "none") == 32 * GiB


def plan(offload, host, gpu):
    return Plan(1, False, 1, 1, offload, gpu, host)


def machine(host_limit, gpu_mem=80 * GiB):
    return Machine((Gpu(0, "GPU", gpu_mem),), "nvidia-smi", host_limit)


@pytest.mark.parametrize("offload", ["expert-swap", "dit-layerwise"])
def test_offload_over_host_limit_refused(offload):
    """An offload mode needing more host RAM than the pod limit should stop the start (the field's OOMKill)."""
    s = Settings.from_env({"MODEL_PATH": "/m"})
    with pytest.raises(ResourceError, match=r"needs about 100.0 GiB of host RAM .* limit is 64.0 GiB.*OOMKilled"):
        preflight.check_resources(s, plan(offload, 100 * GiB, 10 * GiB), machine(64 * GiB), "Wan")


def test_host_limit_warn_mode(capsys):
    """PREFLIGHT=warn should turn the host-memory refusal into a warning."""
    s = Settings.from_env({"MODEL_PATH": "/m", "PREFLIGHT": "warn"})
    preflight.check_resources(s, plan("dit-layerwise", 100 * GiB, 10 * GiB), machine(64 * GiB), "Wan")
    assert capsys.readouterr().err.startswith("WARNING: Wan with OFFLOAD=dit-layerwise needs about 100.0 GiB")


def test_gpu_memory_shortfall_refused():
    """An explicit OFFLOAD that cannot fit the GPU should be refused with the OFFLOAD=auto advice."""
    s = Settings.from_env({"MODEL_PATH": "/m", "OFFLOAD": "none"})
    with pytest.raises(ResourceError, match=r"needs about 90.0 GiB per GPU, the GPU has 80.0 GiB.*OFFLOAD=auto"):
        preflight.check_resources(s, plan("none", 8 * GiB, 90 * GiB), machine(64 * GiB), "Wan")


def test_gpu_shortfall_on_a_shared_gpu_says_what_is_free():
    """Memory another process holds should count: the refusal names the free memory and why it is less."""
    s = Settings.from_env({"MODEL_PATH": "/m", "OFFLOAD": "none"})
    shared = Machine((Gpu(0, "GPU", 141 * GiB, free_bytes=80 * GiB),), "nvidia-smi", None)
    with pytest.raises(ResourceError, match=r"the GPU has 80.0 GiB free \(another process holds the rest\)"):
        preflight.check_resources(s, plan("none", 8 * GiB, 90 * GiB), shared, "Wan")


def test_resources_fit_silently(capsys):
    """A plan that fits should print nothing."""
    s = Settings.from_env({"MODEL_PATH": "/m"})
    preflight.check_resources(s, plan("none", 8 * GiB, 70 * GiB), machine(64 * GiB), "Wan")
    assert capsys.readouterr().err == ""


def test_unwritable_dir_refused(tmp_path):
    """A directory that cannot be created should be refused with the group-0 advice."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ResourceError, match=r"file/outputs is not writable for UID \d+ .*--user \d+:0"):
        preflight.check_writable([blocker / "outputs"])


def test_writable_dirs_created(tmp_path):
    """Missing output/cache directories should be created."""
    preflight.check_writable([tmp_path / "a" / "b"])
    assert (tmp_path / "a" / "b").is_dir() and os.listdir(tmp_path / "a" / "b") == []


def test_port_in_use_refused():
    """A taken port should be refused before the model loads."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(ResourceError, match=rf"port {port} on 127.0.0.1 is already in use"):
            preflight.check_port("127.0.0.1", port)


def test_free_port_skips_taken():
    """free_port should skip a port that is taken or to be avoided."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert preflight.free_port("127.0.0.1", port, avoid=[port + 1]) == port + 2


def test_sglang_flags_unknown_without_sglang():
    """Without an installed SGLang the flag probe should say 'unknown' (None), not 'none'."""
    assert preflight.probe_sglang_flags() is None


# How SGLang declares its LLM runtime's decode CUDA graph cap: 0.5.23 (a dataclass field in arg_groups, the
# flag derived from its name) and 0.5.16 (a literal argparse flag in srt/server_args.py)
SRT_0_5_23 = """    cuda_graph_max_bs_decode: A[
        Optional[int], "Maximum batch size captured for the decode cuda graph."
    ] = None
    cuda_graph_max_bs_prefill: A[
        Optional[int], "Maximum batch size captured for the prefill cuda graph."
    ] = None"""
SRT_0_5_16 = """        parser.add_argument(
            "--cuda-graph-max-bs",
            type=int,
            default=ServerArgs.cuda_graph_max_bs,"""


@pytest.mark.parametrize(
    ("texts", "flag"),
    [([SRT_0_5_23], "--cuda-graph-max-bs-decode"), ([SRT_0_5_16], "--cuda-graph-max-bs"), (["nothing"], None)],
)
def test_ar_graph_flag_in_each_sglang_spelling(texts, flag):
    """The AR server's CUDA graph cap should be spelled as the installed SGLang declares it (0.5.23 would
    refuse 0.5.16's `--cuda-graph-max-bs` as an ambiguous prefix), and left out where neither is found."""
    assert preflight.ar_graph_flag_from(texts) == flag


def test_missing_compiler_refused(monkeypatch):
    """No C compiler should be refused up front (Triton's 'Failed to find C compiler' in the field)."""
    monkeypatch.setattr(preflight.shutil, "which", lambda name, **kw: None)
    with pytest.raises(ResourceError, match=r"no C compiler \(cc/gcc\) on PATH: Triton"):
        preflight.check_toolchain(require_gpu=True)


def test_missing_libnuma_refused(monkeypatch):
    """A missing libnuma.so.1 should be refused up front with the package to install."""
    monkeypatch.setattr(preflight.shutil, "which", lambda name, **kw: "/usr/bin/gcc")

    def no_lib(name):
        raise OSError(name)

    monkeypatch.setattr(preflight.ctypes, "CDLL", no_lib)
    with pytest.raises(ResourceError, match=r"libnuma.so.1 is missing.*apt-get install libnuma1"):
        preflight.check_toolchain(require_gpu=True)


def test_free_port_pair_needs_the_next_port_too():
    """SGLang binds its broker on port + 1: a port whose neighbour is taken should be skipped."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        taken = s.getsockname()[1]
        port = preflight.free_port_pair("127.0.0.1", taken - 1)
        assert port not in (taken - 1, taken) and preflight.port_free("127.0.0.1", port + 1)


def test_port_with_time_wait_connections_is_free():
    """A port whose last server closed its connections first (TIME_WAIT, as after a container restart
    in the same pod) should count as free; it was refused for 60 s on the GPU machine. The listener
    sets SO_REUSEADDR as uvicorn (the gateway, SGLang) does."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = listener.accept()
    accepted.close()  # the server side closes first: its end of the connection enters TIME_WAIT
    client.recv(1)
    client.close()
    listener.close()
    assert preflight.port_free("127.0.0.1", port)


def test_fa2_without_flash_attn_names_the_rebuild(monkeypatch):
    """ATTENTION_BACKEND=fa2 in an image without flash-attn should stop before the load, naming both ways out."""
    from glm_image_sglang.errors import ConfigError

    monkeypatch.setattr(preflight.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError) as e:
        preflight.check_attention_backend("fa2")
    assert "FLASH_ATTN=source" in str(e.value) and "ATTENTION_BACKEND=auto" in str(e.value)


def test_fa2_with_flash_attn_passes(monkeypatch):
    """With the flash-attn package installed, fa2 should pass the check."""
    monkeypatch.setattr(preflight.importlib.util, "find_spec", lambda name: object() if name == "flash_attn" else None)
    preflight.check_attention_backend("fa2")
