//! Reading an interval join's time bounds out of its `ON` condition, as Flink's
//! `IntervalJoinUtil` does: comparisons between the two sides' time columns, each
//! optionally shifted by an interval literal (`b.ts BETWEEN a.ts - INTERVAL '5'
//! MINUTE AND a.ts + INTERVAL '10' MINUTE`, `b.ts > a.ts AND b.ts <= a.ts + ...`).

use std::sync::Arc;

use datafusion::common::{JoinSide as FilterSide, ScalarValue};
use datafusion::logical_expr::Operator;
use datafusion::physical_expr::expressions::{BinaryExpr, CastExpr, Column, Literal};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::joins::utils::JoinFilter;
use eddy_engine::plan::TimeBounds;

/// Why a join's time condition is refused. A condition that does not bound both
/// sides' times is no interval at all: the join is a regular join, as in Flink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum NoBounds {
    /// An interval of months, whose length in milliseconds varies.
    MonthInterval,
    /// The bounds leave no time difference that matches.
    Empty,
}

impl NoBounds {
    /// The message for the user.
    pub(super) fn message(&self) -> &'static str {
        match self {
            NoBounds::MonthInterval => "an interval join's bounds must be fixed lengths (seconds, minutes, hours, days), not months or years",
            NoBounds::Empty => "the join's time bounds leave no time difference that matches (the lower bound is above the upper)",
        }
    }
}

/// `column + offset_ms`, one side of a comparison.
struct Term {
    /// Index into the filter's intermediate columns.
    column: usize,
    offset_ms: i64,
}

/// The time bounds of `filter`, whose columns come from both sides: `None` when
/// it does not compare one time column of each side both ways (a regular join).
pub(super) fn time_bounds(filter: &JoinFilter) -> Result<Option<TimeBounds>, NoBounds> {
    let mut conjuncts = Vec::new();
    split_and(filter.expression(), &mut conjuncts);
    let (mut lower, mut upper): (Option<i64>, Option<i64>) = (None, None);
    let mut columns: Option<(usize, usize)> = None;
    let mut month = false;
    for conjunct in conjuncts {
        let Some(binary) = conjunct.downcast_ref::<BinaryExpr>() else { continue };
        let op = *binary.op();
        if !matches!(op, Operator::Lt | Operator::LtEq | Operator::Gt | Operator::GtEq | Operator::Eq) {
            continue;
        }
        let (Some(a), Some(b)) = (term(binary.left(), &mut month), term(binary.right(), &mut month)) else { continue };
        let side = |t: &Term| filter.column_indices().get(t.column).map(|c| (c.side, c.index));
        let (Some((side_a, index_a)), Some((side_b, index_b))) = (side(&a), side(&b)) else { continue };
        // right - left `op` constant
        let (op, constant, left, right) = match (side_a, side_b) {
            (FilterSide::Right, FilterSide::Left) => (op, b.offset_ms - a.offset_ms, index_b, index_a),
            (FilterSide::Left, FilterSide::Right) => (flip(op), a.offset_ms - b.offset_ms, index_a, index_b),
            _ => continue,
        };
        if !is_time(filter, &a) || !is_time(filter, &b) {
            continue;
        }
        if columns.is_some_and(|c| c != (left, right)) {
            return Ok(None);
        }
        columns = Some((left, right));
        let tighten_lower = |c: i64, lower: &mut Option<i64>| *lower = Some(lower.map_or(c, |l| l.max(c)));
        let tighten_upper = |c: i64, upper: &mut Option<i64>| *upper = Some(upper.map_or(c, |u| u.min(c)));
        match op {
            Operator::GtEq => tighten_lower(constant, &mut lower),
            Operator::Gt => tighten_lower(constant.saturating_add(1), &mut lower),
            Operator::LtEq => tighten_upper(constant, &mut upper),
            Operator::Lt => tighten_upper(constant.saturating_sub(1), &mut upper),
            _ => {
                tighten_lower(constant, &mut lower);
                tighten_upper(constant, &mut upper);
            }
        }
    }
    if month {
        return Err(NoBounds::MonthInterval);
    }
    let Some((left_time, right_time)) = columns else { return Ok(None) };
    match (lower, upper) {
        (Some(lower_ms), Some(upper_ms)) if lower_ms <= upper_ms => Ok(Some(TimeBounds { left_time, right_time, lower_ms, upper_ms })),
        (Some(_), Some(_)) => Err(NoBounds::Empty),
        _ => Ok(None),
    }
}

fn split_and<'a>(expr: &'a Arc<dyn PhysicalExpr>, out: &mut Vec<&'a Arc<dyn PhysicalExpr>>) {
    match expr.downcast_ref::<BinaryExpr>() {
        Some(b) if *b.op() == Operator::And => {
            split_and(b.left(), out);
            split_and(b.right(), out);
        }
        _ => out.push(expr),
    }
}

/// `a op b` as `b flip(op) a`.
fn flip(op: Operator) -> Operator {
    match op {
        Operator::Lt => Operator::Gt,
        Operator::LtEq => Operator::GtEq,
        Operator::Gt => Operator::Lt,
        Operator::GtEq => Operator::LtEq,
        other => other,
    }
}

