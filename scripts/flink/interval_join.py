#!/usr/bin/env python3
"""Regenerates tests/data/interval_join/expected/<query>.txt: Apache Flink's own
results for event-time interval joins over tests/data/interval_join/{orders,payments}.json.

    python3 -m venv /tmp/flink && /tmp/flink/bin/pip install apache-flink==2.3.0   # needs Java 17
    python3 scripts/flink/gen_interval_join_data.py        # the inputs (deterministic, seeded)
    /tmp/flink/bin/python scripts/flink/interval_join.py   # the expected files

Each query runs in streaming mode, parallelism 1, session time zone UTC, reading
both files with the filesystem connector (bounded: when both end, Flink's final
watermark expires every cached row, which emits the outer joins' padded rows).
Before running, the script checks that EXPLAIN plans the join as an IntervalJoin.

Output files: one result row per line, values joined by ',', NULL as `null`,
timestamps as `yyyy-MM-dd HH:mm:ss.SSS`, lines sorted (Python string order).
Every query's changelog is insert-only (+I), so no row-kind column is written; if
Flink ever emitted another kind, each line would start with its kind (+I/-U/+U/-D).

As a cross-check the script also runs every query in batch mode (where Flink
plans a regular join with the same condition) and stops if the two results
differ: the data is built so that no row is behind its own table's watermark
(out of order by at most 3 s, watermark delay 5 s), so the streaming join drops
nothing and equals the plain relational answer.

The join line of each EXPLAIN (optimized physical plan), Flink 2.3.0:
  inner_between:         IntervalJoin(joinType=[InnerJoin], windowBounds=[isRowTime=true, leftLowerBound=-600000, leftUpperBound=0, leftTimeIndex=3, rightTimeIndex=3], where=[AND(=(order_id, order_id0), >=(ts0, ts), <=(ts0, +(ts, 600000:INTERVAL MINUTE)))], select=[...])
  inner_strict:          IntervalJoin(joinType=[InnerJoin], windowBounds=[isRowTime=true, leftLowerBound=-119999, leftUpperBound=29999, leftTimeIndex=3, rightTimeIndex=3], where=[AND(=(order_id, order_id0), >(ts0, -(ts, 30000:INTERVAL SECOND)), <(ts0, +(ts, 120000:INTERVAL MINUTE)))], select=[...])
  left_between:          IntervalJoin(joinType=[LeftOuterJoin], windowBounds=[isRowTime=true, leftLowerBound=-600000, leftUpperBound=0, ...], where=[<as inner_between>], select=[...])
  right_between:         IntervalJoin(joinType=[RightOuterJoin], windowBounds=[isRowTime=true, leftLowerBound=-600000, leftUpperBound=0, ...], where=[<as inner_between>], select=[...])
  full_between:          IntervalJoin(joinType=[FullOuterJoin], windowBounds=[isRowTime=true, leftLowerBound=-600000, leftUpperBound=0, ...], where=[<as inner_between>], select=[...])
  inner_extra_condition: IntervalJoin(joinType=[InnerJoin], windowBounds=[isRowTime=true, leftLowerBound=-600000, leftUpperBound=0, leftTimeIndex=3, rightTimeIndex=3], where=[AND(=(order_id, order_id0), >=(ts0, ts), <=(ts0, +(ts, 600000:INTERVAL MINUTE)), >=(paid, amount))], select=[...])
(select=[order_id, user_id, amount, ts, payment_id, order_id0, paid, ts0], under a Calc
projecting the output columns; each input is Exchange(hash[order_id]) over its
WatermarkAssigner. The bounds are the left (orders) row's time minus the right's,
in ms, both inclusive: the strict query's exclusive 30 s / 2 min ends become
-119999 and 29999.)
"""

import datetime
import os
import sys

FLINK_VERSION = "2.3.0"

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
DATA = os.path.join(ROOT, "tests", "data", "interval_join")
EXPECTED = os.path.join(DATA, "expected")

DDL = [
    """CREATE TABLE orders (
  order_id BIGINT,
  user_id BIGINT,
  amount BIGINT,
  ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND
) WITH (
  'connector' = 'filesystem',
  'path' = '{data}/orders.json',
  'format' = 'json',
  'json.timestamp-format.standard' = 'SQL'
)""",
    """CREATE TABLE payments (
  payment_id BIGINT,
  order_id BIGINT,
  paid BIGINT,
  ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND
) WITH (
  'connector' = 'filesystem',
  'path' = '{data}/payments.json',
  'format' = 'json',
  'json.timestamp-format.standard' = 'SQL'
)""",
]

SELECT = ("SELECT o.order_id, o.user_id, o.amount, p.payment_id, p.paid, o.ts AS order_ts, p.ts AS paid_ts "
          "FROM orders o {join} payments p ON o.order_id = p.order_id AND {bounds}")
BETWEEN = "p.ts BETWEEN o.ts AND o.ts + INTERVAL '10' MINUTE"
STRICT = "p.ts > o.ts - INTERVAL '30' SECOND AND p.ts < o.ts + INTERVAL '2' MINUTE"

