//! Tests of the filesystem connector: all three formats, malformed input, sink commits.

use std::path::Path;

use datafusion::arrow::array::{Array, AsArray, Int64Array, StringArray, TimestampMillisecondArray};
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::Field;
use datafusion::arrow::datatypes::{DataType, Int64Type, Schema, SchemaRef, TimeUnit, TimestampMillisecondType};
use datafusion::arrow::record_batch::RecordBatch;
use eddy_engine::table::TableDef;
use eddy_engine::{ChangeBatch, MalformedRecord};

use crate::registry::{create_sink, create_source};

fn ts() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, None)
}

fn table(cols: &[(&str, DataType, bool)], opts: &[(&str, &str)]) -> TableDef {
    let fields: Vec<Field> = cols.iter().map(|(n, t, nullable)| Field::new(*n, t.clone(), *nullable)).collect();
    let options: Vec<(&str, &str)> = opts.iter().copied().chain([("connector", "filesystem")]).collect();
    TableDef::from_fields("t", &fields, &options)
}

fn bids(path: &Path, format: &str, extra: &[(&str, &str)]) -> TableDef {
    let p = path.to_str().unwrap().to_string();
    let mut opts = vec![("path", p.as_str()), ("format", format)];
    opts.extend_from_slice(extra);
    table(&[("auction", DataType::Int64, false), ("price", DataType::Int64, true), ("channel", DataType::Utf8, true), ("ts", ts(), true)], &opts)
}

/// Reads every partition in order; returns all rows and all malformed records.
async fn read_all(def: &TableDef) -> (RecordBatch, Vec<MalformedRecord>, usize) {
    let schema = def.physical_schema();
    let source = create_source(def, SchemaRef::clone(&schema)).unwrap();
    assert!(source.is_bounded());
    let mut batches = vec![];
    let mut malformed = vec![];
    let readers = source.open(4).unwrap();
    let n = readers.len();
    for mut r in readers {
        while let Some(b) = r.next_batch().await.unwrap() {
            assert_eq!(b.rows.schema(), schema);
            batches.push(b.rows.into_rows());
            malformed.extend(b.malformed);
        }
    }
    (concat_batches(&schema, &batches).unwrap(), malformed, n)
}

fn i64s(b: &RecordBatch, c: usize) -> Vec<Option<i64>> {
    b.column(c).as_primitive::<Int64Type>().iter().collect()
}

fn times(b: &RecordBatch, c: usize) -> Vec<Option<i64>> {
    b.column(c).as_primitive::<TimestampMillisecondType>().iter().collect()
}

const T0: i64 = 1_704_067_200_000; // 2024-01-01 00:00:00 UTC

#[tokio::test]
async fn json_timestamps_in_all_three_forms() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("bids.json");
    std::fs::write(
        &f,
        concat!(
            "{\"auction\": 1, \"price\": 10, \"channel\": \"a\", \"ts\": \"2024-01-01 00:00:00\"}\n",
            "{\"auction\": 2, \"price\": 20, \"ts\": \"2024-01-01 00:00:01.250\"}\n",
            "{\"auction\": 3, \"ts\": \"2024-01-01T00:00:02Z\"}\n",
            "{\"auction\": 4, \"ts\": \"2024-01-01T02:00:03+02:00\"}\n",
            "{\"auction\": 5, \"ts\": 1704067204000, \"unknown\": true}\n",
        ),
    )
    .unwrap();
    let (rows, malformed, _) = read_all(&bids(&f, "json", &[])).await;
    assert!(malformed.is_empty(), "{malformed:?}");
    assert_eq!(i64s(&rows, 0), (1..=5).map(Some).collect::<Vec<_>>());
    assert_eq!(i64s(&rows, 1), vec![Some(10), Some(20), None, None, None]);
    assert_eq!(times(&rows, 3), vec![Some(T0), Some(T0 + 1250), Some(T0 + 2000), Some(T0 + 3000), Some(T0 + 4000)]);
}

#[tokio::test]
async fn json_malformed_lines_are_reported_and_good_lines_kept() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("bad.json");
    std::fs::write(
        &f,
        concat!(
            "{\"auction\": 1, \"price\": 10}\n",
            "{\"auction\": 2, \"price\": \"abc\"}\n",
            "\n",
            "not json at all\n",
            "{\"auction\": 3, \"price\": 30}\n",
            "{\"price\": 40}\n",
            "{\"auction\": 4, \"ts\": \"yesterday\"}\n",
            "{\"auction\": 5, \"price\": 50\n",
            "{\"auction\": 6} {\"auction\": 7}\n",
            "{\"auction\": 8, \"price\": 80}",
        ),
    )
    .unwrap();
    // Small batches so that good and bad lines share some chunks and not others.
    let (rows, malformed, _) = read_all(&bids(&f, "json", &[("scan.batch-rows", "3")])).await;
    assert_eq!(i64s(&rows, 0), vec![Some(1), Some(3), Some(8)]);
    assert_eq!(i64s(&rows, 1), vec![Some(10), Some(30), Some(80)]);
    let label = f.display().to_string();
    let positions: Vec<String> = malformed.iter().map(|m| m.position.clone()).collect();
    assert_eq!(positions, [2, 4, 6, 7, 8, 9].iter().map(|l| format!("{label}:{l}")).collect::<Vec<_>>());
    assert_eq!(malformed[0].raw, "{\"auction\": 2, \"price\": \"abc\"}");
    assert!(malformed[0].error.contains("price"), "{}", malformed[0].error);
    assert_eq!(malformed[2].error, "column 'auction' is NOT NULL but the record has no value for it");
    for m in &malformed {
        assert!(!m.error.is_empty());
    }
}

