// Terminal progress: a single line redrawn with '\r' and cleared with an ANSI erase.
#include "core/progress.h"

#include <unistd.h>

#include <cstdio>

namespace hippo {
namespace {
bool g_quiet = false;
bool g_log_only = false;
}

void Progress::set_log_only(bool log_only) { g_log_only = log_only; }

void Progress::set_quiet(bool quiet) { g_quiet = quiet; }
bool Progress::quiet() { return g_quiet; }

Progress::Progress(bool enabled) : live_(enabled && !g_quiet && !g_log_only && isatty(fileno(stderr))) {}
Progress::~Progress() { clear(); }

void Progress::update(const std::string& line, bool force) {
  if (!live_) return;
  auto now = std::chrono::steady_clock::now();
  if (!force && drawn_ && now - last_draw_ < std::chrono::milliseconds(100)) return;
  last_draw_ = now;
  last_ = line;
  std::fprintf(stderr, "\r\033[2K%s", line.c_str());
  std::fflush(stderr);
  drawn_ = true;
}

void Progress::clear() {
  if (live_ && drawn_) {
    std::fprintf(stderr, "\r\033[2K");
    std::fflush(stderr);
    drawn_ = false;
  }
}

void Progress::log(const std::string& line) {
  if (g_quiet) return;
  const bool redraw = drawn_;
  clear();
  std::fprintf(stderr, "%s\n", line.c_str());
  if (redraw) update(last_, true);
}

std::string format_duration(double s) {
  char buf[32];
  if (s < 60) {
    std::snprintf(buf, sizeof(buf), "%.1fs", s);
  } else if (s < 3600) {
    std::snprintf(buf, sizeof(buf), "%dm%02ds", static_cast<int>(s) / 60, static_cast<int>(s) % 60);
  } else {
    std::snprintf(buf, sizeof(buf), "%dh%02dm", static_cast<int>(s) / 3600, (static_cast<int>(s) % 3600) / 60);
  }
  return buf;
}

}  // namespace hippo
