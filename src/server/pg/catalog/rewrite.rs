//! Postgres syntax of tools' metadata queries that DataFusion does not read,
//! rewritten into what it does, on the parsed statement:
//! - casts to the oid alias types: `'pg_class'::regclass` is the table's oid,
//!   `'int8'::regtype` the type's, `t.oid::regtype` its name (`format_type`),
//!   `::oid` an integer, `::name` text;
//! - `OPERATOR(pg_catalog.~)` is `~` (and so for every operator);
//! - `COLLATE "C"` is dropped (names compare byte-wise anyway);
//! - `pg_catalog.format_type(...)`: functions lose their schema;
//! - `current_catalog`, `session_user`... without parentheses are calls;
//! - a correlated scalar subquery is aggregated (`max`), as DataFusion requires;
//! - result columns are named as Postgres names them.
//!
//! Grafana's and pgjdbc's walks of the search path (set-returning functions
//! DataFusion cannot plan) are replaced as a whole, before parsing, by what
//! they compute.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    BinaryOperator, CastKind, DataType, Expr, Function, GroupByExpr, Ident, ObjectName, SelectItem, SelectItemQualifiedWildcardKind, SetExpr, Statement, Value,
    ValueWithSpan,
};

use eddy_sql::functions::call;

use super::tables::{relation_oid, type_oid};
use crate::server::Relation;

/// Grafana's filter on the schemas of `search_path` (`buildSchemaConstraint` in
/// its `postgresMetaQuery.ts`), its whitespace collapsed: Eddy's search path
/// names `"$user"`, a schema that does not exist, then `public`.
const GRAFANA_SEARCH_PATH: &str = "IN ( SELECT CASE WHEN trim(s[i]) = '\"$user\"' THEN user ELSE trim(s[i]) END FROM generate_series( \
    array_lower(string_to_array(current_setting('search_path'),','),1), array_upper(string_to_array(current_setting('search_path'),','),1) ) as i, \
    string_to_array(current_setting('search_path'),',') s )";

/// pgjdbc's walk of the search path by position (`TypeInfoCache`): a table
/// function over a computed bound, which DataFusion cannot plan. The path has
/// two schemas (`current_schemas`).
const PGJDBC_SEARCH_PATH: &str = "generate_series(1, array_upper(current_schemas(false), 1))";

/// `sql` with the query fragments no rule can rewrite replaced as a whole.
pub fn replace_fragments(sql: &str) -> String {
    let collapse = |text: &str| text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut flat = collapse(sql);
    let mut replaced = false;
    for (pattern, replacement) in [(GRAFANA_SEARCH_PATH, "IN ('public')"), (PGJDBC_SEARCH_PATH, "generate_series(1, 2)")] {
        let pattern = collapse(pattern);
        if flat.contains(&pattern) {
            flat = flat.replace(&pattern, replacement);
            replaced = true;
        }
    }
    if replaced {
        flat
    } else {
        sql.to_string()
    }
}

/// SQL's functions called without parentheses.
const NILADIC: &[&str] = &["current_catalog", "current_schema", "current_user", "current_role", "session_user"];

/// Rewrites `statement` in place into SQL DataFusion plans.
pub fn rewrite(statement: &mut Statement, relations: &[Relation]) {
    let _ = datafusion::sql::sqlparser::ast::visit_expressions_mut(statement, |expr| {
        rewrite_expr(expr, relations);
        ControlFlow::<()>::Continue(())
    });
    name_columns(statement);
}

/// Names result columns as Postgres does where DataFusion would not: a bare
/// function call after the function (`version`, not `version()`). A column
/// also selected by its table's `*` (DBeaver's `SELECT n.oid, n.*`) is
/// selected once: DataFusion refuses two columns of one name, and tools read
/// such a column by its name.
fn name_columns(statement: &mut Statement) {
    let Statement::Query(query) = statement else { return };
    let SetExpr::Select(select) = query.body.as_mut() else { return };
    let starred: Vec<String> = select
        .projection
        .iter()
        .filter_map(|item| match item {
            SelectItem::QualifiedWildcard(SelectItemQualifiedWildcardKind::ObjectName(name), _) => Some(name.to_string().to_ascii_lowercase()),
            _ => None,
        })
        .collect();
    for item in &mut select.projection {
        let SelectItem::UnnamedExpr(expr) = item else { continue };
        let (expr, alias) = match &*expr {
            Expr::Function(function) => match function.name.0.last().and_then(|part| part.as_ident()) {
                Some(name) => (expr.clone(), name.value.to_ascii_lowercase()),
                None => continue,
            },
            _ => continue,
        };
        *item = SelectItem::ExprWithAlias { expr, alias: Ident::new(alias) };
    }
    select.projection.retain(|item| match item {
        SelectItem::UnnamedExpr(Expr::CompoundIdentifier(parts)) => !(parts.len() == 2 && starred.contains(&parts[0].value.to_ascii_lowercase())),
        _ => true,
    });
}