#[tokio::test]
async fn csv_with_header_delimiter_and_bad_rows() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("bids.csv");
    std::fs::write(
        &f,
        "auction;price;channel;ts\n1;10;\"a;b\";2024-01-01 00:00:00\n2;xx;c;2024-01-01 00:00:01\n3;;\"multi\nline\";2024-01-01T00:00:02Z\n4;40\n",
    )
    .unwrap();
    let def = bids(&f, "csv", &[("csv.header", "true"), ("csv.field-delimiter", ";")]);
    let (rows, malformed, _) = read_all(&def).await;
    assert_eq!(i64s(&rows, 0), vec![Some(1), Some(3)]);
    assert_eq!(i64s(&rows, 1), vec![Some(10), None]);
    let ch = rows.column(2).as_string::<i32>();
    assert_eq!(ch.value(0), "a;b");
    assert_eq!(ch.value(1), "multi\nline");
    assert_eq!(times(&rows, 3), vec![Some(T0), Some(T0 + 2000)]);
    let label = f.display().to_string();
    let positions: Vec<&str> = malformed.iter().map(|m| m.position.as_str()).collect();
    assert_eq!(positions, vec![format!("{label}:3"), format!("{label}:6")]);
    assert_eq!(malformed[0].raw, "2;xx;c;2024-01-01 00:00:01");
    assert_eq!(malformed[0].error, "column 'price': cannot read 'xx' as type 'Int64'");
    assert_eq!(malformed[1].error, "wrong number of fields: expected 4 got 2");
}

#[tokio::test]
async fn csv_unbalanced_quote_is_one_malformed_line_and_the_lines_after_it_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("bids.csv");
    std::fs::write(&f, "1,10,a,2024-01-01 00:00:00\n2,20,\"oops,2024-01-01 00:00:01\n3,30,c,2024-01-01 00:00:02\n4,40,d,2024-01-01 00:00:03\n").unwrap();
    let (rows, malformed, _) = read_all(&bids(&f, "csv", &[])).await;
    assert_eq!(i64s(&rows, 0), vec![Some(1), Some(3), Some(4)]);
    assert_eq!(malformed.len(), 1, "{malformed:?}");
    assert_eq!(malformed[0].position, format!("{}:2", f.display()));
    assert_eq!(malformed[0].raw, "2,20,\"oops,2024-01-01 00:00:01");
    assert!(malformed[0].error.starts_with("unbalanced quote"), "{}", malformed[0].error);
}

#[tokio::test]
async fn csv_reads_epoch_milliseconds_as_json_does_and_errors_name_column_and_value() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("bids.csv");
    std::fs::write(&f, "1,10,a,1700000000000\n2,20,b,2024-01-01 00:00:01\n3,30,c,noon\n4,4x,d,1\n").unwrap();
    let (rows, malformed, _) = read_all(&bids(&f, "csv", &[])).await;
    assert_eq!(i64s(&rows, 0), vec![Some(1), Some(2)]);
    assert_eq!(times(&rows, 3), vec![Some(1_700_000_000_000), Some(T0 + 1000)]);
    let errors: Vec<(&str, &str)> = malformed.iter().map(|m| (m.position.as_str(), m.error.as_str())).collect();
    let label = f.display().to_string();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert_eq!(errors[0].0, format!("{label}:3"));
    assert!(errors[0].1.starts_with("column 'ts' (TIMESTAMP(3)): cannot read \"noon\""), "{}", errors[0].1);
    assert_eq!(errors[1], (format!("{label}:4").as_str(), "column 'price': cannot read '4x' as type 'Int64'"));
}

#[tokio::test]
async fn json_fraction_in_an_integer_column_is_malformed_not_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("bids.json");
    std::fs::write(
        &f,
        concat!("{\"auction\": 1, \"price\": 5}\n", "{\"auction\": 2, \"price\": 5.5}\n", "{\"auction\": 3, \"price\": 6.0}\n", "{\"auction\": 4.25}\n",),
    )
    .unwrap();
    let (rows, malformed, _) = read_all(&bids(&f, "json", &[])).await;
    assert_eq!(i64s(&rows, 0), vec![Some(1), Some(3)]);
    assert_eq!(i64s(&rows, 1), vec![Some(5), Some(6)]);
    let label = f.display().to_string();
    let errors: Vec<(String, String)> = malformed.into_iter().map(|m| (m.position, m.error)).collect();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert_eq!(errors[0].0, format!("{label}:2"));
    assert!(errors[0].1.starts_with("column 'price' (BIGINT): cannot read \"5.5\": not a whole number"), "{}", errors[0].1);
    assert_eq!(errors[1].0, format!("{label}:4"));
    assert!(errors[1].1.starts_with("column 'auction' (BIGINT): cannot read \"4.25\""), "{}", errors[1].1);
}

#[tokio::test]
async fn directory_glob_and_missing_paths() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    std::fs::write(dir.path().join("b.json"), "{\"auction\": 2}\n").unwrap();
    std::fs::write(sub.join("a.json"), "{\"auction\": 3}\n").unwrap();
    std::fs::write(dir.path().join("a.json"), "{\"auction\": 1}\n").unwrap();
    std::fs::write(dir.path().join(".hidden.json"), "{\"auction\": 9}\n").unwrap();
    std::fs::write(dir.path().join("_SUCCESS"), "").unwrap();
    let (rows, _, n) = read_all(&bids(dir.path(), "json", &[])).await;
    assert_eq!(n, 3);
    assert_eq!(i64s(&rows, 0), vec![Some(1), Some(2), Some(3)]);

    let glob = dir.path().join("*.json");
    let (rows, _, n) = read_all(&bids(&glob, "json", &[])).await;
    assert_eq!(n, 2);
    assert_eq!(i64s(&rows, 0), vec![Some(1), Some(2)]);

    let def = bids(&dir.path().join("*.csv"), "json", &[]);
    let err = create_source(&def, def.physical_schema()).err().unwrap().to_string();
    assert_eq!(err, format!("no files match '{}'", dir.path().join("*.csv").display()));
    let def = bids(&dir.path().join("nope"), "json", &[]);
    let err = create_source(&def, def.physical_schema()).err().unwrap().to_string();
    assert!(err.contains("does not exist"), "{err}");
}

