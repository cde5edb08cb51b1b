// Fused ILIF sequence kernels for the CPU: float forward, analytic float backward, bit-exact integer forward.
//
// Twins of the specifications in ilif_lava/dynamics.py (float step order and backward through time) and
// ilif_lava/fixed_point.py (integer arithmetic, `ilif_step`). tests/test_kernels.py proves them equal.
//
// Layout. User tensors are [M, T] (neurons flattened, time last, contiguous). Neurons are processed in blocks of
// B = 16: a tile of TT time steps of one block is transposed into a small [TT][B] buffer, so the inner loop over the
// 16 neurons of a block is contiguous and vectorisable. Tensors saved for the backward pass are stored blocked,
// [ceil(M / B), T, B], so forward writes and backward reads are contiguous as well. Blocks run in parallel
// (at::parallel_for); the float ops are compiled without FMA contraction so every operation rounds as PyTorch's
// elementwise kernels do (exp excepted: both compute it with their own vectorised approximation, see vexp).
#include <torch/extension.h>
#include <ATen/Parallel.h>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <unordered_map>
#include <type_traits>
#include <vector>

// The step loops over the 16 neurons of a block write several saved tensors through pointers a lambda captured (so
// without their __restrict__); GCC then needs run-time alias checks to vectorise them and, past its limit on such
// checks, left the loops with the most outputs scalar (GCC 12: the ILIF forward with current memory, which saves
// four tensors, ran 7x slower than without). No two of these tensors overlap (each is its own allocation), which
// this pragma tells the compiler.
#if defined(__GNUC__) && !defined(__clang__)
#define ILIF_IVDEP _Pragma("GCC ivdep")
#elif defined(__clang__)
#define ILIF_IVDEP _Pragma("clang loop vectorize(assume_safety)")
#else
#define ILIF_IVDEP
#endif

