//! Flink's function syntax that is not a plain call, turned into calls of
//! Eddy's functions before DataFusion plans the query:
//!
//! - `x IS [NOT] JSON [VALUE | SCALAR | ARRAY | OBJECT]`, which sqlparser cannot
//!   read: its tokens become `x = __eddy_is_json('KIND')` (`<>` for NOT)
//!   ([`rewrite_tokens`]), and the tree then `[NOT] __eddy_is_json(x, 'KIND')`;
//! - `TIMESTAMPADD(DAY, ...)` and `TIMESTAMPDIFF(DAY, ...)`, whose unit would
//!   otherwise be read as a column named `DAY`;
//! - `FLOOR(ts TO unit)` and `CEIL(ts TO unit)`, which DataFusion refuses;
//! - `CAST(x AS STRING)` (and `TRY_CAST`), whose text Flink writes its own way
//!   for timestamps, booleans and floating-point numbers, and `CAST(x AS ARRAY<...>)`,
//!   whose elements Flink casts the same way (see [`super::conversion`]);
//! - the clauses of `JSON_VALUE`, `JSON_QUERY` and `JSON_EXISTS` (`RETURNING`,
//!   `... ON ERROR`, the wrapper), which become constant arguments (see [`super::json_clauses`]);
//! - `JSON_OBJECT([KEY] k VALUE v, ... [NULL | ABSENT] ON NULL)` and
//!   `JSON_ARRAY(v, ... [NULL | ABSENT] ON NULL)` (see [`super::json_build`]);
//!   sqlparser reads all but the optional `KEY`, which the tokens lose first;
//! - `JSON_OBJECTAGG([KEY] k VALUE v [NULL | ABSENT] ON NULL)` and
//!   `JSON_ARRAYAGG(v [ORDER BY ...] [NULL | ABSENT] ON NULL)` alike (see
//!   [`super::json_agg`]).

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    visit_expressions_mut, BinaryOperator, CastKind, CeilFloorKind, DataType, DateTimeField, Expr, Function, FunctionArg, FunctionArgExpr, FunctionArgOperator,
    FunctionArgumentClause, FunctionArgumentList, FunctionArguments, Ident, JsonNullClause, ObjectName, Query, UnaryOperator, Value,
};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

use super::calendar::{CEIL_TO, FLOOR_TO};
use super::collections::MAP_OF;
use super::conversion::{CAST_COLLECTION, CAST_STRING};
use super::json::IS_JSON;
use super::json_agg::{JSON_ARRAYAGG, JSON_OBJECTAGG};
use super::json_build::{JSON_ARRAY, JSON_OBJECT, RAW, TYPED};
use super::json_clauses::rewrite_json_clauses;

/// Rewrites `IS [NOT] JSON [kind]` and `JSON_OBJECT`'s `KEY` so sqlparser can
/// read them (see the module docs).
pub(crate) fn rewrite_tokens(tokens: Vec<TokenWithSpan>) -> Vec<TokenWithSpan> {
    rewrite_json_clauses(rewrite_map_constructors(rewrite_is_json(drop_object_keys(tokens))))
}

/// Flink's map value constructor `MAP[k1, v1, ...]`, which sqlparser does not
/// know, as a call of `__eddy_map(k1, v1, ...)` (see `collections.rs`).
fn rewrite_map_constructors(mut tokens: Vec<TokenWithSpan>) -> Vec<TokenWithSpan> {
    if !tokens.iter().any(|t| is_word(t, "MAP")) {
        return tokens;
    }
    // For each open bracket: whether it opened a constructor.
    let mut opened: Vec<bool> = Vec::new();
    let mut previous: Option<usize> = None;
    for i in 0..tokens.len() {
        match tokens[i].token {
            Token::LBracket => {
                let constructor = previous.is_some_and(|p| is_word(&tokens[p], "MAP"));
                if let Some(p) = previous.filter(|_| constructor) {
                    if let Token::Word(w) = &mut tokens[p].token {
                        w.value = MAP_OF.to_string();
                        w.keyword = Keyword::NoKeyword;
                    }
                    tokens[i].token = Token::LParen;
                }
                opened.push(constructor);
            }
            Token::RBracket if opened.pop() == Some(true) => tokens[i].token = Token::RParen,
            _ => {}
        }
        if significant(&tokens[i]) {
            previous = Some(i);
        }
    }
    tokens
}

