// Copyright 2026 The InhibiDistilBERT authors. Licensed under the Apache License, Version 2.0.
//
// Integer inhibitor attention for inference (see Int8Head in inhibitor_cpu.h for the arithmetic). One call per
// (batch, head) does everything: the scales, the quantisation (while packing), the two integer O(N^2 d) passes and
// the scaling of the output. The integer passes map onto single instructions:
//   distances  vpsadbw: sum of |a - b| over 8 unsigned bytes; Q and K are stored with a +128 offset, which leaves
//              |q - k| unchanged. A vector holds 8 dimensions of 4 (AVX2) or 8 (AVX-512) keys, so one vpsadbw
//              against a broadcast query slice yields 4 or 8 partial distances.
//   sums       vpmaxsb/vpminsb clamp int8 values to [-z, z]; AVX-512 VNNI: vpdpbusd adds 4 keys' clamped values into
//              int32 lanes (the unsigned operand is all ones); AVX2: vpmaddubsw adds 2 keys into int16 lanes, which
//              are summed for up to 128 key groups and then widened to int32 (vpmaddwd), exactly.
// Without AVX2 a portable path (plain loops) computes the same integers.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#include "inhibitor_cpu.h"

#if defined(__x86_64__) || defined(__i386__)
#define INHIB_INT8_X86 1
#include <immintrin.h>
#define INHIB_TARGET_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,bmi,bmi2")))
#define INHIB_TARGET_AVX2 __attribute__((target("avx2,fma,bmi,bmi2")))
#else
#define INHIB_INT8_X86 0
#endif

#define INHIB_INLINE inline __attribute__((always_inline))

