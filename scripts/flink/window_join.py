#!/usr/bin/env python3
"""Regenerates tests/data/window_join/expected/<query>.txt: Apache Flink's own
results for window joins (window TVFs on both sides, joined on window_start,
window_end and order_id) over tests/data/interval_join/{orders,payments}.json.

    python3 -m venv /tmp/flinkvenv && /tmp/flinkvenv/bin/pip install apache-flink==2.3.0   # needs Java 17
    python3 scripts/flink/gen_interval_join_data.py          # the inputs (deterministic, seeded)
    /tmp/flinkvenv/bin/python scripts/flink/window_join.py   # the expected files (or name some queries)

The inputs, their DDL (watermark ts - 5 s), the environment (streaming, parallelism 1,
session time zone UTC, filesystem connector, bounded: the final watermark fires
every window) and the value formatting are those of scripts/flink/interval_join.py,
imported from it. Before running, the script checks that EXPLAIN plans the join as
a WindowJoin.

Output files: one result row per line, values joined by ',', NULL as `null`,
timestamps as `yyyy-MM-dd HH:mm:ss.SSS`, lines sorted (Python string order).
Every query's changelog is insert-only (+I), so no row-kind column is written; if
Flink ever emitted another kind, each line would start with its kind (+I/-U/+U/-D).

As a cross-check every query also runs in batch mode (where Flink plans a regular
join over the same window TVFs) and the script stops if the results differ: no row
is late (out of order by at most 3 s, watermark delay 5 s), so the window join drops
nothing and equals the plain relational answer.

Columns: tumble_*/hop_inner: order_id, amount, payment_id, paid, window_start,
window_end (the window columns are L's, so NULL on a FULL join's right-only rows);
tumble_semi: order_id, amount, window_start, window_end; aggregated_left (each side's
TUMBLE aggregated by order_id first, as Nexmark q8 does): order_id, amount, payments,
paid, window_start, window_end.

The join line of each EXPLAIN (optimized physical plan), Flink 2.3.0:
  tumble_inner: WindowJoin(leftWindow=[TUMBLE(win_start=[window_start], win_end=[window_end], size=[1 min])], rightWindow=[TUMBLE(win_start=[window_start], win_end=[window_end], size=[1 min])], joinType=[InnerJoin], where=[=(order_id, order_id0)], select=[order_id, amount, window_start, window_end, payment_id, order_id0, paid, window_start0, window_end0])
  tumble_left:  WindowJoin(<windows as tumble_inner>, joinType=[LeftOuterJoin], where=[=(order_id, order_id0)], select=[<as tumble_inner>])
  tumble_full:  WindowJoin(<windows as tumble_inner>, joinType=[FullOuterJoin], where=[=(order_id, order_id0)], select=[<as tumble_inner>])
  hop_inner:    WindowJoin(leftWindow=[HOP(win_start=[window_start], win_end=[window_end], size=[2 min], slide=[1 min])], rightWindow=[HOP(<same>)], joinType=[InnerJoin], where=[=(order_id, order_id0)], select=[<as tumble_inner>])
  tumble_semi:  WindowJoin(<windows as tumble_inner>, joinType=[LeftSemiJoin], where=[=(order_id, order_id0)], select=[order_id, amount, window_start, window_end])
(under a Calc projecting the output columns, except tumble_semi, whose WindowJoin is
the root; each input is Exchange(hash[order_id]) over Calc over
WindowTableFunction(window=[TUMBLE(time_col=[ts], size=[1 min])]) (or HOP) over
the WatermarkAssigner. The window_start/window_end equalities are consumed into the
WindowJoin's window spec and do not appear in where=[...].)
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from interval_join import ROOT, regenerate  # noqa: E402

EXPECTED = os.path.join(ROOT, "tests", "data", "window_join", "expected")

TUMBLE = "(SELECT * FROM TABLE(TUMBLE(TABLE {t}, DESCRIPTOR(ts), INTERVAL '1' MINUTE)))"
HOP = "(SELECT * FROM TABLE(HOP(TABLE {t}, DESCRIPTOR(ts), INTERVAL '1' MINUTE, INTERVAL '2' MINUTE)))"

JOIN = ("SELECT L.order_id, L.amount, R.payment_id, R.paid, L.window_start, L.window_end "
        "FROM {left} L {join} {right} R "
        "ON L.order_id = R.order_id AND L.window_start = R.window_start AND L.window_end = R.window_end")
SEMI = ("SELECT L.order_id, L.amount, L.window_start, L.window_end FROM {left} L "
        "WHERE L.order_id IN (SELECT R.order_id FROM {right} R "
        "WHERE L.window_start = R.window_start AND L.window_end = R.window_end)")

# Windows aggregated on each side first (as Nexmark q8 does), then joined on their bounds.
AGGREGATED = ("SELECT L.order_id, L.amount, R.payments, R.paid, L.window_start, L.window_end FROM "
              "(SELECT order_id, window_start, window_end, SUM(amount) AS amount FROM TABLE(TUMBLE(TABLE orders, DESCRIPTOR(ts), INTERVAL '1' MINUTE)) "
              "GROUP BY order_id, window_start, window_end) L LEFT JOIN "
              "(SELECT order_id, window_start, window_end, COUNT(*) AS payments, SUM(paid) AS paid FROM TABLE(TUMBLE(TABLE payments, DESCRIPTOR(ts), INTERVAL '1' MINUTE)) "
              "GROUP BY order_id, window_start, window_end) R "
              "ON L.order_id = R.order_id AND L.window_start = R.window_start AND L.window_end = R.window_end")


def tvf(win):
    return dict(left=win.format(t="orders"), right=win.format(t="payments"))


QUERIES = {
    "tumble_inner": JOIN.format(join="JOIN", **tvf(TUMBLE)),
    "tumble_left": JOIN.format(join="LEFT JOIN", **tvf(TUMBLE)),
    "tumble_full": JOIN.format(join="FULL JOIN", **tvf(TUMBLE)),
    "hop_inner": JOIN.format(join="JOIN", **tvf(HOP)),
    "tumble_semi": SEMI.format(**tvf(TUMBLE)),
    "aggregated_left": AGGREGATED,
}


def main():
    regenerate(QUERIES, EXPECTED, "WindowJoin")


if __name__ == "__main__":
    main()
