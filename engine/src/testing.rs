//! Operators tested from text, as RisingWave's `from_pretty` tests do: the rows
//! going in and coming out are written as small text tables in the test, so a
//! reader sees the operator's behaviour without reading Arrow builder code.
//!
//! ```text
//!    I   I  TS          <- one type code per column (or name:CODE)
//! +I 1  10  1000        <- a row inserted
//! -D 2   .  2000        <- a row deleted ('.' is NULL); -U and +U are an update's two halves
//! ```
//!
//! Type codes: `i` INT, `I` BIGINT, `f` FLOAT, `F` DOUBLE, `T` STRING, `B`
//! BOOLEAN, `TS` TIMESTAMP(3) written as milliseconds since the epoch. An
//! [`OperatorHarness`] feeds such tables to one operator, interleaved with
//! watermarks, barriers, refreshes and the end of input, and gives back what the
//! operator emitted in the same notation, one line per row:
//!
//! ```text
//! +I 1 10 1000
//! watermark 2000
//! late: +I 2 20 900
//! ```
//!
//! Only this module knows how a changelog row is carried in a [`Message`], so a
//! test written in text outlives a change of that representation. Test support:
//! a malformed table panics with the line and what is wrong.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, StringArray};
use datafusion::arrow::compute::{cast_with_options, CastOptions};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};

use crate::changelog::{ChangeBatch, RowKind};
use crate::message::{CheckpointId, EventTime, Message};
use crate::operator::{Emitter, Operator, SideOutput};
use crate::state::OperatorState;

/// The Arrow type of a type code in a table's header.
fn type_of(code: &str) -> Option<DataType> {
    Some(match code {
        "i" => DataType::Int32,
        "I" => DataType::Int64,
        "f" => DataType::Float32,
        "F" => DataType::Float64,
        "T" => DataType::Utf8,
        "B" => DataType::Boolean,
        "TS" => DataType::Timestamp(TimeUnit::Millisecond, None),
        _ => return None,
    })
}

/// The type code a column of `data_type` is written with, for checking a header
/// against an operator's input schema.
fn code_of(data_type: &DataType) -> &'static str {
    match data_type {
        DataType::Int32 => "i",
        DataType::Int64 => "I",
        DataType::Float32 => "f",
        DataType::Float64 => "F",
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "T",
        DataType::Boolean => "B",
        DataType::Timestamp(_, _) => "TS",
        _ => "?",
    }
}

/// Parses a text table into the changes an operator receives, one batch for the
/// table. With `schema`, the columns get its names and types (the header must
/// agree with it); without, they are named `c0`, `c1`, ...
pub fn changes_from_text(text: &str, schema: Option<&SchemaRef>) -> ChangeBatch {
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let header = lines.next().unwrap_or_else(|| panic!("a table needs a header line of type codes"));
    let schema = schema_of(header, schema);
    let (mut kinds, mut rows) = (Vec::new(), Vec::new());
    for line in lines {
        let mut tokens = line.split_whitespace();
        let kind = tokens.next().and_then(RowKind::from_short_string).unwrap_or_else(|| panic!("row `{line}` must start with +I, -U, +U or -D"));
        let cells: Vec<&str> = tokens.collect();
        assert_eq!(cells.len(), schema.fields().len(), "row `{line}` has {} values for {} columns", cells.len(), schema.fields().len());
        kinds.push(kind);
        rows.push(cells);
    }
    ChangeBatch::new(batch_of(&schema, &rows), kinds).unwrap_or_else(|e| panic!("{e}"))
}

