//! Splits a text file, or a byte range of one, into records (JSON lines or CSV
//! rows) in chunks, keeping each record's line number so that a record that fails
//! to decode can be reported as `file:LINE` and the rest of its chunk kept.

use std::fs::File;
use std::io::Read;
use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::error::ConnectorError;

/// Bytes read from the file at a time.
const READ_BLOCK: usize = 1 << 20;

/// The most bytes a CSV record may span while inside a quoted field. A quote that
/// is still open this far on is taken to be a stray one (an unbalanced quote), as
/// at the end of the file: the record is its first line, and reading goes on with
/// the next line, so one bad quote does not swallow the rest of a large file.
/// 16 MiB is far above any real field, as DuckDB's `max_line_size` (2 MB) is.
const QUOTED_RECORD_BYTES_MAX: usize = 16 << 20;

/// How records are delimited.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Framing {
    /// One record per line (JSON lines).
    Lines,
    /// CSV: a record ends at a newline outside a quoted field.
    Csv {
        /// The field delimiter.
        delimiter: u8,
        /// The quote character.
        quote: u8,
    },
}

/// Where one record sits in a [`Chunk`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Record {
    /// Byte range in [`Chunk::data`], without the line terminator.
    pub start: usize,
    pub end: usize,
    /// 1-based line number of the record's first line, counted from the start
    /// of the chunker's range (the file's line number when it starts at 0).
    pub line: u64,
}

/// Up to N non-blank records, copied back to back, each followed by `\n`.
#[derive(Debug, Default)]
pub(crate) struct Chunk {
    pub data: Vec<u8>,
    pub records: Vec<Record>,
    /// Indices (into `records`) of CSV records whose quoted field never closed:
    /// each was cut at the end of its first line and is malformed as it stands.
    pub unterminated: Vec<usize>,
}

impl Chunk {
    /// The bytes of one record (without terminator).
    pub fn bytes(&self, r: &Record) -> &[u8] {
        &self.data[r.start..r.end]
    }
}

/// How a record's end was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cut {
    /// At its terminator (or the end of the file).
    Whole,
    /// At the end of its first line, because a quote it opens never closes.
    UnterminatedQuote,
}

/// CSV scanner state, kept across reads so a partial record is not rescanned.
#[derive(Debug, Clone, Copy, PartialEq)]
enum CsvState {
    FieldStart,
    Unquoted,
    Quoted,
    QuoteInQuoted,
    /// The quote that opened the current field was a stray one (see [`RecordChunker::quote_unterminated`]).
    StrayQuote,
}

/// Reads a file block by block and cuts it into [`Chunk`]s of whole records.
pub(crate) struct RecordChunker {
    path: PathBuf,
    file: File,
    framing: Framing,
    buf: Vec<u8>,
    /// Start of the next record in `buf`.
    pos: usize,
    /// Where scanning for the end of the current record resumes.
    scan: usize,
    csv_state: CsvState,
    /// Newlines inside the current (quoted) record so far.
    inner_newlines: u64,
    eof: bool,
    /// Line number of the record starting at `pos`.
    line: u64,
    skip_first: bool,
    /// How far a record may run inside a quoted field (see [`QUOTED_RECORD_BYTES_MAX`]).
    quoted_bytes_max: usize,
    /// The file offset of `buf[0]`.
    buf_offset: u64,
    /// Records starting at or after this file offset belong to the next range.
    end: u64,
    /// The range starts after byte 0: bytes up to the first line break are the
    /// end of a record the previous range reads, and are skipped.
    align: bool,
}

impl RecordChunker {
    /// Opens `path`; with `skip_first` the first record (a CSV header) is dropped.
    #[cfg(test)]
    pub fn open(path: &Path, framing: Framing, skip_first: bool) -> Result<Self, ConnectorError> {
        Self::open_range(path, framing, skip_first, 0..u64::MAX)
    }

