"""OFFLOAD=expert-swap: Wan2.2-A14B with one of its two experts on the GPU. The other expert's weights wait in
one exactly sized host buffer (pinned where CUDA allows) and trade places with the resident expert, tensor by
tensor, when a denoising step needs it: one expert of GPU memory and one of host RAM, instead of both in host
RAM (SGLang's --dit-cpu-offload, 124 GB RSS measured) or streamed layer by layer (--dit-layerwise-offload).

A14B runs its high-noise expert (`transformer`) for the first steps and its low-noise expert
(`transformer_2`) after the boundary, so a request swaps at most twice. The patch wraps SGLang's
DenoisingStage._select_and_manage_model (0.5.16 to 0.5.23), which picks the expert for each step.
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

    def __init__(self, resident: Any, parked: Any) -> None:
        import torch

        pairs = list(zip(resident.named_parameters(), parked.named_parameters(), strict=True))
        for (name_a, a), (name_b, b) in pairs:
            if name_a != name_b or a.shape != b.shape or a.dtype != b.dtype:
                raise ValueError(f"experts differ at {name_a} {tuple(a.shape)} / {name_b} {tuple(b.shape)}")
        self.modules = (resident, parked)
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
        self.swaps, self.seconds = 0, 0.0

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
        t = time.monotonic()
        to_device = 1 if module is self.modules[1] else 0
        for pair in self.pairs:
            incoming, outgoing = pair[to_device], pair[1 - to_device]
            on_device, in_host = outgoing.data, incoming.data
            buffer = self._staging(on_device)
            buffer.copy_(in_host, non_blocking=self.pinned)  # host -> device, into a spare buffer
            in_host.copy_(on_device)  # the resident weights into the host slot just read (same stream: in order)
            on_device.copy_(buffer)  # the wanted weights into the device slot
            incoming.data, outgoing.data = on_device, in_host
        if self.device.type == "cuda":
            torch.cuda.current_stream(self.device).synchronize()
        self.resident = module
        self.swaps += 1
        self.seconds += time.monotonic() - t

    def _staging(self, like: Any) -> Any:
        import torch

        n = like.numel()
        buffer = self.staging.get(like.dtype)
        if buffer is None or buffer.numel() < n:
            largest = max(a.numel() for a, _ in self.pairs if a.dtype == like.dtype)
            buffer = self.staging[like.dtype] = torch.empty(largest, dtype=like.dtype, device=self.device)
        return buffer[:n].view(like.shape)


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
            parked = self.transformer_2 if model is self.transformer else self.transformer
            swap = ExpertSwap(model, parked)
            self._glm_image_sglang_expert_swap = swap
            name = "transformer_2" if parked is self.transformer_2 else "transformer"
            kind = "pinned" if swap.pinned else "pageable"
            took = time.monotonic() - t
            size = swap.host.numel() / 2**30
            log(f"{name} parked in host RAM ({size:.1f} GiB, {kind}) in {took:.1f} s{_gpu_in_use(swap)}")
        before = swap.seconds
        swap.make(model)
        if swap.seconds != before:
            name = "transformer" if model is self.transformer else "transformer_2"
            log(f"{name} resident after {swap.seconds - before:.2f} s (swap {swap.swaps})")
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
