// Pivot tables with Student-t intervals, and exports.
#include "results/table.h"

#include <absl/strings/match.h>
#include <tuple>

#include <SQLiteCpp/SQLiteCpp.h>
#include <absl/strings/str_cat.h>
#include <absl/strings/str_format.h>
#include <absl/strings/str_join.h>

#include <cmath>
#include <map>
#include <set>
#include <sstream>

namespace hippo {

bool higher_is_better(const std::string& metric) {
  return !(metric.find("loss") != std::string::npos || metric == "perplexity" || metric == "bits_per_byte");
}

namespace {
// Two-sided 95% critical values of Student's t for 1..30 degrees of freedom; 1.96 beyond.
double t_critical(int64_t dof) {
  static const double t[] = {12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
                             2.201,  2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
                             2.080,  2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042};
  if (dof < 1) return 0;
  return dof <= 30 ? t[dof - 1] : 1.96;
}

std::string csv_escape(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) out += (c == '"') ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}
}  // namespace

Summary summarize(const std::vector<double>& v) {
  Summary s;
  s.n = static_cast<int64_t>(v.size());
  if (v.empty()) return s;
  for (double x : v) s.mean += x;
  s.mean /= static_cast<double>(s.n);
  if (s.n >= 2) {
    double ss = 0;
    for (double x : v) ss += (x - s.mean) * (x - s.mean);
    const double sd = std::sqrt(ss / static_cast<double>(s.n - 1));
    s.half_width = t_critical(s.n - 1) * sd / std::sqrt(static_cast<double>(s.n));
  }
  return s;
}

std::string run_key(const RunRow& run, const std::string& key) {
  if (key == "layer") return run.layer;
  if (key == "task") return run.task;
  if (key == "seed") return std::to_string(run.seed);
  auto text = [](const Json& v) { return v.is_string() ? v.get<std::string>() : v.dump(); };
  auto lookup = [&](const Json& root) -> const Json* {
    const Json* cur = &root;
    size_t begin = 0;
    while (true) {
      const size_t dot = key.find('.', begin);
      const std::string part = key.substr(begin, dot == std::string::npos ? std::string::npos : dot - begin);
      if (!cur->is_object() || !cur->contains(part)) return nullptr;
      cur = &(*cur)[part];
      if (dot == std::string::npos) return cur;
      begin = dot + 1;
    }
  };
  for (const char* scope : {"", "train", "task_options", "layer_options"}) {
    const Json& root = *scope ? (run.config.contains(scope) ? run.config[scope] : Json()) : run.config;
    if (const Json* v = lookup(root)) return text(*v);
  }
  if (absl::StartsWith(key, run.task + ".") && run.config.contains("task_options")) {
    const std::string rest = key.substr(run.task.size() + 1);
    const Json& to = run.config["task_options"];
    if (to.is_object() && to.contains(rest)) return text(to[rest]);
  }
  if (run.config.contains("layer_options"))
    for (const auto& [name, opts] : run.config["layer_options"].items())
      if (const Json* v = lookup(opts)) return text(*v);
  return "-";
}