namespace {

constexpr int64_t B = 16;   // neurons per block
constexpr int64_t TT = 32;  // time steps per transposed tile

enum Inhibition : int64_t { INH_SIGMOID = 0, INH_PLAN = 1 };
enum SurrogateKind : int64_t { SG_RECTANGLE = 0, SG_EXP = 1, SG_SIGMOID = 2 };

// ---- tiles: user layout [M, T] <-> local [TT][B] ------------------------------------------------------------
template <typename S, typename D>
inline void load_tile_generic(const S* src, int64_t n0, int64_t nvalid, int64_t T, int64_t t0, int64_t len,
                              D (*dst)[B]) {
  for (int64_t j = 0; j < B; ++j) {
    if (j < nvalid) {
      const S* row = src + (n0 + j) * T;
      for (int64_t k = 0; k < len; ++k) {
        const int64_t t = t0 + k;
        dst[k][j] = (t >= 0) ? static_cast<D>(row[t]) : D(0);
      }
    } else {
      for (int64_t k = 0; k < len; ++k) dst[k][j] = D(0);
    }
  }
}

template <typename S, typename D>
inline void store_tile_generic(const S (*src)[B], int64_t n0, int64_t nvalid, int64_t T, int64_t t0, int64_t len,
                               D* dst) {
  for (int64_t j = 0; j < nvalid; ++j) {
    D* row = dst + (n0 + j) * T;
    for (int64_t k = 0; k < len; ++k) row[t0 + k] = static_cast<D>(src[k][j]);
  }
}

#if defined(__AVX2__)
// r[0..7] (8 rows of 8 floats) -> their transpose, in place: pure data movement, so bit for bit.
inline void transpose8(__m256 r[8]) {
  const __m256 a0 = _mm256_unpacklo_ps(r[0], r[1]), a1 = _mm256_unpackhi_ps(r[0], r[1]);
  const __m256 a2 = _mm256_unpacklo_ps(r[2], r[3]), a3 = _mm256_unpackhi_ps(r[2], r[3]);
  const __m256 a4 = _mm256_unpacklo_ps(r[4], r[5]), a5 = _mm256_unpackhi_ps(r[4], r[5]);
  const __m256 a6 = _mm256_unpacklo_ps(r[6], r[7]), a7 = _mm256_unpackhi_ps(r[6], r[7]);
  const __m256 b0 = _mm256_shuffle_ps(a0, a2, 0x44), b1 = _mm256_shuffle_ps(a0, a2, 0xEE);
  const __m256 b2 = _mm256_shuffle_ps(a1, a3, 0x44), b3 = _mm256_shuffle_ps(a1, a3, 0xEE);
  const __m256 b4 = _mm256_shuffle_ps(a4, a6, 0x44), b5 = _mm256_shuffle_ps(a4, a6, 0xEE);
  const __m256 b6 = _mm256_shuffle_ps(a5, a7, 0x44), b7 = _mm256_shuffle_ps(a5, a7, 0xEE);
  r[0] = _mm256_permute2f128_ps(b0, b4, 0x20); r[1] = _mm256_permute2f128_ps(b1, b5, 0x20);
  r[2] = _mm256_permute2f128_ps(b2, b6, 0x20); r[3] = _mm256_permute2f128_ps(b3, b7, 0x20);
  r[4] = _mm256_permute2f128_ps(b0, b4, 0x31); r[5] = _mm256_permute2f128_ps(b1, b5, 0x31);
  r[6] = _mm256_permute2f128_ps(b2, b6, 0x31); r[7] = _mm256_permute2f128_ps(b3, b7, 0x31);
}
#endif

// float -> float tiles of a whole block (16 rows) move 8 x 8 squares with AVX2 shuffles; the rest element by element.
// The scalar transposes were the kernels' slowest loops (perf annotate: a strided store per element).
template <typename S, typename D>
inline void load_tile(const S* src, int64_t n0, int64_t nvalid, int64_t T, int64_t t0, int64_t len, D (*dst)[B]) {
#if defined(__AVX2__)
  if constexpr (std::is_same<S, float>::value && std::is_same<D, float>::value) {
    if (nvalid == B && t0 >= 0) {
      const int64_t full = len / 8 * 8;
      for (int64_t k0 = 0; k0 < full; k0 += 8) {
        for (int64_t j0 = 0; j0 < B; j0 += 8) {
          __m256 r[8];
          for (int64_t i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(src + (n0 + j0 + i) * T + t0 + k0);
          transpose8(r);
          for (int64_t i = 0; i < 8; ++i) _mm256_storeu_ps(&dst[k0 + i][j0], r[i]);
        }
      }
      if (full < len) load_tile_generic(src, n0, nvalid, T, t0 + full, len - full, dst + full);
      return;
    }
  }
#endif
  load_tile_generic(src, n0, nvalid, T, t0, len, dst);
}

template <typename S, typename D>
inline void store_tile(const S (*src)[B], int64_t n0, int64_t nvalid, int64_t T, int64_t t0, int64_t len, D* dst) {
#if defined(__AVX2__)
  if constexpr (std::is_same<S, float>::value && std::is_same<D, float>::value) {
    if (nvalid == B) {
      const int64_t full = len / 8 * 8;
      for (int64_t k0 = 0; k0 < full; k0 += 8) {
        for (int64_t j0 = 0; j0 < B; j0 += 8) {
          __m256 r[8];
          for (int64_t i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(&src[k0 + i][j0]);
          transpose8(r);
          for (int64_t i = 0; i < 8; ++i) _mm256_storeu_ps(dst + (n0 + j0 + i) * T + t0 + k0, r[i]);
        }
      }
      if (full < len) store_tile_generic(src + full, n0, nvalid, T, t0 + full, len - full, dst);
      return;
    }
  }
#endif
  store_tile_generic(src, n0, nvalid, T, t0, len, dst);
}

// ---- float helpers (same formulas as ilif_lava/fixed_point.py plan_sigmoid_float and ilif_lava/surrogate.py) ----
// PLAN on |x|, segment by segment: slope 1/4, 1/8, 1/32, 0 and offset 1/2, 5/8, 27/32, 1 at |x| >= 0, 1, 2.375, 5.
// Built from 0/1 segment indicators times exact constants (no branches, so the loops vectorise); a * slope is
// exact (powers of two), so a * slope + offset rounds once, exactly as PyTorch's a / 32 + 0.84375 does.
template <typename F>
struct GSlope {  // an inhibition map's value and slope at one point
  F g, dg;
};

// PLAN's value and slope (d plan / dx; 0 at x = 0, as autograd of |x| gives) from one set of segment indicators.
template <typename F>
inline GSlope<F> plan_value_slope(F x) {
  const F a = std::fabs(x);
  const F s1 = F(a >= F(1)), s2 = F(a >= F(2.375)), s5 = F(a >= F(5));
  const F slope = F(0.25) - F(0.125) * s1 - F(0.09375) * s2 - F(0.03125) * s5;
  const F off = F(0.5) + F(0.125) * s1 + F(0.21875) * s2 + F(0.15625) * s5;
  const F pos = a * slope + off;
  return {x < F(0) ? F(1) - pos : pos, F(x != F(0)) * slope};
}

template <typename F>
inline F plan_float(F x) { return plan_value_slope(x).g; }

// ---- exp written with arithmetic and integer bit operations only ------------------------------------------
// std::exp is a call into libm, so a loop that calls it runs one element at a time. vexp below is plain arithmetic
// on the value and its bit pattern, so GCC vectorises every loop that uses it (AVX2: 8 floats or 4 doubles at a
// time). Method: x = n ln2 + r with n = round(x / ln2) and |r| <= ln2 / 2 (Cody-Waite: ln2 split into a high part
// whose product with n is exact and a low part), exp(r) = 1 + r + r^2 q(r) (float: q of degree 4 fitted here for
// the least maximum relative error, 3e-9 = 0.05 ulp; double: the Taylor series to degree 13, truncation error
// 6e-18), then times 2^n built in the exponent field, as 2^n1 * 2^n2 (n1 about n / 2) so that results overflow to
// inf and underflow gradually through the subnormals as a single scaling would. Accuracy against a long double
// reference over dense sweeps of the whole range: at most 1.01 ulp for float32 and float64 (with FMA; 0.97
// without), subnormal results included (tests/test_kernels.py asserts 1.5 ulp); exp(+inf) = inf, exp(-inf) = 0,
// exp(NaN) = NaN. PyTorch's CPU exp is itself a vectorised approximation within about 1 ulp, so the kernel and the
// torch path agree to about 2 ulp in exp and sigmoid, not bit for bit (the tests' tolerances hold; see there).
inline uint32_t bits_of(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return u;
}
inline uint64_t bits_of(double x) {
  uint64_t u;
  std::memcpy(&u, &x, sizeof u);
  return u;
}
inline float float_from_bits(uint32_t u) {
  float x;
  std::memcpy(&x, &u, sizeof x);
  return x;
}
inline double double_from_bits(uint64_t u) {
  double x;
  std::memcpy(&x, &u, sizeof x);
  return x;
}

// a * b + c: one fused rounding where the CPU has FMA (-march=native decides), two roundings elsewhere. Used only
// inside vexp, where it is an explicit choice (the build's -ffp-contract=off keeps every other a * b + c unfused,
// rounding as PyTorch's elementwise kernels do).
#if defined(__FMA__)
inline float mul_add(float a, float b, float c) { return std::fma(a, b, c); }
inline double mul_add(double a, double b, double c) { return std::fma(a, b, c); }
#else
inline float mul_add(float a, float b, float c) { return a * b + c; }
inline double mul_add(double a, double b, double c) { return a * b + c; }
#endif

inline float vexp(float x) {
  constexpr float round_magic = 12582912.0f;              // 1.5 * 2^23: y + it - it rounds y to an integer
  x = x < -104.0f ? -104.0f : x;                          // exp rounds to 0 below -104 and overflows above 89;
  x = x > 89.0f ? 89.0f : x;                              // comparisons are false for NaN, which passes through
  const float t = mul_add(x, 1.44269504088896341f, round_magic);  // n + magic, exactly
  const float n = t - round_magic;
  const int32_t n_all = static_cast<int32_t>(bits_of(t) - bits_of(round_magic));
  const int32_t n1 = n_all >> 1, n2 = n_all - n1;          // both in [-80, 75]: 2^n1, 2^n2 are normal floats
  const float r = mul_add(-n, 1.42860682030941723212e-06f, mul_add(-n, 0.693145751953125f, x));  // ln2 = hi + lo
  float q = 0.0013814539988936756f;
  q = mul_add(q, r, 0.008368745246016482f);
  q = mul_add(q, r, 0.041668390796585186f);
  q = mul_add(q, r, 0.16666520397866616f);
  q = mul_add(q, r, 0.49999993432044876f);
  const float p = mul_add(q, r * r, r) + 1.0f;             // 1 + (r + r^2 q): the large term added last
  return p * float_from_bits(static_cast<uint32_t>(n1 + 127) << 23) *
         float_from_bits(static_cast<uint32_t>(n2 + 127) << 23);
}

inline double vexp(double x) {
  constexpr double round_magic = 6755399441055744.0;      // 1.5 * 2^52
  x = x < -746.0 ? -746.0 : x;
  x = x > 710.0 ? 710.0 : x;
  const double t = mul_add(x, 1.44269504088896338700e+00, round_magic);
  const double n = t - round_magic;
  // n1 = round(n / 2) by the same trick (AVX2 has no 64-bit arithmetic shift); unsigned arithmetic is modular
  const uint64_t n_all = bits_of(t) - bits_of(round_magic);
  const uint64_t n1 = bits_of(mul_add(n, 0.5, round_magic)) - bits_of(round_magic), n2 = n_all - n1;
  const double r = mul_add(-n, 1.90821492927058770002e-10, mul_add(-n, 6.93147180369123816490e-01, x));
  double q = 1.0 / 6227020800.0;
  q = mul_add(q, r, 1.0 / 479001600.0);
  q = mul_add(q, r, 1.0 / 39916800.0);
  q = mul_add(q, r, 1.0 / 3628800.0);
  q = mul_add(q, r, 1.0 / 362880.0);
  q = mul_add(q, r, 1.0 / 40320.0);
  q = mul_add(q, r, 1.0 / 5040.0);
  q = mul_add(q, r, 1.0 / 720.0);
  q = mul_add(q, r, 1.0 / 120.0);
  q = mul_add(q, r, 1.0 / 24.0);
  q = mul_add(q, r, 1.0 / 6.0);
  q = mul_add(q, r, 0.5);
  const double p = mul_add(q, r * r, r) + 1.0;
  return p * double_from_bits((n1 + 1023) << 52) * double_from_bits((n2 + 1023) << 52);
}

// PyTorch's formula for the sigmoid, 1 / (1 + exp(-x)): exactly 0 and 1 far out (and at -inf, +inf), never NaN there
template <typename F>
inline F sigmoid(F x) { return F(1) / (F(1) + vexp(-x)); }

template <typename F>
inline F inhibit(F m, int64_t kind) { return kind == INH_PLAN ? plan_float(m) : sigmoid(m); }

template <typename F>
struct Surrogate {
  F p1, p2;  // rectangle: (gamma, -); exp: (scale / (2 tau), tau); sigmoid: (alpha, -)
  template <int64_t kind>
  inline F grad(F x) const {
    if (kind == SG_RECTANGLE) return (std::fabs(x) <= p1 / F(2) ? F(1) : F(0)) / p1;
    if (kind == SG_EXP) return p1 * vexp(-std::fabs(x) / p2);
    const F s = sigmoid(p1 * x);
    return p1 * s * (F(1) - s);
  }
};

// ---- buffer pool -------------------------------------------------------------------------------------------
// Every tensor the kernels create (spikes, saved states, gradients) comes from this pool and returns to it when
// PyTorch frees it. A training loop allocates the same sizes every step; reusing pages that are already mapped
// avoids the page faults of fresh allocations (on the machines measured here they cost more than the kernel's
// arithmetic). The pool keeps at most `cap` bytes of free blocks (ILIF_LAVA_KERNEL_POOL_MB, default 1024).
class BufferPool {
 public:
  static BufferPool& get() {
    static BufferPool* pool = new BufferPool();  // never destroyed: tensors may outlive static destructors
    return *pool;
  }
  void* alloc(size_t n) {
    {
      std::lock_guard<std::mutex> g(mu_);
      auto it = free_.lower_bound(n);
      if (it != free_.end() && it->first <= 2 * n) {
        void* p = it->second;
        sizes_[p] = it->first;
        cached_ -= it->first;
        free_.erase(it);
        return p;
      }
    }
    void* p = std::aligned_alloc(kAlign, n);
    TORCH_CHECK(p != nullptr, "ILIF kernel: out of memory allocating ", n, " bytes");
    std::lock_guard<std::mutex> g(mu_);
    sizes_[p] = n;
    return p;
  }
  void release(void* p) {
    std::lock_guard<std::mutex> g(mu_);
    auto it = sizes_.find(p);
    const size_t n = it->second;
    sizes_.erase(it);
    if (cached_ + n <= cap_) {
      free_.emplace(n, p);
      cached_ += n;
    } else {
      std::free(p);
    }
  }
  size_t clear() {
    std::lock_guard<std::mutex> g(mu_);
    const size_t n = cached_;
    for (auto& kv : free_) std::free(kv.second);
    free_.clear();
    cached_ = 0;
    return n;
  }
  size_t cached() {
    std::lock_guard<std::mutex> g(mu_);
    return cached_;
  }

 private:
  static constexpr size_t kAlign = 4096;
  BufferPool() {
    const char* env = std::getenv("ILIF_LAVA_KERNEL_POOL_MB");
    cap_ = (env ? static_cast<size_t>(std::strtoull(env, nullptr, 10)) : size_t(1024)) << 20;
  }
  std::mutex mu_;
  std::multimap<size_t, void*> free_;
  std::unordered_map<void*, size_t> sizes_;
  size_t cached_ = 0, cap_ = 0;
};

torch::Tensor pooled_empty(at::IntArrayRef sizes, const torch::TensorOptions& opts) {
  int64_t numel = 1;
  for (auto d : sizes) numel *= d;
  size_t n = static_cast<size_t>(numel) * c10::elementSize(c10::typeMetaToScalarType(opts.dtype()));
  n = std::max<size_t>(4096, (n + 4095) / 4096 * 4096);  // aligned_alloc needs a multiple of the alignment
  void* p = BufferPool::get().alloc(n);
  return torch::from_blob(p, sizes, [](void* q) { BufferPool::get().release(q); }, opts);
}

inline int64_t num_blocks(int64_t M) { return (M + B - 1) / B; }

// What the forward pass saves of the MPIU for the backward pass, per inhibition map: PLAN's slope needs m itself;
// the sigmoid's value and slope need only g = sigmoid(m), so g is saved (the backward then computes no exp for it).
template <typename F, int64_t inh>
inline F mpiu_saved(F m, F g) { return inh == INH_SIGMOID ? g : m; }
// g(m) and g'(m) from the saved value: the sigmoid's from g itself, PLAN's from m.
template <typename F, int64_t inh>
inline GSlope<F> inhibit_and_slope(F saved) {
  if (inh == INH_SIGMOID) return {saved, saved * (F(1) - saved)};
  return plan_value_slope(saved);
}

// What the backward pass needs of C[t]: its sign, as one 32-bit word per block and step: bit j says C > 0 for neuron
// j of the block, bit 16 + j says C >= 0 (both 0 for NaN). 4 bytes per 16 neurons, built with two compares and
// movemasks per 8 lanes (an earlier byte per neuron cost a quarter of the forward pass to pack).
template <typename F>
inline int32_t sign_word(const F* c) {
#if defined(__AVX2__)
  if constexpr (std::is_same<F, float>::value) {
    const __m256 zero = _mm256_setzero_ps(), lo = _mm256_loadu_ps(c), hi = _mm256_loadu_ps(c + 8);
    const uint32_t gt = static_cast<uint32_t>(_mm256_movemask_ps(_mm256_cmp_ps(lo, zero, _CMP_GT_OQ))) |
                        static_cast<uint32_t>(_mm256_movemask_ps(_mm256_cmp_ps(hi, zero, _CMP_GT_OQ))) << 8;
    const uint32_t ge = static_cast<uint32_t>(_mm256_movemask_ps(_mm256_cmp_ps(lo, zero, _CMP_GE_OQ))) |
                        static_cast<uint32_t>(_mm256_movemask_ps(_mm256_cmp_ps(hi, zero, _CMP_GE_OQ))) << 8;
    return static_cast<int32_t>(gt | ge << 16);
  }
#endif
  uint32_t w = 0;
  for (int64_t j = 0; j < B; ++j)
    w |= static_cast<uint32_t>(c[j] > F(0)) << j | static_cast<uint32_t>(c[j] >= F(0)) << (16 + j);
  return static_cast<int32_t>(w);
}

// ---- float forward -----------------------------------------------------------------------------------------
// Configuration flags are template parameters so each inner loop is branch-free and vectorises: mpiu, ciu,
// has_cur (current memory), inh (inhibition map), save (keep h, m or g(m), c, i for the backward pass).
template <typename F, bool mpiu, bool ciu, bool has_cur, int64_t inh, bool save>
void forward_float_impl(const F* __restrict__ z, F* __restrict__ out, F* __restrict__ sh, F* __restrict__ sm,
                        int32_t* __restrict__ sc, F* __restrict__ si, int64_t M, int64_t T, F lam, F beta,
                        F kappa, F cur_kept, F th) {
  // With the MPIU, the inhibition lies on the recurrence (v[t] needs g(m[t]), h[t+1] needs v[t]; the sigmoid adds
  // an exp and a division): G blocks are stepped together, so that G independent chains overlap in the CPU's
  // pipeline. PLAN: 2 when nothing is saved (forward-only: 8-22 % faster at [131072, T], 20 % in cache); 1 when
  // saving, where two blocks' four store streams measured slower (15 % at [131072, 32]).
  constexpr int64_t G = (mpiu && inh == INH_SIGMOID) ? 4 : (mpiu && !save ? 2 : 1);
  at::parallel_for(0, num_blocks(M), 1, [&](int64_t b0, int64_t b1) {
    F zin[G][TT][B], sout[G][TT][B];
    for (int64_t bg = b0; bg < b1; bg += G) {
      const int64_t ng = std::min(G, b1 - bg);
      F v[G][B], m[G][B], c[G][B], ip[G][B], sp[G][B];
      for (int64_t q = 0; q < G; ++q)
        for (int64_t j = 0; j < B; ++j) v[q][j] = m[q][j] = c[q][j] = ip[q][j] = sp[q][j] = F(0);
      for (int64_t t0 = 0; t0 < T; t0 += TT) {
        const int64_t len = std::min(TT, T - t0);
        for (int64_t q = 0; q < ng; ++q) {
          const int64_t n0 = (bg + q) * B;
          load_tile(z, n0, std::min(B, M - n0), T, t0, len, zin[q]);
        }
        for (int64_t k = 0; k < len; ++k) {
          for (int64_t q = 0; q < ng; ++q) {
            const int64_t off = ((bg + q) * T + t0 + k) * B;
            ILIF_IVDEP
            for (int64_t j = 0; j < B; ++j) {
              F cj = c[q][j];
              if (ciu) cj = kappa * (cj + ip[q][j] * sp[q][j]);
              const F it = has_cur ? cur_kept * ip[q][j] + zin[q][k][j] : zin[q][k][j];
              const F rect = cj > F(0) ? cj : F(0);
              const F h = lam * v[q][j] + (ciu ? it - rect : it);
              const F s = h >= th ? F(1) : F(0);
              const F vp = h - s * th;
              F vn = vp, mj = m[q][j], gj = F(0);
              if (mpiu) {
                mj = beta * (mj + s * vp);
                gj = inhibit(mj, inh);
                vn = vp - s * gj;
              }
              v[q][j] = vn; m[q][j] = mj; c[q][j] = cj; ip[q][j] = it; sp[q][j] = s;
              sout[q][k][j] = s;
              if (save) {
                sh[off + j] = h;
                if (mpiu) sm[off + j] = mpiu_saved<F, inh>(mj, gj);
                if (ciu) si[off + j] = it;  // I[t]: z[t] itself without current memory
              }
            }
            if (save && ciu) sc[(bg + q) * T + t0 + k] = sign_word(c[q]);
          }
        }
        for (int64_t q = 0; q < ng; ++q) {
          const int64_t n0 = (bg + q) * B;
          store_tile(sout[q], n0, std::min(B, M - n0), T, t0, len, out);
        }
      }
    }
  });
}

// ---- float backward (BPTT through v, MPIU, CIU and the previous input; see ilif_lava/dynamics.py) ---------------
template <typename F, bool mpiu, bool ciu, bool has_cur, int64_t inh, int64_t sg_kind, bool need_glam>
void backward_float_impl(const F* __restrict__ go, const F* __restrict__ sh,
                         const F* __restrict__ sm, const int32_t* __restrict__ sc, const F* __restrict__ si,
                         F* __restrict__ gz,
                         double* glam_part, int64_t M, int64_t T, F lam, F beta, F kappa, F cur_kept, F th,
                         Surrogate<F> sg, bool ciu_pass_at_zero) {
  const uint32_t pass_shift = ciu_pass_at_zero ? 16 : 0;  // relu'(C) = 1 where C >= 0 (bits 16..31) or C > 0
  // The exp-based surrogates are computed for a whole tile before the time loop: one flat loop over TT x B
  // independent values (throughput-bound), instead of inside the recurrence (latency-bound).
  constexpr bool sg_tile = sg_kind != SG_RECTANGLE;
  at::parallel_for(0, num_blocks(M), 1, [&](int64_t b0, int64_t b1) {
    // the saved tensors' bases as locals: read through the closure, GCC turned the first step's pointer choice
    // below into masked loads of the pointer itself and left the step loop scalar (MPIU without CIU: 9x slower)
    const F* __restrict__ sh_ = sh;
    const F* __restrict__ sm_ = sm;
    const int32_t* __restrict__ sc_ = sc;
    const F* __restrict__ si_ = si;
    F gin[TT][B], gout[TT][B], sgt[TT][B];
    const F zeros[B] = {};
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t n0 = b * B, nvalid = std::min(B, M - n0);
      F gv[B], gm[B], gc[B], gi[B], gsx[B];
      // step t's spike, v after the threshold reset, g(m) and g'(m): computed at step t + 1 (which needs them as
      // its previous step's) and carried, so each is computed once per step
      F s_c[B], vp_c[B], g_c[B], dg_c[B];
      double gl[B];
      for (int64_t j = 0; j < B; ++j) { gv[j] = gm[j] = gc[j] = gi[j] = gsx[j] = g_c[j] = dg_c[j] = F(0); gl[j] = 0.0; }
      if (T > 0) {
        const int64_t off = (b * T + T - 1) * B;
        for (int64_t j = 0; j < B; ++j) {
          const F h = sh_[off + j];
          s_c[j] = h >= th ? F(1) : F(0);
          vp_c[j] = h - s_c[j] * th;
          if (mpiu) {
            const GSlope<F> gd = inhibit_and_slope<F, inh>(sm_[off + j]);
            g_c[j] = gd.g; dg_c[j] = gd.dg;
          }
        }
      }
      const int64_t ntiles = (T + TT - 1) / TT;
      for (int64_t tile = ntiles - 1; tile >= 0; --tile) {
        const int64_t t0 = tile * TT, len = std::min(TT, T - t0);
        load_tile(go, n0, nvalid, T, t0, len, gin);
        if (sg_tile) {
          const F* __restrict__ htile = sh_ + (b * T + t0) * B;
          F* __restrict__ flat = &sgt[0][0];
          for (int64_t e = 0; e < len * B; ++e) flat[e] = sg.template grad<sg_kind>(htile[e] - th);
        }
        // One step back in time. `first` (compile-time): step 0, whose previous step is all zeros (no spike, v = 0,
        // I = 0); a run-time choice of those pointers made GCC gather or mask the loads and slowed every step.
        auto step = [&](auto first_c, int64_t k) {
          constexpr bool first = decltype(first_c)::value;
          const int64_t off = (b * T + t0 + k) * B;
          const F* __restrict__ hprev = first ? zeros : sh_ + off - B;
          const F* __restrict__ mprev = (mpiu && !first) ? sm_ + off - B : zeros;
          const F* __restrict__ iprev_p = (ciu && !first) ? si_ + off - B : zeros;
          const uint32_t cbits = ciu ? static_cast<uint32_t>(sc_[b * T + t0 + k]) >> pass_shift : 0u;
          ILIF_IVDEP
          for (int64_t j = 0; j < B; ++j) {
            const F s = s_c[j], vp = vp_c[j];
            F gs = gin[k][j] + gsx[j];
            F gvp = gv[j];
            if (mpiu) {
              const F g = g_c[j], dg = dg_c[j];
              const F gm_tot = gm[j] - s * dg * gv[j];
              gs = gs - g * gv[j] + beta * gm_tot * vp;
              gvp = gv[j] + beta * gm_tot * s;
              gm[j] = beta * gm_tot;
            }
            gs = gs - th * gvp;
            const F gh = gvp + gs * (sg_tile ? sgt[k][j] : sg.template grad<sg_kind>(sh_[off + j] - th));
            const F hp = hprev[j];
            const F sprev = hp >= th ? F(1) : F(0);
            const F vpprev = hp - sprev * th;
            const GSlope<F> gdprev = mpiu ? inhibit_and_slope<F, inh>(mprev[j]) : GSlope<F>{F(0), F(0)};
            const F gprev = gdprev.g, dgprev = gdprev.dg;
            if (need_glam) {  // d/d lambda += gh_t * v_{t-1}, v_{t-1} recomputed from the saved h, m
              const F vprev = mpiu ? vpprev - sprev * gprev : vpprev;
              gl[j] += static_cast<double>(gh) * static_cast<double>(vprev);
            }
            s_c[j] = sprev; vp_c[j] = vpprev; g_c[j] = gprev; dg_c[j] = dgprev;
            gv[j] = lam * gh;
            F gij = gi[j] + gh;
            gout[k][j] = gij;
            gij = cur_kept * gij;
            if (ciu) {
              const F gc_tot = gc[j] - gh * F((cbits >> j) & 1u);  // relu'(C[t])
              gc[j] = kappa * gc_tot;
              gij = gij + kappa * gc_tot * sprev;
              gsx[j] = kappa * gc_tot * iprev_p[j];
            }
            gi[j] = gij;
          }
        };
        for (int64_t k = len - 1; k >= (t0 == 0 ? 1 : 0); --k) step(std::false_type{}, k);
        if (t0 == 0) step(std::true_type{}, 0);
        store_tile(gout, n0, nvalid, T, t0, len, gz);
      }
      if (need_glam) {
        double acc = 0.0;
        for (int64_t j = 0; j < B; ++j) acc += gl[j];
        glam_part[b] = acc;
      }
    }
  });
}

// ---- integer forward (ilif_lava/fixed_point.py ilif_step, per neuron) --------------------------------------------
// The specification computes in int64; here every lane is 32 bits wide (8 neurons per AVX2 vector, where int64 lanes
// have no native min, max or variable arithmetic shift), which is exact because no intermediate needs more:
// u is a 24-bit wrapped value, v, c, m are 24-bit saturated, every decayed quantity is a sum of at most two of them
// (|x| < 2**25), h before saturation is below 3 * 2**23, and the input term only matters modulo 2**24 (u wraps), so
// it is carried modulo 2**32 (unsigned), as the specification's int64 arithmetic gives it modulo 2**64.
constexpr int64_t DECAY_ONE = 4096;
constexpr int32_t STATE_MAX = (int32_t(1) << 23) - 1;
constexpr int32_t HALF = int32_t(1) << 23;
constexpr uint32_t SPAN_MASK = (uint32_t(1) << 24) - 1;

// trunc(x * kept / 4096) toward zero for |x| < 2**25, kept in [0, 4096], in 32-bit arithmetic: with |x| = 4096 q + r,
// floor(|x| kept / 4096) = q kept + floor(r kept / 4096), and q kept <= 2**25, r kept < 2**24.
inline int32_t decay_int(int32_t x, int32_t kept) {
  const int32_t ax = x < 0 ? -x : x;
  const int32_t mag = (ax >> 12) * kept + (((ax & 4095) * kept) >> 12);
  return x < 0 ? -mag : mag;
}
inline int32_t sat(int32_t x) { return std::min(std::max(x, -STATE_MAX), STATE_MAX); }
inline int32_t wrap24(uint32_t x) {  // modular wrap into (-2**23, 2**23], two's complement (torch int64 semantics)
  return static_cast<int32_t>((x + uint32_t(HALF - 1)) & SPAN_MASK) - HALF + 1;
}
// PLAN in state units: (a >> 2) + 2048, (a >> 3) + 2560, (a >> 5) + 3456, 4096 from |m| = 0, 4096, 9728, 20480;
// shift and offset built from segment indicators so the loop vectorises.
inline int32_t plan_int(int32_t m) {
  const int32_t a = m < 0 ? -m : m;
  const int32_t s1 = a >= 4096, s2 = a >= 9728;
  const int32_t seg = (a >> (2 + s1 + 2 * s2)) + 2048 + 512 * s1 + 896 * s2;
  const int32_t pos = a >= 5 * 4096 ? 4096 : seg;
  return m < 0 ? 4096 - pos : pos;
}

// Input loaders: fill a [TT][B] tile with the synaptic sums `a` of neurons n0..n0+nvalid-1, steps t0..t0+len-1,
// modulo 2**32 (zeros for the rows past M).
// - IntInput: `a` given, int64 [M, T].
// - FloatInput: `a = round(z * scale)` (half to even, as torch.round; `scale` a power of two, so the product is
//   exact) from the synaptic input z [M, T] (float32/float64), plus the bias in input units of the row's channel,
//   bias[(row / inner) % C] (ilif_lava/neuron.py `integer_dynamics` does the same in torch ops).
struct IntInput {
  const int64_t* a;
  int64_t T;
  inline void operator()(int64_t n0, int64_t nvalid, int64_t t0, int64_t len, uint32_t (*dst)[B]) const {
    for (int64_t j = 0; j < B; ++j) {
      const int64_t* row = a + (n0 + j) * T;
      for (int64_t k = 0; k < len; ++k) dst[k][j] = j < nvalid ? static_cast<uint32_t>(row[t0 + k]) : 0u;
    }
  }
};

template <typename F>
struct FloatInput {
  const F* z;
  int64_t T;
  F scale;
  const int64_t* bias;  // [C] in input units, or nullptr
  int64_t C, inner;
  inline void operator()(int64_t n0, int64_t nvalid, int64_t t0, int64_t len, uint32_t (*dst)[B]) const {
    for (int64_t j = 0; j < B; ++j) {
      if (j >= nvalid) {
        for (int64_t k = 0; k < len; ++k) dst[k][j] = 0u;
        continue;
      }
      const F* row = z + (n0 + j) * T;
      const uint32_t b = bias ? static_cast<uint32_t>(bias[((n0 + j) / inner) % C]) : 0u;
      for (int64_t k = 0; k < len; ++k)
        dst[k][j] = static_cast<uint32_t>(static_cast<int64_t>(std::nearbyint(row[t0 + k] * scale))) + b;
    }
  }
};

// `input_shift` (0..6): the synaptic input enters the current as a << input_shift (ILIFParams.input_shift: 6 for
// spikes, 0 for a layer fed graded direct-encoded input, whose sums are already in state units).
template <typename O, bool mpiu, bool ciu, bool rec, typename Load>
void forward_int_impl(const Load& load, O* out, int64_t* ru, int64_t* rv, int64_t* rc, int64_t* rm, int64_t M,
                      int64_t T, int64_t vth64, int64_t i_decay, int64_t v_decay, int64_t c_decay, int64_t m_decay,
                      int64_t input_shift) {
  const int32_t ik = DECAY_ONE - i_decay, vk = DECAY_ONE - v_decay, ck = DECAY_ONE - c_decay,
                mk = DECAY_ONE - m_decay, vth = static_cast<int32_t>(vth64);
  const uint32_t shift = static_cast<uint32_t>(input_shift);
  at::parallel_for(0, num_blocks(M), 1, [&](int64_t b0, int64_t b1) {
    uint32_t ain[TT][B];
    int32_t tu[TT][B], tv[TT][B], tc[TT][B], tm[TT][B];
    O sout[TT][B];
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t n0 = b * B, nvalid = std::min(B, M - n0);
      int32_t u[B], v[B], c[B], m[B], sp[B];
      for (int64_t j = 0; j < B; ++j) u[j] = v[j] = c[j] = m[j] = sp[j] = 0;
      for (int64_t t0 = 0; t0 < T; t0 += TT) {
        const int64_t len = std::min(TT, T - t0);
        load(n0, nvalid, t0, len, ain);
        for (int64_t k = 0; k < len; ++k) {
          for (int64_t j = 0; j < B; ++j) {
            int32_t cj = c[j], rect = 0;
            if (ciu) {
              cj = sat(decay_int(cj + (u[j] & -sp[j]), ck));  // sp is 0/1: u_prev * s_prev
              rect = std::max<int32_t>(cj, 0);
            }
            const int32_t uj = wrap24(static_cast<uint32_t>(decay_int(u[j], ik)) + (ain[k][j] << shift));
            const int32_t h = sat(decay_int(v[j], vk) + uj - rect);
            const int32_t s = h >= vth ? 1 : 0;
            int32_t vj = h - (vth & -s), mj = m[j];
            if (mpiu) {
              mj = sat(decay_int(mj + (vj & -s), mk));
              vj = sat(vj - (plan_int(mj) & -s));
            }
            u[j] = uj; v[j] = vj; c[j] = cj; m[j] = mj; sp[j] = s;
            sout[k][j] = static_cast<O>(s);
            if (rec) { tu[k][j] = uj; tv[k][j] = vj; tc[k][j] = cj; tm[k][j] = mj; }
          }
        }
        store_tile(sout, n0, nvalid, T, t0, len, out);
        if (rec) {
          store_tile(tu, n0, nvalid, T, t0, len, ru);
          store_tile(tv, n0, nvalid, T, t0, len, rv);
          store_tile(tc, n0, nvalid, T, t0, len, rc);
          store_tile(tm, n0, nvalid, T, t0, len, rm);
        }
      }
    }
  });
}

// runtime flag -> compile-time constant: fn(std::integral_constant<...>)
template <typename Fn>
inline void with_bool(bool b, Fn&& fn) {
  if (b) fn(std::true_type{}); else fn(std::false_type{});
}
template <typename Fn>
inline void with_inh(int64_t k, Fn&& fn) {
  if (k == INH_PLAN) fn(std::integral_constant<int64_t, INH_PLAN>{});
  else fn(std::integral_constant<int64_t, INH_SIGMOID>{});
}
template <typename Fn>
inline void with_sg(int64_t k, Fn&& fn) {
  if (k == SG_RECTANGLE) fn(std::integral_constant<int64_t, SG_RECTANGLE>{});
  else if (k == SG_EXP) fn(std::integral_constant<int64_t, SG_EXP>{});
  else fn(std::integral_constant<int64_t, SG_SIGMOID>{});
}

template <typename F>
inline F* ptr_or_null(torch::Tensor& t) { return t.defined() && t.numel() > 0 ? t.data_ptr<F>() : nullptr; }

void check_2d(const torch::Tensor& x, const char* name) {
  TORCH_CHECK(x.dim() == 2 && x.is_contiguous() && x.device().is_cpu(), name,
              " must be a contiguous CPU tensor [M, T]");
}

}  // namespace

