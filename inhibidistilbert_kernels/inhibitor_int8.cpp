// Copyright 2026 The InhibiDistilBERT authors. Licensed under the Apache License, Version 2.0.
//
// Integer inhibitor attention for inference (see Int8Head in inhibitor_cpu.h for the arithmetic). The two
// O(N^2 d) passes are integer-only and map onto single instructions:
//   distances  vpsadbw: sum of |a - b| over 8 unsigned bytes; Q and K are stored with a +128 offset, which leaves
//              |q - k| unchanged. A 64-byte vector holds 8 dimensions of 8 keys, so one vpsadbw against a broadcast
//              query slice yields 8 partial distances (8 keys x 8 dimensions = 64 subtract-abs-adds).
//   sums       vpmaxsb/vpminsb clamp 64 int8 values to [-z, z]; vpdpbusd (AVX-512 VNNI) adds 4 keys' clamped values
//              into int32 lanes (the unsigned operand is all ones): 64 clamp-and-adds per 3 instructions.
// Without AVX-512 VNNI a portable path (plain loops the compiler vectorises) computes the same integers.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "inhibitor_cpu.h"

#if defined(__x86_64__) || defined(__i386__)
#define INHIB_INT8_X86 1
#include <immintrin.h>
#define INHIB_TARGET_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")))
#else
#define INHIB_INT8_X86 0
#endif

#define INHIB_INLINE inline __attribute__((always_inline))

