//! Flink's ARRAY and MAP functions (`ARRAY_APPEND` ... `MAP_UNION`, `SPLIT`),
//! registered over DataFusion's functions of the same names, whose meanings
//! differ in places (DataFusion's `ARRAY_REMOVE` removes one occurrence, its
//! `ARRAY_POSITION` gives NULL for a missing element, its `ARRAY_DISTINCT`
//! sorts, its `ARRAY_CONCAT` skips a NULL array).
//!
//! Elements are compared through Arrow's row format, so every element type
//! (strings, nested arrays) compares the same way, and a NULL element equals a
//! NULL element, as in Flink (`ARRAY_CONTAINS(a, NULL)` finds one,
//! `ARRAY_DISTINCT` keeps one). Each result is built by picking elements of the
//! inputs (`interleave`), not value by value.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use datafusion::arrow::array::{
    new_null_array, Array, ArrayRef, AsArray, BooleanArray, GenericListArray, Int32Array, ListArray, ListBuilder, MapArray, StringBuilder, StructArray,
};
use datafusion::arrow::buffer::{NullBuffer, OffsetBuffer};
use datafusion::arrow::compute::{interleave, SortOptions};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Fields, Int64Type};
use datafusion::arrow::row::{RowConverter, Rows, SortField};
use datafusion::common::{exec_err, plan_err, Result};
use datafusion::logical_expr::type_coercion::binary::type_union_resolution;
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility};

use super::collections::map_type;
use crate::types::sql_type_name;

/// Flink's array and map functions.
pub(super) fn functions() -> Vec<ScalarUDF> {
    use Op::*;
    [
        (Append, "array_append", "ARRAY_APPEND(array, element)"),
        (Prepend, "array_prepend", "ARRAY_PREPEND(array, element)"),
        (Concat, "array_concat", "ARRAY_CONCAT(array, ...)"),
        (Contains, "array_contains", "ARRAY_CONTAINS(array, element)"),
        (Distinct, "array_distinct", "ARRAY_DISTINCT(array)"),
        (Except, "array_except", "ARRAY_EXCEPT(array, array)"),
        (Intersect, "array_intersect", "ARRAY_INTERSECT(array, array)"),
        (Union, "array_union", "ARRAY_UNION(array, array)"),
        (Join, "array_join", "ARRAY_JOIN(array_of_strings, delimiter[, null_replacement])"),
        (Max, "array_max", "ARRAY_MAX(array)"),
        (Min, "array_min", "ARRAY_MIN(array)"),
        (Position, "array_position", "ARRAY_POSITION(array, element)"),
        (Remove, "array_remove", "ARRAY_REMOVE(array, element)"),
        (Reverse, "array_reverse", "ARRAY_REVERSE(array)"),
        (Slice, "array_slice", "ARRAY_SLICE(array, start[, end])"),
        (Sort, "array_sort", "ARRAY_SORT(array[, ascending[, nulls_first]])"),
        (MapKeys, "map_keys", "MAP_KEYS(map)"),
        (MapValues, "map_values", "MAP_VALUES(map)"),
        (MapEntries, "map_entries", "MAP_ENTRIES(map)"),
        (MapFromArrays, "map_from_arrays", "MAP_FROM_ARRAYS(keys, values)"),
        (MapUnion, "map_union", "MAP_UNION(map, ...)"),
        (Split, "split", "SPLIT(text, delimiter)"),
    ]
    .into_iter()
    .map(|(op, name, usage)| ScalarUDF::new_from_impl(ArrayFn { op, name, usage, signature: Signature::user_defined(Volatility::Immutable) }))
    .collect()
}

/// Which function an [`ArrayFn`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Op {
    Append,
    Prepend,
    Concat,
    Contains,
    Distinct,
    Except,
    Intersect,
    Union,
    Join,
    Max,
    Min,
    Position,
    Remove,
    Reverse,
    Slice,
    Sort,
    MapKeys,
    MapValues,
    MapEntries,
    MapFromArrays,
    MapUnion,
    Split,
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct ArrayFn {
    op: Op,
    /// The lower-case name DataFusion looks calls up by.
    name: &'static str,
    /// How to call it, for errors.
    usage: &'static str,
    signature: Signature,
}

/// An ARRAY of `element`, as Eddy builds them (`ARRAY[...]`).
fn list_of(element: DataType) -> DataType {
    DataType::List(Arc::new(Field::new_list_field(element, true)))
}

/// The element type of an ARRAY (Null for an untyped NULL).
fn element_of(t: &DataType) -> Option<DataType> {
    match t {
        DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => Some(f.data_type().clone()),
        DataType::Null => Some(DataType::Null),
        _ => None,
    }
}

