//! Server round trips: `ExecuteSql` point lookups on a 1 M-row materialized view
//! (p50/p99 over 1,000 calls), `Subscribe` delivery latency from event
//! generation to the client at 100 k events/s, and how stale a view's rows are
//! at the default settings (10 s checkpoints) when read with `SELECT`.
//!
//! `cargo bench --profile dev --bench server` (add `-- --calls N --seconds S`).
//! The server runs in this process on a loopback port; the client is the same
//! tonic client `eddy sql` uses, so the figures include gRPC, Arrow IPC encoding
//! and decoding, and DataFusion planning of each query.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{flag_value, percentile};
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::TimestampMillisecondType;
use eddy_proto::{subscribe_response, PipelineRef, SubscribeRequest};
use rand::Rng;

mod common;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let full = args.iter().any(|a| a == "--bench");
    let calls = flag_value(&args, "--calls", if full { 1000 } else { 50 }) as usize;
    let rows = flag_value(&args, "--rows", if full { 1_000_000 } else { 10_000 });
    let seconds = flag_value(&args, "--seconds", if full { 10 } else { 2 });
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let data = tempfile::tempdir().unwrap();
        let server = eddy::server::Server::open(data.path()).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        tokio::spawn(eddy::server::service::serve(Arc::clone(&server), listener, None, std::future::pending()));
        let mut client = eddy::client::connect(&address, None).await.unwrap();

        // A view of `rows` rows, from a bounded generator.
        let started = Instant::now();
        eddy::client::execute(
            &mut client,
            &common::keys_view(rows),
        )
        .await
        .map_err(|e| e.1)
        .unwrap();
        loop {
            let p = client.get_pipeline(PipelineRef { id: "big".into() }).await.unwrap().into_inner();
            if p.status != "RUNNING" {
                assert_eq!((p.status.as_str(), p.state_rows), ("FINISHED", rows), "{p:?}");
                println!("view `big`: {} rows, {:.1} MB in memory, built in {:.2}s", p.state_rows, p.state_bytes as f64 / 1e6, started.elapsed().as_secs_f64());
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut rng = rand::thread_rng();
        let mut latencies = Vec::with_capacity(calls);
        for _ in 0..calls {
            let id = rng.gen_range(0..rows);
            let call = Instant::now();
            let results = eddy::client::execute(&mut client, &format!("SELECT * FROM big WHERE id = {id}")).await.map_err(|e| e.1).unwrap();
            latencies.push(call.elapsed().as_secs_f64() * 1000.0);
            let found = results[0].rows.as_ref().map(|(_, b)| b.iter().map(|b| b.num_rows()).sum::<usize>()).unwrap_or(0);
            assert_eq!(found, 1, "id {id}");
        }
        latencies.sort_by(f64::total_cmp);
        println!(
            "ExecuteSql point lookup on a {rows}-row view: p50 {:.2} ms, p99 {:.2} ms over {calls} calls",
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.99)
        );

        // Subscribe: 100 k events/s, changes applied at each 100 ms checkpoint.
        eddy::client::execute(
            &mut client,
            "SET 'execution.checkpointing.interval' = '100 ms';
             CREATE TABLE ev (id BIGINT, ts TIMESTAMP(3)) WITH ('connector' = 'datagen', 'rows-per-second' = '100000', 'fields.id.kind' = 'sequence', 'fields.ts.max-past' = '0');
             CREATE MATERIALIZED VIEW latest AS SELECT id % 100 AS k, MAX(ts) AS last_ts, COUNT(*) AS n FROM ev GROUP BY id % 100",
        )
        .await
        .map_err(|e| e.1)
        .unwrap();
        let mut stream = client.subscribe(SubscribeRequest { name: "latest".into(), snapshot: false }).await.unwrap().into_inner();
        let mut header = Vec::new();
        let mut delays = Vec::new();
        let until = Instant::now() + Duration::from_secs(seconds);
        while Instant::now() < until {
            let Ok(Some(message)) = stream.message().await else { break };
            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
            match message.change {
                Some(subscribe_response::Change::ArrowSchema(bytes)) => header = bytes,
                Some(subscribe_response::Change::ArrowBatch(bytes)) => {
                    let (_, batches) = eddy::ipc::decode_after(&header, &bytes).unwrap();
                    for batch in batches {
                        let ops = batch.column(0).as_string::<i32>();
                        let ts = batch.column(2).as_primitive::<TimestampMillisecondType>();
                        // The newest event in the change: its delay is generation to delivery.
                        let newest = (0..batch.num_rows()).filter(|&i| ops.value(i) != "-U" && !ts.is_null(i)).map(|i| ts.value(i)).max();
                        if let Some(newest) = newest {
                            delays.push((now - newest) as f64);
                        }
                    }
                }
                None => {}
            }
        }
        delays.sort_by(f64::total_cmp);
        let status = client.get_pipeline(PipelineRef { id: "latest".into() }).await.unwrap().into_inner();
        println!(
            "Subscribe delivery at {:.0} events/s (checkpoint interval 100 ms): p50 {:.0} ms, p99 {:.0} ms over {} change batches",
            status.rows_in_per_second,
            percentile(&delays, 0.5),
            percentile(&delays, 0.99),
            delays.len()
        );
        // Staleness at the default checkpoint interval: the newest event a SELECT
        // finds in the view, against the clock, polled every 50 ms.
        eddy::client::execute(
            &mut client,
            "SET 'execution.checkpointing.interval' = '10 s';
             CREATE TABLE live (id BIGINT, ts TIMESTAMP(3)) WITH ('connector' = 'datagen', 'rows-per-second' = '10000', 'fields.id.kind' = 'sequence', 'fields.ts.max-past' = '0');
             CREATE MATERIALIZED VIEW newest AS SELECT id % 10 AS k, MAX(ts) AS last_ts FROM live GROUP BY id % 10",
        )
        .await
        .map_err(|e| e.1)
        .unwrap();
        let created = Instant::now();
        let mut first_rows = None;
        let mut stale = Vec::new();
        let mut as_of_lag = Vec::new();
        while created.elapsed() < Duration::from_secs(seconds.max(2) + 1) {
            let results = eddy::client::execute(&mut client, "SELECT MAX(last_ts) AS newest FROM newest").await.map_err(|e| e.1).unwrap();
            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
            let newest = results[0].rows.as_ref().and_then(|(_, b)| b.first().cloned()).and_then(|b| {
                let ts = b.column(0).as_primitive::<TimestampMillisecondType>().clone();
                (!ts.is_empty() && !ts.is_null(0)).then(|| ts.value(0))
            });
            if let Some(newest) = newest {
                first_rows.get_or_insert(created.elapsed());
                stale.push((now - newest) as f64);
                let status = client.get_pipeline(PipelineRef { id: "newest".into() }).await.unwrap().into_inner();
                if let Some(at) = status.view_as_of_ms {
                    as_of_lag.push((now - at) as f64);
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        stale.sort_by(f64::total_cmp);
        as_of_lag.sort_by(f64::total_cmp);
        let first = first_rows.map_or("never".to_string(), |d| format!("{:.2} s", d.as_secs_f64()));
        let pct = |sorted: &[f64], p: f64| if sorted.is_empty() { f64::NAN } else { percentile(sorted, p) };
        println!(
            "View staleness at default settings (10 s checkpoints): first rows {first} after CREATE; newest row p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms behind the clock over {} SELECTs; GetPipeline view_as_of lag p50 {:.0} ms",
            pct(&stale, 0.5),
            pct(&stale, 0.99),
            stale.last().copied().unwrap_or(f64::NAN),
            stale.len(),
            pct(&as_of_lag, 0.5)
        );
        server.shutdown().await;
    });
}
