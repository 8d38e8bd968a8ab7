// Error handling at hippo's boundaries (config parsing, registry look-ups, the database, sweeps): absl::Status
// and absl::StatusOr plus the project's own propagation macros (Debian's Abseil 20220623 has none).
#pragma once

#include <absl/status/status.h>
#include <absl/status/statusor.h>

#include <stdexcept>
#include <string>

#define HIPPO_CONCAT_INNER_(a, b) a##b
#define HIPPO_CONCAT_(a, b) HIPPO_CONCAT_INNER_(a, b)

// Evaluates `expr` (an absl::Status); returns it from the enclosing function if it is not OK.
#define HIPPO_RETURN_IF_ERROR(expr)           \
  do {                                        \
    ::absl::Status hippo_status_ = (expr);    \
    if (!hippo_status_.ok()) return hippo_status_; \
  } while (0)

// `HIPPO_ASSIGN_OR_RETURN(auto x, StatusOrExpr())`: assigns the value, or returns the error status.
#define HIPPO_ASSIGN_OR_RETURN(lhs, expr) \
  HIPPO_ASSIGN_OR_RETURN_IMPL_(HIPPO_CONCAT_(hippo_statusor_, __LINE__), lhs, expr)
#define HIPPO_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                 \
  if (!tmp.ok()) return std::move(tmp).status();     \
  lhs = std::move(tmp).value()

namespace hippo {

// Thrown where a Status must cross code that reports errors by exception (tensor code, the trainer); the
// runner and the command line turn it back into a Status. Bad input (code kInvalidArgument, kNotFound,
// kFailedPrecondition) leads to exit code 2 at the command line.
class StatusError : public std::runtime_error {
 public:
  explicit StatusError(absl::Status status)
      : std::runtime_error(std::string(status.message())), status_(std::move(status)) {}
  const absl::Status& status() const { return status_; }

 private:
  absl::Status status_;
};

// Returns the value of a StatusOr, or throws StatusError.
template <typename T>
T value_or_throw(absl::StatusOr<T> v) {
  if (!v.ok()) throw StatusError(v.status());
  return std::move(v).value();
}
inline void throw_if_error(const absl::Status& s) {
  if (!s.ok()) throw StatusError(s);
}

}  // namespace hippo
