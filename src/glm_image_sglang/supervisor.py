"""Runs SGLang as a child process: streams its output, reports loading progress, forwards SIGTERM
with a bounded grace period, and propagates its exit code.

Readiness here is SGLang's own /health; the gateway (a later layer) proves it with a generation.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Sequence
from types import FrameType

PROGRESS_EVERY = 10.0  # seconds between "still loading" lines
KILL_MARGIN = 5.0  # seconds after the graceful-shutdown timeout before SIGKILL


def log(message: str) -> None:
    print(f"[launcher] {message}", flush=True)


def error(message: str) -> None:
    print(f"ERROR: {message}", file=sys.stderr, flush=True)


def health_status(url: str, timeout: float = 2.0) -> int | None:
    """HTTP status of url, or None while nothing listens (SGLang keeps its port closed while loading)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as e:
        return int(e.code)
    except (OSError, ValueError):
        return None


class Supervisor:
    def __init__(
        self,
        argv: Sequence[str],
        env: dict[str, str],
        health_url: str,
        grace_seconds: float,
        startup_timeout: float,
        tail_lines: int = 40,
    ) -> None:
        self.argv = list(argv)
        self.env = env
        self.health_url = health_url
        self.grace = grace_seconds + KILL_MARGIN
        self.startup_timeout = startup_timeout
        self.tail: deque[str] = deque(maxlen=tail_lines)
        self.stop_requested_at: float | None = None
        self.timed_out = False
        self.proc: subprocess.Popen[str] | None = None

    def _pump(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            self.tail.append(line.rstrip("\n"))

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        if self.stop_requested_at is None:
            self.stop_requested_at = time.monotonic()
            log(f"{signal.Signals(signum).name} received: stopping SGLang (grace {self.grace:.0f} s)")
            self.proc.send_signal(signal.SIGTERM)

    def _kill_group(self) -> None:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    def run(self) -> int:
        try:
            self.proc = subprocess.Popen(
                self.argv,
                env=self.env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                errors="replace",
                bufsize=1,
                start_new_session=True,  # its own process group: SIGKILL reaches every worker
            )
        except OSError as e:
            error(f"cannot start {self.argv[0]}: {e.strerror}. Is SGLang installed in this image?")
            return 5
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        pump = threading.Thread(target=self._pump, daemon=True)
        pump.start()
        started = time.monotonic()
        next_progress = started + PROGRESS_EVERY
        ready = False
        while self.proc.poll() is None:
            now = time.monotonic()
            if self.stop_requested_at is not None:
                if now - self.stop_requested_at > self.grace:
                    error(f"SGLang did not stop within {self.grace:.0f} s of SIGTERM: killing it")
                    self._kill_group()
                    self.proc.wait()
                    pump.join(timeout=5)
                    return 137
            elif not ready:
                status = health_status(self.health_url)
                if status == 200:
                    ready = True
                    log(f"ready: {self.health_url} answered 200 after {now - started:.0f} s")
                elif now >= next_progress:
                    state = "port closed" if status is None else f"/health {status}"
                    log(f"still loading... ({now - started:.0f} s, {state})")
                    next_progress = now + PROGRESS_EVERY
                if not ready and self.startup_timeout and now - started > self.startup_timeout:
                    error(
                        f"SGLang was not ready after {self.startup_timeout:.0f} s (STARTUP_TIMEOUT); stopping it. "
                        f"Raise STARTUP_TIMEOUT if the model loads from slow storage."
                    )
                    self.timed_out = True
                    self._on_signal(signal.SIGTERM, None)
            time.sleep(0.5)
        # reap any workers left behind in the group
        self._kill_group()
        pump.join(timeout=5)
        rc = self.proc.returncode
        code = 128 - rc if rc < 0 else rc
        if self.stop_requested_at is not None:
            log(f"SGLang stopped (exit {code}) after {time.monotonic() - self.stop_requested_at:.1f} s")
            if self.timed_out:
                return 5
            return 0 if code in (0, 128 + signal.SIGTERM) else code
        phase = "while serving" if ready else "before it was ready"
        if code == 0 and not ready:
            code = 5
        if code != 0:
            last = "\n  ".join(self.tail) if self.tail else "(no output)"
            error(f"SGLang exited with code {code} {phase}. Last lines of its output:\n  {last}")
        return code
