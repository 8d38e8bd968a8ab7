// A name -> entry registry, one per plugin kind (mixers, tasks). Each plugin registers itself from its own
// file with a static Registrar; the registry is a function-local static, so registration order across
// translation units does not matter. Consumers link plugin libraries whole-archive so that the linker keeps
// the registrars (see layers/CMakeLists.txt).
#pragma once

#include <absl/strings/str_cat.h>
#include <absl/strings/str_join.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <absl/strings/string_view.h>
#include <vector>

#include "core/options.h"
#include "core/status.h"

namespace hippo {

// EntryT must have `std::string name`, `std::string doc` and `OptionSchema schema` members; the rest (the
// factory and any traits) is the plugin kind's own business.
template <typename EntryT>
class Registry {
 public:
  // The process-wide registry of this entry type.
  static Registry& global() {
    static Registry r;
    return r;
  }

  // Adds an entry. A duplicate name is a programming error: the program stops with a message at start-up.
  void add(EntryT e) {
    if (entries_.count(e.name)) {
      std::fprintf(stderr, "hippo: '%s' registered twice\n", e.name.c_str());
      std::abort();
    }
    std::string name = e.name;
    entries_.emplace(std::move(name), std::move(e));
  }

  // Looks up `name`. kNotFound names the kind ("layer") and lists every registered name.
  absl::StatusOr<const EntryT*> find(absl::string_view name, absl::string_view kind) const {
    auto it = entries_.find(std::string(name));
    if (it == entries_.end())
      return absl::NotFoundError(
          absl::StrCat("unknown ", kind, " '", name, "'; registered: ", absl::StrJoin(names(), ", ")));
    return &it->second;
  }

  bool contains(absl::string_view name) const { return entries_.count(std::string(name)) > 0; }

  // Registered names in sorted order.
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const auto& [n, e] : entries_) out.push_back(n);
    return out;
  }

  const std::map<std::string, EntryT>& entries() const { return entries_; }

 private:
  std::map<std::string, EntryT> entries_;
};

// `static Registrar<LayerEntry> reg(LayerEntry{...});` at namespace scope registers at start-up.
template <typename EntryT>
struct Registrar {
  explicit Registrar(EntryT e) { Registry<EntryT>::global().add(std::move(e)); }
};

}  // namespace hippo
