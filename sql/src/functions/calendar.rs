//! Calendar arithmetic on timestamps, as Flink does it: `TIMESTAMPADD`,
//! `TIMESTAMPDIFF`, and `FLOOR`/`CEIL(ts TO unit)`. Months and years follow
//! the calendar (adding a month to 31 January gives the last day of February;
//! a difference counts whole months as Calcite does, so 31 January to 29
//! February is one);
//! shorter units are fixed numbers of milliseconds.

use std::sync::Arc;

use chrono::{DateTime, Datelike, Months, NaiveDate, NaiveDateTime, TimeDelta};
use datafusion::arrow::array::{ArrayRef, Int32Array, TimestampMillisecondArray};
use datafusion::arrow::datatypes::{Int64Type, TimestampMillisecondType};
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::logical_expr::{ColumnarValue, ScalarUDF};

use super::flink_fn::{constant_str, FlinkFn, Param, Prims, Strs, MILLIS};

/// The internal names `FLOOR(ts TO unit)` and `CEIL(ts TO unit)` are planned as
/// (see [`super::syntax`]): DataFusion has no datetime form of either.
pub(crate) const FLOOR_TO: &str = "__eddy_floor_to";
pub(crate) const CEIL_TO: &str = "__eddy_ceil_to";

/// Flink's calendar arithmetic.
pub(super) fn functions() -> Vec<ScalarUDF> {
    use Param::{Int, Str, Timestamp};
    vec![
        FlinkFn::new("TIMESTAMPADD", "TIMESTAMPADD(unit, count, timestamp)", &[Str, Int, Timestamp], 3, |_| MILLIS, timestamp_add).checking(check_unit).udf(),
        FlinkFn::new(
            "TIMESTAMPDIFF",
            "TIMESTAMPDIFF(unit, timestamp1, timestamp2)",
            &[Str, Timestamp, Timestamp],
            3,
            |_| datafusion::arrow::datatypes::DataType::Int32,
            timestamp_diff,
        )
        .checking(check_unit)
        .udf(),
        FlinkFn::new(FLOOR_TO, "FLOOR(timestamp TO unit)", &[Str, Timestamp], 2, |_| MILLIS, |a, n| round_to(a, n, Rounding::Down)).checking(check_unit).udf(),
        FlinkFn::new(CEIL_TO, "CEIL(timestamp TO unit)", &[Str, Timestamp], 2, |_| MILLIS, |a, n| round_to(a, n, Rounding::Up)).checking(check_unit).udf(),
    ]
}

/// A unit of calendar arithmetic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unit {
    Millisecond,
    Second,
    Minute,
    Hour,
    Day,
    Week,
    Month,
    Quarter,
    Year,
}

impl Unit {
    /// The unit a SQL keyword names (`DAY`, `hour`, `SQL_TSI_DAY`), if any.
    pub(crate) fn parse(name: &str) -> Option<Unit> {
        let name = name.trim().to_ascii_uppercase();
        Some(match name.strip_prefix("SQL_TSI_").unwrap_or(&name) {
            "MILLISECOND" => Unit::Millisecond,
            "SECOND" => Unit::Second,
            "MINUTE" => Unit::Minute,
            "HOUR" => Unit::Hour,
            "DAY" => Unit::Day,
            "WEEK" => Unit::Week,
            "MONTH" => Unit::Month,
            "QUARTER" => Unit::Quarter,
            "YEAR" => Unit::Year,
            _ => return None,
        })
    }

    /// Milliseconds in one unit, for the units of fixed length.
    fn fixed_ms(self) -> Option<i64> {
        Some(match self {
            Unit::Millisecond => 1,
            Unit::Second => 1_000,
            Unit::Minute => 60_000,
            Unit::Hour => 3_600_000,
            Unit::Day => 86_400_000,
            Unit::Week => 7 * 86_400_000,
            Unit::Month | Unit::Quarter | Unit::Year => return None,
        })
    }

    /// Months in one unit, for the calendar units.
    fn months(self) -> Option<u32> {
        match self {
            Unit::Month => Some(1),
            Unit::Quarter => Some(3),
            Unit::Year => Some(12),
            _ => None,
        }
    }
}

