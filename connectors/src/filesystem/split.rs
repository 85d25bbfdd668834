//! Splitting the files of a filesystem source into partitions, so that one large
//! file is read by as many tasks as the pipeline runs rather than by one.
//!
//! Text files (JSON lines, CSV) are cut into blocks of byte ranges. A range owns
//! every record that *starts* inside it: a range that starts mid-line skips to the
//! next line start, and a range reads past its end to finish its last record, so
//! each record is read by exactly one split whatever the boundaries. Parquet files
//! are cut into their row groups. Every split is its own partition, with its own
//! watermark, combined by the engine as any partitions' are.
//!
//! The blocks are dealt out round-robin (split 0 reads blocks 0, n, 2n...), not as
//! one long run each: files are mostly written in event-time order, and with one
//! run per split the last split would read the end of the file's time while the
//! first reads its start. The watermark, the lowest over splits, would then hold
//! back every window the later splits fill until the first split finished, keeping
//! them all in memory. Dealt out, the splits move through event time together, a
//! block apart.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::error::ConnectorError;

/// Default for `'scan.split.block-size'`: files up to this size are read by one task,
/// where a second task would cost more to start than it saves, and larger ones are
/// dealt out in blocks of about this size (a few seconds of events each, typically).
pub const DEFAULT_BLOCK_SIZE: u64 = 4 << 20;

/// Bytes read at a time when scanning a file without decoding it.
const SCAN_BLOCK: usize = 1 << 20;

/// What part of a file one partition reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Extent {
    /// The whole file, as one partition.
    Whole,
    /// The records starting in these byte ranges of a text file, read in this order.
    Bytes(Vec<Range<u64>>),
    /// These row groups of a Parquet file, read in this order.
    RowGroups(Vec<usize>),
}

/// At most this many ranges or row groups are listed when a split is described.
const LISTED: usize = 3;

/// One partition of a filesystem source: a file, or a part of one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Split {
    pub path: PathBuf,
    pub extent: Extent,
}

impl Split {
    /// Names the partition in messages and `EXPLAIN`: the path, and the part read when not all of it.
    pub fn describe(&self) -> String {
        let path = self.path.display();
        match &self.extent {
            Extent::Whole => path.to_string(),
            Extent::Bytes(ranges) => format!("{path} [bytes {}]", listed(ranges.iter().map(|r| format!("{}..{}", r.start, r.end)), ranges.len())),
            Extent::RowGroups(groups) => format!("{path} [row groups {}]", listed(groups.iter().map(usize::to_string), groups.len())),
        }
    }

    /// Names the partition in checkpoints: the path and, for a part of a file, a
    /// fingerprint of exactly which part. A saved position is only ever applied to
    /// the same cut of the same file; when the cut changed (another parallelism or
    /// block size, a split file whose size changed) the names differ and the source
    /// says so. A whole file is named by its path alone, and continues where it was.
    pub fn id(&self) -> String {
        let path = self.path.display();
        match &self.extent {
            Extent::Whole => path.to_string(),
            Extent::Bytes(ranges) => format!("{path} [bytes #{:016x}]", fingerprint(ranges.iter().flat_map(|r| [r.start, r.end]))),
            Extent::RowGroups(groups) => format!("{path} [row groups #{:016x}]", fingerprint(groups.iter().map(|&g| g as u64))),
        }
    }
}

