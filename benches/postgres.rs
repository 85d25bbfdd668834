//! Point lookups over the Postgres wire protocol: a prepared statement
//! (`SELECT * FROM big WHERE id = $1`, bound in binary) on a materialized view,
//! p50/p99 over 10,000 calls on 1 M rows (`cargo bench` passes `--bench`; run the
//! binary without it for a quick 200 calls on 10,000 rows).
//!
//! `cargo bench --profile dev --bench postgres` (add `-- --calls N --rows N`).
//! The server runs in this process on a loopback port; the client is
//! tokio-postgres, so the figures include the protocol, binding the parameter as
//! a literal, DataFusion planning of each query over the view's snapshot, and
//! encoding the row.
//!
//! On the project's 2-core machine (Dec 2026, other builds running): view built in
//! 0.42 s; p50 2.30 ms, p99 7.91 ms over 10,000 calls (gRPC's `ExecuteSql`, in
//! benches/server.rs: p50 2.08 ms, p99 3.59 ms over 1,000).
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{flag_value, percentile};
use rand::Rng;

mod common;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let full = args.iter().any(|a| a == "--bench");
    let calls = flag_value(&args, "--calls", if full { 10_000 } else { 200 }) as usize;
    let rows = flag_value(&args, "--rows", if full { 1_000_000 } else { 10_000 });
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let data = tempfile::tempdir().unwrap();
        let server = eddy::server::Server::open(data.path()).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(eddy::server::pg::Service::new(Arc::clone(&server), None, None).expect("the postgres service").serve(listener, std::future::pending()));
        let (client, connection) =
            tokio_postgres::connect(&format!("host={} port={} user=eddy dbname=eddy", address.ip(), address.port()), tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(connection);

        // A view of `rows` rows, from a bounded generator.
        let started = Instant::now();
        client.batch_execute(&common::keys_view(rows)).await.unwrap();
        loop {
            let status = server.pipeline("big").unwrap().status();
            if status.status != "RUNNING" {
                assert_eq!((status.status.as_str(), status.state_rows), ("FINISHED", rows), "{status:?}");
                println!("view `big`: {rows} rows, built in {:.2}s", started.elapsed().as_secs_f64());
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        let lookup = client.prepare("SELECT * FROM big WHERE id = $1").await.unwrap();
        let mut rng = rand::thread_rng();
        let mut latencies = Vec::with_capacity(calls);
        for _ in 0..calls {
            let id = rng.gen_range(0..rows as i64);
            let call = Instant::now();
            let found = client.query(&lookup, &[&id]).await.unwrap();
            latencies.push(call.elapsed().as_secs_f64() * 1000.0);
            assert_eq!(found.len(), 1, "id {id}");
            assert_eq!(found[0].get::<_, i64>(2), id * 2);
        }
        latencies.sort_by(f64::total_cmp);
        println!(
            "Postgres protocol point lookup (prepared, binary) on a {rows}-row view: p50 {:.2} ms, p99 {:.2} ms over {calls} calls",
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.99)
        );
    });
}