// z [M, T] float32/float64 -> [spikes [M, T], h, m (PLAN) or sigmoid(m), sign of c, i] (h, m, i blocked
// [nb, T, 16]; the sign of c int32 [nb, T], see sign_word; empty when unused).
std::vector<torch::Tensor> forward_float(torch::Tensor z, double lam, double beta, double kappa, double cur_kept,
                                         double th, bool mpiu, bool ciu, int64_t inhibition, bool save) {
  check_2d(z, "z");
  const int64_t M = z.size(0), T = z.size(1);
  auto opts = z.options();
  auto out = pooled_empty({M, T}, opts);
  auto none = torch::empty({0}, opts);
  const std::vector<int64_t> blocked{num_blocks(M), T, B};
  auto sh = save ? pooled_empty(blocked, opts) : none;
  auto sm = save && mpiu ? pooled_empty(blocked, opts) : none;
  auto sc = save && ciu ? pooled_empty({num_blocks(M), T}, opts.dtype(torch::kInt32)) : none;
  auto si = save && ciu ? pooled_empty(blocked, opts) : none;
  TORCH_CHECK(inhibition == INH_PLAN || inhibition == INH_SIGMOID, "unknown inhibition code");
  if (!mpiu) inhibition = INH_PLAN;  // unused without the MPIU: one instantiation
  AT_DISPATCH_FLOATING_TYPES(z.scalar_type(), "ilif_forward_float", [&] {
    with_bool(mpiu, [&](auto MP) { with_bool(ciu, [&](auto CI) { with_bool(cur_kept != 0.0, [&](auto HC) {
    with_inh(inhibition, [&](auto IN) { with_bool(save, [&](auto SV) {
      forward_float_impl<scalar_t, decltype(MP)::value, decltype(CI)::value, decltype(HC)::value,
                         decltype(IN)::value, decltype(SV)::value>(
          z.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), ptr_or_null<scalar_t>(sh), ptr_or_null<scalar_t>(sm),
          ptr_or_null<int32_t>(sc), ptr_or_null<scalar_t>(si), M, T, static_cast<scalar_t>(lam),
          static_cast<scalar_t>(beta), static_cast<scalar_t>(kappa), static_cast<scalar_t>(cur_kept),
          static_cast<scalar_t>(th));
    }); }); }); }); });
  });
  return {out, sh, sm, sc, si};
}

