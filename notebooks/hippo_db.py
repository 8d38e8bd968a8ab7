"""Read-only access to a hippo results database for the notebooks, as pandas DataFrames.

The database is the one named by the environment variable HIPPO_DB, else notebooks/example.db (built by
scripts/example-db.sh). Schema and conventions: docs/RESULTS.md (a run's final value of a metric is its row with
the largest step; accuracies are fractions in [0, 1]).
"""
import json
import math
import os
import sqlite3
import urllib.parse
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
DEFAULT_DB = HERE / "example.db"
APPLICATION_ID = 0x4849504F  # 'HIPO', PRAGMA application_id of every hippo database

# Layers in the order of the paper's Table 2 first, then the other registered mixers; any layer not listed (a
# hybrid such as "attention+h3", a layer added later) follows in alphabetical order.
LAYER_ORDER = ["attention", "h3", "s4d", "gss", "diag_ssm", "shift_ssm"]
TASK_ORDER = ["induction_head", "associative_recall", "mqar"]

# Two-sided 95% critical values of Student's t for 1..30 degrees of freedom, 1.96 beyond: the same table as
# `hippo results table` (results/table.cc), so that the notebooks and the command line print the same intervals.
_T95 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
        2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
        2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042]


class HippoDbError(RuntimeError):
    """The database is missing, unreadable, or not a hippo results database."""


def db_path():
    """The database the notebooks read: $HIPPO_DB (relative to the current directory, which is the notebook's
    folder under Jupyter), else notebooks/example.db (next to this file)."""
    env = os.environ.get("HIPPO_DB")
    return Path(env).expanduser().resolve() if env else DEFAULT_DB


def open_db(path=None):
    """Opens a hippo results database read-only (sqlite3 URI mode=ro); raises HippoDbError with the reason."""
    path = Path(path).expanduser().resolve() if path is not None else db_path()
    if not path.is_file():
        hint = ("set HIPPO_DB to a hippo results database" if os.environ.get("HIPPO_DB") or path != DEFAULT_DB
                else "build it with scripts/example-db.sh, or set HIPPO_DB to a hippo results database")
        raise HippoDbError(f"no database file at {path}: {hint}")
    uri = "file:" + urllib.parse.quote(str(path)) + "?mode=ro"
    try:
        con = sqlite3.connect(uri, uri=True)
        app_id = con.execute("PRAGMA application_id").fetchone()[0]
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.Error as e:
        raise HippoDbError(f"cannot read {path} as an SQLite database: {e}") from e
    missing = {"sweeps", "runs", "sweep_runs", "metrics"} - tables
    if app_id != APPLICATION_ID or missing:
        con.close()
        raise HippoDbError(f"{path} is not a hippo results database (application_id {app_id:#x}, "
                           f"missing tables: {sorted(missing) or 'none'})")
    return con


def figures_dir():
    """notebooks/figures/ (or $HIPPO_FIGURES), created if missing."""
    d = Path(os.environ.get("HIPPO_FIGURES") or HERE / "figures").expanduser()
    d.mkdir(parents=True, exist_ok=True)
    return d


def _config_fields(config_json):
    c = json.loads(config_json)
    train, task_options = c.get("train", {}), c.get("task_options", {})
    # The run's "point": its whole config but the seed, so that the seeds of one point group together.
    point = {k: v for k, v in c.items() if k != "seed"}
    return {
        "d_model": train.get("d_model"),
        "lr": train.get("lr"),
        "n_layer": train.get("n_layer"),
        "epochs": train.get("epochs"),
        "seq_len": task_options.get("seq_len"),
        "vocab_size": task_options.get("vocab_size"),
        "task_options": json.dumps(task_options, sort_keys=True),
        "point": json.dumps(point, sort_keys=True, separators=(",", ":")),
    }


def _sweep_filter(con, sweep):
    if sweep is None:
        return "", []
    if con.execute("SELECT 1 FROM sweeps WHERE name = ?", [sweep]).fetchone() is None:
        names = [r[0] for r in con.execute("SELECT name FROM sweeps ORDER BY name")]
        raise HippoDbError(f"no sweep named {sweep!r} in the database; its sweeps: {', '.join(names) or 'none'}")
    return (" AND r.id IN (SELECT sr.run_id FROM sweep_runs sr JOIN sweeps s ON s.id = sr.sweep_id"
            " WHERE s.name = ?)", [sweep])


