// Parsing of YAML sweep files through yaml-cpp (no LibTorch here: the fuzz target links this file alone).
#include "runner/sweep.h"

#include <yaml-cpp/yaml.h>

#include <absl/strings/str_replace.h>

#include <cctype>
#include <functional>
#include <fstream>
#include <sstream>

namespace hippo {

namespace {
size_t invalid_utf8(const std::string& s);

std::string where(const std::string& file, const YAML::Mark& m) {
  return absl::StrCat(file, ":", m.line + 1, ":", m.column + 1, ": ");
}

absl::StatusOr<Json> to_json(const YAML::Node& n, const std::string& file) {
  switch (n.Type()) {
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined:
      return Json();
    case YAML::NodeType::Scalar: {
      // Escapes such as "\xA0" can produce bytes that are not UTF-8 even in a UTF-8 file.
      if (invalid_utf8(n.Scalar()) != std::string::npos)
        return absl::InvalidArgumentError(absl::StrCat(where(file, n.Mark()), "a value is not valid UTF-8"));
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
        if (invalid_utf8(key) != std::string::npos)
          return absl::InvalidArgumentError(absl::StrCat(where(file, kv.first.Mark()), "a key is not valid UTF-8"));
        if (o.contains(key))
          return absl::InvalidArgumentError(absl::StrCat(where(file, kv.first.Mark()), "duplicate key '", key, "'"));
        HIPPO_ASSIGN_OR_RETURN(o[key], to_json(kv.second, file));
      }
      return o;
    }
  }
  return Json();
}

// Offset of the first byte that is not part of well-formed UTF-8 (RFC 3629: no overlong forms, no
// surrogates, nothing above U+10FFFF), or npos.
size_t invalid_utf8(const std::string& s) {
  size_t i = 0;
  auto at = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  while (i < s.size()) {
    const unsigned char c = at(i);
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t n;
    unsigned char lo = 0x80, hi = 0xBF;  // range of the second byte
    if (c >= 0xC2 && c <= 0xDF) n = 2;
    else if (c == 0xE0) n = 3, lo = 0xA0;
    else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) n = 3;
    else if (c == 0xED) n = 3, hi = 0x9F;
    else if (c == 0xF0) n = 4, lo = 0x90;
    else if (c >= 0xF1 && c <= 0xF3) n = 4;
    else if (c == 0xF4) n = 4, hi = 0x8F;
    else return i;
    if (i + n > s.size() || at(i + 1) < lo || at(i + 1) > hi) return i;
    for (size_t k = 2; k < n; ++k)
      if ((at(i + k) & 0xC0) != 0x80) return i;
    i += n;
  }
  return std::string::npos;
}

// True when the JSON-pointer `path` already holds a value in `root`, or a non-object value sits on the way to
// it (so setting it would overwrite something). Never throws, unlike json_pointer look-ups through arrays.
bool is_set(const Json& root, const std::string& path) {
  const Json* cur = &root;
  size_t begin = 1;
  while (begin <= path.size()) {
    if (!cur->is_object()) return true;
    const size_t slash = path.find('/', begin);
    std::string token = path.substr(begin, slash == std::string::npos ? std::string::npos : slash - begin);
    token = absl::StrReplaceAll(token, {{"~1", "/"}, {"~0", "~"}});
    auto it = cur->find(token);
    if (it == cur->end()) return false;
    cur = &*it;
    if (slash == std::string::npos) break;
    begin = slash + 1;
  }
  return true;
}

// Sets `value` at the JSON-pointer `path` treating every token as an object key (json_pointer's operator[] would
// turn a numeric key such as "50" into an array index). Call only where is_set(root, path) is false.
void set_at(Json& root, const std::string& path, const Json& value) {
  Json* cur = &root;
  size_t begin = 1;
  while (true) {
    const size_t slash = path.find('/', begin);
    const std::string token = absl::StrReplaceAll(
        path.substr(begin, slash == std::string::npos ? std::string::npos : slash - begin), {{"~1", "/"}, {"~0", "~"}});
    if (slash == std::string::npos) {
      (*cur)[token] = value;
      return;
    }
    cur = &(*cur)[token];
    begin = slash + 1;
  }
}

