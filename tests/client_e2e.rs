//! End to end: the interactive `eddy sql` as a psql user drives it, in a real
//! terminal (a pty from util-linux `script`) or with statements piped on its
//! input, against the real `eddy server`.
// Tests may unwrap: a panic there is a test failure with a backtrace.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{bids_table, eddy, Server};

/// How long a step may take on a slow, busy machine before the test gives up.
const PATIENCE: Duration = Duration::from_secs(30);

/// `eddy sql` in a pty: what is typed goes to the terminal's input, and the
/// screen is everything the terminal showed, `\r` removed.
struct Terminal {
    script: Child,
    keys: Option<ChildStdin>,
    screen: Arc<Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Terminal {
    /// Starts `eddy sql --host ADDRESS ARGS` in a terminal of type `term`, with `home` as $HOME.
    fn start(server: &Server, home: &Path, term: &str, args: &[&str], env: &[(&str, &str)]) -> Terminal {
        // `script` runs the command through `$SHELL -c`; `exec` makes the client
        // the terminal's foreground process, so Ctrl-C reaches only the client
        // (dash, waiting on a child, would itself die of the SIGINT: exit 130).
        // A terminal of 5 rows, so a result of a few lines is already taller than it.
        let mut command = format!("stty rows 5 cols 200; exec {} sql --host {}", common::eddy_path().display(), server.address);
        for arg in args {
            command.push_str(&format!(" '{arg}'"));
        }
        let mut script = Command::new("script")
            .args(["-qfec", &command, "/dev/null"])
            .env("HOME", home)
            .env("TERM", term)
            .env("SHELL", "/bin/sh")
            .env_remove("EDDY_TOKEN")
            .env_remove("PAGER")
            .env_remove("EDITOR")
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("util-linux `script` provides the terminal");
        let screen = Arc::new(Mutex::new(String::new()));
        let mut output = script.stdout.take().unwrap();
        let reader = {
            let screen = Arc::clone(&screen);
            std::thread::spawn(move || {
                let mut chunk = [0u8; 4096];
                while let Ok(n @ 1..) = std::io::Read::read(&mut output, &mut chunk) {
                    screen.lock().unwrap().push_str(&String::from_utf8_lossy(&chunk[..n]).replace('\r', ""));
                }
            })
        };
        let keys = script.stdin.take();
        Terminal { script, keys, screen, reader: Some(reader) }
    }

    fn screen(&self) -> String {
        self.screen.lock().unwrap().clone()
    }

    /// Where the screen ends now, to look for what comes after.
    fn mark(&self) -> usize {
        self.screen.lock().unwrap().len()
    }

    /// Waits until `text` shows on the screen after `mark`; fails the test with the screen if it does not.
    fn expect_after(&self, mark: usize, text: &str, why: &str) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if self.screen.lock().unwrap()[mark..].contains(text) {
                return;
            }
            assert!(Instant::now() < deadline, "{why}: {text:?} did not show up; the screen:\n{}", self.screen());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// How many times `text` shows on the screen after `mark`.
    fn count_after(&self, mark: usize, text: &str) -> usize {
        self.screen.lock().unwrap()[mark..].matches(text).count()
    }

    /// Types `text`; returns the screen's mark from just before.
    fn type_keys(&mut self, text: &str) -> usize {
        let mark = self.mark();
        let keys = self.keys.as_mut().unwrap();
        keys.write_all(text.as_bytes()).unwrap();
        keys.flush().unwrap();
        mark
    }

    /// Types a line and waits until the client has read it (its newline is echoed):
    /// from then on the terminal is no longer in the line editor's raw mode.
    fn enter(&mut self, line: &str) -> usize {
        let mark = self.type_keys(&format!("{line}\r"));
        // The echo, then a line break (the editor may draw escape codes in between).
        let deadline = Instant::now() + PATIENCE;
        loop {
            let screen = self.screen.lock().unwrap()[mark..].to_string();
            if screen.find(line).is_some_and(|at| screen[at + line.len()..].contains('\n')) {
                return mark;
            }
            assert!(Instant::now() < deadline, "the typed line {line:?} was not read; the screen:\n{}", self.screen());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The client's process id: `script`'s child, since the client replaced the shell.
    fn client_pid(&self) -> String {
        let pid = self.script.id();
        let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap();
        children.split_whitespace().next().expect("the client runs under script").to_string()
    }

    /// Types `\q` and waits for the client to end; its exit status and the whole screen.
    fn quit(mut self) -> (std::process::ExitStatus, String) {
        self.type_keys("\\q\r");
        self.wait()
    }

    /// Waits for the client to end by itself; its exit status and the whole screen.
    fn wait(mut self) -> (std::process::ExitStatus, String) {
        // The terminal's input stays open until the client has gone: `script`
        // answers end-of-input by hanging up the terminal, which would race `\q`.
        let deadline = Instant::now() + PATIENCE;
        let status = loop {
            match self.script.try_wait().unwrap() {
                Some(status) => break status,
                None if Instant::now() > deadline => {
                    self.keys.take();
                    break self.script.wait().unwrap();
                }
                None => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        self.reader.take().unwrap().join().unwrap();
        (status, self.screen())
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = self.script.kill();
        let _ = self.script.wait();
    }
}

/// Defect 3 of issue 16: Ctrl-C typed in a real terminal (and `kill -INT`)
/// cancels a running `\watch`, `\subscribe` and long `SELECT` and gives the
/// prompt back, where the next statement runs. The terminal is an xterm, so
/// the line editor takes the terminal in raw mode as a user's would.
#[test]
fn ctrl_c_cancels_watch_subscribe_and_a_long_select_in_a_terminal() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &[]);
    server.ok(&bids_table());
    server.ok("SET 'execution.checkpointing.interval' = '100 ms';
         CREATE TABLE seq (id BIGINT) WITH ('connector' = 'datagen', 'rows-per-second' = '100', 'fields.id.kind' = 'sequence', 'fields.id.start' = '1');
         CREATE MATERIALIZED VIEW parity AS SELECT id % 2 AS parity_key, COUNT(*) AS n FROM seq GROUP BY id % 2;
         CREATE TABLE slow (id BIGINT) WITH ('connector' = 'datagen', 'rows-per-second' = '10', 'number-of-rows' = '1000000')");
    // Results taller than the 5-row terminal go through the pager: `cat` here, which does not wait for keys.
    let mut terminal = Terminal::start(&server, data.path(), "xterm", &[], &[("PAGER", "cat")]);
    terminal.expect_after(0, "eddy=> ", "no prompt");

    // \watch: the statement runs again and again until Ctrl-C.
    terminal.enter("SHOW TABLES;");
    let mark = terminal.enter("\\watch 0.2");
    terminal.expect_after(mark, "(3 rows)", "\\watch did not run the statement");
    while terminal.count_after(mark, "(3 rows)") < 2 {
        std::thread::sleep(Duration::from_millis(20));
    }
    terminal.type_keys("\x03");
    let mark = terminal.enter("CREATE VIEW after_watch AS SELECT * FROM bids;");
    terminal.expect_after(mark, "\nCREATE VIEW\n", "Ctrl-C did not end \\watch");

    // \subscribe: the view's rows, then its changes, until Ctrl-C.
    let mark = terminal.enter("\\subscribe parity");
    terminal.expect_after(mark, "parity_key", "\\subscribe printed nothing");
    terminal.type_keys("\x03");
    let mark = terminal.enter("CREATE VIEW after_subscribe AS SELECT * FROM bids;");
    terminal.expect_after(mark, "\nCREATE VIEW\n", "Ctrl-C did not end \\subscribe");

    // A SELECT that would take a day to read its bounded input.
    terminal.enter("SELECT COUNT(*) FROM slow;");
    std::thread::sleep(Duration::from_millis(300));
    let mark = terminal.type_keys("\x03");
    terminal.expect_after(mark, "canceling statement due to user request", "Ctrl-C did not cancel the SELECT");
    let mark = terminal.enter("CREATE VIEW after_select AS SELECT * FROM bids;");
    terminal.expect_after(mark, "\nCREATE VIEW\n", "no prompt after the canceled SELECT");

    // `\watch 0` (as fast as it can) ends with a SIGINT sent from elsewhere, as `kill -INT` does.
    terminal.enter("SHOW TABLES;");
    let mark = terminal.enter("\\watch 0");
    terminal.expect_after(mark, "(3 rows)", "\\watch 0 did not run the statement");
    let pid = terminal.client_pid();
    assert!(Command::new("kill").args(["-INT", &pid]).status().unwrap().success());
    let mark = terminal.enter("CREATE VIEW after_kill AS SELECT * FROM bids;");
    terminal.expect_after(mark, "\nCREATE VIEW\n", "kill -INT did not end \\watch 0");

    let (status, screen) = terminal.quit();
    assert!(status.success(), "the client exits 0 after \\q ({status}):\n{screen}");
    let views = server.ok_csv("SHOW VIEWS");
    for view in ["after_watch", "after_subscribe", "after_select", "after_kill"] {
        assert!(views.contains(&format!("{view},view")), "{view} missing from {views}");
    }
    server.terminate();
}

/// The greeting comes only once the server has taken the token: a client with
/// a wrong token or none gets the server's refusal and exit status 2, as psql
/// does when authentication fails, and never a banner saying it is connected.
#[test]
fn the_banner_is_printed_only_after_the_server_accepted_the_token() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &["--token", "s3cret"]);
    for token in [None, Some("wrong")] {
        let env: Vec<(&str, &str)> = token.map(|t| ("EDDY_TOKEN", t)).into_iter().collect();
        let (status, screen) = Terminal::start(&server, data.path(), "dumb", &[], &env).wait();
        assert_eq!(status.code(), Some(2), "token {token:?}:\n{screen}");
        assert!(screen.contains("ERROR:  ") && screen.contains("token"), "token {token:?}: the refusal is shown:\n{screen}");
        assert!(!screen.contains("connected to") && !screen.contains("eddy=> "), "token {token:?}: no banner, no prompt:\n{screen}");
    }
    let terminal = Terminal::start(&server, data.path(), "dumb", &[], &[("EDDY_TOKEN", "s3cret")]);
    terminal.expect_after(0, "eddy=> ", "no prompt with the right token");
    let (status, screen) = terminal.quit();
    assert!(status.success(), "{screen}");
    assert!(screen.contains(&format!("connected to {}", server.address)), "{screen}");
    server.terminate();
}

/// Runs `input` through `eddy sql` as piped standard input; (exit code, stdout, stderr).
fn piped(server: &Server, input: &str) -> (i32, String, String) {
    let mut child = eddy()
        .args(["sql", "--host", &server.address])
        .env_remove("EDDY_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    (output.status.code().unwrap_or(-1), String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned())
}

/// psql's query buffer and its commands: a backslash command on a line that
/// continues a statement, `\p` (print the buffer), `\r` (reset it), `\g` (send
/// it without a `;`), `\set` variables in statements and in `\echo`, `\o FILE`,
/// `\conninfo`, `\h STATEMENT`, and text left without `;` at the end sent too.
#[test]
fn the_query_buffer_and_backslash_commands_work_as_in_psql() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &[]);
    server.ok(&bids_table());
    let out = data.path().join("describe.txt");
    let input = format!(
        "\\set who world\n\\set n 1\n\\echo hello :who\nSELECT auction, COUNT(*) AS n\n  FROM bids WHERE auction = :n \\p\n\\r\n\\p\n\
         SELECT :'who' AS greeting \\g\n\\o {}\nDESCRIBE bids;\n\\o\n\\conninfo\n\\h describe\nSELECT 2 AS two\n\\g\nSELECT 3 AS three\n",
        out.display()
    );
    let (code, stdout, stderr) = piped(&server, &input);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stderr, "");
    let expected = [
        "hello world\n",
        "SELECT auction, COUNT(*) AS n\n  FROM bids WHERE auction = 1\n",
        "Query buffer reset (cleared).\n",
        "Query buffer is empty.\n",
        " greeting \n----------\n world\n(1 row)\n\n",
        &format!("You are connected to the eddy server at {} without a token.\n", server.address),
        "Command:     DESCRIBE\nDescription: a table's or view's columns with their SQL types\nSyntax:\nDESCRIBE name\n\n",
        " two \n-----\n   2\n(1 row)\n\n",
        " three \n-------\n     3\n(1 row)\n\n",
    ]
    .concat();
    assert_eq!(stdout, expected);
    // `\o` sent DESCRIBE's answer to the file, in SQL types.
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "  name   |     type     | null \n---------+--------------+------\n auction | BIGINT       | YES\n bidder  | BIGINT       | YES\n price   | BIGINT       | YES\n ts      | TIMESTAMP(3) | YES\n(4 rows)\n\n"
    );
    server.terminate();
}

