//! Point lookups over the Postgres wire protocol: a prepared statement
//! (`SELECT * FROM big WHERE id = $1`, bound in binary) on a materialized view,
//! p50/p99 over 10,000 calls on 1 M rows, then a full read of the view in binary
//! format (`cargo bench` passes `--bench`; run the binary without it for a quick
//! 200 calls on 10,000 rows).
//!
//! `cargo bench --profile dev --bench postgres` (add `-- --calls N --rows N`).
//! The server runs in this process on a loopback port; the client is
//! tokio-postgres, so the figures include the protocol, binding the parameter as
//! a literal, the view's point lookup (its column index: see
//! src/server/point_lookup.rs) and encoding the rows.
//!
//! Figures on the project's 2-core machine are in docs/POSTGRES.md.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Instant;

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
        common::wait_keys_view(&server, rows, started).await;

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

        // The whole view, in binary format (tokio-postgres' `query` asks for it).
        let started = Instant::now();
        let all = client.query("SELECT * FROM big", &[]).await.unwrap();
        let seconds = started.elapsed().as_secs_f64();
        assert_eq!(all.len() as u64, rows);
        // A DataRow on the wire: type, length and column count (7 bytes), then
        // each column's length (4) and value: BIGINT 8, a 12-character STRING, BIGINT 8.
        let wire_bytes = rows as f64 * (7.0 + 3.0 * 4.0 + 8.0 + 12.0 + 8.0);
        println!(
            "Postgres protocol full read (binary) of the {rows}-row view: {:.2} s, {:.2} M rows/s, {:.0} MB/s of DataRows",
            seconds,
            rows as f64 / seconds / 1e6,
            wire_bytes / seconds / 1e6
        );
    });
}