absl::StatusOr<YAML::Node> load(const std::string& text, const std::string& file) {
  if (const size_t bad = invalid_utf8(text); bad != std::string::npos)
    return absl::InvalidArgumentError(absl::StrCat(file, ": not UTF-8 text (invalid byte at offset ", bad, ")"));
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
  // Sweep names travel into file names and job names: keep them to letters, digits, '.', '_' and '-'.
  auto name_ok = [](const std::string& n) {
    if (n.empty()) return false;
    for (unsigned char c : n)
      if (!std::isalnum(c) && c != '.' && c != '_' && c != '-') return false;
    return true;
  };
  for (char& c : s.name)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-') c = '-';
  for (const auto& kv : root) {
    const std::string key = kv.first.Scalar();
    const YAML::Node& v = kv.second;
    if (key == "name" || key == "description") {
      if (!v.IsScalar() || v.Scalar().empty())
        return absl::InvalidArgumentError(absl::StrCat(where(file, v.Mark()), "'", key, "' must be a non-empty text"));
      if (key == "name" && !name_ok(v.Scalar()))
        return absl::InvalidArgumentError(absl::StrCat(where(file, v.Mark()), "'name' may hold only letters, digits, ",
                                                       "'.', '_' and '-'"));
      (key == "name" ? s.name : s.description) = v.Scalar();
    } else if (key == "fixed") {
      if (!v.IsMap() && !v.IsNull())
        return absl::InvalidArgumentError(absl::StrCat(where(file, v.Mark()), "'fixed' must be a mapping of key: value"));
      HIPPO_ASSIGN_OR_RETURN(Json fixed, to_json(v, file));
      if (fixed.is_object())
        for (auto it = fixed.begin(); it != fixed.end(); ++it) {
          // A value set twice (s4d: {d_state: 16} and s4d.d_state: 32) is a conflict, not an override.
          Json single = Json::object(), trial = s.fixed;
          absl::Status st = set_path(single, it.key(), it.value());
          if (st.ok()) st = set_path(trial, it.key(), it.value().is_object() ? Json::object() : it.value());
          if (!st.ok()) return absl::InvalidArgumentError(absl::StrCat(file, ": fixed: ", st.message()));
          // Leaves are non-empty-object values (lists included); a leaf that is already set is a conflict.
          std::vector<std::pair<std::string, Json>> leaves;
          std::function<void(const Json&, const std::string&)> walk = [&](const Json& v, const std::string& path) {
            if (v.is_object() && !v.empty()) {
              for (auto e = v.begin(); e != v.end(); ++e)
                walk(e.value(), path + "/" + absl::StrReplaceAll(e.key(), {{"~", "~0"}, {"/", "~1"}}));
            } else {
              leaves.emplace_back(path, v);
            }
          };
          walk(single, "");
          for (const auto& [path, value] : leaves)
            if (is_set(s.fixed, path))
              return absl::InvalidArgumentError(
                  absl::StrCat(file, ": fixed: '", it.key(), "' sets a value that another key of 'fixed' sets too"));
          for (const auto& [path, value] : leaves) set_at(s.fixed, path, value);
        }
    } else if (key == "grid") {
      if (!v.IsMap() && !v.IsNull())
        return absl::InvalidArgumentError(
            absl::StrCat(where(file, v.Mark()), "'grid' must be a mapping of key: [value, ...]"));
      if (v.IsNull()) continue;
      for (const auto& g : v) {
        const std::string gk = g.first.IsScalar() ? g.first.Scalar() : "";
        if (gk.empty())
          return absl::InvalidArgumentError(absl::StrCat(where(file, g.first.Mark()),
                                                         "a grid key must be a non-empty name (a run-config key)"));
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
  for (const auto& [gk, values] : s.grid) {
    if (is_set(s.fixed, "/" + absl::StrReplaceAll(gk, {{"~", "~0"}, {"/", "~1"}, {".", "/"}})))
      return absl::InvalidArgumentError(absl::StrCat(file, ": '", gk, "' is in both 'fixed' and 'grid'"));
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

}  // namespace hippo
