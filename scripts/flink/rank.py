#!/usr/bin/env python3
"""Regenerates tests/data/rank/expected/<query>.txt: Apache Flink's own results
for ROW_NUMBER() deduplication and Top-N over tests/data/interval_join/{orders,payments}.json.

    python3 -m venv /tmp/flinkvenv && /tmp/flinkvenv/bin/pip install apache-flink==2.3.0   # needs Java 17
    /tmp/flinkvenv/bin/python scripts/flink/rank.py          # the expected files (or name some queries)

The inputs, their DDL, the environment (streaming, parallelism 1, UTC, filesystem
connector) and the value formatting are those of scripts/flink/interval_join.py,
imported from it. Before running, the script checks that Flink plans each query
with the operator named in QUERIES (Deduplicate, Rank, WindowRank,
WindowDeduplicate), so each query tests the construct it is named after.

Each query's SQL is written to <name>.sql beside its rows (<name>.txt), which
tests/rank_e2e.rs runs in Eddy and compares.

Keeping the last row and a Top-N without a window are changelogs (a row is
replaced, ranks move): the files hold the final rows after applying the changes,
which do not depend on how Flink batches them. Every ORDER BY ends in a column
that is unique per partition, so no two rows tie and Flink's batch result (the
relational answer) must be the same; the script checks that it is.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from interval_join import ROOT, regenerate  # noqa: E402

EXPECTED = os.path.join(ROOT, "tests", "data", "rank", "expected")

RANKED = "SELECT {cols} FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY {partition} ORDER BY {order}) AS rn FROM {input}) WHERE {bound}"
ORDERS_TUMBLE = "TABLE(TUMBLE(TABLE orders, DESCRIPTOR(ts), INTERVAL '2' MINUTE))"
ORDERS_HOP = "TABLE(HOP(TABLE orders, DESCRIPTOR(ts), INTERVAL '1' MINUTE, INTERVAL '3' MINUTE))"
PER_USER_MINUTE = ("(SELECT window_start, window_end, user_id, SUM(amount) AS total, COUNT(*) AS orders "
                   "FROM TABLE(TUMBLE(TABLE orders, DESCRIPTOR(ts), INTERVAL '1' MINUTE)) GROUP BY window_start, window_end, user_id)")
LEFT_JOINED = ("(SELECT o.order_id, o.user_id, o.amount, p.payment_id, p.paid "
               "FROM orders o LEFT JOIN payments p ON o.order_id = p.order_id)")
PAID_PER_USER = ("(SELECT o.user_id, COUNT(p.payment_id) AS paid_orders "
                 "FROM orders o LEFT JOIN payments p ON o.order_id = p.order_id GROUP BY o.user_id)")

# name -> (Flink's operator, SQL)
QUERIES = {
    "first_order_per_user": ("Deduplicate", RANKED.format(
        cols="order_id, user_id, amount, ts", partition="user_id", order="ts ASC", input="orders", bound="rn = 1")),
    "last_order_per_user": ("Deduplicate", RANKED.format(
        cols="order_id, user_id, amount, ts, rn", partition="user_id", order="ts DESC", input="orders", bound="rn = 1")),
    "first_payment_per_order": ("Deduplicate", RANKED.format(
        cols="payment_id, order_id, paid, ts", partition="order_id", order="ts", input="payments", bound="rn <= 1")),
    "top3_orders_per_user": ("Rank", RANKED.format(
        cols="order_id, user_id, amount, rn", partition="user_id", order="amount DESC, order_id ASC", input="orders", bound="rn <= 3")),
    "top2_payments_no_number": ("Rank", RANKED.format(
        cols="payment_id, order_id, paid", partition="order_id", order="paid ASC, payment_id DESC", input="payments", bound="rn < 3")),
    "top5_orders_overall": ("Rank", RANKED.format(
        cols="order_id, amount, rn", partition="TRUE", order="amount DESC, order_id DESC", input="orders", bound="rn <= 5").replace("PARTITION BY TRUE ", "")),
    "window_top2_orders": ("WindowRank", RANKED.format(
        cols="window_start, window_end, order_id, user_id, amount, rn", partition="window_start, window_end",
        order="amount DESC, order_id", input=ORDERS_TUMBLE, bound="rn <= 2")),
    "hop_top1_per_user": ("WindowRank", RANKED.format(
        cols="window_start, window_end, user_id, order_id, amount", partition="window_start, window_end, user_id",
        order="amount DESC, order_id", input=ORDERS_HOP, bound="rn = 1")),
    "window_first_order_per_user": ("WindowDeduplicate", RANKED.format(
        cols="window_start, window_end, user_id, order_id, ts", partition="window_start, window_end, user_id",
        order="ts ASC", input=ORDERS_TUMBLE, bound="rn = 1")),
    "top3_users_per_minute": ("WindowRank", RANKED.format(
        cols="window_start, window_end, user_id, total, orders, rn", partition="window_start, window_end",
        order="total DESC, user_id", input=PER_USER_MINUTE, bound="rn <= 3")),
    # Top-N over updating rows (Flink's RetractStrategy): a LEFT join takes its
    # padded rows back once a payment comes, and the aggregate over it changes.
    "top2_orders_per_user_over_left_join": ("Rank", RANKED.format(
        cols="order_id, user_id, paid, rn", partition="user_id", order="amount DESC, order_id, payment_id",
        input=LEFT_JOINED, bound="rn <= 2")),
    "top3_users_by_paid_orders": ("Rank", RANKED.format(
        cols="user_id, paid_orders, rn", partition="TRUE", order="paid_orders DESC, user_id", input=PAID_PER_USER,
        bound="rn <= 3").replace("PARTITION BY TRUE ", "")),
}


def write_queries():
    """Writes each query's SQL to <name>.sql beside its rows: tests/rank_e2e.rs runs it in Eddy."""
    os.makedirs(EXPECTED, exist_ok=True)
    for name, (_, sql) in QUERIES.items():
        with open(os.path.join(EXPECTED, f"{name}.sql"), "w") as f:
            f.write(sql + "\n")


def main():
    write_queries()
    for name in sys.argv[1:] or list(QUERIES):
        planned_as, sql = QUERIES[name]
        sys.argv = [sys.argv[0], name]
        regenerate({name: sql}, EXPECTED, planned_as, changelog="final")


if __name__ == "__main__":
    main()
