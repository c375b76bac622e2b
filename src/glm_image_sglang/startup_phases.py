"""Where a start's seconds go: milestones read off SGLang's and the gateway's output as it arrives,
summed up in one line when the server is ready.

Phases: SGLang's imports (until it prints `Starting server...`), its worker's start (a spawned process
that imports everything again, until the component load begins), each component's weight load
(`Loading X from ...` / `Loaded X: ...`), SGLang's own start after the load (until the gateway sees its
/health 200), and the readiness test generation, the first generation after a start, which also compiles
kernels (a warm CACHE_DIR makes it short). Where SGLang starts only once the AR server answers
(GLM_AR_START=after-ready), that wait comes first and the imports count from SGLang's start. Checked
against SGLang 0.5.16 and 0.5.23 logs. The kernel compiles are the image plugin's lines
(kernel_compiles.py), summed over every worker.

GLM-Image's AR server (SGLang's LLM runtime, started beside the diffusion server and often the last to answer)
has phases of its own, read off its own output (0.5.23's lines): its main process's imports (until it logs
its `server_args=`), its scheduler's start (a spawned or forked process, until `Init parallel begin.`), its
weight load, its CUDA graph captures, and when it is up (`fired up and ready to roll`).
"""

from __future__ import annotations

import re
import threading
import time

SERVER_START = re.compile(r"Starting server\.\.\.")
LOAD_START = re.compile(r"Loading required components|Memory-aware component load order|Loading pipeline modules")
COMPONENT_START = re.compile(r"\bLoading (\w+) from \S")
COMPONENT_DONE = re.compile(r"\bLoaded (\w+): ")
UPSTREAM_UP = re.compile(r"answered /health 200; running a test generation")
KERNEL_COMPILED = re.compile(r"compiled CUDA kernel (\S+) \(([^)]+)\) in ([0-9.]+) s")
# the AR server's milestones: (mark, line); a "begin"/"end" pair keeps its first begin and its last end
AR_LINES = (
    ("args", re.compile(r"\bserver_args=")),
    ("scheduler", re.compile(r"\bInit parallel begin\.")),
    ("weights", re.compile(r"\bLoad weight begin\.")),
    ("weights end", re.compile(r"\bLoad weight end\.")),
    ("graphs", re.compile(r"\bCapture .*\bbegin\. ")),
    ("graphs end", re.compile(r"\bCapture .*\bend\. ")),
    ("up", re.compile(r"The server is fired up and ready to roll")),
)


class StartupPhases:
    def __init__(self, clock: float | None = None) -> None:
        self.t0 = time.monotonic() if clock is None else clock
        self.lock = threading.Lock()
        self.marks: dict[str, float] = {}
        self.components: dict[str, list[float]] = {}  # name -> [start, end]; end < 0 until its "Loaded" line
        self.compiles: list[tuple[str, float]] = []  # (kernel, seconds), as the plugin reported them
        self.waited: tuple[str, float] | None = None  # SGLang started only once another server answered
        self.ar: dict[str, float] = {}  # the AR server's milestones (AR_LINES)

    def started_after(self, what: str, now: float | None = None) -> None:
        """SGLang was started only now, once `what` answered /health (GLM_AR_START=after-ready: the AR
        server's load): its imports count from here, and the wait is a phase of its own."""
        t = (time.monotonic() if now is None else now) - self.t0
        with self.lock:
            self.waited = (what, t)

    def observe(self, line: str, now: float | None = None) -> None:
        """One output line of a child, as it arrives."""
        t = (time.monotonic() if now is None else now) - self.t0
        with self.lock:
            if "imports" not in self.marks and SERVER_START.search(line):
                self.marks["imports"] = t
            if "load" not in self.marks and LOAD_START.search(line):
                self.marks["load"] = t
            m = COMPONENT_START.search(line)
            if m and m.group(1) not in self.components:
                self.marks.setdefault("load", t)
                self.components[m.group(1)] = [t, -1.0]
            m = COMPONENT_DONE.search(line)
            if m and m.group(1) in self.components:
                self.components[m.group(1)][1] = t
                self.marks["loaded"] = t
            if "upstream" not in self.marks and UPSTREAM_UP.search(line):
                self.marks["upstream"] = t
            m = KERNEL_COMPILED.search(line)
            if m:
                self.compiles.append((m.group(1), float(m.group(3))))

    def observe_ar(self, line: str, now: float | None = None) -> None:
        """One output line of GLM-Image's AR server, as it arrives."""
        t = (time.monotonic() if now is None else now) - self.t0
        with self.lock:
            for mark, pattern in AR_LINES:
                if pattern.search(line) and (mark.endswith(" end") or mark not in self.ar):
                    self.ar[mark] = t

    def ar_summary(self) -> str:
        """The AR server's phases, as far as its output went; empty where it printed none of its lines."""
        with self.lock:
            ar = dict(self.ar)
        parts = []
        previous = 0.0
        for mark, what in (("args", "imports"), ("scheduler", "scheduler start (imports again)")):
            if mark in ar:
                parts.append(f"{what} {ar[mark] - previous:.1f} s")
                previous = ar[mark]
        for mark, what in (("weights", "weights"), ("graphs", "CUDA graphs")):
            if mark in ar and f"{mark} end" in ar:
                parts.append(f"{what} {ar[f'{mark} end'] - ar[mark]:.1f} s")
        if "up" in ar:
            parts.append(f"up at {ar['up']:.1f} s")
        return f"AR server: {', '.join(parts)}" if parts else ""

    def summary(self, until: float | None = None) -> str:
        """One line: each phase's seconds, in the order they happened, up to `until` (seconds since the
        start; default now), when the server was ready or the start was given up."""
        ready = (time.monotonic() - self.t0) if until is None else until
        with self.lock:
            marks = dict(self.marks)
            components = {k: v for k, v in self.components.items() if v[1] >= 0}
            compiles = sorted(self.compiles, key=lambda c: -c[1])
            waited = self.waited
        parts = []
        imports, load, loaded, upstream = (marks.get(k) for k in ("imports", "load", "loaded", "upstream"))
        began = 0.0
        if waited is not None:
            what, began = waited
            parts.append(f"waiting for {what} {began:.1f} s")
        if imports is not None:
            parts.append(f"SGLang imports {imports - began:.1f} s")
            if load is not None:
                parts.append(f"worker start (imports again) {load - imports:.1f} s")
        elif load is not None:
            parts.append(f"process start and imports {load - began:.1f} s")
        if components:
            each = ", ".join(f"{name} {end - start:.1f} s" for name, (start, end) in components.items())
            total = (loaded or load or 0.0) - (load or 0.0)
            parts.append(f"weights {total:.1f} s ({each})")
        if upstream is not None:
            parts.append(f"SGLang start after the load {upstream - (loaded or load or 0.0):.1f} s")
            parts.append(f"readiness generation {ready - upstream:.1f} s (the first after a start compiles kernels)")
        if compiles:
            each = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in compiles[:3])
            more = f" and {len(compiles) - 3} more" if len(compiles) > 3 else ""
            parts.append(f"CUDA kernel compiles {sum(s for _, s in compiles):.1f} s summed ({each}{more})")
        ar = self.ar_summary()
        if ar:
            parts.append(ar)
        return "; ".join(parts) or "no phase lines recognised in SGLang's output"