fn significant(t: &TokenWithSpan) -> bool {
    !matches!(t.token, Token::Whitespace(_))
}

/// Drops the optional `KEY` before a `JSON_OBJECT` or `JSON_OBJECTAGG` key (`KEY 'k' VALUE v`),
/// which sqlparser does not know; a column named `key` (`key VALUE v`) stays.
fn drop_object_keys(tokens: Vec<TokenWithSpan>) -> Vec<TokenWithSpan> {
    let objects = |t: &TokenWithSpan| is_word(t, "JSON_OBJECT") || is_word(t, "JSON_OBJECTAGG");
    if !tokens.iter().any(objects) {
        return tokens;
    }
    // For each open parenthesis: whether it opened a JSON_OBJECT(AGG) call.
    let mut opened: Vec<bool> = Vec::new();
    let mut previous: Option<usize> = None;
    let mut out = Vec::with_capacity(tokens.len());
    for (i, t) in tokens.iter().enumerate() {
        match &t.token {
            Token::LParen => opened.push(previous.is_some_and(|p| objects(&tokens[p]))),
            Token::RParen => {
                opened.pop();
            }
            _ => {}
        }
        let at_argument_start = previous.is_some_and(|p| matches!(tokens[p].token, Token::LParen | Token::Comma));
        let next = tokens[i + 1..].iter().find(|t| significant(t));
        if is_word(t, "KEY") && at_argument_start && opened.last() == Some(&true) && !next.is_some_and(|n| is_word(n, "VALUE")) {
            continue;
        }
        if significant(t) {
            previous = Some(i);
        }
        out.push(t.clone());
    }
    out
}

fn rewrite_is_json(tokens: Vec<TokenWithSpan>) -> Vec<TokenWithSpan> {
    if !tokens.iter().any(|t| is_word(t, "JSON")) {
        return tokens;
    }
    let mut out = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while i < tokens.len() {
        if !is_keyword(&tokens[i], Keyword::IS) {
            out.push(tokens[i].clone());
            i += 1;
            continue;
        }
        // The significant tokens after IS: [NOT] JSON [kind].
        let after: Vec<usize> = (i + 1..tokens.len()).filter(|&j| significant(&tokens[j])).take(3).collect();
        let negated = after.first().is_some_and(|&j| is_keyword(&tokens[j], Keyword::NOT));
        let json_at = after.get(usize::from(negated)).copied();
        let Some(json_at) = json_at.filter(|&j| is_word(&tokens[j], "JSON")) else {
            out.push(tokens[i].clone());
            i += 1;
            continue;
        };
        let kind_at = after.get(usize::from(negated) + 1).copied().filter(|&j| ["VALUE", "SCALAR", "ARRAY", "OBJECT"].iter().any(|k| is_word(&tokens[j], k)));
        let kind = kind_at.map(|j| word_text(&tokens[j]).to_ascii_uppercase()).unwrap_or_else(|| "VALUE".to_string());
        let span = tokens[json_at].span;
        let token = |token: Token| TokenWithSpan { token, span };
        // `=` and `<>` bind as IS does; the right side of IS DISTINCT FROM would take the rest.
        out.extend([
            token(if negated { Token::Neq } else { Token::Eq }),
            token(Token::make_word(IS_JSON, None)),
            token(Token::LParen),
            token(Token::SingleQuotedString(kind)),
            token(Token::RParen),
        ]);
        i = kind_at.unwrap_or(json_at) + 1;
    }
    out
}

fn is_keyword(t: &TokenWithSpan, keyword: Keyword) -> bool {
    matches!(&t.token, Token::Word(w) if w.keyword == keyword && w.quote_style.is_none())
}

fn is_word(t: &TokenWithSpan, text: &str) -> bool {
    matches!(&t.token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(text))
}

