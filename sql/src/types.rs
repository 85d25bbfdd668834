//! The Flink SQL name of an Arrow type, for what users read (`DESCRIBE`):
//! they declared `BIGINT` and `TIMESTAMP(3)`, so they are shown `BIGINT` and
//! `TIMESTAMP(3)`, not Arrow's `Int64` and `Timestamp(Millisecond, None)`.
//! It is the inverse of the column types `CREATE TABLE` accepts.

use datafusion::arrow::datatypes::{DataType, Field, IntervalUnit, TimeUnit};

/// The SQL type a column of `data_type` has, as Flink writes it (`BIGINT`,
/// `STRING`, `DECIMAL(10, 2)`, `TIMESTAMP(3)`, `ARRAY<INT>`). Arrow types SQL
/// has no name for (unsigned integers, durations) keep Arrow's name.
pub fn sql_type_name(data_type: &DataType) -> String {
    match data_type {
        DataType::Null => "NULL".into(),
        DataType::Boolean => "BOOLEAN".into(),
        DataType::Int8 => "TINYINT".into(),
        DataType::Int16 => "SMALLINT".into(),
        DataType::Int32 => "INT".into(),
        DataType::Int64 => "BIGINT".into(),
        DataType::Float16 | DataType::Float32 => "FLOAT".into(),
        DataType::Float64 => "DOUBLE".into(),
        DataType::Decimal128(precision, scale) | DataType::Decimal256(precision, scale) => {
            format!("DECIMAL({precision}, {scale})")
        }
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "STRING".into(),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => "BYTES".into(),
        DataType::FixedSizeBinary(n) => format!("BINARY({n})"),
        DataType::Date32 | DataType::Date64 => "DATE".into(),
        DataType::Time32(unit) | DataType::Time64(unit) => format!("TIME({})", precision(unit)),
        DataType::Timestamp(unit, None) => format!("TIMESTAMP({})", precision(unit)),
        DataType::Timestamp(unit, Some(_)) => format!("TIMESTAMP_LTZ({})", precision(unit)),
        DataType::Interval(IntervalUnit::YearMonth) => "INTERVAL YEAR TO MONTH".into(),
        DataType::Interval(_) => "INTERVAL DAY TO SECOND(3)".into(),
        DataType::List(item) | DataType::LargeList(item) | DataType::ListView(item) | DataType::FixedSizeList(item, _) => {
            format!("ARRAY<{}>", member_type_name(item))
        }
        // A map's keys are never NULL in Arrow: Flink's type name leaves that unsaid.
        DataType::Map(entries, _) => match entries.data_type() {
            DataType::Struct(fields) if fields.len() == 2 => format!("MAP<{}, {}>", sql_type_name(fields[0].data_type()), member_type_name(&fields[1])),
            other => other.to_string(),
        },
        DataType::Struct(fields) => {
            let fields: Vec<String> = fields.iter().map(|f| format!("`{}` {}", f.name(), member_type_name(f))).collect();
            format!("ROW<{}>", fields.join(", "))
        }
        DataType::Dictionary(_, value) => sql_type_name(value),
        other => other.to_string(),
    }
}

/// An element's, value's or field's type, `NOT NULL` when it cannot be NULL.
fn member_type_name(field: &Field) -> String {
    let name = sql_type_name(field.data_type());
    if field.is_nullable() {
        name
    } else {
        format!("{name} NOT NULL")
    }
}

/// Digits after the second, as `TIMESTAMP(p)` counts them.
fn precision(unit: &TimeUnit) -> u8 {
    match unit {
        TimeUnit::Second => 0,
        TimeUnit::Millisecond => 3,
        TimeUnit::Microsecond => 6,
        TimeUnit::Nanosecond => 9,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::{Field, Fields};
    use std::sync::Arc;

    #[test]
    fn arrow_types_read_as_the_sql_types_that_declare_them() {
        let cases = [
            (DataType::Boolean, "BOOLEAN"),
            (DataType::Int8, "TINYINT"),
            (DataType::Int16, "SMALLINT"),
            (DataType::Int32, "INT"),
            (DataType::Int64, "BIGINT"),
            (DataType::Float32, "FLOAT"),
            (DataType::Float64, "DOUBLE"),
            (DataType::Decimal128(10, 2), "DECIMAL(10, 2)"),
            (DataType::Utf8, "STRING"),
            (DataType::Utf8View, "STRING"),
            (DataType::Binary, "BYTES"),
            (DataType::Date32, "DATE"),
            (DataType::Time32(TimeUnit::Millisecond), "TIME(3)"),
            (DataType::Timestamp(TimeUnit::Millisecond, None), "TIMESTAMP(3)"),
            (DataType::Timestamp(TimeUnit::Microsecond, None), "TIMESTAMP(6)"),
            (DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())), "TIMESTAMP_LTZ(3)"),
            (DataType::Interval(IntervalUnit::MonthDayNano), "INTERVAL DAY TO SECOND(3)"),
            (DataType::List(Arc::new(Field::new("item", DataType::Int32, true))), "ARRAY<INT>"),
            (
                DataType::Struct(Fields::from(vec![Field::new("a", DataType::Int64, true), Field::new("b", DataType::Utf8, true)])),
                "ROW<`a` BIGINT, `b` STRING>",
            ),
        ];
        for (data_type, name) in cases {
            assert_eq!(sql_type_name(&data_type), name, "{data_type:?}");
        }
    }
}
