// HIPPO_REQUIRE_CUDA(): the first statement of a test that needs hippo's CUDA kernels and a CUDA device; without
// either the test is skipped with the reason (CI has no GPU), never passed silently.
#pragma once

#include <gtest/gtest.h>
#include <torch/cuda.h>

#include "kernels/fftconv.h"

#define HIPPO_REQUIRE_CUDA()                                                                             \
  do {                                                                                                   \
    if (!::hippo::fftconv_cuda_built())                                                                  \
      GTEST_SKIP() << "this build has no CUDA kernels (LibTorch without CUDA)";                          \
    if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device present";                          \
  } while (0)
