// Option schemas and their validation. Messages name the key, the owner and the accepted values, since the
// peers' silently dropped keys are the failure this exists to prevent.
#include "core/options.h"

#include <absl/strings/str_cat.h>
#include <absl/strings/str_join.h>
#include <absl/strings/numbers.h>
#include <absl/strings/ascii.h>
#include <absl/strings/str_split.h>

#include <cmath>
#include <sstream>

namespace hippo {

absl::string_view option_type_name(OptionType t) {
  switch (t) {
    case OptionType::kInt: return "int";
    case OptionType::kFloat: return "float";
    case OptionType::kBool: return "bool";
    case OptionType::kString: return "string";
    case OptionType::kIntList: return "int list";
  }
  return "?";
}

namespace {
std::string fmt_num(double v) {
  std::ostringstream os;
  if (std::isfinite(v) && v == std::floor(v) && std::fabs(v) < 1e15)
    os << static_cast<long long>(v);
  else
    os << v;
  return os.str();
}

std::string describe(const Json& v) {
  std::string s = v.dump();
  if (s.size() > 60) s = s.substr(0, 57) + "...";
  return s;
}
}  // namespace

std::string OptionSpec::accepted() const {
  std::string s(option_type_name(type));
  if (!choices.empty()) return absl::StrCat("one of ", absl::StrJoin(choices, "|"));
  if (min && max) return absl::StrCat(s, " in [", fmt_num(*min), ", ", fmt_num(*max), "]");
  if (min) return absl::StrCat(s, " >= ", fmt_num(*min));
  if (max) return absl::StrCat(s, " <= ", fmt_num(*max));
  return s;
}

OptionSchema& OptionSchema::add_int(std::string name, int64_t def, std::string doc, std::optional<double> min,
                                    std::optional<double> max) {
  specs_.push_back({std::move(name), OptionType::kInt, def, std::move(doc), min, max, {}});
  return *this;
}
OptionSchema& OptionSchema::add_float(std::string name, double def, std::string doc, std::optional<double> min,
                                      std::optional<double> max) {
  specs_.push_back({std::move(name), OptionType::kFloat, def, std::move(doc), min, max, {}});
  return *this;
}
OptionSchema& OptionSchema::add_bool(std::string name, bool def, std::string doc) {
  specs_.push_back({std::move(name), OptionType::kBool, def, std::move(doc), {}, {}, {}});
  return *this;
}
OptionSchema& OptionSchema::add_string(std::string name, std::string def, std::string doc,
                                       std::vector<std::string> choices) {
  specs_.push_back({std::move(name), OptionType::kString, std::move(def), std::move(doc), {}, {}, std::move(choices)});
  return *this;
}
OptionSchema& OptionSchema::add_int_list(std::string name, std::vector<int64_t> def, std::string doc,
                                         std::optional<double> min, std::optional<double> max) {
  specs_.push_back({std::move(name), OptionType::kIntList, def, std::move(doc), min, max, {}});
  return *this;
}

const OptionSpec* OptionSchema::find(absl::string_view name) const {
  for (const auto& s : specs_)
    if (s.name == name) return &s;
  return nullptr;
}

std::string OptionSchema::names() const {
  std::vector<std::string> n;
  for (const auto& s : specs_) n.push_back(s.name);
  return n.empty() ? "(none)" : absl::StrJoin(n, ", ");
}

namespace {
absl::Status check_range(const OptionSpec& spec, double v, absl::string_view owner) {
  if (!std::isfinite(v) || (spec.min && v < *spec.min) || (spec.max && v > *spec.max))
    return absl::InvalidArgumentError(absl::StrCat("option '", spec.name, "' of ", owner, " must be ",
                                                   spec.accepted(), ", got ", fmt_num(v)));
  return absl::OkStatus();
}

absl::StatusOr<Json> check_value(const OptionSpec& spec, const Json& v, absl::string_view owner) {
  auto wrong = [&]() {
    // 1e1 or 10.0 for an integer option: in range or not, say why a whole number is refused.
    const auto as_integer = [](const Json& x) {
      return x.is_number_float() && std::isfinite(x.get<double>()) && std::abs(x.get<double>()) < 9e15 &&
                     x.get<double>() == std::floor(x.get<double>())
                 ? absl::StrCat(" (a floating-point number: write it as the integer ",
                                static_cast<int64_t>(x.get<double>()), ")")
                 : std::string();
    };
    const bool int_type = spec.type == OptionType::kInt || spec.type == OptionType::kIntList;
    std::string hint = int_type ? as_integer(v) : "";
    if (int_type && hint.empty() && v.is_array())
      for (const auto& e : v)
        if (hint.empty()) hint = as_integer(e);
    return absl::InvalidArgumentError(absl::StrCat("option '", spec.name, "' of ", owner, " must be ",
                                                   spec.accepted(), ", got ", describe(v), hint));
  };
  switch (spec.type) {
    case OptionType::kInt: {
      if (!v.is_number_integer()) return wrong();
      HIPPO_RETURN_IF_ERROR(check_range(spec, v.get<double>(), owner));
      return Json(v.get<int64_t>());
    }
    case OptionType::kFloat: {
      if (!v.is_number()) return wrong();
      HIPPO_RETURN_IF_ERROR(check_range(spec, v.get<double>(), owner));
      return Json(v.get<double>());
    }
    case OptionType::kBool:
      if (!v.is_boolean()) return wrong();
      return v;
    case OptionType::kString: {
      if (!v.is_string()) return wrong();
      if (!spec.choices.empty()) {
        const auto s = v.get<std::string>();
        bool ok = false;
        for (const auto& c : spec.choices) ok |= (c == s);
        if (!ok) return wrong();
      }
      return v;
    }
    case OptionType::kIntList: {
      Json out = Json::array();
      if (v.is_number_integer()) {
        out.push_back(v);  // a single integer is a list of one
      } else if (v.is_array()) {
        for (const auto& e : v) {
          if (!e.is_number_integer()) return wrong();
          out.push_back(e);
        }
      } else {
        return wrong();
      }
      for (const auto& e : out) HIPPO_RETURN_IF_ERROR(check_range(spec, e.get<double>(), owner));
      return out;
    }
  }
  return wrong();
}
}  // namespace

absl::StatusOr<Options> resolve_options(const OptionSchema& schema, const Json& given, absl::string_view owner) {
  if (!given.is_null() && !given.is_object())
    return absl::InvalidArgumentError(
        absl::StrCat("options of ", owner, " must be a mapping of name: value, got ", describe(given)));
  Json out = Json::object();
  for (const auto& spec : schema.specs()) out[spec.name] = spec.default_value;
  if (given.is_object()) {
    for (auto it = given.begin(); it != given.end(); ++it) {
      const OptionSpec* spec = schema.find(it.key());
      if (spec == nullptr)
        return absl::InvalidArgumentError(absl::StrCat("unknown option '", it.key(), "' for ", owner,
                                                       "; accepted: ", schema.names()));
      HIPPO_ASSIGN_OR_RETURN(out[spec->name], check_value(*spec, it.value(), owner));
    }
  }
  return Options(std::move(out));
}

const Json& Options::at(absl::string_view name) const {
  auto it = values_.find(std::string(name));
  if (it == values_.end())
    throw StatusError(absl::InvalidArgumentError(absl::StrCat("option '", name, "' was not declared")));
  return *it;
}
int64_t Options::get_int(absl::string_view name) const { return at(name).get<int64_t>(); }
double Options::get_float(absl::string_view name) const { return at(name).get<double>(); }
bool Options::get_bool(absl::string_view name) const { return at(name).get<bool>(); }
std::string Options::get_string(absl::string_view name) const { return at(name).get<std::string>(); }
std::vector<int64_t> Options::get_int_list(absl::string_view name) const {
  return at(name).get<std::vector<int64_t>>();
}

absl::Status set_path(Json& raw, const std::string& path, const Json& value) {
  std::vector<std::string> parts = absl::StrSplit(path, '.');
  Json* cur = &raw;
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    if (parts[i].empty()) return absl::InvalidArgumentError(absl::StrCat("malformed key '", path, "'"));
    Json& next = (*cur)[parts[i]];
    if (next.is_null()) next = Json::object();
    if (!next.is_object())
      return absl::InvalidArgumentError(
          absl::StrCat("key '", path, "': '", parts[i], "' is already set to a non-mapping value"));
    cur = &next;
  }
  if (parts.back().empty()) return absl::InvalidArgumentError(absl::StrCat("malformed key '", path, "'"));
  (*cur)[parts.back()] = value;
  return absl::OkStatus();
}

Json parse_scalar(absl::string_view text) {
  absl::string_view t = absl::StripAsciiWhitespace(text);
  if (t == "true") return true;
  if (t == "false") return false;
  int64_t i;
  if (absl::SimpleAtoi(t, &i)) return i;
  double d;
  if (!t.empty() && absl::SimpleAtod(t, &d) && t.find_first_of("0123456789") != absl::string_view::npos) return d;
  if (t.size() >= 2 && t.front() == '[' && t.back() == ']') {
    Json arr = Json::array();
    absl::string_view inner = t.substr(1, t.size() - 2);
    if (!absl::StripAsciiWhitespace(inner).empty())
      for (absl::string_view part : absl::StrSplit(inner, ',')) arr.push_back(parse_scalar(part));
    return arr;
  }
  return std::string(t);
}

}  // namespace hippo
