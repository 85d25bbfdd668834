//! A column-oriented re-implementation of the `nexmark` crate's bid generator
//! (the reference Nexmark rules), for the benchmark hot path.
//!
//! It draws exactly the same random numbers in the same order as
//! `nexmark::event::Bid::new` with the default configuration, so its bids are
//! identical to the crate's (a test checks every column), but it allocates
//! nothing per event: channels and URLs are indexes into a shared table, and the
//! `extra` string (the costliest part) is only drawn when that column is wanted.

use std::sync::{Arc, OnceLock};

use datafusion::arrow::array::{ArrayRef, Int64Array, StringArray, StringBuilder, TimestampMillisecondArray};
use datafusion::arrow::buffer::OffsetBuffer;
use nexmark::config::NexmarkConfig;
use rand::rngs::SmallRng;
use rand::{Rng, RngCore, SeedableRng};

/// The reference generator's constants (its defaults); checked against the crate in tests.
const PROPORTION_DENOMINATOR: usize = 50;
const PERSON_PROPORTION: usize = 1;
const AUCTION_PROPORTION: usize = 3;
const BID_PROPORTION: usize = 46;
const HOT_RATIO: usize = 100;
const MIN_STRING_LENGTH: usize = 3;
const CHANNEL_NUMBER: usize = 10_000;

/// Channel names and URLs: the 4 hot channels first, then the 10,000 others.
struct Channels {
    names: Vec<String>,
    urls: Vec<String>,
}

/// `SmallRng::seed_from_u64(seed)`, spelled out so it inlines into the per-event
/// loop: rand_core's default `seed_from_u64` (a PCG32 sequence fills the seed),
/// which `SmallRng` uses, then `from_seed`.
#[inline]
fn event_rng(mut state: u64) -> SmallRng {
    const MUL: u64 = 6_364_136_223_846_793_005;
    const INC: u64 = 11_634_580_027_462_260_723;
    let mut seed = <SmallRng as SeedableRng>::Seed::default();
    for chunk in seed.as_mut().chunks_exact_mut(4) {
        state = state.wrapping_mul(MUL).wrapping_add(INC);
        let xorshifted = (((state >> 18) ^ state) >> 27) as u32;
        chunk.copy_from_slice(&xorshifted.rotate_right((state >> 59) as u32).to_le_bytes());
    }
    SmallRng::from_seed(seed)
}

/// `rng.gen_range(b'a'..=b'z')` as rand 0.8 draws it for `u8` (a `u32` sample,
/// widening multiply, rejection zone), with the zone computed once instead of a
/// division per letter: the same letters from the same generator, several times faster.
#[inline]
fn letter(rng: &mut SmallRng) -> u8 {
    const RANGE: u32 = 26;
    const ZONE: u32 = u32::MAX - ((u32::MAX - RANGE + 1) % RANGE);
    loop {
        let wide = u64::from(rng.next_u32()) * u64::from(RANGE);
        if (wide as u32) <= ZONE {
            return b'a' + (wide >> 32) as u8;
        }
    }
}

fn gen_string_with_delimiter(rng: &mut SmallRng, max: usize, delimiter: char) -> String {
    let len = rng.gen_range(MIN_STRING_LENGTH..max);
    (0..len).map(|_| if rng.gen_range(0..13) == 0 { delimiter } else { rng.gen_range(b'a'..=b'z') as char }).collect()
}

fn base_url(seed: u64) -> String {
    let mut rng = SmallRng::seed_from_u64(seed);
    let id0 = gen_string_with_delimiter(&mut rng, 5, '_');
    let id1 = gen_string_with_delimiter(&mut rng, 5, '_');
    let id2 = gen_string_with_delimiter(&mut rng, 5, '_');
    format!("https://www.nexmark.com/{id0}/{id1}/{id2}/item.htm?query=1")
}

fn channels() -> &'static Channels {
    static CHANNELS: OnceLock<Channels> = OnceLock::new();
    CHANNELS.get_or_init(|| {
        let cfg = NexmarkConfig { base_time: 0, ..NexmarkConfig::default() };
        let mut names = cfg.hot_channels.clone();
        let mut urls = cfg.hot_urls.clone();
        for i in 0..CHANNEL_NUMBER {
            let mut url = base_url(i as u64);
            let mut rng = SmallRng::seed_from_u64(i as u64);
            if rng.gen_range(0..10) > 0 {
                url.push_str("&channel_id=");
                url.push_str(&i64::abs((i as i32).reverse_bits() as i64).to_string());
            }
            names.push(format!("channel-{i}"));
            urls.push(url);
        }
        Channels { names, urls }
    })
}

/// Bid columns of one batch, before they become Arrow arrays.
#[derive(Default)]
pub(super) struct BidColumns {
    pub auction: Vec<i64>,
    pub bidder: Vec<i64>,
    pub price: Vec<i64>,
    /// Index into the channel table.
    pub channel: Vec<u16>,
    pub date_time: Vec<i64>,
    /// Present only when requested: the letters of every row back to back, and
    /// where each row's end, so letters are drawn straight into the column's buffer.
    pub extra: Option<(Vec<u8>, Vec<i32>)>,
}

impl BidColumns {
    fn clear(&mut self, capacity: usize, with_extra: bool) {
        for v in [&mut self.auction, &mut self.bidder, &mut self.price, &mut self.date_time] {
            v.clear();
            v.reserve(capacity);
        }
        self.channel.clear();
        self.channel.reserve(capacity);
        self.extra = with_extra.then(|| {
            let mut offsets = Vec::with_capacity(capacity + 1);
            offsets.push(0);
            (Vec::with_capacity(capacity * 68), offsets)
        });
    }