fn word_text(t: &TokenWithSpan) -> &str {
    match &t.token {
        Token::Word(w) => &w.value,
        _ => "",
    }
}

/// Turns the function syntax of the module docs into calls, everywhere in
/// `query`: run on every query before DataFusion plans it.
pub fn rewrite_query(query: &mut Query) {
    let _ = visit_expressions_mut(query, |expr| {
        rewrite(expr);
        ControlFlow::<()>::Continue(())
    });
}

/// A computed column's expression with the function syntax of the module docs
/// turned into calls; the text unchanged when it has none (or does not parse,
/// so the planner reports the mistake in the user's own words).
pub(crate) fn rewrite_expression_sql(sql: &str) -> String {
    let dialect = GenericDialect {};
    let Ok(tokens) = Tokenizer::new(&dialect, sql).tokenize_with_location() else {
        return sql.to_string();
    };
    let Ok(mut expr) = Parser::new(&dialect).with_tokens_with_locations(rewrite_tokens(tokens)).parse_expr() else {
        return sql.to_string();
    };
    let mut changed = false;
    let _ = visit_expressions_mut(&mut expr, |e| {
        changed |= rewrite(e);
        ControlFlow::<()>::Continue(())
    });
    if changed {
        expr.to_string()
    } else {
        sql.to_string()
    }
}

/// Rewrites one expression node; whether it changed.
fn rewrite(expr: &mut Expr) -> bool {
    match expr {
        Expr::BinaryOp { left: value, op: op @ (BinaryOperator::Eq | BinaryOperator::NotEq), right: marker } => {
            let Some(kind) = is_json_marker(marker) else { return false };
            let negated = *op == BinaryOperator::NotEq;
            let call = call(IS_JSON, vec![std::mem::replace(value.as_mut(), Expr::value(Value::Null)), kind]);
            *expr = if negated { Expr::UnaryOp { op: UnaryOperator::Not, expr: Box::new(Expr::Nested(Box::new(call))) } } else { call };
            true
        }
        Expr::Floor { expr: value, field: CeilFloorKind::DateTimeField(field) } | Expr::Ceil { expr: value, field: CeilFloorKind::DateTimeField(field) }
            if *field != DateTimeField::NoDateTime =>
        {
            let name = if matches!(expr, Expr::Floor { .. }) { FLOOR_TO } else { CEIL_TO };
            let (Expr::Floor { expr: value, field: CeilFloorKind::DateTimeField(field) }
            | Expr::Ceil { expr: value, field: CeilFloorKind::DateTimeField(field) }) = expr
            else {
                return false;
            };
            let unit = Expr::value(Value::SingleQuotedString(field.to_string()));
            let value = std::mem::replace(value.as_mut(), Expr::value(Value::Null));
            *expr = call(name, vec![unit, value]);
            true
        }
        // CAST(NULL AS ARRAY<...>) is left as it is: it is how the target type is passed.
        Expr::Cast { kind, expr: value, data_type: data_type @ DataType::Array(_), array: false, format: None } if !matches!(value.as_ref(), Expr::Value(v) if v.value == Value::Null) =>
        {
            let mode = if matches!(kind, CastKind::TryCast | CastKind::SafeCast) { "TRY_CAST" } else { "CAST" };
            let target =
                Expr::Cast { kind: CastKind::Cast, expr: Box::new(Expr::value(Value::Null)), data_type: data_type.clone(), array: false, format: None };
            let value = std::mem::replace(value.as_mut(), Expr::value(Value::Null));
            *expr = call(CAST_COLLECTION, vec![value, target, Expr::value(Value::SingleQuotedString(mode.into()))]);
            true
        }
        Expr::Cast { expr: value, data_type, array: false, format: None, .. } if is_unbounded_text(data_type) => {
            let value = std::mem::replace(value.as_mut(), Expr::value(Value::Null));
            *expr = call(CAST_STRING, vec![value]);
            true
        }
        Expr::Function(Function { name, args: FunctionArguments::List(list), .. }) if is_named(name, "JSON_OBJECTAGG") || is_named(name, "JSON_ARRAYAGG") => {
            let object = is_named(name, "JSON_OBJECTAGG");
            // One key and value, or one value; Flink 2.3 ignores JSON_ARRAYAGG's ORDER BY.
            if list.args.len() != 1 || list.duplicate_treatment.is_some() {
                return false;
            }
            let Some(Expr::Function(mut call)) = json_constructor(object, list) else { return false };
            call.name = ObjectName::from(vec![Ident::new(if object { JSON_OBJECTAGG } else { JSON_ARRAYAGG })]);
            *expr = Expr::Function(call);
            true
        }
        Expr::Function(Function { name, args: FunctionArguments::List(list), .. }) if is_named(name, "JSON_OBJECT") || is_named(name, "JSON_ARRAY") => {
            let object = is_named(name, "JSON_OBJECT");
            let Some(call) = json_constructor(object, list) else { return false };
            *expr = call;
            true
        }
        Expr::Function(Function { name, args: FunctionArguments::None, .. }) if is_named(name, "JSON_OBJECT") || is_named(name, "JSON_ARRAY") => {
            let empty = FunctionArgumentList { duplicate_treatment: None, args: Vec::new(), clauses: Vec::new() };
            let Some(call) = json_constructor(is_named(name, "JSON_OBJECT"), &empty) else { return false };
            *expr = call;
            true
        }
        Expr::Function(Function { name, args: FunctionArguments::List(list), .. }) if is_named(name, "TIMESTAMPADD") || is_named(name, "TIMESTAMPDIFF") => {
            let Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(unit @ Expr::Identifier(_)))) = list.args.first_mut() else {
                return false;
            };
            let Expr::Identifier(ident) = unit else { return false };
            *unit = Expr::value(Value::SingleQuotedString(ident.value.to_ascii_uppercase()));
            true
        }
        _ => false,
    }
}