namespace inhibitor {
namespace {

constexpr int64_t kRows = TILE_ROWS;  // query rows per tile (a multiple of the 4-row register blocking)

INHIB_INLINE int64_t round_up(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

// Layout of one head's workspace; every region starts on a 64-byte boundary.
struct Layout {
  int64_t dp;   // head dimension padded to 64 bytes
  int64_t ldk;  // keys padded to 8 (one 64-byte vector of the distance layout)
  int64_t nk4;  // keys padded to 4 (one int32 lane of the value layout)
  int64_t kp, vp, vsum, qbuf, dist, z, zneg, acc, total;  // byte offsets
};

Layout layout(int64_t nk, int64_t d) {
  Layout o;
  o.dp = round_up(std::max<int64_t>(d, 1), 64);
  o.ldk = round_up(std::max<int64_t>(nk, 1), 8);
  o.nk4 = round_up(std::max<int64_t>(nk, 1), 4);
  int64_t at = 0;
  auto region = [&at](int64_t bytes) {
    const int64_t start = at;
    at += round_up(bytes, 64);
    return start;
  };
  o.kp = region(o.dp * o.ldk);                            // uint8 [dp / 8][ldk][8]: K + 128
  o.vp = region(o.nk4 * o.dp);                            // int8 [nk4 / 4][dp][4]: V, 4 keys interleaved
  o.vsum = region(4 * o.dp);                              // int32 [dp]
  o.qbuf = region(kRows * o.dp);                          // uint8 [rows][dp]: Q + 128
  o.dist = region(4 * kRows * o.ldk);                     // int32 [rows][ldk]
  o.z = region(kRows * o.nk4);                            // int8 [rows][nk4]
  o.zneg = region(kRows * o.nk4);                         // int8 [rows][nk4]
  o.acc = region(4 * kRows * o.dp);                       // int32 [rows][dp]
  o.total = at + 64;                                      // slack to align the base pointer
  return o;
}

INHIB_INLINE int64_t key_row(const int64_t* keys, int64_t j) { return keys ? keys[j] : j; }

void pack_head(const Int8Head& h, const Layout& o, uint8_t* base) {
  uint8_t* kp = base + o.kp;
  int8_t* vp = reinterpret_cast<int8_t*>(base + o.vp);
  int32_t* vsum = reinterpret_cast<int32_t*>(base + o.vsum);
  std::memset(kp, 128, o.dp * o.ldk);  // padded dimensions and keys: offset zero, |128 - 128| = 0
  std::memset(vp, 0, o.nk4 * o.dp);    // padded keys and dimensions: v = 0 adds nothing
  std::memset(vsum, 0, 4 * o.dp);
  for (int64_t j = 0; j < h.nk; ++j) {
    const int64_t src = key_row(h.keys, j);
    const int8_t* krow = h.k + src * h.k_rs;
    const int8_t* vrow = h.v + src * h.v_rs;
    for (int64_t l = 0; l < h.d; ++l) {
      kp[(l / 8) * o.ldk * 8 + j * 8 + l % 8] = static_cast<uint8_t>(krow[l] + 128);
      vp[(j / 4) * o.dp * 4 + l * 4 + j % 4] = vrow[l];
      vsum[l] += vrow[l];
    }
  }
}

void gather_queries(const Int8Head& h, const Layout& o, int64_t t0, int64_t rows, int64_t prow, uint8_t* qbuf) {
  std::memset(qbuf, 128, prow * o.dp);
  for (int64_t r = 0; r < rows; ++r) {
    const int8_t* src = h.q + (t0 + r) * h.q_rs;
    for (int64_t l = 0; l < h.d; ++l) qbuf[r * o.dp + l] = static_cast<uint8_t>(src[l] + 128);
  }
}

// z and -z on V's grid from the integer distances of one row (the one float step, O(n) per row).
void requantise_row(const Int8Head& h, const Layout& o, const int32_t* dist, int8_t* z, int8_t* zneg) {
  double mean = 0.0;
  if (h.center && h.nk > 0) {
    int64_t sum = 0;
    for (int64_t j = 0; j < h.nk; ++j) sum += dist[j];
    mean = static_cast<double>(sum) / static_cast<double>(h.nk);
  }
  const float scale = h.score_unit / h.value_unit;
  const float offset = static_cast<float>((h.score_unit * mean + h.shift) / h.value_unit);
  for (int64_t j = 0; j < h.nk; ++j) {
    const float zf = std::nearbyint(static_cast<float>(dist[j]) * scale - offset);
    const int8_t zq = static_cast<int8_t>(std::min(std::max(zf, 0.0f), 127.0f));
    z[j] = zq;
    zneg[j] = static_cast<int8_t>(-zq);
  }
  for (int64_t j = h.nk; j < o.nk4; ++j) z[j] = zneg[j] = 0;
}

// ---------------------------------------------------------------------------------------------------------------
// Portable passes

void distances_generic(const Layout& o, const uint8_t* qbuf, int64_t prow, int64_t nk, const uint8_t* kp,
                       int32_t* dist) {
  for (int64_t r = 0; r < prow; ++r) {
    const uint8_t* q = qbuf + r * o.dp;
    for (int64_t j = 0; j < nk; ++j) {
      int32_t s = 0;
      for (int64_t g = 0; g < o.dp / 8; ++g) {
        const uint8_t* kk = kp + g * o.ldk * 8 + j * 8;
        for (int b = 0; b < 8; ++b) s += std::abs(static_cast<int32_t>(q[g * 8 + b]) - static_cast<int32_t>(kk[b]));
      }
      dist[r * o.ldk + j] = s;
    }
  }
}

void sums_generic(const Layout& o, const int8_t* z, const int8_t* zneg, int64_t prow, const int8_t* vp,
                  bool signed_inhibition, int32_t* acc) {
  for (int64_t r = 0; r < prow; ++r) {
    int32_t* a = acc + r * o.dp;
    std::memset(a, 0, 4 * o.dp);
    for (int64_t j = 0; j < o.nk4; ++j) {
      const int8_t zj = z[r * o.nk4 + j], nj = zneg[r * o.nk4 + j];
      const int8_t* v = vp + (j / 4) * o.dp * 4 + j % 4;
      for (int64_t l = 0; l < o.dp; ++l) {
        const int8_t x = v[l * 4];
        a[l] += signed_inhibition ? std::min(std::max(x, nj), zj) : std::min(x, zj);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// AVX-512 VNNI passes

#if INHIB_INT8_X86
template <int CJ>
INHIB_TARGET_VNNI INHIB_INLINE void distance_tile_vnni(const uint8_t* q, int64_t ldq, const uint8_t* kp, int64_t ldk,
                                                       int64_t groups, int32_t* dist, int64_t ldd) {
  __m512i acc[4][CJ];
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < CJ; ++c) acc[r][c] = _mm512_setzero_si512();
  for (int64_t g = 0; g < groups; ++g) {
    __m512i kv[CJ];
    for (int c = 0; c < CJ; ++c) kv[c] = _mm512_loadu_si512(kp + g * ldk * 8 + c * 64);
    for (int r = 0; r < 4; ++r) {
      int64_t slice;
      std::memcpy(&slice, q + r * ldq + g * 8, 8);
      const __m512i qb = _mm512_set1_epi64(slice);
      for (int c = 0; c < CJ; ++c) acc[r][c] = _mm512_add_epi64(acc[r][c], _mm512_sad_epu8(qb, kv[c]));
    }
  }
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < CJ; ++c)
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(dist + r * ldd + c * 8), _mm512_cvtepi64_epi32(acc[r][c]));
}

INHIB_TARGET_VNNI void distances_vnni(const Layout& o, const uint8_t* qbuf, int64_t prow, const uint8_t* kp,
                                      int32_t* dist) {
  const int64_t vectors = o.ldk / 8, groups = o.dp / 8;
  for (int64_t r = 0; r < prow; r += 4) {
    int64_t c = 0;
    for (; c + 4 <= vectors; c += 4)
      distance_tile_vnni<4>(qbuf + r * o.dp, o.dp, kp + c * 64, o.ldk, groups, dist + r * o.ldk + c * 8, o.ldk);
    for (; c < vectors; ++c)
      distance_tile_vnni<1>(qbuf + r * o.dp, o.dp, kp + c * 64, o.ldk, groups, dist + r * o.ldk + c * 8, o.ldk);
  }
}

template <bool SIGNED>
INHIB_TARGET_VNNI INHIB_INLINE void sum_tile_vnni(const int8_t* z, const int8_t* zneg, int64_t ldz, const int8_t* vp,
                                                  int64_t dp, int64_t groups, int32_t* acc, int64_t lda) {
  const __m512i ones = _mm512_set1_epi8(1);
  __m512i a[4][4];
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 4; ++c) a[r][c] = _mm512_setzero_si512();
  for (int64_t g = 0; g < groups; ++g) {  // 4 keys per group
    __m512i vv[4];
    for (int c = 0; c < 4; ++c) vv[c] = _mm512_loadu_si512(vp + g * dp * 4 + c * 64);
    for (int r = 0; r < 4; ++r) {
      int32_t zw, nw;
      std::memcpy(&zw, z + r * ldz + g * 4, 4);
      std::memcpy(&nw, zneg + r * ldz + g * 4, 4);
      const __m512i zb = _mm512_set1_epi32(zw);
      const __m512i nb = _mm512_set1_epi32(nw);
      for (int c = 0; c < 4; ++c) {
        const __m512i t = SIGNED ? _mm512_min_epi8(_mm512_max_epi8(vv[c], nb), zb) : _mm512_min_epi8(vv[c], zb);
        a[r][c] = _mm512_dpbusd_epi32(a[r][c], ones, t);
      }
    }
  }
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 4; ++c) _mm512_storeu_si512(acc + r * lda + c * 16, a[r][c]);
}

template <bool SIGNED>
INHIB_TARGET_VNNI void sums_vnni(const Layout& o, const int8_t* z, const int8_t* zneg, int64_t prow,
                                 const int8_t* vp, int32_t* acc) {
  for (int64_t r = 0; r < prow; r += 4)
    for (int64_t l = 0; l < o.dp; l += 64)  // 64 dimensions = 4 vectors of 16 int32 lanes
      sum_tile_vnni<SIGNED>(z + r * o.nk4, zneg + r * o.nk4, o.nk4, vp + l * 4, o.dp, o.nk4 / 4,
                            acc + r * o.dp + l, o.dp);
}

bool cpu_has_vnni() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
         __builtin_cpu_supports("avx512vnni");
}
#endif

bool use_vnni() {
#if INHIB_INT8_X86
  static const bool has = cpu_has_vnni();
  return has && std::strcmp(cpu_isa(), "avx512") == 0;  // set_cpu_isa("avx2"/"generic") also forces the portable path
#else
  return false;
#endif
}

}  // namespace

