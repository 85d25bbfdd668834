#!/usr/bin/env python3
"""Checks tests/slt/rank/rank.slt's window deduplication with equal times
against Apache Flink: prints Flink 2.3's plan (WindowDeduplicate, LastRow and
FirstRow) and rows over tests/data/rank/ties.json.

    /tmp/flinkvenv/bin/python scripts/flink/rank_ties.py

Flink gave (and the .slt file expects): ORDER BY ts DESC keeps ids 2 (a later
row of the same time replaces the kept one), 3 and 5; ORDER BY ts ASC keeps 1, 4 and 5.
"""
import os

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
from pyflink.table import EnvironmentSettings, TableEnvironment
t = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
c = t.get_config(); c.set("parallelism.default", "1"); c.set("table.local-time-zone", "UTC")
t.execute_sql(f"""CREATE TABLE ties (id BIGINT, `user` STRING, ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
 WITH ('connector' = 'filesystem', 'path' = '{ROOT}/tests/data/rank/ties.json', 'format' = 'json', 'json.timestamp-format.standard' = 'SQL')""")
for order in ["DESC", "ASC"]:
    sql = f"""SELECT window_start, `user`, id FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY window_start, window_end, `user` ORDER BY ts {order}) AS rn
      FROM TABLE(TUMBLE(TABLE ties, DESCRIPTOR(ts), INTERVAL '1' MINUTE))) WHERE rn = 1"""
    plan = t.explain_sql(sql)
    print(order, [l.strip() for l in plan.split("== Optimized Physical Plan ==")[1].splitlines() if "Deduplicate" in l or "Rank" in l][:1])
    with t.execute_sql(sql).collect() as rows:
        print(order, sorted(str(r) for r in rows))
