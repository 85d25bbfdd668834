//! Values read as text and then given their column's type by Eddy rather than by
//! the Arrow decoder, where the decoder would lose something without a word or
//! refuse what another format accepts:
//!
//! - JSON integers: arrow-json stores `5.5` in a BIGINT column as 5. Eddy reads
//!   the number's text and refuses a fraction, so the record is malformed and
//!   nothing is silently truncated. (Flink's `json` format truncates it too:
//!   Jackson's `asLong()`; Eddy is stricter on purpose.)
//! - CSV timestamps: arrow-csv accepts only date-time text, while JSON also takes
//!   an integer count of the column's unit since the epoch (milliseconds for
//!   `TIMESTAMP(3)`). Eddy reads both in CSV too.
//!
//! Every error names the column, its SQL type and the value.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, PrimitiveArray, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{
    ArrowPrimitiveType, DataType, Field, Int16Type, Int32Type, Int64Type, Int8Type, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType, UInt16Type, UInt32Type, UInt64Type, UInt8Type,
};

/// How a text format's column is decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ColumnReading {
    /// By the Arrow decoder, straight into its type.
    Typed,
    /// As text, then parsed by [`typed_column`].
    AsText,
}

/// Which text format a column is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TextSyntax {
    Json,
    Csv,
}

/// How a column of `data_type` is read in `syntax`.
pub(crate) fn column_reading(syntax: TextSyntax, data_type: &DataType) -> ColumnReading {
    match (syntax, data_type) {
        (TextSyntax::Json, t) if t.is_integer() => ColumnReading::AsText,
        (TextSyntax::Csv, DataType::Timestamp(_, _)) => ColumnReading::AsText,
        _ => ColumnReading::Typed,
    }
}

/// The SQL name of a type this module parses, for messages.
fn sql_type(data_type: &DataType) -> String {
    match data_type {
        DataType::Int8 => "TINYINT".into(),
        DataType::Int16 => "SMALLINT".into(),
        DataType::Int32 => "INT".into(),
        DataType::Int64 => "BIGINT".into(),
        DataType::Timestamp(TimeUnit::Second, _) => "TIMESTAMP(0)".into(),
        DataType::Timestamp(TimeUnit::Millisecond, _) => "TIMESTAMP(3)".into(),
        DataType::Timestamp(TimeUnit::Microsecond, _) => "TIMESTAMP(6)".into(),
        DataType::Timestamp(TimeUnit::Nanosecond, _) => "TIMESTAMP(9)".into(),
        other => other.to_string(),
    }
}

/// `text` (a column read as text) as a column of `field`'s type; fails on the
/// first value that does not fit, naming the column, its type and the value.
pub(crate) fn typed_column(field: &Field, text: &ArrayRef) -> Result<ArrayRef, String> {
    let strings = text.as_any().downcast_ref::<StringArray>().ok_or_else(|| format!("column '{}' was not read as text", field.name()))?;
    let bad = |value: &str, why: &str| format!("column '{}' ({}): cannot read {value:?}: {why}", field.name(), sql_type(field.data_type()));
    match field.data_type() {
        DataType::Int8 => integers::<Int8Type>(strings, &bad),
        DataType::Int16 => integers::<Int16Type>(strings, &bad),
        DataType::Int32 => integers::<Int32Type>(strings, &bad),
        DataType::Int64 => integers::<Int64Type>(strings, &bad),
        DataType::UInt8 => integers::<UInt8Type>(strings, &bad),
        DataType::UInt16 => integers::<UInt16Type>(strings, &bad),
        DataType::UInt32 => integers::<UInt32Type>(strings, &bad),
        DataType::UInt64 => integers::<UInt64Type>(strings, &bad),
        DataType::Timestamp(unit, tz) => {
            let parsed = match unit {
                TimeUnit::Second => timestamps::<TimestampSecondType>(strings, &bad)?,
                TimeUnit::Millisecond => timestamps::<TimestampMillisecondType>(strings, &bad)?,
                TimeUnit::Microsecond => timestamps::<TimestampMicrosecondType>(strings, &bad)?,
                TimeUnit::Nanosecond => timestamps::<TimestampNanosecondType>(strings, &bad)?,
            };
            match tz {
                None => Ok(parsed),
                Some(_) => cast(&parsed, field.data_type()).map_err(|e| bad("", &e.to_string())),
            }
        }
        other => Err(format!("column '{}': reading {other} from text is not supported", field.name())),
    }
}

