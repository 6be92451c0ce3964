// Copyright 2026 The InhibiDistilBERT authors. Licensed under the Apache License, Version 2.0.
//
// Fused CPU inhibitor attention: the interface between the torch binding (inhibitor_ops.cpp) and the math kernels
// (inhibitor_cpu.cpp, inhibitor_int8.cpp). Nothing here depends on torch; the kernels see raw pointers only.
//
// Per (batch, head), with c = gamma / sqrt(d), D_ij = sum_k |Q_ik - K_jk| over the n real keys:
//   m_i     = c * mean_j D_ij                 (0 without centring)
//   z_ij    = relu(c * D_ij - m_i - delta)    (the inhibition Zbar)
//   signed:   H_il = eta * sum_j sign(V_jl) relu(|V_jl| - z_ij)
//   unsigned: H_il = eta * sum_j relu(V_jl - z_ij)
// Three vector operations per (i, j, l) (sub, max, fma), like the score pass (sub, abs, add).
// No [N, N, d] tensor exists: a thread holds one tile of TILE_ROWS query rows of z ([TILE_ROWS, N]) at a time.
#pragma once

#include <cstdint>

namespace inhibitor {

// Query rows per tile: the unit of work of the forward (parallel over batch x head x tiles) and of the backward's
// inner loop. A tile is padded to a multiple of 4 rows (the register blocking of the micro-kernels).
constexpr int64_t TILE_ROWS = 32;

// Packed operands pad the head dimension and the key count to whole 64-byte vectors.
template <typename T>
constexpr int64_t vector_lanes() {
  return 64 / static_cast<int64_t>(sizeof(T));
}
template <typename T>
constexpr int64_t padded(int64_t n) {
  return (n + vector_lanes<T>() - 1) / vector_lanes<T>() * vector_lanes<T>();
}

// One (batch, head) slice: [rows, d] matrices with unit column stride and the given row strides.
template <typename T>
struct Head {
  const T* q;
  int64_t q_rs;
  const T* k;
  int64_t k_rs;
  const T* v;
  int64_t v_rs;
  const int64_t* keys;  // rows of the real (unmasked) keys, or nullptr when keys 0..nk-1 are all real
  int64_t nq;           // query rows
  int64_t nk;           // real keys
  int64_t d;            // head dimension
  T score_scale;        // gamma
  T shift;              // delta
  T output_scale;       // eta
  bool signed_inhibition;
  bool center;
};

template <typename T>
struct ForwardIO {
  T* out;
  int64_t out_rs;
  T* row_mean;  // [nq]: m_i, kept for the backward (may be nullptr)
};

template <typename T>
struct BackwardIO {
  const T* grad;
  int64_t grad_rs;
  const T* out;
  int64_t out_rs;
  const T* row_mean;
  T* dq;
  int64_t dq_rs;
  T* dk;  // rows of real keys are written; the caller zeroes the rest
  int64_t dk_rs;
  T* dv;
  int64_t dv_rs;
  double* partials;  // [3]: this head's d gamma, d delta, d eta
};

// Packed keys and values of one head for the forward: K transposed [dp, ldk], |V| and sign(V) [nk, dp].
template <typename T>
constexpr int64_t forward_packed_size(int64_t nk, int64_t d) {
  return padded<T>(d) * padded<T>(nk) + 2 * nk * padded<T>(d);
}
template <typename T>
constexpr int64_t forward_work_size(int64_t nk, int64_t d) {
  return TILE_ROWS * (2 * padded<T>(d) + padded<T>(nk));
}
// The backward packs its head itself: K^T, |V|^T, sign(V)^T, dV^T [dp, ldk], K, |V|, sign(V), dK [nk, dp], and
// tile buffers for Q, G, dQ, raw outputs [TILE_ROWS, dp] and D, z, W [TILE_ROWS, ldk].
template <typename T>
constexpr int64_t backward_work_size(int64_t nk, int64_t d) {
  return 4 * padded<T>(d) * padded<T>(nk) + 4 * nk * padded<T>(d) +
         TILE_ROWS * (4 * padded<T>(d) + 3 * padded<T>(nk));
}

template <typename T>
struct CpuKernels {
  const char* isa;
  void (*pack_forward)(const Head<T>& head, T* packed);
  void (*forward_rows)(const Head<T>& head, const T* packed, const ForwardIO<T>& io, int64_t row_begin,
                       int64_t row_end, T* work);
  void (*backward_head)(const Head<T>& head, const BackwardIO<T>& io, T* work);
};

// The kernels for the best instruction set this CPU supports (or the one forced with set_cpu_isa).
template <typename T>
const CpuKernels<T>& cpu_kernels();
const char* cpu_isa();
// "avx512", "avx2", "generic" or "auto"; returns false for a name this build or CPU cannot run.
bool set_cpu_isa(const char* name);

// Integer inhibitor attention (inference only). Per (batch, head), from float Q, K, V: one symmetric int8 scale s_qk
// shared by Q and K (so that |q - k| is meaningful) and one s_v for V, from the largest finite |x| over the real keys
// (and the real query rows in self-attention); then, in integers, D_ij = sum_k |q_ik - k_jk|; then, the only float
// step, O(N^2) and not O(N^2 d), re-expresses the inhibition on V's integer grid:
//   z_ij = clamp(round((u * (D_ij - mean_j D_ij) - delta) / s_v), 0, 127),  u = gamma / sqrt(d) * s_qk
// (clamping at 127 changes nothing, since clamp(v, -z, z) = v for z >= 127 >= |v|), and, in integers again,
//   H_il = eta * s_v * (sum_j v_jl - sum_j clamp(v_jl, -z_ij, z_ij))   (signed; min(v_jl, z_ij) unsigned).
// Non-finite inputs: NaN for the row of a bad query, the whole head for a bad key, the column of a bad value (padded
// keys included, as in the float64 reference, where a padded key's terms are multiplied by 0).
template <typename T>
struct Int8Head {
  const T* q;
  int64_t q_rs;
  const T* k;
  int64_t k_rs;
  const T* v;
  int64_t v_rs;
  const int64_t* keys;     // rows of the real keys, or nullptr when keys 0..nk-1 are all real
  const bool* real_key;    // [nk_all]: which key rows are real, or nullptr when all are
  const bool* real_query;  // self-attention with a key mask: the query rows that are real (for the scale), or nullptr
  int64_t nq, nk, nk_all, d;  // query rows, real keys, all key rows, head dimension
  float score_scale;          // gamma / sqrt(d)
  float shift;                // delta
  float output_scale;         // eta
  bool signed_inhibition;
  bool center;
};
int64_t int8_work_bytes(int64_t nq, int64_t nk, int64_t d);
template <typename T>
void int8_forward_head(const Int8Head<T>& head, T* out, int64_t out_rs, uint8_t* work);
// "avx512vnni" (vpsadbw, vpdpbusd), "avx2" (vpsadbw, vpmaddubsw) or "generic".
const char* int8_isa();

}  // namespace inhibitor