namespace inhibitor {
namespace {

constexpr int64_t kRows = TILE_ROWS;  // query rows per tile (a multiple of the 4-row register blocking)
constexpr float kInt8Max = 127.0f;
// Adding and subtracting 1.5 * 2^23 rounds a float of magnitude below 2^22 to the nearest integer, ties to even
// (as std::nearbyint in the default rounding mode), in two vectorisable instructions instead of a libm call.
constexpr float kRoundMagic = 12582912.0f;

INHIB_INLINE int64_t round_up(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

INHIB_INLINE float round_small(float x) { return (x + kRoundMagic) - kRoundMagic; }

// Layout of one head's workspace; every region starts on a 64-byte boundary.
struct Layout {
  int64_t dp;   // head dimension padded to `align` bytes
  int64_t ldk;  // keys padded to 8 (one 64-byte vector of the distance layout)
  int64_t nk4;  // keys padded to 4 (one int32 lane of the value layout)
  int64_t kp, vp, vsum, qbuf, dist, z, zneg, acc, rowbad, colbad, total;  // byte offsets
};

// `align`: the head dimension is padded to the dimensions one tile of the sums covers (64 for AVX-512, 16 for AVX2
// and the portable code), so that d = 32 (DistilBERT-small heads) does not do the work of d = 64.
Layout layout(int64_t nq, int64_t nk, int64_t d, int64_t align) {
  Layout o;
  o.dp = round_up(std::max<int64_t>(d, 1), align);
  o.ldk = round_up(std::max<int64_t>(nk, 1), 8);
  o.nk4 = round_up(std::max<int64_t>(nk, 1), 4);
  int64_t at = 0;
  auto region = [&at](int64_t bytes) {
    const int64_t start = at;
    at += round_up(bytes, 64);
    return start;
  };
  o.kp = region(o.dp * o.ldk);         // uint8 [dp / 8][ldk][8]: K + 128
  o.vp = region(o.nk4 * o.dp);         // int8 [nk4 / 4][dp][4]: V, 4 keys interleaved
  o.vsum = region(4 * o.dp);           // int32 [dp]
  o.qbuf = region(kRows * o.dp);       // uint8 [rows][dp]: Q + 128
  o.dist = region(4 * kRows * o.ldk);  // int32 [rows][ldk]
  o.z = region(kRows * o.nk4);         // int8 [rows][nk4]
  o.zneg = region(kRows * o.nk4);      // int8 [rows][nk4]
  o.acc = region(4 * kRows * o.dp);    // int32 [rows][dp]
  o.rowbad = region(nq);               // uint8 [nq]: a query row with a non-finite value
  o.colbad = region(d);                // uint8 [d]: a value column with a non-finite value
  o.total = at + 64;                   // slack to align the base pointer
  return o;
}

INHIB_INLINE int64_t key_row(const int64_t* keys, int64_t j) { return keys ? keys[j] : j; }

// The bits of T as an unsigned integer: |x| compares as its bit pattern, and NaN/inf have the largest patterns, so
// the scans below are integer max-reductions the compiler vectorises (float max-reductions need -ffast-math).
template <typename T>
struct Bits;
template <>
struct Bits<float> {
  using U = uint32_t;
  static constexpr U kAbs = 0x7fffffffu, kInf = 0x7f800000u;
};
template <>
struct Bits<double> {
  using U = uint64_t;
  static constexpr U kAbs = 0x7fffffffffffffffull, kInf = 0x7ff0000000000000ull;
};

// The largest finite |x| of a row; `bad` is set when the row holds a NaN or an infinity, and `column_bad[l]` (when
// given) for each such column.
template <typename T>
INHIB_INLINE float row_amax(const T* x, int64_t d, bool* bad, uint8_t* column_bad = nullptr) {
  using B = Bits<T>;
  using U = typename B::U;
  U peak = 0, worst = 0;
  for (int64_t l = 0; l < d; ++l) {
    U b;
    std::memcpy(&b, x + l, sizeof(U));
    b &= B::kAbs;
    worst = b > worst ? b : worst;
    peak = b < B::kInf && b > peak ? b : peak;
    if (column_bad) column_bad[l] |= static_cast<uint8_t>(b >= B::kInf);
  }
  if (worst >= B::kInf) *bad = true;
  T value;
  std::memcpy(&value, &peak, sizeof(U));
  return static_cast<float>(value);
}

// dst[l] = round(x[l] * inv) clamped to [-127, 127], plus OFFSET. A NaN lands on -127, an infinity on +-127: their
// outputs are set to NaN separately, so the value only has to be a valid integer.
template <typename T, typename Out, int OFFSET>
INHIB_INLINE void quantise_row(const T* x, int64_t d, float inv, Out* dst) {
  for (int64_t l = 0; l < d; ++l) {
    float y = static_cast<float>(x[l]) * inv;
    y = y > -kInt8Max ? y : -kInt8Max;
    y = y < kInt8Max ? y : kInt8Max;
    dst[l] = static_cast<Out>(static_cast<int32_t>(round_small(y)) + OFFSET);
  }
}

float scale_of(float amax) { return std::max(amax / kInt8Max, std::numeric_limits<float>::min()); }

// z and -z on V's grid from the integer distances of one row (the one float step, O(n) per row). `scale` converts a
// unit of D to a unit of V's grid; `unit_shift` is delta on V's grid.
INHIB_INLINE void requantise_row(int64_t nk, int64_t nk4, bool center, float scale, float unit_shift,
                                 const int32_t* dist, int8_t* z, int8_t* zneg) {
  float offset = unit_shift;
  if (center && nk > 0) {
    int64_t sum = 0;
    for (int64_t j = 0; j < nk; ++j) sum += dist[j];
    offset += static_cast<float>(scale * (static_cast<double>(sum) / static_cast<double>(nk)));
  }
  for (int64_t j = 0; j < nk; ++j) {
    float zf = static_cast<float>(dist[j]) * scale - offset;
    zf = zf > 0.0f ? zf : 0.0f;
    zf = zf < kInt8Max ? zf : kInt8Max;
    const int32_t zq = static_cast<int32_t>(round_small(zf));
    z[j] = static_cast<int8_t>(zq);
    zneg[j] = static_cast<int8_t>(-zq);
  }
  for (int64_t j = nk; j < nk4; ++j) z[j] = zneg[j] = 0;
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

#if INHIB_INT8_X86
// ---------------------------------------------------------------------------------------------------------------
// AVX2 passes

template <int CJ>
INHIB_TARGET_AVX2 INHIB_INLINE void distance_tile_avx2(const uint8_t* q, int64_t ldq, const uint8_t* kp, int64_t ldk,
                                                       int64_t groups, int32_t* dist, int64_t ldd) {
  __m256i acc[4][CJ];
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < CJ; ++c) acc[r][c] = _mm256_setzero_si256();
  for (int64_t g = 0; g < groups; ++g) {
    __m256i kv[CJ];
    for (int c = 0; c < CJ; ++c) kv[c] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kp + g * ldk * 8 + c * 32));
    for (int r = 0; r < 4; ++r) {
      int64_t slice;
      std::memcpy(&slice, q + r * ldq + g * 8, 8);
      const __m256i qb = _mm256_set1_epi64x(slice);
      for (int c = 0; c < CJ; ++c) acc[r][c] = _mm256_add_epi64(acc[r][c], _mm256_sad_epu8(qb, kv[c]));
    }
  }
  const __m256i low_halves = _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6);
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < CJ; ++c)
      _mm_storeu_si128(reinterpret_cast<__m128i*>(dist + r * ldd + c * 4),
                       _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(acc[r][c], low_halves)));
}

