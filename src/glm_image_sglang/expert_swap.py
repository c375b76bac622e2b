"""OFFLOAD=expert-swap: Wan2.2-A14B with one of its two experts on the GPU. The other expert's weights wait in
one exactly sized host buffer (pinned where CUDA allows) and trade places with the resident expert, tensor by
tensor, when a denoising step needs it: one expert of GPU memory and one of host RAM, instead of both in host
RAM (SGLang's --dit-cpu-offload, 124 GB RSS measured) or streamed layer by layer (--dit-layerwise-offload).

A14B runs its high-noise expert (`transformer`) for the first steps and its low-noise expert
(`transformer_2`) after the boundary, so a request swaps at most twice. The patch wraps SGLang's
DenoisingStage._select_and_manage_model (0.5.16 to 0.5.23), which picks the expert for each step.

SGLang's residency manager (ResidentStrategy.prepare_for_use, 0.5.16 to 0.5.23) calls `module.to(gpu)` on the
expert a step is about to use whenever its first parameter is not on the GPU, and on the *next* one ahead of
time (ComponentResidencyManager's prefetch): on the parked expert that copied it to the GPU beside the
resident one (both experts resident after the first boundary, the host buffer orphaned: seen on an H200 as a
0.05 s "swap" of device-to-device copies). Making the expert resident there instead swapped twice for nothing
at each request's first step (the prefetch brought in the low-noise expert, the step swapped back: 2.3 s a
request on an H200, 2026-11-30). So the swapped experts' `to()` ignores moves between devices (logged once):
the swap alone places them, at the step that uses one; a dtype cast is torch's own.
"""

from __future__ import annotations

import sys
import time
from typing import Any

DENOISING = "sglang.multimodal_gen.runtime.pipelines_core.stages.denoising"
ALIGN = 256  # bytes: each parked tensor starts on this boundary inside the host buffer


def log(msg: str) -> None:
    # SGLang's logging setup does not show other packages' loggers; these lines must reach the pod log.
    print(f"glm-image-sglang expert swap: {msg}", file=sys.stderr, flush=True)


class ExpertSwap:
    """Two modules of the same architecture, one resident on `device`, the other parked in host RAM; make()
    swaps their weights in place, so each module computes with its own weights whenever it is resident."""

    def __init__(self, resident: Any, parked: Any, names: tuple[str, str] = ("expert 1", "expert 2")) -> None:
        import torch

        pairs = list(zip(resident.named_parameters(), parked.named_parameters(), strict=True))
        for (name_a, a), (name_b, b) in pairs:
            if name_a != name_b or a.shape != b.shape or a.dtype != b.dtype:
                raise ValueError(f"experts differ at {name_a} {tuple(a.shape)} / {name_b} {tuple(b.shape)}")
        self.modules = (resident, parked)
        self.names = names
        self.pairs = [(a, b) for (_, a), (_, b) in pairs]
        self.device = self.pairs[0][0].device
        self.resident = resident
        sizes = [_aligned(b.numel() * b.element_size()) for _, b in self.pairs]
        self.host = torch.empty(sum(sizes), dtype=torch.uint8)
        self.pinned = self._pin()
        offset = 0
        for (_, b), size in zip(self.pairs, sizes, strict=True):
            view = _carve(self.host, offset, b)
            view.copy_(b.data)
            b.data = view  # the parked expert's device copy is released here
            offset += size
        self.staging: dict[Any, Any] = {}  # dtype -> a device buffer as large as that dtype's largest tensor
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        self.swaps, self.ignored_moves = 0, 0
        for module in self.modules:
            module.to = _guarded_to(self, module)  # an instance attribute: shadows nn.Module.to for these two

    def _pin(self) -> bool:
        """Page-lock the host buffer in place (cudaHostRegister: no rounding up, unlike pin_memory()), so
        copies run at full PCIe/C2C speed; pageable memory still works, slower."""
        import torch

        if self.device.type != "cuda":
            return False
        try:
            rc = torch.cuda.cudart().cudaHostRegister(self.host.data_ptr(), self.host.numel(), 0)
        except (AttributeError, RuntimeError):
            return False
        return int(rc) == 0

    def make(self, module: Any) -> None:
        """Make `module` (one of the two) resident; nothing to do when it is."""
        import torch

        if module is self.resident:
            return
        if module not in self.modules:
            raise ValueError("not one of the swapped experts")
        waited = time.monotonic()
        if self.device.type == "cuda":  # the previous step's queued kernels first: the log times the copy alone
            torch.cuda.current_stream(self.device).synchronize()
        t = time.monotonic()
        waited = t - waited
        to_device = 1 if module is self.modules[1] else 0
        # SGLang calls to() from inference mode (a denoising step) and from outside it (prefetching the DiT
        # while the text encoder runs): in-place copies into tensors made in inference mode are refused
        # outside it, so every copy runs inside it.
        with torch.inference_mode():
            for pair in self.pairs:
                incoming, outgoing = pair[to_device], pair[1 - to_device]
                on_device, in_host = outgoing.data, incoming.data
                buffer = self._staging(on_device)
                buffer.copy_(in_host, non_blocking=self.pinned)  # host -> device, into a spare buffer
                in_host.copy_(on_device)  # the resident weights into the host slot just read (same stream)
                on_device.copy_(buffer)  # the wanted weights into the device slot
                incoming.data, outgoing.data = on_device, in_host
        if self.device.type == "cuda":
            torch.cuda.current_stream(self.device).synchronize()
        self.resident = module
        self.swaps += 1
        took = time.monotonic() - t
        log(f"{self.names[to_device]} resident after {took:.2f} s (swap {self.swaps}; queued GPU work {waited:.2f} s)")

    def _staging(self, like: Any) -> Any:
        import torch

        n = like.numel()
        buffer = self.staging.get(like.dtype)
        if buffer is None or buffer.numel() < n:
            largest = max(a.numel() for a, _ in self.pairs if a.dtype == like.dtype)
            buffer = self.staging[like.dtype] = torch.empty(largest, dtype=like.dtype, device=self.device)
        return buffer[:n].view(like.shape)


