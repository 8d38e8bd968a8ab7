// train_ensemble: several runs of one config (seeds, learning rates) trained in lockstep in one process must each
// be exactly the run train_run trains alone (issue 5's ensemble test), on the CPU bitwise.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <limits>

#include "core/status.h"
#include "layers/mixer.h"
#include "runner/trainer.h"
#include "tests/testing.h"

namespace hippo {
namespace {

// A tiny associative-recall run with dropout on (embed_dropout 0.1 is the default), so that a member drawing
// another member's dropout masks would show.
RunSpec tiny(const std::string& layer, int64_t seed, double lr) {
  Json raw = {{"layer", layer},
              {"task", "associative_recall"},
              {"seed", seed},
              {"d_model", 32},
              {"epochs", 4},
              {"lr", lr},
              {"eval_every", 2},
              {"embed_dropout", 0.1},
              {"associative_recall", {{"num_train", 192}, {"num_test", 64}}}};
  return value_or_throw(resolve_run(raw));
}

struct Collected {
  std::vector<MetricRow> rows;
  std::vector<std::pair<int64_t, double>> losses;  // (step, training loss) as reported by on_step
  int64_t params = 0;
};

TrainCallbacks collect(Collected& c, int64_t crash_at = -1) {
  TrainCallbacks cb;
  cb.on_start = [&c](int64_t p, int64_t) { c.params = p; };
  cb.on_metrics = [&c](const std::vector<MetricRow>& r) { c.rows.insert(c.rows.end(), r.begin(), r.end()); };
  cb.on_step = [&c, crash_at](int64_t step, int64_t, double loss) {
    if (step == crash_at) throw std::runtime_error("simulated crash");
    c.losses.emplace_back(step, loss);
  };
  return cb;
}

// Throughput rows measure the machine, not the run.
bool is_wall_clock(const std::string& name) { return name == "tokens_per_second" || name == "step_ms"; }

void expect_same_run(const Collected& alone, const Collected& member, const std::string& what) {
  EXPECT_EQ(alone.params, member.params) << what;
  ASSERT_EQ(alone.losses.size(), member.losses.size()) << what;
  for (size_t i = 0; i < alone.losses.size(); ++i) {
    EXPECT_EQ(alone.losses[i].first, member.losses[i].first) << what;
    EXPECT_EQ(alone.losses[i].second, member.losses[i].second) << what << ": loss of step " << alone.losses[i].first;
  }
  ASSERT_EQ(alone.rows.size(), member.rows.size()) << what;
  for (size_t i = 0; i < alone.rows.size(); ++i) {
    EXPECT_EQ(alone.rows[i].step, member.rows[i].step) << what;
    EXPECT_EQ(alone.rows[i].name, member.rows[i].name) << what;
    if (!is_wall_clock(alone.rows[i].name))
      EXPECT_EQ(alone.rows[i].value, member.rows[i].value)
          << what << ": " << alone.rows[i].split << "/" << alone.rows[i].name << " at step " << alone.rows[i].step;
  }
}

class EnsembleMembers : public ::testing::TestWithParam<std::string> {};

// Three members (two seeds, two learning rates) give the losses of every step and every metric of the three runs
// trained alone, bit for bit: the same initial weights, data, data order, dropout masks and optimiser.
TEST_P(EnsembleMembers, EachEqualsItsRunTrainedAlone) {
  torch::set_num_threads(1);
  const std::vector<RunSpec> specs = {tiny(GetParam(), 1, 3e-3), tiny(GetParam(), 2, 3e-3),
                                      tiny(GetParam(), 1, 1e-3)};
  std::vector<Collected> alone(specs.size()), members(specs.size());
  for (size_t i = 0; i < specs.size(); ++i) {
    auto r = train_run(specs[i], "cpu", collect(alone[i]));
    ASSERT_EQ(r.status, "finished");
  }
  std::vector<TrainCallbacks> cbs;
  for (auto& m : members) cbs.push_back(collect(m));
  auto results = train_ensemble(specs, "cpu", cbs, std::vector<CheckpointOptions>(specs.size()));
  ASSERT_EQ(results.size(), specs.size());
  for (size_t i = 0; i < specs.size(); ++i) {
    EXPECT_EQ(results[i].status, "finished");
    EXPECT_EQ(results[i].steps, 24);  // 192 / 32 * 4
    expect_same_run(alone[i], members[i], absl::StrCat(GetParam(), " member ", i));
  }
  // The members are different runs.
  EXPECT_NE(members[0].losses.back().second, members[1].losses.back().second);
  EXPECT_NE(members[0].losses.back().second, members[2].losses.back().second);
}

INSTANTIATE_TEST_SUITE_P(Mixers, EnsembleMembers, ::testing::Values("attention", "h3"));

TEST(Ensemble, KeyIgnoresOnlySeedAndLr) {
  const Json a = tiny("s4d", 1, 3e-3).config;
  EXPECT_EQ(ensemble_key(a), ensemble_key(tiny("s4d", 7, 1e-4).config));
  EXPECT_NE(ensemble_key(a), ensemble_key(tiny("h3", 1, 3e-3).config));
  Json wd = a;
  wd["train"]["weight_decay"] = 0.5;
  EXPECT_NE(ensemble_key(a), ensemble_key(wd));
}

TEST(Ensemble, RefusesMembersOfDifferentConfigs) {
  std::vector<Collected> c(2);
  std::vector<TrainCallbacks> cbs = {collect(c[0]), collect(c[1])};
  try {
    train_ensemble({tiny("s4d", 1, 3e-3), tiny("h3", 1, 3e-3)}, "cpu", cbs, std::vector<CheckpointOptions>(2));
    FAIL() << "members of different layers were trained together";
  } catch (const StatusError& e) {
    EXPECT_EQ(e.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("differ in more than seed and lr"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(c[0].rows.empty()) << "something ran before the refusal";
}

// An ensemble interrupted mid-run resumes from its members' checkpoints and ends as the uninterrupted runs.
TEST(Ensemble, ResumesFromTheMembersCheckpoints) {
  torch::set_num_threads(1);
  testing::TempDir dir;
  const std::vector<RunSpec> specs = {tiny("s4d", 3, 3e-3), tiny("s4d", 4, 2e-3)};
  std::vector<Collected> alone(2);
  for (size_t i = 0; i < 2; ++i) train_run(specs[i], "cpu", collect(alone[i]));
  std::vector<CheckpointOptions> ck = {{dir.file("a.pt"), 5}, {dir.file("b.pt"), 5}};
  std::vector<Collected> first(2), second(2);
  std::vector<TrainCallbacks> cbs = {collect(first[0], 17), collect(first[1])};
  EXPECT_THROW(train_ensemble(specs, "cpu", cbs, ck), std::runtime_error);
  EXPECT_EQ(checkpoint_step(ck[0].path), 15);
  EXPECT_EQ(checkpoint_step(ck[1].path), 15);
  EXPECT_EQ(checkpoint_step(dir.file("none.pt")), 0);
  cbs = {collect(second[0]), collect(second[1])};
  auto results = train_ensemble(specs, "cpu", cbs, ck);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(results[i].resumed_from, 15);
    EXPECT_EQ(results[i].steps, 24);
    ASSERT_FALSE(second[i].losses.empty());
    EXPECT_EQ(second[i].losses.front().first, 16);
    EXPECT_EQ(second[i].losses.back().second, alone[i].losses.back().second) << "member " << i;
    for (const char* split : {"train", "test"})
      for (const char* name : {"loss", "accuracy"}) {
        auto final_of = [&](const Collected& c) {
          for (const auto& m : c.rows)
            if (m.split == split && m.name == name && m.step == 24) return m.value;
          return -1.0;
        };
        EXPECT_EQ(final_of(second[i]), final_of(alone[i])) << "member " << i << " " << split << "/" << name;
      }
  }
}

TEST(Ensemble, MembersAtDifferentStepsAreRefused) {
  torch::set_num_threads(1);
  testing::TempDir dir;
  const std::vector<RunSpec> specs = {tiny("s4d", 3, 3e-3), tiny("s4d", 4, 2e-3)};
  Collected scratch;
  EXPECT_THROW(train_run(specs[0], "cpu", collect(scratch, 12), {dir.file("a.pt"), 5}), std::runtime_error);
  std::vector<Collected> c(2);
  std::vector<TrainCallbacks> cbs = {collect(c[0]), collect(c[1])};
  try {
    train_ensemble(specs, "cpu", cbs, {{dir.file("a.pt"), 5}, {dir.file("b.pt"), 5}});
    FAIL() << "members at steps 10 and 0 were trained together";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("members must start together"), std::string::npos) << e.what();
  }
}

// A mixer that is the identity until its 6th training forward pass and from then on NaN in the runs whose seed
// drew below 0.3 at construction (in either of the two layers): members of one ensemble whose seeds diverge and members that do not.
class NanBySeedMixer : public MixerImpl {
 public:
  NanBySeedMixer() : fails_(torch::rand({1}).item<double>() < 0.3) {}
  torch::Tensor forward(const torch::Tensor& x) override {
    if (!is_training() || !fails_ || calls_++ < 5) return x;
    return x * std::numeric_limits<float>::quiet_NaN();
  }

 private:
  bool fails_;
  int64_t calls_ = 0;
};
const Registrar<LayerEntry> kNanBySeed([] {
  LayerEntry e;
  e.name = "test_nan_by_seed";
  e.doc = "test only";
  e.state_size = [](const Options&, int64_t, int64_t) { return int64_t{0}; };
  e.factory = [](const MixerArgs&) -> Mixer { return std::make_shared<NanBySeedMixer>(); };
  return e;
}());

// A member that diverges ends there as "diverged" at its first bad step; the others train on to the end and equal
// their runs alone.
TEST(Ensemble, ADivergingMemberEndsAloneAndTheOthersFinish) {
  torch::set_num_threads(1);
  std::vector<RunSpec> specs;
  std::vector<Collected> alone;
  std::vector<std::string> statuses;
  for (int64_t seed = 0; seed < 8; ++seed) {
    specs.push_back(tiny("test_nan_by_seed", seed, 3e-3));
    alone.emplace_back();
    statuses.push_back(train_run(specs.back(), "cpu", collect(alone.back())).status);
  }
  ASSERT_NE(std::count(statuses.begin(), statuses.end(), "diverged"), 0) << "no seed in 0..7 diverges";
  ASSERT_NE(std::count(statuses.begin(), statuses.end(), "finished"), 0) << "every seed in 0..7 diverges";
  std::vector<Collected> members(specs.size());
  std::vector<TrainCallbacks> cbs;
  for (auto& m : members) cbs.push_back(collect(m));
  auto results = train_ensemble(specs, "cpu", cbs, std::vector<CheckpointOptions>(specs.size()));
  for (size_t i = 0; i < specs.size(); ++i) {
    EXPECT_EQ(results[i].status, statuses[i]) << "seed " << i;
    if (statuses[i] == "diverged") {
      ASSERT_TRUE(results[i].diverged_step.has_value());
      EXPECT_EQ(*results[i].diverged_step, 5) << "seed " << i;
    } else {
      EXPECT_EQ(results[i].steps, 24);
    }
    expect_same_run(alone[i], members[i], absl::StrCat("seed ", i));
  }
}

}  // namespace
}  // namespace hippo
