//! psql-compatible rendering of query results for the `eddy sql` client.
//!
//! People who use `eddy sql` mostly know `psql`, and scripts that drive it
//! often parse its output, so results are laid out byte for byte the way
//! psql 16 lays them out with its default settings (`\pset border 1`,
//! `\pset linestyle ascii`, `\pset null ''`, `\pset xheader_width full`):
//!
//! - aligned (`\pset format aligned`): centered headers, a `-+-` rule,
//!   numbers right-aligned, everything else left-aligned, then `(N rows)`
//!   and a blank line;
//! - expanded (`\x`): a `-[ RECORD n ]` line per row, then one
//!   `name | value` line per column;
//! - csv (`\pset format csv`): RFC 4180 quoting, `\n` line endings, no footer;
//!   with `\x`, one `name,value` line per cell.
//!
//! Known differences from psql, kept on purpose for simplicity:
//!
//! - in the aligned formats a newline inside a value (or a header) is shown as
//!   the two characters `\n` on the same line, where psql would continue the
//!   value on the next line with a `+` marker. Carriage returns become `\r`,
//!   tabs are expanded to the next multiple of 8 and other control characters
//!   become `\xNN` / `\uNNNN`, as psql does. CSV output keeps values untouched;
//! - widths are counted in chars, not terminal cells, so East Asian wide
//!   characters misalign where psql would not;
//! - values are Arrow's text, not PostgreSQL's: booleans print as
//!   `true`/`false`, timestamps as `2024-01-01 00:00:10` with as many fraction
//!   digits as Arrow shows (`.500` rather than psql's `.5`), and timestamps with
//!   a time zone end in `+00:00` rather than psql's `+00`.

use std::borrow::Cow;
use std::fmt::Write as _;

use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};

/// Timestamps without a zone, like PostgreSQL's `timestamp` (space, not Arrow's `T`).
const TIMESTAMP_FORMAT: &str = "%Y-%m-%d %H:%M:%S%.f";
/// Timestamps with a zone, like PostgreSQL's `timestamptz` but with a full `+HH:MM` offset.
const TIMESTAMP_TZ_FORMAT: &str = "%Y-%m-%d %H:%M:%S%.f%:z";

/// How results are printed: psql's `\pset format` plus `\x`.
///
/// Only the two formats the client offers exist; `expanded` in
/// [`PrintOptions`] plays the part of `\x`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// psql's default human-readable table (`\pset format aligned`).
    Aligned,
    /// Comma-separated values for other programs (`\pset format csv`).
    Csv,
}

/// Everything [`render`] needs to know about how to print, so the client can
/// keep the user's `\pset`/`\x` choices in one value and pass it along.
#[derive(Debug, Clone, Copy)]
pub struct PrintOptions {
    /// Table layout (`\pset format`).
    pub format: OutputFormat,
    /// One `name | value` block per row instead of a table (`\x`).
    pub expanded: bool,
    /// Print the `(N rows)` footer (`\pset footer`); only the aligned
    /// formats have one (expanded output shows it only for an empty result).
    pub footer: bool,
}

impl Default for PrintOptions {
    /// psql's defaults: aligned, not expanded, with the row-count footer.
    fn default() -> Self {
        Self { format: OutputFormat::Aligned, expanded: false, footer: true }
    }
}

/// Renders a result set into a String exactly as psql would print it.
///
/// The whole result is rendered at once because psql's aligned formats size
/// every column by its widest value. The output always ends in `\n`; the
/// aligned formats end with a blank line, as psql's do (also with the footer
/// off). Fails if a batch does not match `schema` or a value cannot be
/// formatted.
pub fn render(schema: &Schema, batches: &[RecordBatch], options: &PrintOptions) -> Result<String, ArrowError> {
    let table = Table::collect(schema, batches)?;
    Ok(match (options.format, options.expanded) {
        (OutputFormat::Aligned, false) => aligned(&table, options.footer),
        (OutputFormat::Aligned, true) => aligned_expanded(&table, options.footer),
        (OutputFormat::Csv, false) => csv(&table),
        (OutputFormat::Csv, true) => csv_expanded(&table),
    })
}

/// A result set as text: what psql's `printTableContent` holds.
struct Table {
    headers: Vec<String>,
    /// Per column: numbers are right-aligned in the aligned format.
    right_aligned: Vec<bool>,
    /// One entry per row (even when there are no columns), one string per cell.
    rows: Vec<Vec<String>>,
}