    /// Opens `path` to read the records that start in `range` (see [`super::split`]):
    /// from the first line start at or after `range.start`, up to the last record
    /// starting before `range.end`, read to its end. With `skip_first` the first
    /// record (a CSV header) is dropped.
    pub fn open_range(path: &Path, framing: Framing, skip_first: bool, range: Range<u64>) -> Result<Self, ConnectorError> {
        let file = super::split::open_at(path, range.start)?;
        Ok(RecordChunker {
            path: path.to_path_buf(),
            file,
            framing,
            buf: Vec::new(),
            pos: 0,
            scan: 0,
            csv_state: CsvState::FieldStart,
            inner_newlines: 0,
            eof: false,
            line: 1,
            skip_first,
            quoted_bytes_max: QUOTED_RECORD_BYTES_MAX,
            buf_offset: range.start.saturating_sub(1),
            end: range.end,
            align: range.start > 0,
        })
    }

    /// The file offset of the next record (once a chunk was read): where a reader
    /// resumes after the records returned so far.
    pub fn next_record_offset(&self) -> u64 {
        self.buf_offset + self.pos as u64
    }

    /// The next chunk of at most `max_records` non-blank records, or `None` at the end of the file.
    pub fn next_chunk(&mut self, max_records: usize) -> Result<Option<Chunk>, ConnectorError> {
        let mut chunk = Chunk::default();
        while chunk.records.len() < max_records {
            if self.align {
                let found = memchr::memchr(b'\n', &self.buf[self.pos..]);
                self.pos = found.map_or(self.buf.len(), |i| self.pos + i + 1);
                self.scan = self.pos;
                if found.is_none() && !self.eof {
                    self.fill()?;
                    continue;
                }
                self.align = false;
            }
            if self.buf_offset + self.pos as u64 >= self.end {
                break;
            }
            let mut cut = Cut::Whole;
            let end = match self.find_end() {
                Some(end) => end,
                None if self.quote_unterminated() => {
                    cut = Cut::UnterminatedQuote;
                    self.inner_newlines = 0;
                    match self.buf[self.pos..].iter().position(|&b| b == b'\n') {
                        Some(i) => self.pos + i,
                        None => self.buf.len(),
                    }
                }
                None if !self.eof => {
                    self.fill()?;
                    continue;
                }
                None if self.pos < self.buf.len() => self.buf.len(),
                None => break,
            };
            let mut rec_end = end;
            if rec_end > self.pos && self.buf[rec_end - 1] == b'\r' {
                rec_end -= 1;
            }
            let line = self.line;
            self.line += 1 + self.inner_newlines;
            let (start, stop) = (self.pos, rec_end);
            self.pos = (end + 1).min(self.buf.len());
            self.scan = self.pos;
            self.inner_newlines = 0;
            self.csv_state = CsvState::FieldStart;
            let bytes = &self.buf[start..stop];
            if self.skip_first {
                self.skip_first = false;
                continue;
            }
            if bytes.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            if cut == Cut::UnterminatedQuote {
                chunk.unterminated.push(chunk.records.len());
            }
            let s = chunk.data.len();
            chunk.data.extend_from_slice(bytes);
            chunk.records.push(Record { start: s, end: chunk.data.len(), line });
            chunk.data.push(b'\n');
        }
        Ok((!chunk.records.is_empty()).then_some(chunk))
    }

    /// True when a quote the record at `pos` opens does not close as CSV allows:
    /// never (the file ends inside it), not before a newline past `quoted_bytes_max`,
    /// or, after a newline, in the middle of a field (`"a<newline>...5,"e`). Such a quote is
    /// a stray one, and the record is cut at the end of its first line.
    fn quote_unterminated(&self) -> bool {
        match self.csv_state {
            CsvState::StrayQuote => true,
            CsvState::Quoted => self.eof,
            _ => false,
        }
    }

