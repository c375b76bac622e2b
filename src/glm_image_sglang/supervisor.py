"""Runs SGLang (and the gateway in front of it) as child processes: streams their output, reports
loading progress, stops them in order on SIGTERM within a bounded time, and exits when any child exits.
A child may wait for another's /health before it starts (GLM_AR=srt: the diffusion server, whose loader
checks the AR server once, after the AR server).

Stopping: the gateway gets SIGTERM first and drains (running generations finish, finished videos can
still be fetched, new work gets 503) for up to GRACEFUL_SHUTDOWN_TIMEOUT; SGLang gets SIGTERM once the
gateway has exited; whatever still runs KILL_MARGIN seconds after that timeout is SIGKILLed.

Readiness is read from the public /health: the gateway's (a test generation succeeded) or, without
the gateway, SGLang's own.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import FrameType

from .startup_phases import StartupPhases

PROGRESS_EVERY = 10.0  # seconds between "still loading" lines
KILL_MARGIN = 10.0  # seconds after the graceful-shutdown timeout before SIGKILL (SGLang's own exit)
OVERDUE = 2.0  # seconds after the timeout before the others are stopped without waiting for a draining child


def log(message: str) -> None:
    print(f"[launcher] {message}", flush=True)


def error(message: str) -> None:
    print(f"ERROR: {message}", file=sys.stderr, flush=True)


def health_status(url: str, timeout: float = 2.0) -> tuple[int | None, str]:
    """HTTP status and body of url; (None, "") while nothing listens (SGLang loads with its port closed).
    A body that does not come within the timeout (a busy machine) is reported empty, never raised."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status), response.read(500).decode(errors="replace")
    except urllib.error.HTTPError as e:
        return int(e.code), _body(e)
    except (OSError, ValueError):
        return None, ""


def _body(e: urllib.error.HTTPError) -> str:
    """The start of an error response's body; "" if it does not arrive (reading it can time out too)."""
    try:
        return e.read(500).decode(errors="replace")
    except (OSError, ValueError):
        return ""


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM if the launcher itself dies (even by SIGKILL), so no
    orphaned SGLang keeps the ports and the GPU (Linux prctl PR_SET_PDEATHSIG)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


# A child started while the output threads run cannot use preexec_fn (not safe with threads): this
# wrapper sets the same parent-death signal in the child itself, then becomes the program.
DEATH_SIGNAL_EXEC = (
    "import ctypes, os, signal, sys; ctypes.CDLL('libc.so.6').prctl(1, signal.SIGTERM); "
    "os.execvp(sys.argv[1], sys.argv[1:])"
)