def _guarded_to(swap: ExpertSwap, module: Any) -> Any:
    """`module.to(...)` for a swapped expert: a move to any device is ignored (the first logged), since the swap
    makes an expert resident when a step selects it; a dtype cast or anything unparsable goes to torch's own
    Module.to."""
    import torch

    def to(*args: Any, **kwargs: Any) -> Any:
        try:
            device, dtype, _, _ = torch._C._nn._parse_to(*args, **kwargs)
        except (TypeError, RuntimeError):
            return torch.nn.Module.to(module, *args, **kwargs)
        first = next(module.parameters())
        if device is None or (dtype is not None and dtype != first.dtype):
            return torch.nn.Module.to(module, *args, **kwargs)
        if not swap.ignored_moves:
            log(f"a move of an expert to {device} ignored (and any later ones): the swap places the experts")
        swap.ignored_moves += 1
        return module

    return to


def _aligned(nbytes: int) -> int:
    return -(-nbytes // ALIGN) * ALIGN


def _carve(host: Any, offset: int, like: Any) -> Any:
    nbytes = like.numel() * like.element_size()
    return host[offset : offset + nbytes].view(like.dtype).view(like.shape)


def _gpu_in_use(swap: ExpertSwap) -> str:
    import torch

    if swap.device.type != "cuda":
        return ""
    return f"; {torch.cuda.memory_allocated(swap.device) / 2**30:.1f} GiB allocated on the GPU"


def select_with_swap(original: Any) -> Any:
    def select(self: Any, *args: Any, **kwargs: Any) -> Any:
        model, guidance = original(self, *args, **kwargs)
        if getattr(self, "transformer_2", None) is None:
            return model, guidance
        swap = getattr(self, "_glm_image_sglang_expert_swap", None)
        if swap is None:
            t = time.monotonic()
            first = model is self.transformer
            parked = self.transformer_2 if first else self.transformer
            names = ("transformer", "transformer_2") if first else ("transformer_2", "transformer")
            swap = ExpertSwap(model, parked, names)
            self._glm_image_sglang_expert_swap = swap
            kind = "pinned" if swap.pinned else "pageable"
            took = time.monotonic() - t
            size = swap.host.numel() / 2**30
            log(f"{names[1]} parked in host RAM ({size:.1f} GiB, {kind}) in {took:.1f} s{_gpu_in_use(swap)}")
        swap.make(model)  # the one place an expert becomes resident (its to() ignores SGLang's moves)
        return model, guidance

    select.__wrapped__ = original  # type: ignore[attr-defined]
    return select


def patch_denoising_stage() -> bool:
    """True once DenoisingStage picks experts through the swap (also when an earlier call patched it)."""
    import importlib

    try:
        stage = importlib.import_module(DENOISING).DenoisingStage
    except Exception:  # the module moved: nothing to patch
        return False
    original = getattr(stage, "_select_and_manage_model", None)
    if original is None:
        return False
    if not hasattr(original, "__wrapped__"):
        stage._select_and_manage_model = select_with_swap(original)
    return True
