// Copyright 2026 The InhibiDistilBERT authors. Licensed under the Apache License, Version 2.0.
//
// Torch binding of the fused CPU inhibitor attention: shape and dtype checks, key masks, workspaces and the
// parallel loops (at::parallel_for, i.e. torch's own OpenMP pool and torch.set_num_threads). Registered as the
// operators torch.ops.inhibidistilbert.*; the autograd Function lives in inhibidistilbert_kernels/fused.py.
// Only light torch headers are included, which keeps the one-off JIT build short.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <type_traits>
#include <limits>
#include <cmath>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "inhibitor_cpu.h"

namespace {

// Element operations below which at::parallel_for should not split work (ATen's own GRAIN_SIZE, which lives in
// TensorIterator.h, not in the headers we include).
constexpr int64_t kGrainOps = 32768;

// Tasks per thread for at::parallel_for: enough that a thread gets at least about kGrainOps element operations, so
// tiny calls (unit tests, gradcheck, short sequences) run inline instead of waking the thread pool, whose start-up costs more than the work and, on a loaded machine, a whole scheduler time slice.
int64_t grain_for(int64_t ops_per_task) {
  return std::max<int64_t>(1, kGrainOps / std::max<int64_t>(1, ops_per_task));
}

// Tensors the kernels read row by row need a unit stride along the head dimension.
at::Tensor unit_inner_stride(const at::Tensor& t) { return t.stride(-1) == 1 ? t : t.contiguous(); }

struct Shape {
  int64_t batch, heads, nq, nk, d;
};

Shape check_inputs(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& score_scale,
                   const at::Tensor& shift, const at::Tensor& output_scale, const std::optional<at::Tensor>& key_mask) {
  TORCH_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4,
              "inhibitor attention expects query, key and value of shape [batch, heads, N, head_dim]");
  TORCH_CHECK(q.device().is_cpu() && k.device().is_cpu() && v.device().is_cpu(),
              "the fused CPU inhibitor kernel needs CPU tensors");
  TORCH_CHECK(q.scalar_type() == k.scalar_type() && q.scalar_type() == v.scalar_type(),
              "query, key and value must share a dtype");
  TORCH_CHECK(q.scalar_type() == at::kFloat || q.scalar_type() == at::kDouble,
              "the fused CPU inhibitor kernel computes in float32 or float64, got ", q.scalar_type());
  const Shape s{q.size(0), q.size(1), q.size(2), k.size(2), q.size(3)};
  TORCH_CHECK(k.size(0) == s.batch && k.size(1) == s.heads && k.size(3) == s.d && v.sizes() == k.sizes(),
              "key and value must have shape [batch, heads, N_keys, head_dim] matching the query; got query ",
              q.sizes(), ", key ", k.sizes(), ", value ", v.sizes());
  for (const at::Tensor* p : {&score_scale, &shift, &output_scale})
    TORCH_CHECK(p->dim() == 1 && p->size(0) == s.heads, "score_scale, shift and output_scale must have shape [",
                s.heads, "] (one per head), got ", p->sizes());
  if (key_mask.has_value()) {
    const at::Tensor& m = *key_mask;
    TORCH_CHECK(m.scalar_type() == at::kBool && m.dim() == 2 && (m.size(0) == s.batch || m.size(0) == 1) &&
                    m.size(1) == s.nk,
                "key_mask must be a bool tensor of shape [batch, N_keys] (True = real token), got ", m.scalar_type(),
                " ", m.sizes());
  }
  return s;
}

// The real keys of every batch element: counts[b] and their rows keys[b * nk + j]; empty when nothing is masked.
struct KeyIndex {
  std::vector<int64_t> keys, counts;
  const int64_t* rows(int64_t b, int64_t nk) const { return keys.empty() ? nullptr : keys.data() + b * nk; }
  int64_t count(int64_t b, int64_t nk) const { return counts.empty() ? nk : counts[b]; }
};

