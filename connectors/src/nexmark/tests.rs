//! Checks the generator against the published Nexmark rules.

use datafusion::arrow::array::AsArray;
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::{DataType, Int64Type, TimestampMillisecondType};
use nexmark::config::NexmarkConfig;
use nexmark::event::Event;
use nexmark::EventGenerator;

use super::*;
use crate::registry::{create_source, create_source_reading, source_schema};

const BASE: u64 = 1_700_000_000_000;

fn def(opts: &[(&str, &str)], cols: &[(&str, DataType)]) -> TableDef {
    let fields: Vec<Field> = cols.iter().map(|(n, t)| Field::new(*n, t.clone(), true)).collect();
    let options: Vec<(&str, &str)> = opts.iter().copied().chain([("connector", "nexmark")]).collect();
    TableDef::from_fields("t", &fields, &options)
}

async fn read(def: &TableDef, parallelism: usize) -> Vec<RecordBatch> {
    let schema = source_schema(def).unwrap();
    let src = create_source(def, schema).unwrap();
    let mut out = vec![];
    for mut r in src.open(parallelism).unwrap() {
        while let Some(b) = r.next_batch().await.unwrap() {
            assert!(b.malformed.is_empty());
            out.push(b.rows.into_rows());
        }
    }
    out
}

async fn read_one(def: &TableDef, parallelism: usize) -> RecordBatch {
    let batches = read(def, parallelism).await;
    concat_batches(&source_schema(def).unwrap(), &batches).unwrap()
}

#[tokio::test]
async fn event_mix_is_1_3_46() {
    let base = BASE.to_string();
    let mut counts = vec![];
    for table in ["person", "auction", "bid"] {
        let d = def(&[("nexmark.table", table), ("events.num", "5000"), ("nexmark.base-time", &base)], &[]);
        counts.push(read_one(&d, 3).await.num_rows());
    }
    assert_eq!(counts, vec![100, 300, 4600]);
    // Partial epochs: 1 person, then 3 auctions, then bids.
    assert_eq!(NexmarkTable::Person.share(1), 1);
    assert_eq!(NexmarkTable::Auction.share(1), 0);
    assert_eq!(NexmarkTable::Auction.share(4), 3);
    assert_eq!(NexmarkTable::Bid.share(4), 0);
    assert_eq!(NexmarkTable::Bid.share(7), 3);
    // The reference generator's own mix over the full stream.
    let cfg = NexmarkConfig { base_time: BASE, ..NexmarkConfig::default() };
    let mut mix = [0; 3];
    for e in EventGenerator::new(cfg).take(5000) {
        mix[match e {
            Event::Person(_) => 0,
            Event::Auction(_) => 1,
            Event::Bid(_) => 2,
        }] += 1;
    }
    assert_eq!(mix, [100, 300, 4600]);
}

#[test]
fn bids_reference_existing_ids_and_prices_follow_the_reference_distribution() {
    let cfg = NexmarkConfig { base_time: BASE, ..NexmarkConfig::default() };
    let (mut max_person, mut max_auction) = (None::<usize>, None::<usize>);
    let mut prices = vec![];
    let mut last_ts = 0;
    for e in EventGenerator::new(cfg.clone()).take(50_000) {
        assert!(e.timestamp() >= last_ts, "event time never goes back");
        last_ts = e.timestamp();
        match e {
            Event::Person(p) => {
                assert_eq!(p.id, max_person.map_or(1000, |m| m + 1), "person ids are sequential from 1000");
                max_person = Some(p.id);
            }
            Event::Auction(a) => {
                assert_eq!(a.id, max_auction.map_or(1000, |m| m + 1), "auction ids are sequential from 1000");
                assert!(a.seller >= 1000 && a.seller <= max_person.unwrap_or(1000) + cfg.person_id_lead);
                assert!(a.reserve >= a.initial_bid && a.expires > a.date_time);
                assert!((10..15).contains(&a.category));
                max_auction = Some(a.id);
            }
            Event::Bid(b) => {
                // Bids point at auctions/persons already created (or a few ids ahead, the reference's lead).
                assert!(b.auction >= 1000 && b.auction <= max_auction.unwrap_or(1000) + cfg.auction_id_lead);
                assert!(b.bidder >= 1000 && b.bidder <= max_person.unwrap_or(1000) + cfg.person_id_lead);
                prices.push(b.price);
            }
        }
    }
    // price = round(10^(6u) * 100), u uniform in [0, 1): between 1.00 and 1,000,000.00,
    // median 10^3 * 100, and a third of them below 10^2 * 100.
    assert!(prices.iter().all(|p| (100..=100_000_000).contains(p)));
    prices.sort_unstable();
    let median = prices[prices.len() / 2];
    assert!((70_000..140_000).contains(&median), "median price {median}");
    let below = prices.iter().filter(|p| **p < 10_000).count() as f64 / prices.len() as f64;
    assert!((0.31..0.36).contains(&below), "share below 100.00: {below}");
}

