//! `FOR SYSTEM_TIME AS OF`: Flink's temporal join syntax, carried from the
//! tokens to the join the compiler builds.
//!
//! sqlparser's generic dialect does not parse the clause, and DataFusion would
//! ignore it, so it travels in three steps, as Flink's own planner carries it (a
//! `__TEMPORAL_JOIN_CONDITION` call in the join condition):
//! 1. [`take_clauses`] lifts `FOR SYSTEM_TIME AS OF <column>` out of a query's
//!    tokens (the others keep their positions, so errors still point right), and
//!    [`attach`] puts it on the parsed table, as a dialect that parses it would;
//! 2. [`rewrite_temporal_joins`] turns it into a call of [`MARKER`], ANDed to the
//!    join's `ON` condition, over the `AS OF` column and a column of the versioned
//!    table, so that DataFusion plans the join with the call in its filter, the
//!    two arguments telling which side is which;
//! 3. the compiler finds the call in the join's filter, takes it out, and plans a
//!    temporal join. The function fails when called: a marker left anywhere else
//!    would be a join the compiler did not see as temporal, and running it as a
//!    regular join would give other rows without a word.

use std::ops::ControlFlow;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::{exec_err, Result as DfResult};
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility};
use datafusion::sql::sqlparser::ast::{
    BinaryOperator, Expr, Function, FunctionArg, FunctionArgExpr, FunctionArgumentList, FunctionArguments, Ident, JoinConstraint, JoinOperator, ObjectName,
    Query, SetExpr, TableFactor, TableVersion, VisitMut, VisitorMut,
};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::{Location as TokenLocation, Token, TokenWithSpan};

use crate::error::{Location, Result, SqlError};

/// The function the rewritten `ON` condition calls: (the `AS OF` column, every
/// column of the versioned table). Every column, so that DataFusion keeps them
/// all (the versioned side's time is needed even when the query shows none of
/// it) and cannot rewrite the call through the key equality into a condition on
/// the probe side alone.
pub const MARKER: &str = "__eddy_system_time_as_of";

/// A `FOR SYSTEM_TIME AS OF` clause taken out of the tokens.
#[derive(Debug, Clone)]
pub struct AsOf {
    /// Where the token before `FOR` (the table's name, or its alias) ends.
    table_end: TokenLocation,
    /// Where `FOR` is.
    at: Location,
    /// The `AS OF` column's tokens.
    column: Vec<TokenWithSpan>,
}

fn location_of(token: &TokenWithSpan) -> Location {
    Location { line: token.span.start.line, column: token.span.start.column }
}

fn is_word(token: Option<&TokenWithSpan>, keyword: &str) -> bool {
    matches!(token.map(|t| &t.token), Some(Token::Word(w)) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(keyword))
}

/// Takes every `FOR SYSTEM_TIME AS OF <column>` out of `tokens`.
pub fn take_clauses(tokens: Vec<TokenWithSpan>) -> Result<(Vec<TokenWithSpan>, Vec<AsOf>)> {
    let mut out = Vec::with_capacity(tokens.len());
    let mut clauses = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let clause =
            is_word(tokens.get(i), "FOR") && is_word(tokens.get(i + 1), "SYSTEM_TIME") && is_word(tokens.get(i + 2), "AS") && is_word(tokens.get(i + 3), "OF");
        if !clause {
            out.push(tokens[i].clone());
            i += 1;
            continue;
        }
        let Some(before) = out.last() else {
            return Err(SqlError::syntax(location_of(&tokens[i]), "FOR SYSTEM_TIME AS OF must follow a table name"));
        };
        let table_end = before.span.end;
        // The column: a name, or names joined by dots (`o.ts`).
        let mut end = i + 4;
        let column_start = end;
        loop {
            if !matches!(tokens.get(end).map(|t| &t.token), Some(Token::Word(_))) {
                let at = tokens.get(end).map(location_of).unwrap_or(location_of(&tokens[i + 3]));
                return Err(SqlError::syntax(at, "FOR SYSTEM_TIME AS OF takes a column: the time attribute of the table on the left of the join")
                    .with_hint("write e.g. `JOIN rates FOR SYSTEM_TIME AS OF o.ts AS r ON o.currency = r.currency`"));
            }
            end += 1;
            match tokens.get(end).map(|t| &t.token) {
                Some(Token::Period) => end += 1,
                Some(Token::LParen) => {
                    return Err(SqlError::syntax(location_of(&tokens[end - 1]), "FOR SYSTEM_TIME AS OF takes a column, not a function call")
                        .with_hint("declare the time as a column of the left table (`ts AS ...` with a WATERMARK FOR it) and name that column here; for a lookup join, declare `proc_time AS PROCTIME()` on the left table and write FOR SYSTEM_TIME AS OF o.proc_time"));
                }
                _ => break,
            }
        }
        clauses.push(AsOf { table_end, at: location_of(&tokens[i]), column: tokens[column_start..end].to_vec() });
        i = end;
    }
    Ok((out, clauses))
}