impl Table {
    fn collect(schema: &Schema, batches: &[RecordBatch]) -> Result<Self, ArrowError> {
        let options = FormatOptions::new().with_null("").with_timestamp_format(Some(TIMESTAMP_FORMAT)).with_timestamp_tz_format(Some(TIMESTAMP_TZ_FORMAT));
        let ncols = schema.fields().len();
        let mut rows = Vec::new();
        for batch in batches {
            if batch.num_columns() != ncols {
                return Err(ArrowError::SchemaError(format!("result batch has {} columns but the schema has {ncols}", batch.num_columns())));
            }
            let formatters = batch.columns().iter().map(|c| ArrayFormatter::try_new(c.as_ref(), &options)).collect::<Result<Vec<_>, _>>()?;
            for row in 0..batch.num_rows() {
                rows.push(formatters.iter().map(|f| f.value(row).try_to_string()).collect::<Result<Vec<_>, _>>()?);
            }
        }
        Ok(Self {
            headers: schema.fields().iter().map(|f| f.name().clone()).collect(),
            right_aligned: schema.fields().iter().map(|f| is_numeric(f.data_type())).collect(),
            rows,
        })
    }

    fn ncols(&self) -> usize {
        self.headers.len()
    }
}

/// psql right-aligns the numeric types (int2/4/8, float4/8, numeric, oid, money).
fn is_numeric(data_type: &DataType) -> bool {
    match data_type {
        DataType::Dictionary(_, values) => values.is_numeric(),
        other => other.is_numeric(),
    }
}

/// psql's default footer, `(1 row)` / `(N rows)`.
fn row_count(n: usize) -> String {
    if n == 1 {
        "(1 row)".to_string()
    } else {
        format!("({n} rows)")
    }
}

fn width(s: &str) -> usize {
    s.chars().count()
}

fn push_n(out: &mut String, ch: char, n: usize) {
    out.extend(std::iter::repeat_n(ch, n));
}

/// The text psql's `pg_wcsformat` would lay out for `s` on one line: tabs
/// expanded to 8-column stops, control characters escaped; a newline (where
/// psql would start a continuation line) becomes a literal `\n`.
fn display_text(s: &str) -> Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    let mut col = 0usize;
    for ch in s.chars() {
        let before = out.len();
        match ch {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => {
                push_n(&mut out, ' ', 8 - col % 8);
            }
            c if c.is_ascii_control() => {
                let _ = write!(out, "\\x{:02X}", c as u32);
            }
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
        // Everything pushed above except `c` itself is ASCII.
        col += if ch.is_control() { out.len() - before } else { 1 };
    }
    Cow::Owned(out)
}

/// psql's `print_aligned_text` with border 1.
fn aligned(table: &Table, footer: bool) -> String {
    let ncols = table.ncols();
    let headers: Vec<Cow<'_, str>> = table.headers.iter().map(|h| display_text(h)).collect();
    let rows: Vec<Vec<Cow<'_, str>>> = table.rows.iter().map(|r| r.iter().map(|c| display_text(c)).collect()).collect();
    let widths: Vec<usize> = (0..ncols).map(|c| rows.iter().map(|r| width(&r[c])).fold(width(&headers[c]), usize::max)).collect();

    let mut out = String::new();
    // Header: every column, the last one included, is padded and followed by
    // a space; psql prints no header line at all for zero columns.
    if ncols > 0 {
        for (c, header) in headers.iter().enumerate() {
            let pad = widths[c] - width(header);
            out.push(' ');
            push_n(&mut out, ' ', pad / 2);
            out.push_str(header);
            push_n(&mut out, ' ', pad.div_ceil(2));
            out.push(' ');
            if c + 1 < ncols {
                out.push('|');
            }
        }
        out.push('\n');
    }

    // Rule: `-` for the border spaces, `-+-` between columns.
    out.push('-');
    for (c, w) in widths.iter().enumerate() {
        push_n(&mut out, '-', *w);
        if c + 1 < ncols {
            out.push_str("-+-");
        }
    }
    out.push_str("-\n");

    // Rows: the last column gets no trailing padding unless right-aligned
    // padding comes first; with zero columns psql has no cells to print.
    if ncols > 0 {
        for row in &rows {
            for (c, cell) in row.iter().enumerate() {
                let last = c + 1 == ncols;
                let pad = widths[c] - width(cell);
                out.push(' ');
                if table.right_aligned[c] {
                    push_n(&mut out, ' ', pad);
                    out.push_str(cell);
                } else {
                    out.push_str(cell);
                    if !last {
                        push_n(&mut out, ' ', pad);
                    }
                }
                if !last {
                    out.push_str(" |");
                }
            }
            out.push('\n');
        }
    }

    if footer {
        out.push_str(&row_count(table.rows.len()));
        out.push('\n');
    }
    out.push('\n');
    out
}