int64_t int8_work_bytes(int64_t nk, int64_t d) { return layout(nk, d).total; }

const char* int8_isa() { return use_vnni() ? "avx512vnni" : "generic"; }

void int8_forward_head(const Int8Head& h, float* out, int64_t out_rs, uint8_t* work) {
  const Layout o = layout(h.nk, h.d);
  uint8_t* base = reinterpret_cast<uint8_t*>(round_up(reinterpret_cast<uintptr_t>(work), 64));
  pack_head(h, o, base);
  const uint8_t* kp = base + o.kp;
  const int8_t* vp = reinterpret_cast<const int8_t*>(base + o.vp);
  const int32_t* vsum = reinterpret_cast<const int32_t*>(base + o.vsum);
  uint8_t* qbuf = base + o.qbuf;
  int32_t* dist = reinterpret_cast<int32_t*>(base + o.dist);
  int8_t* z = reinterpret_cast<int8_t*>(base + o.z);
  int8_t* zneg = reinterpret_cast<int8_t*>(base + o.zneg);
  int32_t* acc = reinterpret_cast<int32_t*>(base + o.acc);
  const bool vnni = use_vnni();
  const float unit = h.output_scale * h.value_unit;
  for (int64_t t0 = 0; t0 < h.nq; t0 += kRows) {
    const int64_t rows = std::min(kRows, h.nq - t0), prow = round_up(rows, 4);
    if (h.nk == 0) {
      for (int64_t r = 0; r < rows; ++r) std::memset(out + (t0 + r) * out_rs, 0, sizeof(float) * h.d);
      continue;
    }
    gather_queries(h, o, t0, rows, prow, qbuf);
#if INHIB_INT8_X86
    if (vnni) {
      distances_vnni(o, qbuf, prow, kp, dist);
    } else {
      distances_generic(o, qbuf, prow, h.nk, kp, dist);
    }
#else
    distances_generic(o, qbuf, prow, h.nk, kp, dist);
#endif
    for (int64_t r = 0; r < prow; ++r) requantise_row(h, o, dist + r * o.ldk, z + r * o.nk4, zneg + r * o.nk4);
#if INHIB_INT8_X86
    if (vnni) {
      if (h.signed_inhibition) {
        sums_vnni<true>(o, z, zneg, prow, vp, acc);
      } else {
        sums_vnni<false>(o, z, zneg, prow, vp, acc);
      }
    } else {
      sums_generic(o, z, zneg, prow, vp, h.signed_inhibition, acc);
    }
#else
    sums_generic(o, z, zneg, prow, vp, h.signed_inhibition, acc);
#endif
    for (int64_t r = 0; r < rows; ++r) {
      float* dst = out + (t0 + r) * out_rs;
      for (int64_t l = 0; l < h.d; ++l) dst[l] = unit * static_cast<float>(vsum[l] - acc[r * o.dp + l]);
    }
  }
}

}  // namespace inhibitor
