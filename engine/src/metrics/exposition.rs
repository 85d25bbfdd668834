//! Every figure of a set of pipelines in Prometheus' text exposition format
//! (version 0.0.4), for `/metrics`. Names follow Prometheus' conventions: an
//! `eddy_` prefix, `_total` on counters, base units (seconds, bytes), and the
//! labels `pipeline`, `operator`, `operator_id`, `task`, `source`, `partition`, `sink`.
//! docs/METRICS.md lists every family.
//!
//! Rendering reads the atomics the tasks update; it takes no lock a task holds
//! while it works, so a scrape never slows a pipeline down.

use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use super::{PipelineMetrics, NO_WATERMARK};

/// How a pipeline is doing, for `eddy_pipeline_status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PipelineState {
    Running,
    Stopped,
    Finished,
    Failed,
}

impl PipelineState {
    const ALL: [PipelineState; 4] = [PipelineState::Running, PipelineState::Stopped, PipelineState::Finished, PipelineState::Failed];

    fn label(self) -> &'static str {
        match self {
            PipelineState::Running => "running",
            PipelineState::Stopped => "stopped",
            PipelineState::Finished => "finished",
            PipelineState::Failed => "failed",
        }
    }
}

/// One pipeline to show, with what only its owner knows (its status, its restarts).
pub struct ExposedPipeline<'a> {
    /// The `pipeline` label: unique among the pipelines shown.
    pub name: &'a str,
    pub state: PipelineState,
    /// How many times it was started again after its first start.
    pub restarts: u64,
    pub metrics: &'a PipelineMetrics,
}

/// The kinds of metric the format knows that Eddy uses.
#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
    /// Only `_sum` and `_count`: an average over any range, no quantiles.
    Summary,
}

/// One metric family: its header and its samples, written in one block as the format requires.
struct Family {
    name: &'static str,
    help: &'static str,
    kind: Kind,
    samples: String,
    /// Labels every sample starts with, rendered (`member="host:port",`), or empty.
    constant: Arc<str>,
}

impl Family {
    /// Adds a sample of this family (or of its `suffix`, `_sum` or `_count`, for a summary).
    fn sample(&mut self, suffix: &str, labels: &[(&str, &str)], value: f64) {
        self.samples.push_str(self.name);
        self.samples.push_str(suffix);
        if !labels.is_empty() {
            self.samples.push('{');
            self.samples.push_str(&self.constant);
            for (i, (name, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.samples.push(',');
                }
                self.samples.push_str(name);
                self.samples.push_str("=\"");
                escape_into(&mut self.samples, value);
                self.samples.push('"');
            }
            self.samples.push('}');
        }
        // `{}` on f64 never writes an exponent or `inf`: Prometheus reads it as it is.
        let _ = writeln!(self.samples, " {value}");
    }
}

/// A label value as the format quotes it: backslash, double quote and newline escaped.
fn escape_into(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Every family in the order they are written; [`Families::get`] finds one by name.
struct Families(Vec<Family>);

impl Families {
    fn new(specs: &[(&'static str, Kind, &'static str)], constant: &[(&str, &str)]) -> Self {
        let mut rendered = String::new();
        for (name, value) in constant {
            rendered.push_str(name);
            rendered.push_str("=\"");
            escape_into(&mut rendered, value);
            rendered.push_str("\",");
        }
        let constant: Arc<str> = rendered.into();
        Families(specs.iter().map(|&(name, kind, help)| Family { name, help, kind, samples: String::new(), constant: Arc::clone(&constant) }).collect())
    }

    fn get(&mut self, name: &str) -> &mut Family {
        // The names are this file's constants: a missing one is a bug caught by the tests below.
        let index = self.0.iter().position(|f| f.name == name);
        debug_assert!(index.is_some(), "no metric family {name}");
        &mut self.0[index.unwrap_or(0)]
    }

    fn set(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.get(name).sample("", labels, value);
    }

    fn finish(self) -> String {
        let mut text = String::new();
        for family in self.0.into_iter().filter(|f| !f.samples.is_empty()) {
            let kind = match family.kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
                Kind::Summary => "summary",
            };
            let _ = writeln!(text, "# HELP {} {}\n# TYPE {} {kind}", family.name, family.help, family.name);
            text.push_str(&family.samples);
        }
        text
    }
}