/// `column`, `column + interval` or `column - interval` (casts of the column looked through).
fn term(expr: &Arc<dyn PhysicalExpr>, month: &mut bool) -> Option<Term> {
    if let Some(c) = column(expr) {
        return Some(Term { column: c, offset_ms: 0 });
    }
    let binary = expr.downcast_ref::<BinaryExpr>()?;
    let sign = match binary.op() {
        Operator::Plus => 1,
        Operator::Minus => -1,
        _ => return None,
    };
    let c = column(binary.left())?;
    let literal = binary.right().downcast_ref::<Literal>()?;
    let ms = interval_ms(literal.value(), month)?;
    Some(Term { column: c, offset_ms: sign * ms })
}

fn column(expr: &Arc<dyn PhysicalExpr>) -> Option<usize> {
    if let Some(c) = expr.downcast_ref::<Column>() {
        return Some(c.index());
    }
    expr.downcast_ref::<CastExpr>().and_then(|c| column(c.expr()))
}

fn interval_ms(value: &ScalarValue, month: &mut bool) -> Option<i64> {
    match value {
        ScalarValue::IntervalMonthDayNano(Some(v)) => {
            *month |= v.months != 0;
            Some(i64::from(v.days) * 86_400_000 + v.nanoseconds / 1_000_000)
        }
        ScalarValue::IntervalDayTime(Some(v)) => Some(i64::from(v.days) * 86_400_000 + i64::from(v.milliseconds)),
        ScalarValue::IntervalYearMonth(Some(_)) => {
            *month = true;
            None
        }
        ScalarValue::DurationMillisecond(Some(ms)) => Some(*ms),
        ScalarValue::DurationSecond(Some(s)) => s.checked_mul(1000),
        _ => None,
    }
}

fn is_time(filter: &JoinFilter, term: &Term) -> bool {
    filter.schema().fields().get(term.column).is_some_and(|f| matches!(f.data_type(), datafusion::arrow::datatypes::DataType::Timestamp(_, _)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::IntervalMonthDayNano;
    use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use datafusion::physical_plan::joins::utils::ColumnIndex;

    /// A filter over (left ts, right ts, left amount) built from `conjuncts` of
    /// (column a, offset a in seconds, op, column b, offset b in seconds).
    fn filter(conjuncts: &[(usize, i64, Operator, usize, i64)]) -> JoinFilter {
        let ts = DataType::Timestamp(TimeUnit::Millisecond, None);
        let schema = Arc::new(Schema::new(vec![Field::new("lts", ts.clone(), true), Field::new("rts", ts, true), Field::new("amount", DataType::Int64, true)]));
        let term = |c: usize, secs: i64| -> Arc<dyn PhysicalExpr> {
            let col: Arc<dyn PhysicalExpr> = Arc::new(Column::new(schema.field(c).name(), c));
            if secs == 0 {
                return col;
            }
            let interval = Arc::new(Literal::new(ScalarValue::IntervalMonthDayNano(Some(IntervalMonthDayNano::new(0, 0, secs.abs() * 1_000_000_000)))));
            Arc::new(BinaryExpr::new(col, if secs > 0 { Operator::Plus } else { Operator::Minus }, interval))
        };
        let mut expr: Option<Arc<dyn PhysicalExpr>> = None;
        for &(a, sa, op, b, sb) in conjuncts {
            let c: Arc<dyn PhysicalExpr> = Arc::new(BinaryExpr::new(term(a, sa), op, term(b, sb)));
            expr = Some(match expr {
                None => c,
                Some(e) => Arc::new(BinaryExpr::new(e, Operator::And, c)),
            });
        }
        let indices = vec![
            ColumnIndex { index: 3, side: FilterSide::Left },
            ColumnIndex { index: 2, side: FilterSide::Right },
            ColumnIndex { index: 1, side: FilterSide::Left },
        ];
        JoinFilter::new(expr.unwrap(), indices, schema)
    }

    #[test]
    fn between_gives_both_bounds_in_milliseconds() {
        // rts BETWEEN lts - 5 s AND lts + 10 s
        let bounds = time_bounds(&filter(&[(1, 0, Operator::GtEq, 0, -5), (1, 0, Operator::LtEq, 0, 10)])).unwrap().unwrap();
        assert_eq!(bounds, TimeBounds { left_time: 3, right_time: 2, lower_ms: -5000, upper_ms: 10_000 });
    }

    #[test]
    fn strict_comparisons_and_reversed_sides_are_normalised() {
        // lts < rts + 30 s (rts - lts > -30 s) and rts < lts + 2 s
        let bounds = time_bounds(&filter(&[(0, 0, Operator::Lt, 1, 30), (1, 0, Operator::Lt, 0, 2)])).unwrap().unwrap();
        assert_eq!((bounds.lower_ms, bounds.upper_ms), (-29_999, 1_999));
        // lts = rts
        let equal = time_bounds(&filter(&[(0, 0, Operator::Eq, 1, 0)])).unwrap().unwrap();
        assert_eq!((equal.lower_ms, equal.upper_ms), (0, 0));
    }

    #[test]
    fn a_condition_without_two_bounds_is_no_interval_and_empty_bounds_are_refused() {
        assert_eq!(time_bounds(&filter(&[(1, 0, Operator::GtEq, 0, 0)])), Ok(None));
        let amount_only = filter(&[(2, 0, Operator::Gt, 2, 0)]);
        assert_eq!(time_bounds(&amount_only), Ok(None));
        assert_eq!(time_bounds(&filter(&[(1, 0, Operator::GtEq, 0, 10), (1, 0, Operator::LtEq, 0, 5)])), Err(NoBounds::Empty));
    }
}