QUERIES = {
    "inner_between": SELECT.format(join="JOIN", bounds=BETWEEN),
    "inner_strict": SELECT.format(join="JOIN", bounds=STRICT),
    "left_between": SELECT.format(join="LEFT JOIN", bounds=BETWEEN),
    "right_between": SELECT.format(join="RIGHT JOIN", bounds=BETWEEN),
    "full_between": SELECT.format(join="FULL JOIN", bounds=BETWEEN),
    "inner_extra_condition": SELECT.format(join="JOIN", bounds=BETWEEN + " AND p.paid >= o.amount"),
}


def table_env(streaming, ddl=()):
    from pyflink.table import EnvironmentSettings, TableEnvironment
    settings = EnvironmentSettings.in_streaming_mode() if streaming else EnvironmentSettings.in_batch_mode()
    t_env = TableEnvironment.create(settings)
    conf = t_env.get_config()
    conf.set("parallelism.default", "1")
    conf.set("table.local-time-zone", "UTC")
    for statement in DDL:
        t_env.execute_sql(statement.format(data=DATA))
    for statement in ddl:
        t_env.execute_sql(statement)
    return t_env


def show(v):
    if v is None:
        return "null"
    if isinstance(v, datetime.datetime):
        return v.strftime("%Y-%m-%d %H:%M:%S.") + f"{v.microsecond // 1000:03d}"
    return str(v)


KINDS = {"INSERT": "+I", "UPDATE_BEFORE": "-U", "UPDATE_AFTER": "+U", "DELETE": "-D"}


def run(t_env, sql):
    """The query's rows as (kind, line) pairs, kind Flink's short string (+I, -U, ...)."""
    out = []
    with t_env.execute_sql(sql).collect() as results:
        for row in results:
            out.append((KINDS[row.get_row_kind().name], ",".join(show(v) for v in row)))
    return out


def final_state(rows):
    """The rows left once a changelog's (kind, line) pairs are applied in order:
    +I/+U add a row, -U/-D take one equal row back."""
    state = {}
    for kind, line in rows:
        if kind in ("+I", "+U"):
            state[line] = state.get(line, 0) + 1
        elif state.get(line, 0) == 0:
            sys.exit(f"the changelog takes back a row it does not hold: {kind},{line}")
        else:
            state[line] -= 1
    return [(("+I", line)) for line, n in state.items() for _ in range(n)]


def regenerate(queries, expected_dir, planned_as, changelog="rows", ddl=(), batch=True):
    """Runs each of `queries` (name -> SQL) in Flink, checks that its plan has a
    `planned_as` operator (e.g. "IntervalJoin") and agrees with batch mode, and writes its
    rows to `expected_dir/<name>.txt`. Names on the command line pick queries.
    With changelog="final", a changelog is applied and its final rows written
    (a regular join's takes back rows; the order of its changes depends on how
    the two inputs interleave, the final rows do not). `ddl` creates more tables
    and views beside the orders and payments; batch=False skips the batch
    cross-check, for a construct Flink runs only in streaming mode."""
    from importlib.metadata import version
    if version("apache-flink") != FLINK_VERSION:
        print(f"note: these files were made with Flink {FLINK_VERSION}, this is {version('apache-flink')}")
    names = sys.argv[1:] or list(queries)
    stream = table_env(True, ddl)
    batch_env = table_env(False, ddl) if batch else None
    os.makedirs(expected_dir, exist_ok=True)
    for name in names:
        sql = queries[name]
        plan = stream.explain_sql(sql)
        # The physical plan names joins; the execution plan names what a rank became (Deduplicate).
        physical = plan.split("== Optimized Physical Plan ==")[1]
        operators = [l.lstrip(" :+-") for l in physical.splitlines() if l.lstrip(" :+-").startswith(f"{planned_as}(")]
        if not operators:
            sys.exit(f"{name}: not planned as {planned_as}:\n{plan}")
        print(f"{name}: {operators[0]}")
        rows = run(stream, sql)
        if changelog == "final":
            changes = sorted({k for k, _ in rows})
            rows = final_state(rows)
            print(f"  changelog kinds {changes}, applied")
        kinds = sorted({k for k, _ in rows})
        lines = sorted(l for _, l in rows) if kinds == ["+I"] else sorted(f"{k},{l}" for k, l in rows)
        expected = sorted(l for k, l in run(batch_env, sql)) if batch_env else lines
        if kinds == ["+I"] and lines != expected:
            only_s = sorted(set(lines) - set(expected))
            only_b = sorted(set(expected) - set(lines))
            sys.exit(f"{name}: streaming differs from batch: only streaming {only_s[:10]}, only batch {only_b[:10]}")
        with open(os.path.join(expected_dir, f"{name}.txt"), "w") as f:
            for l in lines:
                f.write(l + "\n")
        agreement = ('agrees' if lines == expected else 'DIFFERS') if batch_env else 'not run'
        print(f"  {len(lines)} rows, kinds {kinds}, batch {agreement}")


def main():
    regenerate(QUERIES, EXPECTED, "IntervalJoin")


if __name__ == "__main__":
    main()