@dataclass
class Child:
    name: str
    argv: Sequence[str]
    env: dict[str, str]
    drains: bool = False  # stopped first; the others once it has exited (the gateway finishes running work)
    start_after: str | None = None  # started once this URL answers 200 (GLM_AR=srt: the AR server's /health)
    ar_server: bool = False  # GLM-Image's AR server: its output has start-up phases of its own
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=40))
    proc: subprocess.Popen[str] | None = None
    pump: threading.Thread | None = None
    terminated: bool = False
    on_line: Callable[[str], None] | None = None  # sees every output line as it arrives

    def start(self, threads_running: bool = False) -> None:
        argv = list(self.argv)
        if threads_running:
            if shutil.which(argv[0], path=self.env.get("PATH")) is None:
                raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), argv[0])
            argv = [sys.executable, "-c", DEATH_SIGNAL_EXEC, *argv]
        self.proc = subprocess.Popen(
            argv,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            bufsize=1,
            start_new_session=True,  # its own process group: SIGKILL reaches every worker
            preexec_fn=None if threads_running else _die_with_parent,
        )

    def start_pump(self) -> None:
        self.pump = threading.Thread(target=self._pump, daemon=True)
        self.pump.start()

    def _pump(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            self.tail.append(line.rstrip("\n"))
            if self.on_line is not None:
                self.on_line(line)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.running:
            assert self.proc is not None
            self.proc.send_signal(sig)

    def terminate(self) -> None:
        """SIGTERM, once (a second one makes some servers skip their graceful shutdown); a child that is not
        running (not started yet, or gone) is left alone."""
        if not self.terminated and self.running:
            self.terminated = True
            self.signal(signal.SIGTERM)

    def kill_group(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)

    def exit_code(self) -> int:
        assert self.proc is not None and self.proc.returncode is not None
        rc = self.proc.returncode
        return 128 - rc if rc < 0 else rc


class Supervisor:
    def __init__(
        self,
        children: Sequence[Child],
        health_url: str,
        grace_seconds: float,
        startup_timeout: float,
    ) -> None:
        self.children = list(children)
        self.health_url = health_url
        self.drain_seconds = grace_seconds
        self.grace = grace_seconds + KILL_MARGIN
        self.startup_timeout = startup_timeout
        self.stop_requested_at: float | None = None
        self.timed_out = False
        self.phases = StartupPhases()
        self.died: Child | None = None  # the child whose own exit ended the run (no stop was asked for)
        self.ready = False  # health_url answered 200

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.stop_requested_at is None:
            self.stop_requested_at = time.monotonic()
            draining = [c for c in self.children if c.drains and c.running]
            if draining:
                names = ", ".join(c.name for c in draining)
                log(
                    f"{signal.Signals(signum).name} received: {names} finishes running work "
                    f"(up to {self.drain_seconds:.0f} s), then the rest stops (killed after {self.grace:.0f} s)"
                )
            else:
                log(f"{signal.Signals(signum).name} received: stopping (grace {self.grace:.0f} s)")
            for child in draining or self.children:
                child.terminate()

    def _stop_the_rest(self, now: float) -> None:
        """Draining children get SIGTERM at once (also one started after the signal came); once none of them
        runs (or it is overdue), the others."""
        assert self.stop_requested_at is not None
        for child in self.children:
            if child.drains:
                child.terminate()
        overdue = now - self.stop_requested_at > self.drain_seconds + OVERDUE
        if overdue or not any(c.drains and c.running for c in self.children):
            for child in self.children:
                child.terminate()

    def _start(self, child: Child, threads_running: bool) -> bool:
        try:
            child.start(threads_running)
        except OSError as e:
            error(f"cannot start {child.name} ({child.argv[0]}): {e.strerror}. Is it installed in this image?")
            self._stop_all()
            return False
        return True

    def _start_waiting(self, started: float) -> bool:
        """Start each child whose start_after URL now answers 200; False if one cannot start."""
        for child in self.children:
            if child.proc is None and child.start_after and health_status(child.start_after)[0] == 200:
                log(f"{child.start_after} answered 200 after {time.monotonic() - started:.0f} s: starting {child.name}")
                self.phases.started_after(child.start_after)
                if not self._start(child, threads_running=True):
                    return False
                self._follow(child)
        return True

    def _follow(self, child: Child) -> None:
        """Pump a started child's output, its lines read for the start-up phases (the AR server's apart)."""
        child.on_line = self.phases.observe_ar if child.ar_server else self.phases.observe
        child.start_pump()

    def _alive(self) -> bool:
        """Every started child runs (one still waiting for its start_after URL is not counted); with none
        started yet, until a stop is asked for."""
        started = [c for c in self.children if c.proc is not None]
        if not started:
            return self.stop_requested_at is None
        return all(c.running for c in started)

    def run(self) -> int:
        # the handlers first: a SIGTERM that comes while the children start must stop them, not the launcher
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        for child in self.children:  # all children first: preexec_fn must not run while threads exist
            if child.start_after is None and not self._start(child, threads_running=False):
                return 5
        started = time.monotonic()
        self.phases = StartupPhases(started)
        for child in self.children:
            if child.proc is not None:
                self._follow(child)
        next_progress = started + PROGRESS_EVERY
        while self._alive():
            now = time.monotonic()
            if self.stop_requested_at is None and not self._start_waiting(started):
                return 5
            if self.stop_requested_at is not None:
                self._stop_the_rest(now)
                if now - self.stop_requested_at > self.grace:
                    error(f"not stopped within {self.grace:.0f} s of SIGTERM: killing")
                    self._reap()
                    return 137
            elif not self.ready:
                status, body = health_status(self.health_url)
                if status == 200:
                    self.ready = True
                    log(f"ready: {self.health_url} answered 200 after {now - started:.0f} s")
                    log(f"start-up phases: {self.phases.summary(now - started)}")
                elif now >= next_progress:
                    state = "port closed" if status is None else f"/health {status} {body.strip()[:200]}"
                    log(f"still loading... ({now - started:.0f} s, {state})")
                    next_progress = now + PROGRESS_EVERY
                if not self.ready and self.startup_timeout and now - started > self.startup_timeout:
                    state = "port closed" if status is None else f"/health {status} {body.strip()[:300]}"
                    waiting = [c for c in self.children if c.proc is None and c.start_after]
                    if waiting:
                        state += "; " + ", ".join(f"{c.name} still waiting for {c.start_after}" for c in waiting)
                    error(
                        f"not ready after {self.startup_timeout:.0f} s (STARTUP_TIMEOUT; last state: {state}); "
                        f"stopping. Raise STARTUP_TIMEOUT if the model loads from slow storage. Phases so far: "
                        f"{self.phases.summary(now - started)}"
                    )
                    self.timed_out = True
                    self._on_signal(signal.SIGTERM, None)
            time.sleep(0.5)
        return self._after_exit(self.ready)

    def _after_exit(self, ready: bool) -> int:
        if all(c.proc is None for c in self.children):  # stopped while every child still waited
            log("stopped before any process started")
            return 5 if self.timed_out else 0
        first = next(c for c in self.children if c.proc is not None and not c.running)
        if self.stop_requested_at is None:
            # one child died on its own: take the others down too
            self.died = first
            self.stop_requested_at = time.monotonic()
            for child in self.children:
                child.terminate()
            self._wait_all(time.monotonic() + self.grace)
            self._reap()
            code = first.exit_code()
            phase = "while serving" if ready else "before it was ready"
            code = code or (1 if ready else 5)
            last = "\n  ".join(first.tail) if first.tail else "(no output)"
            error(f"{first.name} exited with code {first.exit_code()} {phase}. Last lines of its output:\n  {last}")
            return code
        if not self._wait_all(self.stop_requested_at + self.grace, stopping=True):
            error(f"not stopped within {self.grace:.0f} s of SIGTERM: killing")
            self._reap()
            return 137
        self._reap()
        codes = {c.name: c.exit_code() for c in self.children if c.proc is not None}
        log(f"stopped after {time.monotonic() - self.stop_requested_at:.1f} s (exit codes: {codes})")
        if self.timed_out:
            return 5
        bad = [code for code in codes.values() if code not in (0, 128 + signal.SIGTERM)]
        return bad[0] if bad else 0

    def _stop_all(self) -> None:
        for child in self.children:
            child.terminate()
        self._reap()

    def _wait_all(self, deadline: float, stopping: bool = False) -> bool:
        """Wait until every child has exited or the deadline passes; True if all exited. stopping: the
        ordered stop is under way (the others get SIGTERM once the draining child has exited)."""
        while any(c.running for c in self.children) and time.monotonic() < deadline:
            if stopping:
                self._stop_the_rest(time.monotonic())
            time.sleep(0.2)
        return not any(c.running for c in self.children)

    def _reap(self) -> None:
        """SIGKILL what is left of each process group (workers included), wait, drain the output."""
        for child in self.children:
            child.kill_group()
            if child.proc is not None:
                child.proc.wait()
            if child.pump is not None:
                child.pump.join(timeout=5)