/// The schema a header describes, checked against `expected` when given.
fn schema_of(header: &str, expected: Option<&SchemaRef>) -> SchemaRef {
    let columns: Vec<(Option<&str>, &str)> = header.split_whitespace().map(|t| t.split_once(':').map_or((None, t), |(n, c)| (Some(n), c))).collect();
    if let Some(expected) = expected {
        assert_eq!(columns.len(), expected.fields().len(), "header `{header}` has {} columns, the operator's input {}", columns.len(), expected.fields().len());
        for (i, ((_, code), field)) in columns.iter().zip(expected.fields()).enumerate() {
            assert_eq!(
                *code,
                code_of(field.data_type()),
                "column {i} (`{}`) is {} in the operator's input, header `{header}`",
                field.name(),
                field.data_type()
            );
        }
        return Arc::clone(expected);
    }
    let fields: Vec<Field> = columns
        .iter()
        .enumerate()
        .map(|(i, (name, code))| {
            let data_type = type_of(code).unwrap_or_else(|| panic!("unknown type code `{code}` in header `{header}` (i I f F T B TS)"));
            Field::new(name.map_or_else(|| format!("c{i}"), str::to_string), data_type, true)
        })
        .collect();
    Arc::new(Schema::new(fields))
}

/// One batch of `schema` from rows of cells.
fn batch_of(schema: &SchemaRef, rows: &[Vec<&str>]) -> RecordBatch {
    let options = CastOptions { safe: false, ..Default::default() };
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, field)| {
            let cells = StringArray::from(rows.iter().map(|r| (r[i] != ".").then_some(r[i])).collect::<Vec<_>>());
            let parsed = match field.data_type() {
                // Timestamps are written as milliseconds since the epoch.
                DataType::Timestamp(_, _) => cast_with_options(&cells, &DataType::Int64, &options)
                    .and_then(|ms| cast_with_options(&ms, &DataType::Timestamp(TimeUnit::Millisecond, None), &options))
                    .and_then(|ts| cast_with_options(&ts, field.data_type(), &options)),
                other => cast_with_options(&cells, other, &options),
            };
            parsed.unwrap_or_else(|e| panic!("column {i} (`{}`, {}): {e}", field.name(), field.data_type()))
        })
        .collect();
    RecordBatch::try_new(Arc::clone(schema), columns).unwrap_or_else(|e| panic!("a batch of {schema:?}: {e}"))
}

/// The changes as lines `<kind> v1 v2 ...`, in the notation of the input tables.
pub fn changes_text(changes: &ChangeBatch) -> Vec<String> {
    let batch = changes.rows();
    let options = FormatOptions::default().with_null(".");
    let columns: Vec<ArrayRef> = batch
        .columns()
        .iter()
        .map(|c| match c.data_type() {
            DataType::Timestamp(_, _) => cast_with_options(c, &DataType::Timestamp(TimeUnit::Millisecond, None), &CastOptions::default())
                .and_then(|ms| cast_with_options(&ms, &DataType::Int64, &CastOptions::default()))
                .unwrap_or_else(|e| panic!("timestamp column: {e}")),
            _ => Arc::clone(c),
        })
        .collect();
    let formatters: Vec<ArrayFormatter> =
        columns.iter().map(|c| ArrayFormatter::try_new(c.as_ref(), &options).unwrap_or_else(|e| panic!("cannot print {}: {e}", c.data_type()))).collect();
    (0..batch.num_rows())
        .map(|row| {
            let mut line = changes.kind(row).short_string().to_string();
            for f in &formatters {
                line.push(' ');
                line.push_str(&f.value(row).to_string());
            }
            line
        })
        .collect()
}

/// A message an operator emitted, as text lines.
fn message_text(message: &Message) -> Vec<String> {
    match message {
        Message::Rows(changes) => changes_text(changes),
        Message::Watermark(w) => vec![format!("watermark {}", watermark_text(*w))],
        Message::Barrier(id) => vec![format!("barrier {}", id.0)],
        Message::Refresh(at) => vec![format!("refresh {at}")],
        Message::Idle => vec!["idle".to_string()],
        Message::EndOfStream => vec!["end".to_string()],
    }
}

fn watermark_text(w: EventTime) -> String {
    match w {
        EventTime::MIN => "-inf".to_string(),
        EventTime::MAX => "+inf".to_string(),
        EventTime(ms) => ms.to_string(),
    }
}

/// `text` with each line trimmed, runs of spaces made one and blank lines
/// dropped, so expected output can be aligned in columns for the reader.
pub fn normalize(text: &str) -> String {
    text.lines().map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("\n")
}