use Kind::{Counter, Gauge, Summary};

/// Every family Eddy exposes: name, kind, help (docs/METRICS.md says more).
const FAMILIES: &[(&str, Kind, &str)] = &[
    ("eddy_pipeline_status", Gauge, "1 for the pipeline's current status, 0 for the others."),
    ("eddy_pipeline_restarts_total", Counter, "Times the pipeline was started again after its first start."),
    ("eddy_pipeline_uptime_seconds", Gauge, "Seconds since the pipeline's current run started (0 when it is not running)."),
    ("eddy_pipeline_rows_in_total", Counter, "Rows the pipeline's sources decoded."),
    ("eddy_pipeline_rows_out_total", Counter, "Rows written to the pipeline's sink."),
    ("eddy_pipeline_late_rows_total", Counter, "Rows that arrived after their window closed."),
    ("eddy_pipeline_null_time_rows_total", Counter, "Rows a window could not place because their event time is NULL."),
    ("eddy_pipeline_malformed_records_total", Counter, "Records the pipeline's sources could not decode."),
    ("eddy_pipeline_state_bytes", Gauge, "Bytes of operator state the pipeline holds in memory."),
    ("eddy_pipeline_watermark_timestamp_seconds", Gauge, "The pipeline's watermark (at its sink), as seconds since the Unix epoch."),
    ("eddy_pipeline_watermark_lag_seconds", Gauge, "How far the pipeline's watermark trails the clock."),
    ("eddy_checkpoints_completed_total", Counter, "Checkpoints saved in the current run."),
    ("eddy_checkpoint_failures_total", Counter, "Checkpoints that could not be saved in the current run."),
    ("eddy_checkpoint_last_duration_seconds", Gauge, "How long the newest checkpoint took, from the first task's snapshot to its completion."),
    ("eddy_checkpoint_last_size_bytes", Gauge, "The newest checkpoint's size."),
    ("eddy_checkpoint_last_written_bytes", Gauge, "Bytes the newest checkpoint wrote; state an earlier checkpoint stored is only referred to."),
    ("eddy_checkpoint_last_completed_timestamp_seconds", Gauge, "When the newest checkpoint completed, as seconds since the Unix epoch."),
    ("eddy_checkpoint_age_seconds", Gauge, "Seconds since the newest checkpoint completed."),
    ("eddy_task_alignment_seconds_total", Counter, "Time a task held inputs back to align a checkpoint barrier."),
    ("eddy_task_backpressured_seconds_total", Counter, "Time a task waited for room downstream (back-pressure)."),
    ("eddy_operator_rows_in_total", Counter, "Rows an operator instance was given."),
    ("eddy_operator_rows_out_total", Counter, "Rows an operator instance passed on."),
    ("eddy_operator_busy_seconds_total", Counter, "Time spent inside an operator instance."),
    ("eddy_operator_state_bytes", Gauge, "Bytes of state an operator instance holds."),
    ("eddy_operator_state_keys", Gauge, "Keys (groups, sessions' keys, join keys, partitions) an operator instance holds state for."),
    ("eddy_operator_watermark_timestamp_seconds", Gauge, "The newest watermark an operator instance passed on, as seconds since the Unix epoch."),
    ("eddy_source_rows_total", Counter, "Rows decoded from a source partition."),
    ("eddy_source_malformed_records_total", Counter, "Records of a source partition that could not be decoded."),
    ("eddy_source_offset", Gauge, "The next offset to read in a source partition."),
    ("eddy_source_consumer_lag_records", Gauge, "Records of a source partition available but not read yet (Kafka: high-water mark minus position)."),
    ("eddy_source_watermark_timestamp_seconds", Gauge, "A source partition's watermark, as seconds since the Unix epoch."),
    ("eddy_source_watermark_lag_seconds", Gauge, "How far a source partition's watermark trails the clock."),
    ("eddy_sink_rows_written_total", Counter, "Rows written to a sink, committed or not yet."),
    ("eddy_sink_rows_committed_total", Counter, "Rows a sink committed (made visible)."),
    ("eddy_sink_write_seconds_total", Counter, "Time spent writing rows to a sink."),
    ("eddy_sink_commit_duration_seconds", Summary, "How long a sink's commits took."),
    ("eddy_sink_errors_total", Counter, "Calls into a sink that failed."),
];

