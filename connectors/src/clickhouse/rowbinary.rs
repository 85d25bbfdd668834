//! ClickHouse column types and the RowBinary encoding of Arrow arrays into them.
//!
//! RowBinary is ClickHouse's row-oriented binary input format: for every row, every
//! column's value in order, with no separators or header. Each value is written in
//! the *server column's* type (read from `system.columns`), so a `TIMESTAMP(3)`
//! column lands correctly in a `DateTime`, `DateTime64(3)` or `DateTime64(6)`
//! column. The encodings (from ClickHouse's `formats` documentation):
//!
//! | ClickHouse type          | bytes                                                    |
//! |--------------------------|----------------------------------------------------------|
//! | `(U)Int8..(U)Int256`     | little-endian two's complement of that width             |
//! | `Float32` / `Float64`    | IEEE 754, little-endian                                  |
//! | `Bool`                   | one byte, 0 or 1                                         |
//! | `String`                 | LEB128 length, then the bytes                            |
//! | `FixedString(N)`         | exactly N bytes, zero-padded                             |
//! | `Date` / `Date32`        | `UInt16` / `Int32` days since 1970-01-01                 |
//! | `DateTime`               | `UInt32` seconds since the epoch                         |
//! | `DateTime64(P)`          | `Int64` ticks of 10^-P seconds since the epoch           |
//! | `Decimal(P, S)`          | the unscaled integer, 4/8/16/32 bytes for P ≤ 9/18/38/76 |
//! | `Nullable(T)`            | one byte: 1 = NULL (nothing follows), 0 = a `T` follows  |
//! | `LowCardinality(T)`      | as `T`                                                   |
//!
//! The encoder works column by column per batch (each column's array is downcast
//! once) and row by row when writing, with no per-row allocation.

use std::fmt;

use datafusion::arrow::array::{Array, ArrowPrimitiveType, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{
    DataType, Date32Type, Decimal128Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type, TimeUnit, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType, UInt16Type, UInt32Type, UInt64Type, UInt8Type,
};

/// A ClickHouse column type, as far as the sink needs to understand it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ChType {
    /// `Int8`..`Int256` (`signed`) or `UInt8`..`UInt256`, `bytes` wide.
    Int {
        bytes: usize,
        signed: bool,
    },
    Float32,
    Float64,
    Bool,
    String,
    FixedString(usize),
    Date,
    Date32,
    /// `DateTime` or `DateTime('zone')`: the zone only affects display.
    DateTime,
    /// `DateTime64(precision[, 'zone'])`.
    DateTime64(u32),
    /// `Decimal(P, S)` and its aliases `Decimal32(S)`..`Decimal256(S)`.
    Decimal {
        precision: u32,
        scale: u32,
    },
    Nullable(Box<ChType>),
    LowCardinality(Box<ChType>),
    /// Any type the sink cannot write (Enum8, Array(...), UUID...), as the server spells it.
    Other(String),
}