fn check_unit(constants: &[Option<&ScalarValue>]) -> std::result::Result<(), String> {
    match constant_str(constants, 0) {
        Some(unit) if Unit::parse(unit).is_none() => {
            Err(format!("'{unit}' is no unit; use MILLISECOND, SECOND, MINUTE, HOUR, DAY, WEEK, MONTH, QUARTER or YEAR"))
        }
        _ => Ok(()),
    }
}

fn datetime(millis: i64) -> Option<NaiveDateTime> {
    DateTime::from_timestamp_millis(millis).map(|t| t.naive_utc())
}

fn millis(t: NaiveDateTime) -> i64 {
    t.and_utc().timestamp_millis()
}

/// Each row's unit; a unit that is no unit (only possible for a column of them) is an error.
fn unit_of(units: &Strs, i: usize) -> Result<Option<Unit>> {
    units.get(i).map(|u| Unit::parse(u).ok_or_else(|| DataFusionError::Execution(format!("'{u}' is no unit of time")))).transpose()
}

/// `TIMESTAMPADD(unit, count, ts)`: `ts` plus `count` units.
fn timestamp_add(args: &[ColumnarValue], rows: usize) -> Result<ArrayRef> {
    let units = Strs::of(&args[0])?;
    let counts = Prims::<Int64Type>::of(&args[1])?;
    let stamps = Prims::<TimestampMillisecondType>::of(&args[2])?;
    let mut out = Vec::with_capacity(rows);
    for i in 0..rows {
        let (Some(unit), Some(count), Some(ts)) = (unit_of(&units, i)?, counts.get(i), stamps.get(i)) else {
            out.push(None);
            continue;
        };
        out.push(match (unit.fixed_ms(), unit.months()) {
            (Some(ms), _) => count.checked_mul(ms).and_then(|d| ts.checked_add(d)),
            (None, Some(months)) => datetime(ts).and_then(|t| add_months(t, count.checked_mul(i64::from(months))?)).map(millis),
            (None, None) => None,
        });
    }
    Ok(Arc::new(TimestampMillisecondArray::from(out)))
}

fn add_months(t: NaiveDateTime, months: i64) -> Option<NaiveDateTime> {
    let magnitude = Months::new(u32::try_from(months.unsigned_abs()).ok()?);
    if months >= 0 {
        t.checked_add_months(magnitude)
    } else {
        t.checked_sub_months(magnitude)
    }
}

/// `TIMESTAMPDIFF(unit, ts1, ts2)`: whole units from `ts1` to `ts2` (negative
/// when `ts2` is earlier), as an INT.
fn timestamp_diff(args: &[ColumnarValue], rows: usize) -> Result<ArrayRef> {
    let units = Strs::of(&args[0])?;
    let from = Prims::<TimestampMillisecondType>::of(&args[1])?;
    let to = Prims::<TimestampMillisecondType>::of(&args[2])?;
    let mut out = Vec::with_capacity(rows);
    for i in 0..rows {
        let (Some(unit), Some(a), Some(b)) = (unit_of(&units, i)?, from.get(i), to.get(i)) else {
            out.push(None);
            continue;
        };
        let units = match (unit.fixed_ms(), unit.months()) {
            (Some(ms), _) => (b - a) / ms,
            (None, Some(per)) => months_between(a, b).map(|m| m / i64::from(per)).unwrap_or(0),
            (None, None) => 0,
        };
        out.push(i32::try_from(units).ok());
    }
    Ok(Arc::new(Int32Array::from(out)))
}

/// Whole months from `a` to `b`, as Calcite counts them (and so Flink): by
/// dates first, a month counting once adding it to `a`'s date (clamped to the
/// month's last day) reaches `b`'s, so 31 January to 29 February is a month;
/// then one fewer when that lands on `b`'s very date at a later time of day.
fn months_between(a: i64, b: i64) -> Option<i64> {
    const DAY: i64 = 86_400_000;
    let (millis_a, millis_b) = (a.rem_euclid(DAY), b.rem_euclid(DAY));
    let (day_a, day_b) = ((a - millis_a) / DAY, (b - millis_b) / DAY);
    let mut months = date_months(day_b, day_a)?;
    if add_months_to_day(day_a, months)? == day_b && millis_b < millis_a {
        months -= 1;
    }
    Some(months)
}

