//! The pipelines one `eddy run` or `eddy demo` runs together: each keeps its own
//! figures ([`PipelineMetrics`]), and the progress line and the summary show them
//! summed up, with the group's watermark the minimum over its pipelines.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::{MetricsSnapshot, PipelineMetrics, PipelineState, SourceTotals};
use crate::message::EventTime;

/// Several pipelines' figures, by pipeline name.
#[derive(Debug, Default)]
pub struct PipelineGroup {
    pipelines: Vec<(String, Arc<PipelineMetrics>)>,
    /// Each pipeline's state, by index: running until its run ends, then finished or
    /// failed, so `/metrics` of a run whose other pipelines go on shows it ended.
    states: Mutex<Vec<PipelineState>>,
}

/// The newest checkpoint of a pipeline: its id, how long it took and its size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointFigures {
    pub id: u64,
    pub duration_ms: u64,
    pub bytes: u64,
}

impl PipelineGroup {
    /// Fresh figures for each of `names`; a name given twice (two `INSERT INTO` the
    /// same table) gets `#2`, `#3`... so every pipeline's figures stay apart.
    pub fn new<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        let mut pipelines: Vec<(String, Arc<PipelineMetrics>)> = Vec::new();
        for name in names {
            let taken = pipelines.iter().filter(|(n, _)| n == name || n.starts_with(&format!("{name}#"))).count();
            let name = if taken == 0 { name.to_string() } else { format!("{name}#{}", taken + 1) };
            pipelines.push((name, Arc::default()));
        }
        let states = Mutex::new(vec![PipelineState::Running; pipelines.len()]);
        PipelineGroup { pipelines, states }
    }

    /// Records how the `index`-th pipeline's run ended (or that it runs).
    pub fn set_state(&self, index: usize, state: PipelineState) {
        if let Some(slot) = self.states.lock().unwrap_or_else(|e| e.into_inner()).get_mut(index) {
            *slot = state;
        }
    }

    /// The `index`-th pipeline's state.
    pub fn state(&self, index: usize) -> PipelineState {
        self.states.lock().unwrap_or_else(|e| e.into_inner()).get(index).copied().unwrap_or(PipelineState::Running)
    }

    /// The pipelines, in the order they were given, with their names.
    pub fn pipelines(&self) -> &[(String, Arc<PipelineMetrics>)] {
        &self.pipelines
    }

    /// The figures of the `index`-th pipeline.
    pub fn get(&self, index: usize) -> Option<&Arc<PipelineMetrics>> {
        self.pipelines.get(index).map(|(_, m)| m)
    }

    fn each(&self) -> impl Iterator<Item = &PipelineMetrics> {
        self.pipelines.iter().map(|(_, m)| m.as_ref())
    }

    /// Every counter summed over the pipelines (a table two pipelines read counts twice in rows in).
    pub fn snapshot(&self) -> MetricsSnapshot {
        self.each().map(PipelineMetrics::snapshot).fold(MetricsSnapshot::default(), |a, b| MetricsSnapshot {
            rows_in: a.rows_in + b.rows_in,
            rows_out: a.rows_out + b.rows_out,
            late_rows: a.late_rows + b.late_rows,
            null_time_rows: a.null_time_rows + b.null_time_rows,
            malformed_rows: a.malformed_rows + b.malformed_rows,
        })
    }

    /// The minimum of the pipelines' watermarks: [`EventTime::MIN`] until every
    /// pipeline has one, and, as each pipeline's only advances, it never goes back.
    /// A pipeline that ended holds the final watermark and no longer holds it back.
    pub fn watermark(&self) -> EventTime {
        self.each().map(PipelineMetrics::watermark).min().unwrap_or(EventTime::MIN)
    }

    /// Bytes of operator state held now, over every pipeline.
    pub fn state_bytes(&self) -> u64 {
        self.each().map(|m| m.state_bytes.load(std::sync::atomic::Ordering::Relaxed)).sum()
    }

    /// Total lag over partitions that report one, and every source's problems (see [`PipelineMetrics::source_health`]).
    pub fn source_health(&self) -> (Option<u64>, Vec<String>) {
        let mut lag: Option<u64> = None;
        let mut problems = Vec::new();
        for m in self.each() {
            let (l, p) = m.source_health();
            lag = match (lag, l) {
                (Some(a), Some(b)) => Some(a + b),
                (a, b) => a.or(b),
            };
            problems.extend(p);
        }
        (lag, problems)
    }

    /// The share of the input read over every pipeline's sources, when every one knows it (see [`PipelineMetrics::input_progress`]).
    pub fn input_progress(&self) -> Option<(u64, u64)> {
        self.each().map(PipelineMetrics::input_progress).try_fold((0, 0), |(read, total), p| p.map(|(r, t)| (read + r, total + t)))
    }

    /// What each source table read to its end yielded, over every pipeline.
    pub fn ended_sources(&self) -> BTreeMap<String, SourceTotals> {
        let mut all: BTreeMap<String, SourceTotals> = BTreeMap::new();
        for m in self.each() {
            for (table, t) in m.ended_sources() {
                let totals = all.entry(table).or_default();
                totals.rows += t.rows;
                totals.malformed += t.malformed;
            }
        }
        all
    }

    /// The oldest of the pipelines' newest checkpoints (what a crash now would go
    /// back to), once every pipeline saved one.
    pub fn checkpoint(&self) -> Option<CheckpointFigures> {
        use std::sync::atomic::Ordering::Relaxed;
        self.each()
            .map(|m| {
                let id = m.checkpoint_id.load(Relaxed);
                (id > 0).then(|| {
                    (
                        m.checkpoint_at_ms.load(Relaxed),
                        CheckpointFigures { id, duration_ms: m.checkpoint_ms.load(Relaxed), bytes: m.checkpoint_bytes.load(Relaxed) },
                    )
                })
            })
            .collect::<Option<Vec<_>>>()?
            .into_iter()
            .min_by_key(|(at, _)| *at)
            .map(|(_, figures)| figures)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 20: `eddy run` and `eddy demo` gave every pipeline one shared set of
    /// figures, so each sink overwrote the others' watermark and the progress line
    /// jumped back and forth. Each pipeline has its own; the group shows the minimum.
    #[test]
    fn each_pipeline_keeps_its_own_watermark_and_the_group_shows_the_lowest() {
        let group = PipelineGroup::new(["early", "late"]);
        assert_eq!((group.state(0), group.state(1)), (PipelineState::Running, PipelineState::Running));
        group.set_state(1, PipelineState::Finished);
        assert_eq!((group.state(0), group.state(1)), (PipelineState::Running, PipelineState::Finished));
        let (early, late) = (group.get(0).unwrap(), group.get(1).unwrap());
        assert!(!Arc::ptr_eq(early, late));
        late.advance_watermark(EventTime(90_000));
        // Until every pipeline has a watermark, the group has none.
        assert_eq!(group.watermark(), EventTime::MIN);
        early.advance_watermark(EventTime(10_000));
        late.advance_watermark(EventTime(95_000));
        assert_eq!((early.watermark(), late.watermark()), (EventTime(10_000), EventTime(95_000)));
        assert_eq!(group.watermark(), EventTime(10_000));
        early.advance_watermark(EventTime(20_000));
        assert_eq!(group.watermark(), EventTime(20_000));
    }

    #[test]
    fn counters_add_up_over_pipelines_and_names_stay_apart() {
        let group = PipelineGroup::new(["out", "out", "other"]);
        let names: Vec<&str> = group.pipelines().iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["out", "out#2", "other"]);
        PipelineMetrics::add(&group.get(0).unwrap().rows_in, 3);
        PipelineMetrics::add(&group.get(2).unwrap().rows_in, 4);
        assert_eq!(group.snapshot().rows_in, 7);
    }
}
