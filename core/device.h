// Where and how tensors run: device selection (--device cpu|cuda|auto), one seed for LibTorch and the data
// generators, intra-op threads, and the environment fingerprint stored with every run.
#pragma once

#include <c10/core/Device.h>

#include <cstdint>
#include <absl/strings/string_view.h>

#include "core/options.h"
#include "core/status.h"

namespace hippo {

// "cpu", "cuda" (the first visible GPU), "cuda:N", or "auto" (cuda when LibTorch sees a GPU, else cpu).
// Errors: kInvalidArgument for any other text; kFailedPrecondition for cuda when no GPU is usable.
absl::StatusOr<c10::Device> parse_device(absl::string_view text);

// Seeds LibTorch's CPU (and, where present, CUDA) generators with `seed`. hippo's data generators take the
// same seed explicitly (core/rng.h), so one seed fixes weights, dropout masks and data.
void seed_everything(uint64_t seed);

// Sets LibTorch's intra-op threads; n <= 0 means all hardware threads. (LibTorch 1.13 on Debian starts
// with one thread whatever the machine has.) Returns the number set.
int set_threads(int n);

// The environment of this process as a JSON object: hippo version and commit, LibTorch version, CUDA and
// cuDNN versions (or null), GPU name (or null), host name, intra-op threads, and "kernel_switches": the
// HIPPO_FFTCONV_BLOCKFFT, HIPPO_FFTCONV_DIRECT, HIPPO_FFTCONV_FILTER, HIPPO_FFTCONV_RECOMPUTE,
// HIPPO_FFTCONV_BWD_CHUNKS, HIPPO_SSM_KERNEL and HIPPO_PROJECTION values set in the environment (an object).
Json environment(const c10::Device& device);

}  // namespace hippo
