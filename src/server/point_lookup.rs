//! Point lookups on a materialized view, answered without planning a query:
//! `SELECT * | columns FROM view WHERE column = literal [AND ...]`, what a
//! dashboard panel or a service sends once per request, often thousands of times
//! a second. Planning it in DataFusion and scanning the view's rows costs
//! milliseconds on a large view; the view's key or a column index
//! ([`MaterializedView::lookup`]) finds the rows in microseconds.
//!
//! Only that exact shape is taken, and only where the answer is certainly the
//! one DataFusion would give: integer literals against integer columns (in the
//! column's range), strings against string columns, booleans against booleans.
//! Anything else (another clause, a cast, an alias, a literal of another type)
//! goes the general way.

use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::ScalarValue;
use datafusion::sql::sqlparser::ast::{BinaryOperator, Expr, ObjectNamePart, Query, SelectItem, SetExpr, TableFactor, UnaryOperator, Value};

use super::views::MaterializedView;
use crate::error::EddyError;

/// A query of the shape a point lookup has.
#[derive(Debug, PartialEq)]
pub struct PointLookup {
    /// The view read.
    pub view: String,
    /// The columns answered, in order; `None` for `*`.
    columns: Option<Vec<String>>,
    /// Each `column = literal` of the WHERE clause.
    equal: Vec<(String, Literal)>,
}

/// A literal a lookup compares with.
#[derive(Debug, PartialEq)]
enum Literal {
    Integer(i128),
    Text(String),
    Boolean(bool),
}

impl PointLookup {
    /// The lookup `query` is, if it is exactly one.
    pub fn of(query: &Query) -> Option<PointLookup> {
        let SetExpr::Select(select) = query.body.as_ref() else { return None };
        let [from] = select.from.as_slice() else { return None };
        let TableFactor::Table { name, alias: None, .. } = &from.relation else { return None };
        let [ObjectNamePart::Identifier(view)] = name.0.as_slice() else { return None };
        let columns = match select.projection.as_slice() {
            [SelectItem::Wildcard(_)] => None,
            items => Some(
                items
                    .iter()
                    .map(|item| match item {
                        SelectItem::UnnamedExpr(Expr::Identifier(column)) => Some(column.value.clone()),
                        _ => None,
                    })
                    .collect::<Option<Vec<_>>>()?,
            ),
        };
        let selection = select.selection.as_ref()?;
        let mut equal = Vec::new();
        conjuncts(selection, &mut equal)?;
        // Nothing else: the query must read back as exactly these parts (no
        // DISTINCT, GROUP BY, ORDER BY, LIMIT, WITH, join... whatever the parser knows).
        let projection = select.projection.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
        if query.to_string() != format!("SELECT {projection} FROM {from} WHERE {selection}") {
            return None;
        }
        Some(PointLookup { view: view.value.clone(), columns, equal })
    }

    /// The lookup's rows from `view`, or `None` when it cannot be answered
    /// without a scan (the caller then plans the query as any other).
    pub fn answer(&self, view: &MaterializedView) -> Result<Option<RecordBatch>, EddyError> {
        let schema = view.schema();
        let mut equal = Vec::with_capacity(self.equal.len());
        for (name, literal) in &self.equal {
            let Ok(column) = schema.index_of(name) else { return Ok(None) };
            let Some(value) = literal.as_value_of(schema.field(column).data_type()) else { return Ok(None) };
            equal.push((column, value));
        }
        let projection = match &self.columns {
            None => (0..schema.fields().len()).collect(),
            Some(names) => {
                let mut projection = Vec::with_capacity(names.len());
                for name in names {
                    let Ok(column) = schema.index_of(name) else { return Ok(None) };
                    if projection.contains(&column) {
                        return Ok(None);
                    }
                    projection.push(column);
                }
                projection
            }
        };
        let failed = |e: datafusion::arrow::error::ArrowError| EddyError::Unsupported(format!("view `{}`: {e}", self.view));
        let Some(rows) = view.lookup(&equal).map_err(failed)? else { return Ok(None) };
        Ok(Some(rows.project(&projection).map_err(failed)?))
    }
}

