//! Full reads of a materialized view over Arrow Flight SQL: `SELECT * FROM big`
//! on a 10 M-row view, read with arrow-flight's `FlightSqlServiceClient`
//! (`cargo bench` passes `--bench`; run the binary without it for a quick read
//! of 100,000 rows).
//!
//! `cargo bench --profile dev --bench flight` (add `-- --rows N --reads N`).
//! The server runs in this process on a loopback port. A read's wall time runs
//! from `GetFlightInfo` (which starts the statement) to the last batch decoded;
//! GB/s counts the Arrow IPC bodies received (the batches' buffers), rows/s the rows.
//!
//! On the project's 2-core machine (Dec 2026), dev profile: a read takes about
//! 0.5 CPU-seconds (server and client together) for 0.32 GB of Arrow bodies, so
//! its wall time depends on whether both cores are free: 0.29 s (1.1 GB/s, 34 M
//! rows/s) when they were, 0.4-0.7 s (0.45-0.8 GB/s) while other builds ran.
//! docs/FLIGHT.md has the lines it printed.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Instant;

use arrow_flight::decode::{DecodedPayload, FlightDataDecoder};
use arrow_flight::sql::client::FlightSqlServiceClient;
use common::{cpu_seconds, flag_value, percentile};
use futures::{StreamExt, TryStreamExt};

mod common;

fn main() {
    // As `eddy server` runs: freed memory stays with the process (src/allocator.rs).
    eddy::allocator::tune();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let full = args.iter().any(|a| a == "--bench");
    let rows = flag_value(&args, "--rows", if full { 10_000_000 } else { 100_000 });
    let reads = flag_value(&args, "--reads", if full { 5 } else { 2 }) as usize;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let data = tempfile::tempdir().unwrap();
        let server = eddy::server::Server::open(data.path()).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(eddy::server::flight::serve(Arc::clone(&server), listener, None, std::future::pending()));
        // tonic's default HTTP/2 windows: `http2_adaptive_window(true)` measured no
        // better on loopback (0.59-0.84 GB/s against 0.63-1.09, alternating runs on the busy 2-core machine).
        let endpoint = tonic::transport::Endpoint::new(format!("http://{address}")).unwrap().tcp_nodelay(true);
        let channel = endpoint.connect().await.unwrap();
        let mut client = FlightSqlServiceClient::new(channel);

        // A view of `rows` rows, from a bounded generator.
        let started = Instant::now();
        client.execute_update(common::keys_view(rows), None).await.unwrap();
        common::wait_keys_view(&server, rows, started).await;

        let (mut seconds, mut info_seconds, mut body_bytes) = (Vec::with_capacity(reads), Vec::with_capacity(reads), 0);
        let cpu = cpu_seconds();
        for _ in 0..reads {
            let read = Instant::now();
            let info = client.execute("SELECT * FROM big".into(), None).await.unwrap();
            info_seconds.push(read.elapsed().as_secs_f64());
            let (mut received_rows, mut received_bytes) = (0, 0);
            for endpoint in info.endpoint {
                let ticket = endpoint.ticket.unwrap();
                let stream = client.inner_mut().do_get(ticket).await.unwrap().into_inner();
                let mut decoder = FlightDataDecoder::new(stream.map_err(arrow_flight::error::FlightError::from));
                while let Some(data) = decoder.next().await {
                    let data = data.unwrap();
                    received_bytes += data.inner.data_body.len();
                    if let DecodedPayload::RecordBatch(batch) = data.payload {
                        received_rows += batch.num_rows() as u64;
                    }
                }
            }
            seconds.push(read.elapsed().as_secs_f64());
            assert_eq!(received_rows, rows);
            body_bytes = received_bytes;
        }
        // Server and client share this process: its CPU time is both sides'.
        let cpu_per_read = (cpu_seconds() - cpu) / reads as f64;
        info_seconds.sort_by(f64::total_cmp);
        let mut sorted = seconds.clone();
        sorted.sort_by(f64::total_cmp);
        let (best, median) = (sorted[0], percentile(&sorted, 0.5));
        let gb = body_bytes as f64 / 1e9;
        println!(
            "Flight SQL full read of a {rows}-row view ({:.2} GB of Arrow bodies): median {:.2}s = {:.2} GB/s, {:.1} M rows/s; best {:.2}s = {:.2} GB/s, {:.1} M rows/s ({reads} reads)",
            gb,
            median,
            gb / median,
            rows as f64 / median / 1e6,
            best,
            gb / best,
            rows as f64 / best / 1e6,
        );
        println!(
            "  of which GetFlightInfo (the view read, collected by the server) {:.2}s median; {:.2} CPU-s per read (server and client) = {:.2} GB per CPU-s",
            percentile(&info_seconds, 0.5),
            cpu_per_read,
            gb / cpu_per_read
        );
    });
}