impl ChType {
    /// Parses a type as `system.columns` spells it. Never fails: types the sink does
    /// not know become [`ChType::Other`] and are reported when a column needs them.
    pub(crate) fn parse(text: &str) -> ChType {
        let text = text.trim();
        let (name, args) = match text.find('(') {
            Some(open) if text.ends_with(')') => (text[..open].trim(), Some(text[open + 1..text.len() - 1].trim())),
            _ => (text, None),
        };
        let int_arg = |s: &str| s.trim().parse::<u32>().ok();
        let first_arg = || args.and_then(|a| a.split(',').next()).and_then(int_arg);
        let parsed = match (name, args) {
            ("Nullable", Some(inner)) => Some(ChType::Nullable(Box::new(ChType::parse(inner)))),
            ("LowCardinality", Some(inner)) => Some(ChType::LowCardinality(Box::new(ChType::parse(inner)))),
            ("Int8", None) => Some(ChType::Int { bytes: 1, signed: true }),
            ("Int16", None) => Some(ChType::Int { bytes: 2, signed: true }),
            ("Int32", None) => Some(ChType::Int { bytes: 4, signed: true }),
            ("Int64", None) => Some(ChType::Int { bytes: 8, signed: true }),
            ("Int128", None) => Some(ChType::Int { bytes: 16, signed: true }),
            ("Int256", None) => Some(ChType::Int { bytes: 32, signed: true }),
            ("UInt8", None) => Some(ChType::Int { bytes: 1, signed: false }),
            ("UInt16", None) => Some(ChType::Int { bytes: 2, signed: false }),
            ("UInt32", None) => Some(ChType::Int { bytes: 4, signed: false }),
            ("UInt64", None) => Some(ChType::Int { bytes: 8, signed: false }),
            ("UInt128", None) => Some(ChType::Int { bytes: 16, signed: false }),
            ("UInt256", None) => Some(ChType::Int { bytes: 32, signed: false }),
            ("Float32", None) => Some(ChType::Float32),
            ("Float64", None) => Some(ChType::Float64),
            ("Bool" | "Boolean", None) => Some(ChType::Bool),
            ("String", None) => Some(ChType::String),
            ("FixedString", Some(n)) => n.parse::<usize>().ok().map(ChType::FixedString),
            ("Date", None) => Some(ChType::Date),
            ("Date32", None) => Some(ChType::Date32),
            ("DateTime", _) => Some(ChType::DateTime),
            ("DateTime64", Some(_)) => first_arg().filter(|p| *p <= 9).map(ChType::DateTime64),
            ("Decimal", Some(a)) => a.split_once(',').and_then(|(p, s)| {
                let (precision, scale) = (int_arg(p)?, int_arg(s)?);
                (1..=76).contains(&precision).then_some(ChType::Decimal { precision, scale }).filter(|_| scale <= precision)
            }),
            ("Decimal32", Some(_)) => first_arg().map(|scale| ChType::Decimal { precision: 9, scale }),
            ("Decimal64", Some(_)) => first_arg().map(|scale| ChType::Decimal { precision: 18, scale }),
            ("Decimal128", Some(_)) => first_arg().map(|scale| ChType::Decimal { precision: 38, scale }),
            ("Decimal256", Some(_)) => first_arg().map(|scale| ChType::Decimal { precision: 76, scale }),
            _ => None,
        };
        parsed.unwrap_or_else(|| ChType::Other(text.to_string()))
    }

    /// The type values are encoded as: without `LowCardinality`, which RowBinary ignores.
    fn storage(&self) -> &ChType {
        match self {
            ChType::LowCardinality(inner) => inner.storage(),
            other => other,
        }
    }
}

impl fmt::Display for ChType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChType::Int { bytes, signed } => write!(f, "{}Int{}", if *signed { "" } else { "U" }, bytes * 8),
            ChType::Float32 => f.write_str("Float32"),
            ChType::Float64 => f.write_str("Float64"),
            ChType::Bool => f.write_str("Bool"),
            ChType::String => f.write_str("String"),
            ChType::FixedString(n) => write!(f, "FixedString({n})"),
            ChType::Date => f.write_str("Date"),
            ChType::Date32 => f.write_str("Date32"),
            ChType::DateTime => f.write_str("DateTime"),
            ChType::DateTime64(p) => write!(f, "DateTime64({p})"),
            ChType::Decimal { precision, scale } => write!(f, "Decimal({precision}, {scale})"),
            ChType::Nullable(inner) => write!(f, "Nullable({inner})"),
            ChType::LowCardinality(inner) => write!(f, "LowCardinality({inner})"),
            ChType::Other(text) => f.write_str(text),
        }
    }
}

/// One column to encode: the sink column's name and the server column's type.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ColumnTarget {
    pub name: String,
    pub ch_type: ChType,
}

/// Writes the value of one row (known not to be null) into the output.
type WriteFn<'a> = Box<dyn Fn(usize, &mut Vec<u8>) -> Result<(), String> + 'a>;

