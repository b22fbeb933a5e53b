// The engine's native decode kernels. Attention: one query position per sequence over its KV cache,
// for grouped-query heads.
//
// The G query heads that share a kv head read each cached key and value row once, so the cache is
// streamed from memory once per step. The rows are split into chunks that run in parallel (split-K,
// as flash-decoding does) and merged through their running max and sum. Keys and values may be
// stored as fp32 or bf16; arithmetic is fp32. The loops are written for the compiler to vectorise
// for the ISA this file is built for (see kernels/__init__.py).

#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

namespace {

constexpr int kChunk = 256;
constexpr int kMaxGroup = 16;

// A row of D values widened to fp32. bf16 is the top half of an fp32: a shift, which vectorises.
constexpr int kMaxHeadDim = 256;

union Row {
  float f[kMaxHeadDim];
  uint32_t u[kMaxHeadDim];
};

inline float to_f32(uint16_t x) {
  const uint32_t bits = static_cast<uint32_t>(x) << 16;
  float out;
  std::memcpy(&out, &bits, sizeof(out));
  return out;
}

// exp(x) for x <= 0 (scores minus their max), as 2^n * 2^f with a degree-6 polynomial for 2^f:
// relative error ~2e-7, and unlike libm's expf the loop around it vectorises.
inline float exp_nonpositive(float x) {
  x = x < -87.f ? -87.f : x;
  const float t = x * 1.44269504088896341f;  // log2(e)
  const float n = std::floor(t);
  const float f = t - n;  // [0, 1)
  float p = 1.535336188319500e-4f;
  p = p * f + 1.339887440266574e-3f;
  p = p * f + 9.618437357674640e-3f;
  p = p * f + 5.550332471162809e-2f;
  p = p * f + 2.402264791363012e-1f;
  p = p * f + 6.931472028550421e-1f;
  p = p * f + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
}

// D > 0: the head size, known at compile time (64, 128: unrolled); D == 0: any size up to 256, given
// at run time as `dim` (slower; small test models use it).
template <int D>
inline void widen(const float* src, Row& row, int dim) {
  const int n = D ? D : dim;
  for (int d = 0; d < n; ++d) row.f[d] = src[d];
}
template <int D>
inline void widen(const uint16_t* src, Row& row, int dim) {
  const int n = D ? D : dim;
  for (int d = 0; d < n; ++d) row.u[d] = static_cast<uint32_t>(src[d]) << 16;
}

// One chunk of rows [s0, s1) of one kv head: the G queries' max, sum of exponentials and
// unnormalised outputs.
template <typename T, int D>
void chunk(const float* q, int g_count, int dim, const T* keys, const T* values, int64_t s0,
           int64_t s1, float* m_out, float* l_out, float* o_out) {
  alignas(64) float scores[kMaxGroup][kChunk];
  alignas(64) Row row;
  const int dd = D ? D : dim;
  const int n = static_cast<int>(s1 - s0);
  for (int s = 0; s < n; ++s) {
    const T* kr = keys + (s0 + s) * dd;
    widen<D>(kr, row, dim);
    for (int g = 0; g < g_count; ++g) {
      const float* qg = q + g * dd;
      float acc = 0.f;
      for (int d = 0; d < dd; ++d) acc += qg[d] * row.f[d];
      scores[g][s] = acc;
    }
  }
  for (int g = 0; g < g_count; ++g) {
    float* sg = scores[g];
    float m = -std::numeric_limits<float>::infinity();
    for (int s = 0; s < n; ++s) m = sg[s] > m ? sg[s] : m;
    float l = 0.f;
    for (int s = 0; s < n; ++s) {
      const float e = exp_nonpositive(sg[s] - m);
      sg[s] = e;
      l += e;
    }
    m_out[g] = m;
    l_out[g] = l;
  }
  std::fill(o_out, o_out + g_count * dd, 0.f);
  for (int s = 0; s < n; ++s) {
    const T* vr = values + (s0 + s) * dd;
    widen<D>(vr, row, dim);
    for (int g = 0; g < g_count; ++g) {
      const float p = scores[g][s];
      float* og = o_out + g * dd;
      for (int d = 0; d < dd; ++d) og[d] += p * row.f[d];
    }
  }
}

template <typename T, int D>
void run(const float* q, const T* k, const T* v, int64_t heads, int64_t groups, int dim,
         int64_t head_stride, int64_t length, float* out) {
  const int64_t dd = D ? D : dim;
  const int64_t chunks = (length + kChunk - 1) / kChunk;
  const int64_t units = heads * chunks;
  std::vector<float> m(units * groups), l(units * groups), o(units * groups * dd);
  at::parallel_for(0, units, 1, [&](int64_t begin, int64_t end) {
    for (int64_t u = begin; u < end; ++u) {
      const int64_t h = u / chunks, c = u % chunks;
      const int64_t s0 = c * kChunk, s1 = std::min(length, s0 + kChunk);
      chunk<T, D>(q + h * groups * dd, static_cast<int>(groups), dim, k + h * head_stride,
                  v + h * head_stride, s0, s1, &m[u * groups], &l[u * groups], &o[u * groups * dd]);
    }
  });
  for (int64_t h = 0; h < heads; ++h) {
    for (int64_t g = 0; g < groups; ++g) {
      float big = -std::numeric_limits<float>::infinity();
      for (int64_t c = 0; c < chunks; ++c) big = std::max(big, m[(h * chunks + c) * groups + g]);
      float total = 0.f;
      float* dst = out + (h * groups + g) * dd;
      std::fill(dst, dst + dd, 0.f);
      for (int64_t c = 0; c < chunks; ++c) {
        const int64_t i = (h * chunks + c) * groups + g;
        const float w = std::exp(m[i] - big);
        total += w * l[i];
        const float* src = &o[i * dd];
        for (int64_t d = 0; d < dd; ++d) dst[d] += w * src[d];
      }
      const float inv = 1.f / total;
      for (int64_t d = 0; d < dd; ++d) dst[d] *= inv;
    }
  }
}

template <int D>
void dispatch(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, int64_t length,
              torch::Tensor& out) {
  const int64_t heads = k.size(0), groups = q.size(1), stride = k.stride(0);
  const int dim = static_cast<int>(q.size(2));
  const float* qp = q.data_ptr<float>();
  float* op = out.data_ptr<float>();
  if (k.scalar_type() == torch::kBFloat16) {
    run<uint16_t, D>(qp, reinterpret_cast<const uint16_t*>(k.data_ptr()),
                     reinterpret_cast<const uint16_t*>(v.data_ptr()), heads, groups, dim, stride,
                     length, op);
  } else {
    run<float, D>(qp, k.data_ptr<float>(), v.data_ptr<float>(), heads, groups, dim, stride, length, op);
  }
}

}  // namespace