INHIB_TARGET_AVX2 void distances_avx2(const Layout& o, const uint8_t* qbuf, int64_t prow, const uint8_t* kp,
                                      int32_t* dist) {
  const int64_t vectors = o.ldk / 4, groups = o.dp / 8;  // 4 keys per 32-byte vector
  for (int64_t r = 0; r < prow; r += 4) {
    int64_t c = 0;
    for (; c + 2 <= vectors; c += 2)
      distance_tile_avx2<2>(qbuf + r * o.dp, o.dp, kp + c * 32, o.ldk, groups, dist + r * o.ldk + c * 4, o.ldk);
    for (; c < vectors; ++c)
      distance_tile_avx2<1>(qbuf + r * o.dp, o.dp, kp + c * 32, o.ldk, groups, dist + r * o.ldk + c * 4, o.ldk);
  }
}

// 4 rows x CL vectors of 8 dimensions: clamped values of 4 keys per int32 lane, summed in int16 (vpmaddubsw adds 2
// keys, at most 254 in magnitude) for at most 128 groups, then widened into the int32 accumulators in memory.
template <int CL, bool SIGNED>
INHIB_TARGET_AVX2 INHIB_INLINE void sum_tile_avx2(const int8_t* z, const int8_t* zneg, int64_t ldz, const int8_t* vp,
                                                  int64_t dp, int64_t groups, int32_t* acc, int64_t lda) {
  constexpr int64_t kChunk = 128;  // 128 * 254 < 32767
  const __m256i ones8 = _mm256_set1_epi8(1), ones16 = _mm256_set1_epi16(1);
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < CL; ++c) _mm256_storeu_si256(reinterpret_cast<__m256i*>(acc + r * lda + c * 8), _mm256_setzero_si256());
  for (int64_t g0 = 0; g0 < groups; g0 += kChunk) {
    const int64_t g1 = std::min(groups, g0 + kChunk);
    __m256i a[4][CL];
    for (int r = 0; r < 4; ++r)
      for (int c = 0; c < CL; ++c) a[r][c] = _mm256_setzero_si256();
    for (int64_t g = g0; g < g1; ++g) {
      __m256i vv[CL];
      for (int c = 0; c < CL; ++c) vv[c] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(vp + g * dp * 4 + c * 32));
      for (int r = 0; r < 4; ++r) {
        int32_t zw, nw;
        std::memcpy(&zw, z + r * ldz + g * 4, 4);
        const __m256i zb = _mm256_set1_epi32(zw);
        __m256i nb = zb;
        if (SIGNED) {
          std::memcpy(&nw, zneg + r * ldz + g * 4, 4);
          nb = _mm256_set1_epi32(nw);
        }
        for (int c = 0; c < CL; ++c) {
          const __m256i t = SIGNED ? _mm256_min_epi8(_mm256_max_epi8(vv[c], nb), zb) : _mm256_min_epi8(vv[c], zb);
          a[r][c] = _mm256_add_epi16(a[r][c], _mm256_maddubs_epi16(ones8, t));
        }
      }
    }
    for (int r = 0; r < 4; ++r)
      for (int c = 0; c < CL; ++c) {
        __m256i* p = reinterpret_cast<__m256i*>(acc + r * lda + c * 8);
        _mm256_storeu_si256(p, _mm256_add_epi32(_mm256_loadu_si256(p), _mm256_madd_epi16(a[r][c], ones16)));
      }
  }
}