/// Each `column = literal` of a chain of ANDs, or `None` if it holds anything else.
fn conjuncts(expr: &Expr, equal: &mut Vec<(String, Literal)>) -> Option<()> {
    match expr {
        Expr::BinaryOp { left, op: BinaryOperator::And, right } => {
            conjuncts(left, equal)?;
            conjuncts(right, equal)
        }
        Expr::BinaryOp { left, op: BinaryOperator::Eq, right } => {
            let (column, literal) = match (left.as_ref(), right.as_ref()) {
                (Expr::Identifier(column), other) | (other, Expr::Identifier(column)) => (column, literal(other)?),
                _ => return None,
            };
            equal.push((column.value.clone(), literal));
            Some(())
        }
        _ => None,
    }
}

/// The literal `expr` is, if it is one of the kinds a lookup takes.
fn literal(expr: &Expr) -> Option<Literal> {
    match expr {
        Expr::Value(value) => match &value.value {
            Value::Number(digits, _) if digits.bytes().all(|b| b.is_ascii_digit()) => digits.parse().ok().map(Literal::Integer),
            Value::SingleQuotedString(text) => Some(Literal::Text(text.clone())),
            Value::Boolean(b) => Some(Literal::Boolean(*b)),
            _ => None,
        },
        Expr::UnaryOp { op: UnaryOperator::Minus, expr } => match literal(expr)? {
            Literal::Integer(n) => Some(Literal::Integer(-n)),
            _ => None,
        },
        _ => None,
    }
}