// q: [K, G, D] fp32, already multiplied by the softmax scale. k, v: [K, C, D] (fp32 or bf16, rows
// contiguous, heads C * D apart); the first `length` rows are attended. Returns [K, G, D] fp32.
torch::Tensor decode_attention(torch::Tensor q, torch::Tensor k, torch::Tensor v, int64_t length) {
  TORCH_CHECK(q.dim() == 3 && k.dim() == 3 && v.dim() == 3, "q, k, v must be [K, G, D], [K, C, D]");
  TORCH_CHECK(q.scalar_type() == torch::kFloat32 && q.is_contiguous(), "q must be contiguous fp32");
  TORCH_CHECK(k.scalar_type() == v.scalar_type(), "k and v must share a dtype");
  TORCH_CHECK(k.scalar_type() == torch::kFloat32 || k.scalar_type() == torch::kBFloat16,
              "k and v must be fp32 or bf16");
  TORCH_CHECK(k.stride(2) == 1 && v.stride(2) == 1 && k.stride(1) == k.size(2) &&
                  v.stride(1) == v.size(2) && k.stride(0) == v.stride(0),
              "k and v rows must be contiguous with equal head strides");
  TORCH_CHECK(q.size(0) == k.size(0) && q.size(2) == k.size(2), "q and k disagree on heads or size");
  TORCH_CHECK(q.size(1) >= 1 && q.size(1) <= kMaxGroup, "at most 16 query heads per kv head");
  TORCH_CHECK(length >= 1 && length <= k.size(1), "length out of the cache's range");
  auto out = torch::empty_like(q);
  switch (q.size(2)) {
    case 64: dispatch<64>(q, k, v, length, out); break;
    case 128: dispatch<128>(q, k, v, length, out); break;
    default:
      TORCH_CHECK(q.size(2) >= 1 && q.size(2) <= kMaxHeadDim, "head size above ", kMaxHeadDim);
      dispatch<0>(q, k, v, length, out);
  }
  return out;
}

namespace {

// fp32 -> bf16 with round-to-nearest-even, as torch's .to(torch.bfloat16) rounds (NaN kept a NaN).
inline uint16_t to_bf16(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof(bits));
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40u);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(bits >> 16);
}