KeyIndex index_keys(const std::optional<at::Tensor>& key_mask, int64_t batch, int64_t nk) {
  KeyIndex index;
  if (!key_mask.has_value()) return index;
  const at::Tensor m = key_mask->expand({batch, nk}).contiguous();
  const bool* p = m.data_ptr<bool>();
  index.keys.assign(batch * nk, 0);
  index.counts.assign(batch, 0);
  for (int64_t b = 0; b < batch; ++b) {
    int64_t n = 0;
    for (int64_t j = 0; j < nk; ++j)
      if (p[b * nk + j]) index.keys[b * nk + n++] = j;
    index.counts[b] = n;
  }
  return index;
}

template <typename T>
std::vector<T> per_head(const at::Tensor& t) {
  const at::Tensor c = t.detach().to(at::CPU(c10::CppTypeToScalarType<T>::value)).contiguous();
  return std::vector<T>(c.data_ptr<T>(), c.data_ptr<T>() + c.numel());
}

template <typename T>
struct Heads {
  const at::Tensor &q, &k, &v;
  const Shape& s;
  const KeyIndex& index;
  std::vector<T> gamma, delta, eta;
  bool signed_inhibition, center;

  inhibitor::Head<T> operator()(int64_t bh) const {
    const int64_t b = bh / s.heads, h = bh % s.heads;
    inhibitor::Head<T> head;
    head.q = q.data_ptr<T>() + b * q.stride(0) + h * q.stride(1);
    head.q_rs = q.stride(2);
    head.k = k.data_ptr<T>() + b * k.stride(0) + h * k.stride(1);
    head.k_rs = k.stride(2);
    head.v = v.data_ptr<T>() + b * v.stride(0) + h * v.stride(1);
    head.v_rs = v.stride(2);
    head.keys = index.rows(b, s.nk);
    head.nq = s.nq;
    head.nk = index.count(b, s.nk);
    head.d = s.d;
    head.score_scale = gamma[h];
    head.shift = delta[h];
    head.output_scale = eta[h];
    head.signed_inhibition = signed_inhibition;
    head.center = center;
    return head;
  }
};

template <typename T>
T* row_ptr(const at::Tensor& t, int64_t bh, int64_t heads) {
  return t.data_ptr<T>() + (bh / heads) * t.stride(0) + (bh % heads) * t.stride(1);
}

