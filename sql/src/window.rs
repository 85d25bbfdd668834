//! Window table functions: `TUMBLE`, `HOP`, `CUMULATE` and `SESSION`, in all three
//! of Flink's spellings, reduced to one internal table function.
//!
//! - `TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' MINUTE))` (the standard form),
//! - `TUMBLE(t, ts, INTERVAL '1' MINUTE)` in `FROM` (the short form),
//! - `GROUP BY TUMBLE(ts, INTERVAL '1' MINUTE)` with `TUMBLE_START(...)`/`TUMBLE_END(...)` (the legacy form)
//!
//! all become `__eddy_window('tumble', 't', 'ts', '', INTERVAL '1' MINUTE)`, a table
//! function the planner registers with DataFusion. Its result is `t` plus
//! `window_start`, `window_end` and `window_time`.

use datafusion::sql::sqlparser::ast::{visit_expressions_mut, Spanned};
use datafusion::sql::sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, FunctionArguments, GroupByExpr, Ident, ObjectName, ObjectNamePart, Query, Select, SetExpr, TableAlias, TableFactor,
    TableFunctionArgs, Value, ValueWithSpan,
};
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Word};

use eddy_engine::plan::window::duration_text;
use eddy_engine::plan::WindowKind;

use crate::error::{Location, Result, SqlError};

/// The name of the internal table function every window form is rewritten to.
pub const WINDOW_FUNCTION: &str = "__eddy_window";

/// Refuses the window shapes Flink refuses for window aggregation, whose rows would
/// otherwise vanish uncounted or land in windows off the slide's grid: a HOP whose
/// size is not a whole multiple of its slide (a slide longer than the size leaves
/// gaps no window covers), and a CUMULATE whose max size is not a whole multiple of
/// its step. The error says why and what to write instead.
pub fn check_grid(window: &WindowKind) -> std::result::Result<(), String> {
    match *window {
        WindowKind::Hop { slide_ms, size_ms } if slide_ms > size_ms => Err(format!(
            "HOP: the slide ({}) is longer than the size ({}), so the rows between one window's end and the next window's start would be in no window and be lost without being counted (Flink refuses this too)\n  hint: HOP takes the slide first and the size second, and the size must be a whole multiple of the slide, e.g. HOP(TABLE t, DESCRIPTOR(ts), INTERVAL '1' MINUTE, INTERVAL '5' MINUTE); for windows that do not overlap use TUMBLE",
            duration_text(slide_ms),
            duration_text(size_ms)
        )),
        WindowKind::Hop { slide_ms, size_ms } if size_ms % slide_ms != 0 => Err(format!(
            "HOP: the size ({}) is not a whole multiple of the slide ({}), so windows would start off the slide's grid (Flink refuses this too)\n  hint: use a size of {} or {}, or a slide that divides the size",
            duration_text(size_ms),
            duration_text(slide_ms),
            duration_text(size_ms / slide_ms * slide_ms),
            duration_text((size_ms / slide_ms + 1) * slide_ms)
        )),
        WindowKind::Cumulate { step_ms, max_size_ms } if step_ms > max_size_ms => Err(format!(
            "CUMULATE: the step ({}) is longer than the max size ({}), so no window would ever close on a step (Flink refuses this too)\n  hint: CUMULATE takes the step first and the max size second, and the max size must be a whole multiple of the step",
            duration_text(step_ms),
            duration_text(max_size_ms)
        )),
        WindowKind::Cumulate { step_ms, max_size_ms } if max_size_ms % step_ms != 0 => Err(format!(
            "CUMULATE: the max size ({}) is not a whole multiple of the step ({}), so the last window of each period would not end on a step (Flink refuses this too)\n  hint: use a max size of {} or {}, or a step that divides the max size",
            duration_text(max_size_ms),
            duration_text(step_ms),
            duration_text(max_size_ms / step_ms * step_ms),
            duration_text((max_size_ms / step_ms + 1) * step_ms)
        )),
        _ => Ok(()),
    }
}

/// The arguments of one window table function, after rewriting.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowCall {
    pub kind: WindowKind,
    pub table: String,
    pub time_column: String,
    pub partition_by: Vec<String>,
}

