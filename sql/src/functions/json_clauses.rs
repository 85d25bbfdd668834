//! The clauses Flink's JSON query functions take after their path, which
//! sqlparser cannot read:
//!
//! - `JSON_VALUE(json, path [RETURNING type] [{NULL | ERROR | DEFAULT expr} ON EMPTY]
//!   [{NULL | ERROR | DEFAULT expr} ON ERROR])`
//! - `JSON_QUERY(json, path [RETURNING type] [{WITHOUT | WITH [CONDITIONAL | UNCONDITIONAL]} [ARRAY] WRAPPER]
//!   [{NULL | EMPTY ARRAY | EMPTY OBJECT | ERROR} ON EMPTY] [... ON ERROR])`
//! - `JSON_EXISTS(json, path [{TRUE | FALSE | UNKNOWN | ERROR} ON ERROR])`
//!
//! A call with clauses becomes a call of Eddy's internal function with the
//! clauses as constant arguments (`__eddy_json_value(json, path, 'INT', 'DEFAULT', 7)`),
//! before sqlparser reads the statement; [`super::json`] reads them back as
//! [`Returning`], [`Wrapper`] and [`OnError`].
//!
//! `ON EMPTY` is read and dropped: Flink 2.3 never applies it. Its answers send
//! a missing member, a JSON null and a value of the wrong shape through
//! `ON ERROR` alike (each case is in `tests/slt/functions/json.slt`).

use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan};

/// Eddy's function a `JSON_VALUE` with clauses is planned as.
pub(crate) const JSON_VALUE_WITH: &str = "__eddy_json_value";
/// Eddy's function a `JSON_QUERY` with clauses is planned as.
pub(crate) const JSON_QUERY_WITH: &str = "__eddy_json_query";
/// Eddy's function a `JSON_EXISTS` with clauses is planned as.
pub(crate) const JSON_EXISTS_WITH: &str = "__eddy_json_exists";

/// Which of the three functions a call is: each takes its own clauses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Function {
    Value,
    Query,
    Exists,
}

impl Function {
    fn of(name: &str) -> Option<Function> {
        match name.to_ascii_uppercase().as_str() {
            "JSON_VALUE" => Some(Function::Value),
            "JSON_QUERY" => Some(Function::Query),
            "JSON_EXISTS" => Some(Function::Exists),
            _ => None,
        }
    }

    fn internal_name(self) -> &'static str {
        match self {
            Function::Value => JSON_VALUE_WITH,
            Function::Query => JSON_QUERY_WITH,
            Function::Exists => JSON_EXISTS_WITH,
        }
    }

    /// Whether `behaviour` may follow in an `ON EMPTY` or `ON ERROR` clause of this function.
    fn allows(self, behaviour: OnError) -> bool {
        use OnError::*;
        match self {
            Function::Value => matches!(behaviour, Null | Fail | Default),
            Function::Query => matches!(behaviour, Null | Fail | EmptyArray | EmptyObject),
            Function::Exists => matches!(behaviour, True | False | Unknown | Fail),
        }
    }
}

/// The clauses of one call, as written.
#[derive(Debug, Default)]
struct Clauses {
    /// The type after RETURNING, upper case without spaces (`VARCHAR(2)`, `ARRAY<STRING>`).
    returning: Option<String>,
    wrapper: Option<Wrapper>,
    on_error: Option<OnError>,
    /// The expression of `DEFAULT expr ON ERROR`, when that is the behaviour.
    default: Vec<TokenWithSpan>,
}

/// `JSON_QUERY`'s wrapper clause: whether the selected value is put in an array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Wrapper {
    /// `WITHOUT [ARRAY] WRAPPER` (the default): a scalar is an error.
    Without,
    /// `WITH CONDITIONAL [ARRAY] WRAPPER`: anything but an array is wrapped.
    Conditional,
    /// `WITH [UNCONDITIONAL] [ARRAY] WRAPPER`: everything is wrapped, arrays too.
    Unconditional,
}

