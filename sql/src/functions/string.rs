//! Flink's string functions that DataFusion lacks: `REGEXP_EXTRACT`, `REGEXP`,
//! `SPLIT_INDEX`, `TO_BASE64`, `FROM_BASE64`. Regular expressions are compiled once per distinct pattern
//! (once per query for a constant one) and matched without allocating per row.

use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use datafusion::arrow::array::{ArrayRef, BooleanArray, StringBuilder};
use datafusion::arrow::datatypes::Int64Type;
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::{ColumnarValue, ScalarUDF};
use regex::Regex;

use super::flink_fn::{boolean, constant_str, string, FlinkFn, Param, Prims, Strs};

/// Flink's string functions that DataFusion lacks.
pub(super) fn functions() -> Vec<ScalarUDF> {
    use Param::{Int, Str};
    vec![
        FlinkFn::new("REGEXP_EXTRACT", "REGEXP_EXTRACT(text, regex[, group])", &[Str, Str, Int], 2, string, regexp_extract).checking(check_regex::<1>).udf(),
        FlinkFn::new("REGEXP", "REGEXP(text, regex)", &[Str, Str], 2, boolean, regexp).checking(check_regex::<1>).udf(),
        FlinkFn::new("TO_BASE64", "TO_BASE64(text)", &[Str], 1, string, to_base64).udf(),
        FlinkFn::new("FROM_BASE64", "FROM_BASE64(text)", &[Str], 1, string, from_base64).udf(),
        FlinkFn::new("SPLIT_INDEX", "SPLIT_INDEX(text, separator, index)", &[Str, Str, Int], 3, string, split_index).udf(),
    ]
}

/// Refuses a constant regex that does not compile. Flink's are Java regexes: a
/// pattern using what Rust's `regex` lacks (look-around, back-references) is
/// refused here, never matched differently.
fn check_regex<const I: usize>(constants: &[Option<&ScalarValue>]) -> std::result::Result<(), String> {
    match constant_str(constants, I) {
        Some(pattern) => Regex::new(pattern)
            .map(|_| ())
            .map_err(|e| format!("the regular expression '{pattern}' cannot be used: {e} (Eddy's regexes have no look-around or back-references)")),
        None => Ok(()),
    }
}

/// The compiled regex of each row's pattern, compiled again only when the pattern changes.
/// A pattern that does not compile gives NULL, as in Flink.
struct Regexes<'a> {
    last: Option<(&'a str, Option<Regex>)>,
}

impl<'a> Regexes<'a> {
    fn new() -> Self {
        Regexes { last: None }
    }

    fn get(&mut self, pattern: &'a str) -> Option<&Regex> {
        match &self.last {
            Some((seen, _)) if *seen == pattern => {}
            _ => self.last = Some((pattern, Regex::new(pattern).ok())),
        }
        self.last.as_ref().and_then(|(_, regex)| regex.as_ref())
    }
}

/// `REGEXP_EXTRACT(text, regex[, group])`: group `group` (0, the whole match, by
/// default) of the first match; NULL when nothing matches, the group does not
/// exist or did not take part in the match.
fn regexp_extract(args: &[ColumnarValue], rows: usize) -> Result<ArrayRef> {
    let texts = Strs::of(&args[0])?;
    let patterns = Strs::of(&args[1])?;
    let zero = ColumnarValue::Scalar(ScalarValue::Int64(Some(0)));
    let groups = Prims::<Int64Type>::of(args.get(2).unwrap_or(&zero))?;
    let mut regexes = Regexes::new();
    let mut locations = None;
    let mut out = StringBuilder::with_capacity(rows, rows * 8);
    for i in 0..rows {
        let (Some(text), Some(pattern), Some(group)) = (texts.get(i), patterns.get(i), groups.get(i)) else {
            out.append_null();
            continue;
        };
        let Some(regex) = regexes.get(pattern) else {
            out.append_null();
            continue;
        };
        let locs = match &mut locations {
            Some((seen, locs)) if std::ptr::eq(*seen, regex) => locs,
            slot => &mut slot.insert((regex as *const Regex, regex.capture_locations())).1,
        };
        let found = usize::try_from(group).ok().and_then(|g| regex.captures_read(locs, text).and_then(|_| locs.get(g)));
        match found {
            Some((start, end)) => out.append_value(&text[start..end]),
            None => out.append_null(),
        }
    }
    Ok(Arc::new(out.finish()))
}

/// `REGEXP(text, regex)`: whether any part of `text` matches (never, for an empty regex).
fn regexp(args: &[ColumnarValue], rows: usize) -> Result<ArrayRef> {
    let texts = Strs::of(&args[0])?;
    let patterns = Strs::of(&args[1])?;
    let mut regexes = Regexes::new();
    let out: BooleanArray = (0..rows)
        .map(|i| {
            let (text, pattern) = (texts.get(i)?, patterns.get(i)?);
            // Flink: an empty regex matches nothing.
            if pattern.is_empty() {
                return Some(false);
            }
            regexes.get(pattern).map(|regex| regex.is_match(text))
        })
        .collect();
    Ok(Arc::new(out))
}

/// `SPLIT_INDEX(text, separator, index)`: the `index`-th (from 0) piece of
/// `text` split at `separator`, empty pieces kept; NULL past the last piece,
/// for a negative index and for an empty text. An empty separator splits at
/// whitespace (Flink's, from commons-lang).
fn split_index(args: &[ColumnarValue], rows: usize) -> Result<ArrayRef> {
    let texts = Strs::of(&args[0])?;
    let separators = Strs::of(&args[1])?;
    let indexes = Prims::<Int64Type>::of(&args[2])?;
    let mut out = StringBuilder::with_capacity(rows, rows * 8);
    for i in 0..rows {
        let piece = match (texts.get(i), separators.get(i), indexes.get(i).and_then(|n| usize::try_from(n).ok())) {
            (Some(text), Some(separator), Some(index)) if !text.is_empty() => {
                if separator.is_empty() {
                    text.split(char::is_whitespace).nth(index)
                } else {
                    text.split(separator).nth(index)
                }
            }
            _ => None,
        };
        out.append_option(piece);
    }
    Ok(Arc::new(out.finish()))
}

/// `TO_BASE64(text)`: the standard, padded base64 of the text's UTF-8 bytes.
fn to_base64(args: &[ColumnarValue], rows: usize) -> Result<ArrayRef> {
    let texts = Strs::of(&args[0])?;
    let mut out = StringBuilder::with_capacity(rows, rows * 16);
    let mut buffer = String::new();
    for i in 0..rows {
        match texts.get(i) {
            Some(text) => {
                buffer.clear();
                STANDARD.encode_string(text, &mut buffer);
                out.append_value(&buffer);
            }
            None => out.append_null(),
        }
    }
    Ok(Arc::new(out.finish()))
}

/// `FROM_BASE64(text)`: the text whose base64 `text` is; NULL when it is not
/// base64 of UTF-8 text.
fn from_base64(args: &[ColumnarValue], rows: usize) -> Result<ArrayRef> {
    let texts = Strs::of(&args[0])?;
    let mut out = StringBuilder::with_capacity(rows, rows * 16);
    let mut buffer = Vec::new();
    for i in 0..rows {
        buffer.clear();
        let decoded = texts.get(i).and_then(|text| STANDARD.decode_vec(text, &mut buffer).ok()).and_then(|()| std::str::from_utf8(&buffer).ok());
        out.append_option(decoded);
    }
    Ok(Arc::new(out.finish()))
}
