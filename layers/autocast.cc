// Autocast scopes. LibTorch 2.4 replaced the per-device autocast functions (set_enabled, set_cpu_enabled,
// set_autocast_gpu_dtype, ...) with ones taking the device type; the two functions below are the only
// version-specific code.
#include "layers/autocast.h"

#include <ATen/autocast_mode.h>
#include <c10/util/Exception.h>
#include <torch/version.h>

namespace hippo {

namespace {
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
bool get_state(c10::DeviceType t, c10::ScalarType* dtype) {
  *dtype = at::autocast::get_autocast_dtype(t);
  return at::autocast::is_autocast_enabled(t);
}
void set_state(c10::DeviceType t, bool enabled, c10::ScalarType dtype) {
  at::autocast::set_autocast_dtype(t, dtype);
  at::autocast::set_autocast_enabled(t, enabled);
}
#else
bool get_state(c10::DeviceType t, c10::ScalarType* dtype) {
  if (t == c10::DeviceType::CUDA) {
    *dtype = at::autocast::get_autocast_gpu_dtype();
    return at::autocast::is_enabled();
  }
  *dtype = at::autocast::get_autocast_cpu_dtype();
  return at::autocast::is_cpu_enabled();
}
void set_state(c10::DeviceType t, bool enabled, c10::ScalarType dtype) {
  if (t == c10::DeviceType::CUDA) {
    at::autocast::set_autocast_gpu_dtype(dtype);
    at::autocast::set_enabled(enabled);
  } else {
    at::autocast::set_autocast_cpu_dtype(dtype);
    at::autocast::set_cpu_enabled(enabled);
  }
}
#endif
}  // namespace

AutocastScope::AutocastScope(c10::DeviceType device_type, c10::ScalarType dtype) : device_type_(device_type) {
  TORCH_CHECK(device_type == c10::DeviceType::CPU || device_type == c10::DeviceType::CUDA,
              "autocast: device type must be cpu or cuda, got ", device_type);
  TORCH_CHECK(dtype == c10::ScalarType::BFloat16 || dtype == c10::ScalarType::Half,
              "autocast: dtype must be bfloat16 or float16, got ", dtype);
  previous_enabled_ = get_state(device_type, &previous_dtype_);
  set_state(device_type, true, dtype);
  at::autocast::increment_nesting();
}

AutocastScope::~AutocastScope() {
  // As torch.autocast's __exit__: the cache of cast weights lives as long as the outermost scope.
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  set_state(device_type_, previous_enabled_, previous_dtype_);
}

bool autocast_enabled(c10::DeviceType device_type) {
  c10::ScalarType dtype;
  return get_state(device_type, &dtype);
}

c10::ScalarType autocast_dtype(c10::DeviceType device_type) {
  c10::ScalarType dtype;
  get_state(device_type, &dtype);
  return dtype;
}

}  // namespace hippo