absl::StatusOr<std::string> results_table(ResultsDb& db, const TableOptions& o) {
  if (o.format != "text" && o.format != "md")
    return absl::InvalidArgumentError(absl::StrCat("unknown table format '", o.format, "'; accepted: text, md"));
  // (row, col) -> best-over value -> final metric of each run.
  std::map<std::string, std::map<std::string, std::map<std::string, std::vector<double>>>> cells;
  // The configs (less the seed) pooled in each group: more than one means the "interval over seeds" mixes
  // runs that differ in more than their seed.
  std::map<std::string, std::set<std::string>> configs;
  std::map<std::string, std::vector<double>> chance;
  std::set<std::string> cols, best_values;
  try {
    std::string sweep_filter;
    if (o.sweep)
      sweep_filter = " AND r.id IN (SELECT run_id FROM sweep_runs JOIN sweeps s ON s.id = sweep_id WHERE s.name = ?)";
    SQLite::Statement q(db.raw(),
                        "SELECT r.id, m.value FROM runs r JOIN metrics m ON m.run_id = r.id "
                        "WHERE r.status = 'finished' AND m.split = ? AND m.name = ? AND m.step = "
                        "(SELECT max(step) FROM metrics WHERE run_id = r.id AND split = m.split AND name = m.name)" +
                            sweep_filter + " ORDER BY r.id");
    q.bind(1, o.split);
    q.bind(2, o.metric);
    if (o.sweep) q.bind(3, *o.sweep);
    std::vector<std::pair<int64_t, double>> finals;
    while (q.executeStep()) finals.emplace_back(q.getColumn(0).getInt64(), q.getColumn(1).getDouble());
    for (const auto& [id, value] : finals) {
      HIPPO_ASSIGN_OR_RETURN(RunRow run, db.get_run(id));
      if (o.complete_config) run.config = o.complete_config(run.config);
      const std::string c = run_key(run, o.cols), r = run_key(run, o.rows);
      const std::string b = o.best_over ? run_key(run, *o.best_over) : "";
      cells[r][c][b].push_back(value);
      Json sig = run.config;
      sig.erase("seed");
      configs[r + "\x1f" + c + "\x1f" + b].insert(sig.dump());
      cols.insert(c);
      best_values.insert(b);
    }
    SQLite::Statement ch(db.raw(),
                         "SELECT r.task, m.value FROM runs r JOIN metrics m ON m.run_id = r.id "
                         "WHERE m.name = 'chance' AND m.split = 'test'" + sweep_filter);
    if (o.sweep) ch.bind(1, *o.sweep);
    while (ch.executeStep()) chance[ch.getColumn(0).getString()].push_back(ch.getColumn(1).getDouble());
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("database: table: ", e.what()));
  }
  if (cells.empty())
    return absl::NotFoundError(absl::StrCat("no finished run has metric '", o.metric, "' on split '", o.split, "'",
                                            o.sweep ? absl::StrCat(" in sweep '", *o.sweep, "'") : ""));
  // A key that no run has is a typo, not a column of "-".
  for (const auto& [flag, key, found] :
       {std::make_tuple("--rows", o.rows, cells.size() > 1 || !cells.count("-")),
        std::make_tuple("--cols", o.cols, cols.size() > 1 || !cols.count("-")),
        std::make_tuple("--best-over", o.best_over.value_or(""),
                        !o.best_over || best_values.size() > 1 || !best_values.count("-"))})
    if (!found)
      return absl::InvalidArgumentError(absl::StrCat(
          flag, " ", key, ": no run has this key in its config; accepted: layer, task, seed or a config key such as "
          "lr, d_model, mlp_ratio, attention.n_heads, mqar.seq_len (see hippo results show RUN)"));
  const double scale = o.percent ? 100.0 : 1.0;
  const int prec = o.percent ? 1 : 4;
  bool pooled_any = false;
  auto fmt_cell = [&](const std::string& row, const std::string& col,
                      const std::map<std::string, std::vector<double>>& by_best) {
    // The best-over value with the best mean (the only one without --best-over): the highest, or the lowest
    // for losses.
    const std::pair<const std::string, std::vector<double>>* best = nullptr;
    const bool higher = higher_is_better(o.metric);
    for (const auto& kv : by_best) {
      const double m = summarize(kv.second).mean;
      if (!best || (higher ? m > summarize(best->second).mean : m < summarize(best->second).mean)) best = &kv;
    }
    Summary s = summarize(best->second);
    // With one run there is no interval: say so rather than print a spread of 0.
    std::string cell = s.n < 2 ? absl::StrFormat("%.*f (n=1)", prec, s.mean * scale)
                               : absl::StrFormat("%.*f ± %.*f (n=%d)", prec, s.mean * scale, prec, s.half_width * scale, s.n);
    if (o.best_over) absl::StrAppend(&cell, " @ ", *o.best_over, "=", best->first);
    if (configs[row + "\x1f" + col + "\x1f" + best->first].size() > 1) {
      cell += " *";
      pooled_any = true;
    }
    return cell;
  };
  std::vector<std::string> header = {o.rows};
  for (const auto& c : cols) header.push_back(c);
  std::vector<std::vector<std::string>> rows;
  if (!chance.empty() && o.cols == "task" && o.metric.find("accuracy") != std::string::npos) {
    std::vector<std::string> r = {"random"};
    for (const auto& t : cols)
      r.push_back(chance.count(t) ? absl::StrFormat("%.*f", prec, summarize(chance[t]).mean * scale) : "-");
    rows.push_back(r);
  }
  for (const auto& [row, by_col] : cells) {
    std::vector<std::string> r = {row};
    for (const auto& c : cols) r.push_back(by_col.count(c) ? fmt_cell(row, c, by_col.at(c)) : "-");
    rows.push_back(r);
  }
  std::string what =
      absl::StrCat(o.split, " ", o.metric, o.percent ? " (%)" : "",
                   // Pivoting on the seed leaves one seed per cell: the interval is over what else the cell pools.
                   o.rows == "seed" || o.cols == "seed" ? ", one seed per cell: mean ± 95% interval (n runs)"
                                                        : ", mean ± 95% interval over seeds (n runs)",
                   o.best_over ? absl::StrCat(", best ", *o.best_over, " per cell by mean",
                                              higher_is_better(o.metric) ? "" : " (lowest)")
                               : "");
  if (pooled_any)
    what += "\n* pools runs whose configs differ in more than the seed: narrow with --sweep, or pivot on the key";
  return render_grid(header, rows, what, o.format);
}

