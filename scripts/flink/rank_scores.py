#!/usr/bin/env python3
"""Prints Apache Flink's changelog for the ROW_NUMBER() queries of
tests/slt/rank/rank.slt over tests/data/rank/scores.json, whose expected rows
were worked out by hand: Flink 2.3.0 leaves the same rows (a late row is
dropped by the first-row deduplication and the window ranks, kept by the
last-row deduplication and the Top-N without a window).

    /tmp/flinkvenv/bin/python scripts/flink/rank_scores.py [query ...]
"""
import os
import sys

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
from pyflink.table import EnvironmentSettings, TableEnvironment
t = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
c = t.get_config(); c.set("parallelism.default","1"); c.set("table.local-time-zone","UTC")
t.execute_sql("""CREATE TABLE scores (id BIGINT, `user` STRING, score BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
 WITH ('connector'='filesystem','path'='""" + ROOT + """/tests/data/rank/scores.json','format'='json','json.timestamp-format.standard'='SQL')""")
R = "SELECT {c} FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY {p} ORDER BY {o}) AS rn FROM {i}) WHERE {b}"
Q = {
 "first": R.format(c="id, `user`, ts", p="`user`", o="ts", i="scores", b="rn = 1"),
 "last": R.format(c="id, `user`, ts", p="`user`", o="ts DESC", i="scores", b="rn = 1"),
 "top3": R.format(c="id, `user`, score, rn", p="`user`", o="score DESC, id", i="scores", b="rn <= 3"),
 "wtop2": R.format(c="window_start, id, score, rn", p="window_start, window_end", o="score DESC, id", i="TABLE(TUMBLE(TABLE scores, DESCRIPTOR(ts), INTERVAL '1' MINUTE))", b="rn <= 2"),
 "wfirst": R.format(c="window_start, `user`, id", p="window_start, window_end, `user`", o="ts", i="TABLE(TUMBLE(TABLE scores, DESCRIPTOR(ts), INTERVAL '1' MINUTE))", b="rn = 1"),
 "wlast": R.format(c="window_start, `user`, id", p="window_start, window_end, `user`", o="ts DESC", i="TABLE(TUMBLE(TABLE scores, DESCRIPTOR(ts), INTERVAL '1' MINUTE))", b="rn = 1"),
}
for name in sys.argv[1:] or Q:
    print("==", name)
    with t.execute_sql(Q[name]).collect() as rs:
        for r in rs:
            print(r.get_row_kind().name, r)
