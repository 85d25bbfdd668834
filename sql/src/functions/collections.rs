//! Flink's collection functions over ARRAY and MAP values: `CARDINALITY`,
//! `ELEMENT`, `STR_TO_MAP`, and the `MAP[k, v, ...]` value constructor (planned
//! as `__eddy_map`, see [`super::syntax`]). Array element access (`a[1]`, from
//! 1; a constant index below 1 is refused, see [`super`]) and map access
//! (`m['k']`) are DataFusion's, which agree with Flink's. Flink's other array
//! and map functions are in [`super::arrays`].

use std::sync::Arc;

use datafusion::arrow::array::{new_null_array, Array, ArrayRef, AsArray, Int32Array, MapArray, StringArray, StringBuilder, StructArray};
use datafusion::arrow::buffer::{NullBuffer, OffsetBuffer};
use datafusion::arrow::compute::{cast, interleave};
use datafusion::arrow::datatypes::{DataType, Field, Fields};
use datafusion::common::{exec_err, plan_err, Result, ScalarValue};
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility};

/// The function `MAP[k1, v1, ...]` is rewritten to call.
pub(crate) const MAP_OF: &str = "__eddy_map";

/// The collection functions.
pub(super) fn functions() -> Vec<ScalarUDF> {
    vec![
        ScalarUDF::new_from_impl(Collection::new("cardinality", Kind::Cardinality)),
        ScalarUDF::new_from_impl(Collection::new("element", Kind::Element)),
        ScalarUDF::new_from_impl(Collection::new("str_to_map", Kind::StrToMap)),
        ScalarUDF::new_from_impl(Collection::new(MAP_OF, Kind::MapOf)),
    ]
}

/// Which function a [`Collection`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    /// `CARDINALITY(array | map)`: the top-level elements or entries, an INT.
    Cardinality,
    /// `ELEMENT(array)`: its one element; NULL when empty; an error when more.
    Element,
    /// `STR_TO_MAP(text[, list_delimiter[, key_value_delimiter]])`.
    StrToMap,
    /// `MAP[k1, v1, k2, v2, ...]`: a later equal key replaces an earlier one.
    MapOf,
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Collection {
    name: &'static str,
    kind: Kind,
    signature: Signature,
}

impl Collection {
    fn new(name: &'static str, kind: Kind) -> Self {
        Collection { name, kind, signature: Signature::variadic_any(Volatility::Immutable) }
    }
}

/// A MAP type of `key` and `value` types, as Arrow and DataFusion build them.
pub(super) fn map_type(key: DataType, value: DataType) -> DataType {
    let entries = Fields::from(vec![Field::new("key", key, false), Field::new("value", value, true)]);
    DataType::Map(Arc::new(Field::new("entries", DataType::Struct(entries), false)), false)
}

impl ScalarUDFImpl for Collection {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        match self.kind {
            Kind::Cardinality => match args {
                [DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..) | DataType::Map(..) | DataType::Null] => Ok(DataType::Int32),
                _ => plan_err!("CARDINALITY takes an ARRAY or a MAP, not {args:?}"),
            },
            Kind::Element => match args {
                [DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _)] => Ok(f.data_type().clone()),
                _ => plan_err!("ELEMENT takes an ARRAY, not {args:?}"),
            },
            Kind::StrToMap => {
                if args.is_empty()
                    || args.len() > 3
                    || args.iter().any(|t| !matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null))
                {
                    return plan_err!(
                        "STR_TO_MAP takes text and up to two delimiters (STR_TO_MAP(text[, list_delimiter[, key_value_delimiter]])), not {args:?}"
                    );
                }
                Ok(map_type(DataType::Utf8, DataType::Utf8))
            }
            Kind::MapOf => {
                if args.is_empty() || !args.len().is_multiple_of(2) {
                    return plan_err!("MAP[...] takes keys and values in pairs: MAP[k1, v1, k2, v2, ...]");
                }
                let first_not_null = |start: usize| args.iter().skip(start).step_by(2).find(|t| !t.is_null()).cloned().unwrap_or(DataType::Null);
                Ok(map_type(first_not_null(0), first_not_null(1)))
            }
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let arrays = args.args.iter().map(|a| a.to_array(rows)).collect::<Result<Vec<_>>>()?;
        let out = match self.kind {
            Kind::Cardinality => cardinality(&arrays[0])?,
            Kind::Element => element(&arrays[0])?,
            Kind::StrToMap => str_to_map(&arrays, rows)?,
            Kind::MapOf => map_of(&arrays, args.return_field.data_type(), rows)?,
        };
        Ok(ColumnarValue::Array(out))
    }
}

