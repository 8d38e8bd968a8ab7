// Expansion of a parsed sweep's grid into resolved runs.
#include "runner/sweep.h"

#include <absl/strings/str_join.h>

#include <set>

namespace hippo {

absl::StatusOr<std::vector<RunSpec>> expand_sweep(const SweepSpec& s) {
  std::vector<RunSpec> out;
  std::set<std::string> seen;
  std::vector<size_t> idx(s.grid.size(), 0);
  while (true) {
    Json raw = s.fixed;
    std::vector<std::string> point;
    for (size_t i = 0; i < s.grid.size(); ++i) {
      const auto& [key, values] = s.grid[i];
      HIPPO_RETURN_IF_ERROR(set_path(raw, key, values[idx[i]]));
      point.push_back(absl::StrCat(key, "=", values[idx[i]].dump()));
    }
    auto r = resolve_run(raw);
    if (!r.ok())
      return absl::Status(r.status().code(),
                          absl::StrCat("sweep '", s.name, "'", point.empty() ? "" : " at grid point ",
                                       absl::StrJoin(point, ", "), ": ", r.status().message()));
    if (seen.insert(r->hash).second) out.push_back(*std::move(r));
    // Odometer increment, last key fastest.
    size_t i = s.grid.size();
    while (i > 0) {
      --i;
      if (++idx[i] < s.grid[i].second.size()) break;
      idx[i] = 0;
      if (i == 0) return out;
    }
    if (s.grid.empty()) return out;
  }
}

}  // namespace hippo