/// psql's `print_aligned_vertical` with border 1 (no wrapping).
fn aligned_expanded(table: &Table, footer: bool) -> String {
    let mut out = String::new();
    // psql's "kluge for totally empty table": the only case with a footer.
    if table.ncols() == 0 || table.rows.is_empty() {
        if footer {
            out.push_str(&row_count(table.rows.len()));
            out.push('\n');
        }
        out.push('\n');
        return out;
    }

    let headers: Vec<Cow<'_, str>> = table.headers.iter().map(|h| display_text(h)).collect();
    let rows: Vec<Vec<Cow<'_, str>>> = table.rows.iter().map(|r| r.iter().map(|c| display_text(c)).collect()).collect();
    let hwidth = headers.iter().map(|h| width(h)).max().unwrap_or(0);
    let dwidth = rows.iter().flatten().map(|c| width(c)).max().unwrap_or(0);

    for (i, row) in rows.iter().enumerate() {
        record_line(&mut out, i + 1, hwidth, dwidth);
        for (header, cell) in headers.iter().zip(row) {
            out.push_str(header);
            push_n(&mut out, ' ', hwidth - width(header));
            out.push_str(" | ");
            out.push_str(cell);
            out.push('\n');
        }
    }
    out.push('\n');
    out
}

/// psql's `print_aligned_vertical_line` for border 1: `-[ RECORD n ]`, then
/// dashes to the end of the names, `-+-` if the label has not already run
/// past that boundary, then dashes to the end of the widest value.
fn record_line(out: &mut String, record: usize, hwidth: usize, dwidth: usize) {
    let label = format!("-[ RECORD {record} ]");
    // psql's `reclen`: the label plus the leading rule character.
    let mut reclen = width(&label) as i64;
    out.push_str(&label);
    for _ in reclen..hwidth as i64 {
        out.push('-');
    }
    reclen -= hwidth as i64;
    for ch in ['-', '+', '-'] {
        if reclen <= 0 {
            out.push(ch);
        }
        reclen -= 1;
    }
    for _ in reclen.max(0)..dwidth as i64 {
        out.push('-');
    }
    out.push('\n');
}

/// psql's `csv_print_field` with `,` as separator: quote a field containing
/// the separator, a quote, CR or LF, or that is exactly `\.` (COPY's
/// end-of-data marker); quotes inside are doubled.
fn push_csv_field(out: &mut String, field: &str) {
    if field.contains([',', '"', '\r', '\n']) || field == "\\." {
        out.push('"');
        for ch in field.chars() {
            if ch == '"' {
                out.push('"');
            }
            out.push(ch);
        }
        out.push('"');
    } else {
        out.push_str(field);
    }
}

/// psql's `print_csv_text`: a header line, then one line per row.
fn csv(table: &Table) -> String {
    let mut out = String::new();
    for (c, header) in table.headers.iter().enumerate() {
        if c > 0 {
            out.push(',');
        }
        push_csv_field(&mut out, header);
    }
    out.push('\n');
    if table.ncols() > 0 {
        for row in &table.rows {
            for (c, cell) in row.iter().enumerate() {
                if c > 0 {
                    out.push(',');
                }
                push_csv_field(&mut out, cell);
            }
            out.push('\n');
        }
    }
    out
}