inline void store(float* dst, float x) { *dst = x; }
inline void store(uint16_t* dst, float x) { *dst = to_bf16(x); }

// RoPE in the "half" layout: out[d] = x[d] * cos[d] + x[(d + D/2) % D] * sin[d], the rotation's sign
// folded into the sin table.
inline void rope_half(const float* x, const float* cos, const float* sin, int dim, float scale,
                      float* out) {
  const int half = dim / 2;
  for (int d = 0; d < half; ++d) out[d] = (x[d] * cos[d] + x[d + half] * sin[d]) * scale;
  for (int d = half; d < dim; ++d) out[d] = (x[d] * cos[d] + x[d - half] * sin[d]) * scale;
}

template <typename T>
void write_kv(const float* k, const float* v, const float* cos, const float* sin, int64_t heads,
              int dim, T* kc, T* vc, int64_t head_stride, int64_t pos) {
  alignas(64) float row[kMaxHeadDim];
  for (int64_t h = 0; h < heads; ++h) {
    rope_half(k + h * dim, cos, sin, dim, 1.f, row);
    T* kd = kc + h * head_stride + pos * dim;
    T* vd = vc + h * head_stride + pos * dim;
    for (int d = 0; d < dim; ++d) store(kd + d, row[d]);
    for (int d = 0; d < dim; ++d) store(vd + d, v[h * dim + d]);
  }
}

}  // namespace

// One decode step of a layer whose heads use RoPE ("half" layout) and no q/k norms, from the fused
// projection of one token: rotates q and k, writes k and v into the cache at `pos`, and attends the
// rows [lo, pos]. qkv: [(nq + 2 * K) * D] fp32; cos, sin: [D] fp32; k, v: the layer's cache [K, C, D]
// (fp32 or bf16). Returns [nq * D] fp32. Replaces a dozen small tensor operations per layer.
torch::Tensor decode_rope_attention(torch::Tensor qkv, torch::Tensor cos, torch::Tensor sin,
                                    torch::Tensor k, torch::Tensor v, int64_t pos, int64_t lo,
                                    double scale, int64_t num_heads) {
  TORCH_CHECK(qkv.scalar_type() == torch::kFloat32 && qkv.is_contiguous(), "qkv must be contiguous fp32");
  TORCH_CHECK(cos.scalar_type() == torch::kFloat32 && sin.scalar_type() == torch::kFloat32 &&
                  cos.is_contiguous() && sin.is_contiguous(), "cos and sin must be contiguous fp32");
  TORCH_CHECK(k.dim() == 3 && v.dim() == 3 && k.scalar_type() == v.scalar_type(), "bad cache");
  const int64_t heads = k.size(0), dim = k.size(2);
  TORCH_CHECK(dim % 2 == 0 && dim <= kMaxHeadDim, "head size must be even and at most 256");
  TORCH_CHECK(num_heads % heads == 0 && num_heads / heads <= kMaxGroup, "bad query head count");
  TORCH_CHECK(qkv.numel() == (num_heads + 2 * heads) * dim, "qkv has the wrong size");
  TORCH_CHECK(cos.numel() == dim && sin.numel() == dim, "cos and sin must hold one position");
  TORCH_CHECK(pos >= 0 && pos < k.size(1) && lo >= 0 && lo <= pos, "position outside the cache");
  TORCH_CHECK(k.stride(2) == 1 && k.stride(1) == dim && v.stride(2) == 1 && v.stride(1) == dim &&
                  k.stride(0) == v.stride(0), "cache rows must be contiguous with equal head strides");
  const float* x = qkv.data_ptr<float>();
  const float* c = cos.data_ptr<float>();
  const float* sn = sin.data_ptr<float>();
  auto q = torch::empty({heads, num_heads / heads, dim}, qkv.options());
  float* qp = q.data_ptr<float>();
  for (int64_t h = 0; h < num_heads; ++h)
    rope_half(x + h * dim, c, sn, static_cast<int>(dim), static_cast<float>(scale), qp + h * dim);
  const float* kx = x + num_heads * dim;
  const float* vx = kx + heads * dim;
  if (k.scalar_type() == torch::kBFloat16) {
    write_kv(kx, vx, c, sn, heads, static_cast<int>(dim), reinterpret_cast<uint16_t*>(k.data_ptr()),
             reinterpret_cast<uint16_t*>(v.data_ptr()), k.stride(0), pos);
  } else {
    TORCH_CHECK(k.scalar_type() == torch::kFloat32, "the cache must be fp32 or bf16");
    write_kv(kx, vx, c, sn, heads, static_cast<int>(dim), k.data_ptr<float>(), v.data_ptr<float>(),
             k.stride(0), pos);
  }
  auto window_k = k.narrow(1, lo, k.size(1) - lo);
  auto window_v = v.narrow(1, lo, v.size(1) - lo);
  return decode_attention(q, window_k, window_v, pos - lo + 1).view({num_heads * dim});
}