/// Puts each clause taken by [`take_clauses`] on the table it followed, as
/// `TableVersion::ForSystemTimeAsOf`.
pub fn attach(query: &mut Query, clauses: Vec<AsOf>) -> Result<()> {
    struct Attach {
        clauses: Vec<(AsOf, Expr)>,
    }
    impl VisitorMut for Attach {
        type Break = ();
        fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
            if let TableFactor::Table { name, alias, version, .. } = factor {
                let end = name.0.last().and_then(|part| part.as_ident()).map(|ident| ident.span.end);
                // sqlparser prints the alias first (`rates AS r FOR SYSTEM_TIME AS OF o.ts`); Flink writes it after.
                let alias_end = alias.as_ref().map(|alias| alias.name.span.end);
                if let Some(at) = self.clauses.iter().position(|(clause, _)| Some(clause.table_end) == end || Some(clause.table_end) == alias_end) {
                    *version = Some(TableVersion::ForSystemTimeAsOf(self.clauses.swap_remove(at).1));
                }
            }
            ControlFlow::Continue(())
        }
    }
    let mut attach = Attach { clauses: Vec::new() };
    for clause in clauses {
        let expr = Parser::new(&GenericDialect {})
            .with_tokens_with_locations(clause.column.clone())
            .parse_expr()
            .map_err(|e| SqlError::syntax(clause.at, format!("FOR SYSTEM_TIME AS OF: {e}")))?;
        attach.clauses.push((clause, expr));
    }
    let _ = query.visit(&mut attach);
    match attach.clauses.first() {
        Some((clause, _)) => Err(SqlError::syntax(clause.at, "FOR SYSTEM_TIME AS OF must follow the name of the versioned table")
            .with_hint("write e.g. `FROM orders AS o JOIN rates FOR SYSTEM_TIME AS OF o.ts AS r ON o.currency = r.currency`")),
        None => Ok(()),
    }
}

/// Turns each `JOIN t FOR SYSTEM_TIME AS OF x [AS a] ON cond` into
/// `JOIN t [AS a] ON cond AND __eddy_system_time_as_of(x, a.c1, a.c2, ...)`;
/// `columns_of` gives a table's or view's columns. Refuses the clause where Flink
/// does: outside an INNER or LEFT join with an `ON` condition.
pub fn rewrite_temporal_joins(query: &mut Query, columns_of: &dyn Fn(&str) -> Option<SchemaRef>) -> Result<()> {
    struct Rewrite<'a> {
        columns_of: &'a dyn Fn(&str) -> Option<SchemaRef>,
    }
    impl VisitorMut for Rewrite<'_> {
        type Break = SqlError;
        fn post_visit_query(&mut self, query: &mut Query) -> ControlFlow<SqlError> {
            match rewrite_set_expr(&mut query.body, self.columns_of) {
                Ok(()) => ControlFlow::Continue(()),
                Err(e) => ControlFlow::Break(e),
            }
        }
    }
    match query.visit(&mut Rewrite { columns_of }) {
        ControlFlow::Break(e) => Err(e),
        ControlFlow::Continue(()) => Ok(()),
    }
}