template <bool SIGNED>
INHIB_TARGET_AVX2 void sums_avx2(const Layout& o, const int8_t* z, const int8_t* zneg, int64_t prow, const int8_t* vp,
                                 int32_t* acc) {
  const int64_t vectors = o.dp / 8;  // 8 dimensions (of 4 keys) per 32-byte vector
  for (int64_t r = 0; r < prow; r += 4)
    for (int64_t c = 0; c < vectors; c += 2)  // dp is a multiple of 16, so vectors is even
      sum_tile_avx2<2, SIGNED>(z + r * o.nk4, zneg + r * o.nk4, o.nk4, vp + c * 32, o.dp, o.nk4 / 4,
                               acc + r * o.dp + c * 8, o.dp);
}

// The O(N d) and O(N^2) steps with AVX2 (float inputs): the scans, the quantisation and the requantisation, which
// the compiler leaves scalar (its float max/min and branches do not if-convert without -ffast-math).

// row_amax<float> for 8 values at a time.
INHIB_TARGET_AVX2 float row_amax_avx2(const float* x, int64_t d, bool* bad, uint8_t* column_bad) {
  const __m256i abs_mask = _mm256_set1_epi32(0x7fffffff), inf = _mm256_set1_epi32(0x7f800000);
  __m256i peak = _mm256_setzero_si256(), worst = _mm256_setzero_si256();
  int64_t l = 0;
  for (; l + 8 <= d; l += 8) {
    const __m256i b = _mm256_and_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + l)), abs_mask);
    const __m256i finite = _mm256_cmpgt_epi32(inf, b);  // both non-negative as int32
    worst = _mm256_max_epu32(worst, b);
    peak = _mm256_max_epu32(peak, _mm256_and_si256(b, finite));
    if (column_bad && _mm256_movemask_ps(_mm256_castsi256_ps(finite)) != 0xff)
      for (int i = 0; i < 8; ++i) column_bad[l + i] |= static_cast<uint8_t>(!(std::fabs(x[l + i]) <= std::numeric_limits<float>::max()));
  }
  alignas(32) uint32_t p[8], w[8];
  _mm256_store_si256(reinterpret_cast<__m256i*>(p), peak);
  _mm256_store_si256(reinterpret_cast<__m256i*>(w), worst);
  uint32_t pk = 0, wk = 0;
  for (int i = 0; i < 8; ++i) {
    pk = std::max(pk, p[i]);
    wk = std::max(wk, w[i]);
  }
  float value;
  std::memcpy(&value, &pk, 4);
  if (wk >= 0x7f800000u) *bad = true;
  return l < d ? std::max(value, row_amax(x + l, d - l, bad, column_bad ? column_bad + l : nullptr)) : value;
}