std::tuple<at::Tensor, at::Tensor> inhibitor_forward(const at::Tensor& query, const at::Tensor& key,
                                                     const at::Tensor& value, const at::Tensor& score_scale,
                                                     const at::Tensor& shift, const at::Tensor& output_scale,
                                                     const std::optional<at::Tensor>& key_mask, bool signed_inhibition,
                                                     bool center) {
  const Shape s = check_inputs(query, key, value, score_scale, shift, output_scale, key_mask);
  const at::Tensor q = unit_inner_stride(query), k = unit_inner_stride(key), v = unit_inner_stride(value);
  at::Tensor out = at::empty_like(q);  // keeps q's layout: a [B, N, H, d] buffer seen as [B, H, N, d] stays one
  at::Tensor row_mean = at::empty({s.batch, s.heads, s.nq}, q.options());
  const KeyIndex index = index_keys(key_mask, s.batch, s.nk);
  const int64_t bh_count = s.batch * s.heads;
  if (bh_count == 0 || s.nq == 0) return {out, row_mean};

  AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "inhibitor_forward", [&] {
    using T = scalar_t;
    const auto& kernels = inhibitor::cpu_kernels<T>();
    const Heads<T> heads{q,          k,          v,          s, index, per_head<T>(score_scale), per_head<T>(shift),
                         per_head<T>(output_scale), signed_inhibition, center};
    const int64_t packed_stride = inhibitor::forward_packed_size<T>(s.nk, s.d);
    at::Tensor packed = at::empty({bh_count * packed_stride}, q.options());
    T* packed_ptr = packed.data_ptr<T>();
    at::parallel_for(0, bh_count, grain_for(s.nk * s.d), [&](int64_t begin, int64_t end) {
      for (int64_t bh = begin; bh < end; ++bh) kernels.pack_forward(heads(bh), packed_ptr + bh * packed_stride);
    });
    const int64_t tiles = (s.nq + inhibitor::TILE_ROWS - 1) / inhibitor::TILE_ROWS;
    const int64_t tile_ops = std::min(s.nq, inhibitor::TILE_ROWS) * s.nk * s.d;
    at::parallel_for(0, bh_count * tiles, grain_for(tile_ops), [&](int64_t begin, int64_t end) {
      at::Tensor work = at::empty({inhibitor::forward_work_size<T>(s.nk, s.d)}, q.options());
      for (int64_t task = begin; task < end; ++task) {
        const int64_t bh = task / tiles, row0 = (task % tiles) * inhibitor::TILE_ROWS;
        const inhibitor::ForwardIO<T> io{row_ptr<T>(out, bh, s.heads), out.stride(2),
                                         row_mean.data_ptr<T>() + bh * s.nq};
        kernels.forward_rows(heads(bh), packed_ptr + bh * packed_stride, io, row0,
                             std::min(s.nq, row0 + inhibitor::TILE_ROWS), work.data_ptr<T>());
      }
    });
  });
  return {out, row_mean};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> inhibitor_backward(
    const at::Tensor& grad_out, const at::Tensor& query, const at::Tensor& key, const at::Tensor& value,
    const at::Tensor& out, const at::Tensor& row_mean, const at::Tensor& score_scale, const at::Tensor& shift,
    const at::Tensor& output_scale, const std::optional<at::Tensor>& key_mask, bool signed_inhibition, bool center) {
  const Shape s = check_inputs(query, key, value, score_scale, shift, output_scale, key_mask);
  TORCH_CHECK(grad_out.sizes() == query.sizes() && out.sizes() == query.sizes(),
              "grad_out and out must have the query's shape ", query.sizes());
  TORCH_CHECK(row_mean.sizes() == at::IntArrayRef({s.batch, s.heads, s.nq}), "row_mean must have shape [", s.batch,
              ", ", s.heads, ", ", s.nq, "]");
  const at::Tensor q = unit_inner_stride(query), k = unit_inner_stride(key), v = unit_inner_stride(value);
  const at::Tensor g = unit_inner_stride(grad_out.to(q.scalar_type()));
  const at::Tensor o = unit_inner_stride(out), m = row_mean.contiguous();
  at::Tensor dq = at::empty_like(q);
  at::Tensor dk = key_mask.has_value() ? at::zeros_like(k) : at::empty_like(k);
  at::Tensor dv = key_mask.has_value() ? at::zeros_like(v) : at::empty_like(v);
  const KeyIndex index = index_keys(key_mask, s.batch, s.nk);
  const int64_t bh_count = s.batch * s.heads;
  std::vector<double> partials(3 * bh_count, 0.0);

  if (bh_count > 0 && s.nq > 0) {
    if (s.nk == 0) {
      dq.zero_();
    }
    AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "inhibitor_backward", [&] {
      using T = scalar_t;
      const auto& kernels = inhibitor::cpu_kernels<T>();
      const Heads<T> heads{q,          k,          v,          s, index, per_head<T>(score_scale), per_head<T>(shift),
                           per_head<T>(output_scale), signed_inhibition, center};
      at::parallel_for(0, bh_count, grain_for(s.nq * s.nk * s.d), [&](int64_t begin, int64_t end) {
        at::Tensor work = at::empty({inhibitor::backward_work_size<T>(s.nk, s.d)}, q.options());
        for (int64_t bh = begin; bh < end; ++bh) {
          const inhibitor::BackwardIO<T> io{row_ptr<T>(g, bh, s.heads),
                                            g.stride(2),
                                            row_ptr<T>(o, bh, s.heads),
                                            o.stride(2),
                                            m.data_ptr<T>() + bh * s.nq,
                                            row_ptr<T>(dq, bh, s.heads),
                                            dq.stride(2),
                                            row_ptr<T>(dk, bh, s.heads),
                                            dk.stride(2),
                                            row_ptr<T>(dv, bh, s.heads),
                                            dv.stride(2),
                                            partials.data() + 3 * bh};
          kernels.backward_head(heads(bh), io, work.data_ptr<T>());
        }
      });
    });
  }
  at::Tensor sums = at::zeros({3, s.heads}, at::CPU(at::kDouble));
  double* sp = sums.data_ptr<double>();
  for (int64_t bh = 0; bh < bh_count; ++bh)
    for (int64_t p = 0; p < 3; ++p) sp[p * s.heads + bh % s.heads] += partials[3 * bh + p];
  return {dq,
          dk,
          dv,
          sums[0].to(score_scale.scalar_type()),
          sums[1].to(shift.scalar_type()),
          sums[2].to(output_scale.scalar_type())};
}

