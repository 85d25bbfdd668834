//! A pipeline's figures over the last minutes, one sample a second, kept by the
//! server so the console's charts show the recent past as soon as a page opens
//! (a browser that only kept what it polled would start every chart empty).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eddy_engine::metrics::{now_ms, NO_WATERMARK};
use eddy_engine::PipelineMetrics;
use tokio::task::JoinHandle;

/// How many samples are kept: ten minutes at one a second.
pub const SAMPLES_KEPT: usize = 600;

/// How often a running pipeline is sampled.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// The span the input rate is averaged over: long enough that one slow batch
/// does not show as a drop to zero.
const RATE_SPAN: usize = 2;

/// A pipeline's figures at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// When, in ms since the Unix epoch.
    pub at_ms: i64,
    /// Input rows per second over the last [`RATE_SPAN`] seconds.
    pub rows_in_per_second: f64,
    /// How far the pipeline's watermark trails the clock; `None` before the first watermark.
    pub watermark_lag_ms: Option<i64>,
    /// How long the last completed checkpoint took (0 before the first).
    pub checkpoint_ms: u64,
    /// Late rows since the run started.
    pub late_rows: u64,
}

/// The last [`SAMPLES_KEPT`] samples of one pipeline, over its runs.
#[derive(Debug, Default)]
pub struct History {
    samples: Mutex<VecDeque<Sample>>,
}

impl History {
    /// Every kept sample, oldest first.
    pub fn samples(&self) -> Vec<Sample> {
        self.lock().iter().copied().collect()
    }

    fn push(&self, sample: Sample) {
        let mut samples = self.lock();
        if samples.len() == SAMPLES_KEPT {
            samples.pop_front();
        }
        samples.push_back(sample);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Sample>> {
        // Plain data: a panic elsewhere while holding it leaves nothing half-done.
        self.samples.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Samples one run of a pipeline every second into `history`, and keeps `rate`
/// (f64 bits) at its input rows per second, until aborted.
pub fn spawn_sampler(metrics: Arc<PipelineMetrics>, rate: Arc<AtomicU64>, history: Arc<History>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut readings: VecDeque<(Instant, u64)> = VecDeque::from([(Instant::now(), metrics.rows_in.load(Ordering::Relaxed))]);
        let mut tick = tokio::time::interval(SAMPLE_EVERY);
        tick.tick().await;
        loop {
            tick.tick().await;
            let reading = (Instant::now(), metrics.rows_in.load(Ordering::Relaxed));
            readings.push_back(reading);
            if readings.len() > RATE_SPAN + 1 {
                readings.pop_front();
            }
            let (then, rows_then) = readings[0];
            let per_second = reading.1.saturating_sub(rows_then) as f64 / reading.0.duration_since(then).as_secs_f64().max(1e-3);
            rate.store(per_second.to_bits(), Ordering::Relaxed);
            history.push(sample(&metrics, per_second, now_ms()));
        }
    })
}

/// The figures of `metrics` at `at_ms`, with the input rate measured by the sampler.
fn sample(metrics: &PipelineMetrics, rows_in_per_second: f64, at_ms: i64) -> Sample {
    let watermark = metrics.watermark().0;
    Sample {
        at_ms,
        rows_in_per_second,
        // A source that ended moves the watermark to the end of time: no lag to show.
        watermark_lag_ms: (watermark != NO_WATERMARK && watermark != i64::MAX).then(|| at_ms.saturating_sub(watermark)),
        checkpoint_ms: metrics.checkpoint_ms.load(Ordering::Relaxed),
        late_rows: metrics.late_rows.load(Ordering::Relaxed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use eddy_engine::EventTime;

    #[test]
    fn keeps_the_last_ten_minutes_oldest_first() {
        let history = History::default();
        for second in 0..(SAMPLES_KEPT as i64 + 5) {
            history.push(Sample { at_ms: second * 1000, rows_in_per_second: 0.0, watermark_lag_ms: None, checkpoint_ms: 0, late_rows: 0 });
        }
        let samples = history.samples();
        assert_eq!(samples.len(), SAMPLES_KEPT);
        assert_eq!(samples[0].at_ms, 5_000);
        assert_eq!(samples.last().map(|s| s.at_ms), Some((SAMPLES_KEPT as i64 + 4) * 1000));
    }

    #[test]
    fn watermark_lag_is_the_clock_minus_the_watermark_once_there_is_one() {
        let metrics = PipelineMetrics::default();
        assert_eq!(sample(&metrics, 0.0, 10_000).watermark_lag_ms, None);
        metrics.advance_watermark(EventTime(7_500));
        metrics.late_rows.store(3, Ordering::Relaxed);
        let s = sample(&metrics, 12.5, 10_000);
        assert_eq!((s.watermark_lag_ms, s.late_rows, s.rows_in_per_second), (Some(2_500), 3, 12.5));
        metrics.advance_watermark(EventTime(i64::MAX));
        assert_eq!(sample(&metrics, 0.0, 10_000).watermark_lag_ms, None);
    }
}