absl::StatusOr<std::string> render_grid(const std::vector<std::string>& header,
                                        const std::vector<std::vector<std::string>>& rows, const std::string& caption,
                                        const std::string& format) {
  if (format != "text" && format != "md")
    return absl::InvalidArgumentError(absl::StrCat("unknown table format '", format, "'; accepted: text, md"));
  std::ostringstream os;
  if (format == "md") {
    os << "| " << absl::StrJoin(header, " | ") << " |\n|";
    for (size_t i = 0; i < header.size(); ++i) os << "---|";
    os << "\n";
    for (const auto& r : rows) os << "| " << absl::StrJoin(r, " | ") << " |\n";
    if (!caption.empty()) os << "\n" << caption << "\n";
  } else {
    std::vector<size_t> w(header.size());
    auto width = [](const std::string& s) {  // display width: count UTF-8 code points
      size_t n = 0;
      for (unsigned char c : s) n += (c & 0xC0) != 0x80;
      return n;
    };
    for (size_t i = 0; i < header.size(); ++i) {
      w[i] = width(header[i]);
      for (const auto& r : rows) w[i] = std::max(w[i], width(r[i]));
    }
    auto line = [&](const std::vector<std::string>& r) {
      for (size_t i = 0; i < r.size(); ++i) os << r[i] << std::string(w[i] - width(r[i]) + 2, ' ');
      os << "\n";
    };
    if (!caption.empty()) os << caption << "\n";
    line(header);
    for (const auto& r : rows) line(r);
  }
  return os.str();
}

absl::StatusOr<std::string> export_runs(ResultsDb& db, const RunFilter& filter, const std::string& format) {
  if (format != "csv" && format != "json")
    return absl::InvalidArgumentError(absl::StrCat("unknown export format '", format, "'; accepted: csv, json"));
  HIPPO_ASSIGN_OR_RETURN(auto runs, db.list_runs(filter));
  std::ostringstream os;
  auto opt = [](const std::optional<int64_t>& v) { return v ? std::to_string(*v) : std::string(); };
  if (format == "csv") {
    os << "id,config_hash,layer,task,seed,status,param_count,state_size,steps,wall_seconds,device,commit_hash,"
          "torch_version,split,metric,step,value,config\n";
    for (const auto& r : runs) {
      HIPPO_ASSIGN_OR_RETURN(auto ms, db.metrics(r.id));
      // Final value of each (split, name): the metric rows are ordered by step, so the last one wins.
      std::map<std::pair<std::string, std::string>, MetricRow> last;
      for (const auto& m : ms) last[{m.split, m.name}] = m;
      const std::string prefix = absl::StrCat(
          r.id, ",", r.config_hash, ",", csv_escape(r.layer), ",", r.task, ",", r.seed, ",", r.status, ",",
          opt(r.param_count), ",", opt(r.state_size), ",", opt(r.steps), ",",
          r.wall_seconds ? absl::StrFormat("%.3f", *r.wall_seconds) : "", ",", r.device, ",", r.commit_hash, ",",
          r.torch_version, ",");
      if (last.empty()) os << prefix << ",,,," << csv_escape(r.config.dump()) << "\n";
      for (const auto& [key, m] : last)
        os << prefix << m.split << "," << m.name << "," << m.step << "," << absl::StrFormat("%.8g", m.value) << ","
           << csv_escape(r.config.dump()) << "\n";
    }
  } else {
    Json arr = Json::array();
    for (const auto& r : runs) {
      HIPPO_ASSIGN_OR_RETURN(auto ms, db.metrics(r.id));
      Json j = {{"id", r.id},         {"config_hash", r.config_hash}, {"layer", r.layer},   {"task", r.task},
                {"seed", r.seed},     {"status", r.status},           {"config", r.config}, {"device", r.device},
                {"commit_hash", r.commit_hash}, {"torch_version", r.torch_version}};
      j["param_count"] = r.param_count ? Json(*r.param_count) : Json();
      j["state_size"] = r.state_size ? Json(*r.state_size) : Json();
      j["steps"] = r.steps ? Json(*r.steps) : Json();
      j["wall_seconds"] = r.wall_seconds ? Json(*r.wall_seconds) : Json();
      j["error"] = r.error.empty() ? Json() : Json(r.error);
      Json mj = Json::array();
      for (const auto& m : ms) mj.push_back({{"step", m.step}, {"split", m.split}, {"name", m.name}, {"value", m.value}});
      j["metrics"] = mj;
      arr.push_back(j);
    }
    os << arr.dump(2) << "\n";
  }
  return os.str();
}

}  // namespace hippo