at::Tensor inhibitor_int8_forward(const at::Tensor& query, const at::Tensor& key, const at::Tensor& value,
                                  const at::Tensor& score_scale, const at::Tensor& shift, const at::Tensor& output_scale,
                                  const std::optional<at::Tensor>& key_mask, bool signed_inhibition, bool center) {
  const Shape s = check_inputs(query, key, value, score_scale, shift, output_scale, key_mask);
  const at::Tensor q = unit_inner_stride(query), k = unit_inner_stride(key), v = unit_inner_stride(value);
  at::Tensor out = at::empty_like(q);
  const KeyIndex index = index_keys(key_mask, s.batch, s.nk);
  // The real keys set the scales; in self-attention (N_q = N_k) so do the real query rows only.
  at::Tensor mask;
  if (key_mask.has_value()) mask = key_mask->expand({s.batch, s.nk}).contiguous();
  const std::vector<float> gamma = per_head<float>(score_scale), delta = per_head<float>(shift),
                           eta = per_head<float>(output_scale);
  const int64_t bh_count = s.batch * s.heads;
  if (bh_count == 0 || s.nq == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "inhibitor_int8_forward", [&] {
    using T = scalar_t;
    at::parallel_for(0, bh_count, grain_for(s.nq * s.nk * s.d / 4), [&](int64_t begin, int64_t end) {
      at::Tensor work = at::empty({inhibitor::int8_work_bytes(s.nq, s.nk, s.d)}, q.options().dtype(at::kByte));
      for (int64_t bh = begin; bh < end; ++bh) {
        const int64_t b = bh / s.heads, h = bh % s.heads;
        inhibitor::Int8Head<T> head;
        head.q = q.data_ptr<T>() + b * q.stride(0) + h * q.stride(1);
        head.q_rs = q.stride(2);
        head.k = k.data_ptr<T>() + b * k.stride(0) + h * k.stride(1);
        head.k_rs = k.stride(2);
        head.v = v.data_ptr<T>() + b * v.stride(0) + h * v.stride(1);
        head.v_rs = v.stride(2);
        head.keys = index.rows(b, s.nk);
        head.real_key = mask.defined() ? mask.data_ptr<bool>() + b * s.nk : nullptr;
        head.real_query = key_mask.has_value() && s.nq == s.nk ? head.real_key : nullptr;
        head.nq = s.nq;
        head.nk = index.count(b, s.nk);
        head.nk_all = s.nk;
        head.d = s.d;
        head.score_scale = gamma[h] / std::sqrt(static_cast<float>(s.d));
        head.shift = delta[h];
        head.output_scale = eta[h];
        head.signed_inhibition = signed_inhibition;
        head.center = center;
        inhibitor::int8_forward_head<T>(head, row_ptr<T>(out, bh, s.heads), out.stride(2), work.data_ptr<uint8_t>());
      }
    });
  });
  return out;
}