namespace {

constexpr int kLanes = 32;  // independent partial sums per dot product: hides the FMA latency
constexpr int64_t kMaxRows = 32;

// y[n, o] = sum_i x[n, i] * w[o, i] for output rows [o0, o1): each weight row is read once and
// widened from bf16 in registers, for all the (few) input rows at once.
// One input row: the common decode case, with the partial sums kept in registers.
void gemv_one(const float* x, int64_t in, const uint16_t* w, int64_t o0, int64_t o1,
              const float* bias, float* y) {
  const int64_t main = in - in % kLanes;
  for (int64_t o = o0; o < o1; ++o) {
    const uint16_t* wr = w + o * in;
    float acc[kLanes] = {};
    for (int64_t i = 0; i < main; i += kLanes) {
      for (int j = 0; j < kLanes; ++j) {
        const uint32_t bits = static_cast<uint32_t>(wr[i + j]) << 16;
        float wf;
        std::memcpy(&wf, &bits, sizeof(wf));
        acc[j] += x[i + j] * wf;
      }
    }
    float total = 0.f;
    for (int j = 0; j < kLanes; ++j) total += acc[j];
    for (int64_t i = main; i < in; ++i) total += x[i] * to_f32(wr[i]);
    y[o] = total + (bias ? bias[o] : 0.f);
  }
}

void gemv_rows(const float* x, int64_t rows, int64_t in, const uint16_t* w, int64_t o0, int64_t o1,
               int64_t out_features, const float* bias, float* y) {
  if (rows == 1) {
    gemv_one(x, in, w, o0, o1, bias, y);
    return;
  }
  const int64_t main = in - in % kLanes;
  for (int64_t o = o0; o < o1; ++o) {
    const uint16_t* wr = w + o * in;
    alignas(64) float acc[kMaxRows][kLanes];
    for (int64_t n = 0; n < rows; ++n)
      for (int j = 0; j < kLanes; ++j) acc[n][j] = 0.f;
    for (int64_t i = 0; i < main; i += kLanes) {
      alignas(64) Row wf;
      for (int j = 0; j < kLanes; ++j) wf.u[j] = static_cast<uint32_t>(wr[i + j]) << 16;
      for (int64_t n = 0; n < rows; ++n) {
        const float* xn = x + n * in + i;
        for (int j = 0; j < kLanes; ++j) acc[n][j] += xn[j] * wf.f[j];
      }
    }
    for (int64_t n = 0; n < rows; ++n) {
      float total = 0.f;
      for (int j = 0; j < kLanes; ++j) total += acc[n][j];
      for (int64_t i = main; i < in; ++i) total += x[n * in + i] * to_f32(wr[i]);
      y[n * out_features + o] = total + (bias ? bias[o] : 0.f);
    }
  }
}

}  // namespace

// x [N, in] fp32 (N <= 32) times a bf16 weight [out, in], fp32 out [N, out] (+ bias [out] fp32): the
// weight streamed once in its stored half-width form, the products and sums in fp32.
torch::Tensor linear_bf16(torch::Tensor x, torch::Tensor w, c10::optional<torch::Tensor> bias) {
  TORCH_CHECK(x.scalar_type() == torch::kFloat32 && x.is_contiguous(), "x must be contiguous fp32");
  TORCH_CHECK(w.scalar_type() == torch::kBFloat16 && w.is_contiguous() && w.dim() == 2,
              "w must be a contiguous 2-d bf16 tensor");
  const int64_t in = w.size(1), out_features = w.size(0);
  TORCH_CHECK(x.size(-1) == in, "x's last dimension must match w's input features");
  const int64_t rows = x.numel() / in;
  TORCH_CHECK(rows >= 1 && rows <= kMaxRows, "linear_bf16 takes 1 to 32 rows");
  const float* bp = nullptr;
  if (bias.has_value()) {
    TORCH_CHECK(bias->scalar_type() == torch::kFloat32 && bias->is_contiguous() &&
                    bias->numel() == out_features, "bias must be fp32 [out]");
    bp = bias->data_ptr<float>();
  }
  std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
  shape.back() = out_features;
  auto y = torch::empty(shape, x.options());
  const float* xp = x.data_ptr<float>();
  const uint16_t* wp = reinterpret_cast<const uint16_t*>(w.data_ptr());
  float* yp = y.data_ptr<float>();
  // Waking the other threads costs more than a small weight takes to stream on one: split only
  // where each thread gets at least ~1 MB of weights (a 2-core decode step: 13.7 ms, 14.1 at 256 KB).
  const int64_t grain = std::max<int64_t>(16, (int64_t{1} << 20) / (2 * in));
  at::parallel_for(0, out_features, grain, [&](int64_t begin, int64_t end) {
    gemv_rows(xp, rows, in, wp, begin, end, out_features, bp, yp);
  });
  return y;
}