/// The name of every metric family `/metrics` may show, for checks that the docs and dashboards name only real ones.
pub fn family_names() -> Vec<&'static str> {
    FAMILIES.iter().map(|(name, _, _)| *name).collect()
}

fn seconds(ns: u64) -> f64 {
    ns as f64 / 1e9
}

/// A watermark in ms as seconds, when it is one (not "none yet", not the final watermark of an ended input).
fn watermark_seconds(ms: i64) -> Option<f64> {
    (ms != NO_WATERMARK && ms != i64::MAX).then_some(ms as f64 / 1e3)
}

/// Every figure of `pipelines` in Prometheus' text format; `now_ms` (ms since the
/// Unix epoch) is the clock lags and ages are measured against.
pub fn render(pipelines: &[ExposedPipeline<'_>], now_ms: i64) -> String {
    render_labelled(pipelines, now_ms, &[])
}

/// [`render`] with `constant` labels first on every sample: a cluster member's
/// `member`, so figures scraped from several members stay apart when summed.
pub fn render_labelled(pipelines: &[ExposedPipeline<'_>], now_ms: i64, constant: &[(&str, &str)]) -> String {
    let mut f = Families::new(FAMILIES, constant);
    let now_s = now_ms as f64 / 1e3;
    for p in pipelines {
        let m = p.metrics;
        let pipeline = [("pipeline", p.name)];
        for state in PipelineState::ALL {
            f.set("eddy_pipeline_status", &[("pipeline", p.name), ("status", state.label())], f64::from(u8::from(state == p.state)));
        }
        f.set("eddy_pipeline_restarts_total", &pipeline, p.restarts as f64);
        let uptime = if p.state == PipelineState::Running { m.started.elapsed().as_secs_f64() } else { 0.0 };
        f.set("eddy_pipeline_uptime_seconds", &pipeline, uptime);
        let s = m.snapshot();
        f.set("eddy_pipeline_rows_in_total", &pipeline, s.rows_in as f64);
        f.set("eddy_pipeline_rows_out_total", &pipeline, s.rows_out as f64);
        f.set("eddy_pipeline_late_rows_total", &pipeline, s.late_rows as f64);
        f.set("eddy_pipeline_null_time_rows_total", &pipeline, s.null_time_rows as f64);
        f.set("eddy_pipeline_malformed_records_total", &pipeline, s.malformed_rows as f64);
        f.set("eddy_pipeline_state_bytes", &pipeline, m.state_bytes.load(Relaxed) as f64);
        if let Some(w) = watermark_seconds(m.watermark().0) {
            f.set("eddy_pipeline_watermark_timestamp_seconds", &pipeline, w);
            f.set("eddy_pipeline_watermark_lag_seconds", &pipeline, now_s - w);
        }
        f.set("eddy_checkpoints_completed_total", &pipeline, m.checkpoints_completed.load(Relaxed) as f64);
        f.set("eddy_checkpoint_failures_total", &pipeline, m.checkpoint_failures.load(Relaxed) as f64);
        if m.checkpoint_id.load(Relaxed) > 0 {
            let at = m.checkpoint_at_ms.load(Relaxed);
            f.set("eddy_checkpoint_last_duration_seconds", &pipeline, m.checkpoint_ms.load(Relaxed) as f64 / 1e3);
            f.set("eddy_checkpoint_last_size_bytes", &pipeline, m.checkpoint_bytes.load(Relaxed) as f64);
            f.set("eddy_checkpoint_last_written_bytes", &pipeline, m.checkpoint_written_bytes.load(Relaxed) as f64);
            f.set("eddy_checkpoint_last_completed_timestamp_seconds", &pipeline, at as f64 / 1e3);
            f.set("eddy_checkpoint_age_seconds", &pipeline, ((now_ms - at).max(0)) as f64 / 1e3);
        }
        for task in m.tasks() {
            let labels = [("pipeline", p.name), ("task", task.task.as_str())];
            f.set("eddy_task_alignment_seconds_total", &labels, seconds(task.alignment_ns.load(Relaxed)));
            f.set("eddy_task_backpressured_seconds_total", &labels, seconds(task.backpressured_ns.load(Relaxed)));
            for op in &task.operators {
                let labels = [("pipeline", p.name), ("operator_id", op.place.id.as_str()), ("operator", op.place.name.as_str()), ("task", task.task.as_str())];
                f.set("eddy_operator_rows_in_total", &labels, op.rows_in.load(Relaxed) as f64);
                f.set("eddy_operator_rows_out_total", &labels, op.rows_out.load(Relaxed) as f64);
                f.set("eddy_operator_busy_seconds_total", &labels, seconds(op.busy_ns.load(Relaxed)));
                f.set("eddy_operator_state_bytes", &labels, op.state_bytes.load(Relaxed) as f64);
                f.set("eddy_operator_state_keys", &labels, op.state_keys.load(Relaxed) as f64);
                if let Some(w) = watermark_seconds(op.watermark_ms.load(Relaxed)) {
                    f.set("eddy_operator_watermark_timestamp_seconds", &labels, w);
                }
            }
            if let Some(source) = &task.source {
                let labels = [("pipeline", p.name), ("source", source.table.as_str()), ("partition", source.partition.as_str())];
                f.set("eddy_source_rows_total", &labels, source.rows.load(Relaxed) as f64);
                f.set("eddy_source_malformed_records_total", &labels, source.malformed.load(Relaxed) as f64);
                let offset = source.offset.load(Relaxed);
                if offset >= 0 {
                    f.set("eddy_source_offset", &labels, offset as f64);
                }
                let lag = source.lag.load(Relaxed);
                if lag >= 0 {
                    f.set("eddy_source_consumer_lag_records", &labels, lag as f64);
                }
                if let Some(w) = watermark_seconds(source.watermark_ms.load(Relaxed)) {
                    f.set("eddy_source_watermark_timestamp_seconds", &labels, w);
                    f.set("eddy_source_watermark_lag_seconds", &labels, now_s - w);
                }
            }
        }
        if let Some(sink) = m.sink() {
            let labels = [("pipeline", p.name), ("sink", sink.table.as_str())];
            f.set("eddy_sink_rows_written_total", &labels, sink.rows_written.load(Relaxed) as f64);
            f.set("eddy_sink_rows_committed_total", &labels, sink.rows_committed.load(Relaxed) as f64);
            f.set("eddy_sink_write_seconds_total", &labels, seconds(sink.write_ns.load(Relaxed)));
            let commits = f.get("eddy_sink_commit_duration_seconds");
            commits.sample("_sum", &labels, seconds(sink.commit_ns.load(Relaxed)));
            commits.sample("_count", &labels, sink.commits.load(Relaxed) as f64);
            f.set("eddy_sink_errors_total", &labels, sink.errors.load(Relaxed) as f64);
        }
    }
    f.finish()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::{OperatorPlace, SourcePartitionMetrics, TaskMetrics};
    use super::*;
    use crate::message::{EventTime, Message};

    fn sample_pipeline() -> PipelineMetrics {
        let m = PipelineMetrics::default();
        PipelineMetrics::add(&m.rows_in, 7);
        m.advance_watermark(EventTime(1_000_000));
        let source = SourcePartitionMetrics::new("bids", "bids/0");
        source.lag.store(3, Relaxed);
        let task = m.register_task(TaskMetrics::new("0.0".into(), vec![OperatorPlace { id: "0.0".into(), name: "Source\"Prep\"".into() }], Some(source)));
        task.operators[0].record(7, Duration::from_millis(5), &[Message::Watermark(EventTime(999_000))]);
        task.operators[0].state_keys.store(3, Relaxed);
        m.checkpoint_id.store(4, Relaxed);
        m.checkpoint_at_ms.store(1_009_500, Relaxed);
        let sink = m.register_sink("out");
        sink.wrote(2, Duration::ZERO);
        sink.committed(u64::MAX, Duration::from_millis(250));
        m
    }

    #[test]
    fn samples_are_grouped_under_their_family_with_escaped_labels() {
        let (a, b) = (sample_pipeline(), sample_pipeline());
        let shown = [
            ExposedPipeline { name: "a", state: PipelineState::Running, restarts: 0, metrics: &a },
            ExposedPipeline { name: "b", state: PipelineState::Failed, restarts: 2, metrics: &b },
        ];
        let text = render(&shown, 1_010_000);
        // Both pipelines' samples follow one header.
        assert!(text.contains(
            "# HELP eddy_pipeline_rows_in_total Rows the pipeline's sources decoded.\n# TYPE eddy_pipeline_rows_in_total counter\neddy_pipeline_rows_in_total{pipeline=\"a\"} 7\neddy_pipeline_rows_in_total{pipeline=\"b\"} 7\n"
        ), "{text}");
        assert!(text.contains("eddy_pipeline_status{pipeline=\"b\",status=\"failed\"} 1\n"), "{text}");
        assert!(text.contains("eddy_pipeline_status{pipeline=\"b\",status=\"running\"} 0\n"), "{text}");
        assert!(text.contains("eddy_pipeline_restarts_total{pipeline=\"b\"} 2\n"), "{text}");
        assert!(text.contains("eddy_pipeline_watermark_lag_seconds{pipeline=\"a\"} 10\n"), "{text}");
        assert!(text.contains("eddy_operator_rows_in_total{pipeline=\"a\",operator_id=\"0.0\",operator=\"Source\\\"Prep\\\"\",task=\"0.0\"} 7\n"), "{text}");
        assert!(
            text.contains("eddy_operator_busy_seconds_total{pipeline=\"a\",operator_id=\"0.0\",operator=\"Source\\\"Prep\\\"\",task=\"0.0\"} 0.005\n"),
            "{text}"
        );
        assert!(text.contains("eddy_operator_state_keys{pipeline=\"a\",operator_id=\"0.0\",operator=\"Source\\\"Prep\\\"\",task=\"0.0\"} 3\n"), "{text}");
        assert!(text.contains("eddy_source_consumer_lag_records{pipeline=\"a\",source=\"bids\",partition=\"bids/0\"} 3\n"), "{text}");
        assert!(text.contains("# TYPE eddy_sink_commit_duration_seconds summary\neddy_sink_commit_duration_seconds_sum{pipeline=\"a\",sink=\"out\"} 0.25\neddy_sink_commit_duration_seconds_count{pipeline=\"a\",sink=\"out\"} 1\n"), "{text}");
        assert!(text.contains("eddy_checkpoint_age_seconds{pipeline=\"a\"} 0.5\n"), "{text}");
        // No offset was recorded (-1) and no source watermark: those samples are left out, not shown as -1.
        assert!(!text.contains("eddy_source_offset"), "{text}");
        assert!(!text.contains("eddy_source_watermark"), "{text}");
        // Each family's header appears once.
        let headers = text.lines().filter(|l| l.starts_with("# TYPE ")).count();
        let families: std::collections::BTreeSet<&str> = text.lines().filter_map(|l| l.strip_prefix("# TYPE ")).map(|l| l.split(' ').next().unwrap()).collect();
        assert_eq!(headers, families.len());
    }

    #[test]
    fn every_family_name_is_unique_and_prefixed() {
        let names: std::collections::BTreeSet<&str> = FAMILIES.iter().map(|(n, _, _)| *n).collect();
        assert_eq!(names.len(), FAMILIES.len());
        for (name, kind, _) in FAMILIES {
            assert!(name.starts_with("eddy_"), "{name}");
            assert_eq!(name.ends_with("_total"), matches!(kind, Kind::Counter), "{name}: counters, and only counters, end in _total");
        }
    }
}