// quantise_row<float, Out, OFFSET> for 8 values at a time (cvtps rounds to nearest even, as round_small).
template <typename Out, int OFFSET>
INHIB_TARGET_AVX2 void quantise_row_avx2(const float* x, int64_t d, float inv, Out* dst) {
  const __m256 scale = _mm256_set1_ps(inv), lo = _mm256_set1_ps(-kInt8Max), hi = _mm256_set1_ps(kInt8Max);
  const __m256i offset = _mm256_set1_epi32(OFFSET);
  int64_t l = 0;
  for (; l + 8 <= d; l += 8) {
    __m256 y = _mm256_mul_ps(_mm256_loadu_ps(x + l), scale);
    y = _mm256_min_ps(_mm256_max_ps(y, lo), hi);  // max_ps(NaN, lo) = lo
    const __m256i q = _mm256_add_epi32(_mm256_cvtps_epi32(y), offset);
    const __m128i words = _mm_packs_epi32(_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1));
    const __m128i bytes = OFFSET ? _mm_packus_epi16(words, words) : _mm_packs_epi16(words, words);
    _mm_storel_epi64(reinterpret_cast<__m128i*>(dst + l), bytes);
  }
  quantise_row<float, Out, OFFSET>(x + l, d - l, inv, dst + l);
}

// requantise_row for 8 keys at a time.
INHIB_TARGET_AVX2 void requantise_row_avx2(int64_t nk, int64_t nk4, bool center, float scale,
                                                        float unit_shift, const int32_t* dist, int8_t* z,
                                                        int8_t* zneg) {
  float offset = unit_shift;
  if (center && nk > 0) {
    __m256i sum = _mm256_setzero_si256();
    int64_t j = 0;
    for (; j + 4 <= nk; j += 4)
      sum = _mm256_add_epi64(sum, _mm256_cvtepi32_epi64(_mm_loadu_si128(reinterpret_cast<const __m128i*>(dist + j))));
    alignas(32) int64_t parts[4];
    _mm256_store_si256(reinterpret_cast<__m256i*>(parts), sum);
    int64_t total = parts[0] + parts[1] + parts[2] + parts[3];
    for (; j < nk; ++j) total += dist[j];
    offset += static_cast<float>(scale * (static_cast<double>(total) / static_cast<double>(nk)));
  }
  const __m256 sv = _mm256_set1_ps(scale), ov = _mm256_set1_ps(offset);
  const __m256 zero = _mm256_setzero_ps(), top = _mm256_set1_ps(kInt8Max);
  int64_t j = 0;
  for (; j + 8 <= nk; j += 8) {
    __m256 zf = _mm256_sub_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(dist + j))), sv), ov);
    zf = _mm256_min_ps(_mm256_max_ps(zf, zero), top);
    const __m256i zi = _mm256_cvtps_epi32(zf);
    const __m128i words = _mm_packs_epi32(_mm256_castsi256_si128(zi), _mm256_extracti128_si256(zi, 1));
    const __m128i bytes = _mm_packs_epi16(words, words);
    _mm_storel_epi64(reinterpret_cast<__m128i*>(z + j), bytes);
    _mm_storel_epi64(reinterpret_cast<__m128i*>(zneg + j), _mm_sub_epi8(_mm_setzero_si128(), bytes));
  }
  for (; j < nk; ++j) {
    float zf = static_cast<float>(dist[j]) * scale - offset;
    zf = zf > 0.0f ? zf : 0.0f;
    zf = zf < kInt8Max ? zf : kInt8Max;
    const int32_t zq = static_cast<int32_t>(round_small(zf));
    z[j] = static_cast<int8_t>(zq);
    zneg[j] = static_cast<int8_t>(-zq);
  }
  for (; j < nk4; ++j) z[j] = zneg[j] = 0;
}

// ---------------------------------------------------------------------------------------------------------------
// AVX-512 VNNI passes

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
#endif

enum Int8Isa : int { kGeneric = 0, kAvx2 = 1, kVnni = 2 };

