//! Nexmark benchmark: the standard generator feeding the published queries (adapted
//! only where the dialect demands) into a blackhole sink, in-process.
//!
//! Run: `cargo bench --bench nexmark` (release) or, quicker to build,
//! `cargo bench --profile dev --bench nexmark`. Options after `--`:
//! `--events N` (default 10,000,000; 100,000 under `cargo test`), `--parallelism P` (default 1), and query names to run.
//! Reports events per CPU-second (generator included) and per wall-second.

use common::{flag_value, run_script, Measured};

mod common;

const BID: &str = "auction BIGINT, bidder BIGINT, price BIGINT, channel STRING, url STRING, date_time TIMESTAMP(3), extra STRING";
const AUCTION: &str = "id BIGINT, item_name STRING, description STRING, initial_bid BIGINT, reserve BIGINT, date_time TIMESTAMP(3), expires TIMESTAMP(3), seller BIGINT, category BIGINT, extra STRING";
const PERSON: &str = "id BIGINT, name STRING, email_address STRING, credit_card STRING, city STRING, state STRING, date_time TIMESTAMP(3), extra STRING";

/// (name, sink columns, query) — the query reads tables `bid`, `auction` and `person`.
const QUERIES: &[(&str, &str, &str)] = &[
    ("q0", "auction BIGINT, bidder BIGINT, price BIGINT, date_time TIMESTAMP(3)", "SELECT auction, bidder, price, date_time FROM bid"),
    ("q1", "auction BIGINT, bidder BIGINT, price DOUBLE, date_time TIMESTAMP(3)", "SELECT auction, bidder, 0.908 * price, date_time FROM bid"),
    ("q2", "auction BIGINT, price BIGINT", "SELECT auction, price FROM bid WHERE auction % 123 = 0"),
    (
        "q5-hop",
        "auction BIGINT, num BIGINT, window_start TIMESTAMP(3), window_end TIMESTAMP(3)",
        "SELECT auction, COUNT(*), window_start, window_end FROM TABLE(HOP(TABLE bid, DESCRIPTOR(date_time), INTERVAL '2' SECOND, INTERVAL '10' SECOND)) GROUP BY auction, window_start, window_end",
    ),
    (
        "q7-tumble",
        "window_start TIMESTAMP(3), window_end TIMESTAMP(3), maxprice BIGINT",
        "SELECT window_start, window_end, MAX(price) FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '10' SECOND)) GROUP BY window_start, window_end",
    ),
    (
        "tumble-count-by-key",
        "window_start TIMESTAMP(3), auction BIGINT, bids BIGINT",
        "SELECT window_start, auction, COUNT(*) FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '10' SECOND)) GROUP BY window_start, window_end, auction",
    ),
    (
        // Not a published query: an interval self-join of the bids (each bid meets
        // the bids of the same bidder, auction and price within 100 ms, itself
        // included: about one pair per bid), for the join's cost per row.
        "interval-self-join",
        "auction BIGINT, bidder BIGINT, price BIGINT, next_price BIGINT",
        "SELECT a.auction, a.bidder, a.price, b.price FROM bid a JOIN bid b ON a.auction = b.auction AND a.bidder = b.bidder AND a.price = b.price AND b.date_time BETWEEN a.date_time AND a.date_time + INTERVAL '100' MILLISECOND",
    ),
    (
        "q3",
        "name STRING, city STRING, state STRING, id BIGINT",
        "SELECT P.name, P.city, P.state, A.id FROM auction AS A INNER JOIN person AS P ON A.seller = P.id WHERE A.category = 10 AND (P.state = 'or' OR P.state = 'id' OR P.state = 'ca')",
    ),
    (
        "q4",
        "category BIGINT, avg_final DOUBLE",
        "SELECT Q.category, AVG(Q.final) FROM (SELECT MAX(B.price) AS final, A.category FROM auction A, bid B WHERE A.id = B.auction AND B.date_time BETWEEN A.date_time AND A.expires GROUP BY A.id, A.category) Q GROUP BY Q.category",
    ),
    (
        "q7",
        "auction BIGINT, price BIGINT, bidder BIGINT, date_time TIMESTAMP(3), extra STRING",
        "SELECT B.auction, B.price, B.bidder, B.date_time, B.extra FROM bid B JOIN (SELECT MAX(price) AS maxprice, window_end AS date_time FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '10' SECOND)) GROUP BY window_start, window_end) B1 ON B.price = B1.maxprice WHERE B.date_time BETWEEN B1.date_time - INTERVAL '10' SECOND AND B1.date_time",
    ),
    (
        "q8",
        "id BIGINT, name STRING, stime TIMESTAMP(3)",
        "SELECT P.id, P.name, P.starttime FROM (SELECT id, name, window_start AS starttime, window_end AS endtime FROM TABLE(TUMBLE(TABLE person, DESCRIPTOR(date_time), INTERVAL '10' SECOND)) GROUP BY id, name, window_start, window_end) P JOIN (SELECT seller, window_start AS starttime, window_end AS endtime FROM TABLE(TUMBLE(TABLE auction, DESCRIPTOR(date_time), INTERVAL '10' SECOND)) GROUP BY seller, window_start, window_end) A ON P.id = A.seller AND P.starttime = A.starttime AND P.endtime = A.endtime",
    ),
    (
        "q20",
        "auction BIGINT, bidder BIGINT, price BIGINT, channel STRING, url STRING, bid_date_time TIMESTAMP(3), bid_extra STRING, item_name STRING, description STRING, initial_bid BIGINT, reserve BIGINT, auction_date_time TIMESTAMP(3), expires TIMESTAMP(3), seller BIGINT, category BIGINT, auction_extra STRING",
        "SELECT auction, bidder, price, channel, url, B.date_time, B.extra, item_name, description, initial_bid, reserve, A.date_time, expires, seller, category, A.extra FROM bid AS B INNER JOIN auction AS A ON B.auction = A.id WHERE A.category = 10",
    ),
    (
        // Winning bids: the highest bid of each auction before it expires (a regular
        // join, as in Flink: `expires` is no time bound), then a Top-1 per auction.
        "q9",
        "id BIGINT, item_name STRING, description STRING, initial_bid BIGINT, reserve BIGINT, date_time TIMESTAMP(3), expires TIMESTAMP(3), seller BIGINT, category BIGINT, extra STRING, auction BIGINT, bidder BIGINT, price BIGINT, bid_date_time TIMESTAMP(3), bid_extra STRING",
        "SELECT id, item_name, description, initial_bid, reserve, date_time, expires, seller, category, extra, auction, bidder, price, bid_date_time, bid_extra FROM (SELECT A.*, B.auction, B.bidder, B.price, B.date_time AS bid_date_time, B.extra AS bid_extra, ROW_NUMBER() OVER (PARTITION BY A.id ORDER BY B.price DESC, B.date_time ASC) AS rownum FROM auction A, bid B WHERE A.id = B.auction AND B.date_time BETWEEN A.date_time AND A.expires) WHERE rownum <= 1",
    ),
    (
        // The ten highest bids of each auction: a continuous Top-N.
        "q19",
        "auction BIGINT, bidder BIGINT, price BIGINT, channel STRING, url STRING, date_time TIMESTAMP(3), extra STRING, rank_number BIGINT",
        "SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY auction ORDER BY price DESC) AS rank_number FROM bid) WHERE rank_number <= 10",
    ),
    (
        "q11-session",
        "bidder BIGINT, bid_count BIGINT, starttime TIMESTAMP(3), endtime TIMESTAMP(3)",
        "SELECT bidder, COUNT(*), window_start, window_end FROM TABLE(SESSION(TABLE bid PARTITION BY bidder, DESCRIPTOR(date_time), INTERVAL '10' SECOND)) GROUP BY bidder, window_start, window_end",
    ),
];

