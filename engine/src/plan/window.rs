//! Window kinds and their slice arithmetic, on the hot path of window assignment
//! and aggregation: which slices a row falls into and which windows a slice feeds.

/// Which windows a row belongs to. All sizes in milliseconds; windows are aligned to the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowKind {
    /// Fixed, non-overlapping windows of `size_ms`.
    Tumble { size_ms: i64 },
    /// Windows of `size_ms` starting every `slide_ms` (a row is in `size/slide` windows).
    Hop { slide_ms: i64, size_ms: i64 },
    /// Windows growing by `step_ms` from the start of each `max_size_ms` period.
    Cumulate { step_ms: i64, max_size_ms: i64 },
    /// Per-key windows that close after `gap_ms` without rows.
    Session { gap_ms: i64 },
}

impl WindowKind {
    /// The granularity rows are aggregated at before windows are combined: the
    /// window itself for TUMBLE, gcd(size, slide) for HOP, the step for CUMULATE
    /// (Flink's "slicing" windows). `None` for sessions, whose bounds depend on data.
    pub fn slice_ms(&self) -> Option<i64> {
        match *self {
            WindowKind::Tumble { size_ms } => Some(size_ms),
            WindowKind::Hop { slide_ms, size_ms } => Some(gcd(slide_ms, size_ms)),
            WindowKind::Cumulate { step_ms, .. } => Some(step_ms),
            WindowKind::Session { .. } => None,
        }
    }

    /// The SQL name of the window function.
    pub fn name(&self) -> &'static str {
        match self {
            WindowKind::Tumble { .. } => "TUMBLE",
            WindowKind::Hop { .. } => "HOP",
            WindowKind::Cumulate { .. } => "CUMULATE",
            WindowKind::Session { .. } => "SESSION",
        }
    }

    /// The windows that contain the slice starting at `slice_start`, as `(start, end)` pairs, oldest first.
    pub fn windows_of_slice(&self, slice_start: i64) -> Vec<(i64, i64)> {
        match *self {
            WindowKind::Tumble { size_ms } => vec![(slice_start, slice_start + size_ms)],
            WindowKind::Hop { slide_ms, size_ms } => {
                let slice_ms = gcd(slide_ms, size_ms);
                let slice_end = slice_start + slice_ms;
                // Window ends are multiples of the slide in [slice_end, slice_start + size].
                let mut end = ceil_to(slice_end, slide_ms);
                let mut out = Vec::new();
                while end - size_ms <= slice_start {
                    out.push((end - size_ms, end));
                    end += slide_ms;
                }
                out
            }
            WindowKind::Cumulate { step_ms, max_size_ms } => {
                let cycle_start = slice_start.div_euclid(max_size_ms) * max_size_ms;
                let mut out = Vec::new();
                let mut end = slice_start + step_ms;
                while end <= cycle_start + max_size_ms {
                    out.push((cycle_start, end));
                    end += step_ms;
                }
                out
            }
            WindowKind::Session { gap_ms } => vec![(slice_start, slice_start + gap_ms)],
        }
    }
}

impl WindowKind {
    /// How many windows one row falls into at most: 1 for TUMBLE and SESSION,
    /// size/slide for HOP, max_size/step for CUMULATE. State and work per row grow with it.
    pub fn windows_per_row(&self) -> i64 {
        match *self {
            WindowKind::Hop { slide_ms, size_ms } => (size_ms / slide_ms.max(1)).max(1),
            WindowKind::Cumulate { step_ms, max_size_ms } => (max_size_ms / step_ms.max(1)).max(1),
            WindowKind::Tumble { .. } | WindowKind::Session { .. } => 1,
        }
    }
}

/// How many windows one row may fall into before planning warns that state will
/// grow with it: HOP puts a row into size/slide windows, CUMULATE into up to
/// max_size/step. A hundred keeps the common shapes quiet (a 1 h window sliding
/// every minute is 60) and flags the ones that multiply state (1 day every second).
pub const WINDOWS_PER_ROW_WARN: i64 = 100;

/// `90000` -> `"90 s"`, `3600000` -> `"1 h"`: the largest unit that divides the
/// duration evenly, so the numbers in an error are the ones the user wrote.
pub fn duration_text(ms: i64) -> String {
    for (unit_ms, unit) in [(86_400_000, "day"), (3_600_000, "h"), (60_000, "min"), (1_000, "s")] {
        if ms % unit_ms == 0 {
            let n = ms / unit_ms;
            return if unit == "day" && n != 1 { format!("{n} days") } else { format!("{n} {unit}") };
        }
    }
    format!("{ms} ms")
}

fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 {
        a.abs()
    } else {
        gcd(b, a % b)
    }
}

fn ceil_to(value: i64, multiple: i64) -> i64 {
    value.div_euclid(multiple) * multiple + if value.rem_euclid(multiple) == 0 { 0 } else { multiple }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_windows_of_a_slice() {
        let hop = WindowKind::Hop { slide_ms: 2, size_ms: 10 };
        assert_eq!(hop.slice_ms(), Some(2));
        assert_eq!(hop.windows_of_slice(4), vec![(-4, 6), (-2, 8), (0, 10), (2, 12), (4, 14)]);
        let odd = WindowKind::Hop { slide_ms: 4, size_ms: 6 };
        assert_eq!(odd.slice_ms(), Some(2));
        // slice [2,4) is in windows ending at 4 and 8 ([-2,4) and [2,8)).
        assert_eq!(odd.windows_of_slice(2), vec![(-2, 4), (2, 8)]);
        let cumulate = WindowKind::Cumulate { step_ms: 2, max_size_ms: 6 };
        assert_eq!(cumulate.windows_of_slice(2), vec![(0, 4), (0, 6)]);
        assert_eq!(cumulate.windows_of_slice(6), vec![(6, 8), (6, 10), (6, 12)]);
        assert_eq!(WindowKind::Tumble { size_ms: 5 }.windows_of_slice(-5), vec![(-5, 0)]);
    }

    #[test]
    fn durations_in_the_units_written() {
        assert_eq!(duration_text(86_400_000), "1 day");
        assert_eq!(duration_text(2 * 86_400_000), "2 days");
        assert_eq!(duration_text(90_000), "90 s");
        assert_eq!(duration_text(1_500), "1500 ms");
    }

    #[test]
    fn windows_per_row() {
        assert_eq!(WindowKind::Hop { slide_ms: 1, size_ms: 86_400_000 }.windows_per_row(), 86_400_000);
        assert_eq!(WindowKind::Cumulate { step_ms: 1_000, max_size_ms: 3_600_000 }.windows_per_row(), 3600);
        assert_eq!(WindowKind::Tumble { size_ms: 10 }.windows_per_row(), 1);
    }
}