fn sample(schema: &Schema, from: i64, n: i64) -> RecordBatch {
    RecordBatch::try_new(
        std::sync::Arc::new(schema.clone()),
        vec![
            std::sync::Arc::new(Int64Array::from_iter_values(from..from + n)),
            std::sync::Arc::new(Int64Array::from_iter((from..from + n).map(|i| (i % 3 != 0).then_some(i * 10)))),
            std::sync::Arc::new(StringArray::from_iter_values((from..from + n).map(|i| format!("ch,\"{i}\"")))),
            std::sync::Arc::new(TimestampMillisecondArray::from_iter_values((from..from + n).map(|i| T0 + i * 1001))),
        ],
    )
    .unwrap()
}

fn visible(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).filter(|n| !n.starts_with('.')).collect();
    v.sort();
    v
}

fn hidden(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).filter(|n| n.starts_with('.')).collect()
}

async fn round_trip(format: &str, extra: &[(&str, &str)]) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let def = bids(&out, format, extra);
    let schema = def.physical_schema();
    let mut sink = create_sink(&def, SchemaRef::clone(&schema)).unwrap();
    // Nothing written: commit creates no file.
    sink.commit().await.unwrap();
    assert!(visible(&out).is_empty() && hidden(&out).is_empty());

    sink.write(ChangeBatch::inserts(sample(&schema, 0, 100))).await.unwrap();
    sink.write(ChangeBatch::inserts(sample(&schema, 100, 50))).await.unwrap();
    assert!(visible(&out).is_empty(), "part file visible before commit");
    // Small files are still in the upload buffer; anything on disk is hidden.
    for name in hidden(&out) {
        assert!(name.starts_with(".part-") && name.contains(&format!(".{format}.inprogress")), "{name}");
    }
    sink.commit().await.unwrap();
    let files = visible(&out);
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].starts_with("part-") && files[0].ends_with(&format!("-0.{format}")));
    assert!(hidden(&out).is_empty());

    sink.write(ChangeBatch::inserts(sample(&schema, 150, 10))).await.unwrap();
    sink.commit().await.unwrap();
    assert_eq!(visible(&out).len(), 2);

    let (rows, malformed, _) = read_all(&def).await;
    assert!(malformed.is_empty(), "{malformed:?}");
    let expected = concat_batches(&schema, &[sample(&schema, 0, 100), sample(&schema, 100, 50), sample(&schema, 150, 10)]).unwrap();
    assert_eq!(rows, expected);
}

#[tokio::test]
async fn parquet_round_trip() {
    round_trip("parquet", &[]).await;
}

#[tokio::test]
async fn json_round_trip_and_timestamp_text() {
    round_trip("json", &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let def = bids(dir.path(), "json", &[]);
    let schema = def.physical_schema();
    let mut sink = create_sink(&def, SchemaRef::clone(&schema)).unwrap();
    sink.write(ChangeBatch::inserts(sample(&schema, 1, 1))).await.unwrap();
    sink.commit().await.unwrap();
    let text = std::fs::read_to_string(dir.path().join(&visible(dir.path())[0])).unwrap();
    assert_eq!(text, "{\"auction\":1,\"price\":10,\"channel\":\"ch,\\\"1\\\"\",\"ts\":\"2024-01-01 00:00:01.001\"}\n");
}

#[tokio::test]
async fn csv_round_trip() {
    round_trip("csv", &[]).await;
    round_trip("csv", &[("csv.header", "true")]).await;
    round_trip("csv", &[("csv.field-delimiter", "\\t")]).await;
}

#[tokio::test]
async fn rolling_files_stay_hidden_until_commit() {
    let dir = tempfile::tempdir().unwrap();
    let def = bids(dir.path(), "json", &[("sink.rolling-policy.file-size", "1kb")]);
    let schema = def.physical_schema();
    let mut sink = create_sink(&def, SchemaRef::clone(&schema)).unwrap();
    for i in 0..5 {
        sink.write(ChangeBatch::inserts(sample(&schema, i * 20, 20))).await.unwrap();
    }
    assert!(visible(dir.path()).is_empty());
    assert!(hidden(dir.path()).len() >= 4);
    sink.commit().await.unwrap();
    assert!(visible(dir.path()).len() >= 4);
    assert!(hidden(dir.path()).is_empty());
    let (rows, _, _) = read_all(&def).await;
    assert_eq!(rows.num_rows(), 100);
}

#[tokio::test]
async fn parquet_projection_cast_and_missing_column() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("p");
    let def = bids(&out, "parquet", &[]);
    let mut sink = create_sink(&def, def.physical_schema()).unwrap();
    sink.write(ChangeBatch::inserts(sample(&def.physical_schema(), 0, 10))).await.unwrap();
    sink.commit().await.unwrap();

    // A subset, reordered, with price widened to a float and auction narrowed to INT.
    let p = out.to_str().unwrap();
    let narrow = table(&[("price", DataType::Float64, true), ("auction", DataType::Int32, false)], &[("path", p), ("format", "parquet")]);
    let (rows, malformed, _) = read_all(&narrow).await;
    assert!(malformed.is_empty());
    assert_eq!(rows.num_rows(), 10);
    assert_eq!(rows.column(0).data_type(), &DataType::Float64);
    assert_eq!(rows.column(1).as_primitive::<datafusion::arrow::datatypes::Int32Type>().value(9), 9);

    // price has nulls: declared NOT NULL, those rows become malformed.
    let strict = table(&[("price", DataType::Int64, false)], &[("path", p), ("format", "parquet")]);
    let (rows, malformed, _) = read_all(&strict).await;
    assert_eq!(rows.num_rows(), 6);
    assert_eq!(malformed.len(), 4);
    assert!(malformed[0].position.ends_with(":row 1"), "{}", malformed[0].position);
    assert_eq!(malformed[0].error, "NOT NULL column 'price' is null");
    assert_eq!(malformed[0].raw, "[null]");

    // channel is text like 'ch,"3"': declared as BIGINT, every value fails to convert.
    let conv = table(&[("channel", DataType::Int64, true)], &[("path", p), ("format", "parquet")]);
    let (rows, malformed, _) = read_all(&conv).await;
    assert_eq!(rows.num_rows(), 0);
    assert_eq!(malformed.len(), 10);
    assert_eq!(malformed[3].error, "column 'channel': the file's Utf8 value cannot be converted to Int64");
    assert_eq!(malformed[3].raw, "[ch,\"3\"]");

    let missing = table(&[("nope", DataType::Int64, true)], &[("path", p), ("format", "parquet")]);
    let source = create_source(&missing, missing.physical_schema()).unwrap();
    let mut readers = source.open(1).unwrap();
    let err = readers[0].next_batch().await.err().unwrap().to_string();
    assert!(err.contains("column 'nope' is declared but missing") && err.contains("auction, price, channel, ts"), "{err}");
}