/// One column of a batch, ready to encode.
struct ColumnEncoder<'a> {
    name: &'a str,
    array: &'a dyn Array,
    /// The server type (for messages).
    ch_type: &'a ChType,
    /// Whether the server column is `Nullable`: each value is preceded by a null flag.
    nullable: bool,
    write: WriteFn<'a>,
}

/// Whether Arrow type `data_type` can be written into a column of `ch_type`; the
/// error says why not. Used to check a table before any row is written.
pub(crate) fn check_compatible(data_type: &DataType, ch_type: &ChType) -> Result<(), String> {
    let empty = datafusion::arrow::array::new_empty_array(data_type);
    let (_, inner) = split_nullable(ch_type);
    value_writer(empty.as_ref(), inner).map(|_| ())
}

/// Appends the RowBinary encoding of every row of `batch` to `out`, column `i`
/// of the batch into `columns[i]`. On error `out` may hold part of a row; the
/// caller truncates it.
pub(crate) fn encode_batch(batch: &RecordBatch, columns: &[ColumnTarget], out: &mut Vec<u8>) -> Result<(), String> {
    if batch.num_columns() != columns.len() {
        return Err(format!("the batch has {} columns but the table {}", batch.num_columns(), columns.len()));
    }
    let encoders = columns
        .iter()
        .zip(batch.columns())
        .map(|(column, array)| {
            let (nullable, inner) = split_nullable(&column.ch_type);
            let write = value_writer(array.as_ref(), inner).map_err(|e| format!("column '{}': {e}", column.name))?;
            Ok(ColumnEncoder { name: &column.name, array: array.as_ref(), ch_type: &column.ch_type, nullable, write })
        })
        .collect::<Result<Vec<_>, String>>()?;
    for row in 0..batch.num_rows() {
        for column in &encoders {
            let is_null = column.array.is_null(row);
            if column.nullable {
                out.push(u8::from(is_null));
                if is_null {
                    continue;
                }
            } else if is_null {
                return Err(format!(
                    "column '{}' is NULL in a row, but its ClickHouse type {} is not Nullable; \
                     declare it Nullable(...) in ClickHouse, or filter out or replace the NULLs",
                    column.name, column.ch_type
                ));
            }
            (column.write)(row, out).map_err(|e| format!("column '{}': {e}", column.name))?;
        }
    }
    Ok(())
}

/// Whether values carry a null flag, and the type of the value itself.
fn split_nullable(ch_type: &ChType) -> (bool, &ChType) {
    match ch_type.storage() {
        ChType::Nullable(inner) => (true, inner.storage()),
        other => (false, other),
    }
}

/// The width in bytes and signedness of an Arrow integer type.
fn arrow_int(data_type: &DataType) -> Option<(usize, bool)> {
    Some(match data_type {
        DataType::Int8 => (1, true),
        DataType::Int16 => (2, true),
        DataType::Int32 => (4, true),
        DataType::Int64 => (8, true),
        DataType::UInt8 => (1, false),
        DataType::UInt16 => (2, false),
        DataType::UInt32 => (4, false),
        DataType::UInt64 => (8, false),
        _ => return None,
    })
}

