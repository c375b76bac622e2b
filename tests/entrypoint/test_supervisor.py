"""The supervisor's stop order, with two small child processes standing in for SGLang and the gateway."""

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.entrypoint

SRC = Path(__file__).parents[2] / "src"


def child(name: str, log: Path, term_seconds: float) -> str:
    """A process that logs when it gets SIGTERM and when it exits, term_seconds later (-1: never)."""
    return textwrap.dedent(f"""
        import signal, sys, time
        def on_term(*_):
            open({str(log)!r}, "a").write(f"{name} term {{time.time()}}\\n")
            if {term_seconds} < 0:
                return
            time.sleep({term_seconds})
            open({str(log)!r}, "a").write(f"{name} exit {{time.time()}}\\n")
            sys.exit(0)
        signal.signal(signal.SIGTERM, on_term)
        open({str(log)!r}, "a").write(f"{name} up {{time.time()}}\\n")
        while True:
            time.sleep(0.1)
    """)


def supervise(tmp_path: Path, gateway_term_seconds: float, grace: int) -> tuple[subprocess.CompletedProcess, dict]:
    log = tmp_path / "events"
    script = textwrap.dedent(f"""
        import sys
        from glm_image_sglang.supervisor import Child, Supervisor
        children = [Child("SGLang", [sys.executable, "-c", {child("sglang", log, 0)!r}], {{}}),
                    Child("gateway", [sys.executable, "-c", {child("gateway", log, gateway_term_seconds)!r}], {{}},
                          drains=True)]
        sys.exit(Supervisor(children, "http://127.0.0.1:9/health", grace_seconds={grace}, startup_timeout=0).run())
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], env={"PYTHONPATH": str(SRC)}, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.monotonic() + 60
    while not (log.exists() and all(f"{who} up" in log.read_text() for who in ("sglang", "gateway"))):
        assert time.monotonic() < deadline and proc.poll() is None  # both children handle SIGTERM from now on
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    events = {}
    for line in log.read_text().splitlines():
        who, what, when = line.split()
        events[f"{who} {what}"] = float(when)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), events


def test_sglang_is_stopped_after_the_gateway_drained(tmp_path):
    """SIGTERM should reach the gateway first; SGLang only once the gateway has exited."""
    proc, events = supervise(tmp_path, gateway_term_seconds=2, grace=30)
    assert proc.returncode == 0, proc.stderr
    assert "gateway finishes running work (up to 30 s)" in proc.stdout
    assert events["sglang term"] >= events["gateway exit"] >= events["gateway term"] + 2


def test_sglang_is_stopped_when_the_gateway_overstays(tmp_path):
    """A gateway that does not exit within the grace period should not keep SGLang running: SGLang gets
    SIGTERM shortly after it, and the stuck gateway is killed at grace + 10 s."""
    proc, events = supervise(tmp_path, gateway_term_seconds=-1, grace=1)
    assert proc.returncode == 137
    assert 1 <= events["sglang term"] - events["gateway term"] < 5
    assert "not stopped within 11 s of SIGTERM: killing" in proc.stderr
