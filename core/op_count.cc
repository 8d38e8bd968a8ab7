// OpCounter: a global RecordFunction callback that counts operator calls by name, with per-thread nesting
// depth.
#include "core/op_count.h"

#include <ATen/record_function.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <vector>

namespace hippo {

struct OpCounter::State {
  std::mutex mu;
  std::map<std::string, int64_t> top;
  std::map<std::string, double> top_ms;
  int64_t all = 0;
};

namespace {
// The live counter's state (at most one); the callbacks are plain function pointers, so they find it here.
std::mutex g_mu;
std::shared_ptr<OpCounter::State> g_state;
thread_local int t_depth = 0;
thread_local std::chrono::steady_clock::time_point t_top_start;

std::unique_ptr<at::ObserverContext> on_start(const at::RecordFunction& fn) {
  std::shared_ptr<OpCounter::State> s;
  {
    std::lock_guard<std::mutex> lock(g_mu);
    s = g_state;
  }
  if (s) {
    std::lock_guard<std::mutex> lock(s->mu);
    ++s->all;
    if (t_depth == 0) ++s->top[fn.name()];
  }
  if (t_depth++ == 0) t_top_start = std::chrono::steady_clock::now();
  return nullptr;
}

void on_end(const at::RecordFunction& fn, at::ObserverContext*) {
  if (--t_depth != 0) return;
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t_top_start).count();
  std::shared_ptr<OpCounter::State> s;
  {
    std::lock_guard<std::mutex> lock(g_mu);
    s = g_state;
  }
  if (!s) return;
  std::lock_guard<std::mutex> lock(s->mu);
  s->top_ms[fn.name()] += ms;
}
}  // namespace

OpCounter::OpCounter() : state_(std::make_shared<State>()) {
  {
    std::lock_guard<std::mutex> lock(g_mu);
    TORCH_CHECK(!g_state, "OpCounter: another counter is live; only one may be at a time");
    g_state = state_;
  }
  handle_ =
      at::addGlobalCallback(at::RecordFunctionCallback(&on_start, &on_end)
                                .scopes({at::RecordScope::FUNCTION, at::RecordScope::BACKWARD_FUNCTION}));
}

OpCounter::~OpCounter() {
  at::removeCallback(handle_);
  std::lock_guard<std::mutex> lock(g_mu);
  g_state.reset();
}

std::map<std::string, int64_t> OpCounter::top_level() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->top;
}

std::map<std::string, double> OpCounter::top_level_ms() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->top_ms;
}

int64_t OpCounter::top_level_total() const {
  int64_t n = 0;
  for (const auto& [name, c] : top_level()) n += c;
  return n;
}

int64_t OpCounter::all_total() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->all;
}

std::string OpCounter::summary_ms(int n) const {
  auto top = top_level_ms();
  auto count = top_level();
  std::vector<std::pair<std::string, double>> v(top.begin(), top.end());
  std::stable_sort(v.begin(), v.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
  std::string out;
  char buf[64];
  for (int i = 0; i < n && i < static_cast<int>(v.size()); ++i) {
    std::snprintf(buf, sizeof buf, " %.3f ms (x%lld)", v[i].second,
                  static_cast<long long>(count[v[i].first]));
    out += (i ? ", " : "") + v[i].first + buf;
  }
  return out;
}

std::string OpCounter::summary(int n) const {
  auto top = top_level();
  std::vector<std::pair<std::string, int64_t>> v(top.begin(), top.end());
  std::stable_sort(v.begin(), v.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
  std::string out;
  for (int i = 0; i < n && i < static_cast<int>(v.size()); ++i)
    out += (i ? ", " : "") + v[i].first + " x" + std::to_string(v[i].second);
  return out;
}

}  // namespace hippo