/// A writer of `array`'s values as `ch_type` (not Nullable), or why there is none.
fn value_writer<'a>(array: &'a dyn Array, ch_type: &ChType) -> Result<WriteFn<'a>, String> {
    let data_type = array.data_type();
    let mismatch = || {
        format!(
            "cannot write {data_type} into ClickHouse type {ch_type}{}",
            default_type(data_type, true).map_or(String::new(), |t| format!(" (expected {t})"))
        )
    };
    match (data_type, ch_type) {
        (_, ChType::Int { bytes, signed }) if arrow_int(data_type).is_some() => {
            let (from_bytes, from_signed) = arrow_int(data_type).ok_or_else(mismatch)?;
            // Only widening that keeps every value: same signedness and at least as
            // wide, or unsigned into a strictly wider signed type.
            let lossless = (from_signed == *signed && *bytes >= from_bytes) || (!from_signed && *signed && *bytes > from_bytes);
            if !lossless {
                return Err(mismatch());
            }
            let bytes = *bytes;
            Ok(match data_type {
                DataType::Int8 => ints::<Int8Type>(array, bytes),
                DataType::Int16 => ints::<Int16Type>(array, bytes),
                DataType::Int32 => ints::<Int32Type>(array, bytes),
                DataType::Int64 => ints::<Int64Type>(array, bytes),
                DataType::UInt8 => ints::<UInt8Type>(array, bytes),
                DataType::UInt16 => ints::<UInt16Type>(array, bytes),
                DataType::UInt32 => ints::<UInt32Type>(array, bytes),
                _ => ints::<UInt64Type>(array, bytes),
            })
        }
        (DataType::Float32, ChType::Float32) => {
            let values = array.as_primitive::<Float32Type>().values();
            Ok(Box::new(move |row, out| {
                out.extend_from_slice(&values[row].to_le_bytes());
                Ok(())
            }))
        }
        (DataType::Float32, ChType::Float64) => {
            let values = array.as_primitive::<Float32Type>().values();
            Ok(Box::new(move |row, out| {
                out.extend_from_slice(&f64::from(values[row]).to_le_bytes());
                Ok(())
            }))
        }
        (DataType::Float64, ChType::Float64) => {
            let values = array.as_primitive::<Float64Type>().values();
            Ok(Box::new(move |row, out| {
                out.extend_from_slice(&values[row].to_le_bytes());
                Ok(())
            }))
        }
        (DataType::Boolean, ChType::Bool | ChType::Int { bytes: 1, .. }) => {
            let values = array.as_boolean();
            Ok(Box::new(move |row, out| {
                out.push(u8::from(values.value(row)));
                Ok(())
            }))
        }
        (DataType::Utf8, ChType::String | ChType::FixedString(_)) => {
            let values = array.as_string::<i32>();
            Ok(bytes_writer(move |row| values.value(row).as_bytes(), ch_type))
        }
        (DataType::LargeUtf8, ChType::String | ChType::FixedString(_)) => {
            let values = array.as_string::<i64>();
            Ok(bytes_writer(move |row| values.value(row).as_bytes(), ch_type))
        }
        (DataType::Utf8View, ChType::String | ChType::FixedString(_)) => {
            let values = array.as_string_view();
            Ok(bytes_writer(move |row| values.value(row).as_bytes(), ch_type))
        }
        (DataType::Binary, ChType::String | ChType::FixedString(_)) => {
            let values = array.as_binary::<i32>();
            Ok(bytes_writer(move |row| values.value(row), ch_type))
        }
        (DataType::LargeBinary, ChType::String | ChType::FixedString(_)) => {
            let values = array.as_binary::<i64>();
            Ok(bytes_writer(move |row| values.value(row), ch_type))
        }
        (DataType::BinaryView, ChType::String | ChType::FixedString(_)) => {
            let values = array.as_binary_view();
            Ok(bytes_writer(move |row| values.value(row), ch_type))
        }
        (DataType::Date32, ChType::Date) => {
            let values = array.as_primitive::<Date32Type>().values();
            Ok(Box::new(move |row, out| {
                let days = values[row];
                let days = u16::try_from(days)
                    .map_err(|_| format!("date {} is outside ClickHouse's Date range 1970-01-01..2149-06-06; use a Date32 column", format_days(days)))?;
                out.extend_from_slice(&days.to_le_bytes());
                Ok(())
            }))
        }
        (DataType::Date32, ChType::Date32) => {
            let values = array.as_primitive::<Date32Type>().values();
            Ok(Box::new(move |row, out| {
                out.extend_from_slice(&values[row].to_le_bytes());
                Ok(())
            }))
        }
        (DataType::Timestamp(unit, _), ChType::DateTime) => {
            let ticks = timestamp_ticks(array, *unit, 0);
            Ok(Box::new(move |row, out| {
                let seconds = ticks(row)?;
                let seconds = u32::try_from(seconds).map_err(|_| {
                    format!(
                        "timestamp {seconds} s since the epoch is outside ClickHouse's DateTime range \
                         1970-01-01 00:00:00..2106-02-07 06:28:15 UTC; use a DateTime64 column"
                    )
                })?;
                out.extend_from_slice(&seconds.to_le_bytes());
                Ok(())
            }))
        }
        (DataType::Timestamp(unit, _), ChType::DateTime64(precision)) => {
            let ticks = timestamp_ticks(array, *unit, *precision);
            Ok(Box::new(move |row, out| {
                out.extend_from_slice(&ticks(row)?.to_le_bytes());
                Ok(())
            }))
        }
        (DataType::Decimal128(_, from_scale), ChType::Decimal { precision, scale }) => {
            let rescale = u32::try_from(*from_scale)
                .ok()
                .and_then(|from| scale.checked_sub(from))
                .and_then(|up| 10i128.checked_pow(up))
                .ok_or_else(|| format!("{}; the scale of the ClickHouse column must be at least the column's", mismatch()))?;
            // Past 38 digits every i128 fits (Decimal256).
            let limit = if *precision <= 38 { 10i128.checked_pow(*precision) } else { None };
            let bytes = decimal_bytes(*precision);
            let (precision, scale) = (*precision, *scale);
            let values = array.as_primitive::<Decimal128Type>().values();
            Ok(Box::new(move |row, out| {
                let value = values[row].checked_mul(rescale).filter(|v| limit.is_none_or(|l| v.unsigned_abs() < l.unsigned_abs()));
                let value = value.ok_or_else(|| format!("value {} does not fit ClickHouse type Decimal({precision}, {scale})", values[row]))?;
                write_int(value, bytes, out);
                Ok(())
            }))
        }
        _ => Err(mismatch()),
    }
}

