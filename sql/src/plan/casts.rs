//! Which query column types `INSERT INTO` converts to a sink column's type by
//! itself, and which it refuses without an explicit CAST.

use datafusion::arrow::datatypes::DataType;

/// Whether `INSERT INTO` may convert a query column of type `from` into a sink
/// column of type `to` without the user writing a CAST. As in Flink, a value never
/// changes family silently: strings do not become numbers, times or booleans, and
/// numbers and booleans do not become times (or the other way). Within a family
/// (numbers of any width, timestamps of any unit, strings) and from NULL, Eddy casts
/// by position as before.
pub(super) fn implicitly_castable(from: &DataType, to: &DataType) -> bool {
    #[derive(PartialEq)]
    enum Family {
        Number,
        Text,
        Binary,
        Boolean,
        Instant,
        TimeOfDay,
        Other,
    }
    fn family(t: &DataType) -> Family {
        match t {
            t if t.is_numeric() => Family::Number,
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Family::Text,
            DataType::Binary | DataType::LargeBinary | DataType::BinaryView | DataType::FixedSizeBinary(_) => Family::Binary,
            DataType::Boolean => Family::Boolean,
            DataType::Timestamp(_, _) | DataType::Date32 | DataType::Date64 => Family::Instant,
            DataType::Time32(_) | DataType::Time64(_) => Family::TimeOfDay,
            _ => Family::Other,
        }
    }
    if from == to || matches!(from, DataType::Null) {
        return true;
    }
    match (family(from), family(to)) {
        // Anything may be written as text (Eddy's sinks have always formatted values); text as bytes.
        (_, Family::Text) | (Family::Text, Family::Binary) => true,
        (Family::Other, _) | (_, Family::Other) => true,
        (a, b) => a == b,
    }
}