// -> [grad z [M, T], grad lambda (float64 scalar; 0-element tensor when not asked)]
std::vector<torch::Tensor> backward_float(torch::Tensor grad_out, torch::Tensor z, torch::Tensor sh, torch::Tensor sm,
                                          torch::Tensor sc, torch::Tensor si, double lam, double beta, double kappa,
                                          double cur_kept, double th, bool mpiu, bool ciu, int64_t inhibition,
                                          int64_t sg_kind, double sg_p1, double sg_p2, bool ciu_pass_at_zero,
                                          bool need_glam) {
  check_2d(grad_out, "grad_out");
  check_2d(z, "z");
  const int64_t M = z.size(0), T = z.size(1);
  TORCH_CHECK(grad_out.sizes() == z.sizes() && grad_out.scalar_type() == z.scalar_type(), "grad_out must match z");
  auto gz = pooled_empty({M, T}, z.options());
  auto glam_part = need_glam ? torch::zeros({num_blocks(M)}, z.options().dtype(torch::kFloat64))
                             : torch::empty({0}, z.options().dtype(torch::kFloat64));
  TORCH_CHECK(inhibition == INH_PLAN || inhibition == INH_SIGMOID, "unknown inhibition code");
  TORCH_CHECK(sg_kind >= SG_RECTANGLE && sg_kind <= SG_SIGMOID, "unknown surrogate code");
  if (!mpiu) inhibition = INH_PLAN;
  AT_DISPATCH_FLOATING_TYPES(z.scalar_type(), "ilif_backward_float", [&] {
    Surrogate<scalar_t> sg{static_cast<scalar_t>(sg_p1), static_cast<scalar_t>(sg_p2)};
    with_bool(mpiu, [&](auto MP) { with_bool(ciu, [&](auto CI) { with_bool(cur_kept != 0.0, [&](auto HC) {
    with_inh(inhibition, [&](auto IN) { with_sg(sg_kind, [&](auto SG) { with_bool(need_glam, [&](auto GL) {
      backward_float_impl<scalar_t, decltype(MP)::value, decltype(CI)::value, decltype(HC)::value,
                          decltype(IN)::value, decltype(SG)::value, decltype(GL)::value>(
          grad_out.data_ptr<scalar_t>(), sh.data_ptr<scalar_t>(), ptr_or_null<scalar_t>(sm),
          ptr_or_null<int32_t>(sc), ptr_or_null<scalar_t>(si), gz.data_ptr<scalar_t>(),
          need_glam ? glam_part.data_ptr<double>() : nullptr, M, T, static_cast<scalar_t>(lam),
          static_cast<scalar_t>(beta), static_cast<scalar_t>(kappa), static_cast<scalar_t>(cur_kept),
          static_cast<scalar_t>(th), sg, ciu_pass_at_zero);
    }); }); }); }); }); });
  });
  return {gz, need_glam ? glam_part.sum() : glam_part};
}