    /// Index of the `\n` ending the record at `pos`, scanning from `scan`.
    fn find_end(&mut self) -> Option<usize> {
        match self.framing {
            Framing::Lines => {
                let found = memchr::memchr(b'\n', &self.buf[self.scan..]);
                match found {
                    Some(i) => Some(self.scan + i),
                    None => {
                        self.scan = self.buf.len();
                        None
                    }
                }
            }
            Framing::Csv { delimiter, quote } => {
                let mut state = self.csv_state;
                let mut i = self.scan;
                while i < self.buf.len() {
                    let b = self.buf[i];
                    state = match state {
                        CsvState::FieldStart | CsvState::Unquoted | CsvState::QuoteInQuoted if b == b'\n' => {
                            self.csv_state = state;
                            return Some(i);
                        }
                        CsvState::FieldStart if b == quote => CsvState::Quoted,
                        CsvState::FieldStart | CsvState::Unquoted | CsvState::QuoteInQuoted if b == delimiter => CsvState::FieldStart,
                        CsvState::FieldStart | CsvState::Unquoted => CsvState::Unquoted,
                        CsvState::Quoted if b == quote => CsvState::QuoteInQuoted,
                        CsvState::Quoted => {
                            if b == b'\n' {
                                self.inner_newlines += 1;
                                if i - self.pos > self.quoted_bytes_max {
                                    self.csv_state = CsvState::StrayQuote;
                                    return None;
                                }
                            }
                            CsvState::Quoted
                        }
                        CsvState::QuoteInQuoted if b == quote => CsvState::Quoted,
                        // A quoted field that ran over lines and then closes in the
                        // middle of a field was opened by a stray quote.
                        CsvState::QuoteInQuoted if self.inner_newlines > 0 && b != b'\r' => {
                            self.csv_state = CsvState::StrayQuote;
                            return None;
                        }
                        CsvState::QuoteInQuoted => CsvState::Unquoted,
                        CsvState::StrayQuote => return None,
                    };
                    i += 1;
                }
                self.csv_state = state;
                self.scan = self.buf.len();
                None
            }
        }
    }

    /// Drops consumed bytes and reads the next block; sets `eof` at the end.
    fn fill(&mut self) -> Result<(), ConnectorError> {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.scan -= self.pos;
            self.buf_offset += self.pos as u64;
            self.pos = 0;
        }
        let old = self.buf.len();
        self.buf.resize(old + READ_BLOCK, 0);
        let n = loop {
            match self.file.read(&mut self.buf[old..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.buf.truncate(old);
                    return Err(ConnectorError::io("read", &self.path, e));
                }
            }
        };
        self.buf.truncate(old + n);
        if n == 0 {
            self.eof = true;
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::single_range_in_vec_init)] // one range: the whole file
mod tests {
    use super::*;
    use std::io::Write;

    fn chunks(text: &str, framing: Framing, skip: bool, max: usize) -> Vec<Vec<(String, u64)>> {
        chunks_marked(text, framing, skip, max, QUOTED_RECORD_BYTES_MAX).into_iter().map(|c| c.into_iter().map(|(r, l, _)| (r, l)).collect()).collect()
    }

    /// Records as (text, line, cut at an unterminated quote), chunk by chunk.
    fn chunks_marked(text: &str, framing: Framing, skip: bool, max: usize, quoted_bytes_max: usize) -> Vec<Vec<(String, u64, bool)>> {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        let mut c = RecordChunker::open(f.path(), framing, skip).unwrap();
        c.quoted_bytes_max = quoted_bytes_max;
        let mut out = vec![];
        while let Some(ch) = c.next_chunk(max).unwrap() {
            out.push(
                ch.records.iter().enumerate().map(|(i, r)| (String::from_utf8_lossy(ch.bytes(r)).into_owned(), r.line, ch.unterminated.contains(&i))).collect(),
            );
        }
        out
    }

    const CSV: Framing = Framing::Csv { delimiter: b',', quote: b'"' };

    /// Records (text, file line) of the byte ranges `ranges` of `text`, read one range after another.
    fn read_ranges(text: &str, framing: Framing, header: bool, ranges: &[Range<u64>]) -> Vec<(String, u64)> {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        let mut out = vec![];
        for r in ranges {
            // Only the range at the start of the file holds the header.
            let mut c = RecordChunker::open_range(f.path(), framing, header && r.start == 0, r.clone()).unwrap();
            let base = super::super::split::lines_before_range(f.path(), r.start).unwrap();
            while let Some(ch) = c.next_chunk(2).unwrap() {
                out.extend(ch.records.iter().map(|rec| (String::from_utf8_lossy(ch.bytes(rec)).into_owned(), base + rec.line)));
            }
        }
        out
    }