def runs(con, sweep=None, status="finished"):
    """One row per run: the runs columns that matter for analysis plus config fields parsed from runs.config
    (d_model, lr, n_layer, epochs; seq_len, vocab_size and task_options from the task options; `point`: the
    config without the seed). sweep: only the runs of that sweep name (HippoDbError if there is none);
    status: a status, or None for every run."""
    where, params = _sweep_filter(con, sweep)
    if status is not None:
        where += " AND r.status = ?"
        params.append(status)
    df = pd.read_sql_query(
        "SELECT r.id AS run_id, r.layer, r.task, r.seed, r.status, r.param_count, r.state_size, r.steps,"
        " r.wall_seconds, r.commit_hash, r.device, r.config FROM runs r WHERE 1 = 1" + where + " ORDER BY r.id",
        con, params=params)
    fields = pd.DataFrame([_config_fields(c) for c in df["config"]], index=df.index,
                          columns=list(_config_fields("{}").keys()))
    for column in ("d_model", "n_layer", "epochs", "seq_len", "vocab_size"):  # integers, missing as <NA>
        fields[column] = pd.to_numeric(fields[column]).astype("Int64")
    return pd.concat([df, fields], axis=1)


def final_metric(con, name="accuracy", split="test", sweep=None, status="finished"):
    """Each run's final value of one metric (its row with the largest step), joined with runs(): one row per run
    that has the metric, with columns `value` and `step` added."""
    where, params = _sweep_filter(con, sweep)
    # SQLite takes the bare column m.value from the row where max(m.step) is found.
    finals = pd.read_sql_query(
        "SELECT m.run_id, max(m.step) AS step, m.value FROM metrics m JOIN runs r ON r.id = m.run_id"
        " WHERE m.split = ? AND m.name = ?" + where + " GROUP BY m.run_id",
        con, params=[split, name] + params)
    return runs(con, sweep=sweep, status=status).merge(finals, on="run_id", how="inner")


def metric_history(con, name="accuracy", split="test", run_ids=None, sweep=None):
    """Every row of one metric, by run and step: columns run_id, layer, task, seed, step, value."""
    where, params = _sweep_filter(con, sweep)
    if run_ids is not None:
        run_ids = [int(r) for r in run_ids]
        if not run_ids:
            return pd.DataFrame(columns=["run_id", "layer", "task", "seed", "step", "value"])
        where += f" AND r.id IN ({','.join('?' * len(run_ids))})"
        params += run_ids
    return pd.read_sql_query(
        "SELECT m.run_id, r.layer, r.task, r.seed, m.step, m.value FROM metrics m JOIN runs r ON r.id = m.run_id"
        " WHERE m.split = ? AND m.name = ?" + where + " ORDER BY m.run_id, m.step",
        con, params=[split, name] + params)


def t_interval(values):
    """(mean, half-width of the two-sided 95% Student-t interval, n); half-width NaN below two values."""
    v = [float(x) for x in values if x is not None and not math.isnan(float(x))]
    n = len(v)
    if n == 0:
        return math.nan, math.nan, 0
    mean = sum(v) / n
    if n < 2:
        return mean, math.nan, n
    sd = math.sqrt(sum((x - mean) ** 2 for x in v) / (n - 1))
    return mean, (_T95[n - 2] if n - 1 <= 30 else 1.96) * sd / math.sqrt(n), n


def best_points(df, by, value="value"):
    """Keeps, for each group of `by`, the runs of its best point (config without seed) by mean `value` over
    seeds: the best learning rate of a small sweep, as the peers report it (H3.md 6.5). Ties go to more seeds,
    then the smaller learning rate. Returns (the kept runs, one summary row per group with point, lr, mean, n)."""
    if df.empty:
        return df.copy(), pd.DataFrame(columns=list(by) + ["point", "lr", "mean", "n"])
    per_point = (df.groupby(list(by) + ["point"], dropna=False)
                 .agg(lr=("lr", "first"), mean=(value, "mean"), n=(value, "size")).reset_index())
    per_point = per_point.sort_values(list(by) + ["mean", "n", "lr"],
                                      ascending=[True] * len(by) + [False, False, True])
    best = per_point.groupby(list(by), dropna=False, sort=False).head(1).reset_index(drop=True)
    kept = df[df["point"].isin(set(best["point"]))]
    return kept, best


def differing_keys(configs):
    """The dotted keys (e.g. "task_options.seq_len") whose values differ among the given config JSON texts."""
    def flatten(d, prefix=""):
        out = {}
        for k, v in d.items():
            if isinstance(v, dict):
                out.update(flatten(v, f"{prefix}{k}."))
            else:
                out[prefix + k] = json.dumps(v)
        return out
    flat = [flatten(json.loads(c)) for c in configs]
    keys = set().union(*flat) if flat else set()
    return sorted(k for k in keys if len({f.get(k) for f in flat}) > 1)


def layer_colors(layers):
    """A fixed colour per layer (tab10 in LAYER_ORDER, then further colours), the same in every figure."""
    import matplotlib  # here, so that the data functions work without matplotlib

    palette = list(matplotlib.colormaps["tab10"].colors)
    extra = sorted(l for l in layers if l not in LAYER_ORDER)
    names = LAYER_ORDER + extra
    return {l: palette[names.index(l) % len(palette)] for l in layers}


def ordered(names, order):
    """names in the given preferred order, the rest sorted after them."""
    names = list(dict.fromkeys(names))
    return [n for n in order if n in names] + sorted(n for n in names if n not in order)
