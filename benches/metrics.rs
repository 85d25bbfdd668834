//! `/metrics` of a busy server: how long a scrape takes while `eddy server`
//! runs 100 pipelines (issue 20: under 50 ms), each a windowed aggregate and a
//! join of two generators at parallelism 2, so every pipeline has about ten
//! operators, each with its instances' series.
//!
//! `cargo bench --profile dev --bench metrics` (add `-- --pipelines N --scrapes S`).
//! The server and its HTTP listener run in this process; the scrapes are plain
//! HTTP/1.1 GETs over loopback, timed from the request to the last byte, so the
//! figures include rendering every series and sending them.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{flag_value, percentile};

mod common;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let full = args.iter().any(|a| a == "--bench");
    let pipelines = flag_value(&args, "--pipelines", if full { 100 } else { 5 });
    let scrapes = flag_value(&args, "--scrapes", if full { 200 } else { 10 }) as usize;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let data = tempfile::tempdir().unwrap();
        let server = eddy::server::Server::open(data.path()).await.unwrap();
        let listener = eddy::http::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        eddy::http::spawn(listener, eddy::http::Routes::console(Arc::clone(&server), None));

        let mut sql = String::from("SET 'parallelism' = '2';\n");
        for p in 0..pipelines {
            sql.push_str(&format!(
                "CREATE TABLE clicks{p} (user_id BIGINT, page BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
                   WITH ('connector' = 'datagen', 'rows-per-second' = '20', 'fields.user_id.max' = '50', 'fields.page.max' = '9');
                 CREATE TABLE views{p} (user_id BIGINT, page BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
                   WITH ('connector' = 'datagen', 'rows-per-second' = '20', 'fields.user_id.max' = '50', 'fields.page.max' = '9');
                 CREATE TABLE out{p} (user_id BIGINT, window_start TIMESTAMP(3), clicks BIGINT) WITH ('connector' = 'blackhole');
                 INSERT INTO out{p}
                   SELECT c.user_id, c.window_start, c.clicks FROM
                     (SELECT user_id, window_start, window_end, COUNT(*) AS clicks FROM TABLE(TUMBLE(TABLE clicks{p}, DESCRIPTOR(ts), INTERVAL '1' SECOND))
                      WHERE page > 0 GROUP BY user_id, window_start, window_end) c
                   JOIN
                     (SELECT user_id, window_start, window_end, COUNT(*) AS seen FROM TABLE(TUMBLE(TABLE views{p}, DESCRIPTOR(ts), INTERVAL '1' SECOND))
                      GROUP BY user_id, window_start, window_end) v
                   ON c.user_id = v.user_id AND c.window_start = v.window_start AND c.window_end = v.window_end;\n"
            ));
        }
        let (replies, mut answers) = tokio::sync::mpsc::channel(64);
        let drain = tokio::spawn(async move { while answers.recv().await.is_some() {} });
        server.execute(&sql, &replies).await.map_err(|(_, e)| e.to_string()).unwrap();
        drop(replies);
        drain.await.unwrap();
        // Let every pipeline start its tasks and count some rows.
        tokio::time::sleep(Duration::from_secs(5)).await;

        let running = server.pipelines().iter().filter(|p| p.is_running()).count();
        assert_eq!(running as u64, pipelines, "every pipeline runs");
        let (first, _) = tokio::task::spawn_blocking(move || get(address)).await.unwrap();
        let operators = first.lines().filter(|l| l.starts_with("eddy_operator_rows_in_total{")).count();
        let series = first.lines().filter(|l| !l.starts_with('#')).count();
        let mut latencies = Vec::with_capacity(scrapes);
        let mut bytes = 0;
        for _ in 0..scrapes {
            let (body, took) = tokio::task::spawn_blocking(move || get(address)).await.unwrap();
            bytes = body.len();
            latencies.push(took.as_secs_f64() * 1000.0);
        }
        latencies.sort_by(f64::total_cmp);
        println!(
            "/metrics with {pipelines} pipelines ({operators} operator instances, {series} series, {:.0} kB): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms over {scrapes} scrapes",
            bytes as f64 / 1e3,
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.99),
            latencies.last().copied().unwrap_or_default(),
        );
        server.shutdown().await;
    });
}

/// `GET /metrics` on a fresh connection: the body, and the time to its last byte.
fn get(address: std::net::SocketAddr) -> (String, Duration) {
    let started = Instant::now();
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: eddy\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let took = started.elapsed();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    (body.to_string(), took)
}
