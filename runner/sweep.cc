// YAML sweep files through yaml-cpp.
#include "runner/sweep.h"

#include <absl/strings/str_join.h>
#include <yaml-cpp/yaml.h>

#include <fstream>
#include <set>
#include <sstream>

namespace hippo {

namespace {
std::string where(const std::string& file, const YAML::Mark& m) {
  return absl::StrCat(file, ":", m.line + 1, ":", m.column + 1, ": ");
}

absl::StatusOr<Json> to_json(const YAML::Node& n, const std::string& file) {
  switch (n.Type()) {
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined:
      return Json();
    case YAML::NodeType::Scalar: {
      if (n.Tag() == "!") return Json(n.Scalar());  // quoted: always a string
      const std::string& s = n.Scalar();
      if (s == "~" || s == "null") return Json();
      return parse_scalar(s);
    }
    case YAML::NodeType::Sequence: {
      Json a = Json::array();
      for (const auto& e : n) {
        HIPPO_ASSIGN_OR_RETURN(Json v, to_json(e, file));
        a.push_back(std::move(v));
      }
      return a;
    }
    case YAML::NodeType::Map: {
      Json o = Json::object();
      for (const auto& kv : n) {
        if (!kv.first.IsScalar())
          return absl::InvalidArgumentError(absl::StrCat(where(file, kv.first.Mark()), "mapping keys must be plain names"));
        const std::string key = kv.first.Scalar();
        if (o.contains(key))
          return absl::InvalidArgumentError(absl::StrCat(where(file, kv.first.Mark()), "duplicate key '", key, "'"));
        HIPPO_ASSIGN_OR_RETURN(o[key], to_json(kv.second, file));
      }
      return o;
    }
  }
  return Json();
}

absl::StatusOr<YAML::Node> load(const std::string& text, const std::string& file) {
  try {
    return YAML::Load(text);
  } catch (const YAML::ParserException& e) {
    return absl::InvalidArgumentError(absl::StrCat(where(file, e.mark), "malformed YAML: ", e.msg));
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(file, ": malformed YAML: ", e.what()));
  }
}
}  // namespace

absl::StatusOr<Json> yaml_to_json(const std::string& text, const std::string& filename) {
  HIPPO_ASSIGN_OR_RETURN(YAML::Node root, load(text, filename));
  return to_json(root, filename);
}

absl::StatusOr<SweepSpec> parse_sweep(const std::string& text, const std::string& file) {
  HIPPO_ASSIGN_OR_RETURN(YAML::Node root, load(text, file));
  if (!root.IsMap())
    return absl::InvalidArgumentError(absl::StrCat(
        file, ": a sweep file must be a mapping with keys name, description, fixed, grid"));
  SweepSpec s;
  HIPPO_ASSIGN_OR_RETURN(s.source, to_json(root, file));
  std::string base = file.substr(file.find_last_of('/') + 1);
  s.name = base.substr(0, base.find_last_of('.'));
  for (const auto& kv : root) {
    const std::string key = kv.first.Scalar();
    const YAML::Node& v = kv.second;
    if (key == "name" || key == "description") {
      if (!v.IsScalar() || v.Scalar().empty())
        return absl::InvalidArgumentError(absl::StrCat(where(file, v.Mark()), "'", key, "' must be a non-empty text"));
      (key == "name" ? s.name : s.description) = v.Scalar();
    } else if (key == "fixed") {
      if (!v.IsMap() && !v.IsNull())
        return absl::InvalidArgumentError(absl::StrCat(where(file, v.Mark()), "'fixed' must be a mapping of key: value"));
      HIPPO_ASSIGN_OR_RETURN(Json fixed, to_json(v, file));
      if (fixed.is_object())
        for (auto it = fixed.begin(); it != fixed.end(); ++it) {
          absl::Status st = set_path(s.fixed, it.key(), it.value());
          if (!st.ok()) return absl::InvalidArgumentError(absl::StrCat(file, ": fixed: ", st.message()));
        }
    } else if (key == "grid") {
      if (!v.IsMap() && !v.IsNull())
        return absl::InvalidArgumentError(
            absl::StrCat(where(file, v.Mark()), "'grid' must be a mapping of key: [value, ...]"));
      if (v.IsNull()) continue;
      for (const auto& g : v) {
        const std::string gk = g.first.Scalar();
        HIPPO_ASSIGN_OR_RETURN(Json vals, to_json(g.second, file));
        if (!vals.is_array()) vals = Json::array({vals});
        if (vals.empty())
          return absl::InvalidArgumentError(
              absl::StrCat(where(file, g.second.Mark()), "grid key '", gk, "' has an empty list: the grid would be empty"));
        for (const auto& [seen, unused] : s.grid)
          if (seen == gk)
            return absl::InvalidArgumentError(absl::StrCat(where(file, g.first.Mark()), "duplicate grid key '", gk, "'"));
        s.grid.emplace_back(gk, std::vector<Json>(vals.begin(), vals.end()));
      }
    } else {
      return absl::InvalidArgumentError(absl::StrCat(where(file, kv.first.Mark()), "unknown key '", key,
                                                     "' in a sweep file; accepted: name, description, fixed, grid"));
    }
  }
  return s;
}

absl::StatusOr<SweepSpec> load_sweep_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read sweep file '", path, "'"));
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_sweep(ss.str(), path);
}

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