/// `DESCRIBE` names SQL types (`BIGINT`, `TIMESTAMP(3)`, `STRING`, `DOUBLE`),
/// not Arrow's (`Int64`, `Timestamp(Millisecond, None)`), for a table, a view
/// and a materialized view.
#[test]
fn describe_shows_sql_types() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &[]);
    server.ok(&bids_table());
    server.ok("CREATE TABLE typed (s STRING, d DOUBLE, m DECIMAL(10, 2), b BOOLEAN, i INT NOT NULL, day DATE) WITH ('connector' = 'blackhole');
         CREATE VIEW priced AS SELECT auction, CAST(price AS DOUBLE) / 100 AS dollars, ts FROM bids;
         CREATE MATERIALIZED VIEW counts AS SELECT auction, COUNT(*) AS n, MAX(ts) AS last_ts FROM bids GROUP BY auction");
    let types = |name: &str| -> Vec<String> {
        let csv = server.ok_csv(&format!("DESCRIBE {name}"));
        let mut lines = csv.lines();
        assert_eq!(lines.next(), Some("name,type,null"));
        // `name,type,null`, the type quoted when it holds a comma (`"DECIMAL(10, 2)"`).
        lines
            .map(|l| {
                let (name, rest) = l.split_once(',').unwrap();
                let (data_type, _null) = rest.rsplit_once(',').unwrap();
                format!("{name} {}", data_type.trim_matches('"'))
            })
            .collect()
    };
    assert_eq!(types("bids"), ["auction BIGINT", "bidder BIGINT", "price BIGINT", "ts TIMESTAMP(3)"]);
    assert_eq!(types("typed"), ["s STRING", "d DOUBLE", "m DECIMAL(10, 2)", "b BOOLEAN", "i INT", "day DATE"]);
    assert_eq!(server.ok_csv("DESCRIBE typed").lines().nth(5), Some("i,INT,NO"));
    assert_eq!(types("priced"), ["auction BIGINT", "dollars DOUBLE", "ts TIMESTAMP(3)"]);
    assert_eq!(types("counts"), ["auction BIGINT", "n BIGINT", "last_ts TIMESTAMP(3)"]);
    server.terminate();
}