#[tokio::test]
async fn not_null_json_field_missing_is_malformed() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("x.json");
    std::fs::write(&f, "{\"auction\": 1}\n{\"price\": 2}\n").unwrap();
    let (rows, malformed, _) = read_all(&bids(&f, "json", &[])).await;
    assert_eq!(rows.num_rows(), 1);
    assert_eq!(malformed.len(), 1);
    assert!(malformed[0].position.ends_with("x.json:2"));
    assert!(rows.column(0).null_count() == 0);
}

/// Every file below `dir`, relative, sorted (`dt=x/part-...`).
fn tree(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.push(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

#[tokio::test]
async fn partitioned_sink_writes_hive_directories_and_the_source_reads_them_back() {
    for format in ["parquet", "json", "csv"] {
        let dir = tempfile::tempdir().unwrap();
        let mut def = bids(dir.path(), format, &[]);
        def.partitioned_by = vec!["channel".to_string()];
        let schema = def.physical_schema();
        let mut sink = create_sink(&def, SchemaRef::clone(&schema)).unwrap();
        // Channels 'a/b' (escaped), null, and 'c'; two batches, mixed directories.
        let make = |rows: &[(i64, Option<&str>)]| {
            RecordBatch::try_new(
                SchemaRef::clone(&schema),
                vec![
                    std::sync::Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
                    std::sync::Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0 * 10))),
                    std::sync::Arc::new(StringArray::from(rows.iter().map(|r| r.1).collect::<Vec<_>>())),
                    std::sync::Arc::new(TimestampMillisecondArray::from_iter_values(rows.iter().map(|r| T0 + r.0))),
                ],
            )
            .unwrap()
        };
        sink.write(ChangeBatch::inserts(make(&[(1, Some("a/b")), (2, None), (3, Some("a/b"))]))).await.unwrap();
        sink.write(ChangeBatch::inserts(make(&[(4, Some("c"))]))).await.unwrap();
        assert!(tree(dir.path()).iter().all(|f| f.rsplit('/').next().unwrap().starts_with('.')), "{:?}", tree(dir.path()));
        sink.commit().await.unwrap();
        let files = tree(dir.path());
        let dirs: Vec<&str> = files.iter().map(|f| f.rsplit_once('/').unwrap().0).collect();
        assert_eq!(dirs, vec!["channel=__HIVE_DEFAULT_PARTITION__", "channel=a%2Fb", "channel=c"], "{files:?}");
        assert!(files.iter().all(|f| f.rsplit('/').next().unwrap().starts_with("part-")), "{files:?}");
        if format == "json" {
            // The partition column is in the directory name, not in the file.
            let text = std::fs::read_to_string(dir.path().join(&files[2])).unwrap();
            assert_eq!(text, "{\"auction\":4,\"price\":40,\"ts\":\"2024-01-01 00:00:00.004\"}\n");
        }
        let (rows, malformed, readers) = read_all(&def).await;
        assert!(malformed.is_empty() && readers == 3, "{malformed:?}");
        let mut got: Vec<(i64, Option<String>)> = (0..rows.num_rows())
            .map(|i| {
                let ch = rows.column(2).as_string::<i32>();
                (i64s(&rows, 0)[i].unwrap(), ch.is_valid(i).then(|| ch.value(i).to_string()))
            })
            .collect();
        got.sort();
        let expected = vec![(1, Some("a/b".to_string())), (2, None), (3, Some("a/b".to_string())), (4, Some("c".to_string()))];
        assert_eq!(got, expected, "{format}");
        assert_eq!(i64s(&rows, 1).iter().flatten().sum::<i64>(), 100, "{format}");
    }
}

#[tokio::test]
async fn partition_directories_must_match_the_declared_columns() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("x.json"), "{\"auction\":1}\n").unwrap();
    let mut def = bids(dir.path(), "json", &[]);
    def.partitioned_by = vec!["channel".to_string()];
    let source = create_source(&def, def.physical_schema()).unwrap();
    let e = source.open(1).err().unwrap().to_string();
    assert!(e.contains("not below a 'channel=...' directory"), "{e}");
}