fn rewrite_set_expr(body: &mut SetExpr, columns_of: &dyn Fn(&str) -> Option<SchemaRef>) -> Result<()> {
    match body {
        SetExpr::Select(select) => {
            for from in &mut select.from {
                if let Some(at) = as_of_location(&from.relation) {
                    return Err(SqlError::plan(at, "FOR SYSTEM_TIME AS OF belongs to the table on the right of a JOIN, not to the first table of FROM")
                        .with_hint("write e.g. `FROM orders AS o JOIN rates FOR SYSTEM_TIME AS OF o.ts AS r ON o.currency = r.currency`"));
                }
                for join in &mut from.joins {
                    let TableFactor::Table { name, alias, version, .. } = &mut join.relation else { continue };
                    let Some(TableVersion::ForSystemTimeAsOf(as_of)) = version.take() else { continue };
                    let at = name_location(name);
                    let table = name.0.last().and_then(|p| p.as_ident()).map(|i| i.value.clone()).unwrap_or_else(|| name.to_string());
                    let qualifier = alias.as_ref().map(|a| a.name.clone()).unwrap_or_else(|| Ident::new(&table));
                    let on = match &mut join.join_operator {
                        JoinOperator::Join(JoinConstraint::On(on))
                        | JoinOperator::Inner(JoinConstraint::On(on))
                        | JoinOperator::Left(JoinConstraint::On(on))
                        | JoinOperator::LeftOuter(JoinConstraint::On(on)) => on,
                        _ => {
                            return Err(SqlError::plan(
                                at,
                                format!("a join of `{table}` FOR SYSTEM_TIME AS OF must be an INNER or LEFT join with an ON condition"),
                            )
                            .with_hint(
                                "Flink joins a versioned or looked-up table only that way: `[LEFT] JOIN t FOR SYSTEM_TIME AS OF o.ts AS r ON o.k = r.k`",
                            ))
                        }
                    };
                    // Unknown tables are left for DataFusion to name.
                    let Some(schema) = columns_of(&table) else { continue };
                    let versioned_columns =
                        schema.fields().iter().map(|f| Expr::CompoundIdentifier(vec![qualifier.clone(), Ident::with_quote('"', f.name())])).collect();
                    let condition = std::mem::replace(on, Expr::Value(datafusion::sql::sqlparser::ast::Value::Boolean(true).into()));
                    *on = Expr::BinaryOp {
                        left: Box::new(Expr::Nested(Box::new(condition))),
                        op: BinaryOperator::And,
                        right: Box::new(marker_call(as_of, versioned_columns)),
                    };
                }
            }
            Ok(())
        }
        SetExpr::SetOperation { left, right, .. } => {
            rewrite_set_expr(left, columns_of)?;
            rewrite_set_expr(right, columns_of)
        }
        _ => Ok(()),
    }
}

fn as_of_location(factor: &TableFactor) -> Option<Location> {
    match factor {
        TableFactor::Table { name, version: Some(TableVersion::ForSystemTimeAsOf(_)), .. } => Some(name_location(name)),
        _ => None,
    }
}

fn name_location(name: &ObjectName) -> Location {
    let start = name.0.last().and_then(|p| p.as_ident()).map(|i| i.span.start).unwrap_or(TokenLocation { line: 1, column: 1 });
    Location { line: start.line, column: start.column }
}