// Whether a row of n values holds no NaN or infinity: an integer OR-reduction over the exponent bits, which the
// compiler vectorises (a float comparison loop it would not).
template <typename T>
inline __attribute__((always_inline)) bool row_finite_impl(const T* p, int64_t n) {
  using U = std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>;
  constexpr U exponent = sizeof(T) == 4 ? U(0x7f800000u) : U(0x7ff0000000000000ull);
  U bad = 0;
  for (int64_t i = 0; i < n; ++i) {
    U bits;
    std::memcpy(&bits, p + i, sizeof(U));
    bad |= static_cast<U>((bits & exponent) == exponent);
  }
  return bad == 0;
}

// Compiled for AVX2 and for the baseline, chosen at load time (GCC/Clang function multi-versioning).
__attribute__((target_clones("avx2", "default"))) bool row_finite(const float* p, int64_t n) {
  return row_finite_impl(p, n);
}
__attribute__((target_clones("avx2", "default"))) bool row_finite(const double* p, int64_t n) {
  return row_finite_impl(p, n);
}

// Whether every value of the tensors is finite: one parallel pass over their memory, read in place when it is dense
// (the model's transposed [B, N, H, d] views are). The check before the fused kernel.
bool all_finite(const std::vector<at::Tensor>& tensors) {
  for (const at::Tensor& tensor : tensors) {
    if (!tensor.is_floating_point() || tensor.numel() == 0) continue;
    const at::Tensor t = tensor.is_non_overlapping_and_dense() ? tensor : tensor.contiguous();
    std::atomic<bool> finite{true};
    AT_DISPATCH_FLOATING_TYPES(t.scalar_type(), "all_finite", [&] {
      const scalar_t* base = t.data_ptr<scalar_t>();  // dense: numel values from the smallest address
      at::parallel_for(0, t.numel(), kGrainOps, [&](int64_t begin, int64_t end) {
        if (!row_finite(base + begin, end - begin)) finite.store(false);
      });
    });
    if (!finite.load()) return false;
  }
  return true;
}

std::string cpu_isa() { return inhibitor::cpu_isa(); }

std::string int8_isa() { return inhibitor::int8_isa(); }

bool set_cpu_isa(const std::string& name) { return inhibitor::set_cpu_isa(name.c_str()); }

}  // namespace

TORCH_LIBRARY(inhibidistilbert, m) {
  // The attention table's signature (query, key, value, score_scale, shift, output_scale, key_mask, signed, center).
  m.def(
      "inhibitor_forward(Tensor query, Tensor key, Tensor value, Tensor score_scale, Tensor shift, "
      "Tensor output_scale, Tensor? key_mask=None, bool signed=True, bool center=True) -> (Tensor, Tensor)");
  m.def(
      "inhibitor_backward(Tensor grad_out, Tensor query, Tensor key, Tensor value, Tensor out, Tensor row_mean, "
      "Tensor score_scale, Tensor shift, Tensor output_scale, Tensor? key_mask, bool signed, bool center) "
      "-> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");
  m.def(
      "inhibitor_int8_forward(Tensor query, Tensor key, Tensor value, Tensor score_scale, Tensor shift, "
      "Tensor output_scale, Tensor? key_mask=None, bool signed=True, bool center=True) -> Tensor");
  m.def("all_finite(Tensor[] tensors) -> bool", &all_finite);
  m.def("cpu_isa() -> str", &cpu_isa);
  m.def("int8_isa() -> str", &int8_isa);
  m.def("set_cpu_isa(str name) -> bool", &set_cpu_isa);
}

TORCH_LIBRARY_IMPL(inhibidistilbert, CPU, m) {
  m.impl("inhibitor_forward", &inhibitor_forward);
  m.impl("inhibitor_backward", &inhibitor_backward);
  m.impl("inhibitor_int8_forward", &inhibitor_int8_forward);
}
