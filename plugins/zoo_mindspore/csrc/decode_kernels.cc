// Fused fp32 CPU kernels for one decode step of a Llama model, as MindSpore
// AOT custom operators (ops.Custom(func_type="aot")).
//
// MindSpore ships fused RMSNorm, RoPE, SwiGLU and attention kernels for Ascend
// only; on CPU a decode step is ~170 small kernels whose single-row MatMuls are
// 2-3x slower than torch's. These kernels do the same arithmetic in 5 kernels
// per layer: RMSNorm fused into the projection that reads it; RoPE, the KV
// cache write and attention in one; SwiGLU fused into w1|w3; the residual add
// fused into wo and w2. Weights are (out, in) rows as in torch.
//
// Every function has MindSpore's AOT signature: params holds the inputs, then
// the outputs; shapes/ndims describe them in the same order. Return 0 on
// success; anything else makes MindSpore raise.
//
// Threads: zoo_set_threads(n) (called through ctypes on the same library)
// splits the rows of large projections over n OpenMP threads.

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace {

int g_threads = 1;
constexpr int64_t kParallelMinWork = int64_t(1) << 18;  // multiply-adds below which one thread is faster

bool all_fp32(int first, int count, const char **dtypes) {
  for (int i = first; i < first + count; ++i) {
    if (std::strcmp(dtypes[i], "float32") != 0) return false;
  }
  return true;
}

int64_t rows_of(int index, int *ndims, int64_t **shapes) {
  int64_t rows = 1;
  for (int i = 0; i < ndims[index] - 1; ++i) rows *= shapes[index][i];
  return rows;
}

int64_t last_dim(int index, int *ndims, int64_t **shapes) { return shapes[index][ndims[index] - 1]; }

// y[m, n] = dot(w[n, :], x[m, :]) for every row m and n in [n0, n1). Four weight rows at a time share each
// load of x, and each block of four weight rows is reused from cache for every row of x (batched decode
// reads the weights once, not once per sequence).
void dot_rows(const float *x, int64_t m_dim, const float *w, int64_t k_dim, int64_t n0, int64_t n1, float *y,
              int64_t n_dim) {
  int64_t n = n0;
  for (; n + 4 <= n1; n += 4) {
    const float *w0 = w + n * k_dim, *w1 = w0 + k_dim, *w2 = w1 + k_dim, *w3 = w2 + k_dim;
    for (int64_t m = 0; m < m_dim; ++m) {
      const float *xm = x + m * k_dim;
      float s0 = 0.f, s1 = 0.f, s2 = 0.f, s3 = 0.f;
#pragma omp simd reduction(+ : s0, s1, s2, s3)
      for (int64_t k = 0; k < k_dim; ++k) {
        const float xv = xm[k];
        s0 += xv * w0[k];
        s1 += xv * w1[k];
        s2 += xv * w2[k];
        s3 += xv * w3[k];
      }
      float *ym = y + m * n_dim + n;
      ym[0] = s0;
      ym[1] = s1;
      ym[2] = s2;
      ym[3] = s3;
    }
  }
  for (; n < n1; ++n) {
    const float *wr = w + n * k_dim;
    for (int64_t m = 0; m < m_dim; ++m) {
      const float *xm = x + m * k_dim;
      float s = 0.f;
#pragma omp simd reduction(+ : s)
      for (int64_t k = 0; k < k_dim; ++k) s += xm[k] * wr[k];
      y[m * n_dim + n] = s;
    }
  }
}

// y (m, n) = x (m, k) @ w (n, k)^T, rows of w split over threads when the product is large.
void project(const float *x, const float *w, int64_t m_dim, int64_t k_dim, int64_t n_dim, float *y) {
#ifdef _OPENMP
  const int threads = (g_threads > 1 && m_dim * n_dim * k_dim >= kParallelMinWork) ? g_threads : 1;
#else
  const int threads = 1;
#endif
  if (threads == 1) {
    dot_rows(x, m_dim, w, k_dim, 0, n_dim, y, n_dim);
    return;
  }
#pragma omp parallel num_threads(threads)
  {
#ifdef _OPENMP
    const int64_t tid = omp_get_thread_num();
#else
    const int64_t tid = 0;
#endif
    const int64_t chunk = ((n_dim + threads - 1) / threads + 3) / 4 * 4;
    const int64_t n0 = tid * chunk, n1 = n0 + chunk < n_dim ? n0 + chunk : n_dim;
    if (n0 < n1) dot_rows(x, m_dim, w, k_dim, n0, n1, y, n_dim);
  }
}

// out (m, k) = g * (x * rsqrt(mean(x^2) + eps)), HF's / Meta's order of operations.
void rms_norm(const float *x, const float *g, float eps, int64_t m_dim, int64_t k_dim, float *out) {
  for (int64_t m = 0; m < m_dim; ++m) {
    const float *xm = x + m * k_dim;
    float ss = 0.f;
#pragma omp simd reduction(+ : ss)
    for (int64_t k = 0; k < k_dim; ++k) ss += xm[k] * xm[k];
    const float r = 1.0f / std::sqrt(ss / static_cast<float>(k_dim) + eps);
    float *om = out + m * k_dim;
#pragma omp simd
    for (int64_t k = 0; k < k_dim; ++k) om[k] = g[k] * (xm[k] * r);
  }
}

std::vector<float> &scratch(size_t size) {
  thread_local std::vector<float> buffer;
  if (buffer.size() < size) buffer.resize(size);
  return buffer;
}

}  // namespace