impl Wrapper {
    fn name(self) -> &'static str {
        match self {
            Wrapper::Without => "WITHOUT",
            Wrapper::Conditional => "CONDITIONAL",
            Wrapper::Unconditional => "UNCONDITIONAL",
        }
    }

    /// The wrapper named by a constant argument of the internal function.
    pub(super) fn named(name: &str) -> Option<Wrapper> {
        [Wrapper::Without, Wrapper::Conditional, Wrapper::Unconditional].into_iter().find(|w| w.name() == name)
    }
}

/// What a JSON function returns when its path selects nothing it can return,
/// or the document or path is malformed (`ON ERROR`; Flink's defaults when absent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum OnError {
    Null,
    /// Fail the query.
    Fail,
    /// `JSON_VALUE`'s `DEFAULT expr`: the internal function's last argument.
    Default,
    EmptyArray,
    EmptyObject,
    True,
    False,
    Unknown,
}

impl OnError {
    /// Each behaviour with its SQL words, which are also its constant argument.
    const NAMES: [(OnError, &'static str); 8] = [
        (OnError::Null, "NULL"),
        (OnError::Fail, "ERROR"),
        (OnError::Default, "DEFAULT"),
        (OnError::EmptyArray, "EMPTY ARRAY"),
        (OnError::EmptyObject, "EMPTY OBJECT"),
        (OnError::True, "TRUE"),
        (OnError::False, "FALSE"),
        (OnError::Unknown, "UNKNOWN"),
    ];

    fn name(self) -> &'static str {
        Self::NAMES.iter().find(|(b, _)| *b == self).map_or("NULL", |(_, name)| name)
    }

    /// The behaviour named by a constant argument of the internal function (or by its SQL words).
    pub(super) fn named(name: &str) -> Option<OnError> {
        Self::NAMES.iter().find(|(_, n)| *n == name).map(|(b, _)| *b)
    }
}

/// Rewrites every `JSON_VALUE`, `JSON_QUERY` and `JSON_EXISTS` call that has
/// clauses into a call of the internal function (see the module docs). A call
/// whose clauses do not read as its function's is left for sqlparser to refuse.
pub(crate) fn rewrite_json_clauses(mut tokens: Vec<TokenWithSpan>) -> Vec<TokenWithSpan> {
    if !tokens.iter().any(|t| word(t).and_then(Function::of).is_some()) {
        return tokens;
    }
    // Right to left, so a call inside another's arguments is rewritten first
    // and the positions of the calls before it stay where they were.
    let starts: Vec<usize> = (0..tokens.len()).filter(|&i| word(&tokens[i]).and_then(Function::of).is_some()).collect();
    for &start in starts.iter().rev() {
        if let Some(rewritten) = rewrite_call(&tokens, start) {
            tokens = rewritten;
        }
    }
    tokens
}

