//! Parsing of `WITH (...)` option values shared by all connectors, so that every
//! connector accepts the same spellings and reports the same errors.

use eddy_engine::table::TableDef;

use crate::error::ConnectorError;

/// Default for `'scan.batch-rows'`: rows per batch a source emits at most.
pub const DEFAULT_BATCH_ROWS: usize = 8192;

/// Reads an option and parses it with `parse`, or returns `None` when unset.
pub(crate) fn opt<T>(def: &TableDef, key: &str, parse: impl Fn(&str, &str) -> Result<T, ConnectorError>) -> Result<Option<T>, ConnectorError> {
    def.option(key).map(|v| parse(key, v)).transpose()
}

/// `'true'` / `'false'`, any case.
pub(crate) fn parse_bool(key: &str, value: &str) -> Result<bool, ConnectorError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(ConnectorError::invalid(key, value, "expected 'true' or 'false'")),
    }
}

/// A non-negative integer.
pub(crate) fn parse_u64(key: &str, value: &str) -> Result<u64, ConnectorError> {
    value.trim().parse::<u64>().map_err(|_| ConnectorError::invalid(key, value, "expected a non-negative integer"))
}

/// A signed integer.
pub(crate) fn parse_i64(key: &str, value: &str) -> Result<i64, ConnectorError> {
    value.trim().parse::<i64>().map_err(|_| ConnectorError::invalid(key, value, "expected an integer"))
}

/// A finite number.
pub(crate) fn parse_f64(key: &str, value: &str) -> Result<f64, ConnectorError> {
    match value.trim().parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(ConnectorError::invalid(key, value, "expected a number")),
    }
}

/// A positive integer that fits in memory sizes (batch sizes, counts).
pub(crate) fn parse_positive(key: &str, value: &str) -> Result<usize, ConnectorError> {
    match value.trim().parse::<usize>() {
        Ok(v) if v > 0 => Ok(v),
        _ => Err(ConnectorError::invalid(key, value, "expected a positive integer")),
    }
}

/// A duration like Flink's: `500ms`, `10s`, `10 s`, `1min`, `2 h`; a bare number is
/// milliseconds. Public so session settings read durations exactly as options do.
pub fn parse_duration(key: &str, value: &str) -> Result<std::time::Duration, ConnectorError> {
    let v = value.trim();
    if let Ok(ms) = v.parse::<u64>() {
        return Ok(std::time::Duration::from_millis(ms));
    }
    humantime::parse_duration(&v.replace(' ', "")).map_err(|_| ConnectorError::invalid(key, value, "expected a duration such as '500ms', '10s' or '1min'"))
}

/// A memory size like Flink's: `1024`, `64kb`, `128MB`, `1 gb` (units are powers of 1024).
/// Public so session settings read sizes exactly as options do.
pub fn parse_size(key: &str, value: &str) -> Result<u64, ConnectorError> {
    let v = value.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let bad = || ConnectorError::invalid(key, value, "expected a size such as '128MB' (units: B, KB, MB, GB, TB)");
    let n: u64 = num.parse().map_err(|_| bad())?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" | "bytes" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => return Err(bad()),
    };
    match n.checked_mul(mult) {
        Some(bytes) if bytes > 0 => Ok(bytes),
        _ => Err(bad()),
    }
}

/// How long to wait before retry `attempt` (1, 2, ...) of a request to a server
/// that failed: 100 ms doubling per attempt, at most 10 s, so an outage of a few
/// seconds costs a few quick retries and a long one does not flood the server.
pub(crate) fn retry_delay(attempt: u32) -> std::time::Duration {
    let ms = 100u64.saturating_mul(1u64 << attempt.saturating_sub(1).min(16));
    std::time::Duration::from_millis(ms.min(10_000))
}

#[cfg(test)]
#[test]
fn retry_delay_doubles_up_to_ten_seconds() {
    use std::time::Duration;
    assert_eq!(retry_delay(1), Duration::from_millis(100));
    assert_eq!(retry_delay(2), Duration::from_millis(200));
    assert_eq!(retry_delay(7), Duration::from_millis(6_400));
    assert_eq!(retry_delay(8), Duration::from_secs(10));
    assert_eq!(retry_delay(1_000), Duration::from_secs(10));
}

/// `'scan.batch-rows'`, defaulting to [`DEFAULT_BATCH_ROWS`].
pub(crate) fn batch_rows(def: &TableDef) -> Result<usize, ConnectorError> {
    Ok(opt(def, "scan.batch-rows", parse_positive)?.unwrap_or(DEFAULT_BATCH_ROWS))
}

/// ` (did you mean 'x'?)` for the closest candidate within a small edit distance, else empty.
pub(crate) fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    let best = candidates.into_iter().map(|c| (edit_distance(word, c), c)).min_by_key(|(d, _)| *d);
    match best {
        Some((d, c)) if d <= 2.max(word.len() / 4) && d < word.len() => {
            format!(" (did you mean '{c}'?)")
        }
        _ => String::new(),
    }
}

/// Levenshtein distance, for suggestions.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("k", "128MB").unwrap(), 128 << 20);
        assert_eq!(parse_size("k", "1 gb").unwrap(), 1 << 30);
        assert_eq!(parse_size("k", "4096").unwrap(), 4096);
        assert_eq!(parse_size("k", "64kb").unwrap(), 64 << 10);
        assert!(parse_size("k", "12 parsecs").is_err());
        assert!(parse_size("k", "0").is_err());
        assert!(parse_size("k", "MB").is_err());
    }

    #[test]
    fn suggestions() {
        assert_eq!(did_you_mean("paht", ["path", "format"]), " (did you mean 'path'?)");
        assert_eq!(did_you_mean("zzzzzz", ["path", "format"]), "");
    }

    #[test]
    fn bools_and_numbers() {
        assert!(parse_bool("k", "TRUE").unwrap());
        assert!(parse_bool("k", "yes").is_err());
        assert!(parse_positive("k", "0").is_err());
        assert_eq!(parse_i64("k", "-5").unwrap(), -5);
        assert!(parse_f64("k", "nan").is_err());
    }
}