/// A `SELECT` without `FROM` is answered, by the server and by `eddy run`.
#[test]
fn a_select_without_from_is_answered() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &[]);
    assert_eq!(server.ok_csv("SELECT 1 AS one, UPPER('a') AS up, 1 + 2 * 3 AS seven"), "one,up,seven\n1,A,7\n");
    assert_eq!(server.ok_csv("SELECT 1").lines().nth(1), Some("1"));
    server.terminate();
    let script = data.path().join("constant.sql");
    std::fs::write(&script, "SELECT 41 + 1 AS answer;\n").unwrap();
    let output = eddy().arg("run").arg(&script).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    // (`eddy run` prints rows as psql lays them out, as `eddy sql` does.)
    assert_eq!(stdout, " answer \n--------\n     42\n(1 row)\n\n");
}

/// What a psql user types in a real terminal: tab completion of a table and a
/// column, history written as each statement is entered (not only at exit),
/// `\e` through $EDITOR, and a result taller than the terminal through $PAGER
/// until `\pset pager off`.
#[test]
fn completion_history_editor_and_pager_in_a_terminal() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &[]);
    server.ok(&bids_table());
    let env = [("EDITOR", "sed -i s/41/42/"), ("PAGER", "sed s/^/paged:/")];
    let mut terminal = Terminal::start(&server, data.path(), "xterm", &[], &env);
    terminal.expect_after(0, "eddy=> ", "no prompt");

    // Tab completes `bi` to the only table, `bids`, and `auc` to its column `auction`.
    let mark = terminal.type_keys("SELECT auc\t FROM bi\t WHERE auction = 2 GROUP BY auction;\r");
    terminal.expect_after(mark, "(1 row)", "the completed statement did not run");
    let screen = terminal.screen();
    assert!(screen[mark..].contains(" auction \n"), "the column was completed:\n{screen}");

    // History is on disk as soon as a statement is entered.
    let mark = terminal.enter("SELECT 41 AS answer;");
    terminal.expect_after(mark, "(1 row)", "SELECT 41 did not run");
    let history = std::fs::read_to_string(data.path().join(".eddy_history")).unwrap_or_default();
    assert!(history.contains("SELECT 41 AS answer;"), "history while the session runs: {history:?}");

    // \e edits the last statement; ending with `;`, it runs at once.
    let mark = terminal.enter("\\e");
    // (Five lines: the five-row terminal pages them.)
    terminal.expect_after(mark, "     42\n", "the edited statement did not run");

    // Four columns are eight lines: taller than the five-row terminal, so paged.
    let mark = terminal.enter("DESCRIBE bids;");
    terminal.expect_after(mark, "paged: ts      | TIMESTAMP(3) | YES\n", "DESCRIBE was not paged");
    let mark = terminal.enter("\\pset pager off");
    terminal.expect_after(mark, "Pager usage is off.", "\\pset pager off");
    let mark = terminal.enter("DESCRIBE bids;");
    terminal.expect_after(mark, "\n ts      | TIMESTAMP(3) | YES\n", "DESCRIBE without the pager");
    assert!(!terminal.screen()[mark..].contains("paged:"), "paged after \\pset pager off:\n{}", terminal.screen());

    let (status, screen) = terminal.quit();
    assert!(status.success(), "{screen}");
    server.terminate();
}

