// SQLite access through SQLiteCpp. Every SQLite exception is turned into a Status here; callers never see one.
#include "results/db.h"

#include <algorithm>
#include <set>

#include <SQLiteCpp/SQLiteCpp.h>
#include <absl/strings/str_cat.h>
#include <sqlite3.h>
#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <map>

#include "results/schema.h"

namespace hippo {

std::string utc_now(double offset_seconds) {
  using namespace std::chrono;
  const auto now = system_clock::now() + duration_cast<system_clock::duration>(duration<double>(offset_seconds));
  std::time_t t = system_clock::to_time_t(now);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

namespace {
constexpr int kBusyTimeoutMs = 30000;

absl::Status sql_error(const std::string& what, const std::exception& e) {
  return absl::InternalError(absl::StrCat("database: ", what, ": ", e.what()));
}

bool file_exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

// Reads the 16-byte header: SQLite files start with "SQLite format 3\0". An empty file is a new database.
absl::Status check_header(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::FailedPreconditionError(absl::StrCat("cannot read '", path, "'"));
  char header[16] = {0};
  in.read(header, 16);
  if (in.gcount() == 0) return absl::OkStatus();
  if (in.gcount() < 16 || std::string(header, 15) != "SQLite format 3")
    return absl::InvalidArgumentError(absl::StrCat("'", path, "' is not a hippo results database (not an SQLite file)"));
  return absl::OkStatus();
}

// Checks application_id and schema version of an open database. `empty` is set when it has no tables.
absl::Status check_identity(SQLite::Database& db, const std::string& path, bool* empty) {
  try {
    const int app = db.execAndGet("PRAGMA application_id").getInt();
    const int version = db.execAndGet("PRAGMA user_version").getInt();
    const int tables = db.execAndGet("SELECT count(*) FROM sqlite_master").getInt();
    *empty = (tables == 0 && app == 0 && version == 0);
    if (*empty) return absl::OkStatus();
    if (app != kApplicationId)
      return absl::InvalidArgumentError(
          absl::StrCat("'", path, "' is an SQLite database but not a hippo results database"));
    if (version > kSchemaVersion)
      return absl::FailedPreconditionError(absl::StrCat("'", path, "' has results schema version ", version,
                                                        ", newer than this hippo's ", kSchemaVersion,
                                                        "; use a newer hippo"));
    return absl::OkStatus();
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", path, "' is not a readable hippo results database: ", e.what()));
  }
}

// Migrations: entry v brings a database from version v to v + 1. Version 0 is an empty file.
void migrate(SQLite::Database& db, int from) {
  SQLite::Transaction tx(db);
  if (from == 0) {  // an empty file: the current schema at once
    for (const auto& t : schema_tables()) db.exec(create_table_sql(t));
    db.exec("CREATE INDEX IF NOT EXISTS runs_status ON runs(status)");
    db.exec("CREATE INDEX IF NOT EXISTS sweep_runs_run ON sweep_runs(run_id)");
  } else {
    // 1 -> 2 added runs.model_path, 2 -> 3 the bench table. Each step checks what is there rather than trusting
    // the version number (a development build once numbered the bench table 2).
    bool has_model_path = false;
    {
      SQLite::Statement info(db, "PRAGMA table_info(runs)");
      while (info.executeStep()) has_model_path |= info.getColumn(1).getString() == "model_path";
    }
    if (!has_model_path) db.exec("ALTER TABLE runs ADD COLUMN model_path TEXT");
    for (const auto& t : schema_tables())
      if (std::string(t.name) == "bench") db.exec(create_table_sql(t));  // CREATE TABLE IF NOT EXISTS
  }
  db.exec(absl::StrCat("PRAGMA application_id = ", kApplicationId));
  db.exec(absl::StrCat("PRAGMA user_version = ", kSchemaVersion));
  tx.commit();
}

std::string col_text(SQLite::Statement& q, const char* name) {
  auto c = q.getColumn(name);
  return c.isNull() ? std::string() : c.getString();
}
std::optional<int64_t> col_int(SQLite::Statement& q, const char* name) {
  auto c = q.getColumn(name);
  if (c.isNull()) return std::nullopt;
  return c.getInt64();
}

RunRow read_run(SQLite::Statement& q) {
  RunRow r;
  r.id = q.getColumn("id").getInt64();
  r.config_hash = col_text(q, "config_hash");
  r.config = Json::parse(col_text(q, "config"), nullptr, false);
  r.layer = col_text(q, "layer");
  r.task = col_text(q, "task");
  r.seed = q.getColumn("seed").getInt64();
  r.status = col_text(q, "status");
  r.attempts = q.getColumn("attempts").getInt64();
  r.worker = col_text(q, "worker");
  r.param_count = col_int(q, "param_count");
  r.state_size = col_int(q, "state_size");
  r.steps = col_int(q, "steps");
  r.diverged_step = col_int(q, "diverged_step");
  r.threads = col_int(q, "threads");
  // Absent in a version-1 database opened read-only (which cannot be migrated).
  for (int i = 0; i < q.getColumnCount(); ++i)
    if (std::string(q.getColumnName(i)) == "model_path") r.model_path = col_text(q, "model_path");
  auto w = q.getColumn("wall_seconds");
  if (!w.isNull()) r.wall_seconds = w.getDouble();
  r.error = col_text(q, "error");
  r.created_at = col_text(q, "created_at");
  r.started_at = col_text(q, "started_at");
  r.ended_at = col_text(q, "ended_at");
  r.commit_hash = col_text(q, "commit_hash");
  r.hippo_version = col_text(q, "hippo_version");
  r.torch_version = col_text(q, "torch_version");
  r.cuda_version = col_text(q, "cuda_version");
  r.device = col_text(q, "device");
  r.host = col_text(q, "host");
  return r;
}
}  // namespace

absl::StatusOr<std::unique_ptr<ResultsDb>> ResultsDb::open(const std::string& path, Mode mode) {
  const bool exists = file_exists(path);
  if (!exists && mode == Mode::kReadOnly)
    return absl::NotFoundError(absl::StrCat("no results database at '", path, "'"));
  if (exists) HIPPO_RETURN_IF_ERROR(check_header(path));
  std::unique_ptr<ResultsDb> r(new ResultsDb());
  r->path_ = path;
  try {
    if (exists) {
      // Check identity through a read-only handle first, so a foreign file is never touched.
      SQLite::Database probe(path, SQLite::OPEN_READONLY);
      bool empty = false;
      HIPPO_RETURN_IF_ERROR(check_identity(probe, path, &empty));
      if (empty && mode == Mode::kReadOnly)
        return absl::InvalidArgumentError(absl::StrCat("'", path, "' is an empty file, not a hippo results database"));
    }
    if (mode == Mode::kReadOnly) {
      r->db_ = std::make_unique<SQLite::Database>(path, SQLite::OPEN_READONLY, kBusyTimeoutMs);
      return r;
    }
    r->db_ = std::make_unique<SQLite::Database>(path, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE, kBusyTimeoutMs);
  } catch (const std::exception& e) {
    return absl::FailedPreconditionError(absl::StrCat("cannot open results database '", path, "': ", e.what()));
  }
  try {
    auto& db = *r->db_;
    const int version = db.execAndGet("PRAGMA user_version").getInt();
    db.exec("PRAGMA journal_mode = WAL");
    db.exec("PRAGMA synchronous = NORMAL");
    db.exec("PRAGMA foreign_keys = ON");
    if (version < kSchemaVersion) migrate(db, version);
  } catch (const std::exception& e) {
    return absl::FailedPreconditionError(absl::StrCat("cannot write results database '", path, "': ", e.what()));
  }
  return r;
}

ResultsDb::~ResultsDb() = default;

int64_t ResultsDb::upsert_sweep_in_tx(const std::string& name, const Json& spec) {
  SQLite::Statement ins(*db_,
                        "INSERT INTO sweeps(name, spec, created_at) VALUES (?, ?, ?) "
                        "ON CONFLICT(name) DO UPDATE SET spec = excluded.spec");
  ins.bind(1, name);
  ins.bind(2, spec.dump());
  ins.bind(3, utc_now());
  ins.exec();
  SQLite::Statement q(*db_, "SELECT id FROM sweeps WHERE name = ?");
  q.bind(1, name);
  q.executeStep();
  return q.getColumn(0).getInt64();
}

absl::StatusOr<int64_t> ResultsDb::upsert_sweep(const std::string& name, const Json& spec) {
  try {
    SQLite::Transaction tx(*db_, SQLite::TransactionBehavior::IMMEDIATE);
    const int64_t id = upsert_sweep_in_tx(name, spec);
    tx.commit();
    return id;
  } catch (const std::exception& e) {
    return sql_error("upsert sweep", e);
  }
}

absl::StatusOr<std::optional<int64_t>> ResultsDb::find_sweep(const std::string& name) {
  try {
    SQLite::Statement q(*db_, "SELECT id FROM sweeps WHERE name = ?");
    q.bind(1, name);
    if (!q.executeStep()) return std::optional<int64_t>();
    return std::optional<int64_t>(q.getColumn(0).getInt64());
  } catch (const std::exception& e) {
    return sql_error("find sweep", e);
  }
}

ResultsDb::Enqueued ResultsDb::enqueue_in_tx(const NewRun& r, std::optional<int64_t> sweep_id) {
  SQLite::Statement ins(*db_,
                        "INSERT INTO runs(config_hash, config, layer, task, seed, status, created_at) "
                        "VALUES (?, ?, ?, ?, ?, 'queued', ?) ON CONFLICT(config_hash) DO NOTHING");
  ins.bind(1, r.config_hash);
  ins.bind(2, r.config.dump());
  ins.bind(3, r.layer);
  ins.bind(4, r.task);
  ins.bind(5, static_cast<int64_t>(r.seed));
  ins.bind(6, utc_now());
  const bool created = ins.exec() > 0;
  SQLite::Statement q(*db_, "SELECT id FROM runs WHERE config_hash = ?");
  q.bind(1, r.config_hash);
  q.executeStep();
  const int64_t id = q.getColumn(0).getInt64();
  if (sweep_id) {
    SQLite::Statement link(*db_, "INSERT OR IGNORE INTO sweep_runs(sweep_id, run_id) VALUES (?, ?)");
    link.bind(1, *sweep_id);
    link.bind(2, id);
    link.exec();
  }
  return Enqueued{id, created};
}

absl::StatusOr<ResultsDb::Enqueued> ResultsDb::enqueue(const std::string& config_hash, const Json& config,
                                                       const std::string& layer, const std::string& task,
                                                       int64_t seed, std::optional<int64_t> sweep_id) {
  try {
    SQLite::Transaction tx(*db_, SQLite::TransactionBehavior::IMMEDIATE);
    Enqueued e = enqueue_in_tx({config_hash, config, layer, task, seed}, sweep_id);
    tx.commit();
    return e;
  } catch (const std::exception& e) {
    return sql_error("enqueue run", e);
  }
}

absl::StatusOr<ResultsDb::SweepEnqueued> ResultsDb::enqueue_sweep(const std::string& name, const Json& spec,
                                                                  const std::vector<NewRun>& runs) {
  try {
    SQLite::Transaction tx(*db_, SQLite::TransactionBehavior::IMMEDIATE);
    SweepEnqueued out{upsert_sweep_in_tx(name, spec), 0};
    for (const auto& r : runs) out.created += enqueue_in_tx(r, out.sweep_id).created;
    tx.commit();
    return out;
  } catch (const std::exception& e) {
    return sql_error(absl::StrCat("enqueue sweep '", name, "'"), e);
  }
}

absl::StatusOr<int64_t> ResultsDb::requeue_failed(std::optional<int64_t> sweep_id) {
  try {
    std::string sql = "UPDATE runs SET status = 'queued', error = NULL WHERE status = 'failed'";
    if (sweep_id) sql += " AND id IN (SELECT run_id FROM sweep_runs WHERE sweep_id = ?)";
    SQLite::Statement q(*db_, sql);
    if (sweep_id) q.bind(1, *sweep_id);
    return static_cast<int64_t>(q.exec());
  } catch (const std::exception& e) {
    return sql_error("requeue failed runs", e);
  }
}

absl::Status ResultsDb::requeue(int64_t run_id) {
  try {
    SQLite::Statement q(*db_, "UPDATE runs SET status = 'queued', error = NULL, diverged_step = NULL WHERE id = ?");
    q.bind(1, run_id);
    q.exec();
    return absl::OkStatus();
  } catch (const std::exception& e) {
    return sql_error("requeue run", e);
  }
}

absl::StatusOr<std::optional<RunRow>> ResultsDb::claim_next(std::optional<int64_t> sweep_id,
                                                            const std::string& worker, double lease_seconds,
                                                            std::optional<int64_t> run_id) {
  try {
    SQLite::Transaction tx(*db_, SQLite::TransactionBehavior::IMMEDIATE);
    std::string sql =
        "SELECT * FROM runs WHERE (status = 'queued' OR (status = 'running' AND lease_until < ?))";
    if (sweep_id) sql += " AND id IN (SELECT run_id FROM sweep_runs WHERE sweep_id = ?)";
    if (run_id) sql += " AND id = ?";
    sql += " ORDER BY id LIMIT 1";
    SQLite::Statement q(*db_, sql);
    int i = 1;
    q.bind(i++, utc_now());
    if (sweep_id) q.bind(i++, *sweep_id);
    if (run_id) q.bind(i++, *run_id);
    if (!q.executeStep()) return std::optional<RunRow>();
    RunRow row = read_run(q);
    SQLite::Statement up(*db_,
                         "UPDATE runs SET status = 'running', attempts = attempts + 1, worker = ?, "
                         "lease_until = ?, started_at = ?, error = NULL WHERE id = ?");
    up.bind(1, worker);
    up.bind(2, utc_now(lease_seconds));
    up.bind(3, utc_now());
    up.bind(4, row.id);
    up.exec();
    tx.commit();
    row.status = "running";
    row.attempts += 1;
    row.worker = worker;
    return std::optional<RunRow>(std::move(row));
  } catch (const std::exception& e) {
    return sql_error("claim run", e);
  }
}

absl::StatusOr<std::vector<RunRow>> ResultsDb::claim_group(
    std::optional<int64_t> sweep_id, const std::string& worker, double lease_seconds, int64_t max_runs,
    const std::function<bool(const RunRow& lead, const RunRow& other)>& same_group) {
  if (max_runs < 1) return absl::InvalidArgumentError(absl::StrCat("claim_group: max_runs must be >= 1, got ", max_runs));
  try {
    SQLite::Transaction tx(*db_, SQLite::TransactionBehavior::IMMEDIATE);
    std::string sql =
        "SELECT * FROM runs WHERE (status = 'queued' OR (status = 'running' AND lease_until < ?))";
    if (sweep_id) sql += " AND id IN (SELECT run_id FROM sweep_runs WHERE sweep_id = ?)";
    sql += " ORDER BY id";
    SQLite::Statement q(*db_, sql);
    q.bind(1, utc_now());
    if (sweep_id) q.bind(2, *sweep_id);
    std::vector<RunRow> group;
    while (q.executeStep() && static_cast<int64_t>(group.size()) < max_runs) {
      RunRow row = read_run(q);
      if (group.empty() || same_group(group.front(), row)) group.push_back(std::move(row));
    }
    q.reset();
    const std::string now = utc_now(), until = utc_now(lease_seconds);
    for (auto& row : group) {
      SQLite::Statement up(*db_,
                           "UPDATE runs SET status = 'running', attempts = attempts + 1, worker = ?, "
                           "lease_until = ?, started_at = ?, error = NULL WHERE id = ?");
      up.bind(1, worker);
      up.bind(2, until);
      up.bind(3, now);
      up.bind(4, row.id);
      up.exec();
      row.status = "running";
      row.attempts += 1;
      row.worker = worker;
    }
    tx.commit();
    return group;
  } catch (const std::exception& e) {
    return sql_error("claim runs", e);
  }
}

absl::Status ResultsDb::renew_lease(int64_t run_id, const std::string& worker, double lease_seconds) {
  try {
    SQLite::Statement q(*db_, "UPDATE runs SET lease_until = ? WHERE id = ? AND worker = ? AND status = 'running'");
    q.bind(1, utc_now(lease_seconds));
    q.bind(2, run_id);
    q.bind(3, worker);
    q.exec();
    return absl::OkStatus();
  } catch (const std::exception& e) {
    return sql_error("renew lease", e);
  }
}

absl::Status ResultsDb::record_start(int64_t run_id, const Json& env, int64_t param_count, int64_t state_size) {
  try {
    SQLite::Statement q(*db_,
                        "UPDATE runs SET param_count = ?, state_size = ?, commit_hash = ?, hippo_version = ?, "
                        "torch_version = ?, cuda_version = ?, device = ?, host = ?, threads = ?, environment = ? "
                        "WHERE id = ?");
    auto text = [&](const char* k) { return env.contains(k) && env[k].is_string() ? env[k].get<std::string>() : ""; };
    q.bind(1, param_count);
    q.bind(2, state_size);
    q.bind(3, text("commit"));
    q.bind(4, text("hippo_version"));
    q.bind(5, text("torch_version"));
    if (text("cuda_version").empty()) q.bind(6); else q.bind(6, text("cuda_version"));
    q.bind(7, text("device"));
    q.bind(8, text("host"));
    q.bind(9, env.value("threads", 0));
    q.bind(10, env.dump());
    q.bind(11, run_id);
    q.exec();
    return absl::OkStatus();
  } catch (const std::exception& e) {
    return sql_error("record run start", e);
  }
}

absl::Status ResultsDb::add_metrics(int64_t run_id, const std::vector<MetricRow>& rows) {
  try {
    SQLite::Transaction tx(*db_, SQLite::TransactionBehavior::IMMEDIATE);
    SQLite::Statement q(*db_, "INSERT OR REPLACE INTO metrics(run_id, step, split, name, value) VALUES (?, ?, ?, ?, ?)");
    for (const auto& m : rows) {
      q.bind(1, run_id);
      q.bind(2, m.step);
      q.bind(3, m.split);
      q.bind(4, m.name);
      q.bind(5, m.value);
      q.exec();
      q.reset();
    }
    tx.commit();
    return absl::OkStatus();
  } catch (const std::exception& e) {
    return sql_error("add metrics", e);
  }
}

absl::Status ResultsDb::add_bench_rows(const std::vector<Json>& rows) {
  const TableDef* bench = nullptr;
  for (const auto& t : schema_tables())
    if (std::string(t.name) == "bench") bench = &t;
  // The insert is made from the schema's column list (every column but id), so the two cannot drift.
  std::vector<std::string> cols;
  for (const auto& c : bench->columns)
    if (std::string(c.name) != "id") cols.push_back(c.name);
  for (const auto& r : rows) {
    if (!r.is_object()) return absl::InvalidArgumentError("bench row must be a JSON object");
    for (const auto& [key, value] : r.items())
      if (std::find(cols.begin(), cols.end(), key) == cols.end())
        return absl::InvalidArgumentError(absl::StrCat("bench row has unknown column '", key, "'"));
  }
  try {
    SQLite::Transaction tx(*db_, SQLite::TransactionBehavior::IMMEDIATE);
    std::string sql = "INSERT INTO bench(", marks;
    for (size_t i = 0; i < cols.size(); ++i) {
      absl::StrAppend(&sql, i ? ", " : "", cols[i]);
      absl::StrAppend(&marks, i ? ", ?" : "?");
    }
    SQLite::Statement q(*db_, absl::StrCat(sql, ") VALUES (", marks, ")"));
    for (const auto& r : rows) {
      for (size_t i = 0; i < cols.size(); ++i) {
        const int at = static_cast<int>(i + 1);
        const auto it = r.find(cols[i]);
        if (it == r.end() || it->is_null()) q.bind(at);
        else if (it->is_string()) q.bind(at, it->get<std::string>());
        else if (it->is_number_integer()) q.bind(at, it->get<int64_t>());
        else if (it->is_number()) q.bind(at, it->get<double>());
        else q.bind(at, it->dump());
      }
      q.exec();
      q.reset();
    }
    tx.commit();
    return absl::OkStatus();
  } catch (const std::exception& e) {
    return sql_error("add bench rows", e);
  }
}

absl::Status ResultsDb::finish_run(int64_t run_id, const std::string& status, int64_t steps, double wall_seconds,
                                   const std::string& error, std::optional<int64_t> diverged_step) {
  try {
    SQLite::Statement q(*db_,
                        "UPDATE runs SET status = ?, steps = ?, wall_seconds = ?, error = ?, diverged_step = ?, "
                        "ended_at = ?, lease_until = NULL WHERE id = ?");
    q.bind(1, status);
    q.bind(2, steps);
    q.bind(3, wall_seconds);
    if (error.empty()) q.bind(4); else q.bind(4, error);
    if (diverged_step) q.bind(5, *diverged_step); else q.bind(5);
    q.bind(6, utc_now());
    q.bind(7, run_id);
    q.exec();
    return absl::OkStatus();
  } catch (const std::exception& e) {
    return sql_error("finish run", e);
  }
}

absl::Status ResultsDb::set_model_path(int64_t run_id, const std::string& path) {
  try {
    SQLite::Statement q(*db_, "UPDATE runs SET model_path = ? WHERE id = ?");
    q.bind(1, path);
    q.bind(2, run_id);
    q.exec();
    return absl::OkStatus();
  } catch (const std::exception& e) {
    return sql_error("record the model path", e);
  }
}

absl::StatusOr<std::vector<RunRow>> ResultsDb::list_runs(const RunFilter& f) {
  try {
    std::string sql = "SELECT * FROM runs WHERE 1";
    if (f.sweep) sql += " AND id IN (SELECT run_id FROM sweep_runs JOIN sweeps ON sweeps.id = sweep_id WHERE name = ?)";
    if (f.status) sql += " AND status = ?";
    sql += " ORDER BY id";
    SQLite::Statement q(*db_, sql);
    int i = 1;
    if (f.sweep) q.bind(i++, *f.sweep);
    if (f.status) q.bind(i++, *f.status);
    std::vector<RunRow> out;
    while (q.executeStep()) out.push_back(read_run(q));
    return out;
  } catch (const std::exception& e) {
    return sql_error("list runs", e);
  }
}

absl::StatusOr<RunRow> ResultsDb::get_run(int64_t run_id) {
  try {
    SQLite::Statement q(*db_, "SELECT * FROM runs WHERE id = ?");
    q.bind(1, run_id);
    if (!q.executeStep()) return absl::NotFoundError(absl::StrCat("no run with id ", run_id, " in '", path_, "'"));
    return read_run(q);
  } catch (const std::exception& e) {
    return sql_error("get run", e);
  }
}

absl::StatusOr<std::vector<MetricRow>> ResultsDb::metrics(int64_t run_id) {
  try {
    SQLite::Statement q(*db_, "SELECT step, split, name, value FROM metrics WHERE run_id = ? ORDER BY step, split, name");
    q.bind(1, run_id);
    std::vector<MetricRow> out;
    while (q.executeStep())
      out.push_back({q.getColumn(0).getInt64(), q.getColumn(1).getString(), q.getColumn(2).getString(),
                     q.getColumn(3).getDouble()});
    return out;
  } catch (const std::exception& e) {
    return sql_error("read metrics", e);
  }
}

absl::StatusOr<ResultsDb::QueryResult> ResultsDb::query(const std::string& sql) {
  sqlite3* h = db_->getHandle();
  sqlite3_stmt* st = nullptr;
  const char* tail = nullptr;
  if (sqlite3_prepare_v2(h, sql.c_str(), static_cast<int>(sql.size()), &st, &tail) != SQLITE_OK)
    return absl::InvalidArgumentError(absl::StrCat("query failed: ", sqlite3_errmsg(h)));
  std::unique_ptr<sqlite3_stmt, int (*)(sqlite3_stmt*)> guard(st, sqlite3_finalize);
  if (st == nullptr) return absl::InvalidArgumentError("query failed: empty SQL");
  for (const char* p = tail; p && *p; ++p)
    if (!std::isspace(static_cast<unsigned char>(*p)) && *p != ';')
      return absl::InvalidArgumentError("query failed: one SQL statement at a time");
  // Only statements that change nothing (VACUUM INTO and PRAGMA writes included) are run.
  if (!sqlite3_stmt_readonly(st))
    return absl::InvalidArgumentError("query failed: hippo results query runs read-only statements only");
  QueryResult r;
  const int n = sqlite3_column_count(st);
  for (int i = 0; i < n; ++i) r.columns.push_back(sqlite3_column_name(st, i));
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    std::vector<std::string> row;
    for (int i = 0; i < n; ++i) {
      const unsigned char* v = sqlite3_column_text(st, i);
      row.push_back(v ? reinterpret_cast<const char*>(v) : "NULL");
    }
    r.rows.push_back(std::move(row));
  }
  if (rc != SQLITE_DONE) return absl::InvalidArgumentError(absl::StrCat("query failed: ", sqlite3_errmsg(h)));
  return r;
}

namespace {
int status_rank(const std::string& s) {
  if (s == "finished") return 4;
  if (s == "diverged") return 3;
  if (s == "failed") return 2;
  if (s == "running") return 1;
  return 0;
}

void bind_column(SQLite::Statement& st, int index, const SQLite::Column& c) {
  if (c.isNull()) st.bind(index);
  else if (c.isInteger()) st.bind(index, c.getInt64());
  else if (c.isFloat()) st.bind(index, c.getDouble());
  else st.bind(index, c.getString());
}
}  // namespace

absl::StatusOr<int64_t> ResultsDb::merge_from(ResultsDb& other) {
  std::vector<std::string> cols;  // every runs column but id, from the one schema declaration
  for (const auto& t : schema_tables())
    if (std::string(t.name) == "runs")
      for (const auto& c : t.columns)
        if (std::string(c.name) != "id") cols.push_back(c.name);
  // A database of an older schema lacks the newer columns: copy only the columns both have.
  try {
    std::set<std::string> theirs;
    SQLite::Statement info(*other.db_, "PRAGMA table_info(runs)");
    while (info.executeStep()) theirs.insert(info.getColumn(1).getString());
    cols.erase(std::remove_if(cols.begin(), cols.end(), [&](const std::string& c) { return !theirs.count(c); }),
               cols.end());
  } catch (const std::exception& e) {
    return sql_error("merge (read the other database's columns)", e);
  }
  std::string names, marks, sets;
  for (size_t i = 0; i < cols.size(); ++i) {
    names += (i ? ", " : "") + cols[i];
    marks += i ? ", ?" : "?";
    sets += (i ? ", " : "") + cols[i] + " = ?";
  }
  int64_t changed = 0;
  try {
    SQLite::Transaction tx(*db_, SQLite::TransactionBehavior::IMMEDIATE);
    // Sweeps, by name.
    std::map<int64_t, int64_t> sweep_map;
    SQLite::Statement sw(*other.db_, "SELECT id, name, spec, created_at FROM sweeps");
    while (sw.executeStep()) {
      SQLite::Statement ins(*db_, "INSERT INTO sweeps(name, spec, created_at) VALUES (?, ?, ?) ON CONFLICT(name) DO NOTHING");
      ins.bind(1, sw.getColumn(1).getString());
      ins.bind(2, sw.getColumn(2).getString());
      ins.bind(3, sw.getColumn(3).getString());
      ins.exec();
      SQLite::Statement id(*db_, "SELECT id FROM sweeps WHERE name = ?");
      id.bind(1, sw.getColumn(1).getString());
      id.executeStep();
      sweep_map[sw.getColumn(0).getInt64()] = id.getColumn(0).getInt64();
    }
    // Runs, by config hash, the copy further along winning.
    std::map<int64_t, int64_t> run_map;
    SQLite::Statement rs(*other.db_, "SELECT id, " + names + " FROM runs ORDER BY id");
    while (rs.executeStep()) {
      const int64_t other_id = rs.getColumn(0).getInt64();
      const std::string hash = rs.getColumn("config_hash").getString();
      const std::string status = rs.getColumn("status").getString();
      SQLite::Statement find(*db_, "SELECT id, status FROM runs WHERE config_hash = ?");
      find.bind(1, hash);
      int64_t id = 0;
      bool copy = false;
      if (find.executeStep()) {
        id = find.getColumn(0).getInt64();
        if (status_rank(status) > status_rank(find.getColumn(1).getString())) {
          SQLite::Statement up(*db_, "UPDATE runs SET " + sets + " WHERE id = ?");
          for (size_t i = 0; i < cols.size(); ++i) bind_column(up, static_cast<int>(i + 1), rs.getColumn(static_cast<int>(i + 1)));
          up.bind(static_cast<int>(cols.size() + 1), id);
          up.exec();
          SQLite::Statement del(*db_, "DELETE FROM metrics WHERE run_id = ?");
          del.bind(1, id);
          del.exec();
          copy = true;
        }
      } else {
        SQLite::Statement ins(*db_, "INSERT INTO runs(" + names + ") VALUES (" + marks + ")");
        for (size_t i = 0; i < cols.size(); ++i) bind_column(ins, static_cast<int>(i + 1), rs.getColumn(static_cast<int>(i + 1)));
        ins.exec();
        id = db_->getLastInsertRowid();
        copy = true;
      }
      run_map[other_id] = id;
      if (copy) {
        ++changed;
        SQLite::Statement ms(*other.db_, "SELECT step, split, name, value FROM metrics WHERE run_id = ?");
        ms.bind(1, other_id);
        SQLite::Statement put(*db_, "INSERT OR REPLACE INTO metrics(run_id, step, split, name, value) VALUES (?, ?, ?, ?, ?)");
        while (ms.executeStep()) {
          put.bind(1, id);
          put.bind(2, ms.getColumn(0).getInt64());
          put.bind(3, ms.getColumn(1).getString());
          put.bind(4, ms.getColumn(2).getString());
          put.bind(5, ms.getColumn(3).getDouble());
          put.exec();
          put.reset();
        }
      }
    }
    // Sweep membership.
    SQLite::Statement links(*other.db_, "SELECT sweep_id, run_id FROM sweep_runs");
    while (links.executeStep()) {
      SQLite::Statement link(*db_, "INSERT OR IGNORE INTO sweep_runs(sweep_id, run_id) VALUES (?, ?)");
      link.bind(1, sweep_map.at(links.getColumn(0).getInt64()));
      link.bind(2, run_map.at(links.getColumn(1).getInt64()));
      link.exec();
    }
    tx.commit();
  } catch (const std::exception& e) {
    return sql_error(absl::StrCat("merge '", other.path(), "'"), e);
  }
  return changed;
}

}  // namespace hippo
