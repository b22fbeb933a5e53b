"""The decoder forward pass for every family in ``spec.py``, over plain tensors (no nn.Module).

Contract: ``forward(tokens, cache, start)`` runs ``tokens`` (``[1, T]``) at positions ``start..start+T``,
writes their keys and values into ``cache`` in place and returns logits (of the last position, or of all
of them). It knows nothing of tokenizers, sampling or requests.

Speed on CPU comes from doing little per token: fused QKV and gate/up weights, RoPE tables computed once,
attention on a slice of the preallocated cache with grouped queries folded into the head axis (no KV
repeat), and MoE decode that multiplies by the selected experts' weight views only. Prefill groups tokens
by expert, so each expert's weights are read once per chunk.

Shapes: B batch (1), T tokens, H hidden, Q query heads, K kv heads, G = Q / K, D head dim, S keys,
E experts, I intermediate, N tokens flattened (B * T), V vocabulary.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from corral.inference.engine.kernels import BF16Linear, DecodeKernels
from corral.inference.engine.kv_cache import KVCache
from corral.inference.engine.spec import LayerSpec, ModelSpec, MoESpec
from corral.inference.errors import ContextOverflowError

__all__ = [
    "DenseWeights", "ExpertBank", "LayerWeights", "Linear", "MoEWeights", "RoutingCounts", "Transformer",
    "Weights",
]


# The CPU flash-attention kernel behind SDPA, which also returns each query's log-sum-exp (and handles
# grouped-query heads itself). Private to torch, so its absence (another torch) falls back to a mask.
_FLASH_WITH_LSE: Callable[..., tuple[torch.Tensor, torch.Tensor]] | None = getattr(
    torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None
)

_PACKED_MAX_ROWS = 32  # inputs with more rows than this take the plain-layout matmul (prefill)


class Linear:
    """``y = x @ w.T (+ b)`` for one weight format of ``cpu.py``. Activations arrive in the compute dtype.

    * plain: the weight in the compute dtype (fp32, or bf16 under ``bf16-packed``) and, after ``pack``,
      a oneDNN-prepacked copy for few-row (decode) calls;
    * ``store_bf16``: the weight in bf16 under fp32 compute. Few-row calls run torch's bf16 GEMV, which
      accumulates in fp32 and reads half of fp32's bytes; many-row calls (prefill) upcast the weight
      for one fp32 GEMM, whose cost dwarfs the conversion;
    * ``quantize_int8``: int8 per output channel (a quarter of fp32's bytes), few-row calls through
      torch's weight-only ``_weight_int8pack_mm``, many-row calls dequantised like bf16.
    """

    __slots__ = ("bf16_gemm", "bias", "gemv", "out_features", "packed", "scales", "stored", "weight",
                 "weight_bytes")

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        self.weight: torch.Tensor | None = weight.contiguous()
        self.bias = bias
        self.out_features = int(weight.shape[0])
        self.weight_bytes = weight.numel() * weight.element_size()
        self.packed: torch.Tensor | None = None
        self.stored: torch.Tensor | None = None  # bf16 or int8 weight under fp32 compute
        # The native few-row bf16 linear (kernels/), when built: fp32 products and sums, fp32 out.
        self.gemv: BF16Linear | None = None
        # Many-row calls on bf16 weights: a bf16 GEMM (where the CPU has bf16 arithmetic) instead of
        # upcasting the weight to an fp32 one.
        self.bf16_gemm = False
        self.scales: torch.Tensor | None = None  # int8: per output channel

    def store_bf16(self, gemv: BF16Linear | None = None, bf16_gemm: bool = False) -> None:
        if self.weight is None:
            return
        self.stored = self.weight.to(torch.bfloat16).contiguous()
        self.weight_bytes = self.stored.numel() * 2
        self.weight = None
        self.gemv = gemv
        self.bf16_gemm = bf16_gemm
        if self.bias is not None:
            self.bias = self.bias.float().contiguous()

    def quantize_int8(self) -> None:
        if self.weight is None:
            return
        w = self.weight.float()
        scales = (w.abs().amax(dim=-1) / 127.0).clamp(min=1e-8)
        self.stored = torch.round(w / scales.unsqueeze(-1)).clamp(-127, 127).to(torch.int8).contiguous()
        self.scales = scales.to(torch.bfloat16)
        self.weight_bytes = self.stored.numel() + scales.numel() * 2
        self.weight = None

    def pack(self) -> None:
        """Also keep the weight in oneDNN's blocked layout, for few-row inputs (decode). Measured on
        AVX-512-bf16/AMX: about 2x faster than ``F.linear`` at one row, slower at thousands of rows
        (prefill), so both layouts are kept: weight memory doubles for the speed of both phases."""
        if self.weight is None:
            return
        self.packed = torch.ops.mkldnn._reorder_linear_weight(self.weight, None)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        few = x.numel() <= _PACKED_MAX_ROWS * x.shape[-1]
        if self.weight is not None:
            if self.packed is not None and few:
                out: torch.Tensor = torch.ops.mkldnn._linear_pointwise(
                    x, self.packed, self.bias, "none", [], ""
                )
                return out
            return F.linear(x, self.weight, self.bias)
        assert self.stored is not None
        if not few and self.bf16_gemm and self.scales is None:
            y = F.linear(x.to(torch.bfloat16), self.stored).float()
            return y if self.bias is None else y + self.bias
        if not few:
            return F.linear(x, self.dequantized(), self.bias)
        if self.scales is None and self.gemv is not None:
            return self.gemv(x.contiguous(), self.stored, self.bias)
        if self.scales is None:
            y = F.linear(x.to(torch.bfloat16), self.stored).float()
        else:
            shape = x.shape
            flat = x.reshape(-1, shape[-1]).to(torch.bfloat16)
            y = torch._weight_int8pack_mm(flat, self.stored, self.scales).float()
            y = y.view(*shape[:-1], self.out_features)
        return y if self.bias is None else y + self.bias

    def dequantized(self) -> torch.Tensor:
        """The weight in fp32 (a new tensor for stored formats)."""
        if self.weight is not None:
            return self.weight
        assert self.stored is not None
        w = self.stored.float()
        return w if self.scales is None else w * self.scales.float().unsqueeze(-1)

    def nbytes(self) -> int:
        """Bytes one few-row call reads (the packed copy when there is one, not both layouts)."""
        return self.weight_bytes + (0 if self.bias is None else self.bias.numel() * self.bias.element_size())


class ExpertBank:
    """All experts' weights of one kind stacked: ``[E, out, in]``; ``expert(e)`` is a view, never a copy."""

    __slots__ = ("linears",)

    def __init__(self, weight: torch.Tensor) -> None:
        self.linears = [Linear(weight[e]) for e in range(weight.shape[0])]

    def store_bf16(self, gemv: BF16Linear | None = None, bf16_gemm: bool = False) -> None:
        for lin in self.linears:
            lin.store_bf16(gemv, bf16_gemm)

    def quantize_int8(self) -> None:
        for lin in self.linears:
            lin.quantize_int8()

    def pack(self) -> None:
        for lin in self.linears:
            lin.pack()

    def nbytes(self) -> int:
        return sum(lin.nbytes() for lin in self.linears)


@dataclass
class DenseWeights:
    gate_up: Linear  # [2I, H]: gate rows first, then up
    down: Linear  # [H, I]


@dataclass
class MoEWeights:
    router: torch.Tensor  # [E, H]
    gate_up: ExpertBank  # [E, 2I, H]
    down: ExpertBank  # [E, H, I]
    shared: DenseWeights | None
    shared_gate: torch.Tensor | None  # [1, H]


@dataclass
class LayerWeights:
    attn_norm: torch.Tensor  # [H]
    qkv: Linear  # [(Q + 2K) * D, H]
    o: Linear  # [H, Q * D]
    q_norm: torch.Tensor | None  # [D] per head, or [Q * D] over the whole projection (OLMoE)
    k_norm: torch.Tensor | None
    ffn_norm: torch.Tensor  # [H]
    mlp: DenseWeights | MoEWeights


@dataclass
class Weights:
    embed: torch.Tensor  # [V, H]
    norm: torch.Tensor  # [H]
    lm_head: Linear  # [V, H]
    layers: list[LayerWeights]

    def linears(self) -> list[Linear | ExpertBank]:
        out: list[Linear | ExpertBank] = [self.lm_head]
        for layer in self.layers:
            out += [layer.qkv, layer.o]
            mlp = layer.mlp
            if isinstance(mlp, DenseWeights):
                out += [mlp.gate_up, mlp.down]
            else:
                out += [mlp.gate_up, mlp.down]
                if mlp.shared is not None:
                    out += [mlp.shared.gate_up, mlp.shared.down]
        return out


class RoutingCounts:
    """Tokens routed to each expert of each MoE layer since load, for the per-expert utilisation on
    ``/metrics``. Counting costs one small list update per MoE layer and step; it is thread-safe."""

    def __init__(self, spec: ModelSpec) -> None:
        self._lock = threading.Lock()
        self._counts = {
            i: [0] * ls.moe.num_experts for i, ls in enumerate(spec.layers) if ls.moe is not None
        }

    def add(self, layer: int, experts: list[int]) -> None:
        with self._lock:
            row = self._counts[layer]
            for e in experts:
                row[e] += 1

    def add_counts(self, layer: int, counts: list[int]) -> None:
        with self._lock:
            row = self._counts[layer]
            for e, c in enumerate(counts):
                row[e] += c

    def shares(self) -> dict[int, list[float]]:
        """Per MoE layer, the fraction of its routed (token, choice) pairs each expert received."""
        with self._lock:
            return {
                layer: [c / total for c in row] if (total := sum(row)) else [0.0] * len(row)
                for layer, row in self._counts.items()
            }


def _activation(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    if name in ("silu", "swish"):
        return F.silu
    if name == "gelu_pytorch_tanh":
        return lambda x: F.gelu(x, approximate="tanh")
    return F.gelu


class Transformer:
    """A loaded decoder: spec + weights + RoPE tables. Thread-compatible (no per-call state)."""

    def __init__(
        self,
        spec: ModelSpec,
        weights: Weights,
        inv_freq: torch.Tensor,
        rope_scaling: float,
        dtype: torch.dtype,
        *,
        kv_dtype: torch.dtype | None = None,
        decode_kernel: DecodeKernels | None = None,
    ) -> None:
        """``kv_dtype``: how the KV cache stores keys and values (default: the compute dtype; bf16 under
        fp32 compute halves what each decode step reads). ``decode_kernel``: the native one-query
        attention (``kernels``), used for decode steps whose head layout it supports."""
        self.spec = spec
        self.weights = weights
        self.dtype = dtype
        self.kv_dtype = kv_dtype or dtype
        supported = spec.head_dim <= 256 and spec.num_heads // spec.num_kv_heads <= 16
        self.decode_kernel = decode_kernel if supported else None
        if self.decode_kernel is None:  # torch's attention reads the cache in the compute dtype
            self.kv_dtype = dtype
        self._inv_freq = inv_freq.float()
        self._rope_scaling = rope_scaling
        self._act = _activation(spec.activation)
        self._cos = torch.empty(0)
        self._sin = torch.empty(0)
        self._grow_rope(min(spec.max_position_embeddings, 4096))
        self.routed = RoutingCounts(spec)

    # -- tables ------------------------------------------------------------------------------------
    def _grow_rope(self, length: int) -> None:
        pos = torch.arange(length, dtype=torch.float32)
        freqs = pos[:, None] * self._inv_freq[None, :]  # [T, D/2]
        sin = freqs.sin()
        if self.spec.rope_style == "half":
            freqs = torch.cat((freqs, freqs), dim=-1)  # [T, D]
            sin = torch.cat((-sin, sin), dim=-1)  # the rotation's sign, folded into the table
        self._cos = (freqs.cos() * self._rope_scaling).to(self.dtype)
        self._sin = (sin * self._rope_scaling).to(self.dtype)

    def _rope_slice(self, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        if stop > self._cos.shape[0]:
            self._grow_rope(max(stop, 2 * self._cos.shape[0]))
        return self._cos[start:stop], self._sin[start:stop]

    def new_cache(self, capacity: int) -> KVCache:
        s = self.spec
        return KVCache(s.num_layers, s.num_kv_heads, s.head_dim, capacity, self.kv_dtype)

    # -- forward -----------------------------------------------------------------------------------
    @torch.inference_mode()
    def forward(
        self, tokens: torch.Tensor, cache: KVCache, start: int, *, all_logits: bool = False
    ) -> torch.Tensor:
        """Logits ``[T, V]`` (``all_logits``) or ``[1, V]`` for the last position; fills ``cache``."""
        s, w = self.spec, self.weights
        t = int(tokens.shape[1])
        if start + t > cache.capacity:
            raise ContextOverflowError(
                f"positions up to {start + t} overflow the KV cache's {cache.capacity}"
            )
        x = F.embedding(tokens, w.embed)  # [1, T, H]
        if s.embedding_multiplier != 1.0:
            x = x * s.embedding_multiplier
        cos, sin = self._rope_slice(start, start + t)
        for i, (ls, lw) in enumerate(zip(s.layers, w.layers, strict=True)):
            h = self._attention(
                self._norm(x, lw.attn_norm), ls, lw, cache, i, start, cos, sin
            )
            x = x + h if s.residual_multiplier == 1.0 else x + h * s.residual_multiplier
            x = self._feed_forward(x, i, ls, lw)
        cache.length = max(cache.length, start + t)
        if not all_logits:
            x = x[:, -1:]
        return self._logits(x)

    @torch.inference_mode()
    def forward_batch(self, tokens: Sequence[int], caches: Sequence[KVCache]) -> torch.Tensor:
        """One decode step for B sequences at once: ``tokens[b]`` goes at position ``caches[b].length`` of
        its own cache. Every weight is read once for the whole batch (the projections, MLPs and experts
        see B rows); attention runs per sequence over its own cache. Returns logits ``[B, V]``."""
        s, w = self.spec, self.weights
        b = len(tokens)
        if b != len(caches) or b == 0:
            raise ValueError("forward_batch needs one cache per token, and at least one token")
        starts = [c.length for c in caches]
        for c in caches:
            c.reserve(1)
        x = F.embedding(torch.tensor(tokens, dtype=torch.long).view(b, 1), w.embed)  # [B, 1, H]
        if s.embedding_multiplier != 1.0:
            x = x * s.embedding_multiplier
        tables = [self._rope_slice(p, p + 1) for p in starts]
        for i, (ls, lw) in enumerate(zip(s.layers, w.layers, strict=True)):
            qkv = lw.qkv(self._norm(x, lw.attn_norm))  # [B, 1, (Q + 2K) * D]
            heads = [
                self._attend(qkv[r : r + 1], ls, lw, caches[r], i, starts[r], *tables[r]) for r in range(b)
            ]
            h = lw.o(torch.cat(heads, dim=0))
            x = x + h if s.residual_multiplier == 1.0 else x + h * s.residual_multiplier
            x = self._feed_forward(x, i, ls, lw)
        for c, p in zip(caches, starts, strict=True):
            c.length = p + 1
        return self._logits(x)

    def _feed_forward(self, x: torch.Tensor, layer: int, ls: LayerSpec, lw: LayerWeights) -> torch.Tensor:
        """``x + mlp(norm(x))`` over ``[B, T, H]``: the tokens of every row go through the MLP together."""
        s = self.spec
        shape = x.shape
        hn = self._norm(x, lw.ffn_norm).view(-1, s.hidden_size)
        if isinstance(lw.mlp, DenseWeights):
            m = self._dense(hn, lw.mlp)
        else:
            assert ls.moe is not None
            m = self._moe(hn, ls.moe, lw.mlp, layer)
        m = m.view(shape)
        return x + m if s.residual_multiplier == 1.0 else x + m * s.residual_multiplier

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        s, w = self.spec, self.weights
        x = self._norm(x, w.norm)
        logits = w.lm_head(x).view(-1, s.vocab_size)
        if s.logits_divisor != 1.0:
            logits = logits / s.logits_divisor
        return logits

    def _attention(
        self,
        x: torch.Tensor,
        ls: LayerSpec,
        lw: LayerWeights,
        cache: KVCache,
        layer: int,
        start: int,
        cos: torch.Tensor,
        sin: torch.Tensor,
    ) -> torch.Tensor:
        return lw.o(self._attend(lw.qkv(x), ls, lw, cache, layer, start, cos, sin))

    def _attend(
        self,
        qkv: torch.Tensor,
        ls: LayerSpec,
        lw: LayerWeights,
        cache: KVCache,
        layer: int,
        start: int,
        cos: torch.Tensor,
        sin: torch.Tensor,
    ) -> torch.Tensor:
        """One sequence's attention from its fused projection ``[1, T, (Q + 2K) * D]``: norms, RoPE, the
        cache write at ``start`` and attention over its cache; returns ``[1, T, Q * D]`` (before ``o``)."""
        s = self.spec
        t = int(qkv.shape[1])
        nq, nk, d = s.num_heads, s.num_kv_heads, s.head_dim
        if t == 1 and self._fused_decode(ls, qkv):
            assert self.decode_kernel is not None
            kc, vc = cache.k[layer], cache.v[layer]
            out = self.decode_kernel.rope_attention(
                qkv.view(-1), cos.view(-1), sin.view(-1), kc[0], vc[0], start, self._first_key(ls, start),
                s.softmax_scale, nq,
            )
            return out.view(1, 1, nq * d)
        q, k, v = torch.split(qkv, [nq * d, nk * d, nk * d], dim=-1)
        if ls.qk_norm == "full_rms":
            assert lw.q_norm is not None and lw.k_norm is not None
            q = F.rms_norm(q, (nq * d,), lw.q_norm, s.rms_eps)
            k = F.rms_norm(k, (nk * d,), lw.k_norm, s.rms_eps)
        if s.clip_qkv:  # OLMoE clips after its q/k norms
            q, k, v = (z.clamp(-s.clip_qkv, s.clip_qkv) for z in (q, k, v))
        if ls.use_rope and ls.qk_norm in ("none", "l2"):
            # q and k sit side by side in the fused projection: rotate them as one tensor of Q + K heads.
            qk = self._rotate(qkv[..., : (nq + nk) * d].reshape(1, t, nq + nk, d), cos, sin)
            q, k = qk[:, :, :nq], qk[:, :, nq:]
        else:
            q = q.reshape(1, t, nq, d)
            k = k.reshape(1, t, nk, d)
            if ls.qk_norm == "head_rms":
                q = F.rms_norm(q, (d,), lw.q_norm, s.rms_eps)
                k = F.rms_norm(k, (d,), lw.k_norm, s.rms_eps)
            if ls.use_rope:
                q, k = self._rotate(q, cos, sin), self._rotate(k, cos, sin)
        if ls.qk_norm == "l2":
            q = F.rms_norm(q, (d,), None, s.rms_eps)
            k = F.rms_norm(k, (d,), None, s.rms_eps)
        if ls.temperature_tuning:
            pos = torch.arange(start, start + t, dtype=torch.float32)
            scale = torch.log1p(torch.floor((pos + 1.0) / s.floor_scale)) * s.attn_scale + 1.0  # [T]
            q = q * scale.to(q.dtype).view(1, t, 1, 1)
        kc, vc = cache.k[layer], cache.v[layer]  # [1, K, C, D]
        kc[:, :, start : start + t] = k.transpose(1, 2)
        vc[:, :, start : start + t] = v.view(1, t, nk, d).transpose(1, 2)
        stop = start + t
        lo = self._first_key(ls, start)
        if t == 1 and self.decode_kernel is not None:
            # The native kernel streams each cached row once for the G query heads sharing it.
            qg = (q.reshape(nk, nq // nk, d).float() * s.softmax_scale).contiguous()
            out = self.decode_kernel.attention(qg, kc[0, :, lo:], vc[0, :, lo:], stop - lo)  # [K, G, D]
            return out.to(q.dtype).reshape(1, 1, nq * d)
        keys, values = kc[:, :, lo:stop], vc[:, :, lo:stop]  # [1, K, S, D]
        if keys.dtype != q.dtype:  # a compact cache under wider compute: widen what this call reads
            keys, values = keys.to(q.dtype), values.to(q.dtype)
        if t == 1:
            # One query position: fold the G query heads sharing a kv head into the query-length axis, so
            # attention reads K heads of cache without repeating them, and no mask is needed.
            qg = q.view(1, nk, nq // nk, d)
            out = F.scaled_dot_product_attention(qg, keys, values, scale=s.softmax_scale)  # [1, K, G, D]
            return out.reshape(1, 1, nq * d)
        qh = q.transpose(1, 2)  # [1, Q, T, D]
        if lo == 0 and start == 0 and ls.attention == "full":
            out = F.scaled_dot_product_attention(
                qh, keys, values, is_causal=True, scale=s.softmax_scale, enable_gqa=nq != nk
            )
        elif ls.attention == "full" and _FLASH_WITH_LSE is not None:
            out = self._prefix_then_causal(qh, keys, values, start - lo)
        else:
            mask = self._mask(ls, start, t, lo)
            out = F.scaled_dot_product_attention(
                qh, keys, values, attn_mask=mask, scale=s.softmax_scale, enable_gqa=nq != nk
            )
        return out.transpose(1, 2).reshape(1, t, nq * d)

    def _fused_decode(self, ls: LayerSpec, qkv: torch.Tensor) -> bool:
        """Whether one decode step of this layer can run as the native kernel's single call: RoPE in
        the "half" layout and nothing else between the projection and attention."""
        s = self.spec
        return (
            self.decode_kernel is not None and qkv.dtype == torch.float32 and ls.use_rope
            and ls.qk_norm == "none" and not s.clip_qkv and not ls.temperature_tuning
            and s.rope_style == "half"
        )

    def _prefix_then_causal(
        self, qh: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, split: int
    ) -> torch.Tensor:
        """A later prefill chunk under full attention, without a mask: its queries see every cached key
        before ``split`` (no mask needed) and the chunk's own keys causally (a top-left causal square,
        which the flash kernel skips half of). The two partial softmaxes merge through their
        log-sum-exps. A masked pass over all keys computes every (query, key) pair and measured ~1.3x
        slower per chunk; over a long prompt this keeps chunked prefill as cheap as one causal pass."""
        assert _FLASH_WITH_LSE is not None
        scale = self.spec.softmax_scale
        o1, lse1 = _FLASH_WITH_LSE(qh, keys[:, :, :split], values[:, :, :split], 0.0, False, scale=scale)
        o2, lse2 = _FLASH_WITH_LSE(qh, keys[:, :, split:], values[:, :, split:], 0.0, True, scale=scale)
        w1 = torch.sigmoid(lse1 - lse2).unsqueeze(-1)  # exp(lse1) / (exp(lse1) + exp(lse2)), [1, Q, T, 1]
        return (o2.float() + (o1.float() - o2.float()) * w1).to(qh.dtype)

    @staticmethod
    def _first_key(ls: LayerSpec, start: int) -> int:
        """The first cache position any query from ``start`` on may attend to."""
        if ls.attention == "chunked":
            return (start // ls.window) * ls.window
        if ls.attention == "sliding":
            return max(0, start - ls.window + 1)
        return 0

    @staticmethod
    def _mask(ls: LayerSpec, start: int, t: int, lo: int) -> torch.Tensor:
        """Bool ``[T, S]``: True where query ``start + i`` may see key ``lo + j``."""
        qpos = torch.arange(start, start + t).unsqueeze(1)
        kpos = torch.arange(lo, start + t).unsqueeze(0)
        mask = kpos <= qpos
        if ls.attention == "chunked":
            mask &= (kpos // ls.window) == (qpos // ls.window)
        elif ls.attention == "sliding":
            mask &= (qpos - kpos) < ls.window
        return mask

    def _rotate(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """RoPE on ``[1, T, heads, D]`` with tables ``[T, D]`` (half) or ``[T, D/2]`` (interleaved pairs)."""
        t = x.shape[1]
        if self.spec.rope_style == "half":
            # rotate_half(x) * sin == roll(x, D/2) * [-sin, sin]; the sign lives in the table.
            c, sn = cos.view(1, t, 1, -1), sin.view(1, t, 1, -1)
            return x * c + torch.roll(x, x.shape[-1] // 2, dims=-1) * sn
        c, sn = cos.view(1, t, 1, -1), sin.view(1, t, 1, -1)
        pairs = x.reshape(*x.shape[:-1], -1, 2)
        x0, x1 = pairs[..., 0], pairs[..., 1]
        return torch.stack((x0 * c - x1 * sn, x0 * sn + x1 * c), dim=-1).flatten(-2)

    def _dense(self, x: torch.Tensor, mlp: DenseWeights) -> torch.Tensor:
        gate_up = mlp.gate_up(x)
        if self._native(gate_up) and self.spec.activation in ("silu", "swish"):
            assert self.decode_kernel is not None
            return mlp.down(self.decode_kernel.silu_mul(gate_up))
        gate, up = gate_up.chunk(2, dim=-1)
        return mlp.down(self._act(gate) * up)

    def _native(self, x: torch.Tensor) -> bool:
        # fp32 rows: one pass of a native call instead of several torch ops (per-op overhead at decode,
        # memory passes at prefill).
        return self.decode_kernel is not None and x.dtype == torch.float32 and x.is_contiguous()

    def _norm(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        s = self.spec
        if self._native(x) and weight.dtype == torch.float32:
            assert self.decode_kernel is not None
            return self.decode_kernel.rms_norm(x, weight, s.rms_eps)
        return F.rms_norm(x, (s.hidden_size,), weight, s.rms_eps)

    def _moe(self, x: torch.Tensor, spec: MoESpec, mlp: MoEWeights, layer: int) -> torch.Tensor:
        """Routed (+ shared) experts over ``x`` ``[N, H]``; counts the routing for ``expert_counts``."""
        n = int(x.shape[0])
        logits = F.linear(x, mlp.router)  # [N, E]
        if spec.routing == "softmax_topk":
            probs = torch.softmax(logits.float(), dim=-1)
            weights, idx = torch.topk(probs, spec.top_k, dim=-1)
            if spec.norm_topk:
                weights = weights / weights.sum(dim=-1, keepdim=True)
        elif spec.routing == "topk_softmax":
            top, idx = torch.topk(logits.float(), spec.top_k, dim=-1)
            weights = torch.softmax(top, dim=-1)
        else:
            top, idx = torch.topk(logits, spec.top_k, dim=-1)
            weights = torch.sigmoid(top.float())
        weights = weights.to(x.dtype)  # [N, k]
        scale_input = spec.routing == "sigmoid_topk_input_scaled"
        if n * spec.top_k <= 4:
            choices = idx.tolist()
            self.routed.add(layer, [e for row in choices for e in row])
            out = self._experts_few(x, choices, weights, mlp, scale_input)
        else:
            counts = torch.bincount(idx.reshape(-1), minlength=spec.num_experts).tolist()
            self.routed.add_counts(layer, counts)
            out = self._experts_grouped(x, idx, weights, mlp, scale_input, counts)
        if mlp.shared is not None:
            shared = self._dense(x, mlp.shared)
            if mlp.shared_gate is not None:
                shared = torch.sigmoid(F.linear(x, mlp.shared_gate)) * shared
            out = out + shared
        return out

    def _expert(self, x: torch.Tensor, mlp: MoEWeights, e: int) -> torch.Tensor:
        gate, up = mlp.gate_up.linears[e](x).chunk(2, dim=-1)
        return mlp.down.linears[e](self._act(gate) * up)

    def _experts_few(
        self,
        x: torch.Tensor,
        choices_per_row: list[list[int]],
        weights: torch.Tensor,
        mlp: MoEWeights,
        scale_input: bool,
    ) -> torch.Tensor:
        """Decode: one expert call per (token, choice); only the chosen experts' weights are read."""
        rows: list[torch.Tensor] = []
        for r, (choices, ws) in enumerate(zip(choices_per_row, weights, strict=True)):
            xr = x[r : r + 1]
            acc: torch.Tensor | None = None
            for j, e in enumerate(choices):
                y = self._expert(xr * ws[j], mlp, e) if scale_input else self._expert(xr, mlp, e) * ws[j]
                acc = y if acc is None else acc + y
            assert acc is not None
            rows.append(acc)
        return rows[0] if len(rows) == 1 else torch.cat(rows, dim=0)

    def _experts_grouped(
        self,
        x: torch.Tensor,
        idx: torch.Tensor,
        weights: torch.Tensor,
        mlp: MoEWeights,
        scale_input: bool,
        counts: list[int],
    ) -> torch.Tensor:
        """Prefill and batched decode: sort (token, choice) pairs by expert and run each used expert once
        on its rows (``counts[e]`` pairs chose expert ``e``)."""
        k = idx.shape[1]
        flat = idx.reshape(-1)  # [N * k]
        order = torch.argsort(flat, stable=True)
        token_of = order // k
        w_sorted = weights.reshape(-1)[order].unsqueeze(1)  # [N * k, 1]
        out = torch.zeros_like(x)
        pos = 0
        for e, c in enumerate(counts):
            if c == 0:
                continue
            rows = token_of[pos : pos + c]
            we = w_sorted[pos : pos + c]
            xin = x.index_select(0, rows)
            y = self._expert(xin * we, mlp, e) if scale_input else self._expert(xin, mlp, e) * we
            out.index_add_(0, rows, y)
            pos += c
        return out


def active_bytes_per_token(weights: Weights, spec: ModelSpec) -> int:
    """Weight bytes one decode step reads: all dense weights + top_k of each MoE layer's experts."""
    total = weights.lm_head.nbytes()
    for ls, lw in zip(spec.layers, weights.layers, strict=True):
        total += lw.qkv.nbytes() + lw.o.nbytes()
        mlp = lw.mlp
        if isinstance(mlp, DenseWeights):
            total += mlp.gate_up.nbytes() + mlp.down.nbytes()
        else:
            assert ls.moe is not None
            per_expert = (mlp.gate_up.nbytes() + mlp.down.nbytes()) / ls.moe.num_experts
            total += math.ceil(per_expert * ls.moe.top_k) + mlp.router.numel() * mlp.router.element_size()
            if mlp.shared is not None:
                total += mlp.shared.gate_up.nbytes() + mlp.shared.down.nbytes()
    return total