    /// Generator column `index` (see `BID_COLUMNS`), taking the buffer where possible.
    pub fn column(&mut self, index: usize) -> ArrayRef {
        let chans = channels();
        let strings = |idx: &[u16], table: &[String]| -> ArrayRef {
            let bytes = idx.iter().map(|&i| table[i as usize].len()).sum();
            let mut b = StringBuilder::with_capacity(idx.len(), bytes);
            for &i in idx {
                b.append_value(&table[i as usize]);
            }
            Arc::new(b.finish())
        };
        match index {
            0 => Arc::new(Int64Array::from(std::mem::take(&mut self.auction))),
            1 => Arc::new(Int64Array::from(std::mem::take(&mut self.bidder))),
            2 => Arc::new(Int64Array::from(std::mem::take(&mut self.price))),
            3 => strings(&self.channel, &chans.names),
            4 => strings(&self.channel, &chans.urls),
            5 => Arc::new(TimestampMillisecondArray::from(std::mem::take(&mut self.date_time))),
            _ => match self.extra.take() {
                // Lowercase ASCII letters only: valid UTF-8, checked once for the whole column.
                Some((values, offsets)) => match StringArray::try_new(OffsetBuffer::new(offsets.into()), values.into(), None) {
                    Ok(array) => Arc::new(array),
                    Err(_) => Arc::new(StringBuilder::new().finish()),
                },
                None => Arc::new(StringBuilder::new().finish()),
            },
        }
    }
}

/// Generates the bids of one reader: bid offsets `offset, offset + step, ...`.
pub(super) struct BidGenerator {
    base_time: u64,
    /// Microseconds between events, as the reference computes it (f32).
    inter_event_delay: f32,
    offset: u64,
    step: u64,
}

impl BidGenerator {
    /// Bids at offsets `offset + k * step` of the bid stream, events spaced for `rate` events/s.
    pub fn new(base_time: u64, rate: usize, offset: u64, step: u64) -> Self {
        // Warm the channel table now rather than in the first batch.
        channels();
        BidGenerator { base_time, inter_event_delay: 1_000_000f32 / rate as f32 * 1.0f32, offset, step }
    }

    /// The event number (and id) of bid `offset` in the whole event stream.
    fn event_number(offset: u64) -> usize {
        let o = offset as usize;
        o / BID_PROPORTION * PROPORTION_DENOMINATOR + PERSON_PROPORTION + AUCTION_PROPORTION + o % BID_PROPORTION
    }

    fn timestamp_of(&self, event_number: usize) -> u64 {
        self.base_time + ((event_number as f32 * self.inter_event_delay) / 1000.0).round() as u64
    }

    /// The event time of the next bid.
    pub fn next_timestamp(&self) -> u64 {
        self.timestamp_of(Self::event_number(self.offset))
    }

    /// Appends up to `limit` bids to `cols` (cleared first); in paced mode stops before the first
    /// bid later than `due_until`. Returns the number generated.
    pub fn generate(&mut self, cols: &mut BidColumns, limit: usize, with_extra: bool, due_until: Option<u64>) -> usize {
        cols.clear(limit, with_extra);
        for _ in 0..limit {
            let id = Self::event_number(self.offset);
            let time = self.timestamp_of(id);
            if due_until.is_some_and(|due| time > due) {
                break;
            }
            self.offset += self.step;
            let rng = &mut event_rng(id as u64);
            let epoch = id / PROPORTION_DENOMINATOR;
            // Auction::last_id for a bid event, and Person::last_id.
            let last_auction = epoch * AUCTION_PROPORTION + (AUCTION_PROPORTION - 1);
            let last_person = epoch * PERSON_PROPORTION;
            let auction = if 0 < rng.gen_range(0..2usize) {
                (last_auction / HOT_RATIO) * HOT_RATIO
            } else {
                let min = last_auction.saturating_sub(100);
                min + rng.gen_range(0..last_auction - min + 1 + 10)
            };
            let bidder = if 0 < rng.gen_range(0..4usize) {
                (last_person / HOT_RATIO) * HOT_RATIO + 1
            } else {
                let people = last_person + 1;
                let active = people.min(1000);
                people - active + rng.gen_range(0..active + 10)
            };
            let price = (10.0_f32.powf(rng.gen::<f32>() * 6.0) * 100.0).round() as usize;
            let channel = if rng.gen_range(0..2usize) > 0 {
                rng.gen_range(0..4usize)
            } else {
                // The draw `CHANNEL_URL_MAP.choose(rng)` makes in the crate (rand 0.8's gen_index).
                4 + rng.gen_range(0..CHANNEL_NUMBER as u32) as usize
            };
            cols.auction.push((auction + 1000) as i64);
            cols.bidder.push((bidder + 1000) as i64);
            cols.price.push(price as i64);
            cols.channel.push(channel as u16);
            cols.date_time.push(time as i64);
            if let Some((values, offsets)) = &mut cols.extra {
                // gen_next_extra(32, 100): 54 + [0, 28) lowercase letters.
                let len = 54 + rng.gen_range(0..28usize);
                values.extend((0..len).map(|_| letter(rng)));
                offsets.push(values.len() as i32);
            }
        }
        cols.auction.len()
    }
}
