// launch_checked: the LibTorch glue's way of calling a CUDA launcher (kernels/*_kernel.h), whose errors are
// std::runtime_error naming the kernel and the shape, so that they reach callers as c10::Error like every other
// tensor error. Header-only; no CUDA headers.
#pragma once

#include <c10/util/Exception.h>

#include <stdexcept>

namespace hippo::internal {

// Calls f(); a std::runtime_error it throws is rethrown as c10::Error with the same message.
template <typename F>
void launch_checked(F&& f) {
  try {
    f();
  } catch (const std::runtime_error& e) {
    TORCH_CHECK(false, e.what());
  }
}

}  // namespace hippo::internal