/// Writes integers of Arrow type `T` as `bytes`-wide little-endian integers.
fn ints<'a, T>(array: &'a dyn Array, bytes: usize) -> WriteFn<'a>
where
    T: ArrowPrimitiveType,
    T::Native: Into<i128>,
{
    let values = array.as_primitive::<T>().values();
    Box::new(move |row, out| {
        write_int(values[row].into(), bytes, out);
        Ok(())
    })
}

/// The low `bytes` bytes of `value` in little-endian order, sign-extended past 16
/// bytes (for the 256-bit types). Correct for signed and unsigned targets when the
/// value fits the target, which the callers check.
fn write_int(value: i128, bytes: usize, out: &mut Vec<u8>) {
    let le = value.to_le_bytes();
    if bytes <= le.len() {
        out.extend_from_slice(&le[..bytes]);
    } else {
        out.extend_from_slice(&le);
        let fill = if value < 0 { 0xFF } else { 0 };
        out.resize(out.len() + bytes - le.len(), fill);
    }
}

/// A writer of byte strings as `String` or `FixedString(N)`.
fn bytes_writer<'a>(value: impl Fn(usize) -> &'a [u8] + 'a, ch_type: &ChType) -> WriteFn<'a> {
    match *ch_type {
        ChType::FixedString(width) => Box::new(move |row, out| {
            let bytes = value(row);
            if bytes.len() > width {
                return Err(format!("a value of {} bytes does not fit FixedString({width})", bytes.len()));
            }
            out.extend_from_slice(bytes);
            out.resize(out.len() + width - bytes.len(), 0);
            Ok(())
        }),
        _ => Box::new(move |row, out| {
            write_string(value(row), out);
            Ok(())
        }),
    }
}

/// A ClickHouse `String`: LEB128 length, then the bytes.
pub(crate) fn write_string(bytes: &[u8], out: &mut Vec<u8>) {
    let mut len = bytes.len() as u64;
    loop {
        let byte = (len & 0x7F) as u8;
        len >>= 7;
        if len == 0 {
            out.push(byte);
            break;
        }
        out.push(byte | 0x80);
    }
    out.extend_from_slice(bytes);
}