/// The tokens with the call whose name is at `start` rewritten, or None when it has no clauses (or is no call).
fn rewrite_call(tokens: &[TokenWithSpan], start: usize) -> Option<Vec<TokenWithSpan>> {
    let function = Function::of(word(&tokens[start])?)?;
    let open = next_significant(tokens, start + 1)?;
    if tokens[open].token != Token::LParen {
        return None;
    }
    // The call's closing parenthesis, and the positions of its own (depth 1) tokens after the first comma.
    let mut depth = 0usize;
    let mut commas = 0;
    let mut candidates = Vec::new();
    let mut close = None;
    for (i, t) in tokens.iter().enumerate().skip(open) {
        match t.token {
            Token::LParen | Token::LBracket => depth += 1,
            Token::RParen | Token::RBracket => {
                depth -= 1;
                if depth == 0 {
                    close = Some(i);
                    break;
                }
            }
            Token::Comma if depth == 1 => commas += 1,
            _ if depth == 1 && commas >= 1 && starts_clause(t) => candidates.push(i),
            _ => {}
        }
    }
    let close = close?;
    // The clauses start at the first place from which the rest of the call reads
    // as clauses; a place where a clause reads but what follows does not is a mistake.
    let (at, clauses) = candidates.into_iter().find_map(|at| match read_clauses(function, &tokens[at..close]) {
        Read::Clauses(clauses) => Some(Some((at, clauses))),
        Read::NoClause => None,
        Read::Malformed => Some(None),
    })??;

    let span = tokens[start].span;
    let token = |token: Token| TokenWithSpan { token, span };
    let text = |s: &str| [token(Token::Comma), token(Token::SingleQuotedString(s.to_string()))];
    let mut out = tokens[..start].to_vec();
    out.push(token(Token::make_word(function.internal_name(), None)));
    out.extend_from_slice(&tokens[start + 1..at]);
    let on_error = clauses.on_error.unwrap_or(match function {
        Function::Exists => OnError::False,
        _ => OnError::Null,
    });
    match function {
        Function::Value => {
            out.extend(text(clauses.returning.as_deref().unwrap_or("STRING")));
            out.extend(text(on_error.name()));
            out.push(token(Token::Comma));
            match on_error {
                OnError::Default => out.extend(clauses.default),
                _ => out.push(token(Token::make_keyword("NULL"))),
            }
        }
        Function::Query => {
            out.extend(text(clauses.returning.as_deref().unwrap_or("STRING")));
            out.extend(text(clauses.wrapper.unwrap_or(Wrapper::Without).name()));
            out.extend(text(on_error.name()));
        }
        Function::Exists => out.extend(text(on_error.name())),
    }
    out.extend_from_slice(&tokens[close..]);
    Some(out)
}

/// What the tokens from a place in a call to its closing parenthesis are.
enum Read {
    /// Clauses `function` takes, and nothing else.
    Clauses(Clauses),
    /// No clause starts here: the place is inside an argument.
    NoClause,
    /// A clause starts here, but the rest is no clause `function` takes (or repeats one).
    Malformed,
}

/// Reads `tokens` (from a possible first clause to the call's closing parenthesis) as clauses.
fn read_clauses(function: Function, tokens: &[TokenWithSpan]) -> Read {
    let mut read = 0;
    match read_each_clause(function, tokens, &mut read) {
        Some(clauses) => Read::Clauses(clauses),
        None if read == 0 => Read::NoClause,
        None => Read::Malformed,
    }
}