/// FNV-1a over the numbers' bytes: stable across builds, unlike std's hasher, so a
/// checkpoint's names still match after an upgrade.
fn fingerprint(numbers: impl Iterator<Item = u64>) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in numbers.flat_map(u64::to_le_bytes) {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// What is left of `ranges` for a reader that resumes at `offset`, the file offset of
/// the next record to read (a record start, as [`super::records::RecordChunker::next_record_offset`]
/// gives): ranges that end at or before it are done, and the one it falls in is
/// read from it on.
pub(crate) fn ranges_from(ranges: &[Range<u64>], offset: u64) -> Vec<Range<u64>> {
    ranges.iter().filter(|r| r.end > offset).map(|r| r.start.max(offset)..r.end).collect()
}

/// The first [`LISTED`] items, and how many there are when not all are listed.
fn listed(items: impl Iterator<Item = String>, len: usize) -> String {
    let shown: Vec<String> = items.take(LISTED).collect();
    match len > LISTED {
        true => format!("{}, ... ({len} in all)", shown.join(", ")),
        false => shown.join(", "),
    }
}

/// Deals `items` out round-robin to `n` splits (at most one per item, at least
/// one): split `j` gets items `j`, `j + n`, `j + 2n`...
pub(crate) fn deal<T>(items: Vec<T>, n: u64) -> Vec<Vec<T>> {
    let n = usize::try_from(n).unwrap_or(usize::MAX).clamp(1, items.len().max(1));
    let mut splits: Vec<Vec<T>> = (0..n).map(|_| Vec::new()).collect();
    for (i, item) in items.into_iter().enumerate() {
        splits[i % n].push(item);
    }
    splits
}

/// The extents of a text file of `size` bytes read by `n` splits: blocks of about
/// `block_size` bytes (at least one per split), dealt out round-robin.
pub(crate) fn text_extents(size: u64, n: u64, block_size: u64) -> Vec<Extent> {
    let blocks = size.div_ceil(block_size.max(1)).max(n);
    deal(byte_ranges(size, blocks), n).into_iter().map(Extent::Bytes).collect()
}

/// The extents of a Parquet file of `groups` row groups read by `n` splits: its row groups dealt out round-robin.
pub(crate) fn row_group_extents(groups: usize, n: u64) -> Vec<Extent> {
    deal((0..groups).collect(), n).into_iter().map(Extent::RowGroups).collect()
}

/// How many splits each file gets: its share of `parallelism` by size, at least one,
/// and no split smaller than `min_size` (so a small file stays whole). Files are
/// never merged: with more files than tasks each file is one partition, as before.
pub(crate) fn split_counts(sizes: &[u64], parallelism: usize, min_size: u64) -> Vec<u64> {
    let total: u64 = sizes.iter().sum();
    let target = total.div_ceil(parallelism.max(1) as u64).max(min_size).max(1);
    sizes.iter().map(|&size| size.div_ceil(target).max(1)).collect()
}

/// `size` bytes cut into `n` ranges as even as can be (earlier ones one byte longer),
/// covering `0..size` back to back; never more ranges than bytes, always at least one.
pub(crate) fn byte_ranges(size: u64, n: u64) -> Vec<Range<u64>> {
    let n = n.clamp(1, size.max(1));
    let (base, extra) = (size / n, size % n);
    let mut start = 0;
    (0..n)
        .map(|i| {
            let len = base + u64::from(i < extra);
            let r = start..start + len;
            start += len;
            r
        })
        .collect()
}

/// Whether a CSV file can be cut at line starts: true when no line break lies
/// inside a quoted field, counting quotes from the start of the file (an even
/// number of quotes before every newline). A quoted field that holds a newline
/// can only be found by reading from the start, so such a file is read whole,
/// by one task, and gets the same records as before.
pub(crate) fn csv_lines_are_records(path: &Path, quote: u8) -> Result<bool, ConnectorError> {
    let mut open_quote = false;
    let mut result = true;
    scan(path, u64::MAX, |block| {
        for &b in block {
            if b == quote {
                open_quote = !open_quote;
            } else if b == b'\n' && open_quote {
                result = false;
                return ScanStep::Stop;
            }
        }
        ScanStep::Continue
    })?;
    Ok(result)
}

/// The number of line breaks in the first `len` bytes of `path`: what turns a
/// split's own line numbers into the file's, for positions of malformed records.
pub(crate) fn newlines_before(path: &Path, len: u64) -> Result<u64, ConnectorError> {
    let mut count = 0u64;
    scan(path, len, |block| {
        count += block.iter().filter(|&&b| b == b'\n').count() as u64;
        ScanStep::Continue
    })?;
    Ok(count)
}

/// How many lines of `path` come before the first record of a byte range starting
/// at `start`: add it to a line number counted within the range. The range's first
/// record starts just past the first line break at or after `start - 1`, so that
/// break and every one before it come first.
pub(crate) fn lines_before_range(path: &Path, start: u64) -> Result<u64, ConnectorError> {
    match start {
        0 => Ok(0),
        _ => Ok(newlines_before(path, start - 1)? + 1),
    }
}

/// Whether a [`scan`] goes on.
enum ScanStep {
    Continue,
    Stop,
}

/// Feeds the first `len` bytes of `path` to `visit`, block by block.
fn scan(path: &Path, len: u64, mut visit: impl FnMut(&[u8]) -> ScanStep) -> Result<(), ConnectorError> {
    let mut file = File::open(path).map_err(|e| ConnectorError::io("open", path, e))?;
    let mut buf = vec![0u8; SCAN_BLOCK];
    let mut left = len;
    while left > 0 {
        let want = usize::try_from(left).unwrap_or(usize::MAX).min(SCAN_BLOCK);
        let n = match file.read(&mut buf[..want]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ConnectorError::io("read", path, e)),
        };
        left -= n as u64;
        if let ScanStep::Stop = visit(&buf[..n]) {
            break;
        }
    }
    Ok(())
}