#[tokio::test]
async fn bid_readers_resume_after_the_bids_they_returned() {
    // No base time given: a resume must keep the one the stream started with.
    let d = def(&[("events.num", "5000"), ("scan.batch-rows", "100")], &[]);
    let schema = source_schema(&d).unwrap();
    let src = create_source(&d, Arc::clone(&schema)).unwrap();
    let mut whole = Vec::new();
    let mut positions = Vec::new();
    for (i, mut reader) in src.open(3).unwrap().into_iter().enumerate() {
        // Reader i returns i + 1 batches before the "crash".
        for _ in 0..=i {
            whole.push(reader.next_batch().await.unwrap().unwrap().rows.into_rows());
        }
        positions.push(reader.position().expect("bid readers have positions"));
    }
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    for mut reader in src.open_at(3, &positions).unwrap() {
        while let Some(b) = reader.next_batch().await.unwrap() {
            whole.push(b.rows.into_rows());
        }
    }
    let rows = |batches: &[RecordBatch]| {
        let b = concat_batches(&schema, batches).unwrap();
        let mut v: Vec<String> = (0..b.num_rows()).map(|i| crate::format::row_to_string(&b, i)).collect();
        v.sort();
        v
    };
    let base = positions[0].partition.rsplit(' ').next().unwrap().to_string();
    let fixed = def(&[("events.num", "5000"), ("nexmark.base-time", &base)], &[]);
    let uninterrupted = read(&fixed, 3).await;
    assert_eq!(rows(&whole), rows(&uninterrupted), "resumed readers give every bid once, with the same event times");
    assert!(src.open_at(2, &positions).is_err(), "another parallelism cannot resume these readers");
}

#[tokio::test]
async fn n_readers_produce_the_same_events_as_one() {
    let base = BASE.to_string();
    for table in ["bid", "auction", "person"] {
        let d = def(&[("nexmark.table", table), ("events.num", "20011"), ("nexmark.base-time", &base), ("scan.batch-rows", "333")], &[]);
        let rows = |b: RecordBatch| {
            let mut v: Vec<String> = (0..b.num_rows()).map(|i| crate::format::row_to_string(&b, i)).collect();
            v.sort();
            v
        };
        let one = rows(read_one(&d, 1).await);
        let many = rows(read_one(&d, 7).await);
        assert_eq!(one.len() as u64, NexmarkTable::parse(table).unwrap().share(20011));
        assert_eq!(one, many, "table {table}");
    }
}

#[tokio::test]
async fn columns_match_the_crate_and_subsets_work() {
    let base = BASE.to_string();
    let d = def(
        &[("events.num", "1000"), ("nexmark.base-time", &base)],
        &[("price", DataType::Int64), ("date_time", DataType::Timestamp(TimeUnit::Millisecond, None)), ("auction", DataType::Int32)],
    );
    let b = read_one(&d, 1).await;
    let cfg = NexmarkConfig { base_time: BASE, ..NexmarkConfig::default() };
    let expected: Vec<Bid> = EventGenerator::new(cfg).with_type_filter(EventType::Bid).take(b.num_rows()).filter_map(Bid::take).collect();
    assert_eq!(b.num_rows(), 920);
    assert_eq!(b.schema().field(2).data_type(), &DataType::Int32);
    for (i, e) in expected.iter().enumerate() {
        assert_eq!(b.column(0).as_primitive::<Int64Type>().value(i), e.price as i64);
        assert_eq!(b.column(1).as_primitive::<TimestampMillisecondType>().value(i), e.date_time as i64);
        assert_eq!(b.column(2).as_primitive::<datafusion::arrow::datatypes::Int32Type>().value(i), e.auction as i32);
    }
    assert_eq!(b.column(1).as_primitive::<TimestampMillisecondType>().value(0), BASE as i64);

    let bad = def(&[], &[("prize", DataType::Int64)]);
    let err = create_source(&bad, bad.physical_schema()).err().unwrap().to_string();
    assert_eq!(err, "unknown column 'prize' for nexmark table 'bid'; valid columns: auction, bidder, price, channel, url, date_time, extra");
    let bad = def(&[], &[("date_time", DataType::Boolean)]);
    assert!(create_source(&bad, bad.physical_schema()).is_err());
}