fn rewrite_expr(expr: &mut Expr, relations: &[Relation]) {
    match expr {
        // SQL's functions written without parentheses (`SELECT current_catalog`).
        Expr::Identifier(ident) if ident.quote_style.is_none() && NILADIC.contains(&ident.value.to_ascii_lowercase().as_str()) => {
            *expr = call(&ident.value.to_ascii_lowercase(), Vec::new());
        }
        Expr::Collate { expr: inner, .. } => {
            let inner = std::mem::replace(inner.as_mut(), Expr::value(Value::Null));
            *expr = inner;
            rewrite_expr(expr, relations);
        }
        // A correlated scalar subquery (`(SELECT c.relkind = 'c' FROM pg_class c
        // WHERE c.oid = t.typrelid)`): DataFusion plans it only aggregated, and
        // the catalog's keys make it one row anyway.
        Expr::Subquery(query) => {
            let SetExpr::Select(select) = query.body.as_mut() else { return };
            let group_by_nothing = matches!(&select.group_by, GroupByExpr::Expressions(e, _) if e.is_empty());
            if let ([SelectItem::UnnamedExpr(item)], true, None) = (select.projection.as_mut_slice(), group_by_nothing, &select.having) {
                if !matches!(item, Expr::Function(_)) {
                    *item = call("max", vec![std::mem::replace(item, Expr::value(Value::Null))]);
                }
            }
        }
        Expr::BinaryOp { op, .. } => {
            if let BinaryOperator::PGCustomBinaryOperator(parts) = op {
                if let Some(plain) = parts.last().and_then(|p| operator(p)) {
                    *op = plain;
                }
            }
        }
        Expr::Function(Function { name, .. }) if name.0.len() > 1 => {
            if let Some(last) = name.0.last().cloned() {
                *name = ObjectName(vec![last]);
            }
        }
        Expr::Cast { data_type, expr: inner, .. } => {
            let Some(alias) = oid_alias(data_type) else { return };
            let literal = match inner.as_ref() {
                Expr::Value(ValueWithSpan { value: Value::SingleQuotedString(s), .. }) => Some(s.clone()),
                _ => None,
            };
            let number = |n: Option<i64>| Expr::value(n.map_or(Value::Null, |n| Value::Number(n.to_string(), false)));
            *expr = match (alias.as_str(), literal) {
                ("regclass", Some(name)) => number(relation_oid(relations, &name).map(i64::from)),
                ("regtype", Some(name)) => number(type_oid(&name).map(i64::from)),
                ("regproc" | "regprocedure", Some(name)) => {
                    Expr::value(Value::SingleQuotedString(name.strip_prefix("pg_catalog.").unwrap_or(&name).to_string()))
                }
                ("regtype", None) => call("format_type", vec![std::mem::replace(inner.as_mut(), Expr::value(Value::Null)), Expr::value(Value::Null)]),
                ("regproc" | "regprocedure" | "name", _) => cast(std::mem::replace(inner.as_mut(), Expr::value(Value::Null)), DataType::Text),
                _ => cast(std::mem::replace(inner.as_mut(), Expr::value(Value::Null)), DataType::Int(None)),
            };
        }
        _ => {}
    }
}

/// The oid alias type (`regclass`, `regtype`...), `oid` or `name` a cast is to.
fn oid_alias(data_type: &DataType) -> Option<String> {
    let name = match data_type {
        DataType::Regclass => "regclass".to_string(),
        DataType::Custom(name, _) => name.0.last()?.as_ident()?.value.to_ascii_lowercase(),
        _ => return None,
    };
    matches!(name.as_str(), "regclass" | "regtype" | "regproc" | "regprocedure" | "regnamespace" | "regrole" | "regoper" | "oid" | "name").then_some(name)
}

/// The plain operator `OPERATOR(pg_catalog.op)` names.
fn operator(symbol: &str) -> Option<BinaryOperator> {
    Some(match symbol {
        "~" => BinaryOperator::PGRegexMatch,
        "~*" => BinaryOperator::PGRegexIMatch,
        "!~" => BinaryOperator::PGRegexNotMatch,
        "!~*" => BinaryOperator::PGRegexNotIMatch,
        "~~" => BinaryOperator::PGLikeMatch,
        "!~~" => BinaryOperator::PGNotLikeMatch,
        "=" => BinaryOperator::Eq,
        "<>" | "!=" => BinaryOperator::NotEq,
        "<" => BinaryOperator::Lt,
        "<=" => BinaryOperator::LtEq,
        ">" => BinaryOperator::Gt,
        ">=" => BinaryOperator::GtEq,
        _ => return None,
    })
}

fn cast(expr: Expr, data_type: DataType) -> Expr {
    Expr::Cast { kind: CastKind::Cast, expr: Box::new(expr), data_type, array: false, format: None }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn rewritten(sql: &str) -> String {
        let mut statement = Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap().remove(0);
        rewrite(&mut statement, &[]);
        statement.to_string()
    }

    #[test]
    fn postgres_syntax_becomes_datafusions() {
        assert_eq!(
            rewritten("SELECT n.oid, n.*, pg_catalog.format_type(20, NULL) FROM pg_namespace n WHERE d.classoid = 'pg_class'::regclass"),
            "SELECT n.*, format_type(20, NULL) AS format_type FROM pg_namespace n WHERE d.classoid = 1259"
        );
        assert_eq!(
            rewritten("SELECT c.relname FROM pg_class c WHERE c.relname OPERATOR(pg_catalog.~) '^(b)$' COLLATE pg_catalog.default"),
            "SELECT c.relname FROM pg_class c WHERE c.relname ~ '^(b)$'"
        );
        assert_eq!(
            rewritten("SELECT oid::regtype::text, typinput = 'pg_catalog.array_in'::regproc, current_catalog FROM pg_type"),
            "SELECT format_type(oid, NULL)::TEXT, typinput = 'array_in', current_catalog AS current_catalog FROM pg_type"
        );
    }
}