/// The key and value types of a MAP (Null for an untyped NULL).
fn map_parts(t: &DataType) -> Option<(DataType, DataType)> {
    match t {
        DataType::Map(entries, _) => match entries.data_type() {
            DataType::Struct(fields) if fields.len() == 2 => Some((fields[0].data_type().clone(), fields[1].data_type().clone())),
            _ => None,
        },
        DataType::Null => Some((DataType::Null, DataType::Null)),
        _ => None,
    }
}

fn is_text(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

/// The type two elements share, as Flink finds one: numbers widen to the wider,
/// texts are STRING, arrays and maps by their parts; None when they share none
/// (an INT and a STRING), which Flink refuses.
fn common(a: &DataType, b: &DataType) -> Option<DataType> {
    match (a, b) {
        (DataType::Null, other) | (other, DataType::Null) => Some(match other {
            DataType::LargeUtf8 | DataType::Utf8View => DataType::Utf8,
            DataType::LargeList(_) | DataType::FixedSizeList(..) => list_of(element_of(other)?),
            _ => other.clone(),
        }),
        _ if a.is_numeric() && b.is_numeric() => type_union_resolution(&[a.clone(), b.clone()]),
        _ if is_text(a) && is_text(b) => Some(DataType::Utf8),
        (
            DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..),
            DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..),
        ) => common(&element_of(a)?, &element_of(b)?).map(list_of),
        (DataType::Map(..), DataType::Map(..)) => {
            let ((ka, va), (kb, vb)) = (map_parts(a)?, map_parts(b)?);
            Some(map_type(common(&ka, &kb)?, common(&va, &vb)?))
        }
        _ if a.equals_datatype(b) => Some(a.clone()),
        _ => None,
    }
}

/// Whether Flink can order elements of type `t` (not arrays, maps or rows).
fn orderable(t: &DataType) -> bool {
    !t.is_nested()
}

impl ArrayFn {
    fn refuse<T>(&self, what: impl std::fmt::Display) -> Result<T> {
        plan_err!("{}: {what}; usage: {}", self.name.to_uppercase(), self.usage)
    }

    fn arity(&self, args: &[DataType], min: usize, max: usize) -> Result<()> {
        if args.len() < min || args.len() > max {
            let n = if min == max {
                format!("{min}")
            } else if max == usize::MAX {
                format!("at least {min}")
            } else {
                format!("{min} to {max}")
            };
            return self.refuse(format!("takes {n} arguments, not {}", args.len()));
        }
        Ok(())
    }

    fn element(&self, t: &DataType, which: usize) -> Result<DataType> {
        match element_of(t) {
            Some(e) => Ok(e),
            None => self.refuse(format!("argument {which} must be an ARRAY, not {}", sql_type_name(t))),
        }
    }

    /// The element type every ARRAY argument shares.
    fn shared_element(&self, args: &[DataType]) -> Result<DataType> {
        let mut shared = DataType::Null;
        for (i, t) in args.iter().enumerate() {
            let e = self.element(t, i + 1)?;
            shared = match common(&shared, &e) {
                Some(c) => c,
                None => return self.refuse(format!("the arrays' elements have no common type ({} and {})", sql_type_name(&shared), sql_type_name(&e))),
            };
        }
        Ok(shared)
    }

    fn text(&self, t: &DataType, which: usize) -> Result<DataType> {
        if is_text(t) || t.is_null() {
            return Ok(DataType::Utf8);
        }
        self.refuse(format!("argument {which} must be a STRING, not {}", sql_type_name(t)))
    }

    fn map(&self, t: &DataType, which: usize) -> Result<(DataType, DataType)> {
        match map_parts(t) {
            Some(parts) => Ok(parts),
            None => self.refuse(format!("argument {which} must be a MAP, not {}", sql_type_name(t))),
        }
    }
}

