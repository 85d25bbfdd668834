//! `eddy server --flight`: the ADBC Flight SQL driver (adbc-driver-flightsql,
//! from PyPI) against the real `eddy` binary over loopback. The clients are
//! installed by `scripts/flight-clients/setup` (idempotent), which these tests
//! run; `EDDY_FLIGHT_PYTHON` names a Python that has them instead.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use common::{bids_table, wait_finished, Server};

/// The Python with pyarrow and the ADBC Flight SQL driver.
fn python() -> &'static str {
    static PYTHON: OnceLock<String> = OnceLock::new();
    PYTHON.get_or_init(|| {
        if let Some(python) = std::env::var_os("EDDY_FLIGHT_PYTHON") {
            return python.to_string_lossy().into_owned();
        }
        let output = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/flight-clients/setup")).output().unwrap();
        assert!(output.status.success(), "scripts/flight-clients/setup failed: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap().trim().to_string()
    })
}

/// A server with Flight SQL on a free port, and its `grpc://` URI.
fn flight_server(data: &Path, extra: &[&str]) -> (Server, String) {
    python();
    let mut args = vec!["--flight", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let server = Server::start(data, &args);
    let address = server
        .banner
        .split("flight on ")
        .nth(1)
        .and_then(|rest| rest.split([',', ')']).next())
        .unwrap_or_else(|| panic!("the server does not name its flight address: {}", server.banner))
        .to_string();
    (server, format!("grpc://{address}"))
}

/// What every script starts with: the driver, and `connect(**db_kwargs)` to the server in argv[1].
const PRELUDE: &str = r#"
import sys, json
import pyarrow as pa, pyarrow.compute as pc
import adbc_driver_flightsql.dbapi as flight_sql
uri = sys.argv[1]
def connect(**db_kwargs):
    return flight_sql.connect(uri, db_kwargs=db_kwargs, autocommit=True)
"#;

/// Runs `script` (after [`PRELUDE`]) with `args` after the URI: (success, stdout, stderr).
fn run_python(uri: &str, script: &str, args: &[&str]) -> (bool, String, String) {
    let output = Command::new(python()).arg("-c").arg(format!("{PRELUDE}{script}")).arg(uri).args(args).output().unwrap();
    (output.status.success(), String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned())
}

/// [`run_python`], which must succeed; its stdout.
fn python_ok(uri: &str, script: &str, args: &[&str]) -> String {
    let (ok, stdout, stderr) = run_python(uri, script, args);
    assert!(ok, "the Flight client failed:\n{stderr}\nstdout:\n{stdout}");
    stdout
}

/// The rows of `eddy sql --csv` without the header.
fn csv_rows(csv: &str) -> Vec<String> {
    csv.lines().skip(1).map(str::to_string).collect()
}

/// ADBC runs the DDL, builds a 1,000,000-row materialized view with a column of
/// every type, reads it whole, and its per-column figures (counts, nulls, sums,
/// extremes) and a sample of rows equal gRPC's answer for the same view.
#[test]
fn adbc_reads_a_million_row_view_of_every_type_as_grpc_does() {
    let data = tempfile::tempdir().unwrap();
    let (server, uri) = flight_server(data.path(), &[]);
    let ddl = "CREATE TABLE gen (id BIGINT, big BIGINT, i4 INT, f8 DOUBLE, num DECIMAL(12, 2), b BOOLEAN, s STRING, d DATE, ts TIMESTAMP(3))
        WITH ('connector' = 'datagen', 'number-of-rows' = '1000000', 'rows-per-second' = '0', 'fields.id.kind' = 'sequence',
              'fields.big.min' = '-1000000000000', 'fields.big.max' = '1000000000000', 'fields.i4.min' = '-1000000', 'fields.i4.max' = '1000000',
              'fields.f8.min' = '-1000', 'fields.f8.max' = '1000', 'fields.num.min' = '0', 'fields.num.max' = '99999',
              'fields.s.length' = '12', 'fields.s.null-rate' = '0.01', 'fields.i4.null-rate' = '0.01',
              'fields.d.max-past' = '315360000000', 'fields.ts.max-past' = '315360000000');
        CREATE MATERIALIZED VIEW wide AS SELECT id, big, i4, f8, num, b, s, CAST(s AS BYTEA) AS raw, d, ts FROM gen";
    let script = r#"
conn = connect()
cur = conn.cursor()
cur.execute(sys.argv[2])
cur.fetchall()
import time
deadline = time.time() + 120
while True:
    cur.execute("SHOW PIPELINES")
    rows = cur.fetchall()
    if any("FINISHED" in [str(v) for v in row] for row in rows): break
    assert time.time() < deadline, rows
    time.sleep(0.2)
cur.execute("SELECT * FROM wide")
t = cur.fetch_arrow_table()
types = {f.name: str(f.type) for f in t.schema}
def sum_of(col):
    v = pc.sum(t[col]).as_py()
    return v
ts_ms = t["ts"].cast(pa.int64())
d_days = t["d"].cast(pa.int32())
figures = {
    "n": t.num_rows,
    "ids": [pc.min(t["id"]).as_py(), pc.max(t["id"]).as_py(), pc.count_distinct(t["id"]).as_py(), sum_of("id")],
    "big": sum_of("big"), "i4": sum_of("i4"), "i4_nulls": t["i4"].null_count,
    "f8": sum_of("f8"), "num": str(sum_of("num")),
    "b": pc.sum(t["b"].cast(pa.int64())).as_py(),
    "s_chars": pc.sum(pc.utf8_length(t["s"])).as_py(), "s_nulls": t["s"].null_count,
    "s_min": pc.min(t["s"]).as_py(), "s_max": pc.max(t["s"]).as_py(),
    "raw_bytes": pc.sum(pc.binary_length(t["raw"])).as_py(),
    "d": [pc.min(d_days).as_py(), pc.max(d_days).as_py(), pc.sum(d_days.cast(pa.int64())).as_py()],
    "ts": [pc.min(ts_ms).as_py(), pc.max(ts_ms).as_py(), pc.sum(ts_ms).as_py()],
}
sample = t.filter(pc.equal(pc.bit_wise_and(t["id"], 0x3ffff), 0)).sort_by("id")
def show(v):
    if v is None: return ""
    if isinstance(v, bool): return "true" if v else "false"
    if isinstance(v, bytes): return v.hex()
    return str(v)
print(json.dumps({"types": types, "figures": figures}))
for row in sample.to_pylist():
    print("|".join(show(row[c]) for c in sample.column_names))
"#;
    let stdout = python_ok(&uri, script, &[ddl]);
    let mut lines = stdout.lines();
    let answer: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    let sample: Vec<&str> = lines.collect();

    // Every column arrives with its Arrow type, as the view keeps it.
    let types = &answer["types"];
    for (column, arrow) in [
        ("id", "int64"),
        ("big", "int64"),
        ("i4", "int32"),
        ("f8", "double"),
        ("num", "decimal128(12, 2)"),
        ("b", "bool"),
        ("s", "string"),
        ("raw", "binary"),
        ("d", "date32[day]"),
        ("ts", "timestamp[ms]"),
    ] {
        assert_eq!(types[column], arrow, "column {column}: {types}");
    }

    // The same figures from gRPC, computed by the server over the same view.
    let grpc = server.ok_csv(
        "SELECT COUNT(*), MIN(id), MAX(id), COUNT(DISTINCT id), SUM(id), SUM(big), SUM(CAST(i4 AS BIGINT)), COUNT(*) - COUNT(i4),
                SUM(f8), SUM(num), SUM(CASE WHEN b THEN 1 ELSE 0 END), SUM(CHAR_LENGTH(s)), COUNT(*) - COUNT(s), MIN(s), MAX(s),
                SUM(OCTET_LENGTH(CAST(raw AS VARCHAR))),
                MIN(arrow_cast(d, 'Int32')), MAX(arrow_cast(d, 'Int32')), SUM(arrow_cast(arrow_cast(d, 'Int32'), 'Int64')),
                MIN(arrow_cast(ts, 'Int64')), MAX(arrow_cast(ts, 'Int64')), SUM(arrow_cast(ts, 'Int64'))
         FROM wide",
    );
    let grpc: Vec<String> = csv_rows(&grpc)[0].split(',').map(str::to_string).collect();
    let f = &answer["figures"];
    let flight: Vec<String> = [
        f["n"].to_string(),
        f["ids"][0].to_string(),
        f["ids"][1].to_string(),
        f["ids"][2].to_string(),
        f["ids"][3].to_string(),
        f["big"].to_string(),
        f["i4"].to_string(),
        f["i4_nulls"].to_string(),
        String::new(), // f8: compared below, within rounding
        f["num"].as_str().unwrap().to_string(),
        f["b"].to_string(),
        f["s_chars"].to_string(),
        f["s_nulls"].to_string(),
        f["s_min"].as_str().unwrap().to_string(),
        f["s_max"].as_str().unwrap().to_string(),
        f["raw_bytes"].to_string(),
        f["d"][0].to_string(),
        f["d"][1].to_string(),
        f["d"][2].to_string(),
        f["ts"][0].to_string(),
        f["ts"][1].to_string(),
        f["ts"][2].to_string(),
    ]
    .into_iter()
    .collect();
    assert_eq!(grpc.len(), flight.len(), "gRPC: {grpc:?}");
    assert_eq!(f["n"], 1_000_000);
    assert_eq!(f["ids"], serde_json::json!([0, 999_999, 1_000_000, 499_999_500_000i64]));
    assert!(f["i4_nulls"].as_u64().unwrap() > 0 && f["s_nulls"].as_u64().unwrap() > 0, "some values are null: {f}");
    for (i, (g, fl)) in grpc.iter().zip(&flight).enumerate() {
        if i == 8 {
            let (g, fl): (f64, f64) = (g.parse().unwrap(), f["f8"].as_f64().unwrap());
            assert!((g - fl).abs() <= 1e-6 * g.abs().max(1.0), "SUM(f8): gRPC {g}, Flight {fl}");
        } else {
            assert_eq!(g, fl, "figure {i}: gRPC {grpc:?}\nFlight {flight:?}");
        }
    }

    // A sample of whole rows (every 262,144th id), as gRPC prints them.
    let grpc_sample = server.ok_csv("SELECT id, big, i4, f8, num, b, s, raw, d, arrow_cast(ts, 'Int64') AS ts FROM wide WHERE id % 262144 = 0 ORDER BY id");
    let grpc_sample = csv_rows(&grpc_sample);
    assert_eq!(sample.len(), 4);
    assert_eq!(grpc_sample.len(), sample.len(), "gRPC sample: {grpc_sample:?}");
    for (flight_row, grpc_row) in sample.iter().zip(&grpc_sample) {
        let flight: Vec<&str> = flight_row.split('|').collect();
        let grpc: Vec<&str> = grpc_row.split(',').collect();
        assert_eq!(flight.len(), 10, "{flight_row}");
        // id, big, i4, num, b, s and d print alike; f8 within rounding; raw as hex; ts as epoch ms vs a datetime.
        for i in [0, 1, 2, 4, 5, 6, 8] {
            assert_eq!(flight[i], grpc[i], "column {i}: Flight {flight_row} vs gRPC {grpc_row}");
        }
        let (ff, gf): (f64, f64) = (flight[3].parse().unwrap(), grpc[3].parse().unwrap());
        assert!((ff - gf).abs() <= 1e-9 * gf.abs().max(1.0), "f8: Flight {flight_row} vs gRPC {grpc_row}");
        assert!(grpc[7].trim_start_matches("\\x").eq_ignore_ascii_case(flight[7]), "raw: Flight {flight_row} vs gRPC {grpc_row}");
    }
}

/// A prepared statement with a `$1` parameter, bound twice to different values
/// (an integer, then a string): each answer is gRPC's for the literal query.
#[test]
fn adbc_binds_a_prepared_statement_parameter() {
    let data = tempfile::tempdir().unwrap();
    let (server, uri) = flight_server(data.path(), &[]);
    server.ok(&bids_table());
    server.ok("CREATE MATERIALIZED VIEW counts AS SELECT auction, COUNT(*) AS n, MAX(price) AS best, CONCAT('a-', CAST(auction AS STRING)) AS label FROM bids GROUP BY auction");
    wait_finished(&server, 1);
    let script = r#"
conn = connect()
cur = conn.cursor()
for query, value in [("SELECT auction, n, best FROM counts WHERE auction = $1", int(sys.argv[2])),
                     ("SELECT auction, n, best FROM counts WHERE auction = $1", int(sys.argv[3])),
                     ("SELECT auction, n, best FROM counts WHERE label = $1 ORDER BY auction", "a-" + sys.argv[2])]:
    cur.execute(query, (value,))
    for row in cur.fetchall():
        print(",".join(str(v) for v in row))
    print("--")
"#;
    let auctions: Vec<String> = csv_rows(&server.ok_csv("SELECT auction FROM counts ORDER BY auction")).into_iter().take(2).collect();
    assert_eq!(auctions.len(), 2);
    let stdout = python_ok(&uri, script, &[&auctions[0], &auctions[1]]);
    let answers: Vec<&str> = stdout.split("--\n").collect();
    for (answer, auction) in answers.iter().zip([&auctions[0], &auctions[1], &auctions[0]]) {
        let grpc = csv_rows(&server.ok_csv(&format!("SELECT auction, n, best FROM counts WHERE auction = {auction}")));
        assert_eq!(grpc.len(), 1);
        assert_eq!(answer.lines().collect::<Vec<_>>(), vec![grpc[0].as_str()], "auction {auction}:\n{stdout}");
    }
}

/// `GetTables` (ADBC's `adbc_get_objects`) lists the tables, views and
/// materialized views with their columns; `GetTableTypes` names the kinds.
#[test]
fn get_tables_lists_tables_and_views_with_their_schemas() {
    let data = tempfile::tempdir().unwrap();
    let (server, uri) = flight_server(data.path(), &[]);
    server.ok(&bids_table());
    server.ok("CREATE MATERIALIZED VIEW counts AS SELECT auction, COUNT(*) AS n FROM bids GROUP BY auction");
    server.ok("CREATE VIEW dear AS SELECT auction, price FROM bids WHERE price > 100");
    wait_finished(&server, 1);
    let script = r#"
conn = connect()
objects = conn.adbc_get_objects(depth="all").read_all().to_pylist()
for catalog in objects:
    for schema in catalog["catalog_db_schemas"]:
        for table in sorted(schema["db_schema_tables"], key=lambda t: t["table_name"]):
            columns = " ".join(c["column_name"] for c in table["table_columns"])
            print(f'{catalog["catalog_name"]}.{schema["db_schema_name"]}.{table["table_name"]}|{table["table_type"]}|{columns}')
print("schema:", conn.adbc_get_table_schema("counts"))
print("types:", sorted(conn.adbc_get_table_types()))
"#;
    let stdout = python_ok(&uri, script, &[]);
    assert!(stdout.contains("eddy.public.bids|TABLE|auction bidder price ts\n"), "{stdout}");
    assert!(stdout.contains("eddy.public.counts|MATERIALIZED VIEW|auction n\n"), "{stdout}");
    assert!(stdout.contains("eddy.public.dear|VIEW|auction price\n"), "{stdout}");
    assert!(stdout.contains("schema: auction: int64") && stdout.contains("n: int64"), "{stdout}");
    assert!(stdout.contains("types: ['MATERIALIZED VIEW', 'TABLE', 'VIEW']"), "{stdout}");
}

/// With `--token`, a call without it or with a wrong one is refused as
/// unauthenticated; the right one works as a bearer token and as a login's password.
#[test]
fn a_token_server_refuses_wrong_tokens_and_takes_the_right_one() {
    let data = tempfile::tempdir().unwrap();
    let (_server, uri) = flight_server(data.path(), &["--token", "s3cret"]);
    let script = r#"
how = sys.argv[2]
kwargs = {
    "none": {},
    "wrong": {"adbc.flight.sql.authorization_header": "Bearer guess"},
    "bearer": {"adbc.flight.sql.authorization_header": "Bearer s3cret"},
    "login": {"username": "anyone", "password": "s3cret"},
    "bad-login": {"username": "anyone", "password": "guess"},
}[how]
try:
    with connect(**kwargs) as conn:
        cur = conn.cursor()
        cur.execute("SELECT 40 + 2 AS answer")
        print("rows", cur.fetchall())
except Exception as e:
    print("error", type(e).__name__, e)
"#;
    for how in ["none", "wrong", "bad-login"] {
        let stdout = python_ok(&uri, script, &[how]);
        assert!(stdout.starts_with("error") && stdout.contains("Unauthenticated"), "{how}: {stdout}");
        let expected = if how == "none" { "needs a token" } else { "wrong token" };
        assert!(stdout.contains(expected), "{how}: {stdout}");
    }
    for how in ["bearer", "login"] {
        let stdout = python_ok(&uri, script, &[how]);
        assert_eq!(stdout.trim(), "rows [(42,)]", "{how}");
    }
}

/// A syntax error arrives as an error that names the problem and where, and the
/// server (and the same connection) answers the next statement.
#[test]
fn a_syntax_error_names_the_problem_and_the_server_goes_on() {
    let data = tempfile::tempdir().unwrap();
    let (server, uri) = flight_server(data.path(), &[]);
    let script = r#"
conn = connect()
cur = conn.cursor()
for query in ["SELEC 1", "SELECT 1 +", "SELECT * FROM nowhere"]:
    try:
        cur.execute(query)
        print("rows", cur.fetchall())
    except Exception as e:
        print("error", type(e).__name__, str(e).replace("\n", " "))
cur.execute("SELECT 40 + 2 AS answer")
print("rows", cur.fetchall())
"#;
    let stdout = python_ok(&uri, script, &[]);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{stdout}");
    assert!(lines[0].starts_with("error ProgrammingError") && lines[0].contains("SELEC") && lines[0].contains("line 1"), "{stdout}");
    assert!(lines[1].starts_with("error ProgrammingError"), "{stdout}");
    assert!(lines[2].starts_with("error") && lines[2].contains("nowhere"), "{stdout}");
    assert_eq!(lines[3], "rows [(42,)]");
    // And gRPC still answers too.
    assert!(server.ok("SELECT 1").contains('1'));
}

/// Without prepared statements: ADBC's `ExecuteUpdate` (`CommandStatementUpdate`)
/// runs DDL and answers 0 rows changed, and plain pyarrow (its Flight client
/// with a hand-built `CommandStatementQuery`, as docs/FLIGHT.md shows) reads a
/// view as gRPC does.
#[test]
fn unprepared_updates_and_queries_run_through_the_dispatcher() {
    let data = tempfile::tempdir().unwrap();
    let (server, uri) = flight_server(data.path(), &[]);
    server.ok(&bids_table());
    let update = r#"
conn = connect()
cur = conn.cursor()
stmt = cur.adbc_statement
stmt.set_sql_query(sys.argv[2])
print("changed", stmt.execute_update())
"#;
    let stdout = python_ok(&uri, update, &["CREATE MATERIALIZED VIEW counts AS SELECT auction, COUNT(*) AS n FROM bids GROUP BY auction"]);
    assert_eq!(stdout.trim(), "changed 0");
    wait_finished(&server, 1);
    let (ok, _, stderr) = run_python(&uri, update, &["CREATE VIEW broken AS SELEC 1"]);
    assert!(!ok && stderr.contains("SELEC"), "{stderr}");

    let query = r#"
import pyarrow.flight as flight
def command_statement_query(sql):
    def field(number, payload):
        out = b""
        for value in ((number << 3) | 2, len(payload)):
            while True:
                byte, value = value & 0x7F, value >> 7
                out += bytes([byte | (0x80 if value else 0)])
                if not value:
                    break
        return out + payload
    return field(1, b"type.googleapis.com/arrow.flight.protocol.sql.CommandStatementQuery") + field(2, field(1, sql.encode()))
client = flight.FlightClient(uri)
info = client.get_flight_info(flight.FlightDescriptor.for_command(command_statement_query(sys.argv[2])))
print(info.schema.to_string(show_schema_metadata=False).replace("\n", " "))
for row in client.do_get(info.endpoints[0].ticket).read_all().to_pylist():
    print(",".join(str(v) for v in row.values()))
"#;
    let sql = "SELECT auction, n FROM counts ORDER BY auction";
    let stdout = python_ok(&uri, query, &[sql]);
    let mut lines = stdout.lines();
    assert!(lines.next().unwrap().starts_with("auction: int64 n: int64"), "{stdout}");
    assert_eq!(lines.map(str::to_string).collect::<Vec<_>>(), csv_rows(&server.ok_csv(sql)));
}