#[tokio::test]
async fn rollover_interval_starts_new_files() {
    let dir = tempfile::tempdir().unwrap();
    let def = bids(dir.path(), "parquet", &[("sink.rolling-policy.rollover-interval", "20ms")]);
    let schema = def.physical_schema();
    let mut sink = create_sink(&def, SchemaRef::clone(&schema)).unwrap();
    sink.write(ChangeBatch::inserts(sample(&schema, 0, 10))).await.unwrap();
    std::thread::sleep(std::time::Duration::from_millis(30));
    // The file is now older than the interval: this write closes it.
    sink.write(ChangeBatch::inserts(sample(&schema, 10, 10))).await.unwrap();
    sink.write(ChangeBatch::inserts(sample(&schema, 20, 10))).await.unwrap();
    assert_eq!(hidden(dir.path()).len(), 1, "the rolled file waits hidden for the commit");
    sink.commit().await.unwrap();
    assert_eq!(visible(dir.path()).len(), 2);
    let (rows, _, _) = read_all(&def).await;
    assert_eq!(rows.num_rows(), 30);
}

#[tokio::test]
async fn s3_paths_are_built_without_the_network_and_other_schemes_are_refused() {
    let def = bids(Path::new("s3://bucket/archive"), "parquet", &[("s3.region", "eu-west-1"), ("s3.access-key", "k"), ("s3.secret-key", "s")]);
    // Building the sink or the source does not touch the network (the source lists
    // the bucket when it opens).
    create_sink(&def, def.physical_schema()).unwrap();
    create_source(&def, def.physical_schema()).unwrap();
    let def = bids(Path::new("gs://bucket/archive"), "parquet", &[]);
    let e = create_source(&def, def.physical_schema()).err().unwrap().to_string();
    assert!(e.contains("gs:// paths are not supported; use a local path or s3://bucket/prefix"), "{e}");
}

#[tokio::test]
async fn two_phase_commit_publishes_on_checkpoint_completion_and_after_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let def = bids(dir.path(), "json", &[]);
    let schema = def.physical_schema();
    let mut sink = create_sink(&def, SchemaRef::clone(&schema)).unwrap();
    sink.write(ChangeBatch::inserts(sample(&schema, 0, 10))).await.unwrap();
    let prepared = sink.prepare(1).await.unwrap();
    assert!(visible(dir.path()).is_empty(), "prepared files stay hidden until the checkpoint is saved");
    sink.write(ChangeBatch::inserts(sample(&schema, 10, 10))).await.unwrap();
    let prepared_2 = sink.prepare(2).await.unwrap();
    sink.commit_checkpoint(1).await.unwrap();
    assert_eq!(visible(dir.path()).len(), 1, "only checkpoint 1's file");
    // The process dies before checkpoint 2 is acknowledged; a new sink, restored
    // from checkpoint 2, finishes its commit; recovering again changes nothing.
    drop(sink);
    let mut restarted = create_sink(&def, SchemaRef::clone(&schema)).unwrap();
    restarted.recover(&prepared_2).await.unwrap();
    restarted.recover(&prepared_2).await.unwrap();
    restarted.recover(&prepared).await.unwrap();
    assert_eq!(visible(dir.path()).len(), 2);
    assert!(hidden(dir.path()).is_empty());
    let (rows, _, _) = read_all(&def).await;
    assert_eq!(rows.num_rows(), 20);
}

/// The run's last commit (`FINAL_CHECKPOINT`) is prepared while checkpoint 1 is
/// still being saved: its prepared commit lists checkpoint 1's file too, so a
/// restart from it (a kill right after the completion record) publishes both, and
/// committing it in the run publishes both without overflowing the highest id.
#[tokio::test]
async fn the_last_commit_covers_the_files_of_checkpoints_not_saved_yet() {
    use eddy_engine::checkpoint::FINAL_CHECKPOINT;
    for restart in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let def = bids(dir.path(), "json", &[]);
        let schema = def.physical_schema();
        let mut sink = create_sink(&def, SchemaRef::clone(&schema)).unwrap();
        sink.write(ChangeBatch::inserts(sample(&schema, 0, 10))).await.unwrap();
        sink.prepare(1).await.unwrap();
        sink.write(ChangeBatch::inserts(sample(&schema, 10, 10))).await.unwrap();
        let last = sink.prepare(FINAL_CHECKPOINT).await.unwrap();
        if restart {
            drop(sink);
            create_sink(&def, SchemaRef::clone(&schema)).unwrap().recover(&last).await.unwrap();
        } else {
            sink.commit_checkpoint(FINAL_CHECKPOINT).await.unwrap();
        }
        assert_eq!(visible(dir.path()).len(), 2, "restart: {restart}");
        assert!(hidden(dir.path()).is_empty());
        assert_eq!(read_all(&def).await.0.num_rows(), 20);
    }
}

/// Reads every partition of `def` opened for `parallelism` tasks, in partition
/// order: all rows, all malformed records, how many partitions, and each
/// partition's progress after its last read. Splits deal out blocks of a file in
/// turn, so rows come in file order only within a partition.
async fn read_split(def: &TableDef, parallelism: usize) -> (RecordBatch, Vec<MalformedRecord>, usize, Vec<Option<(u64, u64)>>) {
    let schema = def.physical_schema();
    let source = create_source(def, SchemaRef::clone(&schema)).unwrap();
    let mut batches = vec![];
    let mut malformed = vec![];
    let mut progress = vec![];
    let readers = source.open(parallelism).unwrap();
    let n = readers.len();
    for mut r in readers {
        while let Some(b) = r.next_batch().await.unwrap() {
            batches.push(b.rows.into_rows());
            malformed.extend(b.malformed);
        }
        progress.push(r.status().input_bytes);
    }
    (concat_batches(&schema, &batches).unwrap(), malformed, n, progress)
}

