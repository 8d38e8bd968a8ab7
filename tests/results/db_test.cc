// The results database: schema round trip, claims and leases, idempotent metrics, and refusal of files that
// are not hippo databases (leaving them byte for byte unchanged).
#include "results/db.h"

#include <SQLiteCpp/SQLiteCpp.h>
#include <absl/strings/str_cat.h>
#include <gtest/gtest.h>

#include <thread>

#include "results/schema.h"
#include "results/table.h"
#include "tests/testing.h"

namespace hippo {
namespace {
using testing::TempDir;

std::unique_ptr<ResultsDb> open_rw(const std::string& p) {
  auto db = ResultsDb::open(p, ResultsDb::Mode::kReadWrite);
  EXPECT_TRUE(db.ok()) << db.status();
  return std::move(db).value();
}

TEST(ResultsDb, RoundTripOfARun) {
  TempDir dir;
  const std::string path = dir.file("r.db");
  {
    auto db = open_rw(path);
    auto sweep = db->upsert_sweep("s", Json{{"grid", 1}});
    ASSERT_TRUE(sweep.ok());
    auto q = db->enqueue("abc", Json{{"x", 1}}, "s4d", "induction_head", 3, *sweep);
    ASSERT_TRUE(q.ok());
    EXPECT_TRUE(q->created);
    auto again = db->enqueue("abc", Json{{"x", 1}}, "s4d", "induction_head", 3, *sweep);
    EXPECT_FALSE(again->created);
    EXPECT_EQ(again->id, q->id);
    auto c = db->claim_next(*sweep, "w1", 60);
    ASSERT_TRUE(c.ok() && c->has_value());
    EXPECT_EQ((*c)->status, "running");
    EXPECT_EQ((*c)->attempts, 1);
    ASSERT_TRUE(db->record_start(q->id, Json{{"commit", "deadbeef"}, {"torch_version", "1.13.0"}, {"device", "cpu"}, {"threads", 1}}, 1234, 4096).ok());
    ASSERT_TRUE(db->add_metrics(q->id, {{10, "test", "accuracy", 0.5}, {20, "test", "accuracy", 0.75}}).ok());
    ASSERT_TRUE(db->finish_run(q->id, "finished", 20, 1.5).ok());
  }
  auto db = ResultsDb::open(path, ResultsDb::Mode::kReadOnly);
  ASSERT_TRUE(db.ok()) << db.status();
  auto r = (*db)->get_run(1);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, "finished");
  EXPECT_EQ(r->config, Json({{"x", 1}}));
  EXPECT_EQ(*r->param_count, 1234);
  EXPECT_EQ(*r->state_size, 4096);
  EXPECT_EQ(r->commit_hash, "deadbeef");
  EXPECT_EQ(*r->steps, 20);
  auto ms = (*db)->metrics(1);
  ASSERT_EQ(ms->size(), 2u);
  EXPECT_DOUBLE_EQ((*ms)[1].value, 0.75);
  auto runs = (*db)->list_runs({std::string("s"), std::string("finished")});
  EXPECT_EQ(runs->size(), 1u);
  EXPECT_EQ((*db)->get_run(99).status().code(), absl::StatusCode::kNotFound);
}

TEST(ResultsDb, MetricsAreReplacedNotDuplicated) {
  TempDir dir;
  auto db = open_rw(dir.file("r.db"));
  auto q = db->enqueue("h", Json::object(), "a", "t", 0, std::nullopt);
  ASSERT_TRUE(db->add_metrics(q->id, {{5, "test", "loss", 1.0}}).ok());
  ASSERT_TRUE(db->add_metrics(q->id, {{5, "test", "loss", 2.0}}).ok());  // a resumed run writes step 5 again
  auto ms = db->metrics(q->id);
  ASSERT_EQ(ms->size(), 1u);
  EXPECT_DOUBLE_EQ((*ms)[0].value, 2.0);
}

TEST(ResultsDb, ExpiredLeaseIsTakenOverAndLiveLeaseIsNot) {
  TempDir dir;
  auto db = open_rw(dir.file("r.db"));
  ASSERT_TRUE(db->enqueue("a", Json::object(), "l", "t", 0, std::nullopt).ok());
  auto first = db->claim_next(std::nullopt, "w1", 1000);
  ASSERT_TRUE(first->has_value());
  EXPECT_FALSE(db->claim_next(std::nullopt, "w2", 1000)->has_value());  // held
  ASSERT_TRUE(db->enqueue("b", Json::object(), "l", "t", 1, std::nullopt).ok());
  auto second = db->claim_next(std::nullopt, "w2", -5);  // a lease already expired: as if w2 died
  ASSERT_TRUE(second->has_value());
  EXPECT_EQ((*second)->config_hash, "b");
  auto taken = db->claim_next(std::nullopt, "w3", 1000);
  ASSERT_TRUE(taken->has_value());
  EXPECT_EQ((*taken)->config_hash, "b");
  EXPECT_EQ((*taken)->attempts, 2);
}

// claim_group takes the lead claim_next would take and the claimable runs of its group, up to max_runs, in id order.
TEST(ResultsDb, ClaimGroupTakesTheLeadAndItsPeersUpToTheLimit) {
  TempDir dir;
  auto db = open_rw(dir.file("g.db"));
  auto sweep = db->upsert_sweep("s", Json::object());
  ASSERT_TRUE(sweep.ok());
  // Runs 1..6: layers a, b, a, a, b, a.
  const std::vector<std::string> layers = {"a", "b", "a", "a", "b", "a"};
  for (size_t i = 0; i < layers.size(); ++i)
    ASSERT_TRUE(db->enqueue(absl::StrCat("h", i), Json{{"layer", layers[i]}}, layers[i], "t", 0, *sweep).ok());
  auto same_layer = [](const RunRow& lead, const RunRow& other) { return lead.layer == other.layer; };
  EXPECT_EQ(db->claim_group(*sweep, "w", 60, 0, same_layer).status().code(), absl::StatusCode::kInvalidArgument);
  auto g = db->claim_group(*sweep, "w1", 60, 3, same_layer);
  ASSERT_TRUE(g.ok()) << g.status();
  ASSERT_EQ(g->size(), 3u);
  EXPECT_EQ((*g)[0].id, 1);
  EXPECT_EQ((*g)[1].id, 3);
  EXPECT_EQ((*g)[2].id, 4);
  for (const auto& r : *g) {
    EXPECT_EQ(r.status, "running");
    EXPECT_EQ(r.attempts, 1);
    EXPECT_EQ(db->get_run(r.id)->worker, "w1");
  }
  g = db->claim_group(*sweep, "w2", 60, 3, same_layer);  // the next lead is run 2 (b), with run 5
  ASSERT_EQ(g->size(), 2u);
  EXPECT_EQ((*g)[0].id, 2);
  EXPECT_EQ((*g)[1].id, 5);
  g = db->claim_group(*sweep, "w3", 60, 3, same_layer);
  ASSERT_EQ(g->size(), 1u);
  EXPECT_EQ((*g)[0].id, 6);
  EXPECT_TRUE(db->claim_group(*sweep, "w4", 60, 3, same_layer)->empty());
}

TEST(ResultsDb, RequeueFailedOnlyTouchesFailed) {
  TempDir dir;
  auto db = open_rw(dir.file("r.db"));
  auto s = db->upsert_sweep("s", Json::object());
  for (const char* h : {"a", "b"}) ASSERT_TRUE(db->enqueue(h, Json::object(), "l", "t", 0, *s).ok());
  auto a = db->claim_next(*s, "w", 60);
  ASSERT_TRUE(db->finish_run((*a)->id, "failed", 0, 0.1, "boom").ok());
  auto b = db->claim_next(*s, "w", 60);
  ASSERT_TRUE(db->finish_run((*b)->id, "finished", 10, 0.1).ok());
  EXPECT_EQ(*db->requeue_failed(*s), 1);
  EXPECT_EQ(db->get_run((*a)->id)->status, "queued");
  EXPECT_EQ(db->get_run((*b)->id)->status, "finished");
}

TEST(ResultsDb, MissingFileReadOnlyIsNotFoundAndNotCreated) {
  TempDir dir;
  auto db = ResultsDb::open(dir.file("nope.db"), ResultsDb::Mode::kReadOnly);
  EXPECT_EQ(db.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(testing::snapshot(dir.file("nope.db")), "<missing>");
}

TEST(ResultsDb, RefusesFilesThatAreNotHippoDatabasesAndLeavesThemAlone) {
  TempDir dir;
  // A text file.
  testing::write_file(dir.file("text.db"), "not a database at all\n");
  // A foreign SQLite database.
  { SQLite::Database other(dir.file("other.db"), SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE); other.exec("CREATE TABLE t(x)"); }
  // A hippo database from a newer schema.
  { open_rw(dir.file("new.db")); SQLite::Database d(dir.file("new.db"), SQLite::OPEN_READWRITE); d.exec("PRAGMA user_version = 99"); }
  // A truncated hippo database.
  { open_rw(dir.file("trunc.db")); }
  const std::string full = testing::read_file(dir.file("trunc.db"));
  testing::write_file(dir.file("trunc.db"), full.substr(0, 100));
  for (const char* f : {"text.db", "other.db", "new.db", "trunc.db"})
    for (auto mode : {ResultsDb::Mode::kReadOnly, ResultsDb::Mode::kReadWrite}) {
      const std::string before = testing::snapshot(dir.file(f));
      auto db = ResultsDb::open(dir.file(f), mode);
      EXPECT_FALSE(db.ok()) << f;
      EXPECT_TRUE(db.status().code() == absl::StatusCode::kInvalidArgument ||
                  db.status().code() == absl::StatusCode::kFailedPrecondition) << f << ": " << db.status();
      EXPECT_EQ(testing::snapshot(dir.file(f)), before) << f << " was modified";
    }
  auto newer = ResultsDb::open(dir.file("new.db"), ResultsDb::Mode::kReadOnly);
  EXPECT_NE(std::string(newer.status().message()).find("newer"), std::string::npos);
}

TEST(ResultsDb, SchemaVersionAndWalMode) {
  TempDir dir;
  auto db = open_rw(dir.file("r.db"));
  EXPECT_EQ(db->raw().execAndGet("PRAGMA user_version").getInt(), kSchemaVersion);
  EXPECT_EQ(db->raw().execAndGet("PRAGMA application_id").getInt(), kApplicationId);
  EXPECT_EQ(db->raw().execAndGet("PRAGMA journal_mode").getString(), "wal");
  for (const auto& t : schema_tables())
    EXPECT_EQ(db->raw().execAndGet("SELECT count(*) FROM sqlite_master WHERE name = '" + std::string(t.name) + "'").getInt(), 1);
}

TEST(ResultsDb, QueryOnReadOnlyHandleRefusesWrites) {
  TempDir dir;
  open_rw(dir.file("r.db"));
  auto db = ResultsDb::open(dir.file("r.db"), ResultsDb::Mode::kReadOnly);
  EXPECT_TRUE((*db)->query("SELECT count(*) FROM runs").ok());
  auto w = (*db)->query("DELETE FROM runs");
  EXPECT_FALSE(w.ok());
}

TEST(ResultsDb, MergeKeepsOneCopyPerRunTheFinishedOneWinningAndIsIdempotent) {
  TempDir dir;
  auto a = open_rw(dir.file("a.db")), b = open_rw(dir.file("b.db")), out = open_rw(dir.file("out.db"));
  auto sa = a->upsert_sweep("s", Json::object()), sb = b->upsert_sweep("s", Json::object());
  // Run "x" is failed in shard a and finished in shard b; "y" only in a; "z" only in b.
  auto xa = a->enqueue("x", Json{{"k", 1}}, "l", "t", 0, *sa);
  ASSERT_TRUE(a->claim_next(*sa, "w", 60).ok());
  ASSERT_TRUE(a->add_metrics(xa->id, {{1, "test", "accuracy", 0.1}}).ok());
  ASSERT_TRUE(a->finish_run(xa->id, "failed", 1, 0.1, "boom").ok());
  auto ya = a->enqueue("y", Json::object(), "l", "t", 1, *sa);
  ASSERT_TRUE(a->claim_next(*sa, "w", 60).ok());
  ASSERT_TRUE(a->add_metrics(ya->id, {{5, "test", "accuracy", 0.5}}).ok());
  ASSERT_TRUE(a->finish_run(ya->id, "finished", 5, 0.1).ok());
  auto zb = b->enqueue("z", Json::object(), "l", "t", 2, *sb);
  auto xb = b->enqueue("x", Json{{"k", 1}}, "l", "t", 0, *sb);
  ASSERT_TRUE(b->claim_next(*sb, "w", 60, xb->id).ok());
  ASSERT_TRUE(b->add_metrics(xb->id, {{9, "test", "accuracy", 0.9}}).ok());
  ASSERT_TRUE(b->finish_run(xb->id, "finished", 9, 0.1).ok());
  (void)zb;
  EXPECT_EQ(*out->merge_from(*a), 2);
  EXPECT_EQ(*out->merge_from(*b), 2);  // z added, x replaced by the finished copy
  auto dump = [&] { return out->query("SELECT r.config_hash, r.status, m.step, m.value FROM runs r LEFT JOIN metrics m "
                                      "ON m.run_id = r.id ORDER BY 1, 3")->rows; };
  const auto once = dump();
  EXPECT_EQ(*out->merge_from(*a), 0);
  EXPECT_EQ(*out->merge_from(*b), 0);
  EXPECT_EQ(dump(), once);
  ASSERT_EQ(once.size(), 3u);
  EXPECT_EQ(once[0], std::vector<std::string>({"x", "finished", "9", "0.9"}));
  EXPECT_EQ(once[1], std::vector<std::string>({"y", "finished", "5", "0.5"}));
  EXPECT_EQ(once[2][1], "queued");
  EXPECT_EQ(out->list_runs({std::string("s"), std::nullopt})->size(), 3u);
}

TEST(Table, AnyPivotWithTheBestLearningRatePerCell) {
  TempDir dir;
  auto db = open_rw(dir.file("r.db"));
  auto s = db->upsert_sweep("grid", Json::object());
  int n = 0;
  for (int d : {16, 32})
    for (double lr : {1e-3, 3e-3})
      for (int seed = 0; seed < 2; ++seed) {
        const Json config = {{"train", {{"d_model", d}, {"lr", lr}}}, {"task_options", {{"seq_len", 64}}}};
        auto q = db->enqueue(std::to_string(n++), config, "h3", "mqar", seed, *s);
        ASSERT_TRUE(db->claim_next(*s, "w", 60).ok());
        // lr 3e-3 is better at width 16, lr 1e-3 at width 32.
        const bool good = (d == 16) == (lr > 2e-3);
        ASSERT_TRUE(db->add_metrics(q->id, {{10, "test", "accuracy", good ? 0.9 : 0.5}}).ok());
        ASSERT_TRUE(db->finish_run(q->id, "finished", 10, 1.0).ok());
      }
  TableOptions o;
  o.rows = "layer";
  o.cols = "d_model";
  o.best_over = "lr";
  auto t = results_table(*db, o);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_NE(t->find("layer  16"), std::string::npos) << *t;
  EXPECT_NE(t->find("90.0 ± 0.0 (n=2) @ lr=0.003"), std::string::npos) << *t;
  EXPECT_NE(t->find("90.0 ± 0.0 (n=2) @ lr=0.001"), std::string::npos) << *t;
  o.best_over.reset();
  o.rows = "lr";
  o.cols = "seq_len";  // found under task_options
  auto plain = results_table(*db, o);
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_NE(plain->find("70.0 ± 36.7 (n=4) *"), std::string::npos) << *plain;  // 0.5, 0.5, 0.9, 0.9: t(3) * sd / 2
  EXPECT_NE(plain->find("interval over seeds"), std::string::npos) << *plain;
  // Pivoting on the seed: the caption no longer claims an interval over seeds.
  o.rows = "seed";
  o.cols = "d_model";
  auto by_seed = results_table(*db, o);
  ASSERT_TRUE(by_seed.ok()) << by_seed.status();
  EXPECT_NE(by_seed->find("one seed per cell"), std::string::npos) << *by_seed;
  EXPECT_EQ(by_seed->find("over seeds"), std::string::npos) << *by_seed;
}

// Keys as sweep files write them (attention.rotary, mqar.answer_in_input), options left out at their default
// (filled back by complete_config), and a key no run has (an error naming it, not a column of "-").
TEST(Table, PivotKeysAsInSweepFilesAndDefaultsLeftOutOfConfigs) {
  TempDir dir;
  auto db = open_rw(dir.file("r.db"));
  auto s = db->upsert_sweep("k", Json::object());
  int n = 0;
  for (bool rotary : {false, true})
    for (int seed = 0; seed < 2; ++seed) {
      Json config = {{"task", "mqar"},
                     {"train", {{"d_model", 32}}},
                     {"task_options", {{"seq_len", 32}}},
                     {"layer_options", {{"attention", {{"n_heads", 1}}}}}};
      if (rotary) config["layer_options"]["attention"]["rotary"] = true;  // stored only when not the default
      auto q = db->enqueue(std::to_string(n++), config, "attention", "mqar", seed, *s);
      ASSERT_TRUE(db->claim_next(*s, "w", 60).ok());
      ASSERT_TRUE(db->add_metrics(q->id, {{10, "test", "accuracy", rotary ? 1.0 : 0.25}}).ok());
      ASSERT_TRUE(db->finish_run(q->id, "finished", 10, 1.0).ok());
    }
  TableOptions o;
  o.sweep = "k";
  o.cols = "attention.rotary";
  auto t = results_table(*db, o);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_NE(t->find("100.0 ± 0.0 (n=2)"), std::string::npos) << *t;
  EXPECT_NE(t->find("  -  "), std::string::npos) << "without complete_config the default is absent\n" << *t;
  o.complete_config = [](const Json& c) {
    Json full = c;
    if (!full["layer_options"]["attention"].contains("rotary")) full["layer_options"]["attention"]["rotary"] = false;
    return full;
  };
  t = results_table(*db, o);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_NE(t->find("false"), std::string::npos) << *t;
  EXPECT_EQ(t->find("  -  "), std::string::npos) << *t;
  EXPECT_NE(t->find("25.0 ± 0.0 (n=2)"), std::string::npos) << *t;
  o.cols = "mqar.seq_len";  // the task's name as prefix, as in sweep files
  t = results_table(*db, o);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_NE(t->find("32"), std::string::npos) << *t;
  for (const char* bad : {"bogus", "attention.bogus", "induction_head.seq_len"}) {
    o.cols = bad;
    auto e = results_table(*db, o);
    EXPECT_EQ(e.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(e.status().message().find(std::string("--cols ") + bad + ": no run has this key"), std::string::npos)
        << e.status();
  }
  o.cols = "task";
  o.best_over = "bogus";
  EXPECT_EQ(results_table(*db, o).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(Table, SummaryUsesStudentT) {
  auto s = summarize({0.9, 1.0});
  EXPECT_DOUBLE_EQ(s.mean, 0.95);
  // sd = 0.0707..., t(1) = 12.706: half-width 12.706 * 0.0707 / sqrt(2) = 0.6353
  EXPECT_NEAR(s.half_width, 0.6353, 1e-3);
  EXPECT_EQ(summarize({0.5}).half_width, 0.0);
}

TEST(Table, PivotsFinalAccuracyWithChance) {
  TempDir dir;
  auto db = open_rw(dir.file("r.db"));
  auto s = db->upsert_sweep("s", Json::object());
  int n = 0;
  for (const char* layer : {"attention", "s4d"})
    for (const char* task : {"induction_head", "associative_recall"})
      for (int seed = 0; seed < 2; ++seed) {
        auto q = db->enqueue(std::to_string(n++), Json::object(), layer, task, seed, *s);
        auto c = db->claim_next(*s, "w", 60);
        const double acc = std::string(layer) == "attention" ? 1.0 : 0.3 + 0.1 * seed;
        ASSERT_TRUE(db->add_metrics(q->id, {{0, "test", "chance", 0.25}, {0, "test", "accuracy", 0.0}, {100, "test", "accuracy", acc}}).ok());
        ASSERT_TRUE(db->finish_run(q->id, "finished", 100, 1.0).ok());
      }
  TableOptions o;
  o.sweep = "s";
  auto t = results_table(*db, o);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_NE(t->find("100.0 ± 0.0 (n=2)"), std::string::npos) << *t;
  EXPECT_EQ(t->find("*"), std::string::npos) << "no cell pools different configs here\n" << *t;
  EXPECT_NE(t->find("35.0 ± 63.5 (n=2)"), std::string::npos) << *t;
  EXPECT_NE(t->find("random"), std::string::npos) << *t;
  o.format = "md";
  EXPECT_NE(results_table(*db, o)->find("| layer | associative_recall | induction_head |"), std::string::npos);
  o.sweep = "missing";
  EXPECT_EQ(results_table(*db, o).status().code(), absl::StatusCode::kNotFound);
}

TEST(ResultsDb, MigratesVersion1ByAddingTheBenchTable) {
  TempDir dir;
  {
    auto db = open_rw(dir.file("v1.db"));
    db->raw().exec("DROP TABLE bench");  // version 1: neither the bench table nor runs.model_path
    db->raw().exec("ALTER TABLE runs DROP COLUMN model_path");
    db->raw().exec("PRAGMA user_version = 1");
  }
  auto db = open_rw(dir.file("v1.db"));
  EXPECT_EQ(db->raw().execAndGet("PRAGMA user_version").getInt(), kSchemaVersion);
  EXPECT_EQ(db->raw().execAndGet("SELECT count(*) FROM sqlite_master WHERE name = 'bench'").getInt(), 1);
  EXPECT_EQ(db->raw().execAndGet("SELECT count(*) FROM pragma_table_info('runs') WHERE name = 'model_path'").getInt(), 1);
}

TEST(ResultsDb, BenchRowsFollowTheSchema) {
  TempDir dir;
  auto db = open_rw(dir.file("r.db"));
  Json row = {{"created_at", utc_now()}, {"benchmark", "fftconv"}, {"variant", "fused"}, {"pass", "forward"},
              {"batch", 16}, {"channels", 768}, {"seq_len", 4096}, {"fft_size", 8192}, {"dtype", "bfloat16"},
              {"median_ms", 0.2}, {"min_ms", 0.19}, {"iters", 30}, {"bytes", 201326592}, {"gbytes_per_s", 1000.0},
              {"copy_gbytes_per_s", 4000.0}, {"speedup", 8.0}, {"device", "test"}};
  ASSERT_TRUE(db->add_bench_rows({row, row}).ok());
  EXPECT_EQ(db->raw().execAndGet("SELECT count(*) FROM bench WHERE seq_len = 4096 AND cuda_version IS NULL").getInt(), 2);
  Json bad = row;
  bad["nonsense"] = 1;
  EXPECT_EQ(db->add_bench_rows({bad}).code(), absl::StatusCode::kInvalidArgument);
  Json bad_pass = row;
  bad_pass["pass"] = "sideways";
  EXPECT_FALSE(db->add_bench_rows({row, bad_pass}).ok());
  EXPECT_EQ(db->raw().execAndGet("SELECT count(*) FROM bench").getInt(), 2);  // the failed batch wrote nothing
}

}  // namespace
}  // namespace hippo

namespace hippo {
namespace {
// A version-1 database (before runs.model_path): read as it is, migrated on the first write open, merged.
TEST(ResultsDb, MigratesVersionOneDatabases) {
  testing::TempDir dir;
  const std::string v1 = dir.file("v1.db");
  {
    auto db = ResultsDb::open(v1, ResultsDb::Mode::kReadWrite);
    ASSERT_TRUE(db.ok());
    ASSERT_TRUE((*db)->enqueue("h1", Json{{"x", 1}}, "s4d", "lm", 0, std::nullopt).ok());
  }
  {
    SQLite::Database raw(v1, SQLite::OPEN_READWRITE);
    raw.exec("ALTER TABLE runs DROP COLUMN model_path");
    raw.exec("PRAGMA user_version = 1");
  }
  {
    auto ro = ResultsDb::open(v1, ResultsDb::Mode::kReadOnly);
    ASSERT_TRUE(ro.ok()) << ro.status();
    auto run = (*ro)->get_run(1);
    ASSERT_TRUE(run.ok()) << run.status();
    EXPECT_EQ(run->model_path, "");
    // Merged into a current database: the shared columns come over.
    auto out = ResultsDb::open(dir.file("out.db"), ResultsDb::Mode::kReadWrite);
    ASSERT_TRUE(out.ok());
    auto n = (*out)->merge_from(**ro);
    ASSERT_TRUE(n.ok()) << n.status();
    EXPECT_EQ(*n, 1);
  }
  auto rw = ResultsDb::open(v1, ResultsDb::Mode::kReadWrite);
  ASSERT_TRUE(rw.ok()) << rw.status();
  EXPECT_EQ((*rw)->raw().execAndGet("PRAGMA user_version").getInt(), kSchemaVersion);
  ASSERT_TRUE((*rw)->set_model_path(1, "/tmp/m.pt").ok());
  EXPECT_EQ((*rw)->get_run(1)->model_path, "/tmp/m.pt");
}
}  // namespace
}  // namespace hippo
