#!/usr/bin/env python3
"""Regenerates tests/data/temporal_join/expected/<query>.txt: Apache Flink's own
results for event-time temporal joins of tests/data/interval_join/orders.json
with the versioned view of tests/data/temporal_join/levels.json.

    python3 -m venv /tmp/flinkvenv && /tmp/flinkvenv/bin/pip install apache-flink==2.3.0   # needs Java 17
    python3 scripts/flink/gen_temporal_join_data.py           # the levels (seeded)
    /tmp/flinkvenv/bin/python scripts/flink/temporal_join.py  # the expected files

The versioned table is a view keeping each user's last level by event time
(`ROW_NUMBER() OVER (PARTITION BY user_id ORDER BY ts DESC) = 1`), as Flink's
documentation declares one over an append-only table. The environment and value
formatting are those of scripts/flink/interval_join.py. The script checks that
Flink plans each query as a TemporalJoin. Flink runs temporal joins only in
streaming mode, so instead of a batch run the script checks every result against
the definition, computed here: an order meets the version of its user with the
latest time at or before the order's (of the versions the deduplication kept:
it drops a row older than the one it holds), if that version satisfies the rest
of the condition; a LEFT JOIN pads the others with NULLs.

Each query's SQL is written to <name>.sql beside its rows (<name>.txt), which
tests/temporal_join_e2e.rs runs in Eddy and compares.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from interval_join import ROOT, regenerate  # noqa: E402

DATA = os.path.join(ROOT, "tests", "data", "temporal_join")
EXPECTED = os.path.join(DATA, "expected")
ORDERS = os.path.join(ROOT, "tests", "data", "interval_join", "orders.json")

DDL = [
    f"""CREATE TABLE levels (
  user_id BIGINT,
  level STRING,
  discount BIGINT,
  ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND
) WITH (
  'connector' = 'filesystem',
  'path' = '{DATA}/levels.json',
  'format' = 'json',
  'json.timestamp-format.standard' = 'SQL'
)""",
    """CREATE VIEW user_levels AS
SELECT user_id, level, discount, ts FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY user_id ORDER BY ts DESC) AS rn FROM levels)
WHERE rn = 1""",
]

JOIN = ("SELECT o.order_id, o.user_id, o.amount, l.level, l.discount, o.ts AS order_ts, l.ts AS level_ts "
        "FROM orders AS o {join} user_levels FOR SYSTEM_TIME AS OF o.ts AS l ON o.user_id = l.user_id{condition}")

# name -> (SQL, join type, extra condition on (order, version) or None)
QUERIES = {
    "inner": (JOIN.format(join="JOIN", condition=""), "inner", None),
    "left": (JOIN.format(join="LEFT JOIN", condition=""), "left", None),
    "left_with_condition": (JOIN.format(join="LEFT JOIN", condition=" AND l.discount < 40"), "left", lambda o, v: v["discount"] < 40),
    "inner_with_condition": (JOIN.format(join="JOIN", condition=" AND o.amount > l.discount * 20"), "inner",
                             lambda o, v: o["amount"] > v["discount"] * 20),
    # A WHERE on the versioned table's columns filters the joined rows: Flink does
    # not push it below the join, where it would make an older version current.
    "inner_where_on_version": (JOIN.format(join="JOIN", condition=" WHERE l.discount < 40"), "inner", lambda o, v: v["discount"] < 40),
}


def definition(join_type, condition):
    """The rows the query must give, by the definition of a versioned table."""
    kept = {}
    versions = {}
    for line in open(os.path.join(DATA, "levels.json")):
        v = json.loads(line)
        held = kept.get(v["user_id"])
        if held is not None and v["ts"] < held["ts"]:
            continue
        kept[v["user_id"]] = v
        versions.setdefault(v["user_id"], {})[v["ts"]] = v
    rows = []
    for line in open(ORDERS):
        o = json.loads(line)
        mine = [t for t in versions.get(o["user_id"], {}) if t <= o["ts"]]
        v = versions[o["user_id"]][max(mine)] if mine else None
        if v is not None and condition is not None and not condition(o, v):
            v = None
        if v is None and join_type == "inner":
            continue
        values = [o["order_id"], o["user_id"], o["amount"]]
        values += [v["level"], v["discount"]] if v else [None, None]
        values += [o["ts"], v["ts"] if v else None]
        rows.append(",".join("null" if x is None else str(x) for x in values))
    return sorted(rows)


def main():
    os.makedirs(EXPECTED, exist_ok=True)
    names = sys.argv[1:] or list(QUERIES)
    for name in names:
        sql, _, _ = QUERIES[name]
        with open(os.path.join(EXPECTED, f"{name}.sql"), "w") as f:
            f.write(sql + "\n")
    regenerate({n: q[0] for n, q in QUERIES.items()}, EXPECTED, "TemporalJoin", ddl=DDL, batch=False)
    for name in names:
        _, join_type, condition = QUERIES[name]
        with open(os.path.join(EXPECTED, f"{name}.txt")) as f:
            flink = sorted(l.rstrip("\n") for l in f if l.strip())
        wanted = definition(join_type, condition)
        if flink != wanted:
            only_f = sorted(set(flink) - set(wanted))[:10]
            only_d = sorted(set(wanted) - set(flink))[:10]
            sys.exit(f"{name}: Flink differs from the definition: only Flink {only_f}, only the definition {only_d}")
        print(f"{name}: Flink's {len(flink)} rows are the definition's")


if __name__ == "__main__":
    main()