fn sorted(mut values: Vec<Option<i64>>) -> Vec<Option<i64>> {
    values.sort();
    values
}

/// The JSON of [`json_malformed_lines_are_reported_and_good_lines_kept`], with CRLF line ends.
const BAD_JSON: &str = concat!(
    "{\"auction\": 1, \"price\": 10}\r\n",
    "{\"auction\": 2, \"price\": \"abc\"}\r\n",
    "\r\n",
    "not json at all\r\n",
    "{\"auction\": 3, \"price\": 30}\r\n",
    "{\"price\": 40}\r\n",
    "{\"auction\": 4, \"ts\": \"yesterday\"}\r\n",
    "{\"auction\": 5, \"price\": 50\r\n",
    "{\"auction\": 6} {\"auction\": 7}\r\n",
    "{\"auction\": 8, \"price\": 80}",
);

#[tokio::test]
async fn a_split_json_file_reads_every_line_once_with_the_file_line_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("bad.json");
    std::fs::write(&f, BAD_JSON).unwrap();
    let label = f.display().to_string();
    let size = BAD_JSON.len() as u64;
    // The default smallest split keeps this small file whole.
    let (_, _, n, _) = read_split(&bids(&f, "json", &[]), 4).await;
    assert_eq!(n, 1);
    for parallelism in 1..=6 {
        let def = bids(&f, "json", &[("scan.batch-rows", "2"), ("scan.split.block-size", "1B")]);
        let (rows, malformed, n, progress) = read_split(&def, parallelism).await;
        assert_eq!(n, parallelism, "one split per task");
        assert_eq!(sorted(i64s(&rows, 0)), vec![Some(1), Some(3), Some(8)], "at parallelism {parallelism}");
        let mut positions: Vec<(String, String)> = malformed.iter().map(|m| (m.position.clone(), m.raw.clone())).collect();
        positions.sort_by_key(|(p, _)| p.rsplit(':').next().and_then(|l| l.parse::<u64>().ok()));
        let lines: Vec<&str> = BAD_JSON.split("\r\n").collect();
        let expected: Vec<(String, String)> = [2, 4, 6, 7, 8, 9].iter().map(|&l| (format!("{label}:{l}"), lines[l - 1].to_string())).collect();
        assert_eq!(positions, expected, "at parallelism {parallelism}");
        // Each split reports its own share of the file, all of it read at the end.
        let shares: Vec<(u64, u64)> = progress.into_iter().map(|p| p.unwrap()).collect();
        assert!(shares.iter().all(|(read, total)| read == total), "{shares:?}");
        assert_eq!(shares.iter().map(|(_, total)| total).sum::<u64>(), size, "{shares:?}");
    }
}

#[tokio::test]
async fn a_split_csv_file_skips_its_header_once_and_a_quoted_newline_keeps_it_whole() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("bids.csv");
    let body: String = (1..=20).map(|i| format!("{i};{};\"c;{i}\";2024-01-01 00:00:{i:02}\n", i * 10)).collect();
    std::fs::write(&f, format!("auction;price;channel;ts\n{body}")).unwrap();
    let options = [("csv.header", "true"), ("csv.field-delimiter", ";"), ("scan.split.block-size", "1B"), ("scan.batch-rows", "3")];
    for parallelism in [1, 2, 3, 7] {
        let (rows, malformed, n, _) = read_split(&bids(&f, "csv", &options), parallelism).await;
        assert_eq!(n, parallelism);
        assert!(malformed.is_empty(), "the header is skipped once, by the first split: {malformed:?}");
        assert_eq!(sorted(i64s(&rows, 0)), (1..=20).map(Some).collect::<Vec<_>>());
        let channels: Vec<&str> = rows.column(2).as_string::<i32>().iter().flatten().collect();
        assert!(channels.contains(&"c;20") && channels.len() == 20, "{channels:?}");
    }
    // A quoted field holding a newline: only a read from the start finds the records.
    std::fs::write(&f, format!("auction;price;channel;ts\n{body}21;210;\"two\nlines\";2024-01-01 00:00:21\n")).unwrap();
    let (rows, malformed, n, _) = read_split(&bids(&f, "csv", &options), 3).await;
    assert_eq!(n, 1);
    assert!(malformed.is_empty(), "{malformed:?}");
    assert_eq!(rows.num_rows(), 21);
    assert_eq!(rows.column(2).as_string::<i32>().value(20), "two\nlines");
}