template <int PATH>
INHIB_INLINE void distances(const Layout& o, const uint8_t* qbuf, int64_t prow, int64_t nk, const uint8_t* kp,
                            int32_t* dist) {
#if INHIB_INT8_X86
  if constexpr (PATH == kVnni) return distances_vnni(o, qbuf, prow, kp, dist);
  if constexpr (PATH == kAvx2) return distances_avx2(o, qbuf, prow, kp, dist);
#endif
  distances_generic(o, qbuf, prow, nk, kp, dist);
}

template <int PATH>
INHIB_INLINE void sums(bool signed_inhibition, const Layout& o, const int8_t* z, const int8_t* zneg, int64_t prow,
                       const int8_t* vp, int32_t* acc) {
#if INHIB_INT8_X86
  if constexpr (PATH == kVnni)
    return signed_inhibition ? sums_vnni<true>(o, z, zneg, prow, vp, acc) : sums_vnni<false>(o, z, zneg, prow, vp, acc);
  if constexpr (PATH == kAvx2)
    return signed_inhibition ? sums_avx2<true>(o, z, zneg, prow, vp, acc) : sums_avx2<false>(o, z, zneg, prow, vp, acc);
#endif
  sums_generic(o, z, zneg, prow, vp, signed_inhibition, acc);
}

template <typename T, int PATH>
INHIB_INLINE float scan_row(const T* x, int64_t d, bool* bad, uint8_t* column_bad = nullptr) {
#if INHIB_INT8_X86
  if constexpr (PATH != kGeneric && std::is_same_v<T, float>) return row_amax_avx2(x, d, bad, column_bad);
#endif
  return row_amax(x, d, bad, column_bad);
}

template <typename T, typename Out, int OFFSET, int PATH>
INHIB_INLINE void quantise(const T* x, int64_t d, float inv, Out* dst) {
#if INHIB_INT8_X86
  if constexpr (PATH != kGeneric && std::is_same_v<T, float>) return quantise_row_avx2<Out, OFFSET>(x, d, inv, dst);
#endif
  quantise_row<T, Out, OFFSET>(x, d, inv, dst);
}

template <int PATH>
INHIB_INLINE void requantise(int64_t nk, int64_t nk4, bool center, float scale, float unit_shift, const int32_t* dist,
                             int8_t* z, int8_t* zneg) {
#if INHIB_INT8_X86
  if constexpr (PATH != kGeneric) return requantise_row_avx2(nk, nk4, center, scale, unit_shift, dist, z, zneg);
#endif
  requantise_row(nk, nk4, center, scale, unit_shift, dist, z, zneg);
}

