"""What this CPU runs well, and the weight format the engine stores its matmul weights in.

Machines of one kind differ: some have AVX-512 with bf16 dot products (and AMX), others AVX2/FMA only.
oneDNN's prepacked bf16 linear aborts without avx512bw/vl/dq or avx_ne_convert, and bf16 arithmetic
without native support is emulated (slower than fp32). So the engine asks here before it converts
weights, and a format the CPU cannot run is refused with the reason, never left to crash in a kernel.

Weight formats (what a decode step reads per weight; activations and the KV cache are fp32 unless
said otherwise):

* ``bf16-packed``: bf16 weights in oneDNN's blocked layout for few-row (decode) calls plus the plain
  layout for prefill; bf16 activations and KV. Needs native bf16 and oneDNN's bf16 path.
* ``bf16``: bf16 weights (half of fp32's bytes) read by torch's bf16 GEMV with fp32 accumulation at
  decode, upcast per call for prefill. Fast wherever AVX2 is; the default without native bf16.
* ``int8``: int8 weights per output channel (a quarter of fp32's bytes), weight-only. Smaller, a little
  less faithful (measured on SmolLM2: 93.5% of next-token choices equal fp32's, bf16 99%).
* ``fp32``: fp32 weights. Runs anywhere.

Dynamic int8 (activations quantised per call, fbgemm) was measured too and left out: 2.7x fp32's decode
speed on AVX2, but SmolLM2's next-token choices matched fp32's at only 37% of positions.

``ATEN_CPU_CAPABILITY`` (torch's own switch, e.g. ``avx2``) caps what is detected: with it a host with
AVX-512 behaves as an AVX2-only host, which is how both classes are tested on either.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal, get_args

import torch

from corral.inference.errors import InferenceError

__all__ = [
    "WEIGHT_FORMATS", "CpuFeatures", "WeightFormat", "compute_dtype", "cpu_features", "resolve_format",
]

WeightFormat = Literal["bf16-packed", "bf16", "int8", "fp32"]
WEIGHT_FORMATS: tuple[WeightFormat, ...] = get_args(WeightFormat)

_AVX512_CORE = frozenset({"avx512f", "avx512bw", "avx512vl", "avx512dq"})


@dataclass(frozen=True, slots=True)
class CpuFeatures:
    """The CPU's flags (``/proc/cpuinfo``) as far as torch's kernel level allows using them."""

    capability: str  # torch's dispatch level: "AVX512", "AVX2", "DEFAULT", …
    flags: frozenset[str]

    @property
    def avx512(self) -> bool:
        return self.capability.startswith("AVX512") and self.flags >= _AVX512_CORE

    @property
    def avx2(self) -> bool:
        return self.capability.startswith(("AVX2", "AVX512")) and {"avx2", "fma"} <= self.flags

    @property
    def bf16_arithmetic(self) -> bool:
        """Native bf16 dot products (AVX-512-bf16 or AMX): bf16 matmuls beat fp32 ones."""
        return self.avx512 and bool({"avx512_bf16", "amx_bf16"} & self.flags)

    @property
    def packed_bf16(self) -> bool:
        """oneDNN's prepacked bf16 linear runs: it needs avx512bw/vl/dq (or avx_ne_convert)."""
        return self.avx512 or ("avx_ne_convert" in self.flags and self.avx2)

    def refusal(self, fmt: WeightFormat) -> str | None:
        """Why this CPU cannot run ``fmt``, or None when it can."""
        if fmt == "bf16-packed" and not self.packed_bf16:
            return "oneDNN's prepacked bf16 weights need avx512bw, avx512vl and avx512dq (or avx_ne_convert)"
        return None

    def best_format(self) -> WeightFormat:
        """Packed bf16 where bf16 arithmetic is native, bf16 storage where AVX2 is, else fp32."""
        if self.bf16_arithmetic and self.packed_bf16:
            return "bf16-packed"
        return "bf16" if self.avx2 else "fp32"

    def describe(self) -> str:
        """One line for logs and benchmark rows, e.g. ``AVX512 (avx512_bf16, amx_bf16)``."""
        extra = sorted({"avx512_bf16", "amx_bf16", "avx512_vnni", "avx_ne_convert", "avx_vnni"} & self.flags)
        if not self.avx512:  # capped: flags above the kernel level are not used
            extra = [f for f in extra if not f.startswith(("avx512", "amx"))]
        return f"{self.capability}" + (f" ({', '.join(extra)})" if extra else "")


def _proc_flags() -> frozenset[str]:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="ascii", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


@lru_cache(maxsize=1)
def cpu_features() -> CpuFeatures:
    """This process's CPU features (read once)."""
    try:
        capability = str(torch.backends.cpu.get_cpu_capability())
    except (AttributeError, RuntimeError):
        capability = "DEFAULT"
    return CpuFeatures(capability, _proc_flags())


def resolve_format(weights: str, features: CpuFeatures | None = None) -> WeightFormat:
    """``auto`` → the CPU's best format; a named format is checked against the CPU. Raises
    ``InferenceError`` naming the format and what it needs when the CPU cannot run it."""
    feats = features or cpu_features()
    if weights == "auto":
        return feats.best_format()
    if weights not in WEIGHT_FORMATS:
        raise InferenceError(f"weight format {weights!r} is not one of auto, {', '.join(WEIGHT_FORMATS)}")
    fmt: WeightFormat = weights  # narrowed to the literal's values by the check above
    why = feats.refusal(fmt)
    if why is not None:
        raise InferenceError(f"this CPU ({feats.describe()}) cannot use {fmt} weights: {why}")
    return fmt


def compute_dtype(fmt: WeightFormat) -> torch.dtype:
    """The dtype of activations and the KV cache under ``fmt``."""
    return torch.bfloat16 if fmt == "bf16-packed" else torch.float32