/// psql's `print_csv_vertical`: one `name,value` line per cell, no header.
fn csv_expanded(table: &Table) -> String {
    let mut out = String::new();
    for row in &table.rows {
        for (header, cell) in table.headers.iter().zip(row) {
            push_csv_field(&mut out, header);
            out.push(',');
            push_csv_field(&mut out, cell);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{ArrayRef, Float64Array, Int32Array, Int64Array, StringArray, TimestampMillisecondArray, TimestampSecondArray};
    use datafusion::arrow::datatypes::{Field, SchemaRef, TimeUnit};

    use super::*;

    const ALIGNED: PrintOptions = PrintOptions { format: OutputFormat::Aligned, expanded: false, footer: true };
    const EXPANDED: PrintOptions = PrintOptions { format: OutputFormat::Aligned, expanded: true, footer: true };
    const CSV: PrintOptions = PrintOptions { format: OutputFormat::Csv, expanded: false, footer: true };
    const CSV_EXPANDED: PrintOptions = PrintOptions { format: OutputFormat::Csv, expanded: true, footer: true };

    /// `id bigint, name text`.
    fn id_name_schema() -> SchemaRef {
        Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true), Field::new("name", DataType::Utf8, true)]))
    }

    fn batch(schema: &SchemaRef, columns: Vec<ArrayRef>) -> RecordBatch {
        RecordBatch::try_new(Arc::clone(schema), columns).unwrap()
    }

    /// Rows (1, 'alice') and (20, NULL), split over two batches.
    fn id_name_batches(schema: &SchemaRef) -> Vec<RecordBatch> {
        vec![
            batch(schema, vec![Arc::new(Int64Array::from(vec![1])), Arc::new(StringArray::from(vec![Some("alice")]))]),
            batch(schema, vec![Arc::new(Int64Array::from(vec![20])), Arc::new(StringArray::from(vec![None::<&str>]))]),
        ]
    }

    #[test]
    fn aligned_numbers_right_strings_left_null_empty() {
        let schema = id_name_schema();
        let out = render(&schema, &id_name_batches(&schema), &ALIGNED).unwrap();
        assert_eq!(
            out,
            concat!(
                " id | name  \n", //
                "----+-------\n",
                "  1 | alice\n",
                " 20 | \n",
                "(2 rows)\n",
                "\n",
            )
        );
    }

    #[test]
    fn aligned_one_row_centers_headers() {
        // psql: SELECT 1 AS a, 'foo' AS b;
        let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Int32, false), Field::new("b", DataType::Utf8, false)]));
        let batches = [batch(&schema, vec![Arc::new(Int32Array::from(vec![1])), Arc::new(StringArray::from(vec!["foo"]))])];
        let out = render(&schema, &batches, &ALIGNED).unwrap();
        assert_eq!(out, " a |  b  \n---+-----\n 1 | foo\n(1 row)\n\n");
    }

    #[test]
    fn aligned_wide_header_over_narrow_numbers() {
        // A header wider than its numbers; a null number is blank.
        let schema = Arc::new(Schema::new(vec![Field::new("total", DataType::Float64, true), Field::new("ab", DataType::Utf8, true)]));
        let batches = [batch(&schema, vec![Arc::new(Float64Array::from(vec![Some(1.5), None])), Arc::new(StringArray::from(vec!["x", "y"]))])];
        let out = render(&schema, &batches, &ALIGNED).unwrap();
        assert_eq!(out, " total | ab \n-------+----\n   1.5 | x\n       | y\n(2 rows)\n\n");
    }

    #[test]
    fn aligned_zero_rows() {
        let schema = id_name_schema();
        let empty = RecordBatch::new_empty(Arc::clone(&schema));
        let expected = " id | name \n----+------\n(0 rows)\n\n";
        assert_eq!(render(&schema, &[empty], &ALIGNED).unwrap(), expected);
        assert_eq!(render(&schema, &[], &ALIGNED).unwrap(), expected);
    }

    #[test]
    fn aligned_footer_off_keeps_blank_line() {
        let schema = id_name_schema();
        let options = PrintOptions { footer: false, ..ALIGNED };
        let out = render(&schema, &id_name_batches(&schema), &options).unwrap();
        assert_eq!(out, " id | name  \n----+-------\n  1 | alice\n 20 | \n\n");
    }

    #[test]
    fn aligned_escapes_control_characters() {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Utf8, false)]));
        let batches = [batch(&schema, vec![Arc::new(StringArray::from(vec!["a\tb\nc", "x"]))])];
        let out = render(&schema, &batches, &ALIGNED).unwrap();
        // "a" + tab to column 8 + "b" + `\n` + "c" = 12 chars wide.
        assert_eq!(out, "      v       \n--------------\n a       b\\nc\n x\n(2 rows)\n\n");
    }

    #[test]
    fn timestamps_use_a_space_and_arrow_fractions() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("ts", DataType::Timestamp(TimeUnit::Second, None), false),
            Field::new("ms", DataType::Timestamp(TimeUnit::Millisecond, None), false),
        ]));
        let batches = [batch(
            &schema,
            vec![Arc::new(TimestampSecondArray::from(vec![1_704_067_210])), Arc::new(TimestampMillisecondArray::from(vec![1_704_067_210_500]))],
        )];
        let out = render(&schema, &batches, &CSV).unwrap();
        assert_eq!(out, "ts,ms\n2024-01-01 00:00:10,2024-01-01 00:00:10.500\n");
    }

    #[test]
    fn expanded_records() {
        let schema = id_name_schema();
        let out = render(&schema, &id_name_batches(&schema), &EXPANDED).unwrap();
        assert_eq!(
            out,
            concat!(
                "-[ RECORD 1 ]\n", //
                "id   | 1\n",
                "name | alice\n",
                "-[ RECORD 2 ]\n",
                "id   | 20\n",
                "name | \n",
                "\n",
            )
        );
    }

    #[test]
    fn expanded_record_line_marks_the_column_boundary() {
        let schema = Arc::new(Schema::new(vec![Field::new("a_long_column_name", DataType::Utf8, false), Field::new("n", DataType::Int32, false)]));
        let batches = [batch(&schema, vec![Arc::new(StringArray::from(vec!["xyz"])), Arc::new(Int32Array::from(vec![7]))])];
        let out = render(&schema, &batches, &EXPANDED).unwrap();
        assert_eq!(
            out,
            concat!(
                "-[ RECORD 1 ]------+----\n", //
                "a_long_column_name | xyz\n",
                "n                  | 7\n",
                "\n",
            )
        );
    }

    #[test]
    fn expanded_label_just_past_the_names() {
        // Names 11 wide: the label covers the names and the first rule
        // character, so psql prints only the last `-` of `-+-`.
        let schema = Arc::new(Schema::new(vec![Field::new("eleven_char", DataType::Utf8, false)]));
        let batches = [batch(&schema, vec![Arc::new(StringArray::from(vec!["abcd"]))])];
        let out = render(&schema, &batches, &EXPANDED).unwrap();
        assert_eq!(out, "-[ RECORD 1 ]-----\neleven_char | abcd\n\n");
    }

    #[test]
    fn expanded_zero_rows() {
        let schema = id_name_schema();
        assert_eq!(render(&schema, &[], &EXPANDED).unwrap(), "(0 rows)\n\n");
        let no_footer = PrintOptions { footer: false, ..EXPANDED };
        assert_eq!(render(&schema, &[], &no_footer).unwrap(), "\n");
    }

    #[test]
    fn csv_quotes_like_rfc4180() {
        let schema = id_name_schema();
        let batches = [batch(
            &schema,
            vec![
                Arc::new(Int64Array::from(vec![1, 2, 3, 4, 5, 6])),
                Arc::new(StringArray::from(vec![Some("plain"), Some("a,b"), Some("say \"hi\""), Some("two\nlines"), None, Some("\\.")])),
            ],
        )];
        let out = render(&schema, &batches, &CSV).unwrap();
        assert_eq!(out, concat!("id,name\n", "1,plain\n", "2,\"a,b\"\n", "3,\"say \"\"hi\"\"\"\n", "4,\"two\nlines\"\n", "5,\n", "6,\"\\.\"\n",));
    }

    #[test]
    fn csv_zero_rows_is_just_the_header() {
        let schema = id_name_schema();
        assert_eq!(render(&schema, &[], &CSV).unwrap(), "id,name\n");
    }

    #[test]
    fn csv_expanded_name_value_pairs() {
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true), Field::new("a,b", DataType::Utf8, true)]));
        let batches = [batch(&schema, vec![Arc::new(Int64Array::from(vec![1, 2])), Arc::new(StringArray::from(vec![Some("x,y"), None]))])];
        let out = render(&schema, &batches, &CSV_EXPANDED).unwrap();
        assert_eq!(out, "id,1\n\"a,b\",\"x,y\"\nid,2\n\"a,b\",\n");
    }

    #[test]
    fn mismatched_batch_is_an_error() {
        let schema = id_name_schema();
        let other = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true)]));
        let batches = [batch(&other, vec![Arc::new(Int64Array::from(vec![1]))])];
        assert!(render(&schema, &batches, &ALIGNED).is_err());
    }
}
