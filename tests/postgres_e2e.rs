//! `eddy server --pg`: real Postgres clients (Debian's psql, psycopg 3 from PyPI,
//! tokio-postgres) against the real `eddy` binary over loopback. The clients are
//! installed by `scripts/postgres-clients/setup` (idempotent), which these tests run.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use common::{bids_table, wait_finished, Server};

/// The Python with psycopg 3, after psql and psycopg are installed.
fn python() -> &'static str {
    static PYTHON: OnceLock<String> = OnceLock::new();
    PYTHON.get_or_init(|| {
        if let Some(python) = std::env::var_os("EDDY_PG_PYTHON") {
            return python.to_string_lossy().into_owned();
        }
        let output = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/postgres-clients/setup")).output().unwrap();
        assert!(output.status.success(), "scripts/postgres-clients/setup failed: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap().trim().to_string()
    })
}

/// A server with the Postgres protocol on a free port, and that port's address.
fn pg_server(data: &Path, extra: &[&str]) -> (Server, String) {
    python();
    let mut args = vec!["--pg", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    postgres_address(Server::start(data, &args))
}

/// The server, and the address of its Postgres listener from its first line.
fn postgres_address(server: Server) -> (Server, String) {
    let address = server
        .banner
        .split("postgres on ")
        .nth(1)
        .and_then(|rest| rest.split([',', ')', ' ']).next())
        .unwrap_or_else(|| panic!("the server does not name its postgres address: {}", server.banner))
        .to_string();
    (server, address)
}

/// `psql ARGS` against `address` as user eddy (password `password`, if any), not started.
fn psql_command(address: &str, password: Option<&str>, args: &[&str]) -> Command {
    let (host, port) = address.rsplit_once(':').unwrap();
    let mut command = Command::new("psql");
    command.args(["-X", "-h", host, "-p", port, "-U", "eddy", "-d", "eddy", "-v", "ON_ERROR_STOP=1"]).args(args).env_remove("PGPASSWORD");
    if let Some(password) = password {
        command.env("PGPASSWORD", password);
    }
    command
}

/// `psql ARGS` against `address` as user eddy (password `password`, if any): (exit code, stdout, stderr).
fn psql(address: &str, password: Option<&str>, args: &[&str]) -> (i32, String, String) {
    let output = psql_command(address, password, args).output().expect("psql runs (scripts/postgres-clients/setup installs it)");
    (output.status.code().unwrap_or(-1), String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned())
}

/// `psql -c SQL` (more `-c`s may follow in `sql`), which must succeed; its stdout.
fn psql_ok(address: &str, args: &[&str]) -> String {
    let (code, stdout, stderr) = psql(address, None, args);
    assert_eq!(code, 0, "psql {args:?} failed: {stderr}");
    stdout
}

#[test]
fn psql_runs_ddl_reads_a_view_and_describes_the_catalog() {
    let data = tempfile::tempdir().unwrap();
    let (server, pg) = pg_server(data.path(), &[]);
    assert!(psql_ok(&pg, &["-c", &bids_table()]).contains("CREATE TABLE"));
    psql_ok(&pg, &["-c", "CREATE MATERIALIZED VIEW counts AS SELECT auction, COUNT(*) AS n, MAX(price) AS best FROM bids GROUP BY auction"]);
    psql_ok(&pg, &["-c", "CREATE VIEW dear AS SELECT auction, price FROM bids WHERE price > 100"]);
    wait_finished(&server, 1);

    // The same rows as gRPC's, in psql's CSV: counts per auction of tests/data/bids.json.
    let query = "SELECT auction, n, best FROM counts ORDER BY auction";
    let over_pg = psql_ok(&pg, &["--csv", "-c", query]);
    assert_eq!(over_pg, "auction,n,best\n1,4,130\n2,3,80\n3,2,15\n");
    assert_eq!(over_pg, server.ok_csv(query));

    // \dt lists tables, \dv views, \dm materialized views, \d all three.
    let tables = psql_ok(&pg, &["-A", "-t", "-c", "\\dt"]);
    assert_eq!(tables.trim(), "public|bids|table|eddy");
    assert_eq!(psql_ok(&pg, &["-A", "-t", "-c", "\\dv"]).trim(), "public|dear|view|eddy");
    assert_eq!(psql_ok(&pg, &["-A", "-t", "-c", "\\dm"]).trim(), "public|counts|materialized view|eddy");
    let all = psql_ok(&pg, &["-A", "-t", "-c", "\\d"]);
    assert_eq!(all.trim(), "public|bids|table|eddy\npublic|counts|materialized view|eddy\npublic|dear|view|eddy");

    // \d name: the columns with Postgres's type names.
    let bids = psql_ok(&pg, &["-c", "\\d bids"]);
    assert!(bids.contains("Table \"public.bids\""), "{bids}");
    for (column, ty) in [("auction", "bigint"), ("bidder", "bigint"), ("price", "bigint"), ("ts", "timestamp without time zone")] {
        let line = bids.lines().find(|l| l.trim_start().starts_with(column)).unwrap_or_else(|| panic!("no line for {column}: {bids}"));
        assert!(line.contains(ty), "{column} is not shown as {ty}: {line}");
    }
    let counts = psql_ok(&pg, &["-c", "\\d counts"]);
    assert!(counts.contains("Materialized view \"public.counts\""), "{counts}");
    assert!(counts.lines().any(|l| l.trim_start().starts_with("n ") && l.contains("bigint")), "{counts}");
    let (code, _, stderr) = psql(&pg, None, &["-c", "\\d nope"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("Did not find any relation named \"nope\""), "{stderr}");

    // SHOW and EXPLAIN answer as result sets.
    assert!(psql_ok(&pg, &["-A", "-c", "SHOW TABLES"]).contains("bids|filesystem|bounded"));
    assert!(psql_ok(&pg, &["-A", "-c", "EXPLAIN SELECT auction FROM bids"]).contains("Source"));
}

#[test]
fn psql_prepares_and_executes_a_statement_with_parameters() {
    let data = tempfile::tempdir().unwrap();
    let (server, pg) = pg_server(data.path(), &[]);
    psql_ok(
        &pg,
        &["-c", &bids_table(), "-c", "CREATE MATERIALIZED VIEW counts AS SELECT auction, COUNT(*) AS n, MAX(price) AS best FROM bids GROUP BY auction"],
    );
    wait_finished(&server, 1);
    // One psql session: the prepared statement lives as long as its connection.
    let out = psql_ok(
        &pg,
        &["-A", "-t", "-c", "PREPARE best_of (bigint) AS SELECT best FROM counts WHERE auction = $1", "-c", "EXECUTE best_of(1)", "-c", "EXECUTE best_of(3)"],
    );
    assert_eq!(out, "PREPARE\n130\n15\n");
    // Another connection does not see it.
    let (code, _, stderr) = psql(&pg, None, &["-c", "EXECUTE best_of(1)"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("prepared statement \"best_of\" does not exist"), "{stderr}");
}

#[test]
fn errors_carry_their_sqlstate_and_position_for_psqls_caret() {
    let data = tempfile::tempdir().unwrap();
    let (_server, pg) = pg_server(data.path(), &[]);
    psql_ok(&pg, &["-c", &bids_table()]);
    let verbose = ["-v", "VERBOSITY=verbose"];

    // A syntax error: 42601, and the caret under the token the message names
    // (`price > AND` reads AND as a column, so `bidder` is the one too many).
    let bad = "SELECT auction FROM bids WHERE price > AND bidder = 1";
    let (code, _, stderr) = psql(&pg, None, &[&verbose[..], &["-c", bad]].concat());
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("ERROR:  42601: syntax error at line 1, column 44: unexpected `bidder`"), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    let at = lines.iter().position(|l| l.starts_with(&format!("LINE 1: {bad}"))).unwrap_or_else(|| panic!("no LINE: {stderr}"));
    assert_eq!(lines[at + 1].find('^'), Some("LINE 1: ".len() + bad.find("bidder").unwrap()), "caret misplaced:\n{stderr}");

    // An unknown table and an unknown column.
    let (_, _, stderr) = psql(&pg, None, &[&verbose[..], &["-c", "SELECT * FROM nope"]].concat());
    assert!(stderr.contains("ERROR:  42P01:"), "{stderr}");
    let (_, _, stderr) = psql(&pg, None, &[&verbose[..], &["-c", "SELECT nope FROM bids"]].concat());
    assert!(stderr.contains("ERROR:  42703:"), "{stderr}");
    let caret = stderr.lines().skip_while(|l| !l.starts_with("LINE 1:")).nth(1).unwrap_or_default().to_string();
    assert_eq!(caret.find('^'), Some("LINE 1: ".len() + 7), "caret misplaced:\n{stderr}");
}

#[test]
fn with_a_token_the_password_must_be_the_token_proven_with_scram() {
    let data = tempfile::tempdir().unwrap();
    let (_server, pg) = pg_server(data.path(), &["--token", "s3cret"]);
    // The server asks for SCRAM-SHA-256, so the password never crosses the wire.
    assert_eq!(authentication_request(&pg), (10, b"SCRAM-SHA-256\0\0".to_vec()));
    let (code, _, stderr) = psql(&pg, Some("wrong"), &["-c", "SELECT 1"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.to_lowercase().contains("password authentication failed"), "{stderr}");
    let (code, stdout, stderr) = psql(&pg, Some("s3cret"), &["-A", "-t", "-c", "SELECT 1 + 1"]);
    assert_eq!((code, stdout.as_str()), (0, "2\n"), "{stderr}");
}

/// What the server answers a startup message with: the authentication request's
/// code (0 ok, 3 cleartext password, 10 SASL) and the rest of its body.
fn authentication_request(address: &str) -> (i32, Vec<u8>) {
    let mut stream = TcpStream::connect(address).unwrap();
    stream.write_all(&startup_message()).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut header = [0u8; 5];
    stream.read_exact(&mut header).unwrap();
    assert_eq!(header[0], b'R', "an authentication request first, got {header:?}");
    let length = i32::from_be_bytes(header[1..5].try_into().unwrap()) as usize;
    let mut body = vec![0u8; length - 4];
    stream.read_exact(&mut body).unwrap();
    (i32::from_be_bytes(body[..4].try_into().unwrap()), body[4..].to_vec())
}

/// A self-signed certificate for 127.0.0.1 and its key (PEM files in `dir`), made by openssl.
fn self_signed_certificate(dir: &Path) -> (String, String) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let output = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj", "/CN=eddy-test"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl runs");
    assert!(output.status.success(), "openssl: {}", String::from_utf8_lossy(&output.stderr));
    (cert.to_string_lossy().into_owned(), key.to_string_lossy().into_owned())
}

/// psql with a libpq connection string to `address` plus `options` (user eddy,
/// password `password`): (exit code, stdout, stderr).
fn psql_with(address: &str, options: &str, password: &str, args: &[&str]) -> (i32, String, String) {
    let (host, port) = address.rsplit_once(':').unwrap();
    let output = Command::new("psql")
        .arg("-X")
        .arg(format!("host={host} port={port} user=eddy dbname=eddy {options}"))
        .args(args)
        .env("PGPASSWORD", password)
        .output()
        .expect("psql runs");
    (output.status.code().unwrap_or(-1), String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[test]
fn with_tls_psql_verifies_the_certificate_and_binds_scram_to_the_channel() {
    let data = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed_certificate(data.path());
    let (_server, pg) = pg_server(data.path(), &["--token", "s3cret", "--pg-tls-cert", &cert, "--pg-tls-key", &key]);
    // verify-full: the certificate served is the one given, for this address;
    // channel_binding=require: SCRAM-SHA-256-PLUS, tied to this TLS session.
    let secure = format!("sslmode=verify-full sslrootcert={cert} channel_binding=require");
    let (code, stdout, stderr) = psql_with(&pg, &secure, "s3cret", &["-c", "\\conninfo", "-A", "-t", "-c", "SELECT 20 + 22"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("SSL connection (protocol: TLSv1.3"), "{stdout}");
    assert!(stdout.ends_with("42\n"), "{stdout}");
    let (code, _, stderr) = psql_with(&pg, &secure, "wrong", &["-c", "SELECT 1"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.to_lowercase().contains("password authentication failed for user \"eddy\""), "{stderr}");
    // A client that does not ask for TLS still gets SCRAM, without channel
    // binding (which libpq refuses to be offered on a plain connection).
    let (code, stdout, stderr) = psql_with(&pg, "sslmode=disable", "s3cret", &["-A", "-t", "-c", "SELECT 1"]);
    assert_eq!((code, stdout.as_str()), (0, "1\n"), "{stderr}");

    // Without --pg-tls-cert, a client that requires TLS is told there is none.
    let plain = tempfile::tempdir().unwrap();
    let (_plain, pg) = pg_server(plain.path(), &["--token", "s3cret"]);
    let (code, _, stderr) = psql_with(&pg, "sslmode=require", "s3cret", &["-c", "SELECT 1"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("server does not support SSL"), "{stderr}");

    // A key that is not a key stops the server at start, naming the option.
    let output = common::eddy()
        .args(["server", "--listen", "127.0.0.1:0", "--pg", "127.0.0.1:0", "--pg-tls-cert", &cert, "--pg-tls-key", &cert, "--data-dir"])
        .arg(plain.path().join("other"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && stderr.contains("--pg-tls-key") && stderr.contains("not a PEM private key"), "{stderr}");
}

/// Waits until SHOW PIPELINES (over gRPC) does or does not list a query with `text`.
fn wait_listed(server: &Server, text: &str, listed: bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.ok_csv("SHOW PIPELINES").contains(text) != listed {
        assert!(Instant::now() < deadline, "`{text}` listed: {} expected {listed}", server.ok_csv("SHOW PIPELINES"));
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A table of two billion generated rows: a query over it runs until cancelled.
const ENDLESS_TABLE: &str = "CREATE TABLE many (id BIGINT) WITH ('connector' = 'datagen', 'number-of-rows' = '2000000000', 'rows-per-second' = '0')";

#[test]
fn psqls_ctrl_c_cancels_a_long_query() {
    let data = tempfile::tempdir().unwrap();
    let (server, pg) = pg_server(data.path(), &[]);
    psql_ok(&pg, &["-c", ENDLESS_TABLE]);
    let query = "SELECT COUNT(*) FROM many";
    let psql = psql_command(&pg, None, &["-c", query]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    wait_listed(&server, query, true);
    // What psql does on Ctrl-C: a cancel request on a connection of its own.
    assert!(Command::new("kill").args(["-INT", &psql.id().to_string()]).status().unwrap().success());
    let output = psql.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("ERROR:  canceling statement due to user request"), "{stderr}");
    // The query stopped, and the server serves the next one.
    wait_listed(&server, query, false);
    assert_eq!(psql_ok(&pg, &["-A", "-t", "-c", "SELECT 1"]), "1\n");
}

/// Reads from `stream` until the server closes it (or 10 s pass); what it sent.
fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => return received,
            Ok(n) => received.extend_from_slice(&buffer[..n]),
        }
    }
}

/// A startup message for user eddy (protocol 3.0).
fn startup_message() -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&196_608i32.to_be_bytes());
    body.extend_from_slice(b"user\0eddy\0database\0eddy\0\0");
    let mut message = ((body.len() + 4) as i32).to_be_bytes().to_vec();
    message.extend_from_slice(&body);
    message
}

#[test]
fn garbage_and_truncated_messages_never_take_the_server_down() {
    let data = tempfile::tempdir().unwrap();
    let (_server, pg) = pg_server(data.path(), &[]);

    // Garbage before the startup message: the connection is closed.
    let mut stream = TcpStream::connect(&pg).unwrap();
    stream.write_all(b"GET / HTTP/1.1\r\nHost: eddy\r\n\r\n").unwrap();
    read_until_closed(&mut stream);

    // A startup message cut short, then the client hangs up.
    let mut stream = TcpStream::connect(&pg).unwrap();
    stream.write_all(&startup_message()[..11]).unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    read_until_closed(&mut stream);

    // A length that claims 2 GB.
    let mut stream = TcpStream::connect(&pg).unwrap();
    stream.write_all(&[0x7f, 0xff, 0xff, 0xff, 0, 3, 0, 0]).unwrap();
    read_until_closed(&mut stream);

    // After a good startup, an unknown message type: answered with an error.
    // The server may close the connection after it, so nothing more is sent
    // on it (bytes it never reads would turn its close into a reset, and the
    // reset can discard the answer before this test reads it).
    let mut stream = TcpStream::connect(&pg).unwrap();
    stream.write_all(&startup_message()).unwrap();
    stream.write_all(&[b'!', 0, 0, 0, 4]).unwrap();
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let received = read_until_closed(&mut stream);
    assert!(received.first() == Some(&b'R'), "the startup was answered: {received:?}");
    assert!(received.contains(&b'E'), "an ErrorResponse for the unknown message: {received:?}");

    // After a good startup, a query whose length runs past its end.
    let mut stream = TcpStream::connect(&pg).unwrap();
    stream.write_all(&startup_message()).unwrap();
    stream.write_all(&[b'Q', 0, 0, 0, 200, b'S', b'E', b'L', 0]).unwrap();
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let received = read_until_closed(&mut stream);
    assert!(received.first() == Some(&b'R'), "the startup was answered: {received:?}");

    // Random bytes after a good startup, a few times over.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..8 {
        let mut stream = TcpStream::connect(&pg).unwrap();
        stream.write_all(&startup_message()).unwrap();
        let garbage: Vec<u8> = (0..512)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        // The server may hang up at the first bad message, before all of
        // them arrive: a failed write or shutdown here is that, not a fault.
        let _ = stream.write_all(&garbage);
        let _ = stream.shutdown(std::net::Shutdown::Write);
        read_until_closed(&mut stream);
    }

    // A real client is still served.
    assert_eq!(psql_ok(&pg, &["-A", "-t", "-c", "SELECT 40 + 2"]), "42\n");
}

/// A frontend message: its type byte, its length and its body.
fn frame(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut message = vec![kind];
    message.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    message.extend_from_slice(body);
    message
}

/// The fuzzer's generator: protocol messages, mostly well formed with random
/// contents, then damaged at random (cut, bytes flipped, lengths overwritten).
struct MessageFuzzer(StdRng);

impl MessageFuzzer {
    /// A C string: text (now and then not UTF-8, or without its NUL).
    fn cstr(&mut self, out: &mut Vec<u8>, text: &str) {
        match self.0.gen_range(0..20) {
            0 => out.extend_from_slice(&[0xff, 0xfe, b'x']),
            1 => return out.extend_from_slice(text.as_bytes()),
            _ => out.extend_from_slice(text.as_bytes()),
        }
        out.push(0);
    }

    fn sql(&mut self) -> &'static str {
        const STATEMENTS: [&str; 14] = [
            "SELECT 1",
            "SELECT * FROM v WHERE id = $1",
            "SELECT * FROM v WHERE id = 3",
            "SELECT n FROM v WHERE id = $1 AND n = $2",
            "SHOW TABLES",
            "EXPLAIN SELECT * FROM v",
            "SELECT $1",
            "SELEC * FROM",
            "BEGIN",
            "PREPARE p (int8) AS SELECT * FROM v WHERE id = $1",
            "EXECUTE p(2)",
            "DEALLOCATE p",
            "SELECT * FROM pg_catalog.pg_class",
            "",
        ];
        STATEMENTS[self.0.gen_range(0..STATEMENTS.len())]
    }

    fn name(&mut self) -> &'static str {
        ["", "s1", "s2", "p"][self.0.gen_range(0..4)]
    }

    /// One message of a random kind.
    fn message(&mut self) -> Vec<u8> {
        let mut body = Vec::new();
        let rng = &mut self.0;
        match rng.gen_range(0..14) {
            0 => {
                let sql = self.sql();
                self.cstr(&mut body, sql);
                frame(b'Q', &body)
            }
            1 => {
                let (name, sql) = (self.name(), self.sql());
                self.cstr(&mut body, name);
                self.cstr(&mut body, sql);
                let types = self.0.gen_range(0..4i16);
                body.extend_from_slice(&types.to_be_bytes());
                for _ in 0..types {
                    let oid: i32 = [0, 16, 20, 23, 25, 701, 1700, 1114, self.0.gen()][self.0.gen_range(0..9)];
                    body.extend_from_slice(&oid.to_be_bytes());
                }
                frame(b'P', &body)
            }
            2 => {
                let (portal, statement) = (self.name(), self.name());
                self.cstr(&mut body, portal);
                self.cstr(&mut body, statement);
                let formats = self.0.gen_range(0..3i16);
                body.extend_from_slice(&formats.to_be_bytes());
                for _ in 0..formats {
                    body.extend_from_slice(&[0i16, 1, 7][self.0.gen_range(0..3)].to_be_bytes());
                }
                let values = self.0.gen_range(0..4i16);
                body.extend_from_slice(&values.to_be_bytes());
                for _ in 0..values {
                    let value: Vec<u8> = match self.0.gen_range(0..5) {
                        0 => b"2".to_vec(),
                        1 => 2i64.to_be_bytes().to_vec(),
                        2 => b"'; DROP TABLE v; --".to_vec(),
                        3 => (0..self.0.gen_range(0..9)).map(|_| self.0.gen()).collect(),
                        _ => {
                            body.extend_from_slice(&(-1i32).to_be_bytes());
                            continue;
                        }
                    };
                    body.extend_from_slice(&(value.len() as i32).to_be_bytes());
                    body.extend_from_slice(&value);
                }
                let results = self.0.gen_range(0..3i16);
                body.extend_from_slice(&results.to_be_bytes());
                for _ in 0..results {
                    body.extend_from_slice(&[0i16, 1, -3][self.0.gen_range(0..3)].to_be_bytes());
                }
                frame(b'B', &body)
            }
            3 | 4 => {
                body.push([b'S', b'P', b'X'][rng.gen_range(0..3)]);
                let name = self.name();
                self.cstr(&mut body, name);
                frame([b'D', b'C'][self.0.gen_range(0..2)], &body)
            }
            5 => {
                let portal = self.name();
                self.cstr(&mut body, portal);
                body.extend_from_slice(&[0i32, 1, -1, i32::MAX][self.0.gen_range(0..4)].to_be_bytes());
                frame(b'E', &body)
            }
            6 | 7 => frame(b'S', &[]),
            8 => frame(b'H', &[]),
            9 => frame([b'd', b'c', b'f', b'p'][rng.gen_range(0..4)], &(0..rng.gen_range(0..16)).map(|_| rng.gen()).collect::<Vec<u8>>()),
            10 => frame(rng.gen(), &(0..rng.gen_range(0..32)).map(|_| rng.gen()).collect::<Vec<u8>>()),
            11 => (0..rng.gen_range(1..64)).map(|_| rng.gen()).collect(),
            _ => frame(b'X', &[]),
        }
    }

    /// A connection's bytes after its startup: a few messages, maybe damaged.
    fn session(&mut self) -> Vec<u8> {
        let mut bytes: Vec<u8> = (0..self.0.gen_range(1..8)).flat_map(|_| self.message()).collect();
        let rng = &mut self.0;
        match rng.gen_range(0..6) {
            0 if !bytes.is_empty() => bytes.truncate(rng.gen_range(0..bytes.len())),
            1 => {
                for _ in 0..rng.gen_range(1..4) {
                    let at = rng.gen_range(0..bytes.len());
                    bytes[at] = rng.gen();
                }
            }
            2 if bytes.len() > 5 => {
                let length: i32 = [-5, 0, 3, 1 << 20, i32::MAX, rng.gen()][rng.gen_range(0..6)];
                bytes[1..5].copy_from_slice(&length.to_be_bytes());
            }
            _ => {}
        }
        bytes
    }

    /// The first bytes of a connection: a startup message, now and then a damaged one.
    fn startup(&mut self) -> Vec<u8> {
        let mut startup = startup_message();
        let rng = &mut self.0;
        match rng.gen_range(0..10) {
            0 => startup[4..8].copy_from_slice(&rng.gen::<i32>().to_be_bytes()),
            1 => startup.truncate(rng.gen_range(0..startup.len())),
            2 => startup.extend((0..rng.gen_range(1..16)).map(|_| rng.gen::<u8>())),
            3 => {
                let at = rng.gen_range(8..startup.len());
                startup[at] = rng.gen();
            }
            _ => {}
        }
        startup
    }
}

/// Checks that `received` is whole backend messages: a type byte and a length
/// that covers its body, to the end.
fn assert_framed(received: &[u8], sent: &[u8]) {
    let mut rest = received;
    while !rest.is_empty() {
        assert!(rest.len() >= 5, "a message cut short at the end of {received:?}\nafter sending {sent:?}");
        let length = i32::from_be_bytes(rest[1..5].try_into().unwrap());
        assert!(length >= 4 && rest.len() > length as usize, "a bad frame in {received:?}\nafter sending {sent:?}");
        rest = &rest[1 + length as usize..];
    }
}

/// Fuzzes the server's message handling in CI: a seeded generator sends 400
/// connections' worth of well-formed, damaged and random protocol messages.
/// Every connection must be answered with whole messages and then closed, and
/// afterwards the server, and a connection opened before it all, still answer.
#[test]
fn fuzzed_protocol_messages_get_errors_and_never_take_the_server_down() {
    let data = tempfile::tempdir().unwrap();
    let log = data.path().join("server.log");
    let (server, pg) = postgres_address(Server::start_with_stderr(data.path(), &["--pg", "127.0.0.1:0"], std::fs::File::create(&log).unwrap()));
    server.ok(
        "CREATE TABLE g (id BIGINT, n BIGINT) WITH ('connector' = 'datagen', 'number-of-rows' = '50', 'fields.id.kind' = 'sequence', 'fields.n.max' = '3')",
    );
    server.ok("CREATE MATERIALIZED VIEW v AS SELECT id, n FROM g");
    wait_finished(&server, 1);

    // A connection that is open all along, started as a client does.
    let mut bystander = TcpStream::connect(&pg).unwrap();
    bystander.write_all(&startup_message()).unwrap();
    bystander.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut ready = Vec::new();
    while !ready.ends_with(&[b'Z', 0, 0, 0, 5, b'I']) {
        let mut buffer = [0u8; 1024];
        let n = bystander.read(&mut buffer).unwrap();
        assert!(n > 0, "the bystander's startup was not answered: {ready:?}");
        ready.extend_from_slice(&buffer[..n]);
    }

    // A Parse that announces three parameter types and ends before them: a
    // protocol violation, answered as Postgres answers one.
    let mut stream = TcpStream::connect(&pg).unwrap();
    stream.write_all(&startup_message()).unwrap();
    stream.write_all(&frame(b'P', b"\0SELECT 1\0\0\x03")).unwrap();
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let received = read_until_closed(&mut stream);
    let error = received.iter().position(|&b| b == b'E').map(|at| String::from_utf8_lossy(&received[at..]).into_owned()).unwrap_or_default();
    assert!(error.contains("08P01") && error.contains("ends early"), "no ErrorResponse for a cut Parse: {received:?}");

    let mut fuzzer = MessageFuzzer(StdRng::seed_from_u64(0x0065_6464_792d_7067));
    for case in 0..400 {
        let mut sent = fuzzer.startup();
        sent.extend(fuzzer.session());
        let mut stream = TcpStream::connect(&pg).unwrap();
        // The server may hang up at the first bad message, before all of them arrive.
        let _ = stream.write_all(&sent);
        let _ = stream.shutdown(std::net::Shutdown::Write);
        let started = Instant::now();
        let received = read_until_closed(&mut stream);
        assert!(started.elapsed() < Duration::from_secs(9), "case {case}: the server kept a connection open after its client hung up\nsent {sent:?}");
        assert_framed(&received, &sent);
    }

    assert!(server.process.0.id() > 0 && TcpStream::connect(&pg).is_ok(), "the server went away");
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(!logged.contains("panicked"), "a connection's task panicked:\n{logged}");
    bystander.write_all(&frame(b'Q', b"SELECT 40 + 2\0")).unwrap();
    let mut answer = Vec::new();
    while !answer.ends_with(&[b'Z', 0, 0, 0, 5, b'I']) {
        let mut buffer = [0u8; 1024];
        let n = bystander.read(&mut buffer).unwrap();
        assert!(n > 0, "the bystander's connection was closed");
        answer.extend_from_slice(&buffer[..n]);
    }
    assert!(answer.windows(2).any(|w| w == b"42"), "the bystander's query was not answered: {answer:?}");
    let row = psql_ok(&pg, &["-A", "-t", "-c", "SELECT * FROM v WHERE id = 3"]);
    assert!(row.starts_with("3|") && row.lines().count() == 1, "{row}");
}

/// psycopg 3 reads a view with a column of every type; each value, as Python
/// sees it, is the value gRPC's client shows for the same query.
#[test]
fn psycopg_reads_every_column_type_as_grpc_does() {
    let data = tempfile::tempdir().unwrap();
    let (server, pg) = pg_server(data.path(), &[]);
    server.ok(&bids_table());
    server.ok("CREATE MATERIALIZED VIEW typed AS SELECT auction AS i8, CAST(bidder AS INT) AS i4, CAST(price AS SMALLINT) AS i2,
           CAST(price AS DOUBLE) / 4 AS f8, CAST(price AS FLOAT) / 4 AS f4, CAST(price AS DECIMAL(10, 2)) / 8 AS num,
           price > 90 AS b, CONCAT('bidder-', CAST(bidder AS STRING)) AS t, ts, CAST(ts AS DATE) AS d,
           CAST(CONCAT('x', CAST(auction AS STRING)) AS BYTEA) AS raw,
           arrow_cast(ts, 'Timestamp(Millisecond, Some(\"UTC\"))') AS tz
         FROM bids");
    wait_finished(&server, 1);
    let query = "SELECT * FROM typed ORDER BY ts";
    let script = r#"
import sys, psycopg
host, port = sys.argv[1].rsplit(":", 1)
def show(v):
    if v is None: return ""
    if isinstance(v, bool): return "true" if v else "false"
    if isinstance(v, (bytes, memoryview)): return bytes(v).hex()
    if hasattr(v, "isoformat"): return v.isoformat()
    return str(v)
with psycopg.connect(host=host, port=port, user="eddy", dbname="eddy") as conn:
    for binary in (False, True):
        cur = conn.cursor(binary=binary)
        cur.execute(sys.argv[2])
        print(",".join(d.name + ":" + str(d.type_code) for d in cur.description))
        for row in cur.fetchall():
            print(",".join(show(v) for v in row))
"#;
    let output = Command::new(python()).args(["-c", script, &pg, query]).output().unwrap();
    assert!(output.status.success(), "psycopg failed: {}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    // Column names with their Postgres type oids: int8 20, int4 23, int2 21, float8 701,
    // float4 700, numeric 1700, bool 16, text 25, timestamp 1114, date 1082, bytea 17, timestamptz 1184.
    let header = "i8:20,i4:23,i2:21,f8:701,f4:700,num:1700,b:16,t:25,ts:1114,d:1082,raw:17,tz:1184";
    let grpc = server.ok_csv(query);
    let grpc_rows: Vec<&str> = grpc.lines().skip(1).collect();
    assert_eq!(grpc_rows.len(), 9);
    let (text, binary) = lines.split_at(lines.len() / 2);
    for (format, lines) in [("text", text), ("binary", binary)] {
        assert_eq!(lines[0], header, "{format} format");
        for (pg_row, grpc_row) in lines[1..].iter().zip(&grpc_rows) {
            assert_eq!(normalize(pg_row), normalize(grpc_row), "{format} format:\n{stdout}\nvs gRPC:\n{grpc}");
        }
        assert_eq!(lines.len() - 1, grpc_rows.len());
    }
}

/// psycopg binds its parameters server-side: in a SELECT over a bounded table
/// (planned by the streaming planner, which takes no placeholders) with ORDER BY
/// and LIMIT (applied after the run), the rows are gRPC's for the literal query.
#[test]
fn psycopg_binds_parameters_in_a_sorted_query_over_a_bounded_table() {
    let data = tempfile::tempdir().unwrap();
    let (server, pg) = pg_server(data.path(), &[]);
    server.ok(&bids_table());
    let script = r#"
import sys, psycopg
host, port = sys.argv[1].rsplit(":", 1)
with psycopg.connect(host=host, port=port, user="eddy", dbname="eddy") as conn:
    rows = conn.execute("SELECT auction, price FROM bids WHERE price > %s AND bidder <> %s ORDER BY price DESC LIMIT 3", (60, 13)).fetchall()
    print("\n".join(f"{a},{p}" for a, p in rows))
"#;
    let output = Command::new(python()).args(["-c", script, &pg]).output().unwrap();
    assert!(output.status.success(), "psycopg failed: {}", String::from_utf8_lossy(&output.stderr));
    let grpc = server.ok_csv("SELECT auction, price FROM bids WHERE price > 60 AND bidder <> 13 ORDER BY price DESC LIMIT 3");
    assert_eq!(String::from_utf8(output.stdout).unwrap(), grpc.split_once('\n').unwrap().1);
    assert_eq!(grpc, "auction,price\n1,130\n1,120\n1,100\n");
}

/// `SUBSCRIBE view` through psycopg's `COPY` reader: the first `lines` lines of
/// the stream, as `op\tcolumns...`.
fn subscribe_lines(pg: &str, view: &str, lines: usize) -> Vec<String> {
    let script = r#"
import os, sys, psycopg
host, port = sys.argv[1].rsplit(":", 1)
wanted, lines, pending = int(sys.argv[3]), [], b""
conn = psycopg.connect(host=host, port=port, user="eddy", dbname="eddy", autocommit=True)
with conn.cursor().copy("SUBSCRIBE " + sys.argv[2]) as copy:
    while len(lines) < wanted:
        pending += bytes(copy.read())
        *done, pending = pending.split(b"\n")
        lines.extend(l.decode() for l in done)
print("\n".join(lines[:wanted]), flush=True)
os._exit(0)  # the stream never ends: leave without draining it
"#;
    let output = Command::new(python()).args(["-c", script, pg, view, &lines.to_string()]).output().unwrap();
    assert!(output.status.success(), "psycopg failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap().lines().map(str::to_string).collect()
}

#[test]
fn subscribe_streams_a_views_rows_then_its_changes_in_order() {
    let data = tempfile::tempdir().unwrap();
    let (server, pg) = pg_server(data.path(), &[]);
    server.ok(&bids_table());
    server.ok("CREATE MATERIALIZED VIEW counts AS SELECT auction, COUNT(*) AS n FROM bids GROUP BY auction");
    wait_finished(&server, 1);
    // A finished view: its rows as inserts, the rows gRPC's SELECT reads.
    let mut snapshot = subscribe_lines(&pg, "counts", 3);
    snapshot.sort();
    let grpc: Vec<String> =
        server.ok_csv("SELECT auction, n FROM counts ORDER BY auction").lines().skip(1).map(|l| format!("+I\t{}", l.replace(',', "\t"))).collect();
    assert_eq!(snapshot, grpc);

    // A running view: every update retracts the row the stream last gave for its key.
    server.ok(&common::running_bid_counts("live", 500));
    let changes = subscribe_lines(&pg, "live", 60);
    let mut last = std::collections::BTreeMap::new();
    let mut updates = 0;
    for line in &changes {
        let [op, k, n] = line.split('\t').collect::<Vec<_>>()[..] else { panic!("not op, k, n: {line:?}") };
        match op {
            // A new key, or the new row of a key just retracted.
            "+I" | "+U" => assert!(last.insert(k.to_string(), n.to_string()).is_none(), "{op} of {k} without a retraction first: {changes:?}"),
            "-U" => {
                assert_eq!(last.remove(k).as_deref(), Some(n), "-U of {k} retracts what the stream last gave: {changes:?}");
                updates += 1;
            }
            other => panic!("unexpected op {other}: {changes:?}"),
        }
    }
    assert!(updates > 0, "no update among {changes:?}");
}

/// A row of values with Python's and Arrow's spellings of the same value made one:
/// `2024-01-01T00:00:09.500000` and `2024-01-01T00:00:09.500`, `25.0` and `25`.
fn normalize(row: &str) -> Vec<String> {
    row.split(',')
        .map(|value| {
            // Python's isoformat() writes a `T` between date and time where Arrow writes a space.
            let value = value.replace("+00:00", "Z");
            let value = match value.split_once('T') {
                Some((date, time)) if date.len() == 10 && date.as_bytes()[4] == b'-' => format!("{date} {time}"),
                _ => value,
            };
            let value = match value.strip_suffix('Z') {
                Some(local) if local.contains(':') && local.contains('.') => format!("{}Z", local.trim_end_matches('0')),
                _ if value.contains(':') && value.contains('.') => value.trim_end_matches('0').to_string(),
                _ => value,
            };
            match value.parse::<f64>() {
                Ok(n) if value.contains('.') => format!("{n}"),
                _ => value,
            }
        })
        .collect()
}

/// tokio-postgres: a prepared statement whose parameter type the server infers
/// (int8), bound in binary, answered in binary; then a cancel request stops a
/// long query, which leaves SHOW PIPELINES.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_statements_bind_binary_parameters_and_cancel_stops_a_query() {
    let data = tempfile::tempdir().unwrap();
    let (server, pg) = tokio::task::spawn_blocking({
        let dir = data.path().to_path_buf();
        move || pg_server(&dir, &[])
    })
    .await
    .unwrap();
    let (host, port) = pg.rsplit_once(':').unwrap();
    let (client, connection) = tokio_postgres::connect(&format!("host={host} port={port} user=eddy dbname=eddy"), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client.batch_execute(&bids_table()).await.unwrap();
    client.batch_execute("CREATE MATERIALIZED VIEW counts AS SELECT auction, COUNT(*) AS n FROM bids GROUP BY auction").await.unwrap();
    let server = tokio::task::spawn_blocking(move || {
        wait_finished(&server, 1);
        server
    })
    .await
    .unwrap();

    let statement = client.prepare("SELECT n FROM counts WHERE auction = $1").await.unwrap();
    assert_eq!(statement.params(), &[tokio_postgres::types::Type::INT8]);
    assert_eq!(statement.columns()[0].type_(), &tokio_postgres::types::Type::INT8);
    let counts: Vec<i64> = futures::future::try_join_all([1i64, 2, 3].map(|auction| {
        let (client, statement) = (&client, &statement);
        async move { client.query_one(statement, &[&auction]).await.map(|row| row.get::<_, i64>(0)) }
    }))
    .await
    .unwrap();
    assert_eq!(counts, vec![4, 3, 2]);

    // A long query over a bounded generator, cancelled as psql's Ctrl-C does.
    client.batch_execute(ENDLESS_TABLE).await.unwrap();
    let cancel = client.cancel_token();
    let long = tokio::spawn(async move { client.simple_query("SELECT COUNT(*) FROM many").await });
    let server = tokio::task::spawn_blocking(move || {
        wait_listed(&server, "SELECT COUNT(*) FROM many", true);
        server
    })
    .await
    .unwrap();
    cancel.cancel_query(tokio_postgres::NoTls).await.unwrap();
    let error = long.await.unwrap().unwrap_err();
    assert_eq!(error.code(), Some(&tokio_postgres::error::SqlState::QUERY_CANCELED), "{error}");
    tokio::task::spawn_blocking(move || wait_listed(&server, "SELECT COUNT(*) FROM many", false)).await.unwrap();
}

/// The tables and views the metadata tests list: a table, a materialized view, a view.
fn create_bids_counts_dear(server: &Server) {
    server.ok(&bids_table());
    server.ok("CREATE MATERIALIZED VIEW counts AS SELECT auction, COUNT(*) AS n, MAX(price) AS best FROM bids GROUP BY auction");
    server.ok("CREATE VIEW dear AS SELECT auction, price FROM bids WHERE price > 100");
}

/// Runs a file of tests/data/pg_metadata through psycopg: its `-- params: a|b`
/// bound server-side to its `$1`, `$2`; prints the rows, values `|`-separated.
const METADATA_RUNNER: &str = r#"
import re, sys, psycopg
host, port = sys.argv[1].rsplit(":", 1)
lines = open(sys.argv[2]).read().splitlines()
params = next((l[len("-- params: "):].split("|") for l in lines if l.startswith("-- params: ")), [])
body = "\n".join(l for l in lines if not l.startswith("-- "))
def show(v):
    if v is None: return ""
    if isinstance(v, bool): return "true" if v else "false"
    return str(v)
with psycopg.connect(host=host, port=port, user="eddy", dbname="eddy", autocommit=True) as conn:
    cur = conn.execute(re.sub(r"\$(\d+)", "%s", body.replace("%", "%%")), params or None)
    for row in cur.fetchall():
        print("|".join(show(v) for v in row))
"#;

/// The metadata queries of JDBC's `DatabaseMetaData`, psycopg's `TypeInfo`,
/// Grafana's table and column pickers and DBeaver's navigator, verbatim from
/// their sources (tests/data/pg_metadata/*.sql, each naming its source), list
/// Eddy's relations and columns. Each file holds its expected rows as
/// `-- expect: a|b|c` (all of them, in order), `-- contains: a|b` (among them)
/// or `-- expect no rows`.
#[test]
fn tools_metadata_queries_list_eddys_relations() {
    let data = tempfile::tempdir().unwrap();
    let (server, pg) = pg_server(data.path(), &[]);
    create_bids_counts_dear(&server);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/pg_metadata");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "sql")).collect();
    files.sort();
    assert!(files.len() >= 10, "{files:?}");
    let mut failures = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let expected: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("-- expect: ")).collect();
        let contained: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("-- contains: ")).collect();
        let none = text.lines().any(|l| l == "-- expect no rows");
        assert!(!expected.is_empty() || !contained.is_empty() || none, "{} expects nothing", file.display());
        let output = Command::new(python()).args(["-c", METADATA_RUNNER, &pg]).arg(file).output().unwrap();
        let name = file.file_name().unwrap().to_string_lossy();
        if !output.status.success() {
            failures.push(format!("{name}: {}", String::from_utf8_lossy(&output.stderr)));
            continue;
        }
        let stdout = String::from_utf8(output.stdout).unwrap();
        let rows: Vec<&str> = stdout.lines().collect();
        let missing: Vec<&&str> = contained.iter().filter(|r| !rows.contains(r)).collect();
        if (!contained.is_empty() && !missing.is_empty()) || (contained.is_empty() && rows != expected) {
            failures.push(format!("{name}: got\n{stdout}expected {expected:?}, containing {contained:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// psycopg resolves a type by name on its own (`TypeInfo.fetch`): for every
/// type Eddy sends, the oid Eddy sends it with, and its array type.
#[test]
fn psycopg_fetches_the_types_eddy_sends() {
    let data = tempfile::tempdir().unwrap();
    let (_server, pg) = pg_server(data.path(), &[]);
    let script = r#"
import sys, psycopg
from psycopg.types import TypeInfo
host, port = sys.argv[1].rsplit(":", 1)
with psycopg.connect(host=host, port=port, user="eddy", dbname="eddy") as conn:
    for name in sys.argv[2:]:
        info = TypeInfo.fetch(conn, name)
        print(f"{name}:{info.oid}:{info.array_oid}:{info.regtype}" if info else f"{name}:none")
"#;
    let names = ["int8", "int4", "int2", "float8", "float4", "numeric", "bool", "text", "bytea", "date", "timestamp", "timestamptz", "no_such_type"];
    let output = Command::new(python()).args(["-c", script, &pg]).args(names).output().unwrap();
    assert!(output.status.success(), "psycopg failed: {}", String::from_utf8_lossy(&output.stderr));
    let expected = "int8:20:1016:bigint\nint4:23:1007:integer\nint2:21:1005:smallint\nfloat8:701:1022:double precision\nfloat4:700:1021:real\n\
                    numeric:1700:1231:numeric\nbool:16:1000:boolean\ntext:25:1009:text\nbytea:17:1001:bytea\ndate:1082:1182:date\n\
                    timestamp:1114:1115:timestamp without time zone\ntimestamptz:1184:1185:timestamp with time zone\nno_such_type:none\n";
    assert_eq!(String::from_utf8(output.stdout).unwrap(), expected);
}

/// The Postgres JDBC driver, the way DBeaver and every JDBC tool use it
/// (tests/data/jdbc/EddyJdbc.java): `DatabaseMetaData` lists the tables,
/// columns and schemas Eddy has, a prepared statement binds a parameter, and a
/// view with a column of every type reads as gRPC's client reads it.
#[test]
fn jdbc_lists_the_catalog_and_reads_every_column_type_as_grpc_does() {
    let jdbc = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/postgres-clients/jdbc")).output().unwrap();
    assert!(jdbc.status.success(), "scripts/postgres-clients/jdbc failed: {}", String::from_utf8_lossy(&jdbc.stderr));
    let jar = String::from_utf8(jdbc.stdout).unwrap().trim().to_string();
    let data = tempfile::tempdir().unwrap();
    let (server, pg) = pg_server(data.path(), &[]);
    create_bids_counts_dear(&server);
    server.ok("CREATE MATERIALIZED VIEW typed AS SELECT auction AS i8, CAST(bidder AS INT) AS i4, CAST(price AS SMALLINT) AS i2,
           CAST(price AS DOUBLE) / 4 AS f8, CAST(price AS FLOAT) / 4 AS f4, CAST(price AS DECIMAL(10, 2)) / 8 AS num,
           price > 90 AS b, CONCAT('bidder-', CAST(bidder AS STRING)) AS t, ts, CAST(ts AS DATE) AS d,
           CAST(CONCAT('x', CAST(auction AS STRING)) AS BYTEA) AS raw,
           arrow_cast(ts, 'Timestamp(Millisecond, Some(\"UTC\"))') AS tz
         FROM bids");
    wait_finished(&server, 2);
    let query = "SELECT * FROM typed ORDER BY ts";
    let program = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/jdbc/EddyJdbc.java");
    let output = Command::new("java").arg("-cp").arg(&jar).arg(&program).args([&pg, query, "SELECT best FROM counts WHERE auction = ?", "1"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "java failed: {}\n{stdout}", String::from_utf8_lossy(&output.stderr));
    let sections = ["tables", "columns", "schemas", "keys", "types", "prepared", "rows"];
    let section = |name: &str| -> Vec<&str> { stdout.lines().skip_while(|l| *l != name).skip(1).take_while(|l| !sections.contains(l)).collect() };

    assert_eq!(section("tables"), ["public|counts|MATERIALIZED VIEW", "public|typed|MATERIALIZED VIEW", "public|bids|TABLE", "public|dear|VIEW"]);
    // Each column with its java.sql.Types code and Postgres type name, in order.
    let columns = section("columns");
    let of = |table: &str| -> Vec<String> {
        columns.iter().filter_map(|l| l.strip_prefix(&format!("{table}|"))).map(|l| l.splitn(4, '|').take(3).collect::<Vec<_>>().join("|")).collect()
    };
    assert_eq!(of("bids"), ["auction|-5|int8", "bidder|-5|int8", "price|-5|int8", "ts|93|timestamp"]);
    assert_eq!(of("dear"), ["auction|-5|int8", "price|-5|int8"]);
    assert_eq!(
        of("typed"),
        [
            "i8|-5|int8",
            "i4|4|int4",
            "i2|5|int2",
            "f8|8|float8",
            "f4|7|float4",
            "num|2|numeric",
            "b|-7|bool",
            "t|12|text",
            "ts|93|timestamp",
            "d|91|date",
            "raw|-2|bytea",
            "tz|93|timestamptz"
        ]
    );
    assert_eq!(section("schemas"), ["information_schema", "pg_catalog", "public"]);
    assert_eq!(section("keys"), Vec::<&str>::new());
    for ty in ["int8|-5", "numeric|2", "timestamp|93", "bytea|-2", "bool|-7"] {
        assert!(section("types").contains(&ty), "getTypeInfo has no {ty}: {stdout}");
    }
    let grpc_best = server.ok_csv("SELECT best FROM counts WHERE auction = 1");
    assert_eq!(section("prepared"), [grpc_best.lines().nth(1).unwrap()]);

    let rows = section("rows");
    assert_eq!(rows[0], "i8:int8,i4:int4,i2:int2,f8:float8,f4:float4,num:numeric,b:bool,t:text,ts:timestamp,d:date,raw:bytea,tz:timestamptz");
    let grpc = server.ok_csv(query);
    let grpc_rows: Vec<&str> = grpc.lines().skip(1).collect();
    assert_eq!(rows.len() - 1, grpc_rows.len(), "{stdout}\nvs gRPC:\n{grpc}");
    for (jdbc_row, grpc_row) in rows[1..].iter().zip(&grpc_rows) {
        assert_eq!(normalize(jdbc_row), normalize(grpc_row), "{stdout}\nvs gRPC:\n{grpc}");
    }
}
