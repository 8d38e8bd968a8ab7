// Stable content hashes for configs: the same text gives the same hash on every machine and build.
#pragma once

#include <cstdint>
#include <string>
#include <absl/strings/string_view.h>

namespace hippo {
// 64-bit FNV-1a of the bytes of `text`.
uint64_t fnv1a64(absl::string_view text);
// fnv1a64 as 16 lower-case hex digits; the form stored as a run's config hash.
std::string hash_hex(absl::string_view text);
}  // namespace hippo
