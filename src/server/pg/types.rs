//! Arrow columns as Postgres values: which Postgres type each Arrow type is sent
//! as, and the rows of a batch encoded in the text or binary format a client asked for.
//!
//! Every Arrow type has an answer: the common ones map to their Postgres peer
//! (`BIGINT` is `int8`, `DECIMAL` is `numeric`, `TIMESTAMP(3)` is `timestamp`, a
//! timestamp with a zone is `timestamptz`); the rest (intervals, lists, structs)
//! are sent as `text` in Arrow's display form, so a client can always read them.

use std::error::Error;
use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{
    DataType, Date32Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Schema, Time64MicrosecondType, TimeUnit, TimestampMicrosecondType,
};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use pgwire::api::portal::Format;
use pgwire::api::results::{DataRowEncoder, FieldInfo};
use pgwire::api::Type;
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::data::DataRow;
use pgwire::types::format::FormatOptions as PgFormatOptions;
use pgwire::types::ToSqlText;
use postgres_types::{to_sql_checked, IsNull, ToSql};

/// The Postgres type a column of `data_type` is sent as.
pub fn pg_type(data_type: &DataType) -> Type {
    match data_type {
        DataType::Boolean => Type::BOOL,
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => Type::INT2,
        DataType::Int32 | DataType::UInt16 => Type::INT4,
        DataType::Int64 | DataType::UInt32 => Type::INT8,
        DataType::UInt64 | DataType::Decimal32(..) | DataType::Decimal64(..) | DataType::Decimal128(..) | DataType::Decimal256(..) => Type::NUMERIC,
        DataType::Float16 | DataType::Float32 => Type::FLOAT4,
        DataType::Float64 => Type::FLOAT8,
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView | DataType::FixedSizeBinary(_) => Type::BYTEA,
        DataType::Date32 | DataType::Date64 => Type::DATE,
        DataType::Timestamp(_, None) => Type::TIMESTAMP,
        DataType::Timestamp(_, Some(_)) => Type::TIMESTAMPTZ,
        DataType::Time32(_) | DataType::Time64(_) => Type::TIME,
        DataType::Dictionary(_, value) => pg_type(value),
        _ => Type::TEXT,
    }
}

/// The row description of `schema`, each column in the format `format` asks for.
pub fn fields(schema: &Schema, format: &Format) -> Vec<FieldInfo> {
    schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            // Every type this module sends has a binary form too (text's is its UTF-8 bytes).
            FieldInfo::new(f.name().clone(), None, None, pg_type(f.data_type()), format.format_for(i))
        })
        .collect()
}

/// The rows of `batch` as Postgres data rows described by `fields`.
pub fn encode_rows(batch: &RecordBatch, fields: &Arc<Vec<FieldInfo>>) -> PgWireResult<Vec<DataRow>> {
    let columns: Vec<Column> =
        batch.columns().iter().zip(fields.iter()).map(|(array, field)| Column::new(array, field.datatype())).collect::<PgWireResult<_>>()?;
    let mut encoder = DataRowEncoder::new(Arc::clone(fields));
    let mut rows = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        for column in &columns {
            column.encode(row, &mut encoder)?;
        }
        rows.push(encoder.take_row());
    }
    Ok(rows)
}

/// One column of a batch, cast once to the form its Postgres type is encoded from.
enum Column {
    Bool(ArrayRef),
    Int2(ArrayRef),
    Int4(ArrayRef),
    Int8(ArrayRef),
    Float4(ArrayRef),
    Float8(ArrayRef),
    /// Decimals and unsigned 64-bit integers, as their decimal text.
    Numeric(ArrayRef),
    Bytea(ArrayRef),
    Date(ArrayRef),
    Timestamp(ArrayRef),
    TimestampTz(ArrayRef),
    Time(ArrayRef),
    Text(ArrayRef),
}

