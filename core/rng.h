// A deterministic random generator for data generation: the same seed gives the same stream on every platform
// and standard library (std::uniform_int_distribution does not promise that).
#pragma once

#include <cstdint>
#include <vector>

namespace hippo {

// xoshiro256** seeded through SplitMix64 (Blackman and Vigna). Not for cryptography.
class Rng {
 public:
  explicit Rng(uint64_t seed);
  // A uniformly distributed 64-bit value.
  uint64_t next();
  // Uniform integer in [0, n), n > 0, without modulo bias (Lemire's method with rejection).
  uint64_t uniform(uint64_t n);
  // Uniform double in [0, 1) with 53 random bits.
  double uniform_double();
  // Fisher-Yates shuffle of v in place.
  template <typename T>
  void shuffle(std::vector<T>& v) {
    for (size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[uniform(i)]);
  }

 private:
  uint64_t s_[4];
};

}  // namespace hippo