/// One operator, driven step by step from text; what it emits is kept as text
/// until [`OperatorHarness::expect`] or [`OperatorHarness::take`] reads it.
pub struct OperatorHarness {
    operator: Box<dyn Operator>,
    /// The schema of each input (one, or a join's two sides).
    inputs: Vec<SchemaRef>,
    output: Vec<String>,
}

impl OperatorHarness {
    /// Drives `operator`, whose input rows have `input`'s columns.
    pub fn new(operator: Box<dyn Operator>, input: SchemaRef) -> Self {
        Self::with_inputs(operator, vec![input])
    }

    /// Drives `operator`, which reads several inputs apart (a join's two sides), of these schemas.
    pub fn with_inputs(operator: Box<dyn Operator>, inputs: Vec<SchemaRef>) -> Self {
        OperatorHarness { operator, inputs, output: Vec::new() }
    }

    /// Feeds the changes of a text table (header, then `+I`/`-U`/`+U`/`-D` rows).
    pub fn push(&mut self, table: &str) -> &mut Self {
        self.push_to(0, table)
    }

    /// Feeds the changes of a text table as input `input` (a join's side: 0 left, 1 right).
    pub fn push_to(&mut self, input: usize, table: &str) -> &mut Self {
        let schema = self.inputs.get(input).unwrap_or_else(|| panic!("the operator has {} input(s), not input {input}", self.inputs.len()));
        let changes = changes_from_text(table, Some(schema));
        let mut out = Emitter::default();
        let result = self.operator.on_input_rows(input, changes, &mut out);
        self.step(result, out, "rows")
    }

    /// Advances the input watermark to `ms` milliseconds since the epoch.
    pub fn watermark(&mut self, ms: i64) -> &mut Self {
        let mut out = Emitter::default();
        let result = self.operator.on_watermark(EventTime(ms), &mut out);
        self.step(result, out, "watermark")
    }

    /// A checkpoint barrier `id` arrives: what the operator emits here belongs to it.
    pub fn barrier(&mut self, id: u64) -> &mut Self {
        let mut out = Emitter::default();
        let result = self.operator.on_barrier(CheckpointId(id), &mut out);
        self.step(result, out, "barrier")
    }

    /// A refresh between checkpoints (what a materialized view asks for).
    pub fn refresh(&mut self) -> &mut Self {
        let mut out = Emitter::default();
        let result = self.operator.on_refresh(&mut out);
        self.step(result, out, "refresh")
    }

    /// Input `input` (a join's side) has ended while the others go on.
    pub fn end_input(&mut self, input: usize) -> &mut Self {
        let mut out = Emitter::default();
        let result = self.operator.on_input_end(input, &mut out);
        self.step(result, out, "end of one input")
    }

    /// Every input has ended.
    pub fn end(&mut self) -> &mut Self {
        let mut out = Emitter::default();
        let result = self.operator.on_end(&mut out);
        self.step(result, out, "end of input")
    }

    /// Snapshots the operator's state (as at a barrier), serialized, and restores
    /// it into `fresh`, which carries on in its place: what a restart does.
    pub fn restart_as(&mut self, mut fresh: Box<dyn Operator>) -> &mut Self {
        let state = self.operator.snapshot().unwrap_or_else(|e| panic!("snapshot: {e}"));
        if let Some(state) = state {
            // Every lasting part stored apart, as large state's are.
            let (bytes, lasting) = state.encode(0).unwrap_or_else(|e| panic!("serializing the snapshot: {e}"));
            let lasting = lasting.into_iter().map(|part| (part.id, part.batch)).collect();
            let state = OperatorState::decode(&bytes, &lasting).unwrap_or_else(|e| panic!("reading the snapshot back: {e}"));
            fresh.restore(state).unwrap_or_else(|e| panic!("restore: {e}"));
        }
        self.operator = fresh;
        self
    }

    /// Bytes of state the operator holds now ([`Operator::state_bytes`]).
    pub fn state_bytes(&self) -> usize {
        self.operator.state_bytes()
    }

