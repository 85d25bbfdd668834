#!/usr/bin/env python3
"""Writes tests/data/interval_join/{orders,payments}.json, the inputs of the
interval-join tests (expected results: scripts/flink/interval_join.py).

    python3 scripts/flink/gen_interval_join_data.py

Deterministic (seeded, standard library only): rerunning it rewrites the same
bytes. Newline-delimited JSON, timestamps as "yyyy-MM-dd HH:mm:ss.SSS" (Flink's
json format with 'json.timestamp-format.standard' = 'SQL').

orders   (order_id BIGINT, user_id BIGINT, amount BIGINT, ts TIMESTAMP(3)): 300 rows
payments (payment_id BIGINT, order_id BIGINT, paid BIGINT, ts TIMESTAMP(3)): ~250 rows

Timestamps span about 20 minutes from 2024-01-01 00:00:00 (a few late payments go
further). Each file is in time order except that about 15% of rows are delayed
by up to 3 seconds (less than the tables' 5-second watermark delay, so no row is
behind its own table's watermark). The data has: orders with no payment, with
one, with two; payments for unknown orders; payments with a NULL order_id;
payments before the order; payments far outside the join intervals; payments
exactly on the interval bounds (BETWEEN's inclusive ends, +1 ms past them, the
strict query's exclusive ends); paid below, equal to and above the amount.
"""

import datetime
import json
import os
import random

SEED = 20240101
START = datetime.datetime(2024, 1, 1, 0, 0, 0)
N_ORDERS = 300
MS = datetime.timedelta(milliseconds=1)


def fmt(t):
    return t.strftime("%Y-%m-%d %H:%M:%S.") + f"{t.microsecond // 1000:03d}"


def arrival_order(rows, rng):
    """Sorts rows by ts, then delays about 15% of them by up to 3 s."""
    keyed = []
    for i, r in enumerate(sorted(rows, key=lambda r: (r["ts"], r["_seq"]))):
        delay = rng.randint(1, 3000) if rng.random() < 0.15 else 0
        keyed.append((r["ts"] + delay * MS, i, r))
    keyed.sort(key=lambda k: (k[0], k[1]))
    return [k[2] for k in keyed]


def main():
    rng = random.Random(SEED)
    orders = []
    t = START
    for i in range(N_ORDERS):
        t += rng.randint(1000, 7000) * MS  # about 4 s apart: ~20 minutes
        orders.append({"order_id": i + 1, "user_id": rng.randint(1, 20),
                       "amount": rng.randint(1, 50) * 10, "ts": t, "_seq": i})

    payments = []

    def pay(order_id, paid, ts):
        payments.append({"order_id": order_id, "paid": paid, "ts": ts, "_seq": len(payments)})

    # Offsets from the order's time, in ms, and what they exercise.
    boundary = [
        0,                       # BETWEEN's lower end, inclusive
        600_000,                 # BETWEEN's upper end (+10 min), inclusive
        600_001,                 # 1 ms past it
        -1,                      # 1 ms before the order
        -30_000,                 # strict lower end (-30 s), excluded
        -29_999,                 # just inside it
        120_000,                 # strict upper end (+2 min), excluded
        119_999,                 # just inside it
    ]
    b = 0
    for o in orders:
        amount = o["amount"]

        def paid():
            x = rng.random()
            if x < 0.70:
                return amount
            if x < 0.85:
                return max(0, amount - rng.randint(1, 5) * 10)  # short
            return amount + rng.randint(1, 5) * 10               # over

        def offset():
            x = rng.random()
            if x < 0.70:
                return rng.randint(0, 90_000)                     # normal: within 90 s
            if x < 0.80:
                return rng.randint(90_001, 599_999)               # late but inside 10 min
            if x < 0.90:
                return -rng.randint(1, 45_000)                    # before the order
            return rng.randint(600_001, 900_000)                  # far after: outside

        x = rng.random()
        if o["order_id"] % 10 == 3:  # every tenth order: a boundary case
            pay(o["order_id"], paid(), o["ts"] + boundary[b % len(boundary)] * MS)
            b += 1
        elif x < 0.36:
            pass                                                  # no payment
        elif x < 0.92:
            pay(o["order_id"], paid(), o["ts"] + offset() * MS)
        else:
            pay(o["order_id"], paid(), o["ts"] + offset() * MS)   # two payments
            pay(o["order_id"], paid(), o["ts"] + offset() * MS)

    end = orders[-1]["ts"]
    for k in range(12):  # payments for orders that do not exist
        pay(1000 + k, rng.randint(1, 50) * 10, START + rng.randint(0, int((end - START) / MS)) * MS)
    for k in range(2):   # payments with a NULL order_id
        pay(None, rng.randint(1, 50) * 10, START + rng.randint(0, int((end - START) / MS)) * MS)
    # payments timed before any order (from the source's start)
    pay(1, 100, START)

    for i, p in enumerate(sorted(payments, key=lambda p: (p["ts"], p["_seq"]))):
        p["payment_id"] = i + 1

    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "data", "interval_join")
    out = os.path.normpath(out)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "orders.json"), "w") as f:
        for o in arrival_order(orders, rng):
            f.write(json.dumps({"order_id": o["order_id"], "user_id": o["user_id"],
                                "amount": o["amount"], "ts": fmt(o["ts"])}) + "\n")
    with open(os.path.join(out, "payments.json"), "w") as f:
        for p in arrival_order(payments, rng):
            f.write(json.dumps({"payment_id": p["payment_id"], "order_id": p["order_id"],
                                "paid": p["paid"], "ts": fmt(p["ts"])}) + "\n")
    print(f"{len(orders)} orders, {len(payments)} payments -> {out}")


if __name__ == "__main__":
    main()