/// Timestamps of `array` (in `unit`) as ticks of 10^-`precision` s, rounding down
/// (toward the past, also before 1970) when the target is coarser.
fn timestamp_ticks<'a>(array: &'a dyn Array, unit: TimeUnit, precision: u32) -> Box<dyn Fn(usize) -> Result<i64, String> + 'a> {
    let values = match unit {
        TimeUnit::Second => array.as_primitive::<TimestampSecondType>().values(),
        TimeUnit::Millisecond => array.as_primitive::<TimestampMillisecondType>().values(),
        TimeUnit::Microsecond => array.as_primitive::<TimestampMicrosecondType>().values(),
        TimeUnit::Nanosecond => array.as_primitive::<TimestampNanosecondType>().values(),
    };
    let digits = match unit {
        TimeUnit::Second => 0,
        TimeUnit::Millisecond => 3,
        TimeUnit::Microsecond => 6,
        TimeUnit::Nanosecond => 9,
    };
    // Both precisions are at most 9, so the factors fit an i64.
    let factor = 10i64.pow(precision.abs_diff(digits));
    Box::new(move |row| {
        let value = values[row];
        if precision >= digits {
            value.checked_mul(factor).ok_or_else(|| format!("timestamp {value} does not fit DateTime64({precision})"))
        } else {
            Ok(value.div_euclid(factor))
        }
    })
}

/// Bytes of a `Decimal(precision, _)` value.
fn decimal_bytes(precision: u32) -> usize {
    match precision {
        0..=9 => 4,
        10..=18 => 8,
        19..=38 => 16,
        _ => 32,
    }
}

/// `YYYY-MM-DD` for days since the epoch, for messages.
fn format_days(days: i32) -> String {
    chrono::DateTime::from_timestamp(i64::from(days) * 86_400, 0).map_or_else(|| format!("{days} days since 1970-01-01"), |d| d.format("%Y-%m-%d").to_string())
}

