// core/device.h: the environment fingerprint stored with every run and bench row names the kernel switches set.
#include <gtest/gtest.h>

#include <cstdlib>

#include "core/device.h"

namespace hippo {
namespace {

TEST(Environment, RecordsTheKernelSwitchesThatAreSet) {
  const char* names[] = {"HIPPO_FFTCONV_BLOCKFFT", "HIPPO_FFTCONV_DIRECT", "HIPPO_FFTCONV_FILTER",
                         "HIPPO_FFTCONV_RECOMPUTE", "HIPPO_SSM_KERNEL", "HIPPO_PROJECTION"};
  constexpr int kNames = 6;
  std::string saved[kNames];
  bool had[kNames];
  for (int i = 0; i < kNames; ++i) {
    const char* v = std::getenv(names[i]);
    had[i] = v != nullptr;
    if (v) saved[i] = v;
    unsetenv(names[i]);
  }
  const auto none = environment(c10::Device("cpu"));
  EXPECT_TRUE(none.at("kernel_switches").is_object());
  EXPECT_TRUE(none.at("kernel_switches").empty()) << none.dump();
  setenv("HIPPO_SSM_KERNEL", "aten", 1);
  setenv("HIPPO_FFTCONV_DIRECT", "cpu", 1);
  setenv("HIPPO_FFTCONV_FILTER", "", 1);  // empty: unset
  setenv("HIPPO_FFTCONV_RECOMPUTE", "on", 1);
  setenv("HIPPO_PROJECTION", "transpose", 1);
  const auto some = environment(c10::Device("cpu"));
  EXPECT_EQ(some.at("kernel_switches").size(), 4u) << some.dump();
  EXPECT_EQ(some.at("kernel_switches").at("HIPPO_PROJECTION"), "transpose");
  EXPECT_EQ(some.at("kernel_switches").at("HIPPO_FFTCONV_RECOMPUTE"), "on");
  EXPECT_EQ(some.at("kernel_switches").at("HIPPO_SSM_KERNEL"), "aten");
  EXPECT_EQ(some.at("kernel_switches").at("HIPPO_FFTCONV_DIRECT"), "cpu");
  for (int i = 0; i < kNames; ++i) {
    if (had[i])
      setenv(names[i], saved[i].c_str(), 1);
    else
      unsetenv(names[i]);
  }
}

}  // namespace
}  // namespace hippo
