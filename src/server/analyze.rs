//! `EXPLAIN ANALYZE pipeline`: a running pipeline's operators, stage by stage in
//! the order data meets them, each with its live figures, from the same counters
//! `/metrics` shows (docs/METRICS.md): rows in and out (and per second since the
//! run started), the share of time its instances were busy, the share of time
//! its stage waited on back-pressure, its state (bytes, and keys: groups, join
//! keys, partitions) and its watermark.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;

use datafusion::arrow::record_batch::RecordBatch;
use eddy_engine::metrics::NO_WATERMARK;
use eddy_engine::{EventTime, PipelineMetrics};

use crate::server::pipelines::PipelineHandle;
use crate::session::string_rows;

/// One operator's figures, summed over its instances.
#[derive(Default)]
pub struct OperatorFigures {
    /// `STAGE.POSITION`, as `/metrics` labels it.
    pub id: String,
    pub name: String,
    pub tasks: u64,
    pub rows_in: u64,
    pub rows_out: u64,
    pub busy_ns: u64,
    pub state_bytes: u64,
    pub state_keys: u64,
    /// The lowest watermark over its instances that have one.
    pub watermark_ms: Option<i64>,
}

/// One stage's figures: its operators', and the time its tasks waited on back-pressure.
#[derive(Default)]
pub struct StageFigures {
    /// Its operators in chain order.
    pub operators: Vec<OperatorFigures>,
    /// How many tasks registered figures.
    pub tasks: u64,
    /// Time its tasks waited for room downstream, summed.
    pub backpressured_ns: u64,
}

/// Every stage's figures by stage index, summed over each operator's instances:
/// what `EXPLAIN ANALYZE` and the console show, from the counters `/metrics` shows.
pub fn stage_figures(metrics: &PipelineMetrics) -> BTreeMap<usize, StageFigures> {
    let mut operators: BTreeMap<(usize, usize), OperatorFigures> = BTreeMap::new();
    let mut stages: BTreeMap<usize, StageFigures> = BTreeMap::new();
    for task in metrics.tasks() {
        let stage = stages.entry(place(&task.task).0).or_default();
        stage.backpressured_ns += task.backpressured_ns.load(Relaxed);
        stage.tasks += 1;
        for op in &task.operators {
            let figures = operators.entry(place(&op.place.id)).or_default();
            figures.id.clone_from(&op.place.id);
            figures.name.clone_from(&op.place.name);
            figures.tasks += 1;
            figures.rows_in += op.rows_in.load(Relaxed);
            figures.rows_out += op.rows_out.load(Relaxed);
            figures.busy_ns += op.busy_ns.load(Relaxed);
            figures.state_bytes += op.state_bytes.load(Relaxed);
            figures.state_keys += op.state_keys.load(Relaxed);
            let watermark = op.watermark_ms.load(Relaxed);
            if watermark != NO_WATERMARK {
                figures.watermark_ms = Some(figures.watermark_ms.map_or(watermark, |w| w.min(watermark)));
            }
        }
    }
    for ((stage, _), figures) in operators {
        stages.entry(stage).or_default().operators.push(figures);
    }
    stages
}

/// The columns of `EXPLAIN ANALYZE`'s answer.
const COLUMNS: [&str; 12] =
    ["stage", "operator", "tasks", "rows_in", "rows_out", "rows_in_per_s", "rows_out_per_s", "busy", "backpressured", "state_bytes", "state_keys", "watermark"];

/// `STAGE.POSITION` as numbers, so stage 10 sorts after stage 9.
fn place(id: &str) -> (usize, usize) {
    let mut parts = id.split('.').map(|p| p.parse().unwrap_or(usize::MAX));
    (parts.next().unwrap_or(usize::MAX), parts.next().unwrap_or(usize::MAX))
}

/// A watermark as `EXPLAIN` shows times; empty before the first.
fn watermark_text(ms: i64) -> String {
    if ms == NO_WATERMARK {
        String::new()
    } else {
        EventTime(ms).to_string()
    }
}

fn share(part_ns: u64, whole_ns: f64) -> String {
    format!("{:.1}%", 100.0 * part_ns as f64 / whole_ns.max(1.0))
}

/// The rows of `EXPLAIN ANALYZE` for `pipeline`: one per operator, then one for its sink.
pub fn explain_analyze(pipeline: &PipelineHandle) -> RecordBatch {
    let (metrics, _, _) = pipeline.figures();
    let uptime = metrics.started.elapsed();
    let uptime_ns = uptime.as_nanos() as f64;
    let per_second = |n: u64| format!("{:.1}", n as f64 / uptime.as_secs_f64().max(1e-3));
    let mut rows: Vec<Vec<String>> = stage_figures(&metrics)
        .iter()
        .flat_map(|(stage, figures)| {
            figures.operators.iter().map(move |f| {
                vec![
                    stage.to_string(),
                    f.name.clone(),
                    f.tasks.to_string(),
                    f.rows_in.to_string(),
                    f.rows_out.to_string(),
                    per_second(f.rows_in),
                    per_second(f.rows_out),
                    share(f.busy_ns, uptime_ns * f.tasks as f64),
                    share(figures.backpressured_ns, uptime_ns * figures.tasks as f64),
                    f.state_bytes.to_string(),
                    f.state_keys.to_string(),
                    f.watermark_ms.map(watermark_text).unwrap_or_default(),
                ]
            })
        })
        .collect();
    if let Some(sink) = metrics.sink() {
        let written = sink.rows_written.load(Relaxed);
        let committed = sink.rows_committed.load(Relaxed);
        rows.push(vec![
            "sink".into(),
            format!("Sink {} ({committed} rows committed)", sink.table),
            "1".into(),
            written.to_string(),
            committed.to_string(),
            per_second(written),
            per_second(committed),
            share(sink.write_ns.load(Relaxed), uptime_ns),
            String::new(),
            String::new(),
            String::new(),
            watermark_text(metrics.watermark().0),
        ]);
    }
    string_rows(&COLUMNS, rows.into_iter())
}
