//! `eddy demo`: the main job on embedded defaults. Nexmark bids run through three
//! windowed queries (TUMBLE, HOP, SESSION) into Parquet, with live output.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use eddy_engine::metrics::PipelineGroup;

use crate::console::{spawn_progress, stop_on_signal, LiveSink};
use crate::error::EddyError;
use crate::session::Session;

/// What `eddy demo` was asked to do.
pub struct DemoOptions {
    pub duration: Option<Duration>,
    pub out: PathBuf,
    pub rate: Option<u64>,
    pub parallelism: Option<usize>,
    pub show_sql: bool,
}

/// The demo's SQL, with the output directory and rate filled in.
pub fn demo_sql(out: &str, rate: Option<u64>) -> String {
    let rate = rate.map(|r| format!(", 'events.rate' = '{r}'")).unwrap_or_default();
    format!(
        r#"-- Nexmark bids, generated in-process; event time is the bid's date_time.
CREATE TABLE bid (
  auction BIGINT, bidder BIGINT, price BIGINT, channel STRING, url STRING, date_time TIMESTAMP(3), extra STRING,
  WATERMARK FOR date_time AS date_time - INTERVAL '2' SECOND
) WITH ('connector' = 'nexmark', 'nexmark.table' = 'bid'{rate});

-- Bids per auction every 10 seconds.
CREATE TABLE bids_per_auction (window_start TIMESTAMP(3), window_end TIMESTAMP(3), auction BIGINT, bids BIGINT, max_price BIGINT)
WITH ('connector' = 'filesystem', 'path' = '{out}/bids_per_auction', 'format' = 'parquet');
INSERT INTO bids_per_auction
SELECT window_start, window_end, auction, COUNT(*), MAX(price)
FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '10' SECOND))
GROUP BY window_start, window_end, auction;

-- Hot items: auctions with the most bids over the last 10 seconds, every 2 seconds.
CREATE TABLE hot_items (window_start TIMESTAMP(3), window_end TIMESTAMP(3), auction BIGINT, bids BIGINT)
WITH ('connector' = 'filesystem', 'path' = '{out}/hot_items', 'format' = 'parquet');
INSERT INTO hot_items
SELECT window_start, window_end, auction, COUNT(*) AS bids
FROM TABLE(HOP(TABLE bid, DESCRIPTOR(date_time), INTERVAL '2' SECOND, INTERVAL '10' SECOND))
GROUP BY window_start, window_end, auction
HAVING COUNT(*) >= 20;

-- Bidding sessions: a bidder's bids with less than 5 seconds between them.
CREATE TABLE bidder_sessions (window_start TIMESTAMP(3), window_end TIMESTAMP(3), bidder BIGINT, bids BIGINT, spent BIGINT)
WITH ('connector' = 'filesystem', 'path' = '{out}/bidder_sessions', 'format' = 'parquet');
INSERT INTO bidder_sessions
SELECT window_start, window_end, bidder, COUNT(*), SUM(price)
FROM TABLE(SESSION(TABLE bid PARTITION BY bidder, DESCRIPTOR(date_time), INTERVAL '5' SECOND))
GROUP BY window_start, window_end, bidder;
"#
    )
}

/// Runs the demo until Ctrl-C or the duration ends.
pub async fn run(options: DemoOptions) -> Result<(), EddyError> {
    let out = options.out.to_string_lossy().to_string();
    let sql = demo_sql(&out, options.rate);
    if options.show_sql {
        crate::console::write_stdout(&format!("{sql}\n"))?;
        return Ok(());
    }
    let mut session = Session::new();
    let pipelines = session.execute_script(&sql).await?;
    if let Some(p) = options.parallelism {
        session.set("parallelism", &p.to_string())?;
    }
    eprintln!(
        "eddy demo: Nexmark bids -> {} windowed queries -> Parquet under {}/ ({}; `eddy demo --show-sql` prints the SQL)",
        pipelines.len(),
        out,
        match options.duration {
            Some(d) => format!("running for {}", humantime::format_duration(d)),
            None => "Ctrl-C to stop".to_string(),
        }
    );
    // Each pipeline counts into its own figures; the progress line shows their sums
    // and the lowest watermark (one shared set made the watermark jump: issue 20).
    let metrics = Arc::new(PipelineGroup::new(pipelines.iter().map(|p| p.name.as_str())));
    let progress = spawn_progress(Arc::clone(&metrics), 1, Some("demo".to_string()));
    let stop = stop_on_signal(options.duration);
    let mut runs = Vec::new();
    for (spec, (_, figures)) in pipelines.iter().zip(metrics.pipelines()) {
        let Some(inner) = session.open_sink(spec)? else {
            continue;
        };
        let sink = Box::new(LiveSink { name: spec.name.clone(), inner, every: Duration::from_secs(3), last: None });
        runs.push(session.prepare(spec).run(sink, Arc::clone(figures), stop.clone(), None));
    }
    let started = std::time::Instant::now();
    let results = futures::future::join_all(runs).await;
    progress.finish().await;
    for result in results {
        result?;
    }
    let m = metrics.snapshot();
    eprintln!(
        "eddy demo: done in {:.1}s: {} events read ({}/s over 3 pipelines), {} result rows written under {}/",
        started.elapsed().as_secs_f64(),
        m.rows_in,
        crate::console::human(m.rows_in as f64 / started.elapsed().as_secs_f64().max(1e-9)),
        m.rows_out,
        out
    );
    Ok(())
}