/// `JSON_OBJECT(k VALUE v, ... [NULL | ABSENT] ON NULL)` or `JSON_ARRAY(v, ...)`
/// as a call of Eddy's function: what to do with NULL, which values are JSON
/// already (made by a constructor inside, rewritten first), then the arguments.
/// None for a call that is not Flink's syntax, left for the planner to refuse.
fn json_constructor(object: bool, list: &FunctionArgumentList) -> Option<Expr> {
    let on_null = list
        .clauses
        .iter()
        .find_map(|c| match c {
            FunctionArgumentClause::JsonNullClause(JsonNullClause::AbsentOnNull) => Some("ABSENT"),
            FunctionArgumentClause::JsonNullClause(JsonNullClause::NullOnNull) => Some("NULL"),
            _ => None,
        })
        // Flink's defaults: an object keeps NULL values, an array leaves them out.
        .unwrap_or(if object { "NULL" } else { "ABSENT" });
    let mut shape = String::new();
    let mut args = Vec::new();
    let value = |v: &Expr, shape: &mut String, args: &mut Vec<Expr>| {
        let built = matches!(v, Expr::Function(Function { name, .. }) if is_named(name, JSON_OBJECT) || is_named(name, JSON_ARRAY));
        shape.push(if built { RAW } else { TYPED });
        args.push(v.clone());
    };
    for arg in &list.args {
        match (object, arg) {
            (true, FunctionArg::ExprNamed { name, arg: FunctionArgExpr::Expr(v), operator: FunctionArgOperator::Value }) => {
                args.push(name.clone());
                value(v, &mut shape, &mut args);
            }
            (true, FunctionArg::Named { name, arg: FunctionArgExpr::Expr(v), operator: FunctionArgOperator::Value }) => {
                args.push(match name.quote_style {
                    Some('\'') => Expr::value(Value::SingleQuotedString(name.value.clone())),
                    _ => Expr::Identifier(name.clone()),
                });
                value(v, &mut shape, &mut args);
            }
            (false, FunctionArg::Unnamed(FunctionArgExpr::Expr(v))) => value(v, &mut shape, &mut args),
            _ => return None,
        }
    }
    let head = [Expr::value(Value::SingleQuotedString(on_null.to_string())), Expr::value(Value::SingleQuotedString(shape))];
    Some(call(if object { JSON_OBJECT } else { JSON_ARRAY }, head.into_iter().chain(args).collect()))
}