/// The clauses in `tokens`, or None when they are not all clauses `function`
/// takes; `read` counts those read before that.
fn read_each_clause(function: Function, tokens: &[TokenWithSpan], read: &mut usize) -> Option<Clauses> {
    let significant: Vec<&TokenWithSpan> = tokens.iter().filter(|t| !matches!(t.token, Token::Whitespace(_))).collect();
    let mut clauses = Clauses::default();
    let mut i = 0;
    let is = |i: usize, w: &str| significant.get(i).is_some_and(|t| word(t).is_some_and(|x| x.eq_ignore_ascii_case(w)));
    while i < significant.len() {
        if i > 0 {
            *read += 1;
        }
        if is(i, "RETURNING") {
            if function == Function::Exists || clauses.returning.is_some() {
                return None;
            }
            // The type runs to the next clause, outside its own parentheses and angle brackets.
            let mut end = i + 1;
            let mut depth = 0i32;
            while end < significant.len() && (depth > 0 || !starts_clause(significant[end])) {
                match significant[end].token {
                    Token::LParen | Token::Lt => depth += 1,
                    Token::RParen | Token::Gt => depth -= 1,
                    Token::ShiftRight => depth -= 2,
                    _ => {}
                }
                end += 1;
            }
            if end == i + 1 {
                return None;
            }
            let returning: String = significant[i + 1..end].iter().map(|t| t.token.to_string().to_ascii_uppercase()).collect::<Vec<_>>().join(" ");
            clauses.returning = Some(normalise_type(&returning));
            i = end;
        } else if is(i, "WITHOUT") || is(i, "WITH") {
            if function != Function::Query || clauses.wrapper.is_some() {
                return None;
            }
            let mut wrapper = if is(i, "WITHOUT") { Wrapper::Without } else { Wrapper::Unconditional };
            i += 1;
            if wrapper == Wrapper::Unconditional && is(i, "CONDITIONAL") {
                wrapper = Wrapper::Conditional;
                i += 1;
            } else if wrapper == Wrapper::Unconditional && is(i, "UNCONDITIONAL") {
                i += 1;
            }
            if is(i, "ARRAY") {
                i += 1;
            }
            if !is(i, "WRAPPER") {
                return None;
            }
            clauses.wrapper = Some(wrapper);
            i += 1;
        } else {
            let mut default = Vec::new();
            let (behaviour, next) = if is(i, "EMPTY") && (is(i + 1, "ARRAY") || is(i + 1, "OBJECT")) {
                (if is(i + 1, "ARRAY") { OnError::EmptyArray } else { OnError::EmptyObject }, i + 2)
            } else if is(i, "DEFAULT") {
                // The expression runs to `ON EMPTY` or `ON ERROR` outside its own parentheses.
                let mut end = i + 1;
                let mut depth = 0i32;
                while end < significant.len() && !(depth == 0 && is(end, "ON") && (is(end + 1, "EMPTY") || is(end + 1, "ERROR"))) {
                    match significant[end].token {
                        Token::LParen | Token::LBracket => depth += 1,
                        Token::RParen | Token::RBracket => depth -= 1,
                        _ => {}
                    }
                    end += 1;
                }
                if end == i + 1 {
                    return None;
                }
                default = significant[i + 1..end].iter().map(|t| (*t).clone()).collect();
                (OnError::Default, end)
            } else {
                // A one-word behaviour (DEFAULT and the two-word ones are read above).
                let behaviour = word(significant[i]).and_then(|w| OnError::named(&w.to_ascii_uppercase()))?;
                (behaviour, i + 1)
            };
            if !is(next, "ON") || !function.allows(behaviour) {
                return None;
            }
            if is(next + 1, "ERROR") {
                if clauses.on_error.is_some() {
                    return None;
                }
                clauses.on_error = Some(behaviour);
                clauses.default = default;
            } else if !is(next + 1, "EMPTY") || function == Function::Exists {
                return None;
            }
            i = next + 2;
        }
    }
    Some(clauses)
}

/// A type's text as the internal function reads it: upper case, no spaces but
/// between words (`ARRAY<STRING>`, `VARCHAR(2)`, `DOUBLE PRECISION`).
fn normalise_type(text: &str) -> String {
    let mut out = String::new();
    let mut last_was_word = false;
    for part in text.split_whitespace() {
        let is_word = part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if is_word && last_was_word {
            out.push(' ');
        }
        out.push_str(part);
        last_was_word = is_word && !part.chars().all(|c| c.is_ascii_digit());
    }
    out
}

fn starts_clause(t: &TokenWithSpan) -> bool {
    word(t).is_some_and(|w| {
        ["RETURNING", "WITH", "WITHOUT", "NULL", "ERROR", "DEFAULT", "EMPTY", "TRUE", "FALSE", "UNKNOWN"].iter().any(|k| w.eq_ignore_ascii_case(k))
    })
}

fn word(t: &TokenWithSpan) -> Option<&str> {
    match &t.token {
        Token::Word(w) if w.quote_style.is_none() => Some(&w.value),
        _ => None,
    }
}