/// Calcite's `subtractMonths` over days since the epoch: months from `from` to `to`.
fn date_months(to: i64, from: i64) -> Option<i64> {
    if to < from {
        return date_months(from, to).map(|m| -m);
    }
    // No month is longer than 31 days, so this starts at or below the answer.
    let mut months = (to - from) / 31;
    loop {
        if add_months_to_day(from, months)? >= to || add_months_to_day(from, months + 1)? > to {
            return Some(months);
        }
        months += 1;
    }
}

fn add_months_to_day(day: i64, months: i64) -> Option<i64> {
    let date = NaiveDate::from_num_days_from_ce_opt(i32::try_from(day + 719_163).ok()?)?;
    let moved = add_months(date.and_hms_opt(0, 0, 0)?, months)?;
    Some(i64::from(moved.date().num_days_from_ce()) - 719_163)
}

/// Which way [`round_to`] goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rounding {
    Down,
    Up,
}

/// `FLOOR(ts TO unit)` / `CEIL(ts TO unit)`: the start of the unit `ts` is in,
/// or of the next one unless `ts` is already on a boundary. Weeks start on
/// Sunday, as in Flink.
fn round_to(args: &[ColumnarValue], rows: usize, rounding: Rounding) -> Result<ArrayRef> {
    let units = Strs::of(&args[0])?;
    let stamps = Prims::<TimestampMillisecondType>::of(&args[1])?;
    let mut out = Vec::with_capacity(rows);
    for i in 0..rows {
        let (Some(unit), Some(ts)) = (unit_of(&units, i)?, stamps.get(i)) else {
            out.push(None);
            continue;
        };
        let floor = floor(unit, ts);
        out.push(match (rounding, floor) {
            (Rounding::Up, Some(f)) if f != ts => next(unit, f),
            (_, f) => f,
        });
    }
    Ok(Arc::new(TimestampMillisecondArray::from(out)))
}

fn floor(unit: Unit, ts: i64) -> Option<i64> {
    let t = datetime(ts)?;
    let date = |d: NaiveDate| Some(millis(d.and_hms_opt(0, 0, 0)?));
    match unit {
        Unit::Week => date(t.date() - TimeDelta::days(i64::from(t.weekday().num_days_from_sunday()))),
        Unit::Month => date(t.date().with_day(1)?),
        Unit::Quarter => date(NaiveDate::from_ymd_opt(t.year(), (t.month0() / 3) * 3 + 1, 1)?),
        Unit::Year => date(NaiveDate::from_ymd_opt(t.year(), 1, 1)?),
        fixed => fixed.fixed_ms().map(|ms| ts.div_euclid(ms) * ms),
    }
}

fn next(unit: Unit, floor: i64) -> Option<i64> {
    match (unit.fixed_ms(), unit.months()) {
        (Some(ms), _) => floor.checked_add(ms),
        (None, Some(months)) => add_months(datetime(floor)?, i64::from(months)).map(millis),
        (None, None) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> i64 {
        millis(NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.3f").expect("a timestamp"))
    }

    #[test]
    fn months_count_as_calcite_counts_them() {
        // Flink 2.3's answers (tests/slt/functions/temporal.slt).
        assert_eq!(months_between(at("2024-01-31 00:00:00.000"), at("2024-02-29 00:00:00.000")), Some(1), "to the month's last day");
        assert_eq!(months_between(at("2024-01-31 00:00:00.000"), at("2024-03-31 00:00:00.000")), Some(2));
        assert_eq!(months_between(at("2024-03-31 12:00:00.000"), at("2024-01-31 12:00:01.000")), Some(-2));
        assert_eq!(months_between(at("2024-01-15 12:00:00.000"), at("2024-02-15 11:59:59.999")), Some(0), "the same date, earlier in the day");
    }

    #[test]
    fn floors_and_ceilings_land_on_unit_starts() {
        let ts = at("2024-02-29 13:05:09.123");
        assert_eq!(floor(Unit::Hour, ts), Some(at("2024-02-29 13:00:00.000")));
        assert_eq!(floor(Unit::Week, ts), Some(at("2024-02-25 00:00:00.000")), "the Sunday before");
        assert_eq!(floor(Unit::Quarter, ts), Some(at("2024-01-01 00:00:00.000")));
        assert_eq!(next(Unit::Month, at("2024-01-01 00:00:00.000")), Some(at("2024-02-01 00:00:00.000")));
        assert_eq!(floor(Unit::Second, at("1969-12-31 23:59:59.500")), Some(at("1969-12-31 23:59:59.000")), "before the epoch");
    }
}