impl Column {
    fn new(array: &ArrayRef, pg: &Type) -> PgWireResult<Column> {
        let to = |data_type: DataType| cast(array, &data_type).map_err(encode_error);
        Ok(match *pg {
            Type::BOOL => Column::Bool(to(DataType::Boolean)?),
            Type::INT2 => Column::Int2(to(DataType::Int16)?),
            Type::INT4 => Column::Int4(to(DataType::Int32)?),
            Type::INT8 => Column::Int8(to(DataType::Int64)?),
            Type::FLOAT4 => Column::Float4(to(DataType::Float32)?),
            Type::FLOAT8 => Column::Float8(to(DataType::Float64)?),
            Type::NUMERIC => Column::Numeric(to(DataType::Utf8)?),
            Type::BYTEA => Column::Bytea(to(DataType::LargeBinary)?),
            Type::DATE => Column::Date(to(DataType::Date32)?),
            Type::TIMESTAMP => Column::Timestamp(to(DataType::Timestamp(TimeUnit::Microsecond, None))?),
            Type::TIMESTAMPTZ => Column::TimestampTz(to(DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())))?),
            Type::TIME => Column::Time(to(DataType::Time64(TimeUnit::Microsecond))?),
            _ => Column::Text(display_strings(array)?),
        })
    }

    fn encode(&self, row: usize, encoder: &mut DataRowEncoder) -> PgWireResult<()> {
        fn value<T>(array: &ArrayRef, row: usize, get: impl Fn(&ArrayRef, usize) -> T) -> Option<T> {
            (!array.is_null(row)).then(|| get(array, row))
        }
        match self {
            Column::Bool(a) => encoder.encode_field(&value(a, row, |a, i| a.as_boolean().value(i))),
            Column::Int2(a) => encoder.encode_field(&value(a, row, |a, i| a.as_primitive::<Int16Type>().value(i))),
            Column::Int4(a) => encoder.encode_field(&value(a, row, |a, i| a.as_primitive::<Int32Type>().value(i))),
            Column::Int8(a) => encoder.encode_field(&value(a, row, |a, i| a.as_primitive::<Int64Type>().value(i))),
            Column::Float4(a) => encoder.encode_field(&value(a, row, |a, i| a.as_primitive::<Float32Type>().value(i))),
            Column::Float8(a) => encoder.encode_field(&value(a, row, |a, i| a.as_primitive::<Float64Type>().value(i))),
            Column::Numeric(a) => encoder.encode_field(&value(a, row, |a, i| Numeric(a.as_string::<i32>().value(i).to_string()))),
            Column::Bytea(a) => encoder.encode_field(&value(a, row, |a, i| a.as_binary::<i64>().value(i).to_vec())),
            Column::Date(a) => {
                let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1);
                let date =
                    value(a, row, |a, i| epoch.and_then(|e| e.checked_add_signed(chrono::Duration::days(a.as_primitive::<Date32Type>().value(i).into()))));
                encoder.encode_field(&date.map(|d| d.ok_or_else(|| out_of_range("date"))).transpose()?)
            }
            Column::Timestamp(a) => {
                let at = value(a, row, |a, i| chrono::DateTime::from_timestamp_micros(a.as_primitive::<TimestampMicrosecondType>().value(i)));
                encoder.encode_field(&at.map(|t| t.map(|t| t.naive_utc()).ok_or_else(|| out_of_range("timestamp"))).transpose()?)
            }
            Column::TimestampTz(a) => {
                let at = value(a, row, |a, i| chrono::DateTime::from_timestamp_micros(a.as_primitive::<TimestampMicrosecondType>().value(i)));
                encoder.encode_field(&at.map(|t| t.ok_or_else(|| out_of_range("timestamptz"))).transpose()?)
            }
            Column::Time(a) => {
                let time = value(a, row, |a, i| {
                    let micros = a.as_primitive::<Time64MicrosecondType>().value(i);
                    chrono::NaiveTime::from_num_seconds_from_midnight_opt((micros / 1_000_000) as u32, (micros % 1_000_000) as u32 * 1000)
                });
                encoder.encode_field(&time.map(|t| t.ok_or_else(|| out_of_range("time"))).transpose()?)
            }
            Column::Text(a) => encoder.encode_field(&value(a, row, |a, i| a.as_string::<i32>().value(i).to_string())),
        }
    }
}

/// Any column as the text Arrow displays it with (nulls stay null).
fn display_strings(array: &ArrayRef) -> PgWireResult<ArrayRef> {
    if let Ok(strings) = cast(array, &DataType::Utf8) {
        return Ok(strings);
    }
    let formatter = ArrayFormatter::try_new(array.as_ref(), &FormatOptions::default()).map_err(encode_error)?;
    let strings: datafusion::arrow::array::StringArray = (0..array.len()).map(|i| (!array.is_null(i)).then(|| formatter.value(i).to_string())).collect();
    Ok(Arc::new(strings))
}

fn encode_error(e: impl std::fmt::Display) -> PgWireError {
    PgWireError::ApiError(format!("cannot send the result as Postgres values: {e}").into())
}

fn out_of_range(what: &str) -> PgWireError {
    PgWireError::ApiError(format!("a {what} value is outside the range Postgres clients can read").into())
}

