#!/usr/bin/env python3
"""Regenerates tests/data/nexmark/<query>.txt: Apache Flink's own results for the
published Nexmark queries over the events Eddy's Nexmark generator makes: those
that need no join (q10, q14, q15, q16, q17, q21, q22) over its bids, and the join
and Top-N queries (q3, q4, q7, q8, q9, q19, q20) over its bids, auctions and
people (generate_tables.sql and tables.sql, the same way as the bids below).

    python3 -m venv /tmp/flinkvenv && /tmp/flinkvenv/bin/pip install apache-flink==2.3.0   # needs Java 17
    /tmp/flinkvenv/bin/python scripts/flink/nexmark_queries.py        # every query (or name some: q15 q17)

The bids: `eddy run tests/data/nexmark/generate.sql` ('{path}' replaced by a
temporary directory) writes them as JSON lines, exactly as tests/nexmark_e2e.rs
does before each query, so Flink and Eddy read the same events. The `eddy` binary
is $EDDY_BIN when set, else `cargo run -p eddy` (which builds it).

The queries: tests/data/nexmark/<query>.sql, the SELECT of each published query
(nexmark/nexmark, nexmark-flink/src/main/resources/queries/), over the `bid`
table of tests/data/nexmark/bid.sql (Nexmark's bid columns and watermark, here
over the JSON file; Flink reads it with 'json.timestamp-format.standard' = 'SQL').
The .sql files say where they depart from the published text (q10's partitioned
sink, q14's UDF).

Each query runs in streaming mode, parallelism 1, session time zone UTC. The
grouped queries (q15, q16, q17) are updating: their changelog is applied and the
final rows written, which do not depend on how Flink batched its changes. As a
cross-check every query also runs in batch mode, and the script stops if the two
results differ.

Output files: one result row per line, values joined by ',', NULL as `null`,
timestamps as `yyyy-MM-dd HH:mm:ss.SSS`, DECIMALs as Java prints them, lines
sorted (Python string order); the value formatting is that of
scripts/flink/interval_join.py.
"""

import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from interval_join import FLINK_VERSION, ROOT, final_state, run  # noqa: E402

DATA = os.path.join(ROOT, "tests", "data", "nexmark")
# Each set of events: the script that generates it, the DDL over it, its queries.
DATASETS = [
    ("generate.sql", "bid.sql", ["q10", "q14", "q15", "q16", "q17", "q21", "q22"]),
    ("generate_tables.sql", "tables.sql", ["q3", "q4", "q7", "q8", "q9", "q19", "q20"]),
]

# Queries whose streaming result Flink sends as upserts (+U without -U): the
# positions of the columns they are keyed by. q9's Top-1 without its row number
# is keyed by its partition, the auction's id.
UPSERT_KEYS = {"q9": [0]}


def upserted(changes, key):
    """The rows left once upserts keyed by the columns at `key` are applied in order."""
    rows = {}
    for kind, line in changes:
        values = line.split(",")
        k = tuple(values[i] for i in key)
        if kind in ("+I", "+U"):
            rows[k] = line
        elif kind == "-D":
            rows.pop(k, None)
        else:
            sys.exit(f"an upsert stream with a {kind} row: {line}")
    return list(rows.values())


def generate(script_name, out_dir):
    """Writes the events to `out_dir` with `eddy run` of `script_name`."""
    with open(os.path.join(DATA, script_name)) as f:
        script = f.read().replace("{path}", out_dir)
    path = os.path.join(os.path.dirname(out_dir), script_name)
    with open(path, "w") as f:
        f.write(script)
    eddy = os.environ.get("EDDY_BIN")
    command = [eddy] if eddy else ["cargo", "run", "--quiet", "-p", "eddy", "--"]
    subprocess.run(command + ["run", "--parallelism", "1", "--progress-secs", "0", path], cwd=ROOT, check=True)
    lines = sum(1 for root, _, files in os.walk(out_dir) for name in files for _ in open(os.path.join(root, name)))
    print(f"eddy generated {lines} events with {script_name}")


def statements(text):
    """The SQL statements of a script: comment lines dropped, split at ';'."""
    code = "\n".join(line for line in text.splitlines() if not line.strip().startswith("--"))
    return [s.strip() for s in code.split(";") if s.strip()]


def table_env(streaming, ddl_name, events_dir):
    from pyflink.table import EnvironmentSettings, TableEnvironment
    settings = EnvironmentSettings.in_streaming_mode() if streaming else EnvironmentSettings.in_batch_mode()
    t_env = TableEnvironment.create(settings)
    conf = t_env.get_config()
    conf.set("parallelism.default", "1")
    conf.set("table.local-time-zone", "UTC")
    with open(os.path.join(DATA, ddl_name)) as f:
        ddl = f.read().replace("{path}", events_dir)
    json_format = "'format' = 'json'"
    assert json_format in ddl, f"{ddl_name}: no 'format' = 'json'"
    ddl = ddl.replace(json_format, json_format + ", 'json.timestamp-format.standard' = 'SQL'")
    for statement in statements(ddl):
        t_env.execute_sql(statement)
    return t_env


def main():
    from importlib.metadata import version
    if version("apache-flink") != FLINK_VERSION:
        print(f"note: these files were made with Flink {FLINK_VERSION}, this is {version('apache-flink')}")
    wanted = sys.argv[1:]
    for generator, ddl, queries in DATASETS:
        names = [q for q in queries if not wanted or q in wanted]
        if not names:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            events_dir = os.path.join(tmp, "events")
            os.makedirs(events_dir)
            generate(generator, events_dir)
            stream = table_env(True, ddl, events_dir)
            batch = table_env(False, ddl, events_dir)
            for name in names:
                with open(os.path.join(DATA, f"{name}.sql")) as f:
                    sql = statements(f.read())[0]
                changes = run(stream, sql)
                kinds = sorted({k for k, _ in changes})
                if "+U" in kinds and "-U" not in kinds:
                    lines = sorted(upserted(changes, UPSERT_KEYS[name]))
                else:
                    lines = sorted(l for _, l in final_state(changes))
                relational = sorted(l for _, l in run(batch, sql))
                if lines != relational:
                    only_s = sorted(set(lines) - set(relational))[:10]
                    only_b = sorted(set(relational) - set(lines))[:10]
                    sys.exit(f"{name}: streaming differs from batch: only streaming {only_s}, only batch {only_b}")
                with open(os.path.join(DATA, f"{name}.txt"), "w") as f:
                    for l in lines:
                        f.write(l + "\n")
                print(f"{name}: {len(lines)} rows (streaming changelog kinds {kinds}, applied), batch agrees")


if __name__ == "__main__":
    main()