fn location_of(token: &TokenWithSpan) -> Location {
    Location { line: token.span.start.line, column: token.span.start.column }
}

fn word_upper(token: &TokenWithSpan) -> Option<String> {
    match &token.token {
        Token::Word(w) if w.quote_style.is_none() => Some(w.value.to_ascii_uppercase()),
        _ => None,
    }
}

fn is_window_name(name: &str) -> bool {
    matches!(name, "TUMBLE" | "HOP" | "CUMULATE" | "SESSION")
}

fn synthetic(token: Token, like: &TokenWithSpan) -> TokenWithSpan {
    TokenWithSpan { token, span: like.span }
}

fn string_token(value: &str, like: &TokenWithSpan) -> TokenWithSpan {
    synthetic(Token::SingleQuotedString(value.to_string()), like)
}

/// Index of the `)` that closes the `(` at `open`.
fn matching_paren(tokens: &[TokenWithSpan], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (i, t) in tokens.iter().enumerate().skip(open) {
        match t.token {
            Token::LParen => depth += 1,
            Token::RParen => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// Splits the tokens between two parentheses at depth-zero commas.
fn split_args(tokens: &[TokenWithSpan]) -> Vec<&[TokenWithSpan]> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, t) in tokens.iter().enumerate() {
        match t.token {
            Token::LParen => depth += 1,
            Token::RParen => depth = depth.saturating_sub(1),
            Token::Comma if depth == 0 => {
                out.push(&tokens[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&tokens[start..]);
    out
}

/// Reads `name [PARTITION BY a, b]` (the table argument), optionally after `TABLE`.
fn parse_table_arg(arg: &[TokenWithSpan], function: &TokenWithSpan) -> Result<(String, Vec<String>)> {
    let mut rest = arg;
    if rest.first().and_then(word_upper).as_deref() == Some("TABLE") {
        rest = &rest[1..];
    }
    let name = match rest.first().map(|t| &t.token) {
        Some(Token::Word(w)) => w.value.clone(),
        _ => {
            return Err(SqlError::syntax(
                rest.first().map(location_of).unwrap_or(location_of(function)),
                "expected a table name as the first argument of the window function",
            )
            .with_hint("write TABLE(TUMBLE(TABLE my_table, DESCRIPTOR(ts), INTERVAL '1' MINUTE))"))
        }
    };
    let mut partition_by = Vec::new();
    let mut i = 1;
    if rest.len() > i + 1
        && matches!(&rest[i].token, Token::Word(w) if w.keyword == Keyword::PARTITION)
        && matches!(&rest[i + 1].token, Token::Word(w) if w.keyword == Keyword::BY)
    {
        i += 2;
        // PARTITION BY a, b is split by the caller's comma split; only the first key is here.
        match rest.get(i).map(|t| &t.token) {
            Some(Token::Word(w)) => partition_by.push(w.value.clone()),
            _ => return Err(SqlError::syntax(location_of(&rest[i - 1]), "expected a column after PARTITION BY")),
        }
        i += 1;
    }
    if let Some(extra) = rest.get(i) {
        return Err(SqlError::syntax(location_of(extra), format!("unexpected `{}` in the window function's table argument", extra.token)));
    }
    Ok((name, partition_by))
}

/// Reads `DESCRIPTOR(col)` or a bare `col` (the time column argument).
fn parse_time_arg(arg: &[TokenWithSpan], function: &TokenWithSpan) -> Result<String> {
    let rest = if arg.first().and_then(word_upper).as_deref() == Some("DESCRIPTOR") {
        if arg.len() != 4 {
            return Err(SqlError::syntax(location_of(&arg[0]), "expected DESCRIPTOR(column)"));
        }
        &arg[2..3]
    } else {
        arg
    };
    match rest {
        [TokenWithSpan { token: Token::Word(w), .. }] => Ok(w.value.clone()),
        _ => Err(SqlError::syntax(arg.first().map(location_of).unwrap_or(location_of(function)), "expected the time column as DESCRIPTOR(column)")),
    }
}

/// Rewrites the standard and short window function forms in a query's tokens.
pub fn rewrite_window_tvfs(tokens: Vec<TokenWithSpan>) -> Result<Vec<TokenWithSpan>> {
    let mut out = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while i < tokens.len() {
        let upper = word_upper(&tokens[i]);
        // Standard form: TABLE ( FN ( ... ) )
        let standard = upper.as_deref() == Some("TABLE")
            && matches!(tokens.get(i + 1).map(|t| &t.token), Some(Token::LParen))
            && tokens.get(i + 2).and_then(word_upper).is_some_and(|n| is_window_name(&n))
            && matches!(tokens.get(i + 3).map(|t| &t.token), Some(Token::LParen));
        // Short form, only directly after FROM / JOIN / a comma in FROM: FN ( t , ts , size )
        let previous = out.last().and_then(|t: &TokenWithSpan| word_upper(t));
        let short = upper.as_deref().is_some_and(is_window_name)
            && matches!(tokens.get(i + 1).map(|t| &t.token), Some(Token::LParen))
            && matches!(previous.as_deref(), Some("FROM") | Some("JOIN"));
        if !(standard || short) {
            out.push(tokens[i].clone());
            i += 1;
            continue;
        }
        let (function_index, outer_close) = if standard {
            let close = matching_paren(&tokens, i + 1).ok_or_else(|| SqlError::syntax(location_of(&tokens[i + 1]), "unclosed `(`"))?;
            (i + 2, Some(close))
        } else {
            (i, None)
        };
        let function = &tokens[function_index];
        let name = word_upper(function).unwrap_or_default();
        let close = matching_paren(&tokens, function_index + 1).ok_or_else(|| SqlError::syntax(location_of(&tokens[function_index + 1]), "unclosed `(`"))?;
        if let Some(outer) = outer_close {
            if outer != close + 1 {
                return Err(SqlError::syntax(location_of(&tokens[close]), "expected `)` after the window function call"));
            }
        }
        let args = split_args(&tokens[function_index + 2..close]);
        if args.len() < 3 {
            return Err(SqlError::syntax(location_of(function), format!("{name} needs a table, a time column and a size")).with_hint(usage(&name)));
        }
        let (table, mut partition_by) = parse_table_arg(args[0], function)?;
        // `PARTITION BY a, b` spreads over several comma-separated arguments: take plain names before DESCRIPTOR.
        let mut next = 1;
        while !partition_by.is_empty() && args.len() > next + 2 && args[next].len() == 1 && word_upper(&args[next][0]).as_deref() != Some("DESCRIPTOR") {
            if let Token::Word(w) = &args[next][0].token {
                partition_by.push(w.value.clone());
            }
            next += 1;
        }
        let time_column = parse_time_arg(args[next], function)?;
        let sizes = &args[next + 1..];
        let expected = if name == "HOP" || name == "CUMULATE" { 2 } else { 1 };
        if sizes.len() != expected {
            return Err(
                SqlError::syntax(location_of(function), format!("{name} takes {expected} interval argument(s), got {}", sizes.len())).with_hint(usage(&name))
            );
        }
        if name != "SESSION" && !partition_by.is_empty() {
            return Err(SqlError::syntax(location_of(function), format!("PARTITION BY is only allowed in SESSION, not {name}")));
        }
        let at = &tokens[i];
        out.push(synthetic(Token::Word(Word { value: WINDOW_FUNCTION.to_string(), quote_style: None, keyword: Keyword::NoKeyword }), at));
        out.push(synthetic(Token::LParen, at));
        for value in [name.to_ascii_lowercase(), table, time_column, partition_by.join(",")] {
            out.push(string_token(&value, at));
            out.push(synthetic(Token::Comma, at));
        }
        for (n, size) in sizes.iter().enumerate() {
            if n > 0 {
                out.push(synthetic(Token::Comma, at));
            }
            out.extend(size.iter().cloned());
        }
        out.push(synthetic(Token::RParen, at));
        i = outer_close.unwrap_or(close) + 1;
    }
    Ok(out)
}

fn usage(name: &str) -> &'static str {
    match name {
        "HOP" => "HOP(TABLE t, DESCRIPTOR(ts), INTERVAL '1' MINUTE /* slide */, INTERVAL '5' MINUTE /* size */)",
        "CUMULATE" => "CUMULATE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' MINUTE /* step */, INTERVAL '1' HOUR /* max size */)",
        "SESSION" => "SESSION(TABLE t PARTITION BY key, DESCRIPTOR(ts), INTERVAL '5' MINUTE /* gap */)",
        _ => "TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' MINUTE)",
    }
}

/// Rewrites Flink's legacy group windows (`GROUP BY TUMBLE(ts, size)`, `TUMBLE_START(ts, size)`)
/// in a query and every subquery in its `FROM`.
pub fn rewrite_group_windows(query: &mut Query) -> Result<()> {
    rewrite_set_expr(&mut query.body)
}

fn rewrite_set_expr(body: &mut SetExpr) -> Result<()> {
    match body {
        SetExpr::Select(select) => rewrite_select(select),
        SetExpr::Query(q) => rewrite_group_windows(q),
        SetExpr::SetOperation { left, right, .. } => {
            rewrite_set_expr(left)?;
            rewrite_set_expr(right)
        }
        _ => Ok(()),
    }
}

fn expr_location(expr: &Expr) -> Location {
    let span = expr.span();
    Location { line: span.start.line, column: span.start.column }
}

fn rewrite_select(select: &mut Select) -> Result<()> {
    for table in &mut select.from {
        rewrite_factor(&mut table.relation)?;
        for join in &mut table.joins {
            rewrite_factor(&mut join.relation)?;
        }
    }
    let GroupByExpr::Expressions(group_exprs, _) = &mut select.group_by else { return Ok(()) };
    let position = group_exprs.iter().position(|e| matches!(e, Expr::Function(f) if is_window_name(&f.name.to_string().to_ascii_uppercase())));
    let Some(position) = position else { return Ok(()) };
    let Expr::Function(function) = group_exprs[position].clone() else { return Ok(()) };
    let location = expr_location(&group_exprs[position]);
    let name = function.name.to_string().to_ascii_uppercase();
    let FunctionArguments::List(list) = &function.args else {
        return Err(SqlError::syntax(location, format!("{name} in GROUP BY needs arguments")));
    };
    let mut args = Vec::new();
    for arg in &list.args {
        match arg {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => args.push(e.clone()),
            _ => return Err(SqlError::syntax(location, format!("unexpected argument in {name}"))),
        }
    }
    let time_column = match args.first() {
        Some(Expr::Identifier(ident)) => ident.value.clone(),
        Some(Expr::CompoundIdentifier(parts)) => parts.last().map(|p| p.value.clone()).unwrap_or_default(),
        _ => return Err(SqlError::syntax(location, format!("the first argument of {name} in GROUP BY must be the time column"))),
    };
    let sizes: Vec<Expr> = args[1..].to_vec();
    let expected = if name == "HOP" || name == "CUMULATE" { 2 } else { 1 };
    if sizes.len() != expected {
        return Err(SqlError::syntax(location, format!("{name} in GROUP BY takes the time column and {expected} interval(s)")));
    }
    // Other GROUP BY columns are the session's partition keys.
    let partition_by: Vec<String> = if name == "SESSION" {
        group_exprs
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != position)
            .filter_map(|(_, e)| match e {
                Expr::Identifier(ident) => Some(ident.value.clone()),
                _ => None,
            })
            .collect()
    } else {
        Vec::new()
    };
    if select.from.len() != 1 || !select.from[0].joins.is_empty() {
        return Err(SqlError::syntax(location, format!("GROUP BY {name}(...) needs exactly one table in FROM")));
    }
    let relation = &mut select.from[0].relation;
    let TableFactor::Table { name: table_name, alias, args: None, .. } = relation else {
        return Err(SqlError::syntax(location, format!("GROUP BY {name}(...) needs a plain table in FROM"))
            .with_hint("or use the window table function: FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' MINUTE))"));
    };
    let table = table_name.0.last().map(|p| p.to_string()).unwrap_or_default();
    let alias = alias.clone().unwrap_or(TableAlias { name: Ident::new(table.clone()), columns: vec![], explicit: true, at: None });
    let mut call_args = vec![string_arg(&name.to_ascii_lowercase()), string_arg(&table), string_arg(&time_column), string_arg(&partition_by.join(","))];
    call_args.extend(sizes.into_iter().map(|e| FunctionArg::Unnamed(FunctionArgExpr::Expr(e))));
    *relation = window_table_factor(call_args, Some(alias));
    group_exprs.splice(position..=position, [Expr::Identifier(Ident::new("window_start")), Expr::Identifier(Ident::new("window_end"))]);

    // TUMBLE_START(...) -> window_start, and so on, in the SELECT list and HAVING.
    let prefix = format!("{name}_");
    let mut replace = |expr: &mut Expr| {
        if let Expr::Function(f) = expr {
            let fname = f.name.to_string().to_ascii_uppercase();
            if let Some(suffix) = fname.strip_prefix(&prefix) {
                let column = match suffix {
                    "START" => Some("window_start"),
                    "END" => Some("window_end"),
                    "ROWTIME" => Some("window_time"),
                    _ => None,
                };
                if let Some(column) = column {
                    *expr = Expr::Identifier(Ident::new(column));
                }
            }
        }
        std::ops::ControlFlow::<()>::Continue(())
    };
    let _ = visit_expressions_mut(&mut select.projection, &mut replace);
    let _ = visit_expressions_mut(&mut select.having, &mut replace);
    Ok(())
}

fn rewrite_factor(factor: &mut TableFactor) -> Result<()> {
    match factor {
        TableFactor::Derived { subquery, .. } => rewrite_group_windows(subquery),
        TableFactor::NestedJoin { table_with_joins, .. } => {
            rewrite_factor(&mut table_with_joins.relation)?;
            for join in &mut table_with_joins.joins {
                rewrite_factor(&mut join.relation)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn string_arg(value: &str) -> FunctionArg {
    FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(ValueWithSpan::from(Value::SingleQuotedString(value.to_string())))))
}

fn window_table_factor(args: Vec<FunctionArg>, alias: Option<TableAlias>) -> TableFactor {
    TableFactor::Table {
        name: ObjectName(vec![ObjectNamePart::Identifier(Ident::new(WINDOW_FUNCTION))]),
        alias,
        args: Some(TableFunctionArgs { args, settings: None }),
        with_hints: vec![],
        version: None,
        with_ordinality: false,
        partitions: vec![],
        json_path: None,
        sample: None,
        index_hints: vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Flink's SliceAssigners refuse a HOP whose size is not a multiple of its slide
    /// and a CUMULATE whose max size is not a multiple of its step.
    #[test]
    fn windows_off_the_grid_are_refused() {
        let refused = |w: WindowKind| check_grid(&w).expect_err("refused");
        assert!(check_grid(&WindowKind::Hop { slide_ms: 5_000, size_ms: 10_000 }).is_ok());
        assert!(check_grid(&WindowKind::Hop { slide_ms: 10_000, size_ms: 10_000 }).is_ok());
        assert!(check_grid(&WindowKind::Cumulate { step_ms: 60_000, max_size_ms: 3_600_000 }).is_ok());
        assert!(check_grid(&WindowKind::Tumble { size_ms: 7 }).is_ok());
        let gap = refused(WindowKind::Hop { slide_ms: 10_000, size_ms: 2_000 });
        assert!(gap.starts_with("HOP: the slide (10 s) is longer than the size (2 s)"), "{gap}");
        let off = refused(WindowKind::Hop { slide_ms: 4, size_ms: 6 });
        assert!(off.starts_with("HOP: the size (6 ms) is not a whole multiple of the slide (4 ms)") && off.contains("use a size of 4 ms or 8 ms"), "{off}");
        let off = refused(WindowKind::Cumulate { step_ms: 60_000, max_size_ms: 90_000 });
        assert!(off.starts_with("CUMULATE: the max size (90 s) is not a whole multiple of the step (1 min)") && off.contains("1 min or 2 min"), "{off}");
        assert!(refused(WindowKind::Cumulate { step_ms: 2, max_size_ms: 1 }).starts_with("CUMULATE: the step (2 ms) is longer than the max size (1 ms)"));
    }
}
