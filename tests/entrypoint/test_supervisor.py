"""The supervisor's stop order, with two small child processes standing in for SGLang and the gateway."""

import signal
import socket
import subprocess
import sys
import textwrap
import threading
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


def health_server(port: int, delay: float, up: Path) -> str:
    """A process that notes when it started, then answers /health 200 once `delay` seconds have passed."""
    return textwrap.dedent(f"""
        import http.server, time
        start = time.monotonic()
        open({str(up)!r}, "w").write(str(time.time()))
        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200 if time.monotonic() - start >= {delay} else 503)
                self.end_headers()
            def log_message(self, *a):
                pass
        http.server.HTTPServer(("127.0.0.1", {port}), H).serve_forever()
    """)


def run_after(tmp_path: Path, first: str, after_url: str) -> tuple[subprocess.CompletedProcess, Path]:
    """A supervisor with `first` and a second child that waits for after_url, marks that it started, then
    exits 0 (which ends the run); returns the run and the mark file."""
    mark = tmp_path / "second-started"
    second = f"import time; open({str(mark)!r}, 'w').write(str(time.time()))"
    script = textwrap.dedent(f"""
        import sys
        from glm_image_sglang.supervisor import Child, Supervisor
        children = [Child("AR server", [sys.executable, "-c", {first!r}], {{}}),
                    Child("SGLang", [sys.executable, "-c", {second!r}], {{"PATH": "/usr/bin:/bin"}},
                          start_after={after_url!r})]
        sys.exit(Supervisor(children, "http://127.0.0.1:9/health", grace_seconds=5, startup_timeout=0).run())
    """)
    proc = subprocess.run([sys.executable, "-c", script], env={"PYTHONPATH": str(SRC)}, text=True,
                          capture_output=True, timeout=120)  # fmt: skip
    return proc, mark


def test_child_starts_once_the_other_answers_health(tmp_path):
    """A child with start_after should start only once that URL answers 200 (2 s after the first child
    started), and the launcher should say so."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    up = tmp_path / "first-up"
    proc, mark = run_after(tmp_path, health_server(port, 2, up), f"http://127.0.0.1:{port}/health")
    assert mark.exists(), proc.stdout + proc.stderr
    assert float(mark.read_text()) - float(up.read_text()) >= 2
    assert f"http://127.0.0.1:{port}/health answered 200 after" in proc.stdout and "starting SGLang" in proc.stdout


def test_waiting_child_never_starts_when_the_first_dies(tmp_path):
    """If the child it waits for exits first, the waiting child should never start and the launcher
    should exit with the first one's code and last lines."""
    first = "print('AR: out of memory', flush=True); raise SystemExit(3)"
    proc, mark = run_after(tmp_path, first, "http://127.0.0.1:9/health")
    assert proc.returncode == 3, proc.stderr
    assert "AR server exited with code 3 before it was ready" in proc.stderr and "AR: out of memory" in proc.stderr
    assert not mark.exists()


def test_startup_timeout_names_the_wait(tmp_path):
    """With nothing started yet (the only child waits for a URL that never answers), STARTUP_TIMEOUT should
    end the run with exit 5, naming the child and the URL it waited for."""
    script = textwrap.dedent("""
        import sys
        from glm_image_sglang.supervisor import Child, Supervisor
        children = [Child("SGLang", [sys.executable, "-c", "pass"], {}, start_after="http://127.0.0.1:9/health")]
        sys.exit(Supervisor(children, "http://127.0.0.1:9/health", grace_seconds=5, startup_timeout=1).run())
    """)
    proc = subprocess.run([sys.executable, "-c", script], env={"PYTHONPATH": str(SRC)}, text=True,
                          capture_output=True, timeout=120)  # fmt: skip
    assert proc.returncode == 5, proc.stdout + proc.stderr
    assert "SGLang still waiting for http://127.0.0.1:9/health" in proc.stderr
    assert "stopped before any process started" in proc.stdout


def test_health_reports_a_stalled_error_body_as_empty():
    """A 503 whose body does not come in time (a busy machine; this broke a CPU end-to-end run with
    "internal launcher error: TimeoutError") should read as (503, ""), not raise."""
    from glm_image_sglang.supervisor import health_status

    done = threading.Event()
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)

        def answer_headers_only() -> None:
            conn, _ = server.accept()
            with conn:
                conn.recv(4096)
                conn.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 100\r\n\r\n")
                done.wait(60)  # the body never comes while health_status waits for it

        thread = threading.Thread(target=answer_headers_only)
        thread.start()
        try:
            assert health_status(f"http://127.0.0.1:{server.getsockname()[1]}/health", timeout=0.5) == (503, "")
        finally:
            done.set()
            thread.join()