/// Opens `path` positioned to read the records starting at or after `start`:
/// at the byte before it, so that a reader can skip to just past the first line
/// break from there (the byte itself, when `start` is a line start).
pub(crate) fn open_at(path: &Path, start: u64) -> Result<File, ConnectorError> {
    let mut file = File::open(path).map_err(|e| ConnectorError::io("open", path, e))?;
    if start > 0 {
        file.seek(SeekFrom::Start(start - 1)).map_err(|e| ConnectorError::io("read", path, e))?;
    }
    Ok(file)
}

#[cfg(test)]
#[allow(clippy::single_range_in_vec_init)] // splits of one range are what is tested
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn byte_ranges_cover_the_file_back_to_back() {
        assert_eq!(byte_ranges(10, 3), vec![0..4, 4..7, 7..10]);
        assert_eq!(byte_ranges(10, 1), vec![0..10]);
        // Never an empty range, but an empty file is still one (empty) split.
        assert_eq!(byte_ranges(2, 5), vec![0..1, 1..2]);
        assert_eq!(byte_ranges(0, 3), vec![0..0]);
        assert_eq!(byte_ranges(5, 0), vec![0..5]);
    }

    #[test]
    fn blocks_and_row_groups_are_dealt_out_round_robin_without_empty_splits() {
        assert_eq!(row_group_extents(5, 2), vec![Extent::RowGroups(vec![0, 2, 4]), Extent::RowGroups(vec![1, 3])]);
        assert_eq!(row_group_extents(2, 4), vec![Extent::RowGroups(vec![0]), Extent::RowGroups(vec![1])]);
        assert_eq!(row_group_extents(0, 3), vec![Extent::RowGroups(vec![])]);
        // 10 bytes in blocks of 3 (4 blocks: 3, 3, 2, 2 bytes) for 2 splits.
        assert_eq!(text_extents(10, 2, 3), vec![Extent::Bytes(vec![0..3, 6..8]), Extent::Bytes(vec![3..6, 8..10])]);
        // Blocks larger than a split's share: one block per split.
        assert_eq!(text_extents(10, 3, 100), vec![Extent::Bytes(vec![0..4]), Extent::Bytes(vec![4..7]), Extent::Bytes(vec![7..10])]);
        assert_eq!(text_extents(2, 3, 1), vec![Extent::Bytes(vec![0..1]), Extent::Bytes(vec![1..2])]);
        let split = Split { path: "f.json".into(), extent: Extent::Bytes(vec![0..1, 2..3, 4..5, 6..7]) };
        assert_eq!(split.describe(), "f.json [bytes 0..1, 2..3, 4..5, ... (4 in all)]");
        let split = Split { path: "f.parquet".into(), extent: Extent::RowGroups(vec![1, 3]) };
        assert_eq!(split.describe(), "f.parquet [row groups 1, 3]");
    }

    #[test]
    fn files_get_splits_by_their_share_of_the_bytes() {
        // One large file: as many splits as tasks.
        assert_eq!(split_counts(&[1000], 2, 1), vec![2]);
        assert_eq!(split_counts(&[1000], 3, 1), vec![3]);
        // Small files stay whole.
        assert_eq!(split_counts(&[1000], 4, 4096), vec![1]);
        assert_eq!(split_counts(&[10_000], 4, 4096), vec![3]);
        // More files than tasks: one each, never merged.
        assert_eq!(split_counts(&[10, 10, 10], 2, 1), vec![1, 1, 1]);
        // A large and a small file.
        assert_eq!(split_counts(&[900, 100], 2, 1), vec![2, 1]);
        assert_eq!(split_counts(&[0], 2, 1), vec![1]);
        assert_eq!(split_counts(&[], 2, 1), Vec::<u64>::new());
    }

    fn file(text: &[u8]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text).unwrap();
        f
    }

    #[test]
    fn a_quoted_newline_keeps_a_csv_file_whole() {
        assert!(csv_lines_are_records(file(b"a,b\n1,\"x,y\"\n2,\"\"\"q\"\"\"\n").path(), b'"').unwrap());
        assert!(!csv_lines_are_records(file(b"a,b\n1,\"x\ny\"\n2,z\n").path(), b'"').unwrap());
        assert!(csv_lines_are_records(file(b"").path(), b'"').unwrap());
    }

    #[test]
    fn newlines_are_counted_up_to_an_offset() {
        let f = file(b"a\nb\r\n\nc");
        assert_eq!(newlines_before(f.path(), 0).unwrap(), 0);
        assert_eq!(newlines_before(f.path(), 2).unwrap(), 1);
        assert_eq!(newlines_before(f.path(), 6).unwrap(), 3);
        assert_eq!(newlines_before(f.path(), 100).unwrap(), 3);
    }
}