    #[test]
    fn every_split_of_a_file_reads_each_record_once_with_its_line() {
        let texts = [
            "",
            "\n",
            "a",
            "a\n",
            "ab\ncd\nef\n",
            "ab\ncd\nef",
            "a\r\nbb\r\n\r\nccc\r\n",
            "\n\nx\n\ny\n\n",
            "{\"k\": 1}\n{\"k\": 22}\n\n{\"k\": 333}",
            "h1,h2\n1,\"a,b\"\n2,c\r\n3,\"\"\"q\"\"\"\n",
        ];
        for text in texts {
            for (framing, header) in [(Framing::Lines, false), (CSV, false), (CSV, true)] {
                let whole = read_ranges(text, framing, header, &[0..u64::MAX]);
                let len = text.len() as u64;
                // Two ranges, the boundary at every byte: at line starts, mid-line,
                // on a '\r' before its '\n', inside a final line without a newline.
                for b in 0..=len {
                    assert_eq!(read_ranges(text, framing, header, &[0..b, b..len]), whole, "{text:?} split at {b}");
                }
                // Every number of even ranges, up to more ranges than bytes.
                for n in 1..=len + 2 {
                    let ranges = super::super::split::byte_ranges(len, n);
                    assert_eq!(read_ranges(text, framing, header, &ranges), whole, "{text:?} in {n} ranges");
                }
            }
        }
    }

    #[test]
    fn an_unterminated_quote_is_one_line_and_the_lines_after_it_are_read() {
        let got = chunks_marked("1,a\n2,\"b\n3,c\r\n\n4,d\n", CSV, false, 10, QUOTED_RECORD_BYTES_MAX);
        assert_eq!(got, vec![vec![("1,a".into(), 1, false), ("2,\"b".into(), 2, true), ("3,c".into(), 3, false), ("4,d".into(), 5, false)]]);
        // Two stray quotes: the second closes the first in the middle of a field, so both are stray.
        let got = chunks_marked("1,\"a\n2,b\n3,\"c\"d\n4,e", CSV, false, 10, QUOTED_RECORD_BYTES_MAX);
        assert_eq!(got, vec![vec![("1,\"a".into(), 1, true), ("2,b".into(), 2, false), ("3,\"c\"d".into(), 3, false), ("4,e".into(), 4, false)]]);
        // A quoted field over two lines that closes properly (CRLF after it) is one record.
        let got = chunks_marked("1,\"a\r\nb\"\r\n2,c\r\n", CSV, false, 10, QUOTED_RECORD_BYTES_MAX);
        assert_eq!(got, vec![vec![("1,\"a\r\nb\"".into(), 1, false), ("2,c".into(), 3, false)]]);
    }

    #[test]
    fn a_quote_open_past_the_limit_is_cut_before_the_end_of_the_file() {
        // Without the limit the quote of line 1 pairs with the one ending line 3
        // and the three lines are one record.
        let text = "1,\"x\n2,y\n3,\"\n";
        assert_eq!(chunks_marked(text, CSV, false, 10, QUOTED_RECORD_BYTES_MAX), vec![vec![("1,\"x\n2,y\n3,\"".into(), 1, false)]]);
        assert_eq!(chunks_marked(text, CSV, false, 10, 4), vec![vec![("1,\"x".into(), 1, true), ("2,y".into(), 2, false), ("3,\"".into(), 3, true)]]);
    }

    #[test]
    fn lines_skip_blank_and_track_numbers() {
        let got = chunks("a\n\n  \nb\r\nc", Framing::Lines, false, 2);
        assert_eq!(got, vec![vec![("a".into(), 1), ("b".into(), 4)], vec![("c".into(), 5)]]);
    }

    #[test]
    fn csv_quoted_newlines_and_header() {
        let framing = Framing::Csv { delimiter: b',', quote: b'"' };
        let got = chunks("h1,h2\n1,\"x\ny\"\n2,a\"b\n3,\"q\"\"\"\n", framing, true, 10);
        assert_eq!(got, vec![vec![("1,\"x\ny\"".into(), 2), ("2,a\"b".into(), 4), ("3,\"q\"\"\"".into(), 5)]]);
    }
}
