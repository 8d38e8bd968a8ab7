// FNV-1a: a tiny, well-known, platform-independent hash; enough to key a few thousand configs.
#include "core/hash.h"

#include <cstdio>

namespace hippo {
uint64_t fnv1a64(absl::string_view text) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : text) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return h;
}

std::string hash_hex(absl::string_view text) {
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(fnv1a64(text)));
  return buf;
}
}  // namespace hippo