// Shared by forward_int and forward_int_float: allocate the results, check the parameters, dispatch.
template <typename Load>
std::vector<torch::Tensor> run_int(const Load& load, int64_t M, int64_t T, const torch::TensorOptions& opts,
                                   int64_t vth, int64_t i_decay, int64_t v_decay, int64_t c_decay, int64_t m_decay,
                                   bool mpiu, bool ciu, bool record, torch::ScalarType out_dtype,
                                   int64_t input_shift) {
  for (int64_t d : {i_decay, v_decay, c_decay, m_decay})
    TORCH_CHECK(d >= 0 && d <= DECAY_ONE, "decays must be integers in [0, 4096]");
  TORCH_CHECK(input_shift >= 0 && input_shift <= 6, "input_shift must be an integer in [0, 6]");
  TORCH_CHECK(vth > 0 && vth <= STATE_MAX, "vth (vThMant << 6) must lie in [1, 2**23 - 1]");
  const auto i64 = opts.dtype(torch::kInt64);
  auto out = pooled_empty({M, T}, opts.dtype(out_dtype));
  auto none = torch::empty({0}, i64);
  auto rec = [&]() -> torch::Tensor { return record ? pooled_empty({M, T}, i64) : none; };
  torch::Tensor ru = rec(), rv = rec(), rc = rec(), rm = rec();
  int64_t* p[4] = {nullptr, nullptr, nullptr, nullptr};
  if (record) {
    p[0] = ru.data_ptr<int64_t>(); p[1] = rv.data_ptr<int64_t>(); p[2] = rc.data_ptr<int64_t>();
    p[3] = rm.data_ptr<int64_t>();
  }
  AT_DISPATCH_FLOATING_TYPES(out_dtype, "ilif_forward_int", [&] {
    with_bool(mpiu, [&](auto MP) { with_bool(ciu, [&](auto CI) { with_bool(record, [&](auto RC) {
      forward_int_impl<scalar_t, decltype(MP)::value, decltype(CI)::value, decltype(RC)::value>(
          load, out.data_ptr<scalar_t>(), p[0], p[1], p[2], p[3], M, T, vth, i_decay, v_decay, c_decay, m_decay,
          input_shift);
    }); }); });
  });
  return {out, ru, rv, rc, rm};
}