impl ScalarUDFImpl for ArrayFn {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    /// The types the arguments are cast to: every array to an ARRAY of the
    /// element type they share; refuses what Flink refuses.
    fn coerce_types(&self, args: &[DataType]) -> Result<Vec<DataType>> {
        use Op::*;
        match self.op {
            Append | Prepend | Contains | Position | Remove => {
                self.arity(args, 2, 2)?;
                let element = self.element(&args[0], 1)?;
                match common(&element, &args[1]) {
                    Some(c) => Ok(vec![list_of(c.clone()), c]),
                    None => self.refuse(format!("the element ({}) is not of the array's element type ({})", sql_type_name(&args[1]), sql_type_name(&element))),
                }
            }
            Concat | MapUnion if args.is_empty() => self.arity(args, 1, usize::MAX).map(|_| vec![]),
            Concat => Ok(vec![list_of(self.shared_element(args)?); args.len()]),
            Except | Intersect | Union => {
                self.arity(args, 2, 2)?;
                Ok(vec![list_of(self.shared_element(args)?); 2])
            }
            Distinct | Reverse => {
                self.arity(args, 1, 1)?;
                Ok(vec![list_of(self.element(&args[0], 1)?)])
            }
            Max | Min | Sort => {
                let max = if self.op == Sort { 3 } else { 1 };
                self.arity(args, 1, max)?;
                let element = self.element(&args[0], 1)?;
                if !orderable(&element) {
                    return self.refuse(format!("elements of type {} have no order", sql_type_name(&element)));
                }
                let mut out = vec![list_of(element)];
                for (i, t) in args.iter().enumerate().skip(1) {
                    if !matches!(t, DataType::Boolean | DataType::Null) {
                        return self.refuse(format!("argument {} must be a BOOLEAN, not {}", i + 1, sql_type_name(t)));
                    }
                    out.push(DataType::Boolean);
                }
                Ok(out)
            }
            Join => {
                self.arity(args, 2, 3)?;
                let element = self.element(&args[0], 1)?;
                if !is_text(&element) && !element.is_null() {
                    return self.refuse(format!("argument 1 must be an ARRAY of STRING, not of {}", sql_type_name(&element)));
                }
                let mut out = vec![list_of(DataType::Utf8)];
                for (i, t) in args.iter().enumerate().skip(1) {
                    out.push(self.text(t, i + 1)?);
                }
                Ok(out)
            }
            Slice => {
                self.arity(args, 2, 3)?;
                let mut out = vec![list_of(self.element(&args[0], 1)?)];
                for (i, t) in args.iter().enumerate().skip(1) {
                    if !t.is_integer() && !t.is_null() {
                        return self.refuse(format!("argument {} must be an integer, not {}", i + 1, sql_type_name(t)));
                    }
                    out.push(DataType::Int64);
                }
                Ok(out)
            }
            MapKeys | MapValues | MapEntries => {
                self.arity(args, 1, 1)?;
                let (k, v) = self.map(&args[0], 1)?;
                Ok(vec![map_type(k, v)])
            }
            MapFromArrays => {
                self.arity(args, 2, 2)?;
                Ok(vec![list_of(self.element(&args[0], 1)?), list_of(self.element(&args[1], 2)?)])
            }
            MapUnion => {
                let (mut key, mut value) = (DataType::Null, DataType::Null);
                for (i, t) in args.iter().enumerate() {
                    let (k, v) = self.map(t, i + 1)?;
                    match (common(&key, &k), common(&value, &v)) {
                        (Some(k), Some(v)) => (key, value) = (k, v),
                        _ => return self.refuse(format!("the maps have no common type ({} and {})", sql_type_name(&map_type(key, value)), sql_type_name(t))),
                    }
                }
                Ok(vec![map_type(key, value); args.len()])
            }
            Split => {
                self.arity(args, 2, 2)?;
                Ok(vec![self.text(&args[0], 1)?, self.text(&args[1], 2)?])
            }
        }
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        use Op::*;
        let first = args.first().cloned().unwrap_or(DataType::Null);
        Ok(match self.op {
            Append | Prepend | Concat | Distinct | Except | Intersect | Union | Remove | Reverse | Slice | Sort => list_of(self.element(&first, 1)?),
            Contains => DataType::Boolean,
            Position => DataType::Int32,
            Join => DataType::Utf8,
            Max | Min => self.element(&first, 1)?,
            MapKeys => list_of(self.map(&first, 1)?.0),
            MapValues => list_of(self.map(&first, 1)?.1),
            MapEntries => {
                let (k, v) = self.map(&first, 1)?;
                list_of(DataType::Struct(entry_fields(k, v)))
            }
            MapFromArrays => map_type(self.element(&first, 1)?, self.element(args.get(1).unwrap_or(&DataType::Null), 2)?),
            MapUnion => first,
            Split => list_of(DataType::Utf8),
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        use Op::*;
        let rows = args.number_rows;
        let arrays = args.args.iter().map(|a| a.to_array(rows)).collect::<Result<Vec<_>>>()?;
        let returns = args.return_field.data_type();
        let out = match self.op {
            Append => add_element(&arrays, returns, false)?,
            Prepend => add_element(&arrays, returns, true)?,
            Concat => concat(&arrays, returns)?,
            Contains => find(&arrays, true)?,
            Position => find(&arrays, false)?,
            Remove => remove(&arrays, returns)?,
            Distinct => combine(&arrays[0], None, returns, Combine::Distinct)?,
            Except => combine(&arrays[0], Some(&arrays[1]), returns, Combine::Except)?,
            Intersect => combine(&arrays[0], Some(&arrays[1]), returns, Combine::Intersect)?,
            Union => combine(&arrays[0], Some(&arrays[1]), returns, Combine::Union)?,
            Join => join(&arrays)?,
            Max => extreme(&arrays[0], true)?,
            Min => extreme(&arrays[0], false)?,
            Reverse => reverse(&arrays[0], returns)?,
            Slice => slice(&arrays, returns)?,
            Sort => sort(&arrays, returns)?,
            MapKeys | MapValues | MapEntries => map_parts_of(&arrays[0], self.op, returns)?,
            MapFromArrays => map_from_arrays(&arrays, returns)?,
            MapUnion => map_union(&arrays, returns)?,
            Split => split(&arrays)?,
        };
        Ok(ColumnarValue::Array(out))
    }
}

/// The `key` and `value` fields of `MAP_ENTRIES`' rows, named as in Flink.
fn entry_fields(key: DataType, value: DataType) -> Fields {
    Fields::from(vec![Field::new("key", key, true), Field::new("value", value, true)])
}

fn list(array: &ArrayRef) -> Result<&ListArray> {
    match array.as_list_opt::<i32>() {
        Some(list) => Ok(list),
        None => exec_err!("an ARRAY argument that is not one: {}", array.data_type()),
    }
}

/// The list field of an ARRAY result type.
fn item(returns: &DataType) -> Result<FieldRef> {
    match returns {
        DataType::List(f) => Ok(Arc::clone(f)),
        other => exec_err!("an ARRAY result of type {other}"),
    }
}

/// The element range of each row of a list.
fn range(list: &ListArray, row: usize) -> std::ops::Range<usize> {
    let offsets = list.value_offsets();
    offsets[row] as usize..offsets[row + 1] as usize
}

/// Each row's elements, picked by (source, index) among `sources`: an ARRAY
/// result of `returns`, with `lengths[row]` picks for each row, NULL where `valid` is false.
fn build_list(returns: &DataType, sources: &[&dyn Array], picks: &[(usize, usize)], lengths: &[usize], valid: Vec<bool>) -> Result<ArrayRef> {
    let field = item(returns)?;
    let values = if sources.is_empty() { new_null_array(field.data_type(), 0) } else { interleave(sources, picks)? };
    let offsets = OffsetBuffer::from_lengths(lengths.iter().copied());
    Ok(Arc::new(GenericListArray::<i32>::try_new(field, offsets, values, Some(NullBuffer::from(valid)))?))
}

/// Arrow rows of `arrays` (all of one type) in one encoding, so elements of
/// different arrays compare: equal values (and NULLs) have equal rows.
fn rows_of(arrays: &[&ArrayRef], options: SortOptions) -> Result<Vec<Rows>> {
    let Some(first) = arrays.first() else { return Ok(vec![]) };
    let converter = RowConverter::new(vec![SortField::new_with_options(first.data_type().clone(), options)])?;
    arrays.iter().map(|a| Ok(converter.convert_columns(&[Arc::clone(a)])?)).collect()
}

/// `ARRAY_APPEND` and `ARRAY_PREPEND`: NULL for a NULL array; a NULL element is added.
fn add_element(arrays: &[ArrayRef], returns: &DataType, front: bool) -> Result<ArrayRef> {
    let (lists, elements) = (list(&arrays[0])?, &arrays[1]);
    let (mut picks, mut lengths, mut valid) = (Vec::new(), Vec::with_capacity(lists.len()), Vec::with_capacity(lists.len()));
    for row in 0..lists.len() {
        if lists.is_null(row) {
            lengths.push(0);
            valid.push(false);
            continue;
        }
        if front {
            picks.push((1, row));
        }
        picks.extend(range(lists, row).map(|i| (0, i)));
        if !front {
            picks.push((1, row));
        }
        lengths.push(range(lists, row).len() + 1);
        valid.push(true);
    }
    build_list(returns, &[lists.values().as_ref(), elements.as_ref()], &picks, &lengths, valid)
}

/// `ARRAY_CONCAT`: the arrays' elements in order; NULL when any array is NULL.
fn concat(arrays: &[ArrayRef], returns: &DataType) -> Result<ArrayRef> {
    let lists = arrays.iter().map(list).collect::<Result<Vec<_>>>()?;
    let rows = arrays.first().map_or(0, |a| a.len());
    let (mut picks, mut lengths, mut valid) = (Vec::new(), Vec::with_capacity(rows), Vec::with_capacity(rows));
    for row in 0..rows {
        if lists.iter().any(|l| l.is_null(row)) {
            lengths.push(0);
            valid.push(false);
            continue;
        }
        let before = picks.len();
        for (source, l) in lists.iter().enumerate() {
            picks.extend(range(l, row).map(|i| (source, i)));
        }
        lengths.push(picks.len() - before);
        valid.push(true);
    }
    let sources: Vec<&dyn Array> = lists.iter().map(|l| l.values().as_ref()).collect();
    build_list(returns, &sources, &picks, &lengths, valid)
}

/// `ARRAY_CONTAINS` (`contains`) and `ARRAY_POSITION`: whether, or where from 1
/// (0 when missing), the array holds the element. A NULL element is found
/// among NULLs by `ARRAY_CONTAINS`; `ARRAY_POSITION` of NULL is NULL.
fn find(arrays: &[ArrayRef], contains: bool) -> Result<ArrayRef> {
    let (lists, needles) = (list(&arrays[0])?, &arrays[1]);
    let encoded = rows_of(&[lists.values(), needles], SortOptions::default())?;
    let (values, needle) = (&encoded[0], &encoded[1]);
    let position = |row: usize| range(lists, row).position(|i| values.row(i) == needle.row(row));
    if contains {
        let out: BooleanArray = (0..lists.len()).map(|row| lists.is_valid(row).then(|| position(row).is_some())).collect();
        return Ok(Arc::new(out));
    }
    let out: Int32Array =
        (0..lists.len()).map(|row| (lists.is_valid(row) && needles.is_valid(row)).then(|| position(row).map_or(0, |p| p as i32 + 1))).collect();
    Ok(Arc::new(out))
}

/// `ARRAY_REMOVE`: the array without every element equal to the given one (NULL removes NULLs).
fn remove(arrays: &[ArrayRef], returns: &DataType) -> Result<ArrayRef> {
    let (lists, needles) = (list(&arrays[0])?, &arrays[1]);
    let encoded = rows_of(&[lists.values(), needles], SortOptions::default())?;
    let (values, needle) = (&encoded[0], &encoded[1]);
    let (mut picks, mut lengths, mut valid) = (Vec::new(), Vec::with_capacity(lists.len()), Vec::with_capacity(lists.len()));
    for row in 0..lists.len() {
        let before = picks.len();
        if lists.is_valid(row) {
            picks.extend(range(lists, row).filter(|&i| values.row(i) != needle.row(row)).map(|i| (0, i)));
        }
        lengths.push(picks.len() - before);
        valid.push(lists.is_valid(row));
    }
    build_list(returns, &[lists.values().as_ref()], &picks, &lengths, valid)
}

/// What [`combine`] keeps of the first array's (and the second's) elements,
/// each once, in the order first seen.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Combine {
    /// `ARRAY_DISTINCT`.
    Distinct,
    /// `ARRAY_EXCEPT`: those not in the second array.
    Except,
    /// `ARRAY_INTERSECT`: those also in the second array.
    Intersect,
    /// `ARRAY_UNION`: those of either array.
    Union,
}

/// `ARRAY_DISTINCT`, `ARRAY_EXCEPT`, `ARRAY_INTERSECT`, `ARRAY_UNION`: NULL when an array is.
fn combine(first: &ArrayRef, second: Option<&ArrayRef>, returns: &DataType, how: Combine) -> Result<ArrayRef> {
    let a = list(first)?;
    let b = second.map(list).transpose()?.unwrap_or(a);
    let encoded = rows_of(&[a.values(), b.values()], SortOptions::default())?;
    let (mut picks, mut lengths, mut valid) = (Vec::new(), Vec::with_capacity(a.len()), Vec::with_capacity(a.len()));
    let (mut seen, mut other) = (HashSet::new(), HashSet::new());
    for row in 0..a.len() {
        if a.is_null(row) || b.is_null(row) {
            lengths.push(0);
            valid.push(false);
            continue;
        }
        seen.clear();
        other.clear();
        if matches!(how, Combine::Except | Combine::Intersect) {
            other.extend(range(b, row).map(|i| encoded[1].row(i)));
        }
        let before = picks.len();
        for i in range(a, row) {
            let element = encoded[0].row(i);
            let keep = match how {
                Combine::Distinct | Combine::Union => true,
                Combine::Except => !other.contains(&element),
                Combine::Intersect => other.contains(&element),
            };
            if keep && seen.insert(element) {
                picks.push((0, i));
            }
        }
        if how == Combine::Union {
            for i in range(b, row) {
                if seen.insert(encoded[1].row(i)) {
                    picks.push((1, i));
                }
            }
        }
        lengths.push(picks.len() - before);
        valid.push(true);
    }
    build_list(returns, &[a.values().as_ref(), b.values().as_ref()], &picks, &lengths, valid)
}

/// `ARRAY_JOIN(array, delimiter[, null_replacement])`: NULL elements are left
/// out, or replaced when a replacement is given; NULL when any argument is.
fn join(arrays: &[ArrayRef]) -> Result<ArrayRef> {
    let lists = list(&arrays[0])?;
    let values = lists.values().as_string::<i32>();
    let delimiters = arrays[1].as_string::<i32>();
    let replacements = arrays.get(2).map(|a| a.as_string::<i32>());
    let mut out = StringBuilder::with_capacity(lists.len(), 16 * lists.len());
    let mut text = String::new();
    for row in 0..lists.len() {
        if lists.is_null(row) || delimiters.is_null(row) || replacements.is_some_and(|r| r.is_null(row)) {
            out.append_null();
            continue;
        }
        text.clear();
        let mut first = true;
        for i in range(lists, row) {
            let value = if values.is_null(i) {
                match replacements {
                    Some(r) => r.value(row),
                    None => continue,
                }
            } else {
                values.value(i)
            };
            if !first {
                text.push_str(delimiters.value(row));
            }
            text.push_str(value);
            first = false;
        }
        out.append_value(&text);
    }
    Ok(Arc::new(out.finish()))
}

/// `ARRAY_MAX` (`max`) and `ARRAY_MIN`: the greatest or least element, NULLs
/// left out; NULL for an empty or NULL array.
fn extreme(array: &ArrayRef, max: bool) -> Result<ArrayRef> {
    let lists = list(array)?;
    let encoded = rows_of(&[lists.values()], SortOptions::default())?;
    let values = lists.values();
    let mut picks = Vec::with_capacity(lists.len());
    for row in 0..lists.len() {
        let mut best: Option<usize> = None;
        if lists.is_valid(row) {
            for i in range(lists, row).filter(|&i| values.is_valid(i)) {
                let better = best.is_none_or(|b| if max { encoded[0].row(i) > encoded[0].row(b) } else { encoded[0].row(i) < encoded[0].row(b) });
                if better {
                    best = Some(i);
                }
            }
        }
        picks.push(best.map_or((1, 0), |i| (0, i)));
    }
    let null = new_null_array(values.data_type(), 1);
    Ok(interleave(&[values.as_ref(), null.as_ref()], &picks)?)
}

/// `ARRAY_REVERSE`: the top-level elements in reverse order.
fn reverse(array: &ArrayRef, returns: &DataType) -> Result<ArrayRef> {
    let lists = list(array)?;
    let mut picks = Vec::with_capacity(lists.values().len());
    let mut lengths = Vec::with_capacity(lists.len());
    for row in 0..lists.len() {
        let r = if lists.is_valid(row) { range(lists, row) } else { 0..0 };
        lengths.push(r.len());
        picks.extend(r.rev().map(|i| (0, i)));
    }
    let valid = (0..lists.len()).map(|row| lists.is_valid(row)).collect();
    build_list(returns, &[lists.values().as_ref()], &picks, &lengths, valid)
}

/// `ARRAY_SLICE(array, start[, end])`: positions from 1, both ends kept; a
/// negative position counts from the end (-1 is the last); ends past the array
/// are cut to it; empty when start is after end; NULL when any argument is.
fn slice(arrays: &[ArrayRef], returns: &DataType) -> Result<ArrayRef> {
    let lists = list(&arrays[0])?;
    let starts = arrays[1].as_primitive::<Int64Type>();
    let ends = arrays.get(2).map(|a| a.as_primitive::<Int64Type>());
    let (mut picks, mut lengths, mut valid) = (Vec::new(), Vec::with_capacity(lists.len()), Vec::with_capacity(lists.len()));
    for row in 0..lists.len() {
        if lists.is_null(row) || starts.is_null(row) || ends.is_some_and(|e| e.is_null(row)) {
            lengths.push(0);
            valid.push(false);
            continue;
        }
        let r = range(lists, row);
        let size = r.len() as i64;
        let from_end = |p: i64| if p < 0 { size.saturating_add(p).saturating_add(1) } else { p };
        let start = from_end(starts.value(row)).max(1);
        let end = ends.map_or(size, |e| from_end(e.value(row))).min(size);
        let taken = if start > end { 0..0 } else { r.start + start as usize - 1..r.start + end as usize };
        lengths.push(taken.len());
        picks.extend(taken.map(|i| (0, i)));
        valid.push(true);
    }
    build_list(returns, &[lists.values().as_ref()], &picks, &lengths, valid)
}

/// `ARRAY_SORT(array[, ascending[, nulls_first]])`: ascending by default;
/// NULLs first when ascending, last when descending, unless told; NULL when any argument is.
fn sort(arrays: &[ArrayRef], returns: &DataType) -> Result<ArrayRef> {
    let lists = list(&arrays[0])?;
    let flag = |i: usize| arrays.get(i).map(|a| a.as_boolean());
    let (ascending, nulls_first) = (flag(1), flag(2));
    let values = lists.values();
    let encoded = rows_of(&[values], SortOptions::default())?;
    let (mut picks, mut lengths, mut valid) = (Vec::new(), Vec::with_capacity(lists.len()), Vec::with_capacity(lists.len()));
    let mut order: Vec<usize> = Vec::new();
    for row in 0..lists.len() {
        if lists.is_null(row) || ascending.is_some_and(|a| a.is_null(row)) || nulls_first.is_some_and(|n| n.is_null(row)) {
            lengths.push(0);
            valid.push(false);
            continue;
        }
        let up = ascending.is_none_or(|a| a.value(row));
        let nulls_first = nulls_first.map_or(up, |n| n.value(row));
        order.clear();
        order.extend(range(lists, row));
        order.sort_by(|&x, &y| match (values.is_null(x), values.is_null(y)) {
            (true, true) => std::cmp::Ordering::Equal,
            (true, false) => {
                if nulls_first {
                    std::cmp::Ordering::Less
                } else {
                    std::cmp::Ordering::Greater
                }
            }
            (false, true) => {
                if nulls_first {
                    std::cmp::Ordering::Greater
                } else {
                    std::cmp::Ordering::Less
                }
            }
            (false, false) => {
                let o = encoded[0].row(x).cmp(&encoded[0].row(y));
                if up {
                    o
                } else {
                    o.reverse()
                }
            }
        });
        lengths.push(order.len());
        picks.extend(order.iter().map(|&i| (0, i)));
        valid.push(true);
    }
    build_list(returns, &[values.as_ref()], &picks, &lengths, valid)
}

fn map_array(array: &ArrayRef) -> Result<&MapArray> {
    match array.as_map_opt() {
        Some(map) => Ok(map),
        None => exec_err!("a MAP argument that is not one: {}", array.data_type()),
    }
}

/// `MAP_KEYS`, `MAP_VALUES` and `MAP_ENTRIES`: the map's own offsets over its
/// keys, its values or both as rows; no element is copied.
fn map_parts_of(array: &ArrayRef, op: Op, returns: &DataType) -> Result<ArrayRef> {
    let map = map_array(array)?;
    let field = item(returns)?;
    let values: ArrayRef = match op {
        Op::MapKeys => Arc::clone(map.keys()),
        Op::MapValues => Arc::clone(map.values()),
        _ => {
            let DataType::Struct(fields) = field.data_type() else { return exec_err!("MAP_ENTRIES of no rows") };
            Arc::new(StructArray::try_new(fields.clone(), vec![Arc::clone(map.keys()), Arc::clone(map.values())], None)?)
        }
    };
    Ok(Arc::new(ListArray::try_new(field, map.offsets().clone(), values, map.nulls().cloned())?))
}

/// A MAP result of `returns` from picked keys and values.
fn build_map(
    returns: &DataType,
    keys: (&[&dyn Array], &[(usize, usize)]),
    values: (&[&dyn Array], &[(usize, usize)]),
    lengths: &[usize],
    valid: Vec<bool>,
) -> Result<ArrayRef> {
    let DataType::Map(entries_field, _) = returns else { return exec_err!("a MAP result of type {returns}") };
    let DataType::Struct(fields) = entries_field.data_type() else { return exec_err!("a map's entries") };
    let pick = |(sources, picks): (&[&dyn Array], &[(usize, usize)]), field: &Field| -> Result<ArrayRef> {
        if sources.is_empty() {
            return Ok(new_null_array(field.data_type(), 0));
        }
        Ok(interleave(sources, picks)?)
    };
    let entries = StructArray::try_new(fields.clone(), vec![pick(keys, &fields[0])?, pick(values, &fields[1])?], None)?;
    let offsets = OffsetBuffer::from_lengths(lengths.iter().copied());
    Ok(Arc::new(MapArray::try_new(Arc::clone(entries_field), offsets, entries, Some(NullBuffer::from(valid)), false)?))
}

/// `MAP_FROM_ARRAYS(keys, values)`: a later equal key replaces an earlier one's
/// value; NULL when an array is; an error when their lengths differ or a key is NULL.
fn map_from_arrays(arrays: &[ArrayRef], returns: &DataType) -> Result<ArrayRef> {
    let (keys, values) = (list(&arrays[0])?, list(&arrays[1])?);
    let encoded = rows_of(&[keys.values()], SortOptions::default())?;
    let (mut key_picks, mut value_picks) = (Vec::new(), Vec::new());
    let (mut lengths, mut valid) = (Vec::with_capacity(keys.len()), Vec::with_capacity(keys.len()));
    let mut at: HashMap<_, usize> = HashMap::new();
    for row in 0..keys.len() {
        if keys.is_null(row) || values.is_null(row) {
            lengths.push(0);
            valid.push(false);
            continue;
        }
        let (k, v) = (range(keys, row), range(values, row));
        if k.len() != v.len() {
            return exec_err!("MAP_FROM_ARRAYS: {} keys but {} values; the two arrays must be as long", k.len(), v.len());
        }
        at.clear();
        let before = key_picks.len();
        for (i, j) in k.zip(v) {
            if keys.values().is_null(i) {
                return exec_err!("MAP_FROM_ARRAYS: a key is NULL; Eddy's maps cannot hold a NULL key");
            }
            match at.get(&encoded[0].row(i)) {
                Some(&slot) => value_picks[slot] = (0, j),
                None => {
                    at.insert(encoded[0].row(i), value_picks.len());
                    key_picks.push((0, i));
                    value_picks.push((0, j));
                }
            }
        }
        lengths.push(key_picks.len() - before);
        valid.push(true);
    }
    build_map(returns, (&[keys.values().as_ref()], &key_picks), (&[values.values().as_ref()], &value_picks), &lengths, valid)
}

/// `MAP_UNION(map, ...)`: every map's entries, a later map's value replacing an
/// earlier one's for an equal key; NULL when any map is.
fn map_union(arrays: &[ArrayRef], returns: &DataType) -> Result<ArrayRef> {
    let maps = arrays.iter().map(map_array).collect::<Result<Vec<_>>>()?;
    let all_keys: Vec<&ArrayRef> = maps.iter().map(|m| m.keys()).collect();
    let encoded = rows_of(&all_keys, SortOptions::default())?;
    let rows = arrays.first().map_or(0, |a| a.len());
    let (mut key_picks, mut value_picks) = (Vec::new(), Vec::new());
    let (mut lengths, mut valid) = (Vec::with_capacity(rows), Vec::with_capacity(rows));
    let mut at: HashMap<_, usize> = HashMap::new();
    for row in 0..rows {
        if maps.iter().any(|m| m.is_null(row)) {
            lengths.push(0);
            valid.push(false);
            continue;
        }
        at.clear();
        let before = key_picks.len();
        for (source, map) in maps.iter().enumerate() {
            let offsets = map.value_offsets();
            for i in offsets[row] as usize..offsets[row + 1] as usize {
                match at.get(&encoded[source].row(i)) {
                    Some(&slot) => value_picks[slot] = (source, i),
                    None => {
                        at.insert(encoded[source].row(i), value_picks.len());
                        key_picks.push((source, i));
                        value_picks.push((source, i));
                    }
                }
            }
        }
        lengths.push(key_picks.len() - before);
        valid.push(true);
    }
    let keys: Vec<&dyn Array> = maps.iter().map(|m| m.keys().as_ref()).collect();
    let values: Vec<&dyn Array> = maps.iter().map(|m| m.values().as_ref()).collect();
    build_map(returns, (&keys, &key_picks), (&values, &value_picks), &lengths, valid)
}

/// `SPLIT(text, delimiter)`: the text cut at each occurrence of the delimiter
/// (plain text, not a pattern), empty pieces kept; an empty delimiter gives
/// each character; empty text gives an empty array; NULL when either is.
fn split(arrays: &[ArrayRef]) -> Result<ArrayRef> {
    let (texts, delimiters) = (arrays[0].as_string::<i32>(), arrays[1].as_string::<i32>());
    let mut out = ListBuilder::new(StringBuilder::new());
    let mut buffer = [0u8; 4];
    for row in 0..texts.len() {
        if texts.is_null(row) || delimiters.is_null(row) {
            out.append_null();
            continue;
        }
        let (text, delimiter) = (texts.value(row), delimiters.value(row));
        if text.is_empty() {
            // No pieces: an empty array.
        } else if delimiter.is_empty() {
            for c in text.chars() {
                out.values().append_value(c.encode_utf8(&mut buffer));
            }
        } else {
            for piece in text.split(delimiter) {
                out.values().append_value(piece);
            }
        }
        out.append(true);
    }
    Ok(Arc::new(out.finish()))
}