template <typename T, int PATH>
INHIB_INLINE void forward_head_impl(const Int8Head<T>& h, T* out, int64_t out_rs, uint8_t* work) {
  const T nan = std::numeric_limits<T>::quiet_NaN();
  const Layout o = layout(h.nq, h.nk, h.d, PATH == kVnni ? 64 : 16);
  uint8_t* base = reinterpret_cast<uint8_t*>(round_up(reinterpret_cast<uintptr_t>(work), 64));
  uint8_t* rowbad = base + o.rowbad;
  uint8_t* colbad = base + o.colbad;
  std::memset(colbad, 0, h.d);

  // 1. Scales from the largest finite |x| over the real rows; non-finite values in every row (padded keys too).
  bool head_bad = false;
  float amax_qk = 0.0f, amax_v = 0.0f;
  for (int64_t i = 0; i < h.nq; ++i) {
    bool bad = false;
    const float peak = scan_row<T, PATH>(h.q + i * h.q_rs, h.d, &bad);
    rowbad[i] = bad;
    if (!h.real_query || h.real_query[i]) amax_qk = std::max(amax_qk, peak);
  }
  for (int64_t j = 0; j < h.nk_all; ++j) {
    const bool real = !h.real_key || h.real_key[j];
    const float kpeak = scan_row<T, PATH>(h.k + j * h.k_rs, h.d, &head_bad);
    bool ignored = false;
    const float vpeak = scan_row<T, PATH>(h.v + j * h.v_rs, h.d, &ignored, colbad);
    if (real) {
      amax_qk = std::max(amax_qk, kpeak);
      amax_v = std::max(amax_v, vpeak);
    }
  }
  if (head_bad) {
    for (int64_t i = 0; i < h.nq; ++i) std::fill(out + i * out_rs, out + i * out_rs + h.d, nan);
    return;
  }
  bool any_column_bad = false;
  for (int64_t l = 0; l < h.d; ++l) any_column_bad |= colbad[l] != 0;
  const float s_qk = scale_of(amax_qk), s_v = scale_of(amax_v);
  const float inv_qk = 1.0f / s_qk, inv_v = 1.0f / s_v;

  // 2. Pack the real keys, 4 at a time: K + 128 as [dp / 8][ldk][8], V as [nk4 / 4][dp][4], and sum_j v_jl.
  uint8_t* kp = base + o.kp;
  int8_t* vp = reinterpret_cast<int8_t*>(base + o.vp);
  int32_t* vsum = reinterpret_cast<int32_t*>(base + o.vsum);
  uint8_t* qbuf = base + o.qbuf;
  std::memset(kp, 128, o.dp * o.ldk);  // padded dimensions and keys: offset zero, |128 - 128| = 0
  std::memset(vsum, 0, 4 * o.dp);
  uint8_t* krows = qbuf;                                          // [4][dp] scratch (qbuf is free until step 3)
  int8_t* vrows = reinterpret_cast<int8_t*>(qbuf + 4 * o.dp);     // [4][dp]
  for (int64_t j0 = 0; j0 < h.nk; j0 += 4) {
    const int64_t count = std::min<int64_t>(4, h.nk - j0);
    std::memset(krows, 128, 4 * o.dp);
    std::memset(vrows, 0, 4 * o.dp);
    for (int64_t r = 0; r < count; ++r) {
      const int64_t src = key_row(h.keys, j0 + r);
      quantise<T, uint8_t, 128, PATH>(h.k + src * h.k_rs, h.d, inv_qk, krows + r * o.dp);
      quantise<T, int8_t, 0, PATH>(h.v + src * h.v_rs, h.d, inv_v, vrows + r * o.dp);
      for (int64_t g = 0; g < o.dp / 8; ++g) std::memcpy(kp + g * o.ldk * 8 + (j0 + r) * 8, krows + r * o.dp + g * 8, 8);
    }
    int8_t* vdst = vp + (j0 / 4) * o.dp * 4;
    for (int64_t l = 0; l < o.dp; ++l) {
      const int8_t a = vrows[l], b = vrows[o.dp + l], c = vrows[2 * o.dp + l], e = vrows[3 * o.dp + l];
      vdst[4 * l] = a;
      vdst[4 * l + 1] = b;
      vdst[4 * l + 2] = c;
      vdst[4 * l + 3] = e;
      vsum[l] += a + b + c + e;
    }
  }

  // 3. Tiles of query rows: quantise, distances, inhibition on V's grid, sums, output.
  int32_t* dist = reinterpret_cast<int32_t*>(base + o.dist);
  int8_t* z = reinterpret_cast<int8_t*>(base + o.z);
  int8_t* zneg = reinterpret_cast<int8_t*>(base + o.zneg);
  int32_t* acc = reinterpret_cast<int32_t*>(base + o.acc);
  const float requant = h.score_scale * s_qk / s_v;  // one unit of D on V's grid
  const float unit_shift = h.shift / s_v, unit = h.output_scale * s_v;
  for (int64_t t0 = 0; t0 < h.nq; t0 += kRows) {
    const int64_t rows = std::min(kRows, h.nq - t0), prow = round_up(rows, 4);
    if (h.nk == 0) {
      for (int64_t r = 0; r < rows; ++r) std::fill(out + (t0 + r) * out_rs, out + (t0 + r) * out_rs + h.d, T(0));
    } else {
      std::memset(qbuf, 128, prow * o.dp);
      for (int64_t r = 0; r < rows; ++r)
        quantise<T, uint8_t, 128, PATH>(h.q + (t0 + r) * h.q_rs, h.d, inv_qk, qbuf + r * o.dp);
      distances<PATH>(o, qbuf, prow, h.nk, kp, dist);
      for (int64_t r = 0; r < prow; ++r)
        requantise<PATH>(h.nk, o.nk4, h.center, requant, unit_shift, dist + r * o.ldk, z + r * o.nk4, zneg + r * o.nk4);
      sums<PATH>(h.signed_inhibition, o, z, zneg, prow, vp, acc);
      // signed: sum_j v - sum_j clamp(v, -z, z); unsigned: sum_j relu(v - z) = sum_j v - sum_j min(v, z)
      for (int64_t r = 0; r < rows; ++r) {
        T* dst = out + (t0 + r) * out_rs;
        const int32_t* a = acc + r * o.dp;
        for (int64_t l = 0; l < h.d; ++l) dst[l] = static_cast<T>(unit * static_cast<float>(vsum[l] - a[l]));
      }
    }
    for (int64_t r = 0; r < rows; ++r) {  // non-finite inputs: NaN wherever they reach
      T* dst = out + (t0 + r) * out_rs;
      if (rowbad[t0 + r]) {
        std::fill(dst, dst + h.d, nan);
      } else if (any_column_bad) {
        for (int64_t l = 0; l < h.d; ++l) dst[l] = colbad[l] ? nan : dst[l];
      }
    }
  }
}

