// Copyright 2026 The InhibiDistilBERT authors. Licensed under the Apache License, Version 2.0.
//
// Fused CPU inhibitor attention, forward and backward: register-blocked micro-kernels written with GCC/Clang vector
// extensions, compiled once per instruction set (AVX-512, AVX2+FMA, generic 128-bit) through `target` attributes and
// chosen at run time from CPUID, so the library runs on any x86-64 CPU (and on other architectures with the generic
// path). The math is in inhibitor_cpu.h. No torch header is included here: this file only sees raw pointers.
//
// Passes (n real keys, d head dimension, one tile of query rows at a time):
//   forward   1. D = L1 distances of the tile's rows to all keys   (vectorised over keys, K stored transposed)
//             2. m, z = relu(c * D - m - delta) per row              (O(n) per row)
//             3. H_il = eta * sum_j sign(V_jl) relu(|V_jl| - z_ij)   (vectorised over l; unsigned: relu(V - z))
//   backward  recomputes 1-2 from the saved row means (nothing O(N^2) is stored between forward and backward), then
//             4. dz_ij = sum_l G_il s_jl [cond_ijl], dV^T_lj += G_il [cond_ijl]   (vectorised over keys)
//             5. dZ = centred(-eta * dz * [z > 0]), W = c * dZ                    (O(n) per row)
//             6. dQ_i += sum_j W_ij sign(Q_i - K_j), dK_j -= the same             (vectorised over k)
#include "inhibitor_cpu.h"

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <type_traits>

#define INHIB_INLINE inline __attribute__((always_inline))
#define INHIB_UNROLL _Pragma("GCC unroll 16")

#if defined(__x86_64__) || defined(__i386__)
#define INHIB_X86 1
#define INHIB_TARGET_AVX512 __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma,bmi,bmi2")))
#define INHIB_TARGET_AVX2 __attribute__((target("avx2,fma,bmi,bmi2")))
#else
#define INHIB_X86 0
#endif

namespace inhibitor {
namespace {

// A vector of VB bytes of T, with the few operations the kernels need. All functions are always inlined, so the
// code is generated for the instruction set of the entry point that instantiates them.
template <typename T, int VB>
struct Simd {
  static constexpr int L = VB / static_cast<int>(sizeof(T));
  using I = std::conditional_t<sizeof(T) == 4, int32_t, int64_t>;
  typedef T vec __attribute__((vector_size(VB)));
  typedef I ivec __attribute__((vector_size(VB)));
  static constexpr I kAbsMask = ~(I(1) << (8 * sizeof(T) - 1));
  static constexpr I kSignMask = I(1) << (8 * sizeof(T) - 1);

