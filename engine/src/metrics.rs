//! Counters a running pipeline exposes: what came in, what went out, what was set aside.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Shared, lock-free counters for one pipeline; cloned into every task as an `Arc`.
#[derive(Debug)]
pub struct PipelineMetrics {
    /// Rows read from sources (decoded successfully).
    pub rows_in: AtomicU64,
    /// Rows written to the pipeline's sink.
    pub rows_out: AtomicU64,
    /// Rows that arrived after their window closed.
    pub late_rows: AtomicU64,
    /// Records sources could not decode.
    pub malformed_rows: AtomicU64,
    /// Lowest watermark seen by the sink, in ms (i64::MIN until one arrives).
    pub watermark_ms: AtomicI64,
}

impl Default for PipelineMetrics {
    fn default() -> Self {
        PipelineMetrics {
            rows_in: AtomicU64::new(0),
            rows_out: AtomicU64::new(0),
            late_rows: AtomicU64::new(0),
            malformed_rows: AtomicU64::new(0),
            watermark_ms: AtomicI64::new(i64::MIN),
        }
    }
}

/// A point-in-time copy of [`PipelineMetrics`], for printing and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MetricsSnapshot {
    pub rows_in: u64,
    pub rows_out: u64,
    pub late_rows: u64,
    pub malformed_rows: u64,
}

impl PipelineMetrics {
    /// Reads every counter once.
    pub fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            rows_in: self.rows_in.load(Ordering::Relaxed),
            rows_out: self.rows_out.load(Ordering::Relaxed),
            late_rows: self.late_rows.load(Ordering::Relaxed),
            malformed_rows: self.malformed_rows.load(Ordering::Relaxed),
        }
    }

    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }
}