extern "C" {

int zoo_set_threads(int threads) {
  g_threads = threads > 0 ? threads : 1;
  return g_threads;
}

// ZooNormProject(x (.., K), g (K), W (N, K), eps (1)) -> y (.., N) = W @ rms_norm(x) * g
int ZooNormProject(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, void *, void *) {
  if (nparam != 5 || !all_fp32(0, 5, dtypes)) return 1;
  const int64_t m = rows_of(0, ndims, shapes), k = last_dim(0, ndims, shapes), n = shapes[2][0];
  if (shapes[2][1] != k || last_dim(4, ndims, shapes) != n) return 2;
  const float eps = static_cast<const float *>(params[3])[0];
  std::vector<float> &normed = scratch(static_cast<size_t>(m * k));
  rms_norm(static_cast<const float *>(params[0]), static_cast<const float *>(params[1]), eps, m, k, normed.data());
  project(normed.data(), static_cast<const float *>(params[2]), m, k, n, static_cast<float *>(params[4]));
  return 0;
}

// ZooNormSwiGLU(x (.., K), g (K), W13 (2F, K) = w1|w3 rows, eps (1)) -> y (.., F) = silu(w1 xn) * (w3 xn)
int ZooNormSwiGLU(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, void *, void *) {
  if (nparam != 5 || !all_fp32(0, 5, dtypes)) return 1;
  const int64_t m = rows_of(0, ndims, shapes), k = last_dim(0, ndims, shapes), f = last_dim(4, ndims, shapes);
  if (shapes[2][1] != k || shapes[2][0] != 2 * f) return 2;
  const float eps = static_cast<const float *>(params[3])[0];
  std::vector<float> &buffer = scratch(static_cast<size_t>(m * k + m * 2 * f));
  float *normed = buffer.data(), *gate_up = normed + m * k;
  rms_norm(static_cast<const float *>(params[0]), static_cast<const float *>(params[1]), eps, m, k, normed);
  project(normed, static_cast<const float *>(params[2]), m, k, 2 * f, gate_up);
  float *y = static_cast<float *>(params[4]);
  for (int64_t r = 0; r < m; ++r) {
    const float *gate = gate_up + r * 2 * f, *up = gate + f;
    for (int64_t i = 0; i < f; ++i) y[r * f + i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
  }
  return 0;
}

// ZooProjectAdd(x (.., K), W (N, K), residual (.., N)) -> y (.., N) = residual + W @ x
int ZooProjectAdd(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, void *, void *) {
  if (nparam != 4 || !all_fp32(0, 4, dtypes)) return 1;
  const int64_t m = rows_of(0, ndims, shapes), k = last_dim(0, ndims, shapes), n = shapes[1][0];
  if (shapes[1][1] != k || last_dim(2, ndims, shapes) != n) return 2;
  float *y = static_cast<float *>(params[3]);
  project(static_cast<const float *>(params[0]), static_cast<const float *>(params[1]), m, k, n, y);
  const float *res = static_cast<const float *>(params[2]);
  for (int64_t i = 0; i < m * n; ++i) y[i] = res[i] + y[i];
  return 0;
}

// ZooDecodeAttention(qkv (B, (H+2Kv)*D), step (B, 3) int32 = (token, position, cache slot), inv_freq (D/2),
//                    k_cache (B, Kv, L, D), v_cache (B, Kv, L, D), mask (B, L) additive) -> out (B, H*D)
//
// One decode token per row: HF rotate-half RoPE on q and k (angles position * inv_freq in fp32), the new k
// and v written into the caches *in place* at the row's slot (the caches are the model's KV-cache
// Parameters, which only these kernels and the prefill graph write), then grouped-query attention over the
// cache: query head h reads kv head h / (H / Kv), fp32 scores / sqrt(D) + mask, softmax, weighted sum of v.
// Masked slots (mask <= -1e29) get probability exactly 0 in the reference softmax, so they are skipped; a
// row with every slot masked falls back to all slots (the reference's uniform softmax).
int ZooDecodeAttention(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, void *, void *) {
  if (nparam != 7 || std::strcmp(dtypes[0], "float32") != 0 || std::strcmp(dtypes[1], "int32") != 0 ||
      !all_fp32(2, 5, dtypes)) {
    return 1;
  }
  const int64_t b_dim = shapes[3][0], kv_dim = shapes[3][1], l_dim = shapes[3][2], d = shapes[3][3];
  const int64_t h_dim = last_dim(6, ndims, shapes) / d, half = d / 2;
  const int64_t width = (h_dim + 2 * kv_dim) * d;
  if (kv_dim <= 0 || h_dim % kv_dim != 0 || last_dim(0, ndims, shapes) != width || last_dim(1, ndims, shapes) != 3 ||
      last_dim(2, ndims, shapes) != half || last_dim(5, ndims, shapes) != l_dim || rows_of(0, ndims, shapes) != b_dim) {
    return 2;
  }
  const float *qkv = static_cast<const float *>(params[0]);
  const int32_t *step = static_cast<const int32_t *>(params[1]);
  const float *inv_freq = static_cast<const float *>(params[2]);
  float *k_cache = static_cast<float *>(params[3]), *v_cache = static_cast<float *>(params[4]);
  const float *mask = static_cast<const float *>(params[5]);
  float *out = static_cast<float *>(params[6]);
  const float scale = std::sqrt(static_cast<float>(d));
  const int64_t n_rep = h_dim / kv_dim;
  float *buffer = scratch(static_cast<size_t>(l_dim + 2 * d + h_dim * d)).data();
  float *scores = buffer, *cos = scores + l_dim, *sin = cos + d, *q = sin + d;
  thread_local std::vector<int64_t> visible;
  visible.reserve(static_cast<size_t>(l_dim));
  for (int64_t b = 0; b < b_dim; ++b) {
    const int64_t position = step[b * 3 + 1], slot = step[b * 3 + 2];
    if (slot < 0 || slot >= l_dim) return 3;
    for (int64_t i = 0; i < half; ++i) {
      const float angle = static_cast<float>(position) * inv_freq[i];
      cos[i] = cos[i + half] = std::cos(angle);
      sin[i] = sin[i + half] = std::sin(angle);
    }
    const float *row = qkv + b * width;
    for (int64_t head = 0; head < h_dim + kv_dim; ++head) {  // rotate q heads into q, k heads into the cache
      const float *x = row + head * d;
      float *rot = head < h_dim ? q + head * d : k_cache + ((b * kv_dim + head - h_dim) * l_dim + slot) * d;
      for (int64_t i = 0; i < half; ++i) rot[i] = x[i] * cos[i] + (-x[i + half]) * sin[i];
      for (int64_t i = half; i < d; ++i) rot[i] = x[i] * cos[i] + x[i - half] * sin[i];
    }
    for (int64_t g = 0; g < kv_dim; ++g) {
      std::memcpy(v_cache + ((b * kv_dim + g) * l_dim + slot) * d, row + (h_dim + kv_dim + g) * d, sizeof(float) * d);
    }
    const float *mrow = mask + b * l_dim;
    visible.clear();
    for (int64_t l = 0; l < l_dim; ++l) {
      if (mrow[l] > -1e29f) visible.push_back(l);
    }
    if (visible.empty()) {
      for (int64_t l = 0; l < l_dim; ++l) visible.push_back(l);
    }
    for (int64_t h = 0; h < h_dim; ++h) {
      const float *qh = q + h * d;
      const int64_t g = h / n_rep;
      const float *kg = k_cache + (b * kv_dim + g) * l_dim * d, *vg = v_cache + (b * kv_dim + g) * l_dim * d;
      float best = -INFINITY;
      for (size_t j = 0; j < visible.size(); ++j) {
        const float *kl = kg + visible[j] * d;
        float s = 0.f;
#pragma omp simd reduction(+ : s)
        for (int64_t i = 0; i < d; ++i) s += qh[i] * kl[i];
        s = s / scale + mrow[visible[j]];
        scores[j] = s;
        best = s > best ? s : best;
      }
      float total = 0.f;
      for (size_t j = 0; j < visible.size(); ++j) {
        scores[j] = std::exp(scores[j] - best);
        total += scores[j];
      }
      float *oh = out + (b * h_dim + h) * d;
      for (int64_t i = 0; i < d; ++i) oh[i] = 0.f;
      for (size_t j = 0; j < visible.size(); ++j) {
        const float p = scores[j] / total;
        const float *vl = vg + visible[j] * d;
#pragma omp simd
        for (int64_t i = 0; i < d; ++i) oh[i] += p * vl[i];
      }
    }
  }
  return 0;
}

}  // extern "C"