/// STRING, VARCHAR or TEXT without a length: the casts Flink writes its own way.
fn is_unbounded_text(data_type: &DataType) -> bool {
    matches!(data_type, DataType::String(None) | DataType::Varchar(None) | DataType::CharacterVarying(None) | DataType::Text)
}

fn is_named(name: &ObjectName, wanted: &str) -> bool {
    name.to_string().eq_ignore_ascii_case(wanted)
}

/// `'KIND'` of a `__eddy_is_json('KIND')` left by [`rewrite_tokens`].
fn is_json_marker(expr: &Expr) -> Option<Expr> {
    let Expr::Function(Function { name, args: FunctionArguments::List(list), .. }) = expr else { return None };
    if !is_named(name, IS_JSON) || list.args.len() != 1 {
        return None;
    }
    match &list.args[0] {
        FunctionArg::Unnamed(FunctionArgExpr::Expr(kind)) => Some(kind.clone()),
        _ => None,
    }
}

/// A plain call `name(args)` as sqlparser's AST spells it, for rewrites that
/// turn other syntax into function calls (here and in the Postgres catalog's).
pub fn call(name: &str, args: Vec<Expr>) -> Expr {
    Expr::Function(Function {
        name: ObjectName::from(vec![Ident::new(name)]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args: args.into_iter().map(|e| FunctionArg::Unnamed(FunctionArgExpr::Expr(e))).collect(),
            clauses: Vec::new(),
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_syntax_becomes_calls() {
        assert_eq!(rewrite_expression_sql("s IS JSON"), "__eddy_is_json(s, 'VALUE')");
        assert_eq!(rewrite_expression_sql("s IS NOT JSON OBJECT"), "NOT (__eddy_is_json(s, 'OBJECT'))");
        assert_eq!(rewrite_expression_sql("s IS NOT JSON OBJECT AND t is json array"), "NOT (__eddy_is_json(s, 'OBJECT')) AND __eddy_is_json(t, 'ARRAY')");
        assert_eq!(rewrite_expression_sql("TIMESTAMPADD(day, 1, ts)"), "TIMESTAMPADD('DAY', 1, ts)");
        assert_eq!(rewrite_expression_sql("FLOOR(ts TO HOUR)"), "__eddy_floor_to('HOUR', ts)");
        assert_eq!(rewrite_expression_sql("CEIL(ts TO MONTH)"), "__eddy_ceil_to('MONTH', ts)");
        assert_eq!(rewrite_expression_sql("FLOOR(x) + s IS NULL"), "FLOOR(x) + s IS NULL", "untouched");
        assert_eq!(
            rewrite_expression_sql("JSON_OBJECT(KEY 'a' VALUE x, key VALUE JSON_ARRAY(1, y NULL ON NULL) ABSENT ON NULL)"),
            "__eddy_json_object('ABSENT', 'tr', 'a', x, key, __eddy_json_array('NULL', 'tt', 1, y))"
        );
        assert_eq!(rewrite_expression_sql("JSON_OBJECT()"), "__eddy_json_object('NULL', '')");
        assert_eq!(
            rewrite_expression_sql("JSON_OBJECTAGG(KEY k VALUE JSON_ARRAY(v) ABSENT ON NULL)"),
            "__eddy_json_objectagg('ABSENT', 'r', k, __eddy_json_array('ABSENT', 't', v))"
        );
        assert_eq!(rewrite_expression_sql("JSON_ARRAYAGG(v ORDER BY v NULL ON NULL)"), "__eddy_json_arrayagg('NULL', 't', v)");
        assert_eq!(rewrite_expression_sql("CAST(ts AS STRING) || TRY_CAST(b AS VARCHAR)"), "__eddy_cast_string(ts) || __eddy_cast_string(b)");
        assert_eq!(rewrite_expression_sql("CAST(x AS VARCHAR(3))"), "CAST(x AS VARCHAR(3))", "a bounded length stays DataFusion's");
    }
}