/// Each row's list lengths (offsets) and nulls, of any list type or a map.
fn lengths(array: &ArrayRef) -> Result<(Vec<i64>, Option<NullBuffer>)> {
    let nulls = array.logical_nulls();
    let lengths = match array.data_type() {
        DataType::List(_) => array.as_list::<i32>().offsets().lengths().map(|l| l as i64).collect(),
        DataType::LargeList(_) => array.as_list::<i64>().offsets().lengths().map(|l| l as i64).collect(),
        DataType::FixedSizeList(_, n) => vec![*n as i64; array.len()],
        DataType::Map(..) => array.as_map().offsets().lengths().map(|l| l as i64).collect(),
        DataType::Null => vec![0; array.len()],
        other => return exec_err!("not an ARRAY or a MAP: {other}"),
    };
    Ok((lengths, nulls))
}

fn cardinality(array: &ArrayRef) -> Result<ArrayRef> {
    let (lengths, nulls) = lengths(array)?;
    let values: Vec<i32> = lengths.into_iter().map(|l| l as i32).collect();
    Ok(Arc::new(Int32Array::new(values.into(), nulls)))
}

fn element(array: &ArrayRef) -> Result<ArrayRef> {
    let (lengths, nulls) = lengths(array)?;
    let values = match array.data_type() {
        DataType::List(_) => Arc::clone(array.as_list::<i32>().values()),
        DataType::LargeList(_) => Arc::clone(array.as_list::<i64>().values()),
        DataType::FixedSizeList(..) => Arc::clone(array.as_fixed_size_list().values()),
        other => return exec_err!("ELEMENT takes an ARRAY, not {other}"),
    };
    // Each row's element: (0, its index among the values) or (1, 0), a NULL.
    let null = new_null_array(values.data_type(), 1);
    let mut picks = Vec::with_capacity(lengths.len());
    let mut start = 0usize;
    for (row, length) in lengths.iter().enumerate() {
        let valid = nulls.as_ref().is_none_or(|n| n.is_valid(row));
        match (valid, length) {
            (true, 1) => picks.push((0, start)),
            (true, n) if *n > 1 => return exec_err!("ELEMENT: the array has more than one element ({n}); ELEMENT takes an array of one"),
            _ => picks.push((1, 0)),
        }
        start += *length as usize;
    }
    Ok(interleave(&[values.as_ref(), null.as_ref()], &picks)?)
}

/// `STR_TO_MAP`: the text split into entries at the list delimiter and each
/// entry into key and value at the first key/value delimiter (both regular
/// expressions, as in Flink; default `,` and `=`). An entry without the
/// delimiter is a key with a NULL value; a later equal key replaces an earlier.
fn str_to_map(arrays: &[ArrayRef], rows: usize) -> Result<ArrayRef> {
    let texts = cast(&arrays[0], &DataType::Utf8)?;
    let texts = texts.as_string::<i32>();
    let delimiter = |i: usize, default: &str| -> Result<StringArray> {
        match arrays.get(i) {
            None => Ok(StringArray::from(vec![default; rows])),
            Some(a) => Ok(cast(a, &DataType::Utf8)?.as_string::<i32>().clone()),
        }
    };
    let (lists, pairs) = (delimiter(1, ",")?, delimiter(2, "=")?);
    let mut compiled: Option<(String, String, regex::Regex, regex::Regex)> = None;
    let (mut keys, mut values) = (StringBuilder::new(), StringBuilder::new());
    let mut offsets = vec![0i32];
    let mut valid = Vec::with_capacity(rows);
    for row in 0..rows {
        if texts.is_null(row) || lists.is_null(row) || pairs.is_null(row) {
            valid.push(false);
            offsets.push(offsets[offsets.len() - 1]);
            continue;
        }
        let (list, pair) = (lists.value(row), pairs.value(row));
        if compiled.as_ref().is_none_or(|(l, p, _, _)| l != list || p != pair) {
            let regex = |pattern: &str| {
                regex::Regex::new(pattern)
                    .map_err(|e| datafusion::error::DataFusionError::Execution(format!("STR_TO_MAP: delimiter `{pattern}` is no regular expression: {e}")))
            };
            compiled = Some((list.to_string(), pair.to_string(), regex(list)?, regex(pair)?));
        }
        let Some((_, _, list_regex, pair_regex)) = &compiled else { continue };
        let text = texts.value(row);
        let mut entries: Vec<(&str, Option<&str>)> = Vec::new();
        if !text.is_empty() {
            for entry in list_regex.split(text) {
                let mut parts = pair_regex.splitn(entry, 2);
                let key = parts.next().unwrap_or_default();
                let value = parts.next();
                match entries.iter_mut().find(|(k, _)| *k == key) {
                    Some(kept) => kept.1 = value,
                    None => entries.push((key, value)),
                }
            }
        }
        for (key, value) in &entries {
            keys.append_value(key);
            values.append_option(*value);
        }
        valid.push(true);
        offsets.push(offsets[offsets.len() - 1] + entries.len() as i32);
    }
    let DataType::Map(entries_field, _) = map_type(DataType::Utf8, DataType::Utf8) else { return exec_err!("a map type") };
    let DataType::Struct(fields) = entries_field.data_type().clone() else { return exec_err!("a map's entries") };
    let entries = StructArray::try_new(fields, vec![Arc::new(keys.finish()), Arc::new(values.finish())], None)?;
    Ok(Arc::new(MapArray::try_new(entries_field, OffsetBuffer::new(offsets.into()), entries, Some(NullBuffer::from(valid)), false)?))
}

