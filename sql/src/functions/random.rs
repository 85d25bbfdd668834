//! Flink's `RAND_INTEGER([seed, ] bound)`: a random INT from 0 (inclusive) to
//! `bound` (exclusive), drawn as Flink draws it, from a `java.util.Random`.
//!
//! Flink gives a call with a constant seed one generator, seeded when the task
//! starts, and draws from it row after row (so the rows of `RAND_INTEGER(1, 10)`
//! are 5, 8, 7, 3, ... as in Java); a seed that is a column seeds a new generator
//! for each row. Eddy's generator is Java's linear congruential one, so the same
//! seed gives the same numbers as Flink. Without a seed the numbers are random.

use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::{ArrayRef, Int32Array};
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::{ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility};

use super::flink_fn::Prims;
use crate::types::sql_type_name;

/// Flink's random-number functions Eddy adds (`RAND` is DataFusion's `random`, without a seed).
pub(super) fn functions() -> Vec<ScalarUDF> {
    vec![ScalarUDF::new_from_impl(RandInteger::new(None))]
}

/// Java's `java.util.Random`: a 48-bit linear congruential generator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct JavaRandom {
    state: u64,
}

impl JavaRandom {
    const MULTIPLIER: u64 = 0x5_DEEC_E66D;
    const ADDEND: u64 = 0xB;
    const MASK: u64 = (1 << 48) - 1;

    /// `new Random(seed)`.
    pub(super) fn new(seed: i64) -> Self {
        JavaRandom { state: (seed as u64 ^ Self::MULTIPLIER) & Self::MASK }
    }

    /// `new Random()`: seeded from the clock and the process's hash keys.
    fn unseeded() -> Self {
        Self::new(std::collections::hash_map::RandomState::new().hash_one(std::time::SystemTime::now()) as i64)
    }

    /// `next(bits)`: the top `bits` of the next state.
    fn next(&mut self, bits: u32) -> i32 {
        self.state = self.state.wrapping_mul(Self::MULTIPLIER).wrapping_add(Self::ADDEND) & Self::MASK;
        (self.state >> (48 - bits)) as u32 as i32
    }

    /// `nextInt(bound)` for a positive `bound`: uniform in `0..bound`.
    pub(super) fn next_int(&mut self, bound: i32) -> i32 {
        let mut r = self.next(31);
        let m = bound - 1;
        if bound & m == 0 {
            // A power of two: the high bits.
            return ((i64::from(bound) * i64::from(r)) >> 31) as i32;
        }
        // Rejects the values of the last, incomplete round of `bound`s, as Java does.
        let mut u = r;
        loop {
            r = u % bound;
            if u.wrapping_sub(r).wrapping_add(m) >= 0 {
                return r;
            }
            u = self.next(31);
        }
    }
}

/// `RAND_INTEGER([seed, ] bound)`. `seeded` is the generator of one call whose seed
/// is a constant; it is made when the call is planned ([`ScalarUDFImpl::simplify`]),
/// so each call in a query has its own, as in Flink.
#[derive(Debug)]
struct RandInteger {
    signature: Signature,
    seeded: Option<Arc<Mutex<JavaRandom>>>,
}

impl RandInteger {
    fn new(seeded: Option<JavaRandom>) -> Self {
        RandInteger { signature: Signature::user_defined(Volatility::Volatile), seeded: seeded.map(|r| Arc::new(Mutex::new(r))) }
    }

    fn usage_error(message: String) -> DataFusionError {
        DataFusionError::Plan(format!("RAND_INTEGER: {message}; usage: RAND_INTEGER([seed, ] bound)"))
    }
}

/// DataFusion compares calls to tell expressions apart.
impl PartialEq for RandInteger {
    /// Two calls are one only when they share a generator (or neither has one).
    fn eq(&self, other: &Self) -> bool {
        match (&self.seeded, &other.seeded) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Eq for RandInteger {}

/// Hashed as compared: by the generator it shares.
impl Hash for RandInteger {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.seeded.as_ref().map(Arc::as_ptr).hash(state);
    }
}

/// The bound as Java's `nextInt` takes it; a bound that is not positive fails the query, as in Flink.
fn checked_bound(bound: i64) -> Result<i32> {
    match i32::try_from(bound) {
        Ok(bound) if bound > 0 => Ok(bound),
        Ok(_) => Err(DataFusionError::Execution(format!("RAND_INTEGER: bound must be positive, not {bound}"))),
        Err(_) => Err(DataFusionError::Execution(format!("RAND_INTEGER: the bound {bound} is no INT"))),
    }
}

impl ScalarUDFImpl for RandInteger {
    fn name(&self) -> &str {
        "rand_integer"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if !(1..=2).contains(&arg_types.len()) {
            return Err(Self::usage_error(format!("takes 1 to 2 arguments, not {}", arg_types.len())));
        }
        arg_types
            .iter()
            .enumerate()
            .map(|(i, given)| match given {
                DataType::Null => Ok(DataType::Int64),
                t if t.is_integer() => Ok(DataType::Int64),
                t => Err(Self::usage_error(format!("argument {} must be an integer, not {}", i + 1, sql_type_name(t)))),
            })
            .collect()
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int32)
    }