/// `\dp` lists each pipeline with its rows, rate, Kafka lag, watermark, last
/// checkpoint and state size; the numbers are right-aligned, as psql aligns
/// numbers, and the times are filled in once the pipeline has them.
#[test]
fn dp_shows_progress_with_numbers_right_aligned() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &[]);
    server.ok(
        "SET 'execution.checkpointing.interval' = '100 ms';
         CREATE TABLE ticks (id BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '1' SECOND) WITH ('connector' = 'datagen', 'rows-per-second' = '200');
         CREATE MATERIALIZED VIEW per_second AS SELECT window_start, COUNT(*) AS n FROM TABLE(TUMBLE(TABLE ticks, DESCRIPTOR(ts), INTERVAL '1' SECOND)) GROUP BY window_start, window_end",
    );
    // Wait (over gRPC) until the pipeline has a watermark and a completed checkpoint.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let deadline = Instant::now() + PATIENCE;
    let status = runtime.block_on(async {
        let mut client = eddy::client::connect(&server.address, None).await.unwrap();
        loop {
            let p = client.get_pipeline(eddy_proto::PipelineRef { id: "p1".into() }).await.unwrap().into_inner();
            if p.checkpoint_at_ms > 0 && p.watermark_ms.is_some() && p.state_bytes > 0 {
                break p;
            }
            assert!(Instant::now() < deadline, "no checkpoint and watermark yet: {p:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    assert!((now_ms - 60_000..=now_ms).contains(&status.checkpoint_at_ms), "checkpoint time {} is not recent", status.checkpoint_at_ms);
    let (code, stdout, stderr) = piped(&server, "\\dp\n");
    assert_eq!(code, 0, "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    let cells = |line: &str| -> Vec<String> { line.split('|').map(str::to_string).collect() };
    let header: Vec<String> = cells(lines[0]).iter().map(|c| c.trim().to_string()).collect();
    assert_eq!(header, ["id", "name", "status", "rows_in", "rows_out", "rows_per_s", "lag_rows", "watermark", "last_checkpoint", "state_bytes", "error"]);
    assert!(lines[1].starts_with("----+"), "{stdout}");
    let row = cells(lines[2]);
    assert_eq!(row[0].trim(), "p1");
    assert_eq!(row[1].trim(), "per_second");
    assert_eq!(row[2].trim(), "RUNNING");
    for (column, cell) in [(3, &row[3]), (4, &row[4]), (5, &row[5]), (9, &row[9])] {
        let value = cell.trim();
        assert!(value.parse::<f64>().is_ok(), "{} is a number: {cell:?}", header[column]);
        // Right-aligned: padding before the value, one space after it.
        assert_eq!(cell, &format!("{value:>width$} ", width = cell.len() - 1), "{} right-aligned in:\n{stdout}", header[column]);
    }
    assert!(row[3].trim().parse::<u64>().unwrap() > 0, "rows_in: {stdout}");
    assert!(row[9].trim().parse::<u64>().unwrap() > 0, "state_bytes: {stdout}");
    // A datagen source has no consumer lag to tell: empty, not 0.
    assert_eq!(row[6].trim(), "");
    // Times as timestamps: `2026-12-05 16:40:00.123`.
    for column in [7, 8] {
        let value = row[column].trim();
        assert!(value.len() >= 19 && value.as_bytes()[4] == b'-' && value.as_bytes()[10] == b' ', "{}: {value:?} in\n{stdout}", header[column]);
    }
    assert_eq!(lines[3], "(1 row)");
    server.terminate();
}