impl Literal {
    /// The literal as a value of a column of type `data_type`, where comparing
    /// them means what it means in the general path; `None` otherwise.
    fn as_value_of(&self, data_type: &DataType) -> Option<ScalarValue> {
        let value = match (self, data_type) {
            (Literal::Integer(n), t) if t.is_integer() => ScalarValue::Decimal128(Some(*n), 38, 0),
            (Literal::Text(text), DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View) => ScalarValue::Utf8(Some(text.clone())),
            (Literal::Boolean(b), DataType::Boolean) => return Some(ScalarValue::Boolean(Some(*b))),
            _ => return None,
        };
        // An integer out of the column's range fails the cast: the general path decides.
        value.cast_to(data_type).ok().filter(|cast| !cast.is_null())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(sql: &str) -> Query {
        let statements = eddy_sql::parse_script(sql).unwrap_or_else(|e| panic!("{e}"));
        match &statements[0].statement {
            eddy_sql::Statement::Select { query } => (**query).clone(),
            other => panic!("not a SELECT: {other:?}"),
        }
    }

    #[test]
    fn takes_the_lookup_shapes() {
        let lookup = PointLookup::of(&parse("SELECT * FROM big WHERE id = 42")).unwrap_or_else(|| panic!("not taken"));
        assert_eq!(lookup, PointLookup { view: "big".into(), columns: None, equal: vec![("id".into(), Literal::Integer(42))] });
        let lookup =
            PointLookup::of(&parse("SELECT label, id FROM `big` WHERE 'x' = label AND id = -7 AND on_sale = TRUE")).unwrap_or_else(|| panic!("not taken"));
        assert_eq!(lookup.columns, Some(vec!["label".to_string(), "id".to_string()]));
        assert_eq!(
            lookup.equal,
            vec![("label".into(), Literal::Text("x".into())), ("id".into(), Literal::Integer(-7)), ("on_sale".into(), Literal::Boolean(true))]
        );
    }

    #[test]
    fn leaves_every_other_query_to_the_planner() {
        for sql in [
            "SELECT * FROM big",
            "SELECT * FROM big WHERE id = 1 LIMIT 1",
            "SELECT * FROM big WHERE id = 1 ORDER BY id",
            "SELECT DISTINCT id FROM big WHERE id = 1",
            "SELECT id FROM big WHERE id = 1 GROUP BY id",
            "SELECT id AS i FROM big WHERE id = 1",
            "SELECT id + 1 FROM big WHERE id = 1",
            "SELECT * FROM big b WHERE id = 1",
            "SELECT * FROM big, other WHERE id = 1",
            "SELECT * FROM big JOIN other ON big.id = other.id WHERE big.id = 1",
            "SELECT * FROM big WHERE id = 1 OR id = 2",
            "SELECT * FROM big WHERE id > 1",
            "SELECT * FROM big WHERE id = 1.5",
            "SELECT * FROM big WHERE id = 1e3",
            "SELECT * FROM big WHERE id = NULL",
            "SELECT * FROM big WHERE id = CAST('1' AS BIGINT)",
            "SELECT * FROM big WHERE big.id = 1",
            "SELECT * FROM big WHERE (id = 1)",
            "WITH b AS (SELECT * FROM big) SELECT * FROM b WHERE id = 1",
            "SELECT * FROM big WHERE id = 1 UNION ALL SELECT * FROM big WHERE id = 2",
        ] {
            assert_eq!(PointLookup::of(&parse(sql)), None, "{sql}");
        }
    }

    #[test]
    fn literals_take_a_columns_type_only_where_comparing_means_the_same() {
        assert_eq!(Literal::Integer(300).as_value_of(&DataType::Int16), Some(ScalarValue::Int16(Some(300))));
        assert_eq!(Literal::Integer(300).as_value_of(&DataType::Int8), None, "out of range");
        assert_eq!(Literal::Integer(-1).as_value_of(&DataType::UInt32), None, "out of range");
        assert_eq!(Literal::Integer(1).as_value_of(&DataType::Float64), None);
        assert_eq!(Literal::Integer(1).as_value_of(&DataType::Utf8), None);
        assert_eq!(Literal::Text("1".into()).as_value_of(&DataType::Int64), None);
        assert_eq!(Literal::Text("a".into()).as_value_of(&DataType::Utf8View), Some(ScalarValue::Utf8View(Some("a".into()))));
        assert_eq!(Literal::Boolean(true).as_value_of(&DataType::Utf8), None);
    }

    mod against_the_planner {
        //! Random views and lookups: every answer the lookup gives is the one
        //! DataFusion gives for the same SQL over the view's rows.
        use std::sync::Arc;

        use datafusion::arrow::array::{Array, BooleanArray, Int16Array, Int64Array, StringArray};
        use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
        use datafusion::datasource::MemTable;
        use eddy_engine::{ChangeBatch, RowKind, Sink};
        use rand::rngs::StdRng;
        use rand::{Rng, SeedableRng};

        use super::*;
        use crate::server::views::ViewSink;

        fn schema() -> SchemaRef {
            Arc::new(Schema::new(vec![
                Field::new("id", DataType::Int64, true),
                Field::new("name", DataType::Utf8, true),
                Field::new("flag", DataType::Boolean, true),
                Field::new("small", DataType::Int16, true),
            ]))
        }

        /// `count` random rows; ids from `ids` (NULL now and then unless `keyed`).
        fn rows(rng: &mut StdRng, ids: &mut dyn Iterator<Item = i64>, count: usize, keyed: bool) -> RecordBatch {
            let ids: Vec<Option<i64>> = ids.take(count).map(|id| (keyed || rng.gen_range(0..10) > 0).then_some(id)).collect();
            let names: Vec<Option<String>> = (0..ids.len()).map(|_| (rng.gen_range(0..10) > 0).then(|| format!("n{}", rng.gen_range(0..8)))).collect();
            let flags: Vec<Option<bool>> = (0..ids.len()).map(|_| (rng.gen_range(0..10) > 0).then(|| rng.gen())).collect();
            let smalls: Vec<Option<i16>> = (0..ids.len()).map(|_| (rng.gen_range(0..10) > 0).then(|| rng.gen_range(-3..4))).collect();
            RecordBatch::try_new(
                schema(),
                vec![
                    Arc::new(Int64Array::from(ids)),
                    Arc::new(StringArray::from(names)),
                    Arc::new(BooleanArray::from(flags)),
                    Arc::new(Int16Array::from(smalls)),
                ],
            )
            .unwrap_or_else(|e| panic!("{e}"))
        }

        /// A random condition on one column, as SQL.
        fn condition(rng: &mut StdRng) -> String {
            match rng.gen_range(0..6) {
                0 | 1 => format!("id = {}", rng.gen_range(-2..40)),
                2 => format!("name = 'n{}'", rng.gen_range(0..9)),
                3 => format!("flag = {}", rng.gen::<bool>()),
                4 => format!("small = {}", [-3, 0, 2, 40_000][rng.gen_range(0..4)]),
                _ => format!("{} = id", rng.gen_range(0..40)),
            }
        }

        fn sorted_cells(batches: &[RecordBatch]) -> Vec<String> {
            let mut rows = Vec::new();
            for batch in batches {
                for row in 0..batch.num_rows() {
                    let cells: Vec<String> = batch
                        .columns()
                        .iter()
                        .map(|c| {
                            if c.is_null(row) {
                                "NULL".into()
                            } else {
                                format!("{:?}", ScalarValue::try_from_array(c, row).unwrap_or_else(|e| panic!("{e}")))
                            }
                        })
                        .collect();
                    rows.push(cells.join("|"));
                }
            }
            rows.sort();
            rows
        }

        async fn planned(view: &MaterializedView, sql: &str) -> Vec<String> {
            let ctx = crate::session::batch_context();
            let table = MemTable::try_new(view.schema(), vec![view.snapshot().unwrap_or_else(|e| panic!("{e}"))]).unwrap_or_else(|e| panic!("{e}"));
            ctx.register_table("v", Arc::new(table)).unwrap_or_else(|e| panic!("{e}"));
            let batches = ctx.sql(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}")).collect().await.unwrap_or_else(|e| panic!("{sql}: {e}"));
            sorted_cells(&batches)
        }

        async fn compare(view: &MaterializedView, rng: &mut StdRng, answered: &mut usize) {
            for _ in 0..12 {
                let mut conditions = vec![condition(rng)];
                if rng.gen_range(0..3) == 0 {
                    conditions.push(condition(rng));
                }
                let columns = ["*", "name, id", "small"][rng.gen_range(0..3)];
                let sql = format!("SELECT {columns} FROM v WHERE {}", conditions.join(" AND "));
                let statements = eddy_sql::parse_script(&sql).unwrap_or_else(|e| panic!("{e}"));
                let eddy_sql::Statement::Select { query } = &statements[0].statement else { panic!("{sql}") };
                let lookup = PointLookup::of(query).unwrap_or_else(|| panic!("not a lookup: {sql}"));
                if let Some(rows) = lookup.answer(view).unwrap_or_else(|e| panic!("{sql}: {e}")) {
                    *answered += 1;
                    assert_eq!(sorted_cells(&[rows]), planned(view, &sql).await, "{sql}");
                }
            }
        }

        #[tokio::test]
        async fn append_only_views_answer_as_the_planner_does() {
            let mut rng = StdRng::seed_from_u64(7);
            let mut answered = 0;
            for _ in 0..5 {
                let view = MaterializedView::new("v", schema(), None).unwrap_or_else(|e| panic!("{e}"));
                let mut sink = ViewSink::new(Arc::clone(&view)).unwrap_or_else(|e| panic!("{e}"));
                for _ in 0..6 {
                    let count = rng.gen_range(0..30);
                    let ids: Vec<i64> = (0..count).map(|_| rng.gen_range(0..40)).collect();
                    let batch = rows(&mut rng, &mut ids.into_iter(), count, false);
                    sink.write(ChangeBatch::inserts(batch)).await.unwrap_or_else(|e| panic!("{e}"));
                    sink.refresh().await.unwrap_or_else(|e| panic!("{e}"));
                    compare(&view, &mut rng, &mut answered).await;
                }
            }
            assert!(answered > 200, "only {answered} lookups were answered without the planner");
        }

        #[tokio::test]
        async fn keyed_views_answer_lookups_by_their_key_as_the_planner_does() {
            let mut rng = StdRng::seed_from_u64(11);
            let mut answered = 0;
            for _ in 0..5 {
                let view = MaterializedView::new("v", schema(), Some(vec![0])).unwrap_or_else(|e| panic!("{e}"));
                let mut sink = ViewSink::new(Arc::clone(&view)).unwrap_or_else(|e| panic!("{e}"));
                for _ in 0..6 {
                    // Upserts of random keys, then retractions of some of them.
                    let ids: Vec<i64> = (0..rng.gen_range(1..20)).map(|_| rng.gen_range(0..40)).collect();
                    let upserts = rows(&mut rng, &mut ids.clone().into_iter(), ids.len(), true);
                    sink.write(ChangeBatch::inserts(upserts)).await.unwrap_or_else(|e| panic!("{e}"));
                    let gone: Vec<i64> = ids.iter().copied().filter(|_| rng.gen_range(0..4) == 0).collect();
                    let deletes = rows(&mut rng, &mut gone.clone().into_iter(), gone.len(), true);
                    sink.write(ChangeBatch::all(RowKind::Delete, deletes)).await.unwrap_or_else(|e| panic!("{e}"));
                    sink.refresh().await.unwrap_or_else(|e| panic!("{e}"));
                    compare(&view, &mut rng, &mut answered).await;
                }
            }
            assert!(answered > 40, "only {answered} lookups were answered by the key");
        }
    }
}