/// A `numeric` value, from the decimal text Arrow writes (`-12.340`).
#[derive(Debug)]
pub struct Numeric(pub String);

impl ToSqlText for Numeric {
    fn to_sql_text(&self, _ty: &Type, out: &mut BytesMut, _options: &PgFormatOptions) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        out.put_slice(self.0.as_bytes());
        Ok(IsNull::No)
    }
}

impl ToSql for Numeric {
    /// Postgres's binary `numeric`: digit count, weight, sign, display scale,
    /// then base-10000 digits (see `numeric.c`, `NumericVar`).
    fn to_sql(&self, _ty: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        let text = self.0.trim();
        let (negative, unsigned) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text.strip_prefix('+').unwrap_or(text)),
        };
        let (integer, fraction) = unsigned.split_once('.').unwrap_or((unsigned, ""));
        if integer.is_empty() && fraction.is_empty() || !integer.bytes().chain(fraction.bytes()).all(|b| b.is_ascii_digit()) {
            return Err(format!("`{text}` is not a decimal number").into());
        }
        let display_scale = fraction.len();
        // Integer digits grouped by four from the decimal point leftwards,
        // fraction digits by four rightwards (padded with zeros).
        let integer = integer.trim_start_matches('0');
        let lead = (4 - integer.len() % 4) % 4;
        let padded_integer = format!("{}{integer}", "0".repeat(lead));
        let trail = (4 - fraction.len() % 4) % 4;
        let padded_fraction = format!("{fraction}{}", "0".repeat(trail));
        let group = |s: &str| -> Vec<i16> { s.as_bytes().chunks(4).map(|c| c.iter().fold(0i16, |n, d| n * 10 + i16::from(d - b'0'))).collect() };
        let integer_groups = group(&padded_integer);
        let mut digits: Vec<i16> = integer_groups.iter().copied().chain(group(&padded_fraction)).collect();
        let mut weight = integer_groups.len() as i32 - 1;
        while digits.first() == Some(&0) {
            digits.remove(0);
            weight -= 1;
        }
        while digits.last() == Some(&0) {
            digits.pop();
        }
        if digits.is_empty() {
            weight = 0;
        }
        out.put_i16(i16::try_from(digits.len())?);
        out.put_i16(i16::try_from(weight)?);
        out.put_u16(if negative && !digits.is_empty() { 0x4000 } else { 0 });
        out.put_u16(u16::try_from(display_scale)?);
        for digit in digits {
            out.put_i16(digit);
        }
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::NUMERIC
    }

    to_sql_checked!();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric_binary(text: &str) -> Vec<i16> {
        let mut out = BytesMut::new();
        Numeric(text.to_string()).to_sql(&Type::NUMERIC, &mut out).unwrap();
        out.chunks(2).map(|c| i16::from_be_bytes([c[0], c[1]])).collect()
    }

    #[test]
    fn numeric_binary_matches_postgres() {
        // ndigits, weight, sign, dscale, digits: as Postgres sends 123.45, -0.0012, 10000 and 0.
        assert_eq!(numeric_binary("123.45"), vec![2, 0, 0, 2, 123, 4500]);
        assert_eq!(numeric_binary("-0.0012"), vec![1, -1, 0x4000, 4, 12]);
        assert_eq!(numeric_binary("10000"), vec![1, 1, 0, 0, 1]);
        assert_eq!(numeric_binary("0.00"), vec![0, 0, 0, 2]);
        assert_eq!(numeric_binary("12345678.9"), vec![3, 1, 0, 1, 1234, 5678, 9000]);
    }

    #[test]
    fn numeric_refuses_what_is_not_a_number() {
        let mut out = BytesMut::new();
        assert!(Numeric("1e5".into()).to_sql(&Type::NUMERIC, &mut out).is_err());
        assert!(Numeric("-".into()).to_sql(&Type::NUMERIC, &mut out).is_err());
    }

    #[test]
    fn every_arrow_type_has_a_postgres_type() {
        assert_eq!(pg_type(&DataType::Int64), Type::INT8);
        assert_eq!(pg_type(&DataType::Decimal128(10, 2)), Type::NUMERIC);
        assert_eq!(pg_type(&DataType::Timestamp(TimeUnit::Millisecond, None)), Type::TIMESTAMP);
        assert_eq!(pg_type(&DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))), Type::TIMESTAMPTZ);
        assert_eq!(pg_type(&DataType::Interval(datafusion::arrow::datatypes::IntervalUnit::MonthDayNano)), Type::TEXT);
    }
}
