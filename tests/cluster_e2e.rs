//! `eddy server --cluster`: real servers sharing one catalog through a command
//! log on the real Kafka broker the test command starts (see src/server/cluster.rs).
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{bids_table, eddy, running_bid_counts, Running};
use eddy_connectors::kafka::testing::{broker, unique_topic};

/// One member of a cluster, on a port of its own that it keeps when started again.
struct Member {
    process: Running,
    address: String,
}

impl Member {
    fn start(cluster: &str, data_dir: &Path, port: u16) -> Member {
        let mut command = eddy();
        command
            .args(["server", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
            .arg(data_dir)
            .args(["--cluster", cluster, "--kafka", &broker()])
            .env_remove("EDDY_TOKEN")
            .stdout(Stdio::piped());
        let mut process = Running::start(&mut command);
        let mut line = String::new();
        BufReader::new(process.0.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert!(line.contains(&format!("member 127.0.0.1:{port} of cluster {cluster}")), "unexpected first line: {line:?}");
        Member { process, address: format!("127.0.0.1:{port}") }
    }

    /// `eddy sql --csv -c SQL` against this member: (exit code, stdout, stderr).
    fn sql(&self, sql: &str) -> (i32, String, String) {
        let output = eddy().args(["sql", "--csv", "--host", &self.address, "-c", sql]).env_remove("EDDY_TOKEN").output().unwrap();
        (output.status.code().unwrap_or(-1), String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned())
    }

    fn ok(&self, sql: &str) -> String {
        let (code, stdout, stderr) = self.sql(sql);
        assert_eq!(code, 0, "`{sql}` on {} failed: {stderr}", self.address);
        stdout
    }

    /// Waits until `sql` succeeds with an answer `expected` accepts.
    fn wait_for(&self, sql: &str, expected: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (code, answer, error) = self.sql(sql);
            if code == 0 && expected(&answer) {
                return answer;
            }
            assert!(Instant::now() < deadline, "`{sql}` on {} still answers {answer}{error}", self.address);
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The status column of pipeline `id` in SHOW PIPELINES (CSV).
fn status_of(pipelines: &str, id: &str) -> String {
    pipelines.lines().find(|l| l.starts_with(&format!("{id},"))).and_then(|l| l.split(',').nth(2)).unwrap_or_default().to_string()
}

/// Per bidder of tests/data/bids.json, counted here: `bidder,bids,total` lines in bidder order.
fn expected_per_bidder() -> String {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/bids.json")).unwrap();
    let mut per_bidder = std::collections::BTreeMap::<i64, (i64, i64)>::new();
    for line in text.lines() {
        let bid: serde_json::Value = serde_json::from_str(line).unwrap();
        let entry = per_bidder.entry(bid["bidder"].as_i64().unwrap()).or_default();
        entry.0 += 1;
        entry.1 += bid["price"].as_i64().unwrap();
    }
    let mut lines = vec!["bidder,bids,total".to_string()];
    lines.extend(per_bidder.iter().map(|(bidder, (bids, total))| format!("{bidder},{bids},{total}")));
    lines.join("\n") + "\n"
}

#[test]
fn members_share_one_catalog_and_a_restarted_member_catches_up() {
    let cluster = unique_topic("cluster");
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let mut members: Vec<Member> = (0..3).map(|i| Member::start(&cluster, dirs[i].path(), ports[i])).collect();

    // DDL on one member is there at once when it answers, and on the others as
    // soon as they read the log.
    members[0].ok(&bids_table());
    members[0].ok("CREATE VIEW cheap AS SELECT * FROM bids WHERE price < 60");
    assert!(members[0].ok("SHOW VIEWS").contains("cheap,view"));
    for member in &members {
        member.wait_for("SHOW TABLES", |tables| tables.contains("bids,filesystem,bounded"));
        member.wait_for("SHOW VIEWS", |views| views.contains("cheap,view"));
    }

    // A materialized view made on the second member runs there only; every
    // member answers its rows, asking that member.
    let created = members[1].ok("CREATE MATERIALIZED VIEW per_bidder AS SELECT bidder, COUNT(*) AS bids, SUM(price) AS total FROM bids GROUP BY bidder");
    assert!(created.contains("p1"), "{created}");
    let owner = members[1].address.clone();
    members[1].wait_for("SHOW PIPELINES", |p| status_of(p, "p1") == format!("FINISHED on {owner}"));
    for (i, member) in members.iter().enumerate() {
        if i != 1 {
            member.wait_for("SHOW PIPELINES", |p| status_of(p, "p1") == format!("REMOTE on {owner}"));
        }
        assert_eq!(member.ok("SELECT * FROM per_bidder ORDER BY bidder"), expected_per_bidder(), "read on {}", member.address);
    }
    assert_eq!(members[2].ok("SELECT total FROM per_bidder WHERE bidder = 13"), "total\n25\n");

    // Only the owner stops or restarts a pipeline, and the others are told where it runs.
    let (code, _, stderr) = members[0].sql("STOP PIPELINE p1");
    assert_ne!(code, 0);
    assert!(stderr.contains(&format!("runs on cluster member {owner}")), "{stderr}");

    // Two members creating one name at once: the log orders them, so the same
    // one wins on every member and the other fails on its sender.
    let (first, second) = std::thread::scope(|s| {
        let a = s.spawn(|| members[0].sql("CREATE TABLE twice (from_first INT) WITH ('connector' = 'datagen')"));
        let b = s.spawn(|| members[2].sql("CREATE TABLE twice (from_third INT) WITH ('connector' = 'datagen')"));
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_eq!([first.0, second.0].iter().filter(|code| **code == 0).count(), 1, "exactly one wins: {first:?} {second:?}");
    let loser = if first.0 == 0 { &second.2 } else { &first.2 };
    assert!(loser.contains("twice"), "the loser names the table: {loser}");
    let columns: Vec<String> = members.iter().map(|m| m.wait_for("DESCRIBE twice", |_| true)).collect();
    assert!(columns.iter().all(|c| *c == columns[0]), "every member holds the same table: {columns:?}");

    // A member killed misses changes, and has them once started again.
    members[0].process.kill();
    members[1].ok("CREATE TABLE later (a INT) WITH ('connector' = 'datagen'); DROP VIEW cheap; SET 'parallelism' = '3'");
    let tables_elsewhere = members[1].ok("SHOW TABLES");
    members[0] = Member::start(&cluster, dirs[0].path(), ports[0]);
    assert_eq!(members[0].ok("SHOW TABLES"), tables_elsewhere);
    assert!(!members[0].ok("SHOW VIEWS").contains("cheap"));
    assert_eq!(members[0].ok("DESCRIBE twice"), columns[0]);
    assert_eq!(status_of(&members[0].ok("SHOW PIPELINES"), "p1"), format!("REMOTE on {owner}"));
    assert_eq!(members[0].ok("SELECT * FROM per_bidder ORDER BY bidder"), expected_per_bidder());
    // Pipeline ids come from the log, so the next one is the same on every member.
    let second_view = members[0].ok("CREATE MATERIALIZED VIEW n_bids AS SELECT COUNT(*) AS n FROM bids");
    assert!(second_view.contains("p2"), "{second_view}");
    members[2].wait_for("SELECT n FROM n_bids", |rows| rows == "n\n9\n");
}

#[test]
fn a_pipeline_comes_back_on_its_member_after_a_kill() {
    let cluster = unique_topic("cluster");
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let ports: Vec<u16> = (0..2).map(|_| free_port()).collect();
    let mut members: Vec<Member> = (0..2).map(|i| Member::start(&cluster, dirs[i].path(), ports[i])).collect();
    members[1].ok(&running_bid_counts("counts", 2_000));
    let owner = members[1].address.clone();
    let total = "SELECT SUM(n) AS n FROM counts";
    let counted = |rows: &str| rows.lines().nth(1).and_then(|n| n.parse::<i64>().ok()).unwrap_or(0);
    members[0].wait_for(total, |rows| counted(rows) > 0);
    assert_eq!(status_of(&members[0].ok("SHOW PIPELINES"), "p1"), format!("REMOTE on {owner}"));
    assert_eq!(status_of(&members[1].ok("SHOW PIPELINES"), "p1"), format!("RUNNING on {owner}"));

    members[1].process.kill();
    let (code, _, stderr) = members[0].sql(total);
    assert_ne!(code, 0, "a view whose member is down cannot be read");
    assert!(stderr.contains(&format!("kept by cluster member {owner}")), "{stderr}");

    // Started again under its address, the member runs its pipeline again.
    members[1] = Member::start(&cluster, dirs[1].path(), ports[1]);
    members[1].wait_for("SHOW PIPELINES", |p| status_of(p, "p1") == format!("RUNNING on {owner}"));
    let before = counted(&members[0].wait_for(total, |rows| counted(rows) > 0));
    members[0].wait_for(total, |rows| counted(rows) > before);

    // A pipeline stopped by its owner stays stopped when the owner starts again.
    members[1].ok("STOP PIPELINE p1");
    members[0].wait_for("SHOW PIPELINES", |p| status_of(p, "p1") == format!("REMOTE on {owner}"));
    members[1].process.kill();
    members[1] = Member::start(&cluster, dirs[1].path(), ports[1]);
    assert_eq!(status_of(&members[1].ok("SHOW PIPELINES"), "p1"), format!("STOPPED on {owner}"));
}