/// Columns the pipeline does not read are NULL; the read ones are unchanged, for
/// bids (the fast generator, `extra` skipped) and for auctions (the crate's).
#[tokio::test]
async fn unread_columns_are_null_and_read_ones_unchanged() {
    let base = BASE.to_string();
    for table in ["bid", "auction"] {
        let d = def(&[("nexmark.table", table), ("events.num", "3000"), ("nexmark.base-time", &base)], &[]);
        let schema = source_schema(&d).unwrap();
        let full = read_one(&d, 2).await;
        let last = schema.fields().len() - 1;
        let read = [0, last];
        let source = create_source_reading(&d, Arc::clone(&schema), Some(&read)).unwrap();
        let mut batches = vec![];
        for mut reader in source.open(2).unwrap() {
            while let Some(b) = reader.next_batch().await.unwrap() {
                batches.push(b.rows.into_rows());
            }
        }
        let pruned = concat_batches(&schema, &batches).unwrap();
        assert_eq!(pruned.num_rows(), full.num_rows(), "{table}");
        for i in 0..schema.fields().len() {
            if read.contains(&i) {
                assert_eq!(pruned.column(i), full.column(i), "{table}: column {i} is read");
            } else {
                assert_eq!(pruned.column(i).null_count(), pruned.num_rows(), "{table}: column {i} is not read");
                assert_eq!(full.column(i).null_count(), 0, "{table}: column {i} when read");
            }
        }
    }
}

#[tokio::test]
async fn rate_paces_event_time_like_wall_time() {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    // 2000 events/s: 1000 events (920 bids) take about half a second.
    let d = def(&[("events.num", "1000"), ("events.rate", "2000")], &[]);
    let t = std::time::Instant::now();
    let batches = read(&d, 2).await;
    let elapsed = t.elapsed();
    assert!(elapsed >= std::time::Duration::from_millis(400), "{elapsed:?}");
    assert!(batches.len() > 2, "paced output comes in several batches");
    let all = concat_batches(&batches[0].schema(), &batches).unwrap();
    let ts = all.column(5).as_primitive::<TimestampMillisecondType>();
    let (min, max) = (ts.values().iter().min().unwrap(), ts.values().iter().max().unwrap());
    assert!(*min >= now - 50 && *min <= now + 1000, "base time is the open time");
    assert!((400..=600).contains(&(max - min)), "event time spans {}", max - min);
}

#[tokio::test]
async fn unbounded_without_events_num() {
    let d = def(&[("scan.batch-rows", "100")], &[("bidder", DataType::Int64)]);
    let src = create_source(&d, d.physical_schema()).unwrap();
    assert!(!src.is_bounded());
    let mut r = src.open(1).unwrap().pop().unwrap();
    for _ in 0..3 {
        assert_eq!(r.next_batch().await.unwrap().unwrap().rows.num_rows(), 100);
    }
}

/// Every column of the fast bid generator equals the `nexmark` crate's bids.
#[test]
fn fast_bids_equal_the_crate() {
    use super::fastbid::{BidColumns, BidGenerator};
    for (rate, offset, step) in [(10_000, 0, 1), (1_234, 2, 3), (7_000_000, 5, 8)] {
        let cfg = NexmarkConfig { base_time: BASE, first_rate: rate, next_rate: rate, ..NexmarkConfig::default() };
        let expected: Vec<Bid> =
            EventGenerator::new(cfg).with_type_filter(EventType::Bid).with_offset(offset).with_step(step).take(30_000).filter_map(Bid::take).collect();
        let mut gen = BidGenerator::new(BASE, rate, offset, step);
        let mut cols = BidColumns::default();
        let mut got: Vec<Vec<ArrayRef>> = vec![];
        for _ in 0..3 {
            assert_eq!(gen.generate(&mut cols, 10_000, true, None), 10_000);
            got.push((0..7).map(|i| cols.column(i)).collect());
        }
        for c in 0..7 {
            let parts: Vec<&dyn datafusion::arrow::array::Array> = got.iter().map(|b| b[c].as_ref()).collect();
            let fast = datafusion::arrow::compute::concat(&parts).unwrap();
            let slow = Bid::column(c, &expected);
            assert_eq!(&fast, &slow, "column {} at rate {rate}", BID_COLUMNS[c].0);
        }
    }
    // Without 'extra' requested, the other columns are unchanged.
    let mut gen = BidGenerator::new(BASE, 10_000, 0, 1);
    let mut cols = BidColumns::default();
    gen.generate(&mut cols, 1000, false, None);
    let cfg = NexmarkConfig { base_time: BASE, ..NexmarkConfig::default() };
    let expected: Vec<Bid> = EventGenerator::new(cfg).with_type_filter(EventType::Bid).take(1000).filter_map(Bid::take).collect();
    assert_eq!(&cols.column(4), &Bid::column(4, &expected));
}