/// The ClickHouse type a new table gets for an Arrow type (without `Nullable`), or
/// `None` when the sink cannot write the type at all. `datetime64` says whether
/// the server has `DateTime64` (20.1 and later); older ones get `DateTime`.
pub(crate) fn default_type(data_type: &DataType, datetime64: bool) -> Option<ChType> {
    Some(match data_type {
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => {
            let (bytes, _) = arrow_int(data_type)?;
            ChType::Int { bytes, signed: true }
        }
        DataType::UInt8 | DataType::UInt16 | DataType::UInt32 | DataType::UInt64 => {
            let (bytes, _) = arrow_int(data_type)?;
            ChType::Int { bytes, signed: false }
        }
        DataType::Float32 => ChType::Float32,
        DataType::Float64 => ChType::Float64,
        DataType::Boolean => ChType::Int { bytes: 1, signed: false },
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => ChType::String,
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => ChType::String,
        DataType::Date32 => ChType::Date,
        DataType::Timestamp(_, _) if datetime64 => ChType::DateTime64(3),
        DataType::Timestamp(_, _) => ChType::DateTime,
        DataType::Decimal128(precision, scale) => {
            let scale = u32::try_from(*scale).ok()?;
            ChType::Decimal { precision: u32::from(*precision), scale }
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{
        ArrayRef, BooleanArray, Date32Array, Decimal128Array, Float32Array, Int32Array, Int64Array, StringArray, TimestampMicrosecondArray,
        TimestampMillisecondArray, UInt64Array,
    };

    use super::*;

    /// The bytes of one column `array` written into `ch_type`.
    fn encode(array: ArrayRef, ch_type: &str) -> Result<Vec<u8>, String> {
        let batch = RecordBatch::try_from_iter(vec![("c", array)]).unwrap();
        let mut out = Vec::new();
        encode_batch(&batch, &[ColumnTarget { name: "c".into(), ch_type: ChType::parse(ch_type) }], &mut out)?;
        Ok(out)
    }

    #[test]
    fn strings_are_length_prefixed() {
        assert_eq!(encode(Arc::new(StringArray::from(vec!["ab"])), "String").unwrap(), vec![2, b'a', b'b']);
        assert_eq!(encode(Arc::new(StringArray::from(vec![""])), "LowCardinality(String)").unwrap(), vec![0]);
        // 300 = 0b10_0101100: LEB128 is 0xAC 0x02.
        let long = "x".repeat(300);
        let out = encode(Arc::new(StringArray::from(vec![long.as_str()])), "String").unwrap();
        assert_eq!(&out[..2], &[0xAC, 0x02]);
        assert_eq!(out.len(), 302);
        assert_eq!(encode(Arc::new(StringArray::from(vec!["ab"])), "FixedString(4)").unwrap(), vec![b'a', b'b', 0, 0]);
        let e = encode(Arc::new(StringArray::from(vec!["abcde"])), "FixedString(4)").unwrap_err();
        assert_eq!(e, "column 'c': a value of 5 bytes does not fit FixedString(4)");
    }

    #[test]
    fn nullable_values_carry_a_flag() {
        assert_eq!(encode(Arc::new(Int32Array::from(vec![None])), "Nullable(Int32)").unwrap(), vec![1]);
        assert_eq!(encode(Arc::new(Int32Array::from(vec![Some(5)])), "Nullable(Int32)").unwrap(), vec![0, 5, 0, 0, 0]);
        assert_eq!(encode(Arc::new(StringArray::from(vec![None, Some("a")])), "LowCardinality(Nullable(String))").unwrap(), vec![1, 0, 1, b'a']);
        let e = encode(Arc::new(Int32Array::from(vec![Some(1), None])), "Int32").unwrap_err();
        assert!(e.starts_with("column 'c' is NULL in a row, but its ClickHouse type Int32 is not Nullable"), "{e}");
    }

    #[test]
    fn decimals_are_unscaled_integers_of_the_precisions_width() {
        let d = |v: i128, p: u8, s: i8| -> ArrayRef { Arc::new(Decimal128Array::from(vec![v]).with_precision_and_scale(p, s).unwrap()) };
        assert_eq!(encode(d(1234, 9, 2), "Decimal(9, 2)").unwrap(), 1234i32.to_le_bytes().to_vec());
        assert_eq!(encode(d(-1234, 9, 2), "Decimal(18, 4)").unwrap(), (-123_400i64).to_le_bytes().to_vec());
        assert_eq!(encode(d(1234, 9, 2), "Decimal128(2)").unwrap(), 1234i128.to_le_bytes().to_vec());
        let wide = encode(d(-1, 9, 0), "Decimal256(0)").unwrap();
        assert_eq!(wide, vec![0xFF; 32]);
        let e = encode(d(1_000_000, 10, 2), "Decimal(5, 2)").unwrap_err();
        assert_eq!(e, "column 'c': value 1000000 does not fit ClickHouse type Decimal(5, 2)");
        assert!(encode(d(1234, 9, 2), "Decimal(9, 1)").unwrap_err().contains("scale"));
    }

    #[test]
    fn integers_widen_but_never_narrow() {
        assert_eq!(encode(Arc::new(Int32Array::from(vec![-2])), "Int64").unwrap(), (-2i64).to_le_bytes().to_vec());
        assert_eq!(encode(Arc::new(UInt64Array::from(vec![u64::MAX])), "UInt64").unwrap(), vec![0xFF; 8]);
        assert_eq!(encode(Arc::new(UInt64Array::from(vec![1])), "Int128").unwrap(), 1i128.to_le_bytes().to_vec());
        let e = encode(Arc::new(Int64Array::from(vec![1])), "Int32").unwrap_err();
        assert_eq!(e, "column 'c': cannot write Int64 into ClickHouse type Int32 (expected Int64)");
        assert!(encode(Arc::new(Int32Array::from(vec![1])), "UInt32").is_err());
        assert!(encode(Arc::new(UInt64Array::from(vec![1])), "Int64").is_err());
        assert_eq!(encode(Arc::new(BooleanArray::from(vec![true, false])), "UInt8").unwrap(), vec![1, 0]);
        assert_eq!(encode(Arc::new(Float32Array::from(vec![1.5])), "Float64").unwrap(), 1.5f64.to_le_bytes().to_vec());
        assert!(encode(Arc::new(StringArray::from(vec!["1"])), "Int64").is_err());
    }

    #[test]
    fn times_follow_the_server_column() {
        // 1.5 s and 1 ms before the epoch.
        let ms = || -> ArrayRef { Arc::new(TimestampMillisecondArray::from(vec![1_500, -1])) };
        assert_eq!(encode(ms(), "DateTime64(3)").unwrap(), [1_500i64.to_le_bytes(), (-1i64).to_le_bytes()].concat());
        assert_eq!(encode(ms(), "DateTime64(6, 'UTC')").unwrap(), [1_500_000i64.to_le_bytes(), (-1_000i64).to_le_bytes()].concat());
        // Whole seconds round down, also before the epoch.
        assert_eq!(encode(ms(), "DateTime64(0)").unwrap(), [1i64.to_le_bytes(), (-1i64).to_le_bytes()].concat());
        let us: ArrayRef = Arc::new(TimestampMicrosecondArray::from(vec![1_700_000_000_123_456]).with_timezone("UTC"));
        assert_eq!(encode(Arc::clone(&us), "DateTime('UTC')").unwrap(), 1_700_000_000u32.to_le_bytes().to_vec());
        assert_eq!(encode(us, "DateTime64(3)").unwrap(), 1_700_000_000_123i64.to_le_bytes().to_vec());
        let e = encode(ms(), "DateTime").unwrap_err();
        assert!(e.contains("outside ClickHouse's DateTime range"), "{e}");
        assert_eq!(encode(Arc::new(Date32Array::from(vec![19_782])), "Date").unwrap(), 19_782u16.to_le_bytes().to_vec());
        assert_eq!(encode(Arc::new(Date32Array::from(vec![-1])), "Date32").unwrap(), vec![0xFF; 4]);
        let e = encode(Arc::new(Date32Array::from(vec![-1])), "Date").unwrap_err();
        assert!(e.contains("date 1969-12-31 is outside ClickHouse's Date range"), "{e}");
    }

    #[test]
    fn rows_interleave_columns() {
        let batch = RecordBatch::try_from_iter(vec![
            ("a", Arc::new(Int32Array::from(vec![1, 2])) as ArrayRef),
            ("b", Arc::new(StringArray::from(vec![Some("x"), None])) as ArrayRef),
        ])
        .unwrap();
        let columns =
            [ColumnTarget { name: "a".into(), ch_type: ChType::parse("Int32") }, ColumnTarget { name: "b".into(), ch_type: ChType::parse("Nullable(String)") }];
        let mut out = Vec::new();
        encode_batch(&batch, &columns, &mut out).unwrap();
        assert_eq!(out, vec![1, 0, 0, 0, 0, 1, b'x', 2, 0, 0, 0, 1]);
    }

    #[test]
    fn types_parse_as_system_columns_spells_them() {
        assert_eq!(ChType::parse("DateTime('UTC')"), ChType::DateTime);
        assert_eq!(ChType::parse("DateTime64(3, 'Asia/Tokyo')"), ChType::DateTime64(3));
        assert_eq!(ChType::parse("Decimal(9, 2)"), ChType::Decimal { precision: 9, scale: 2 });
        assert_eq!(ChType::parse("Decimal64(4)"), ChType::Decimal { precision: 18, scale: 4 });
        assert_eq!(ChType::parse("LowCardinality(Nullable(String))"), ChType::LowCardinality(Box::new(ChType::Nullable(Box::new(ChType::String)))));
        assert_eq!(ChType::parse("UInt256"), ChType::Int { bytes: 32, signed: false });
        assert_eq!(ChType::parse("Enum8('a' = 1)"), ChType::Other("Enum8('a' = 1)".into()));
        assert_eq!(ChType::parse("Decimal(99, 2)"), ChType::Other("Decimal(99, 2)".into()));
        for text in ["Nullable(FixedString(3))", "LowCardinality(String)", "Decimal(38, 10)", "DateTime64(6)", "UInt8"] {
            assert_eq!(ChType::parse(text).to_string(), text);
        }
    }
}
