//! Flink's string functions that DataFusion lacks: `REGEXP_EXTRACT`, `REGEXP`,
//! `SPLIT_INDEX`, `LOCATE`, `TO_BASE64`, `FROM_BASE64`, `ELT`; `REGEXP_REPLACE`, whose
//! replacement is literal in Flink; `SUBSTRING`, whose positions
//! DataFusion counts another way; `CONCAT`, which is NULL with any NULL in
//! Flink; and `TRANSLATE`, which keeps the text for a NULL or empty `from` in Flink. Regular expressions are compiled once per distinct pattern (once per
//! query for a constant one) and matched without allocating per row.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use datafusion::arrow::array::{new_null_array, Array, ArrayRef, BooleanArray, Int32Array, StringBuilder};
use datafusion::arrow::compute::interleave;
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::logical_expr::{ColumnarValue, ScalarUDF};
use regex::Regex;

use super::flink_fn::{boolean, constant_str, string, FlinkFn, LastCompiled, Param, Prims, Strs};

/// Flink's string functions that DataFusion lacks.
pub(super) fn functions() -> Vec<ScalarUDF> {
    use Param::{Int, Str};
    vec![
        FlinkFn::new("REGEXP_EXTRACT", "REGEXP_EXTRACT(text, regex[, group])", &[Str, Str, Int], 2, string, regexp_extract).checking(check_regex::<1>).udf(),
        FlinkFn::new("REGEXP", "REGEXP(text, regex)", &[Str, Str], 2, boolean, regexp).checking(check_regex::<1>).udf(),
        FlinkFn::new("TO_BASE64", "TO_BASE64(text)", &[Str], 1, string, to_base64).udf(),
        FlinkFn::new("FROM_BASE64", "FROM_BASE64(text)", &[Str], 1, string, from_base64).udf(),
        // DataFusion's follow PostgreSQL: position 0 is before the first character and
        // a negative position is further before it; Flink's count from the end.
        FlinkFn::new("SUBSTRING", "SUBSTRING(text, position[, length])", &[Str, Int, Int], 2, string, substring).udf(),
        FlinkFn::new("SUBSTR", "SUBSTR(text, position[, length])", &[Str, Int, Int], 2, string, substring).udf(),
        // DataFusion's skips NULLs; Flink's CONCAT is NULL when any argument is.
        FlinkFn::new("CONCAT", "CONCAT(text, text, ...)", &[Str], 1, string, concat).variadic().udf(),
        // DataFusion's expands `$1` in the replacement; Flink's inserts it as written.
        FlinkFn::new("REGEXP_REPLACE", "REGEXP_REPLACE(text, regex, replacement)", &[Str, Str, Str], 3, string, regexp_replace)
            .checking(check_regex::<1>)
            .udf(),
        FlinkFn::new("LOCATE", "LOCATE(part, text[, from])", &[Str, Str, Int], 2, |_| DataType::Int32, locate).udf(),
        FlinkFn::new("SPLIT_INDEX", "SPLIT_INDEX(text, separator, index)", &[Str, Str, Int], 3, string, split_index).udf(),
        FlinkFn::new("ELT", "ELT(index, text, text, ...)", &[Int, Param::SameText], 2, |types| types[1].clone(), elt)
            .variadic()
            .checking(check_elt_index)
            .udf(),
        // DataFusion's (PostgreSQL's) is NULL when `from` or `to` is; Flink's keeps
        // the text for a NULL `from` and deletes for a NULL `to`.
        FlinkFn::new("TRANSLATE", "TRANSLATE(text, from, to)", &[Str, Str, Str], 3, string, translate).udf(),
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

/// Each row's regex, compiled again only when the pattern changes. A pattern
/// that does not compile gives NULL, as in Flink.
fn regexes<'a>() -> LastCompiled<'a, Option<Regex>> {
    LastCompiled::new(|pattern| Regex::new(pattern).ok())
}

/// `REGEXP_EXTRACT(text, regex[, group])`: group `group` (0, the whole match, by
/// default) of the first match; NULL when nothing matches, the group does not
/// exist or did not take part in the match.
fn regexp_extract(args: &[ColumnarValue], rows: usize) -> Result<ArrayRef> {
    let texts = Strs::of(&args[0])?;
    let patterns = Strs::of(&args[1])?;
    let zero = ColumnarValue::Scalar(ScalarValue::Int64(Some(0)));
    let groups = Prims::<Int64Type>::of(args.get(2).unwrap_or(&zero))?;
    let mut regexes = regexes();
    let mut locations = None;
    let mut out = StringBuilder::with_capacity(rows, rows * 8);
    for i in 0..rows {
        let (Some(text), Some(pattern), Some(group)) = (texts.get(i), patterns.get(i), groups.get(i)) else {
            out.append_null();
            continue;
        };
        let Some(regex) = regexes.get(pattern).as_ref() else {
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

/// `REGEXP_REPLACE(text, regex, replacement)`: every match replaced by
/// `replacement`, taken literally (`$1` is the two characters `$1`, as in Flink).
fn regexp_replace(args: &[ColumnarValue], rows: usize) -> Result<ArrayRef> {
    let texts = Strs::of(&args[0])?;
    let patterns = Strs::of(&args[1])?;
    let replacements = Strs::of(&args[2])?;
    let mut regexes = regexes();
    let mut out = StringBuilder::with_capacity(rows, rows * 16);
    for i in 0..rows {
        let (Some(text), Some(pattern), Some(replacement)) = (texts.get(i), patterns.get(i), replacements.get(i)) else {
            out.append_null();
            continue;
        };
        match regexes.get(pattern).as_ref() {
            Some(regex) => out.append_value(regex.replace_all(text, regex::NoExpand(replacement))),
            None => out.append_null(),
        }
    }
    Ok(Arc::new(out.finish()))
}

/// `REGEXP(text, regex)`: whether any part of `text` matches (never, for an empty regex).
fn regexp(args: &[ColumnarValue], rows: usize) -> Result<ArrayRef> {
    let texts = Strs::of(&args[0])?;
    let patterns = Strs::of(&args[1])?;
    let mut regexes = regexes();
    let out: BooleanArray = (0..rows)
        .map(|i| {
            let (text, pattern) = (texts.get(i)?, patterns.get(i)?);
            // Flink: an empty regex matches nothing.
            if pattern.is_empty() {
                return Some(false);
            }
            regexes.get(pattern).as_ref().map(|regex| regex.is_match(text))
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

/// `SUBSTRING(text, position[, length])`, in characters: position 1 (or 0) is the
/// first, a negative one counts from the end; NULL for a negative length.
fn substring(args: &[ColumnarValue], rows: usize) -> Result<ArrayRef> {
    let texts = Strs::of(&args[0])?;
    let positions = Prims::<Int64Type>::of(&args[1])?;
    let unbounded = ColumnarValue::Scalar(ScalarValue::Int64(Some(i64::MAX)));
    let lengths = Prims::<Int64Type>::of(args.get(2).unwrap_or(&unbounded))?;
    let mut out = StringBuilder::with_capacity(rows, rows * 8);
    for i in 0..rows {
        let (Some(text), Some(position), Some(length)) = (texts.get(i), positions.get(i), lengths.get(i)) else {
            out.append_null();
            continue;
        };
        if length < 0 {
            out.append_null();
            continue;
        }
        let chars = text.chars().count() as i64;
        let start = match position {
            p if p > 0 => p - 1,
            p if p < 0 => chars + p,
            _ => 0,
        };
        if start < 0 || start >= chars {
            out.append_value("");
            continue;
        }
        let end = start.saturating_add(length).min(chars);
        let byte = |n: i64| text.char_indices().nth(n as usize).map_or(text.len(), |(b, _)| b);
        out.append_value(&text[byte(start)..byte(end)]);
    }
    Ok(Arc::new(out.finish()))
}

/// `CONCAT(a, b, ...)`: the texts joined; NULL when any is NULL.
fn concat(args: &[ColumnarValue], rows: usize) -> Result<ArrayRef> {
    let texts = args.iter().map(Strs::of).collect::<Result<Vec<_>>>()?;
    let mut out = StringBuilder::with_capacity(rows, rows * 16);
    for i in 0..rows {
        if texts.iter().any(|t| t.get(i).is_none()) {
            out.append_null();
            continue;
        }
        for text in &texts {
            out.write_str(text.get(i).unwrap_or_default()).map_err(|e| DataFusionError::Execution(e.to_string()))?;
        }
        out.append_value("");
    }
    Ok(Arc::new(out.finish()))
}

/// `LOCATE(part, text[, from])`: where `part` first occurs in `text` at or after
/// character `from` (1 by default), counting characters from 1; 0 when it does not.
fn locate(args: &[ColumnarValue], rows: usize) -> Result<ArrayRef> {
    let parts = Strs::of(&args[0])?;
    let texts = Strs::of(&args[1])?;
    let one = ColumnarValue::Scalar(ScalarValue::Int64(Some(1)));
    let froms = Prims::<Int64Type>::of(args.get(2).unwrap_or(&one))?;
    let out: Int32Array = (0..rows)
        .map(|i| {
            let (part, text, from) = (parts.get(i)?, texts.get(i)?, froms.get(i)?);
            if from < 1 {
                return Some(0);
            }
            let skip = usize::try_from(from - 1).ok()?;
            let Some((start, _)) = text.char_indices().nth(skip).or((skip == text.chars().count()).then_some((text.len(), ' '))) else { return Some(0) };
            let found = text[start..].find(part).map_or(0, |at| skip + text[start..start + at].chars().count() + 1);
            i32::try_from(found).ok()
        })
        .collect();
    Ok(Arc::new(out))
}

/// Refuses a constant negative `ELT` index, as Flink does at planning (0 is
/// allowed, and gives NULL).
fn check_elt_index(constants: &[Option<&ScalarValue>]) -> std::result::Result<(), String> {
    match constants.first().copied().flatten() {
        Some(ScalarValue::Int8(Some(v))) if *v < 0 => Err(format!("the index must be an integer from 0 on, not {v}")),
        Some(ScalarValue::Int16(Some(v))) if *v < 0 => Err(format!("the index must be an integer from 0 on, not {v}")),
        Some(ScalarValue::Int32(Some(v))) if *v < 0 => Err(format!("the index must be an integer from 0 on, not {v}")),
        Some(ScalarValue::Int64(Some(v))) if *v < 0 => Err(format!("the index must be an integer from 0 on, not {v}")),
        _ => Ok(()),
    }
}

/// `ELT(index, a, b, ...)`: the `index`-th (from 1) of the texts; NULL for an index
/// outside them. Picked by Arrow's `interleave`, so STRING and BYTES alike.
fn elt(args: &[ColumnarValue], rows: usize) -> Result<ArrayRef> {
    let index = Prims::<Int64Type>::of(&args[0])?;
    // A constant choice stays one row long and is read at row 0.
    let choices = args[1..]
        .iter()
        .map(|a| match a {
            ColumnarValue::Array(a) => Ok((Arc::clone(a), false)),
            ColumnarValue::Scalar(s) => Ok((s.to_array()?, true)),
        })
        .collect::<Result<Vec<_>>>()?;
    let none = new_null_array(choices[0].0.data_type(), 1);
    let mut sources: Vec<&dyn Array> = choices.iter().map(|(a, _)| a.as_ref()).collect();
    sources.push(none.as_ref());
    let count = choices.len();
    let picks: Vec<(usize, usize)> = (0..rows)
        .map(|i| match index.get(i).and_then(|n| usize::try_from(n).ok()).filter(|n| (1..=count).contains(n)) {
            Some(n) => (n - 1, if choices[n - 1].1 { 0 } else { i }),
            None => (count, 0),
        })
        .collect();
    Ok(interleave(&sources, &picks)?)
}

/// What `TRANSLATE` does with each character: ASCII ones looked up in a table, the
/// others in a map; `None` deletes it.
struct Translation {
    ascii: [Option<Option<char>>; 128],
    other: HashMap<char, Option<char>>,
}

impl Translation {
    /// The i-th character of `from` becomes the i-th of `to`, or is deleted when
    /// `to` is shorter; the first mapping of a character wins.
    fn new(from: &str, to: &str) -> Self {
        let mut translation = Translation { ascii: [None; 128], other: HashMap::new() };
        let mut to = to.chars();
        for c in from.chars() {
            let into = to.next();
            match usize::try_from(u32::from(c)).ok().filter(|&c| c < 128) {
                Some(c) => {
                    translation.ascii[c].get_or_insert(into);
                }
                None => {
                    translation.other.entry(c).or_insert(into);
                }
            }
        }
        translation
    }

    /// What `c` becomes: `None` when it stays, `Some(None)` when it is deleted.
    fn of(&self, c: char) -> Option<Option<char>> {
        match usize::try_from(u32::from(c)).ok().filter(|&c| c < 128) {
            Some(c) => self.ascii[c],
            None => self.other.get(&c).copied(),
        }
    }
}

/// `TRANSLATE(text, from, to)`: each character of `text` found in `from` replaced
/// by the one at the same place in `to`, or deleted when `to` has none there. The
/// text as it is when `from` is NULL or empty; a NULL `to` deletes.
fn translate(args: &[ColumnarValue], rows: usize) -> Result<ArrayRef> {
    let texts = Strs::of(&args[0])?;
    let froms = Strs::of(&args[1])?;
    let tos = Strs::of(&args[2])?;
    let mut out = StringBuilder::with_capacity(rows, rows * 16);
    let failed = |e: std::fmt::Error| DataFusionError::Execution(format!("TRANSLATE: {e}"));
    // Built again only when `from` or `to` changes (once for constants).
    let mut last: Option<(&str, &str, Translation)> = None;
    for i in 0..rows {
        let Some(text) = texts.get(i) else {
            out.append_null();
            continue;
        };
        let (from, to) = (froms.get(i).unwrap_or_default(), tos.get(i).unwrap_or_default());
        if from.is_empty() || text.is_empty() {
            out.append_value(text);
            continue;
        }
        let translation = match &last {
            Some((f, t, translation)) if *f == from && *t == to => translation,
            _ => &last.insert((from, to, Translation::new(from, to))).2,
        };
        for c in text.chars() {
            match translation.of(c) {
                None => out.write_char(c).map_err(failed)?,
                Some(Some(into)) => out.write_char(into).map_err(failed)?,
                Some(None) => {}
            }
        }
        out.append_value("");
    }
    Ok(Arc::new(out.finish()))
}
