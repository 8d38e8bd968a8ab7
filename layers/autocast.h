// Mixed precision (H3.md 5, trained as the paper's models are: bf16 autocast with the SSM in float32): a scope that
// turns LibTorch's autocast on for one device type, and a scope that turns it off again, under which the SSM
// kernels, discretisation and states are computed in float32. The one place that knows both autocast C++ APIs.
#pragma once

#include <c10/core/DeviceType.h>
#include <c10/core/ScalarType.h>
#include <c10/core/impl/LocalDispatchKeySet.h>

namespace hippo {

// While an instance lives, matrix products, convolutions and attention on `device_type` tensors run in `dtype`
// (autocast's lower-precision list) and its float32 list (softmax, layer norm, losses) in float32, on this thread.
// At exit the previous autocast state and dtype are restored and autocast's cache of cast weights is cleared
// (the optimiser updates the weights in place, so a cached bf16 copy would go stale). Nests. device_type: CPU or
// CUDA; dtype: kBFloat16 or kHalf. Raises c10::Error (TORCH_CHECK) for another device type or dtype.
// Gradients flow back through the casts: a backward pass started after the scope needs no scope of its own.
class AutocastScope {
 public:
  AutocastScope(c10::DeviceType device_type, c10::ScalarType dtype);
  ~AutocastScope();
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  c10::DeviceType device_type_;
  bool previous_enabled_;
  c10::ScalarType previous_dtype_;
};

// Whether autocast is on for `device_type` on this thread right now (false inside a NoAutocastScope).
bool autocast_enabled(c10::DeviceType device_type);
// The dtype autocast computes matrix products in on `device_type` when it is on (bf16 or fp16; undefined when off).
c10::ScalarType autocast_dtype(c10::DeviceType device_type);

// While an instance lives, autocast is off for every device type on this thread: tensors keep their dtypes, so
// float32 parameters give float32 results. The SSM layers (layers/ssm.h) open one around their kernel,
// discretisation, step and state computations. Nests; free when autocast is off anyway.
class NoAutocastScope {
 public:
  NoAutocastScope() : guard_(c10::autocast_dispatch_keyset) {}

 private:
  c10::impl::ExcludeDispatchKeyGuard guard_;
};

}  // namespace hippo