  static INHIB_INLINE vec load(const T* p) {
    vec v;
    std::memcpy(&v, p, sizeof(vec));
    return v;
  }
  static INHIB_INLINE void store(T* p, vec v) { std::memcpy(p, &v, sizeof(vec)); }
  static INHIB_INLINE vec zero() { return vec{}; }
  // Broadcast through the integer domain: GCC folds `0 + x` for integers (not for floats) into one broadcast.
  static INHIB_INLINE vec splat(T s) {
    I bits;
    std::memcpy(&bits, &s, sizeof(bits));
    return (vec)(ivec{} + bits);
  }
  static INHIB_INLINE vec abs(vec x) { return (vec)((ivec)x & kAbsMask); }
  // max(x, 0) that keeps NaN (as torch.relu does): a NaN fails the comparison and passes through.
  static INHIB_INLINE vec relu(vec x) { return x < zero() ? zero() : x; }
  // sign(a) * w for a != 0 (w for a == +0): flip w's sign bit where a is negative.
  static INHIB_INLINE vec signed_like(vec a, vec w) { return (vec)(((ivec)a & kSignMask) ^ (ivec)w); }
  static INHIB_INLINE double hsum(vec x) {
    double s = 0.0;
    for (int i = 0; i < L; ++i) s += x[i];
    return s;
  }
};

// Register blocking per vector width: 32 registers with AVX-512, 16 with AVX2 and SSE.
template <int VB>
struct Blocking {
  static constexpr int score_rows = 4, score_keys = 2;  // rows x key vectors of accumulators
  static constexpr int out_rows = 4, out_cols = 2;      // rows x value vectors
  static constexpr int dz_rows = 2, dz_keys = 2;        // rows x key vectors
  static constexpr int dq_rows = 2, dq_keys = 2, dq_cols = 2;
};
template <>
struct Blocking<64> {
  static constexpr int score_rows = 4, score_keys = 4;
  static constexpr int out_rows = 4, out_cols = 4;
  static constexpr int dz_rows = 4, dz_keys = 2;
  static constexpr int dq_rows = 4, dq_keys = 2, dq_cols = 2;
};

constexpr int64_t kRowPad = 4;  // tiles are padded to a multiple of every *_rows above

INHIB_INLINE int64_t round_up(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

// ---------------------------------------------------------------------------------------------------------------
// Micro-kernels

// dst[r][j] = sum_k |q[r][k] - kt[k][j]| for RI rows and CJ vectors of keys.
template <typename T, int VB, int RI, int CJ>
INHIB_INLINE void score_tile(const T* q, int64_t ldq, const T* kt, int64_t ldk, int64_t dp, T* dst, int64_t ldd) {
  using S = Simd<T, VB>;
  using vec = typename S::vec;
  vec acc[RI][CJ];
  INHIB_UNROLL for (int r = 0; r < RI; ++r) INHIB_UNROLL for (int c = 0; c < CJ; ++c) acc[r][c] = S::zero();
  for (int64_t k = 0; k < dp; ++k) {
    vec kv[CJ];
    INHIB_UNROLL for (int c = 0; c < CJ; ++c) kv[c] = S::load(kt + k * ldk + c * S::L);
    INHIB_UNROLL for (int r = 0; r < RI; ++r) {
      const vec qb = S::splat(q[r * ldq + k]);
      INHIB_UNROLL for (int c = 0; c < CJ; ++c) acc[r][c] += S::abs(qb - kv[c]);
    }
  }
  INHIB_UNROLL for (int r = 0; r < RI; ++r) INHIB_UNROLL for (int c = 0; c < CJ; ++c)
    S::store(dst + r * ldd + c * S::L, acc[r][c]);
}

// D[prow, ldk] for a tile of prow (a multiple of kRowPad) query rows.
template <typename T, int VB>
INHIB_INLINE void score_pass(const T* q, int64_t ldq, const T* kt, int64_t ldk, int64_t dp, int64_t prow, T* dst,
                             int64_t ldd) {
  using S = Simd<T, VB>;
  using B = Blocking<VB>;
  constexpr int RI = B::score_rows, CJ = B::score_keys;
  const int64_t nv = ldk / S::L;
  int64_t c = 0;
  for (; c + CJ <= nv; c += CJ)
    for (int64_t r = 0; r < prow; r += RI)
      score_tile<T, VB, RI, CJ>(q + r * ldq, ldq, kt + c * S::L, ldk, dp, dst + r * ldd + c * S::L, ldd);
  for (; c < nv; ++c)
    for (int64_t r = 0; r < prow; r += RI)
      score_tile<T, VB, RI, 1>(q + r * ldq, ldq, kt + c * S::L, ldk, dp, dst + r * ldd + c * S::L, ldd);
}

// acc[r][l] = sum_{j < nk} s[j][l] * relu(a[j][l] - z[r][j]) with a = |V|, s = sign(V) (signed) or a = V, s = 1.
// Every term is computed directly (sub, max, fma), so a fully inhibited term is exactly zero; the cheaper
// sum_j V - sum_j clamp(V, -z, z) would cancel catastrophically when most keys are inhibited.
template <typename T, int VB, int RI, int CL, bool SIGNED>
INHIB_INLINE void inhibit_tile(const T* z, int64_t ldz, const T* a, const T* s, int64_t ldv, int64_t nk,
                               T* acc_out, int64_t lda) {
  using S = Simd<T, VB>;
  using vec = typename S::vec;
  vec acc[RI][CL];
  INHIB_UNROLL for (int r = 0; r < RI; ++r) INHIB_UNROLL for (int c = 0; c < CL; ++c) acc[r][c] = S::zero();
  for (int64_t j = 0; j < nk; ++j) {
    vec av[CL], sv[CL];
    INHIB_UNROLL for (int c = 0; c < CL; ++c) {
      av[c] = S::load(a + j * ldv + c * S::L);
      if constexpr (SIGNED) sv[c] = S::load(s + j * ldv + c * S::L);
    }
    INHIB_UNROLL for (int r = 0; r < RI; ++r) {
      const vec zb = S::splat(z[r * ldz + j]);
      INHIB_UNROLL for (int c = 0; c < CL; ++c) {
        const vec t = S::relu(av[c] - zb);
        if constexpr (SIGNED) {
          acc[r][c] += t * sv[c];
        } else {
          acc[r][c] += t;
        }
      }
    }
  }
  INHIB_UNROLL for (int r = 0; r < RI; ++r) INHIB_UNROLL for (int c = 0; c < CL; ++c)
    S::store(acc_out + r * lda + c * S::L, acc[r][c]);
}

template <typename T, int VB, bool SIGNED>
INHIB_INLINE void inhibit_pass(const T* z, int64_t ldz, const T* a, const T* s, int64_t dp, int64_t nk, int64_t prow,
                               T* acc, int64_t lda) {
  using S = Simd<T, VB>;
  using B = Blocking<VB>;
  constexpr int RI = B::out_rows, CL = B::out_cols;
  const int64_t nv = dp / S::L;
  for (int64_t r = 0; r < prow; r += RI) {
    int64_t c = 0;
    for (; c + CL <= nv; c += CL)
      inhibit_tile<T, VB, RI, CL, SIGNED>(z + r * ldz, ldz, a + c * S::L, s + c * S::L, dp, nk,
                                          acc + r * lda + c * S::L, lda);
    for (; c < nv; ++c)
      inhibit_tile<T, VB, RI, 1, SIGNED>(z + r * ldz, ldz, a + c * S::L, s + c * S::L, dp, nk,
                                         acc + r * lda + c * S::L, lda);
  }
}

// Backward pass 4 for RI rows and CJ key vectors, over every l:
//   dz[r][j] = sum_l g[r][l] * s[l][j] * [a[l][j] > z[r][j]]   and   dvt[l][j] += sum_r g[r][l] * [a[l][j] > z[r][j]]
// with a = |V|^T, s = sign(V)^T (signed) or a = V^T, s = 1 (unsigned).
template <typename T, int VB, int RI, int CJ, bool SIGNED>
INHIB_INLINE void dz_tile(const T* g, int64_t ldg, const T* z, int64_t ldz, const T* a, const T* s, int64_t ldk,
                          int64_t dp, T* dz, T* dvt) {
  using S = Simd<T, VB>;
  using vec = typename S::vec;
  vec zr[RI][CJ], acc[RI][CJ];
  INHIB_UNROLL for (int r = 0; r < RI; ++r) INHIB_UNROLL for (int c = 0; c < CJ; ++c) {
    zr[r][c] = S::load(z + r * ldz + c * S::L);
    acc[r][c] = S::zero();
  }
  for (int64_t l = 0; l < dp; ++l) {
    vec av[CJ], sv[CJ], dv[CJ];
    INHIB_UNROLL for (int c = 0; c < CJ; ++c) {
      av[c] = S::load(a + l * ldk + c * S::L);
      if constexpr (SIGNED) sv[c] = S::load(s + l * ldk + c * S::L);
      dv[c] = S::load(dvt + l * ldk + c * S::L);
    }
    INHIB_UNROLL for (int r = 0; r < RI; ++r) {
      const vec gb = S::splat(g[r * ldg + l]);
      INHIB_UNROLL for (int c = 0; c < CJ; ++c) {
        const vec gm = av[c] > zr[r][c] ? gb : S::zero();
        dv[c] += gm;
        if constexpr (SIGNED) {
          acc[r][c] += gm * sv[c];
        } else {
          acc[r][c] += gm;
        }
      }
    }
    INHIB_UNROLL for (int c = 0; c < CJ; ++c) S::store(dvt + l * ldk + c * S::L, dv[c]);
  }
  INHIB_UNROLL for (int r = 0; r < RI; ++r) INHIB_UNROLL for (int c = 0; c < CJ; ++c)
    S::store(dz + r * ldz + c * S::L, acc[r][c]);
}

template <typename T, int VB, bool SIGNED>
INHIB_INLINE void dz_pass(const T* g, int64_t ldg, const T* z, int64_t ldz, const T* a, const T* s, int64_t ldk,
                          int64_t dp, int64_t prow, T* dz, T* dvt) {
  using S = Simd<T, VB>;
  using B = Blocking<VB>;
  constexpr int RI = B::dz_rows, CJ = B::dz_keys;
  const int64_t nv = ldk / S::L;
  for (int64_t r = 0; r < prow; r += RI) {
    int64_t c = 0;
    for (; c + CJ <= nv; c += CJ)
      dz_tile<T, VB, RI, CJ, SIGNED>(g + r * ldg, ldg, z + r * ldz + c * S::L, ldz, a + c * S::L, s + c * S::L, ldk,
                                     dp, dz + r * ldz + c * S::L, dvt + c * S::L);
    for (; c < nv; ++c)
      dz_tile<T, VB, RI, 1, SIGNED>(g + r * ldg, ldg, z + r * ldz + c * S::L, ldz, a + c * S::L, s + c * S::L, ldk,
                                    dp, dz + r * ldz + c * S::L, dvt + c * S::L);
  }
}

// Backward pass 6 on RJ keys starting at key j for RI rows and CL column vectors (registers qv, dqa):
//   t = sign(q[r] - k[j]) * w[r][j];  dqa[r] += t;  dk[j] -= t.
template <typename T, int VB, int RI, int RJ, int CL>
INHIB_INLINE void dq_keys(const typename Simd<T, VB>::vec (&qv)[RI][CL], typename Simd<T, VB>::vec (&dqa)[RI][CL],
                          const T* kc, int64_t ldk, const T* w, int64_t ldw, int64_t j, T* dk) {
  using S = Simd<T, VB>;
  using vec = typename S::vec;
  vec kv[RJ][CL], dka[RJ][CL];
  INHIB_UNROLL for (int jj = 0; jj < RJ; ++jj) INHIB_UNROLL for (int c = 0; c < CL; ++c) {
    kv[jj][c] = S::load(kc + (j + jj) * ldk + c * S::L);
    dka[jj][c] = S::zero();
  }
  INHIB_UNROLL for (int r = 0; r < RI; ++r) INHIB_UNROLL for (int jj = 0; jj < RJ; ++jj) {
    const vec wb = S::splat(w[r * ldw + j + jj]);
    INHIB_UNROLL for (int c = 0; c < CL; ++c) {
      const vec t = S::signed_like(qv[r][c] - kv[jj][c], wb);
      dqa[r][c] += t;
      dka[jj][c] += t;
    }
  }
  INHIB_UNROLL for (int jj = 0; jj < RJ; ++jj) INHIB_UNROLL for (int c = 0; c < CL; ++c) {
    T* p = dk + (j + jj) * ldk + c * S::L;
    S::store(p, S::load(p) - dka[jj][c]);
  }
}

template <typename T, int VB, int RI, int CL>
INHIB_INLINE void dq_tile(const T* q, int64_t ldq, const T* kc, int64_t ldk, const T* w, int64_t ldw, int64_t nk,
                          T* dq, int64_t lddq, T* dk) {
  using S = Simd<T, VB>;
  using vec = typename S::vec;
  constexpr int RJ = Blocking<VB>::dq_keys;
  vec qv[RI][CL], dqa[RI][CL];
  INHIB_UNROLL for (int r = 0; r < RI; ++r) INHIB_UNROLL for (int c = 0; c < CL; ++c) {
    qv[r][c] = S::load(q + r * ldq + c * S::L);
    dqa[r][c] = S::zero();
  }
  int64_t j = 0;
  for (; j + RJ <= nk; j += RJ) dq_keys<T, VB, RI, RJ, CL>(qv, dqa, kc, ldk, w, ldw, j, dk);
  for (; j < nk; ++j) dq_keys<T, VB, RI, 1, CL>(qv, dqa, kc, ldk, w, ldw, j, dk);
  INHIB_UNROLL for (int r = 0; r < RI; ++r) INHIB_UNROLL for (int c = 0; c < CL; ++c)
    S::store(dq + r * lddq + c * S::L, dqa[r][c]);
}

template <typename T, int VB>
INHIB_INLINE void dq_pass(const T* q, int64_t dp, const T* kc, const T* w, int64_t ldw, int64_t nk, int64_t prow,
                          T* dq, T* dk) {
  using S = Simd<T, VB>;
  using B = Blocking<VB>;
  constexpr int RI = B::dq_rows, CL = B::dq_cols;
  const int64_t nv = dp / S::L;
  int64_t c = 0;
  for (; c + CL <= nv; c += CL)
    for (int64_t r = 0; r < prow; r += RI)
      dq_tile<T, VB, RI, CL>(q + r * dp + c * S::L, dp, kc + c * S::L, dp, w + r * ldw, ldw, nk,
                             dq + r * dp + c * S::L, dp, dk + c * S::L);
  for (; c < nv; ++c)
    for (int64_t r = 0; r < prow; r += RI)
      dq_tile<T, VB, RI, 1>(q + r * dp + c * S::L, dp, kc + c * S::L, dp, w + r * ldw, ldw, nk,
                            dq + r * dp + c * S::L, dp, dk + c * S::L);
}

// ---------------------------------------------------------------------------------------------------------------
// Row helpers (O(n) per row)

template <typename T, int VB>
INHIB_INLINE double row_sum(const T* x, int64_t n) {
  using S = Simd<T, VB>;
  typename S::vec acc = S::zero();
  int64_t j = 0;
  for (; j + S::L <= n; j += S::L) acc += S::load(x + j);
  double s = S::hsum(acc);
  for (; j < n; ++j) s += x[j];
  return s;
}

// z[j] = relu(c * D[j] - s) for the whole padded row (NaN stays NaN).
template <typename T, int VB>
INHIB_INLINE void inhibition_row(const T* dist, T c, T s, int64_t ldk, T* z) {
  using S = Simd<T, VB>;
  const auto cv = S::splat(c), sv = S::splat(s);
  for (int64_t j = 0; j < ldk; j += S::L) S::store(z + j, S::relu(cv * S::load(dist + j) - sv));
}

// Copy rows [rows, d] (row stride ld) into a zero-padded [prow, dp] buffer.
template <typename T>
INHIB_INLINE void gather_rows(const T* src, int64_t ld, int64_t rows, int64_t d, int64_t prow, int64_t dp, T* dst) {
  for (int64_t r = 0; r < prow; ++r) {
    T* out = dst + r * dp;
    if (r < rows) {
      std::memcpy(out, src + r * ld, sizeof(T) * d);
      for (int64_t l = d; l < dp; ++l) out[l] = T(0);
    } else {
      std::memset(out, 0, sizeof(T) * dp);
    }
  }
}

INHIB_INLINE int64_t key_row(const int64_t* keys, int64_t j) { return keys ? keys[j] : j; }

// ---------------------------------------------------------------------------------------------------------------
// Forward

// Per value: a = |V| and s = sign(V) for the signed form, a = V for the unsigned one.
template <typename T>
INHIB_INLINE void split_value(T v, bool signed_inhibition, T* a, T* s) {
  *a = signed_inhibition ? std::fabs(v) : v;
  *s = v > T(0) ? T(1) : (v < T(0) ? T(-1) : T(0));
}

template <typename T, int VB>
INHIB_INLINE void pack_forward_impl(const Head<T>& h, T* packed) {
  const int64_t dp = padded<T>(h.d), ldk = padded<T>(h.nk);
  T* kt = packed;
  T* av = kt + dp * ldk;
  T* sv = av + h.nk * dp;
  std::memset(kt, 0, sizeof(T) * (dp * ldk + 2 * h.nk * dp));
  for (int64_t j = 0; j < h.nk; ++j) {
    const int64_t src = key_row(h.keys, j);
    const T* krow = h.k + src * h.k_rs;
    const T* vrow = h.v + src * h.v_rs;
    for (int64_t l = 0; l < h.d; ++l) {
      kt[l * ldk + j] = krow[l];
      split_value(vrow[l], h.signed_inhibition, av + j * dp + l, sv + j * dp + l);
    }
  }
}

template <typename T, int VB>
INHIB_INLINE void forward_rows_impl(const Head<T>& h, const T* packed, const ForwardIO<T>& io, int64_t row_begin,
                                    int64_t row_end, T* work) {
  const int64_t dp = padded<T>(h.d), ldk = padded<T>(h.nk), nk = h.nk;
  const T* kt = packed;
  const T* av = kt + dp * ldk;
  const T* sv = av + nk * dp;
  T* qbuf = work;
  T* acc = qbuf + TILE_ROWS * dp;
  T* zbuf = acc + TILE_ROWS * dp;
  const T c = h.score_scale / std::sqrt(static_cast<T>(h.d));
  for (int64_t t0 = row_begin; t0 < row_end; t0 += TILE_ROWS) {
    const int64_t rows = row_end - t0 < TILE_ROWS ? row_end - t0 : TILE_ROWS;
    const int64_t prow = round_up(rows, kRowPad);
    if (nk > 0) {
      gather_rows(h.q + t0 * h.q_rs, h.q_rs, rows, h.d, prow, dp, qbuf);
      score_pass<T, VB>(qbuf, dp, kt, ldk, dp, prow, zbuf, ldk);
      for (int64_t r = 0; r < prow; ++r) {
        T* row = zbuf + r * ldk;
        const T mean = h.center ? static_cast<T>(c * (row_sum<T, VB>(row, nk) / static_cast<double>(nk))) : T(0);
        if (io.row_mean && r < rows) io.row_mean[t0 + r] = mean;
        inhibition_row<T, VB>(row, c, mean + h.shift, ldk, row);
      }
      if (h.signed_inhibition) {
        inhibit_pass<T, VB, true>(zbuf, ldk, av, sv, dp, nk, prow, acc, dp);
      } else {
        inhibit_pass<T, VB, false>(zbuf, ldk, av, sv, dp, nk, prow, acc, dp);
      }
    } else {
      std::memset(acc, 0, sizeof(T) * prow * dp);
      if (io.row_mean)
        for (int64_t r = 0; r < rows; ++r) io.row_mean[t0 + r] = T(0);
    }
    for (int64_t r = 0; r < rows; ++r) {
      T* out = io.out + (t0 + r) * io.out_rs;
      const T* a = acc + r * dp;
      for (int64_t l = 0; l < h.d; ++l) out[l] = h.output_scale * a[l];
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Backward: one (batch, head) per call; recomputes D and z tile by tile from the saved row means.

template <typename T, int VB>
INHIB_INLINE void backward_head_impl(const Head<T>& h, const BackwardIO<T>& io, T* work) {
  using S = Simd<T, VB>;
  using vec = typename S::vec;
  const int64_t d = h.d, dp = padded<T>(d), nk = h.nk, ldk = padded<T>(nk);
  const T c = h.score_scale / std::sqrt(static_cast<T>(d));
  const T eta = h.output_scale;
  const bool sgn = h.signed_inhibition;
  T* kt = work;
  T* at = kt + dp * ldk;
  T* st = at + dp * ldk;
  T* dvt = st + dp * ldk;
  T* kc = dvt + dp * ldk;
  T* ac = kc + nk * dp;
  T* sc = ac + nk * dp;
  T* dkc = sc + nk * dp;
  T* qbuf = dkc + nk * dp;
  T* gbuf = qbuf + TILE_ROWS * dp;
  T* dqbuf = gbuf + TILE_ROWS * dp;
  T* raw = dqbuf + TILE_ROWS * dp;
  T* dbuf = raw + TILE_ROWS * dp;
  T* zbuf = dbuf + TILE_ROWS * ldk;
  T* wbuf = zbuf + TILE_ROWS * ldk;

  // Pack this head: K^T, |V|^T (or V^T), sign(V)^T, K, zeroed dV^T and dK, and |V|, sign(V) for a zero eta.
  std::memset(kt, 0, sizeof(T) * 4 * dp * ldk);
  std::memset(kc, 0, sizeof(T) * 4 * nk * dp);
  for (int64_t j = 0; j < nk; ++j) {
    const int64_t src = key_row(h.keys, j);
    const T* krow = h.k + src * h.k_rs;
    const T* vrow = h.v + src * h.v_rs;
    std::memcpy(kc + j * dp, krow, sizeof(T) * d);
    for (int64_t l = 0; l < d; ++l) {
      kt[l * ldk + j] = krow[l];
      split_value(vrow[l], sgn, ac + j * dp + l, sc + j * dp + l);
      at[l * ldk + j] = ac[j * dp + l];
      st[l * ldk + j] = sc[j * dp + l];
    }
  }

  double dgamma = 0.0, ddelta = 0.0, deta = 0.0;
  for (int64_t t0 = 0; t0 < h.nq; t0 += TILE_ROWS) {
    const int64_t rows = h.nq - t0 < TILE_ROWS ? h.nq - t0 : TILE_ROWS;
    const int64_t prow = round_up(rows, kRowPad);
    gather_rows(io.grad + t0 * io.grad_rs, io.grad_rs, rows, d, prow, dp, gbuf);
    if (eta != T(0)) {  // d eta = sum G * out / eta
      for (int64_t r = 0; r < rows; ++r) {
        const T* o = io.out + (t0 + r) * io.out_rs;
        const T* g = gbuf + r * dp;
        double s = 0.0;
        for (int64_t l = 0; l < d; ++l) s += static_cast<double>(g[l]) * o[l];
        deta += s;
      }
    }
    if (nk == 0) {
      for (int64_t r = 0; r < rows; ++r) std::memset(io.dq + (t0 + r) * io.dq_rs, 0, sizeof(T) * d);
      continue;
    }
    gather_rows(h.q + t0 * h.q_rs, h.q_rs, rows, d, prow, dp, qbuf);
    score_pass<T, VB>(qbuf, dp, kt, ldk, dp, prow, dbuf, ldk);
    for (int64_t r = 0; r < prow; ++r) {
      const T mean = r < rows ? io.row_mean[t0 + r] : T(0);
      inhibition_row<T, VB>(dbuf + r * ldk, c, mean + h.shift, ldk, zbuf + r * ldk);
    }
    if (eta == T(0)) {  // the saved output is zero: d eta needs the raw sums, recomputed here
      if (sgn) {
        inhibit_pass<T, VB, true>(zbuf, ldk, ac, sc, dp, nk, prow, raw, dp);
      } else {
        inhibit_pass<T, VB, false>(zbuf, ldk, ac, sc, dp, nk, prow, raw, dp);
      }
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t l = 0; l < d; ++l) deta += static_cast<double>(gbuf[r * dp + l]) * raw[r * dp + l];
    }
    if (sgn) {
      dz_pass<T, VB, true>(gbuf, dp, zbuf, ldk, at, st, ldk, dp, prow, wbuf, dvt);
    } else {
      dz_pass<T, VB, false>(gbuf, dp, zbuf, ldk, at, st, ldk, dp, prow, wbuf, dvt);
    }
    // Rows: du = -eta * dz * [z > 0]; centring subtracts the row mean of du; W = c * dZ.
    const vec neg_eta = S::splat(-eta), cv = S::splat(c);
    for (int64_t r = 0; r < prow; ++r) {
      T* w = wbuf + r * ldk;
      const T* z = zbuf + r * ldk;
      const T* dist = dbuf + r * ldk;
      vec sdu = S::zero(), sdud = S::zero();
      for (int64_t j = 0; j < ldk; j += S::L) {  // padded keys have dz = 0, hence du = 0
        const vec du = S::load(z + j) > S::zero() ? neg_eta * S::load(w + j) : S::zero();
        S::store(w + j, du);
        sdu += du;
        sdud += du * S::load(dist + j);
      }
      const double sum_du = S::hsum(sdu);
      const double mean_du = h.center ? sum_du / static_cast<double>(nk) : 0.0;
      ddelta -= sum_du;
      dgamma += S::hsum(sdud) - (h.center ? mean_du * row_sum<T, VB>(dist, nk) : 0.0);
      const vec mv = S::splat(static_cast<T>(mean_du));
      for (int64_t j = 0; j < ldk; j += S::L) S::store(w + j, cv * (S::load(w + j) - mv));
    }
    dq_pass<T, VB>(qbuf, dp, kc, wbuf, ldk, nk, prow, dqbuf, dkc);
    for (int64_t r = 0; r < rows; ++r) std::memcpy(io.dq + (t0 + r) * io.dq_rs, dqbuf + r * dp, sizeof(T) * d);
  }
  for (int64_t j = 0; j < nk; ++j) {
    const int64_t dst = key_row(h.keys, j);
    std::memcpy(io.dk + dst * io.dk_rs, dkc + j * dp, sizeof(T) * d);
    T* dv = io.dv + dst * io.dv_rs;
    for (int64_t l = 0; l < d; ++l) dv[l] = eta * dvt[l * ldk + j];
  }
  io.partials[0] = dgamma / std::sqrt(static_cast<double>(d));
  io.partials[1] = ddelta;
  io.partials[2] = eta != T(0) ? deta / static_cast<double>(eta) : deta;
}

// ---------------------------------------------------------------------------------------------------------------
// Entry points per instruction set and run-time selection

#define INHIB_ENTRIES(T, VB, NAME, ATTR)                                                                       \
  ATTR void pack_forward_##NAME(const Head<T>& h, T* packed) { pack_forward_impl<T, VB>(h, packed); }         \
  ATTR void forward_rows_##NAME(const Head<T>& h, const T* packed, const ForwardIO<T>& io, int64_t row_begin, \
                                int64_t row_end, T* work) {                                                   \
    forward_rows_impl<T, VB>(h, packed, io, row_begin, row_end, work);                                        \
  }                                                                                                           \
  ATTR void backward_head_##NAME(const Head<T>& h, const BackwardIO<T>& io, T* work) {                        \
    backward_head_impl<T, VB>(h, io, work);                                                                   \
  }                                                                                                           \
  const CpuKernels<T> kernels_##NAME = {#NAME, pack_forward_##NAME, forward_rows_##NAME, backward_head_##NAME};

INHIB_ENTRIES(float, 16, f32_generic, )
INHIB_ENTRIES(double, 16, f64_generic, )
#if INHIB_X86
INHIB_ENTRIES(float, 32, f32_avx2, INHIB_TARGET_AVX2)
INHIB_ENTRIES(double, 32, f64_avx2, INHIB_TARGET_AVX2)
INHIB_ENTRIES(float, 64, f32_avx512, INHIB_TARGET_AVX512)
INHIB_ENTRIES(double, 64, f64_avx512, INHIB_TARGET_AVX512)
#endif

enum Isa : int { kGeneric = 0, kAvx2 = 1, kAvx512 = 2 };
const char* const kIsaNames[] = {"generic", "avx2", "avx512"};

int best_isa() {
#if INHIB_X86
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("bmi2"))
    return kAvx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("bmi2")) return kAvx2;
#endif
  return kGeneric;
}

std::atomic<int>& active_isa() {
  static std::atomic<int> isa{best_isa()};
  return isa;
}

}  // namespace

template <>
const CpuKernels<float>& cpu_kernels<float>() {
  switch (active_isa().load()) {
#if INHIB_X86
    case kAvx512:
      return kernels_f32_avx512;
    case kAvx2:
      return kernels_f32_avx2;
#endif
    default:
      return kernels_f32_generic;
  }
}

template <>
const CpuKernels<double>& cpu_kernels<double>() {
  switch (active_isa().load()) {
#if INHIB_X86
    case kAvx512:
      return kernels_f64_avx512;
    case kAvx2:
      return kernels_f64_avx2;
#endif
    default:
      return kernels_f64_generic;
  }
}

const char* cpu_isa() { return kIsaNames[active_isa().load()]; }

bool set_cpu_isa(const char* name) {
  const int best = best_isa();
  int wanted = -1;
  if (std::strcmp(name, "auto") == 0) wanted = best;
  for (int i = 0; i < 3; ++i)
    if (std::strcmp(name, kIsaNames[i]) == 0) wanted = i;
  if (wanted < 0 || wanted > best) return false;
  active_isa().store(wanted);
  return true;
}

}  // namespace inhibitor
