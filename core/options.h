// A typed, validated option bag: every layer, task and the trainer declare their options as a schema (name,
// type, default, range or choices, one-line doc); user input (YAML, --set, JSON) is checked against it.
// An unknown key, a wrong type or an out-of-range value is an error naming the key, its owner and what is
// accepted; there are no silent defaults for misspelt keys.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <absl/strings/string_view.h>
#include <vector>

#include "core/status.h"

namespace hippo {

using Json = nlohmann::json;

enum class OptionType { kInt, kFloat, kBool, kString, kIntList };

// Name of a type as shown to users: "int", "float", "bool", "string", "int list".
absl::string_view option_type_name(OptionType t);

struct OptionSpec {
  std::string name;
  OptionType type = OptionType::kInt;
  Json default_value;             // always of `type`
  std::string doc;                // one line: meaning and unit
  std::optional<double> min;      // inclusive bounds for int, float and every element of an int list
  std::optional<double> max;
  std::vector<std::string> choices;  // for strings: the accepted values (empty = any string)

  // "int >= 1", "float in [0, 1]", "one of bilinear|zoh", ... as printed by `hippo layers`.
  std::string accepted() const;
};

// The declared options of one owner (a layer, a task, the trainer). Built with the add_* calls.
class OptionSchema {
 public:
  OptionSchema& add_int(std::string name, int64_t def, std::string doc, std::optional<double> min = {},
                        std::optional<double> max = {});
  OptionSchema& add_float(std::string name, double def, std::string doc, std::optional<double> min = {},
                          std::optional<double> max = {});
  OptionSchema& add_bool(std::string name, bool def, std::string doc);
  OptionSchema& add_string(std::string name, std::string def, std::string doc,
                           std::vector<std::string> choices = {});
  OptionSchema& add_int_list(std::string name, std::vector<int64_t> def, std::string doc,
                             std::optional<double> min = {}, std::optional<double> max = {});

  const std::vector<OptionSpec>& specs() const { return specs_; }
  const OptionSpec* find(absl::string_view name) const;
  // Comma-separated option names, for error messages.
  std::string names() const;

 private:
  std::vector<OptionSpec> specs_;
};

// Validated option values: every declared option present, each of its declared type.
class Options {
 public:
  Options() = default;
  explicit Options(Json values) : values_(std::move(values)) {}

  // Typed getters; they throw StatusError (kInvalidArgument) for an undeclared name, a programming error.
  int64_t get_int(absl::string_view name) const;
  double get_float(absl::string_view name) const;
  bool get_bool(absl::string_view name) const;
  std::string get_string(absl::string_view name) const;
  std::vector<int64_t> get_int_list(absl::string_view name) const;

  // The values as a JSON object with sorted keys (the canonical form stored with a run).
  const Json& json() const { return values_; }

 private:
  const Json& at(absl::string_view name) const;
  Json values_ = Json::object();
};

// Checks `given` (a JSON object; null means empty) against `schema` and fills in defaults.
// `owner` names the owner in errors, e.g. "layer 'attention'". Errors (kInvalidArgument): `given` is not an
// object; an unknown key (lists the accepted keys); a wrong type; a value outside its range or choices.
absl::StatusOr<Options> resolve_options(const OptionSchema& schema, const Json& given, absl::string_view owner);

// Sets `value` at a dotted path ("s4d.d_state") inside `raw`, creating objects along the way.
// Errors (kInvalidArgument) when a path component exists and is not an object, or a component is empty.
absl::Status set_path(Json& raw, const std::string& path, const Json& value);

// Parses a command-line or YAML scalar into JSON: integers, floats, true/false, [a, b] lists, else a string.
Json parse_scalar(absl::string_view text);

}  // namespace hippo
