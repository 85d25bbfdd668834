#!/usr/bin/env python3
"""Regenerates tests/data/regular_join/expected/<query>.txt: Apache Flink's own
results for regular joins (no time bounds) over tests/data/interval_join/{orders,payments}.json.

    python3 -m venv /tmp/flinkvenv && /tmp/flinkvenv/bin/pip install apache-flink==2.3.0   # needs Java 17
    python3 scripts/flink/gen_interval_join_data.py           # the inputs (deterministic, seeded)
    /tmp/flinkvenv/bin/python scripts/flink/regular_join.py   # the expected files (or name some queries)

The inputs, their DDL, the environment (streaming, parallelism 1, UTC, filesystem
connector) and the value formatting are those of scripts/flink/interval_join.py,
imported from it. Before running, the script checks that EXPLAIN plans a `Join`
(Flink's regular join operator).

An outer or anti join's changelog takes back rows (`-D` of a row padded with
NULLs when its first partner comes, `+I` of the pair): which rows are taken back
depends on how the two inputs interleave, so the files hold the final rows after
applying the changelog (one row per line, sorted), which do not. Flink's streaming
final rows are also checked against its batch result of the same query.

Flink 2.3.0's plans: `Join(joinType=[InnerJoin|LeftOuterJoin|RightOuterJoin|FullOuterJoin|LeftSemiJoin|LeftAntiJoin],
where=[...], select=[...], leftInputSpec=[NoUniqueKey], rightInputSpec=[NoUniqueKey])`
over `Exchange(hash[order_id])` on each side.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from interval_join import ROOT, SELECT, regenerate  # noqa: E402

EXPECTED = os.path.join(ROOT, "tests", "data", "regular_join", "expected")
ON = "ON o.order_id = p.order_id"

QUERIES = {
    "inner": SELECT.format(join="JOIN", bounds="TRUE").replace(" AND TRUE", ""),
    "left": SELECT.format(join="LEFT JOIN", bounds="TRUE").replace(" AND TRUE", ""),
    "right": SELECT.format(join="RIGHT JOIN", bounds="TRUE").replace(" AND TRUE", ""),
    "full": SELECT.format(join="FULL JOIN", bounds="TRUE").replace(" AND TRUE", ""),
    # One time bound only: no interval, so a regular join with a condition.
    "left_one_bound": SELECT.format(join="LEFT JOIN", bounds="p.ts >= o.ts"),
    "semi": "SELECT o.order_id, o.user_id, o.amount FROM orders o WHERE o.order_id IN (SELECT order_id FROM payments WHERE paid >= 300)",
    "anti": "SELECT o.order_id, o.user_id, o.amount FROM orders o WHERE NOT EXISTS (SELECT * FROM payments p WHERE p.order_id = o.order_id AND p.paid >= 300)",
}


def main():
    regenerate(QUERIES, EXPECTED, "Join", changelog="final")


if __name__ == "__main__":
    main()