// RMS norm of each row of x [..., H] fp32 times w [H] fp32: one pass instead of torch's five ops.
torch::Tensor rms_norm(torch::Tensor x, torch::Tensor w, double eps) {
  TORCH_CHECK(x.scalar_type() == torch::kFloat32 && x.is_contiguous(), "x must be contiguous fp32");
  TORCH_CHECK(w.scalar_type() == torch::kFloat32 && w.is_contiguous() && w.dim() == 1 &&
                  w.size(0) == x.size(-1), "w must be fp32 [H]");
  const int64_t h = w.size(0), rows = x.numel() / h;
  auto y = torch::empty_like(x);
  const float* xp = x.data_ptr<float>();
  const float* wp = w.data_ptr<float>();
  float* yp = y.data_ptr<float>();
  at::parallel_for(0, rows, std::max<int64_t>(1, 65536 / h), [&](int64_t r0, int64_t r1) {
  for (int64_t r = r0; r < r1; ++r) {
    const float* xr = xp + r * h;
    float acc[kLanes] = {};
    const int64_t main = h - h % kLanes;
    for (int64_t i = 0; i < main; i += kLanes)
      for (int j = 0; j < kLanes; ++j) acc[j] += xr[i + j] * xr[i + j];
    float sq = 0.f;
    for (int j = 0; j < kLanes; ++j) sq += acc[j];
    for (int64_t i = main; i < h; ++i) sq += xr[i] * xr[i];
    const float inv = 1.f / std::sqrt(sq / static_cast<float>(h) + static_cast<float>(eps));
    float* yr = yp + r * h;
    for (int64_t i = 0; i < h; ++i) yr[i] = xr[i] * inv * wp[i];
  }
  });
  return y;
}

// silu(gate) * up for gate_up [..., 2I] fp32 (gate the first half of each row): [..., I].
torch::Tensor silu_mul(torch::Tensor gate_up) {
  TORCH_CHECK(gate_up.scalar_type() == torch::kFloat32 && gate_up.is_contiguous() &&
                  gate_up.size(-1) % 2 == 0, "gate_up must be contiguous fp32 [..., 2I]");
  const int64_t width = gate_up.size(-1), half = width / 2, rows = gate_up.numel() / width;
  std::vector<int64_t> shape(gate_up.sizes().begin(), gate_up.sizes().end());
  shape.back() = half;
  auto y = torch::empty(shape, gate_up.options());
  const float* gp = gate_up.data_ptr<float>();
  float* yp = y.data_ptr<float>();
  at::parallel_for(0, rows, std::max<int64_t>(1, 65536 / width), [&](int64_t r0, int64_t r1) {
  for (int64_t r = r0; r < r1; ++r) {
    const float* g = gp + r * width;
    const float* u = g + half;
    float* yr = yp + r * half;
    for (int64_t i = 0; i < half; ++i) {
      // silu(g) = g / (1 + exp(-g)); exp of -|g| keeps the argument non-positive.
      const float e = exp_nonpositive(-std::fabs(g[i]));
      const float sig = g[i] >= 0.f ? 1.f / (1.f + e) : e / (1.f + e);
      yr[i] = g[i] * sig * u[i];
    }
  }
  });
  return y;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("rms_norm", &rms_norm, "RMS norm of fp32 rows");
  m.def("silu_mul", &silu_mul, "silu(gate) * up over a fused gate/up projection");
  m.def("linear_bf16", &linear_bf16, "few-row fp32 x bf16-weight linear with fp32 accumulation",
        py::arg("x"), py::arg("w"), py::arg("bias") = py::none());
  m.def("decode_attention", &decode_attention, "grouped-query decode attention over a KV cache");
  m.def("decode_rope_attention", &decode_rope_attention,
        "RoPE, cache write and decode attention for one token of one layer");
}