    /// Gives a call whose seed is a constant its own generator, seeded now.
    fn simplify(&self, args: Vec<Expr>, _info: &SimplifyContext) -> Result<ExprSimplifyResult> {
        if self.seeded.is_some() || args.len() != 2 {
            return Ok(ExprSimplifyResult::Original(args));
        }
        let seed = match &args[0] {
            Expr::Literal(ScalarValue::Int64(Some(seed)), _) => *seed,
            Expr::Literal(ScalarValue::Int32(Some(seed)), _) => i64::from(*seed),
            _ => return Ok(ExprSimplifyResult::Original(args)),
        };
        let call = ScalarUDF::new_from_impl(RandInteger::new(Some(JavaRandom::new(seed))));
        Ok(ExprSimplifyResult::Simplified(Expr::ScalarFunction(ScalarFunction::new_udf(Arc::new(call), args))))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let (seeds, bounds) = match args.args.as_slice() {
            [bound] => (None, Prims::<Int64Type>::of(bound)?),
            [seed, bound] => (Some((seed, Prims::<Int64Type>::of(seed)?)), Prims::<Int64Type>::of(bound)?),
            _ => return Err(Self::usage_error(format!("takes 1 to 2 arguments, not {}", args.args.len()))),
        };
        let mut out = Vec::with_capacity(rows);
        match seeds {
            // A seed per row: a new generator per row, as Flink makes one.
            Some((ColumnarValue::Array(_), seeds)) => {
                for i in 0..rows {
                    out.push(match (seeds.get(i), bounds.get(i)) {
                        (Some(seed), Some(bound)) => Some(JavaRandom::new(seed).next_int(checked_bound(bound)?)),
                        _ => None,
                    });
                }
            }
            // One constant seed: the call's generator, or (when planning gave it none) one for this batch.
            Some((ColumnarValue::Scalar(_), seeds)) => {
                let Some(seed) = seeds.get(0) else { return Ok(ColumnarValue::Array(Arc::new(Int32Array::new_null(rows)))) };
                let mut own = None;
                let mut shared = match &self.seeded {
                    Some(generator) => Some(generator.lock().map_err(|_| DataFusionError::Execution("RAND_INTEGER: its generator was poisoned".into()))?),
                    None => None,
                };
                let generator = match shared.as_deref_mut() {
                    Some(generator) => generator,
                    None => own.insert(JavaRandom::new(seed)),
                };
                for i in 0..rows {
                    out.push(bounds.get(i).map(checked_bound).transpose()?.map(|bound| generator.next_int(bound)));
                }
            }
            None => {
                let mut generator = JavaRandom::unseeded();
                for i in 0..rows {
                    out.push(bounds.get(i).map(checked_bound).transpose()?.map(|bound| generator.next_int(bound)));
                }
            }
        }
        let out: ArrayRef = Arc::new(Int32Array::from(out));
        Ok(ColumnarValue::Array(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The numbers Flink 2.3 (Java 17's `java.util.Random`) gives for these seeds.
    #[test]
    fn seeded_draws_are_javas() {
        let mut one = JavaRandom::new(1);
        assert_eq!([one.next_int(10), one.next_int(10), one.next_int(10), one.next_int(10)], [5, 8, 7, 3]);
        let mut one = JavaRandom::new(1);
        assert_eq!([one.next_int(10), one.next_int(100), one.next_int(1000)], [5, 88, 847]);
        assert_eq!(JavaRandom::new(1).next_int(100), 85);
        assert_eq!(JavaRandom::new(2).next_int(100), 8);
        assert_eq!(JavaRandom::new(42).next_int(1000), 130);
        assert_eq!(JavaRandom::new(-3).next_int(1000), 164);
        assert_eq!(JavaRandom::new(0).next_int(i32::MAX), 1_569_741_360);
        assert_eq!(JavaRandom::new(1).next_int(16), 11);
        assert_eq!(JavaRandom::new(7).next_int(1), 0);
    }

    #[test]
    fn unseeded_draws_stay_below_the_bound() {
        let mut random = JavaRandom::unseeded();
        assert!((0..1000).all(|_| (0..7).contains(&random.next_int(7))));
    }
}