// a [M, T] int64 (synaptic sums; entering the current as a << input_shift) -> [spikes [M, T] of out_dtype,
// u, v, c, m [M, T] int64 (empty unless record)]
std::vector<torch::Tensor> forward_int(torch::Tensor a, int64_t vth, int64_t i_decay, int64_t v_decay,
                                       int64_t c_decay, int64_t m_decay, bool mpiu, bool ciu, bool record,
                                       torch::ScalarType out_dtype, int64_t input_shift) {
  check_2d(a, "a");
  TORCH_CHECK(a.scalar_type() == torch::kInt64, "a must be int64");
  return run_int(IntInput{a.data_ptr<int64_t>(), a.size(1)}, a.size(0), a.size(1), a.options(), vth, i_decay,
                 v_decay, c_decay, m_decay, mpiu, ciu, record, out_dtype, input_shift);
}

// The same from the float synaptic input: z [M, T] float32/float64 -> a = round(z * scale) (half to even; scale a
// power of two) + bias[(row / inner) % C] (int64 [C] in input units, or an empty tensor for none), then as
// forward_int. Saves the torch passes (multiply, round, int64 copy, bias add) over the whole input.
std::vector<torch::Tensor> forward_int_float(torch::Tensor z, double scale, torch::Tensor bias, int64_t inner,
                                             int64_t vth, int64_t i_decay, int64_t v_decay, int64_t c_decay,
                                             int64_t m_decay, bool mpiu, bool ciu, bool record,
                                             torch::ScalarType out_dtype, int64_t input_shift) {
  check_2d(z, "z");
  int frac_exp = 0;
  TORCH_CHECK(scale > 0 && std::frexp(scale, &frac_exp) == 0.5, "scale must be a power of two");
  const bool has_bias = bias.numel() > 0;
  if (has_bias) {
    TORCH_CHECK(bias.dim() == 1 && bias.is_contiguous() && bias.device().is_cpu() &&
                bias.scalar_type() == torch::kInt64, "bias must be a contiguous int64 CPU tensor [C]");
    TORCH_CHECK(inner >= 1 && z.size(0) % (inner * bias.size(0)) == 0,
                "z's rows must be whole [C, inner] blocks (N, C, H, W flattened)");
  }
  std::vector<torch::Tensor> res;
  AT_DISPATCH_FLOATING_TYPES(z.scalar_type(), "ilif_forward_int_float", [&] {
    FloatInput<scalar_t> load{z.data_ptr<scalar_t>(), z.size(1), static_cast<scalar_t>(scale),
                              has_bias ? bias.data_ptr<int64_t>() : nullptr, has_bias ? bias.size(0) : 1,
                              std::max<int64_t>(inner, 1)};
    res = run_int(load, z.size(0), z.size(1), z.options(), vth, i_decay, v_decay, c_decay, m_decay, mpiu, ciu,
                  record, out_dtype, input_shift);
  });
  return res;
}

