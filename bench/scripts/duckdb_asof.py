#!/usr/bin/env python3
"""DuckDB side of `quiver-bench offline` (W8): the point-in-time join as an ASOF LEFT JOIN, and
a row-by-row comparison of two training sets.

Needs Python 3 and DuckDB (`pip install duckdb`). The harness runs it twice, each time in a
fresh process so that one's memory does not count towards the other's:

  duckdb_asof.py join --spec SPEC.json --entities E.parquet --history H.parquet --out D.parquet
  duckdb_asof.py compare --quiver Q.parquet --duckdb D.parquet

`join` runs the point-in-time join the way docs/offline.md validated it: for each entity row, the latest
history row of its key with `event_ts <= t` (ASOF), and each feature's value only if
`event_ts >= t - ttl(feature)` (ttl 0: no bound). SPEC.json names the columns and gives each
feature's TTL in microseconds, taken from the registry by the harness. The output carries the
entity file's row number as `__row` so that `compare` can match rows one to one; Quiver keeps
entity rows in file order, DuckDB's join does not promise an order.

Each command prints one JSON object as its last stdout line.
"""

import argparse
import json
import os
import sys
import time


def vm_kb(field):
    """A `Vm*` line of /proc/self/status in KiB (Linux), or None."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def mb(kb):
    return None if kb is None else round(kb / 1024.0, 1)


def quote_ident(name):
    return '"' + name.replace('"', '""') + '"'


def quote_str(s):
    return "'" + s.replace("'", "''") + "'"


def import_duckdb():
    try:
        import duckdb  # noqa: PLC0415 (imported late so a missing module is reported clearly)
    except ImportError:
        print(
            "error: the Python module duckdb is missing; install it with: pip install duckdb",
            file=sys.stderr,
        )
        sys.exit(3)
    return duckdb


def connect(duckdb, threads, temp_dir):
    con = duckdb.connect(":memory:")
    con.execute("SET TimeZone = 'UTC'")
    if threads > 0:
        con.execute(f"SET threads = {int(threads)}")
    if temp_dir:
        con.execute(f"SET temp_directory = {quote_str(temp_dir)}")
    return con


def join_sql(spec, entities, history, out):
    key = quote_ident(spec["key"])
    ets = quote_ident(spec["entity_ts"])
    hts = quote_ident(spec["history_ts"])
    cols = []
    for f in spec["features"]:
        col = "h." + quote_ident(f["column"])
        ttl = int(f["ttl_us"])
        if ttl > 0:
            expr = f"CASE WHEN h.{hts} >= e.{ets} - INTERVAL {ttl} MICROSECOND THEN {col} END"
        else:
            expr = col
        cols.append(f"{expr} AS {quote_ident(f['name'])}")
    return (
        "COPY (SELECT e.* EXCLUDE (file_row_number), "
        + ", ".join(cols)
        + ", e.file_row_number AS __row"
        + f" FROM read_parquet({quote_str(entities)}, file_row_number = true) e"
        + f" ASOF LEFT JOIN read_parquet({quote_str(history)}) h"
        + f" ON e.{key} = h.{key} AND e.{ets} >= h.{hts}"
        + f") TO {quote_str(out)} (FORMAT parquet)"
    )


def cmd_join(args):
    with open(args.spec, encoding="utf-8") as f:
        spec = json.load(f)
    duckdb = import_duckdb()
    baseline_kb = vm_kb("VmRSS")
    sql = join_sql(spec, args.entities, args.history, args.out)
    started = time.perf_counter()
    con = connect(duckdb, args.threads, args.temp_dir)
    con.execute(sql)
    seconds = time.perf_counter() - started
    peak_kb = vm_kb("VmHWM")
    rows = con.execute(f"SELECT count(*) FROM read_parquet({quote_str(args.out)})").fetchone()[0]
    threads = int(con.execute("SELECT current_setting('threads')").fetchone()[0])
    con.close()
    print(
        json.dumps(
            {
                "seconds": round(seconds, 3),
                "peak_rss_mb": mb(peak_kb),
                "baseline_rss_mb": mb(baseline_kb),
                "rows": rows,
                "duckdb_version": duckdb.__version__,
                "threads": threads,
                "sql": sql,
            }
        )
    )


def cmd_compare(args):
    duckdb = import_duckdb()
    con = connect(duckdb, args.threads, args.temp_dir)
    q = f"read_parquet({quote_str(args.quiver)}, file_row_number = true)"
    d = f"read_parquet({quote_str(args.duckdb)})"
    q_schema = con.execute(f"DESCRIBE SELECT * EXCLUDE (file_row_number) FROM {q}").fetchall()
    d_schema = con.execute(f"DESCRIBE SELECT * EXCLUDE (__row) FROM {d}").fetchall()
    q_cols = [(r[0], r[1]) for r in q_schema]
    d_cols = [(r[0], r[1]) for r in d_schema]
    q_rows = con.execute(f"SELECT count(*) FROM {q}").fetchone()[0]
    d_rows = con.execute(f"SELECT count(*) FROM {d}").fetchone()[0]
    result = {
        "rows_quiver": q_rows,
        "rows_duckdb": d_rows,
        "columns_quiver": [f"{n} {t}" for n, t in q_cols],
        "columns_duckdb": [f"{n} {t}" for n, t in d_cols],
    }
    names_match = [n for n, _ in q_cols] == [n for n, _ in d_cols]
    result["column_names_match"] = names_match
    result["column_types_match"] = q_cols == d_cols
    if names_match:
        names = [n for n, _ in q_cols]
        per_col = ", ".join(
            f"count(*) FILTER (WHERE q.{quote_ident(n)} IS DISTINCT FROM d.{quote_ident(n)})"
            for n in names
        )
        unmatched = "count(*) FILTER (WHERE q.file_row_number IS NULL OR d.__row IS NULL)"
        any_diff = " OR ".join(
            ["q.file_row_number IS NULL", "d.__row IS NULL"]
            + [f"q.{quote_ident(n)} IS DISTINCT FROM d.{quote_ident(n)}" for n in names]
        )
        joined = f"{q} q FULL OUTER JOIN {d} d ON q.file_row_number = d.__row"
        counts = con.execute(
            f"SELECT count(*) FILTER (WHERE {any_diff}), {unmatched}, {per_col} FROM {joined}"
        ).fetchone()
        result["mismatched_rows"] = counts[0]
        result["unmatched_rows"] = counts[1]
        result["mismatches_by_column"] = {n: c for n, c in zip(names, counts[2:]) if c}
        first = con.execute(
            f"SELECT coalesce(q.file_row_number, d.__row) AS row, "
            f"{', '.join('q.' + quote_ident(n) for n in names)}, "
            f"{', '.join('d.' + quote_ident(n) for n in names)} "
            f"FROM {joined} WHERE {any_diff} ORDER BY row LIMIT 3"
        ).fetchall()
        result["first_mismatches"] = [[str(v) for v in r] for r in first]
        result["identical"] = q_rows == d_rows and counts[0] == 0
        if args.features:
            feats = [n for n in names if n in args.features.split(",")]
            nulls = con.execute(
                "SELECT count(*), "
                + ", ".join(f"count(*) FILTER (WHERE {quote_ident(n)} IS NULL)" for n in feats)
                + ", count(*) FILTER (WHERE "
                + " AND ".join(f"{quote_ident(n)} IS NULL" for n in feats)
                + f") FROM {q}"
            ).fetchone()
            total = max(nulls[0], 1)
            result["null_fraction"] = {
                n: round(c / total, 4) for n, c in zip(feats, nulls[1 : 1 + len(feats)])
            }
            result["all_null_fraction"] = round(nulls[-1] / total, 4)
    else:
        result["identical"] = False
    con.close()
    print(json.dumps(result))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    j = sub.add_parser("join", help="ASOF LEFT JOIN of the entity rows with the history")
    j.add_argument("--spec", required=True, help="JSON: key, entity_ts, history_ts, features")
    j.add_argument("--entities", required=True)
    j.add_argument("--history", required=True)
    j.add_argument("--out", required=True)
    c = sub.add_parser("compare", help="compare two training sets row by row")
    c.add_argument("--quiver", required=True, help="Quiver's output (entity rows in file order)")
    c.add_argument("--duckdb", required=True, help="this script's join output (with __row)")
    c.add_argument("--features", default="", help="feature columns, comma separated (for stats)")
    for s in (j, c):
        s.add_argument("--threads", type=int, default=0, help="DuckDB threads (0: its default)")
        s.add_argument("--temp-dir", default=None, help="where DuckDB may spill")
    args = p.parse_args()
    if args.cmd == "join":
        cmd_join(args)
    else:
        cmd_compare(args)


if __name__ == "__main__":
    os.environ.setdefault("TZ", "UTC")
    main()
