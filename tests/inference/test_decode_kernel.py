"""The native decode-attention kernel gives torch's attention, for every cache layout the engine makes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from corral.inference.engine.cpu import CpuFeatures, cpu_features
from corral.inference.engine.kernels import decode_kernels, isa_level


@pytest.fixture(scope="module")
def kernel():  # type: ignore[no-untyped-def]
    k = decode_kernels()
    if k is None:
        pytest.skip("no C++ compiler or ninja on this host: the engine uses torch's attention (logged)")
    return k.attention


@pytest.fixture(scope="module")
def kernels():  # type: ignore[no-untyped-def]
    k = decode_kernels()
    if k is None:
        pytest.skip("no C++ compiler or ninja on this host: the engine uses torch's attention (logged)")
    return k


def _reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, length: int) -> torch.Tensor:
    keys = k[:, :length].float().unsqueeze(0)
    values = v[:, :length].float().unsqueeze(0)
    out = F.scaled_dot_product_attention(q.unsqueeze(0), keys, values, scale=1.0)
    return out[0]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(("heads", "groups", "dim"), [(3, 3, 64), (2, 4, 128), (1, 1, 8), (4, 16, 24)])
@pytest.mark.parametrize("length", [1, 255, 256, 257, 1000])
def test_kernel_matches_torch_attention(kernel, dtype: torch.dtype, heads: int, groups: int, dim: int,  # type: ignore[no-untyped-def]
                                        length: int) -> None:
    torch.manual_seed(length + dim)
    capacity = length + 7  # the cache is larger than what is attended, as in the engine
    k = torch.randn(heads, capacity, dim).to(dtype)
    v = torch.randn(heads, capacity, dim).to(dtype)
    q = torch.randn(heads, groups, dim) * dim**-0.5
    got = kernel(q.contiguous(), k, v, length)
    assert got.shape == (heads, groups, dim) and got.dtype == torch.float32
    torch.testing.assert_close(got, _reference(q, k, v, length), rtol=2e-5, atol=2e-5)


def test_kernel_reads_a_window_of_the_cache(kernel) -> None:  # type: ignore[no-untyped-def]
    # Sliding-window layers attend the last rows only: the engine passes a view starting at `lo`.
    torch.manual_seed(1)
    k = torch.randn(2, 600, 64)
    v = torch.randn(2, 600, 64)
    q = torch.randn(2, 3, 64) / 8
    got = kernel(q, k[:, 100:], v[:, 100:], 400)
    torch.testing.assert_close(got, _reference(q, k[:, 100:], v[:, 100:], 400), rtol=2e-5, atol=2e-5)


def test_kernel_handles_extreme_scores(kernel) -> None:  # type: ignore[no-untyped-def]
    # Large logits must not overflow: the running max is subtracted before exponentiating.
    k = torch.full((1, 300, 64), 30.0)
    k[0, 7] = -30.0
    v = torch.arange(300, dtype=torch.float32).view(1, 300, 1).expand(1, 300, 64).contiguous()
    q = torch.ones(1, 2, 64)
    got = kernel(q, k, v, 300)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, _reference(q, k, v, 300), rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize(
    ("q", "k", "length", "message"),
    [
        (torch.randn(2, 3, 64, dtype=torch.float64), torch.randn(2, 10, 64), 5, "fp32"),
        (torch.randn(2, 3, 64), torch.randn(2, 10, 64), 11, "length"),
        (torch.randn(2, 3, 64), torch.randn(2, 10, 64), 0, "length"),
        (torch.randn(2, 17, 64), torch.randn(2, 10, 64), 5, "16 query heads"),
        (torch.randn(3, 3, 64), torch.randn(2, 10, 64), 5, "disagree"),
        (torch.randn(2, 3, 300), torch.randn(2, 10, 300), 5, "head size"),
    ],
)
def test_kernel_refuses_bad_shapes_with_a_message(kernel, q: torch.Tensor, k: torch.Tensor, length: int,  # type: ignore[no-untyped-def]
                                                  message: str) -> None:
    with pytest.raises(RuntimeError, match=message):
        kernel(q, k, k.clone(), length)


def _rope_half(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    return x * cos + torch.roll(x, x.shape[-1] // 2, dims=-1) * sin


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(("nq", "nk", "dim", "pos", "lo"), [(9, 3, 64, 700, 0), (4, 4, 16, 0, 0),
                                                           (8, 2, 128, 300, 44)])
def test_fused_step_matches_rope_then_cache_write_then_attention(  # type: ignore[no-untyped-def]
    kernels, dtype: torch.dtype, nq: int, nk: int, dim: int, pos: int, lo: int
) -> None:
    torch.manual_seed(pos + dim)
    capacity = pos + 5
    kc = torch.randn(nk, capacity, dim).to(dtype)
    vc = torch.randn(nk, capacity, dim).to(dtype)
    k_ref, v_ref = kc.clone(), vc.clone()
    qkv = torch.randn((nq + 2 * nk) * dim)
    angle = torch.rand(dim // 2) * 6.28
    cos = torch.cat((angle.cos(), angle.cos()))
    sin = torch.cat((-angle.sin(), angle.sin()))
    scale = dim**-0.5

    got = kernels.rope_attention(qkv, cos, sin, kc, vc, pos, lo, scale, nq)

    q, k, v = torch.split(qkv, [nq * dim, nk * dim, nk * dim])
    q = _rope_half(q.view(nq, dim), cos, sin) * scale
    k_ref[:, pos] = _rope_half(k.view(nk, dim), cos, sin).to(dtype)  # torch's rounding to bf16
    v_ref[:, pos] = v.view(nk, dim).to(dtype)
    # The written row: values exactly, keys within the rounding of the compute dtype (fused multiply-adds
    # round once where torch's separate multiply and add round twice).
    assert torch.equal(vc, v_ref)
    torch.testing.assert_close(kc.float(), k_ref.float(), rtol=1e-5 if dtype == torch.float32 else 8e-3,
                               atol=1e-6 if dtype == torch.float32 else 1e-2)
    want = _reference(q.view(nk, nq // nk, dim), k_ref[:, lo:], v_ref[:, lo:], pos - lo + 1)
    torch.testing.assert_close(got, want.reshape(-1), rtol=2e-5, atol=2e-5)


def test_fused_step_refuses_a_position_outside_the_cache(kernels) -> None:  # type: ignore[no-untyped-def]
    kc = torch.zeros(2, 10, 8)
    with pytest.raises(RuntimeError, match="outside the cache"):
        kernels.rope_attention(torch.zeros(6 * 8), torch.ones(8), torch.zeros(8), kc, kc.clone(), 10, 0,
                               1.0, 2)


def test_the_build_targets_the_isa_torch_may_use() -> None:
    # AVX-512 hosts get x86-64-v4, AVX2 hosts (or torch capped to AVX2) v3, anything else v2: a build
    # never uses instructions the CPU (or torch's cap) rules out.
    flags = frozenset({"avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512dq"})
    assert isa_level(CpuFeatures("AVX512", flags)) == "x86-64-v4"
    assert isa_level(CpuFeatures("AVX2", flags)) == "x86-64-v3"
    assert isa_level(CpuFeatures("DEFAULT", flags)) == "x86-64-v2"
    assert isa_level(cpu_features()) in ("x86-64-v4", "x86-64-v3", "x86-64-v2")


@pytest.mark.parametrize("rows", [1, 3, 32])
@pytest.mark.parametrize(("out_features", "in_features"), [(960, 576), (7, 33), (49, 1536)])
def test_bf16_linear_keeps_fp32_products_and_sums(kernels, rows: int, out_features: int,  # type: ignore[no-untyped-def]
                                                  in_features: int) -> None:
    torch.manual_seed(rows + in_features)
    x = torch.randn(1, rows, in_features)
    w = torch.randn(out_features, in_features).to(torch.bfloat16)
    bias = torch.randn(out_features)
    want = x @ w.float().T + bias
    got = kernels.linear_bf16(x, w, bias)
    assert got.shape == (1, rows, out_features) and got.dtype == torch.float32
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)
    # torch's bf16 GEMV rounds its output to bf16; this one does not.
    rounded = F.linear(x.to(torch.bfloat16), w).float() + bias
    assert (got - want).abs().max() < (rounded - want).abs().max()
    torch.testing.assert_close(kernels.linear_bf16(x, w, None), x @ w.float().T, rtol=1e-5, atol=1e-4)


def test_bf16_linear_refuses_what_it_cannot_take(kernels) -> None:  # type: ignore[no-untyped-def]
    w = torch.zeros(4, 8, dtype=torch.bfloat16)
    with pytest.raises(RuntimeError, match="1 to 32 rows"):
        kernels.linear_bf16(torch.zeros(33, 8), w, None)
    with pytest.raises(RuntimeError, match="input features"):
        kernels.linear_bf16(torch.zeros(1, 9), w, None)
    with pytest.raises(RuntimeError, match="bf16"):
        kernels.linear_bf16(torch.zeros(1, 8), w.float(), None)


@pytest.mark.parametrize("shape", [(1, 1, 576), (4, 64), (1, 7)])
def test_rms_norm_and_silu_mul_match_torch(kernels, shape: tuple[int, ...]) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(sum(shape))
    x = torch.randn(*shape) * 3
    w = torch.randn(shape[-1])
    torch.testing.assert_close(kernels.rms_norm(x, w, 1e-5), F.rms_norm(x, (shape[-1],), w, 1e-5),
                               rtol=1e-5, atol=1e-5)
    gate_up = torch.randn(*shape[:-1], 2 * shape[-1]) * 8  # large gates: exp must not overflow
    gate, up = gate_up.chunk(2, dim=-1)
    torch.testing.assert_close(kernels.silu_mul(gate_up), F.silu(gate) * up, rtol=1e-5, atol=1e-5)