#[tokio::test]
async fn a_parquet_file_splits_by_row_groups_with_the_file_row_numbers() {
    use datafusion::parquet::arrow::ArrowWriter;
    use datafusion::parquet::file::properties::WriterProperties;
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("bids.parquet");
    let def = bids(&f, "parquet", &[("scan.split.block-size", "1B")]);
    let schema = def.physical_schema();
    let props = WriterProperties::builder().set_max_row_group_row_count(Some(4)).build();
    let mut writer = ArrowWriter::try_new(std::fs::File::create(&f).unwrap(), SchemaRef::clone(&schema), Some(props)).unwrap();
    writer.write(&sample(&schema, 0, 10)).unwrap();
    writer.close().unwrap();
    let strict = table(
        &[("auction", DataType::Int64, false), ("price", DataType::Int64, false)],
        &[("path", f.to_str().unwrap()), ("format", "parquet"), ("scan.split.block-size", "1B")],
    );
    // 3 row groups (4, 4, 2 rows): at most 3 splits; with 2, the first reads groups 0 and 2.
    for (parallelism, splits) in [(1, 1), (2, 2), (3, 3), (5, 3)] {
        let (rows, malformed, n, _) = read_split(&def, parallelism).await;
        assert_eq!((n, rows.num_rows()), (splits, 10));
        assert!(malformed.is_empty());
        assert_eq!(sorted(i64s(&rows, 0)), (0..10).map(Some).collect::<Vec<_>>());
        // price is null in rows 0, 3, 6, 9 (the file's rows 1, 4, 7, 10).
        let (rows, malformed, _, _) = read_split(&strict, parallelism).await;
        assert_eq!(sorted(i64s(&rows, 0)), vec![Some(1), Some(2), Some(4), Some(5), Some(7), Some(8)]);
        let mut positions: Vec<u64> = malformed.iter().map(|m| m.position.rsplit(":row ").next().and_then(|n| n.parse().ok()).unwrap_or_default()).collect();
        positions.sort();
        assert_eq!(positions, [1, 4, 7, 10], "at parallelism {parallelism}");
    }
}

#[tokio::test]
async fn json_decodes_only_the_columns_read_and_every_not_null_one() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("bids.json");
    std::fs::write(
        &f,
        concat!(
            "{\"auction\": 1, \"price\": 10, \"channel\": \"a\", \"ts\": 1704067200000}\n",
            // A bad value in a column not read is not seen; a missing NOT NULL column still is.
            "{\"auction\": 2, \"price\": \"abc\", \"channel\": \"b\", \"ts\": 1704067201000}\n",
            "{\"price\": 30, \"channel\": \"c\"}\n",
            "not json\n",
        ),
    )
    .unwrap();
    let def = bids(&f, "json", &[]);
    let schema = def.physical_schema();
    // The pipeline reads channel (2) only; auction (0) is NOT NULL.
    let source = crate::registry::create_source_reading(&def, SchemaRef::clone(&schema), Some(&[2])).unwrap();
    let mut rows = vec![];
    let mut malformed = vec![];
    for mut r in source.open(1).unwrap() {
        while let Some(b) = r.next_batch().await.unwrap() {
            rows.push(b.rows.into_rows());
            malformed.extend(b.malformed);
        }
    }
    let rows = concat_batches(&schema, &rows).unwrap();
    assert_eq!(i64s(&rows, 0), vec![Some(1), Some(2)]);
    assert_eq!(rows.column(2).as_string::<i32>().iter().collect::<Vec<_>>(), vec![Some("a"), Some("b")]);
    assert_eq!(i64s(&rows, 1), vec![None, None], "price is not read: left NULL");
    assert_eq!(times(&rows, 3), vec![None, None], "ts is not read: left NULL");
    let lines: Vec<&str> = malformed.iter().map(|m| m.position.rsplit(':').next().unwrap_or_default()).collect();
    assert_eq!(lines, ["3", "4"]);
    assert_eq!(malformed[0].error, "column 'auction' is NOT NULL but the record has no value for it");
    // Reading every column, the bad price is malformed as before.
    let (rows, malformed, _) = read_all(&def).await;
    assert_eq!(i64s(&rows, 0), vec![Some(1)]);
    assert_eq!(malformed.len(), 3);
    // Reading no column (COUNT(*)) of a table without NOT NULL columns still gives every row.
    let nullable = table(&[("auction", DataType::Int64, true), ("price", DataType::Int64, true)], &[("path", f.to_str().unwrap()), ("format", "json")]);
    let schema = nullable.physical_schema();
    let source = crate::registry::create_source_reading(&nullable, SchemaRef::clone(&schema), Some(&[])).unwrap();
    let mut rows = 0;
    for mut r in source.open(1).unwrap() {
        while let Some(b) = r.next_batch().await.unwrap() {
            rows += b.rows.into_rows().num_rows();
        }
    }
    assert_eq!(rows, 2, "the two lines whose price is a number");
}

/// Reads every partition of `def` at `parallelism` for `stop_after` batches, takes
/// each reader's position as a checkpoint would, opens the source again at those
/// positions and reads to the end: the rows and malformed records of both runs.
async fn read_resumed(def: &TableDef, parallelism: usize, stop_after: usize) -> (RecordBatch, Vec<MalformedRecord>) {
    let schema = def.physical_schema();
    let source = create_source(def, SchemaRef::clone(&schema)).unwrap();
    let (mut batches, mut malformed, mut positions) = (vec![], vec![], vec![]);
    for mut r in source.open(parallelism).unwrap() {
        for _ in 0..stop_after {
            let Some(b) = r.next_batch().await.unwrap() else { break };
            batches.push(b.rows.into_rows());
            malformed.extend(b.malformed);
        }
        positions.push(r.position().expect("a file reader has a position"));
    }
    // A new process: the source as the table defines it, at the saved positions.
    let source = create_source(def, SchemaRef::clone(&schema)).unwrap();
    for mut r in source.open_at(parallelism, &positions).unwrap() {
        while let Some(b) = r.next_batch().await.unwrap() {
            batches.push(b.rows.into_rows());
            malformed.extend(b.malformed);
        }
    }
    (concat_batches(&schema, &batches).unwrap(), malformed)
}

/// Malformed records as (position, text), sorted.
fn sorted_malformed(malformed: &[MalformedRecord]) -> Vec<(String, String)> {
    let mut all: Vec<(String, String)> = malformed.iter().map(|m| (m.position.clone(), m.raw.clone())).collect();
    all.sort();
    all
}