fn next_significant(tokens: &[TokenWithSpan], from: usize) -> Option<usize> {
    (from..tokens.len()).find(|&i| !matches!(tokens[i].token, Token::Whitespace(_)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::GenericDialect;
    use datafusion::sql::sqlparser::tokenizer::Tokenizer;

    fn rewritten(sql: &str) -> String {
        let tokens = Tokenizer::new(&GenericDialect {}, sql).tokenize_with_location().unwrap();
        rewrite_json_clauses(tokens).iter().map(|t| t.token.to_string()).collect()
    }

    #[test]
    fn clauses_become_constant_arguments() {
        assert_eq!(rewritten("JSON_VALUE(j, '$.a' RETURNING INT DEFAULT -1 ON ERROR)"), "__eddy_json_value(j, '$.a' ,'INT','DEFAULT',-1)");
        assert_eq!(rewritten("JSON_VALUE(j, '$.a' NULL ON EMPTY ERROR ON ERROR)"), "__eddy_json_value(j, '$.a' ,'STRING','ERROR',NULL)");
        assert_eq!(rewritten("json_value(j, '$.a' DEFAULT f(x, 1) ON EMPTY)"), "__eddy_json_value(j, '$.a' ,'STRING','NULL',NULL)");
        assert_eq!(
            rewritten("JSON_QUERY(j, '$' RETURNING ARRAY<STRING> WITH CONDITIONAL ARRAY WRAPPER EMPTY ARRAY ON ERROR)"),
            "__eddy_json_query(j, '$' ,'ARRAY<STRING>','CONDITIONAL','EMPTY ARRAY')"
        );
        assert_eq!(rewritten("JSON_QUERY(j, '$' RETURNING VARCHAR(2) WITH WRAPPER)"), "__eddy_json_query(j, '$' ,'VARCHAR(2)','UNCONDITIONAL','NULL')");
        assert_eq!(rewritten("JSON_EXISTS(j, 'strict $.a' UNKNOWN ON ERROR)"), "__eddy_json_exists(j, 'strict $.a' ,'UNKNOWN')");
    }

    #[test]
    fn nested_calls_and_calls_without_clauses() {
        assert_eq!(rewritten("JSON_VALUE(j, '$.a')"), "JSON_VALUE(j, '$.a')", "no clauses: unchanged");
        assert_eq!(
            rewritten("JSON_VALUE(JSON_QUERY(j, '$.x' WITH WRAPPER), '$[0]' DEFAULT JSON_VALUE(j, '$.y' ERROR ON ERROR) ON ERROR)"),
            "__eddy_json_value(__eddy_json_query(j, '$.x' ,'STRING','UNCONDITIONAL','NULL'), '$[0]' ,'STRING','DEFAULT',__eddy_json_value(j,'$.y','STRING','ERROR',NULL))"
        );
        // A path that is an expression ending in a clause word's look-alike is not cut.
        assert_eq!(rewritten("JSON_VALUE(j, CASE WHEN x THEN '$.a' ELSE NULL END)"), "JSON_VALUE(j, CASE WHEN x THEN '$.a' ELSE NULL END)");
    }

    #[test]
    fn clauses_a_function_does_not_take_are_left_for_the_parser() {
        for sql in [
            "JSON_VALUE(j, '$' WITH WRAPPER)",
            "JSON_VALUE(j, '$' EMPTY ARRAY ON ERROR)",
            "JSON_EXISTS(j, '$' RETURNING INT)",
            "JSON_EXISTS(j, '$' TRUE ON EMPTY)",
            "JSON_QUERY(j, '$' DEFAULT 1 ON ERROR)",
            "JSON_QUERY(j, '$' NULL ON ERROR NULL ON ERROR)",
            "JSON_VALUE(j, '$' NULL ON)",
        ] {
            assert_eq!(rewritten(sql), sql);
        }
    }

    #[test]
    fn types_are_normalised() {
        assert_eq!(normalise_type("ARRAY < STRING >"), "ARRAY<STRING>");
        assert_eq!(normalise_type("VARCHAR ( 2 )"), "VARCHAR(2)");
        assert_eq!(normalise_type("DOUBLE PRECISION"), "DOUBLE PRECISION");
        assert_eq!(normalise_type("ARRAY < VARCHAR ( 3 ) >"), "ARRAY<VARCHAR(3)>");
    }
}