fn main() {
    // As the `eddy` binary does.
    eddy::allocator::tune();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str, default: u64| flag_value(&args, flag, default);
    // `cargo test --all-targets` runs this without `--bench`: a quick smoke run then.
    let default_events = if args.iter().any(|a| a == "--bench") { 10_000_000 } else { 100_000 };
    let events = value("--events", default_events);
    let parallelism = value("--parallelism", 1);
    let selected: Vec<&String> = args.iter().filter(|a| QUERIES.iter().any(|(n, _, _)| n == a)).collect();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    // `--checkpoint-cost`: the selected queries (default q5-hop) without checkpoints,
    // then saving checkpoints every 10 s and every 1 s.
    let checkpoint_cost = args.iter().any(|a| a == "--checkpoint-cost");
    let settings: Vec<(&str, Option<&str>)> =
        if checkpoint_cost { vec![("none", None), ("every 10 s", Some("10 s")), ("every 1 s", Some("1 s"))] } else { vec![("", Some("0"))] };
    let checkpoints = tempfile::tempdir().expect("temp dir");
    println!("nexmark: {events} events per query, parallelism {parallelism}, blackhole sink");
    for (name, columns, query) in QUERIES {
        if !selected.is_empty() && !selected.iter().any(|s| s.as_str() == *name) {
            continue;
        }
        if checkpoint_cost && selected.is_empty() && *name != "q5-hop" {
            continue;
        }
        for (label, interval) in &settings {
            let checkpointing = match interval {
                None => "SET 'execution.checkpointing.interval' = '0';".to_string(),
                Some("0") => String::new(),
                Some(every) => format!(
                    "SET 'execution.checkpointing.interval' = '{every}'; SET 'state.checkpoints.dir' = '{}';",
                    checkpoints.path().join(label.replace(' ', "-")).display()
                ),
            };
            let name = if label.is_empty() { name.to_string() } else { format!("{name} ({label})") };
            let sql = format!(
                "{checkpointing}
             SET 'parallelism' = '{parallelism}';
             CREATE TABLE bid ({BID}, WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND)
               WITH ('connector' = 'nexmark', 'nexmark.table' = 'bid', 'events.num' = '{events}', 'nexmark.base-time' = '1700000000000');
             CREATE TABLE auction ({AUCTION}, WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND)
               WITH ('connector' = 'nexmark', 'nexmark.table' = 'auction', 'events.num' = '{events}', 'nexmark.base-time' = '1700000000000');
             CREATE TABLE person ({PERSON}, WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND)
               WITH ('connector' = 'nexmark', 'nexmark.table' = 'person', 'events.num' = '{events}', 'nexmark.base-time' = '1700000000000');
             CREATE TABLE sink ({columns}) WITH ('connector' = 'blackhole');
             INSERT INTO sink {query};"
            );
            let result = run_script(&runtime, &sql).map(|Measured { summary, metrics, wall, cpu }| {
                let checkpoint = match metrics.checkpoint_id.load(std::sync::atomic::Ordering::Relaxed) {
                    0 => String::new(),
                    id => format!(
                        ", last checkpoint {id}: {} ms, {} bytes",
                        metrics.checkpoint_ms.load(std::sync::atomic::Ordering::Relaxed),
                        metrics.checkpoint_bytes.load(std::sync::atomic::Ordering::Relaxed)
                    ),
                };
                let state = metrics.state_bytes.load(std::sync::atomic::Ordering::Relaxed);
                (summary, wall, cpu, checkpoint, state)
            });
            match result {
                // Events of the whole stream a query's tables hold: its rows read, for
                // queries over bids only (as before); all events for joins (also of
                // the bids with themselves, as q7's: its rows read count each bid
                // twice), as the published Nexmark figures count them.
                Ok((summary, wall, cpu, checkpoint, state)) => {
                    let joins = [" JOIN ", "auction A", "person"].iter().any(|t| query.contains(t));
                    let counted = if joins { events } else { summary.metrics.rows_in };
                    println!(
                    "{name:<22} {:>8.2} M events/CPU-s  {:>8.2} M events/s wall  ({} rows read, {counted} events counted of {events} in {wall:.2}s wall, {cpu:.2}s CPU, {} rows out, state at the end {state} bytes{checkpoint})",
                    counted as f64 / cpu.max(1e-9) / 1e6,
                    counted as f64 / wall / 1e6,
                    summary.metrics.rows_in,
                    summary.metrics.rows_out
                )
                }
                Err(e) => println!("{name:<22} failed: {e}"),
            }
        }
    }
}
