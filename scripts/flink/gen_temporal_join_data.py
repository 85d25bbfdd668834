#!/usr/bin/env python3
"""Writes tests/data/temporal_join/levels.json, the versioned side of the
temporal-join tests (the orders are tests/data/interval_join/orders.json;
expected results: scripts/flink/temporal_join.py).

    python3 scripts/flink/gen_temporal_join_data.py

Deterministic (seeded, standard library only). levels (user_id BIGINT, level
STRING, discount BIGINT, ts TIMESTAMP(3)): each user's loyalty level changes a
few times over the orders' 20 minutes. The data has: users 1 to 17 with a first
version before their first order, users 18 and 19 whose first version comes in
the middle of their orders (earlier orders find none), user 20 with no version
at all; versions exactly at an order's time (a version applies from its time on,
inclusive) and 1 ms after one; versions in arrival order except that about 15%
are delayed by up to 3 seconds (less than the 5-second watermark delay); and a
few stale versions that arrive after a newer one of the same user (deduplication
keeping the last row drops them, in Flink as in Eddy).
"""

import datetime
import json
import os
import random

SEED = 20240102
START = datetime.datetime(2024, 1, 1, 0, 0, 0)
MS = datetime.timedelta(milliseconds=1)
ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
ORDERS = os.path.join(ROOT, "tests", "data", "interval_join", "orders.json")
OUT = os.path.join(ROOT, "tests", "data", "temporal_join", "levels.json")
LEVELS = ["bronze", "silver", "gold", "platinum"]


def parse(ts):
    return datetime.datetime.strptime(ts, "%Y-%m-%d %H:%M:%S.%f")


def fmt(t):
    return t.strftime("%Y-%m-%d %H:%M:%S.") + f"{t.microsecond // 1000:03d}"


def main():
    rng = random.Random(SEED)
    orders = [json.loads(l) for l in open(ORDERS)]
    by_user = {}
    for o in orders:
        by_user.setdefault(o["user_id"], []).append(parse(o["ts"]))
    versions = []
    for user, times in sorted(by_user.items()):
        times.sort()
        if user == 20:
            continue
        if user in (18, 19):
            first = times[len(times) // 2]
        else:
            first = times[0] - datetime.timedelta(seconds=rng.randint(1, 30))
        t = first
        for n in range(rng.randint(2, 5)):
            versions.append({"user_id": user, "level": LEVELS[min(n, 3)], "discount": 5 * (n + 1), "ts": t})
            t += datetime.timedelta(milliseconds=rng.randint(60_000, 400_000))
        # A version exactly at one of the user's orders, and one 1 ms after another.
        on = rng.choice(times)
        versions.append({"user_id": user, "level": "on-order", "discount": 42, "ts": on})
        after = rng.choice(times) + MS
        versions.append({"user_id": user, "level": "just-after", "discount": 43, "ts": after})
    versions.sort(key=lambda v: (v["ts"], v["user_id"]))
    arrival = []
    for i, v in enumerate(versions):
        delay = rng.randint(1, 3000) if rng.random() < 0.15 else 0
        arrival.append((v["ts"] + delay * MS, i, v))
    arrival.sort(key=lambda a: (a[0], a[1]))
    rows = [a[2] for a in arrival]
    # Stale versions: a user's first level sent again just after the second.
    for user in (3, 7, 11):
        mine = [i for i, v in enumerate(rows) if v["user_id"] == user]
        if len(mine) >= 2:
            stale = dict(rows[mine[0]], level="stale", discount=99)
            rows.insert(mine[1] + 1, stale)
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        for v in rows:
            f.write(json.dumps({"user_id": v["user_id"], "level": v["level"], "discount": v["discount"], "ts": fmt(v["ts"])}) + "\n")
    print(f"{len(rows)} versions -> {OUT}")


if __name__ == "__main__":
    main()
