// Progress display on stderr for long work: one live line redrawn in place on a terminal; nothing when
// stderr is not a terminal or --quiet was given (log lines go through `log` instead).
#pragma once

#include <chrono>
#include <string>

namespace hippo {

class Progress {
 public:
  // enabled: draw live lines (callers pass !quiet; the terminal check is done here).
  explicit Progress(bool enabled);
  ~Progress();
  // Redraws the live line (at most every 100 ms unless `force`).
  void update(const std::string& line, bool force = false);
  // Clears the live line (before ordinary output).
  void clear();
  // Prints one permanent line on stderr unless the display is quiet, keeping the live line below it.
  void log(const std::string& line);
  bool live() const { return live_; }

  // Process-wide quiet switch set by --quiet.
  static void set_quiet(bool quiet);
  static bool quiet();
  // Process-wide: no live line even on a terminal, log lines still printed (worker processes of a sweep).
  static void set_log_only(bool log_only);

 private:
  bool live_;
  bool drawn_ = false;
  std::string last_;
  std::chrono::steady_clock::time_point last_draw_{};
};

// "1h02m", "3m05s", "12.3s" for a duration in seconds.
std::string format_duration(double seconds);

}  // namespace hippo