// The kernels' own exp and sigmoid, elementwise over a float32/float64 CPU tensor (tests check their accuracy).
torch::Tensor elementwise(torch::Tensor x, bool sig) {
  TORCH_CHECK(x.device().is_cpu(), "x must be a CPU tensor");
  auto xc = x.contiguous();
  auto out = torch::empty_like(xc);
  AT_DISPATCH_FLOATING_TYPES(xc.scalar_type(), "ilif_elementwise", [&] {
    const scalar_t* src = xc.data_ptr<scalar_t>();
    scalar_t* dst = out.data_ptr<scalar_t>();
    const int64_t n = xc.numel();
    if (sig) {
      for (int64_t i = 0; i < n; ++i) dst[i] = sigmoid(src[i]);
    } else {
      for (int64_t i = 0; i < n; ++i) dst[i] = vexp(src[i]);
    }
  });
  return out;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, mod) {
  mod.doc() = "Fused ILIF sequence kernels (CPU): float forward/backward, bit-exact integer forward";
  mod.def("forward_float", &forward_float);
  mod.def("backward_float", &backward_float);
  mod.def("forward_int", &forward_int);
  mod.def("forward_int_float", &forward_int_float);
  mod.def("pool_cached_bytes", []() { return BufferPool::get().cached(); });
  mod.def("pool_clear", []() { return BufferPool::get().clear(); }, "free the pool's cached blocks; returns bytes");
  mod.def("exp", [](torch::Tensor x) { return elementwise(x, false); }, "the kernels' vectorisable exp");
  mod.def("sigmoid", [](torch::Tensor x) { return elementwise(x, true); }, "the kernels' sigmoid, 1 / (1 + exp(-x))");
  mod.attr("BLOCK") = B;
}