template <typename T>
void forward_head_generic(const Int8Head<T>& h, T* out, int64_t out_rs, uint8_t* work) {
  forward_head_impl<T, kGeneric>(h, out, out_rs, work);
}
#if INHIB_INT8_X86
template <typename T>
INHIB_TARGET_AVX2 void forward_head_avx2(const Int8Head<T>& h, T* out, int64_t out_rs, uint8_t* work) {
  forward_head_impl<T, kAvx2>(h, out, out_rs, work);
}
template <typename T>
INHIB_TARGET_VNNI void forward_head_vnni(const Int8Head<T>& h, T* out, int64_t out_rs, uint8_t* work) {
  forward_head_impl<T, kVnni>(h, out, out_rs, work);
}
#endif

int int8_path() {
#if INHIB_INT8_X86
  static const bool vnni = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx512vnni");
  }();
  // The float kernel's instruction set (set_cpu_isa) caps this one, so every path can be forced and tested.
  const char* isa = cpu_isa();
  if (vnni && std::strcmp(isa, "avx512") == 0) return kVnni;
  if (std::strcmp(isa, "avx2") == 0 || std::strcmp(isa, "avx512") == 0) return kAvx2;
#endif
  return kGeneric;
}

}  // namespace

int64_t int8_work_bytes(int64_t nq, int64_t nk, int64_t d) { return layout(nq, nk, d, 64).total; }

const char* int8_isa() {
  static const char* const names[] = {"generic", "avx2", "avx512vnni"};
  return names[int8_path()];
}

template <typename T>
void int8_forward_head(const Int8Head<T>& h, T* out, int64_t out_rs, uint8_t* work) {
#if INHIB_INT8_X86
  switch (int8_path()) {
    case kVnni:
      return forward_head_vnni<T>(h, out, out_rs, work);
    case kAvx2:
      return forward_head_avx2<T>(h, out, out_rs, work);
    default:
      break;
  }
#endif
  forward_head_generic<T>(h, out, out_rs, work);
}

template void int8_forward_head<float>(const Int8Head<float>&, float*, int64_t, uint8_t*);
template void int8_forward_head<double>(const Int8Head<double>&, double*, int64_t, uint8_t*);

}  // namespace inhibitor
