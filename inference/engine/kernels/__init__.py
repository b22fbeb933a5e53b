"""Native kernels the engine builds for the CPU it runs on.

``decode.cpp`` is compiled once per host with ``torch.utils.cpp_extension`` for the ISA level
this process may use (``x86-64-v4`` on AVX-512 hosts, ``v3`` on AVX2 ones, ``v2`` otherwise; torch's
own cap, ``ATEN_CPU_CAPABILITY``, lowers it like any kernel). The library's name carries that level
and a digest of the source and flags, so hosts and versions never share a stale build; torch keeps it
under ``TORCH_EXTENSIONS_DIR`` (default ``~/.cache/torch_extensions``) and later processes load it in
a fraction of a second. Without a C++ compiler or ninja the engine keeps torch's operations and logs
why once: the kernels are a speed-up, never a requirement.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from corral.inference.engine.cpu import CpuFeatures, cpu_features

__all__ = [
    "BF16Linear", "DecodeAttention", "DecodeKernels", "RopeAttention", "decode_kernels", "isa_level",
]

log = logging.getLogger(__name__)

DecodeAttention = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, int], torch.Tensor]
"""``(q [K, G, D] fp32 pre-scaled, k [K, C, D], v [K, C, D], length) -> [K, G, D] fp32``."""
RopeAttention = Callable[
    [torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int, int, float, int], torch.Tensor
]
"""``(qkv [(Q + 2K) * D] fp32, cos [D], sin [D], k [K, C, D], v [K, C, D], pos, lo, scale, Q)
-> [Q * D] fp32``: RoPE ("half" layout), the cache write at ``pos`` and attention over ``[lo, pos]``."""


BF16Linear = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]
"""``(x [..., in] fp32, w [out, in] bf16, bias [out] fp32 | None) -> [..., out] fp32`` for up to 32 rows:
the weight streamed once in bf16, products and sums in fp32 (torch's bf16 GEMV rounds its output to
bf16 and needs two casts around it)."""


RmsNorm = Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]
"""``(x [..., H] fp32, w [H] fp32, eps) -> [..., H]``."""
SiluMul = Callable[[torch.Tensor], torch.Tensor]
"""``(gate_up [..., 2I] fp32) -> silu(gate) * up [..., I]``."""


@dataclass(frozen=True, slots=True)
class DecodeKernels:
    """The native kernels of one build. Each replaces several small tensor operations of a decode step,
    where per-call overhead, not arithmetic, is the cost."""

    attention: DecodeAttention
    rope_attention: RopeAttention
    linear_bf16: BF16Linear
    rms_norm: RmsNorm
    silu_mul: SiluMul

_SOURCE = Path(__file__).with_name("decode.cpp")
_LOCK = threading.Lock()
_LOADED: dict[str, DecodeKernels | None] = {}


def isa_level(features: CpuFeatures) -> str:
    """The x86-64 micro-architecture level to compile for."""
    if features.avx512:
        return "x86-64-v4"
    if features.avx2:
        return "x86-64-v3"
    return "x86-64-v2"


def _flags(level: str) -> list[str]:
    # -ffast-math lets the compiler reorder the fp32 sums into vector lanes (as BLAS does); infinities
    # stay meaningful (the running max starts at -inf).
    # -fopenmp: at::parallel_for is a header template; without it the kernels would run on one thread.
    return ["-O3", f"-march={level}", "-ffast-math", "-fno-finite-math-only", "-std=c++17", "-fopenmp"]


def _ninja_on_path() -> None:
    # The ninja wheel puts its binary beside this interpreter, which an unactivated venv leaves off PATH.
    here = str(Path(sys.executable).parent)
    if shutil.which("ninja") is None and (Path(here) / "ninja").exists():
        os.environ["PATH"] = here + os.pathsep + os.environ.get("PATH", "")


def decode_kernels(features: CpuFeatures | None = None) -> DecodeKernels | None:
    """The compiled decode kernels for this CPU, or None (with the reason logged once) when they
    cannot be built here. Thread-safe; builds at most once per process."""
    level = isa_level(features or cpu_features())
    with _LOCK:
        if level in _LOADED:
            return _LOADED[level]
        _LOADED[level] = _build(level)
        return _LOADED[level]


def _build(level: str) -> DecodeKernels | None:
    flags = _flags(level)
    digest = hashlib.sha256(_SOURCE.read_bytes() + " ".join(flags).encode()
                            + torch.__version__.encode()).hexdigest()[:10]
    name = f"corral_decode_{level.replace('-', '_')}_{digest}"
    try:
        from torch.utils import cpp_extension

        _ninja_on_path()
        build_dir = Path(cpp_extension._get_build_directory(name, verbose=False))
        build_dir.mkdir(parents=True, exist_ok=True)
        module = cpp_extension.load(name=name, sources=[str(_SOURCE)], extra_cflags=flags,
                                    extra_ldflags=["-fopenmp"], build_directory=str(build_dir),
                                    verbose=False)
    except Exception as exc:  # no compiler, no ninja, a read-only cache: torch's attention serves
        log.warning("native decode kernels unavailable (%s: %s); using torch's operations",
                    type(exc).__name__, str(exc).strip().splitlines()[-1][:200] if str(exc).strip() else "")
        return None
    return DecodeKernels(module.decode_attention, module.decode_rope_attention, module.linear_bf16,
                         module.rms_norm, module.silu_mul)