    /// Keys the operator holds state for now ([`Operator::state_keys`]).
    pub fn state_keys(&self) -> usize {
        self.operator.state_keys()
    }

    /// What the operator emitted since the last call, one line per row or signal.
    pub fn take(&mut self) -> String {
        std::mem::take(&mut self.output).join("\n")
    }

    /// Asserts that the operator emitted `expected` since the last call (compared
    /// after [`normalize`], so columns may be aligned), and forgets it.
    #[track_caller]
    pub fn expect(&mut self, expected: &str) -> &mut Self {
        let got = self.take();
        assert_eq!(normalize(&got), normalize(expected), "\n--- the operator emitted:\n{got}\n--- expected:\n{}\n", normalize(expected));
        self
    }

    fn step(&mut self, result: crate::error::Result<()>, out: Emitter, what: &str) -> &mut Self {
        if let Err(e) = result {
            panic!("{} failed on {what}: {e}", self.operator.name());
        }
        self.record(out);
        self
    }

    fn record(&mut self, out: Emitter) {
        for message in &out.messages {
            self.output.extend(message_text(message));
        }
        for (side, batch) in &out.side {
            let label = match side {
                SideOutput::Late => "late",
                SideOutput::Malformed => "malformed",
            };
            self.output.extend(changes_text(&ChangeBatch::inserts(batch.clone())).into_iter().map(|l| format!("{label}: {l}")));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{AsArray, Int64Array};
    use datafusion::arrow::datatypes::Int64Type;

    #[test]
    fn a_table_becomes_one_change_batch_with_a_kind_per_row() {
        let changes = changes_from_text(
            "   i   I  TS   T
             +I 1  10  1000 a
             +I 2   .  2000 b
             -U 1  10  1000 a
             +U 1  30  3000 .",
            None,
        );
        let kinds: Vec<RowKind> = (0..changes.num_rows()).map(|i| changes.kind(i)).collect();
        assert_eq!(kinds, vec![RowKind::Insert, RowKind::Insert, RowKind::UpdateBefore, RowKind::UpdateAfter]);
        let rows = changes.rows();
        assert_eq!(rows.schema().field(0).data_type(), &DataType::Int32);
        assert_eq!(rows.schema().field(2).data_type(), &DataType::Timestamp(TimeUnit::Millisecond, None));
        assert_eq!(rows.column(1).as_primitive::<Int64Type>(), &Int64Array::from(vec![Some(10), None, Some(10), Some(30)]));
        assert_eq!(changes_text(&changes), vec!["+I 1 10 1000 a", "+I 2 . 2000 b", "-U 1 10 1000 a", "+U 1 30 3000 ."]);
    }

    #[test]
    fn names_come_from_the_header_or_the_schema() {
        let changes = changes_from_text("k:I v:F\n+I 1 2.5", None);
        assert_eq!(changes.schema().field(0).name(), "k");
        assert_eq!(changes_text(&changes), vec!["+I 1 2.5"]);
        let schema = Arc::new(Schema::new(vec![Field::new("auction", DataType::Int64, false)]));
        assert_eq!(changes_from_text("I\n-D 7", Some(&schema)).schema(), schema);
    }

    #[test]
    #[should_panic(expected = "column 0 (`auction`) is Int64 in the operator's input")]
    fn a_header_that_disagrees_with_the_operator_is_refused() {
        let schema = Arc::new(Schema::new(vec![Field::new("auction", DataType::Int64, false)]));
        changes_from_text("i\n+I 7", Some(&schema));
    }

    #[test]
    #[should_panic(expected = "row `+I 1` has 1 values for 2 columns")]
    fn a_short_row_is_refused() {
        changes_from_text("I I\n+I 1", None);
    }

    #[test]
    #[should_panic(expected = "column 0 (`c0`, Int64)")]
    fn a_value_of_the_wrong_type_is_refused() {
        changes_from_text("I\n+I x", None);
    }

    #[test]
    fn expected_output_may_be_aligned() {
        assert_eq!(normalize("  +I 1   10\n\n  watermark  5 \n"), "+I 1 10\nwatermark 5");
    }
}