/// A reader stopped after any number of batches and opened again at its position
/// reads each record once in all: none again, none skipped, with the same line or
/// row numbers, for split and whole JSON, CSV with a header and Parquet by row
/// groups or whole.
#[tokio::test]
async fn a_source_opened_at_its_positions_reads_the_rest_once() {
    use datafusion::parquet::arrow::ArrowWriter;
    use datafusion::parquet::file::properties::WriterProperties;
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bad.json");
    std::fs::write(&json, BAD_JSON).unwrap();
    let csv = dir.path().join("bids.csv");
    let body: String = (1..=20).map(|i| format!("{i};{};\"c;{i}\";2024-01-01 00:00:{i:02}\n", i * 10)).collect();
    std::fs::write(&csv, format!("auction;price;channel;ts\n{body}oops;1;x;2024-01-01 00:00:00\n")).unwrap();
    let parquet = dir.path().join("bids.parquet");
    let parquet_def = |extra: &[(&str, &str)]| bids(&parquet, "parquet", extra);
    let schema = parquet_def(&[]).physical_schema();
    let props = WriterProperties::builder().set_max_row_group_row_count(Some(4)).build();
    let mut writer = ArrowWriter::try_new(std::fs::File::create(&parquet).unwrap(), SchemaRef::clone(&schema), Some(props)).unwrap();
    writer.write(&sample(&schema, 0, 10)).unwrap();
    writer.close().unwrap();

    let csv_options = [("csv.header", "true"), ("csv.field-delimiter", ";"), ("scan.batch-rows", "3")];
    let cases = [
        ("json split", bids(&json, "json", &[("scan.batch-rows", "2"), ("scan.split.block-size", "1B")])),
        ("json whole", bids(&json, "json", &[("scan.batch-rows", "2")])),
        ("csv split", bids(&csv, "csv", &[csv_options.as_slice(), &[("scan.split.block-size", "1B")]].concat())),
        ("csv whole", bids(&csv, "csv", &csv_options)),
        ("parquet row groups", parquet_def(&[("scan.batch-rows", "3"), ("scan.split.block-size", "1B")])),
        ("parquet whole", parquet_def(&[("scan.batch-rows", "3")])),
    ];
    for (name, def) in &cases {
        for parallelism in [1, 2, 3] {
            let (all, all_malformed, _, _) = read_split(def, parallelism).await;
            assert!(all.num_rows() >= 3, "{name}: too few rows to test with");
            for stop_after in 0..6 {
                let (rows, malformed) = read_resumed(def, parallelism, stop_after).await;
                let case = format!("{name} at parallelism {parallelism}, stopped after {stop_after} batches");
                assert_eq!(sorted(i64s(&rows, 0)), sorted(i64s(&all, 0)), "{case}");
                assert_eq!(sorted_malformed(&malformed), sorted_malformed(&all_malformed), "{case}");
            }
        }
    }
}

/// A checkpoint taken with the file cut one way is refused by a source that cuts
/// it another (here: another parallelism), naming what to do, rather than reading
/// some records twice and skipping others.
#[tokio::test]
async fn positions_of_another_cut_of_the_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bad.json");
    std::fs::write(&json, BAD_JSON).unwrap();
    let def = bids(&json, "json", &[("scan.batch-rows", "2"), ("scan.split.block-size", "1B")]);
    let source = create_source(&def, def.physical_schema()).unwrap();
    let positions: Vec<_> = source.open(2).unwrap().iter().map(|r| r.position().unwrap()).collect();
    let refused = source.open_at(3, &positions).err().expect("another cut is refused").to_string();
    assert!(refused.contains("cannot resume partition") && refused.contains("parallelism"), "{refused}");
    assert_eq!(source.open_at(2, &positions).unwrap().len(), 2, "the same cut resumes");
}

/// A filter on the partition column leaves out the directories it rules out, both
/// from the partitions read and from what `EXPLAIN` lists; a NULL partition value
/// fails `part = 1` as in SQL.
#[tokio::test]
async fn partition_directories_a_filter_rules_out_are_not_read() {
    use datafusion::logical_expr::Operator;
    use datafusion::physical_expr::expressions::{BinaryExpr, Column, Literal};
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    for (part, id) in [("0", 10), ("1", 11), ("2", 12), ("__HIVE_DEFAULT_PARTITION__", 13)] {
        let sub = dir.path().join(format!("part={part}"));
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(sub.join("rows.json"), format!("{{\"id\": {id}}}\n")).unwrap();
    }
    let mut def = table(&[("id", DataType::Int64, true), ("part", DataType::Int64, true)], &[("path", dir.path().to_str().unwrap()), ("format", "json")]);
    def.partitioned_by = vec!["part".to_string()];
    let schema = Arc::new(Schema::new(vec![Field::new("part", DataType::Int64, true)]));
    let predicate =
        Arc::new(BinaryExpr::new(Arc::new(Column::new("part", 0)), Operator::Eq, Arc::new(Literal::new(datafusion::scalar::ScalarValue::Int64(Some(1))))));
    let filter = eddy_engine::PartitionFilter { schema, predicate };
    let listed = crate::filesystem::describe_partitions(&def, 1, Some(&filter)).unwrap();
    assert!(listed.len() == 1 && listed[0].ends_with("part=1/rows.json"), "{listed:?}");
    assert_eq!(crate::filesystem::describe_partitions(&def, 1, None).unwrap().len(), 4);
    let source = crate::registry::create_source_for(&def, def.physical_schema(), None, Some(&filter)).unwrap();
    let mut ids = vec![];
    for mut reader in source.open(1).unwrap() {
        while let Ok(Some(batch)) = reader.next_batch().await {
            ids.extend(i64s(batch.rows.rows(), 0));
        }
    }
    assert_eq!(ids, vec![Some(11)]);
}