/// `MAP[k1, v1, ...]`: each row's entries, keys and values cast to the map's types.
fn map_of(arrays: &[ArrayRef], map: &DataType, rows: usize) -> Result<ArrayRef> {
    let DataType::Map(entries_field, _) = map else { return exec_err!("MAP[...] of no map type") };
    let DataType::Struct(fields) = entries_field.data_type() else { return exec_err!("a map's entries") };
    let (key_type, value_type) = (fields[0].data_type(), fields[1].data_type());
    let keys = arrays.iter().step_by(2).map(|a| cast(a, key_type)).collect::<std::result::Result<Vec<_>, _>>()?;
    let values = arrays.iter().skip(1).step_by(2).map(|a| cast(a, value_type)).collect::<std::result::Result<Vec<_>, _>>()?;
    let mut picks: Vec<(usize, usize)> = Vec::new();
    let mut offsets = vec![0i32];
    for row in 0..rows {
        // The pairs kept, by argument: a later equal key replaces an earlier one.
        let mut kept: Vec<(usize, ScalarValue)> = Vec::new();
        for (pair, key) in keys.iter().enumerate() {
            if key.is_null(row) {
                return exec_err!("MAP[...]: a key is NULL; map keys cannot be NULL");
            }
            let key = ScalarValue::try_from_array(key, row)?;
            match kept.iter_mut().find(|(_, k)| *k == key) {
                Some(entry) => entry.0 = pair,
                None => kept.push((pair, key)),
            }
        }
        picks.extend(kept.iter().map(|(pair, _)| (*pair, row)));
        offsets.push(offsets[offsets.len() - 1] + kept.len() as i32);
    }
    let pick = |columns: &[ArrayRef]| -> Result<ArrayRef> {
        let refs: Vec<&dyn Array> = columns.iter().map(|c| c.as_ref()).collect();
        Ok(interleave(&refs, &picks)?)
    };
    let entries = StructArray::try_new(fields.clone(), vec![pick(&keys)?, pick(&values)?], None)?;
    Ok(Arc::new(MapArray::try_new(Arc::clone(entries_field), OffsetBuffer::new(offsets.into()), entries, None, false)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(values: &[&str]) -> ArrayRef {
        Arc::new(StringArray::from(values.to_vec()))
    }

    #[test]
    fn str_to_map_splits_at_regular_expressions_and_keeps_the_last_value_of_a_key() {
        let map = str_to_map(&[strings(&["a=1,b=2,a=3", "", "k"]), strings(&[",", ",", ","]), strings(&["=", "=", "="])], 3).unwrap();
        let map = map.as_map();
        assert_eq!(map.value_offsets(), &[0, 2, 2, 3]);
        let keys = map.keys().as_string::<i32>();
        let values = map.values().as_string::<i32>();
        assert_eq!((keys.value(0), values.value(0), keys.value(1), values.value(1)), ("a", "3", "b", "2"));
        assert!(values.is_null(2), "a key without a value");
        let dots = str_to_map(&[strings(&["a.1|b.2"]), strings(&["\\|"]), strings(&["\\."])], 1).unwrap();
        assert_eq!(dots.as_map().keys().as_string::<i32>().value(1), "b");
    }

    #[test]
    fn element_is_the_only_element_or_null_and_fails_on_more() {
        let list: ArrayRef = Arc::new(datafusion::arrow::array::ListArray::from_iter_primitive::<datafusion::arrow::datatypes::Int32Type, _, _>(vec![
            Some(vec![Some(5)]),
            Some(vec![]),
            None,
        ]));
        let one = element(&list).unwrap();
        assert_eq!(one.as_primitive::<datafusion::arrow::datatypes::Int32Type>().value(0), 5);
        assert!(one.is_null(1) && one.is_null(2));
        let two: ArrayRef =
            Arc::new(datafusion::arrow::array::ListArray::from_iter_primitive::<datafusion::arrow::datatypes::Int32Type, _, _>(vec![Some(vec![
                Some(1),
                Some(2),
            ])]));
        assert!(element(&two).unwrap_err().to_string().contains("more than one element"));
    }

    #[test]
    fn map_of_keeps_a_later_equal_key() {
        let map = map_of(&[strings(&["a"]), strings(&["1"]), strings(&["a"]), strings(&["2"])], &map_type(DataType::Utf8, DataType::Utf8), 1).unwrap();
        let map = map.as_map();
        assert_eq!(map.value_offsets(), &[0, 1]);
        assert_eq!(map.values().as_string::<i32>().value(0), "2");
    }
}
