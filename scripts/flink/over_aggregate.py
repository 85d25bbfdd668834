#!/usr/bin/env python3
"""Regenerates tests/data/over/events.json and tests/data/over/expected/<query>.txt:
Apache Flink's own results for OVER aggregates on event time over those events.

    python3 -m venv /tmp/flinkvenv && /tmp/flinkvenv/bin/pip install apache-flink==2.3.0   # needs Java 17
    /tmp/flinkvenv/bin/python scripts/flink/over_aggregate.py

The events (k BIGINT, v BIGINT, ts TIMESTAMP(3)) are deterministic (seeded):
400 rows over 5 keys, about 6 minutes from 2024-01-01 00:00:00, with NULL values,
rows of equal time (peers) and rows up to 3 s out of order (less than the
table's 5-second watermark delay, so no row is late and Flink drops none).

Each query runs in streaming mode, parallelism 1, session time zone UTC, reading
the file with the filesystem connector; Flink's final watermark at the end of
the file emits every waiting row. Before running, the script checks that EXPLAIN
plans the query as an OverAggregate. Rows of equal time in a ROWS frame are
ordered by arrival in Flink, which at parallelism 1 is the file's order, as in
Eddy. Output files: one row per line, values joined by ',', NULL as `null`,
timestamps as `yyyy-MM-dd HH:mm:ss.SSS`, lines sorted.
"""

import datetime
import json
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
DATA = os.path.join(ROOT, "tests", "data", "over")
EXPECTED = os.path.join(DATA, "expected")
SEED = 18
START = datetime.datetime(2024, 1, 1, 0, 0, 0)

DDL = """CREATE TABLE events (
  k BIGINT,
  v BIGINT,
  ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND
) WITH (
  'connector' = 'filesystem',
  'path' = '{data}/events.json',
  'format' = 'json',
  'json.timestamp-format.standard' = 'SQL'
)"""

# The same SQL runs in Eddy (tests/over_e2e.rs). AVG is left out: Flink's AVG of a
# BIGINT is a BIGINT (truncated), Eddy's (DataFusion's) a DOUBLE.
QUERIES = {
    "rows_3_preceding": "SELECT k, v, ts, SUM(v) OVER w, COUNT(v) OVER w, MIN(v) OVER w, MAX(v) OVER w FROM events "
                        "WINDOW w AS (PARTITION BY k ORDER BY ts ROWS BETWEEN 3 PRECEDING AND CURRENT ROW)",
    "range_10_seconds": "SELECT k, v, ts, SUM(v) OVER w, COUNT(*) OVER w, MIN(v) OVER w, MAX(v) OVER w FROM events "
                        "WINDOW w AS (PARTITION BY k ORDER BY ts RANGE BETWEEN INTERVAL '10' SECOND PRECEDING AND CURRENT ROW)",
    "range_unbounded_no_partition": "SELECT k, v, ts, COUNT(*) OVER (ORDER BY ts), SUM(v) OVER (ORDER BY ts) FROM events",
    "rows_unbounded": "SELECT k, v, ts, SUM(v) OVER w, MAX(v) OVER w FROM events "
                      "WINDOW w AS (PARTITION BY k ORDER BY ts ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)",
}


def generate():
    rng = random.Random(SEED)
    rows = []
    t = 0
    for _ in range(400):
        # Often the same millisecond as the previous row (peers), else up to 2 s on.
        t += rng.choice([0, 0, 250, 500, 1000, 2000])
        k = rng.randint(1, 5)
        v = None if rng.random() < 0.08 else rng.randint(-20, 100)
        rows.append([t, k, v])
    # About 15% of rows are delayed by up to 3 s: moved later in the file.
    out = []
    delayed = []
    for t, k, v in rows:
        if rng.random() < 0.15:
            delayed.append((t + rng.randint(1, 3000), (t, k, v)))
        else:
            out.append((t, (t, k, v)))
    merged = sorted(out + delayed, key=lambda x: x[0])
    with open(os.path.join(DATA, "events.json"), "w") as f:
        for _, (t, k, v) in merged:
            ts = (START + datetime.timedelta(milliseconds=t)).strftime("%Y-%m-%d %H:%M:%S.") + f"{t % 1000:03d}"
            f.write(json.dumps({"k": k, "v": v, "ts": ts}) + "\n")


def main():
    from interval_join import run  # the same row formatting as the join scripts
    from pyflink.table import EnvironmentSettings, TableEnvironment
    os.makedirs(EXPECTED, exist_ok=True)
    generate()
    t_env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    conf = t_env.get_config()
    conf.set("parallelism.default", "1")
    conf.set("table.local-time-zone", "UTC")
    t_env.execute_sql(DDL.format(data=DATA))
    for name in sys.argv[1:] or list(QUERIES):
        sql = QUERIES[name]
        plan = t_env.explain_sql(sql)
        if "OverAggregate(" not in plan:
            sys.exit(f"{name}: not planned as an OverAggregate:\n{plan}")
        rows = run(t_env, sql)
        kinds = sorted({k for k, _ in rows})
        if kinds != ["+I"]:
            sys.exit(f"{name}: expected inserts only, got {kinds}")
        lines = sorted(l for _, l in rows)
        with open(os.path.join(EXPECTED, f"{name}.txt"), "w") as f:
            for l in lines:
                f.write(l + "\n")
        print(f"{name}: {len(lines)} rows")


if __name__ == "__main__":
    main()