/// Whole numbers only: `5`, `-3`, and `5.0` or `1e3` (integral values written as
/// decimals), but not `5.5`, and nothing out of the type's range.
fn integers<T>(strings: &StringArray, bad: &dyn Fn(&str, &str) -> String) -> Result<ArrayRef, String>
where
    T: ArrowPrimitiveType,
    T::Native: TryFrom<i128> + std::str::FromStr,
{
    let mut values = Vec::with_capacity(strings.len());
    for value in strings.iter() {
        let Some(text) = value else {
            values.push(None);
            continue;
        };
        let trimmed = text.trim();
        if let Ok(v) = trimmed.parse::<T::Native>() {
            values.push(Some(v));
            continue;
        }
        let whole = match trimmed.parse::<i128>() {
            Ok(v) => v,
            Err(_) => match trimmed.parse::<f64>() {
                Ok(f) if f.is_finite() && f.fract() == 0.0 && f.abs() < 1e38 => f as i128,
                Ok(f) if f.is_finite() => return Err(bad(text, "not a whole number; store it in a DOUBLE or DECIMAL column, or round it at the source")),
                _ => return Err(bad(text, "not a number")),
            },
        };
        let v = T::Native::try_from(whole).map_err(|_| bad(text, "out of the column type's range"))?;
        values.push(Some(v));
    }
    Ok(Arc::new(PrimitiveArray::<T>::from_iter(values)))
}

/// Date-time text (as the Arrow cast reads it: `2024-01-01 00:00:00.123`,
/// `2024-01-01T00:00:00Z`, ...) or an integer count of the unit since the epoch,
/// as JSON reads numbers.
fn timestamps<T>(strings: &StringArray, bad: &dyn Fn(&str, &str) -> String) -> Result<ArrayRef, String>
where
    T: ArrowPrimitiveType<Native = i64>,
{
    let unit_name = match T::DATA_TYPE {
        DataType::Timestamp(TimeUnit::Second, _) => "seconds",
        DataType::Timestamp(TimeUnit::Microsecond, _) => "microseconds",
        DataType::Timestamp(TimeUnit::Nanosecond, _) => "nanoseconds",
        _ => "milliseconds",
    };
    // Text the cast cannot read becomes null here and is looked at row by row below.
    let cast_values = cast(strings, &T::DATA_TYPE).map_err(|e| bad("", &e.to_string()))?;
    let cast_values = cast_values.as_any().downcast_ref::<PrimitiveArray<T>>().ok_or_else(|| bad("", "the timestamp cast returned another type"))?;
    let mut values = Vec::with_capacity(strings.len());
    for (i, value) in strings.iter().enumerate() {
        let Some(text) = value else {
            values.push(None);
            continue;
        };
        let trimmed = text.trim();
        if trimmed.is_empty() {
            values.push(None);
        } else if let Ok(count) = trimmed.parse::<i64>() {
            values.push(Some(count));
        } else if cast_values.is_valid(i) {
            values.push(Some(cast_values.value(i)));
        } else {
            return Err(bad(text, &format!("expected a date and time such as '2024-01-01 12:00:00.000', or {unit_name} since 1970-01-01 00:00:00 UTC")));
        }
    }
    Ok(Arc::new(PrimitiveArray::<T>::from_iter(values)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, TimestampMillisecondArray};

    fn millis(array: &ArrayRef) -> &TimestampMillisecondArray {
        array.as_any().downcast_ref::<TimestampMillisecondArray>().unwrap()
    }

    fn text(values: &[Option<&str>]) -> ArrayRef {
        Arc::new(StringArray::from(values.to_vec()))
    }

    #[test]
    fn integers_refuse_fractions_and_overflow_and_name_column_and_value() {
        let field = Field::new("price", DataType::Int64, true);
        let got = typed_column(&field, &text(&[Some("5"), None, Some(" -7 "), Some("5.0"), Some("1e3")])).unwrap();
        assert_eq!(got.as_any().downcast_ref::<Int64Array>().unwrap(), &Int64Array::from(vec![Some(5), None, Some(-7), Some(5), Some(1000)]));
        let err = typed_column(&field, &text(&[Some("1"), Some("5.5")])).unwrap_err();
        assert!(err.starts_with("column 'price' (BIGINT): cannot read \"5.5\": not a whole number"), "{err}");
        let err = typed_column(&field, &text(&[Some("abc")])).unwrap_err();
        assert!(err.contains("'price'") && err.contains("\"abc\"") && err.contains("not a number"), "{err}");
        let small = Field::new("n", DataType::Int8, true);
        let err = typed_column(&small, &text(&[Some("300")])).unwrap_err();
        assert!(err.contains("(TINYINT)") && err.contains("\"300\"") && err.contains("range"), "{err}");
    }

    #[test]
    fn timestamps_take_text_or_epoch_units_and_name_column_and_value() {
        let field = Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), true);
        let got = typed_column(&field, &text(&[Some("1700000000000"), Some("2024-01-01 00:00:00.123"), Some(""), None])).unwrap();
        assert_eq!(millis(&got), &TimestampMillisecondArray::from(vec![Some(1_700_000_000_000), Some(1_704_067_200_123), None, None]));
        let err = typed_column(&field, &text(&[Some("yesterday")])).unwrap_err();
        assert!(err.starts_with("column 'ts' (TIMESTAMP(3)): cannot read \"yesterday\": expected a date and time"), "{err}");
        assert!(err.contains("milliseconds since 1970"), "{err}");
    }
}