fn marker_call(as_of: Expr, versioned_columns: Vec<Expr>) -> Expr {
    let arg = |e: Expr| FunctionArg::Unnamed(FunctionArgExpr::Expr(e));
    let args = std::iter::once(as_of).chain(versioned_columns).map(arg).collect();
    Expr::Function(Function {
        name: ObjectName::from(vec![Ident::new(MARKER)]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList { duplicate_treatment: None, args, clauses: Vec::new() }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: Vec::new(),
    })
}

/// The [`MARKER`] function, for the planner to register.
pub fn marker_udf() -> ScalarUDF {
    ScalarUDF::new_from_impl(Marker { signature: Signature::variadic_any(Volatility::Immutable) })
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Marker {
    signature: Signature,
}

impl ScalarUDFImpl for Marker {
    fn name(&self) -> &str {
        MARKER
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        exec_err!("FOR SYSTEM_TIME AS OF is only supported in a join's ON condition of a continuous query (a temporal join)")
    }
}

/// Whether `expr` (a physical expression) is a call of the marker; its arguments if so.
pub fn marker_arguments(expr: &Arc<dyn datafusion::physical_expr::PhysicalExpr>) -> Option<&[Arc<dyn datafusion::physical_expr::PhysicalExpr>]> {
    let call = expr.downcast_ref::<datafusion::physical_expr::ScalarFunctionExpr>()?;
    (call.name() == MARKER && call.args().len() >= 2).then(|| call.args())
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::tokenizer::Tokenizer;

    fn query(sql: &str) -> Result<Query> {
        let tokens: Vec<TokenWithSpan> = Tokenizer::new(&GenericDialect {}, sql)
            .tokenize_with_location()
            .unwrap()
            .into_iter()
            .filter(|t| !matches!(t.token, Token::Whitespace(_)))
            .collect();
        let (tokens, clauses) = take_clauses(tokens)?;
        let mut query = *Parser::new(&GenericDialect {}).with_tokens_with_locations(tokens).parse_query().unwrap();
        attach(&mut query, clauses)?;
        Ok(query)
    }

    #[test]
    fn the_clause_lands_on_the_table_it_follows_before_or_after_its_alias() {
        let q = query("SELECT * FROM orders AS o JOIN rates FOR SYSTEM_TIME AS OF o.ts AS r ON o.c = r.c").unwrap();
        // sqlparser prints the alias first; that form parses back to the same query.
        let printed = "SELECT * FROM orders AS o JOIN rates AS r FOR SYSTEM_TIME AS OF o.ts ON o.c = r.c";
        assert_eq!(q.to_string(), printed);
        assert_eq!(query(printed).unwrap(), q);
    }

    #[test]
    fn becomes_a_marker_in_the_on_condition() {
        let mut q = query("SELECT * FROM orders AS o LEFT JOIN rates FOR SYSTEM_TIME AS OF o.ts ON o.c = rates.c").unwrap();
        let columns = |name: &str| {
            let field = |name: &str| datafusion::arrow::datatypes::Field::new(name, DataType::Utf8, true);
            (name == "rates").then(|| Arc::new(datafusion::arrow::datatypes::Schema::new(vec![field("c"), field("rate")])))
        };
        rewrite_temporal_joins(&mut q, &columns).unwrap();
        assert_eq!(q.to_string(), format!("SELECT * FROM orders AS o LEFT JOIN rates ON (o.c = rates.c) AND {MARKER}(o.ts, rates.\"c\", rates.\"rate\")"));
    }

    #[test]
    fn misplaced_clauses_are_refused_with_where_they_are() {
        let e = query("SELECT * FROM orders AS o JOIN rates FOR SYSTEM_TIME AS OF PROCTIME() ON o.c = rates.c").unwrap_err().to_string();
        assert!(e.contains("not a function call") && e.contains("column 60"), "{e}");
        let e = query("SELECT * FROM orders AS o JOIN (SELECT * FROM rates) FOR SYSTEM_TIME AS OF o.ts AS r ON o.c = r.c").unwrap_err().to_string();
        assert!(e.contains("must follow the name of the versioned table") && e.contains("column 54"), "{e}");
        let mut q = query("SELECT * FROM orders AS o RIGHT JOIN rates FOR SYSTEM_TIME AS OF o.ts ON o.c = rates.c").unwrap();
        let e = rewrite_temporal_joins(&mut q, &|_| None).unwrap_err().to_string();
        assert!(e.contains("INNER or LEFT"), "{e}");
        let mut q = query("SELECT * FROM rates FOR SYSTEM_TIME AS OF TIMESTAMP").unwrap();
        let e = rewrite_temporal_joins(&mut q, &|_| None).unwrap_err().to_string();
        assert!(e.contains("right of a JOIN"), "{e}");
    }
}
