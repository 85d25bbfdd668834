#!/usr/bin/env python3
"""Regenerates tests/data/nexmark/<query>.txt: Apache Flink's own results for the
published Nexmark queries that need no join (q10, q14, q15, q16, q17, q21, q22)
over the bids Eddy's Nexmark generator makes.

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
QUERIES = ["q10", "q14", "q15", "q16", "q17", "q21", "q22"]


def generate(out_dir):
    """Writes the bids to `out_dir` with `eddy run` of generate.sql."""
    with open(os.path.join(DATA, "generate.sql")) as f:
        script = f.read().replace("{path}", out_dir)
    path = os.path.join(os.path.dirname(out_dir), "generate.sql")
    with open(path, "w") as f:
        f.write(script)
    eddy = os.environ.get("EDDY_BIN")
    command = [eddy] if eddy else ["cargo", "run", "--quiet", "-p", "eddy", "--"]
    subprocess.run(command + ["run", "--parallelism", "1", "--progress-secs", "0", path], cwd=ROOT, check=True)
    lines = sum(1 for name in os.listdir(out_dir) for _ in open(os.path.join(out_dir, name)))
    print(f"eddy generated {lines} bids")


def table_env(streaming, bids_dir):
    from pyflink.table import EnvironmentSettings, TableEnvironment
    settings = EnvironmentSettings.in_streaming_mode() if streaming else EnvironmentSettings.in_batch_mode()
    t_env = TableEnvironment.create(settings)
    conf = t_env.get_config()
    conf.set("parallelism.default", "1")
    conf.set("table.local-time-zone", "UTC")
    with open(os.path.join(DATA, "bid.sql")) as f:
        ddl = f.read().replace("{path}", bids_dir)
    json_format = "'format' = 'json'"
    assert json_format in ddl, "bid.sql: no 'format' = 'json'"
    ddl = ddl.replace(json_format, json_format + ", 'json.timestamp-format.standard' = 'SQL'")
    t_env.execute_sql(ddl.strip().rstrip(";"))
    return t_env


def main():
    from importlib.metadata import version
    if version("apache-flink") != FLINK_VERSION:
        print(f"note: these files were made with Flink {FLINK_VERSION}, this is {version('apache-flink')}")
    names = sys.argv[1:] or QUERIES
    with tempfile.TemporaryDirectory() as tmp:
        bids_dir = os.path.join(tmp, "bids")
        os.makedirs(bids_dir)
        generate(bids_dir)
        stream = table_env(True, bids_dir)
        batch = table_env(False, bids_dir)
        for name in names:
            with open(os.path.join(DATA, f"{name}.sql")) as f:
                sql = f.read().strip().rstrip(";")
            changes = run(stream, sql)
            kinds = sorted({k for k, _ in changes})
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
