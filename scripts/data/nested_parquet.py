#!/usr/bin/env python3
"""Writes tests/data/collections/events.parquet: the events of events.json as a
Parquet file of nested columns written by pyarrow (not by Eddy), so the tests
read lists, maps and structs named as the Parquet spec names them
(`element`, `key_value`) rather than as arrow-rs does.

    /tmp/flinkvenv/bin/python scripts/data/nested_parquet.py   # pyarrow comes with apache-flink
"""

import json
import os

import pyarrow as pa
import pyarrow.parquet as pq

root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
folder = os.path.join(root, "tests", "data", "collections")
with open(os.path.join(folder, "events.json")) as f:
    events = [json.loads(line) for line in f if line.strip()]
schema = pa.schema(
    [
        ("id", pa.int64()),
        ("tags", pa.list_(pa.string())),
        ("attrs", pa.map_(pa.string(), pa.string())),
        ("pos", pa.struct([("lat", pa.float64()), ("lon", pa.float64())])),
    ]
)
rows = {
    "id": [e["id"] for e in events],
    "tags": [e["tags"] for e in events],
    "attrs": [None if e["attrs"] is None else list(e["attrs"].items()) for e in events],
    "pos": [e["pos"] for e in events],
}
table = pa.table(rows, schema=schema)
pq.write_table(table, os.path.join(folder, "events.parquet"), use_compliant_nested_type=True)
print(pq.read_schema(os.path.join(folder, "events.parquet")))
