//! How big a statement Eddy plans, and how much stack planning it needs.
//!
//! Parsing, DataFusion's SQL-to-plan translation and optimizer, Eddy's compile
//! into a [`crate::StreamPlan`], `EXPLAIN` and even dropping a syntax tree all
//! recurse once per level of the tree. A long `AND` chain or `UNION ALL` chain is
//! a tree as deep as it is long, so a big enough statement would overflow any
//! fixed stack and abort the whole process (every pipeline of a server with it).
//! Eddy therefore refuses, with a clear error, a statement
//!
//! - of more than [`MAX_STATEMENT_TOKENS`] tokens (this bounds the parser and the
//!   syntax tree's own recursion),
//! - nested more than [`MAX_NESTING`] levels of parentheses, subqueries or
//!   function calls (also sqlparser's recursion limit),
//! - nesting more than [`MAX_SPECIAL_FORM_NESTING`] levels of the forms sqlparser
//!   parses twice when they fail (`CAST(`, `SUBSTRING(`, `NOT (`...): each such
//!   level doubles the time a mistake inside takes to report, so twenty of them
//!   held a planning thread for minutes,
//! - or of more than [`MAX_PLAN_NODES`] operators, function calls, subqueries,
//!   set operations and joins, counting the views and common table expressions it
//!   reads as often as it reads them (this bounds the plan's depth, whatever the
//!   optimizer merges),
//!
//! and the binary plans on threads with [`PLANNING_STACK_BYTES`] of stack. The
//! test `statements_at_the_limits_plan_in_a_quarter_of_the_planning_stack` below
//! plans statements of each deep shape at these limits (parse, SQL to logical
//! plan, optimizer, physical plan, compile, `EXPLAIN`, `Debug`, drop) on a
//! quarter of that stack, in an unoptimized build.

use std::collections::HashMap;
use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{Expr, ObjectName, Query, Select, SetExpr, Visit, Visitor};
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan};

use crate::error::{Location, Result, SqlError};

/// The most tokens (words, numbers, operators, literals) one statement may have.
pub const MAX_STATEMENT_TOKENS: usize = 100_000;

/// The deepest nesting of parentheses, subqueries and function calls Eddy (and
/// sqlparser, as its recursion limit) accepts. Checked on the tokens before
/// sqlparser runs too: past its limit inside nested `CAST(`s, sqlparser retries
/// alternatives at every level, which takes exponential time.
pub const MAX_NESTING: usize = 40;

/// The deepest nesting of the special forms in [`SPECIAL_FORMS`] (`CAST(...)`,
/// `SUBSTRING(...)`, `NOT (...)` and the like) Eddy accepts, `POSITION(` counting
/// as two levels. sqlparser parses each of these first as its special syntax and,
/// when that fails anywhere inside, again as a plain function call; so a mistake
/// (or sqlparser's recursion limit) under `n` of them is parsed `2^n` times
/// (`3^n` for `POSITION`). At this limit a mistake under a statement of the most
/// tokens Eddy accepts is reported within seconds in an unoptimized build.
pub const MAX_SPECIAL_FORM_NESTING: usize = 8;

/// The keywords that sqlparser, followed by `(` (or `ARRAY[`), parses as a special
/// form and then, when that fails, once more as a function call.
const SPECIAL_FORMS: &[Keyword] = &[
    Keyword::CAST,
    Keyword::TRY_CAST,
    Keyword::SAFE_CAST,
    Keyword::CONVERT,
    Keyword::TRY_CONVERT,
    Keyword::CEIL,
    Keyword::FLOOR,
    Keyword::POSITION,
    Keyword::SUBSTR,
    Keyword::SUBSTRING,
    Keyword::OVERLAY,
    Keyword::EXTRACT,
    Keyword::ARRAY,
    Keyword::NOT,
    Keyword::CASE,
    Keyword::CURRENT_TIMESTAMP,
    Keyword::CURRENT_TIME,
    Keyword::CURRENT_DATE,
    Keyword::LOCALTIME,
    Keyword::LOCALTIMESTAMP,
    Keyword::MATCH,
    Keyword::MAP,
    Keyword::LAMBDA,
    Keyword::PRIOR,
];

/// The most operators, function calls, subqueries, set operations and joins one
/// statement may plan, views and common table expressions included.
pub const MAX_PLAN_NODES: usize = 2_000;

/// The stack each thread that plans statements gets. Untouched stack costs only
/// address space, so this is generous: planning a statement at the limits above
/// fits in a quarter of it (see the tests below).
pub const PLANNING_STACK_BYTES: usize = 512 * 1024 * 1024;

/// Refuses a statement of more than [`MAX_STATEMENT_TOKENS`] tokens.
pub fn check_tokens(count: usize, location: Location) -> Result<()> {
    if count > MAX_STATEMENT_TOKENS {
        return Err(SqlError::plan(location, format!("the statement has {count} tokens; Eddy plans statements of at most {MAX_STATEMENT_TOKENS}"))
            .with_hint("split it into smaller statements (CREATE VIEW for parts of a query), or put long lists of values in a table"));
    }
    Ok(())
}

/// Refuses parentheses (and brackets) nested more than [`MAX_NESTING`] deep.
pub fn check_parentheses(tokens: &[TokenWithSpan]) -> Result<()> {
    let mut depth = 0usize;
    for token in tokens {
        match token.token {
            Token::LParen | Token::LBracket => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(nesting_error(Location { line: token.span.start.line, column: token.span.start.column }));
                }
            }
            Token::RParen | Token::RBracket => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Refuses special forms ([`SPECIAL_FORMS`]) nested more than
/// [`MAX_SPECIAL_FORM_NESTING`] deep, before sqlparser could spend exponential
/// time on them. Only the parentheses a special form opens count; others
/// between them (`CAST((CAST(...)))`) neither add nor break the nesting.
pub fn check_special_forms(tokens: &[TokenWithSpan]) -> Result<()> {
    // The levels each open parenthesis added, innermost last.
    let mut open: Vec<usize> = Vec::new();
    let mut depth = 0usize;
    for (index, token) in tokens.iter().enumerate() {
        match token.token {
            Token::LParen | Token::LBracket => {
                let before = index.checked_sub(1).map(|i| &tokens[i]);
                let levels = match before.map(|t| &t.token) {
                    Some(Token::Word(word)) if word.quote_style.is_none() && SPECIAL_FORMS.contains(&word.keyword) => {
                        // sqlparser tries `POSITION(a IN b)` two ways before the function call.
                        if word.keyword == Keyword::POSITION {
                            2
                        } else {
                            1
                        }
                    }
                    _ => 0,
                };
                depth += levels;
                open.push(levels);
                if depth > MAX_SPECIAL_FORM_NESTING {
                    let at = before.map_or(token, |t| t);
                    return Err(special_form_error(Location { line: at.span.start.line, column: at.span.start.column }));
                }
            }
            Token::RParen | Token::RBracket => depth -= open.pop().unwrap_or(0),
            _ => {}
        }
    }
    Ok(())
}

fn special_form_error(location: Location) -> SqlError {
    SqlError::syntax(
        location,
        format!(
            "the statement nests CAST, TRY_CAST, CONVERT, CEIL, FLOOR, SUBSTRING, POSITION (counted twice), OVERLAY, EXTRACT, ARRAY, CASE, NOT (...) or CURRENT_TIMESTAMP(...) more than {MAX_SPECIAL_FORM_NESTING} levels deep, Eddy's limit for these forms (the parser may try each level twice, so deeper nesting could take hours to check)"
        ),
    )
    .with_hint("compute the inner levels in a CREATE VIEW or a WITH query, or drop redundant casts and NOTs")
}

/// The error for sqlparser's recursion limit, which says only "recursion limit exceeded".
pub fn nesting_error(location: Location) -> SqlError {
    SqlError::syntax(location, format!("the statement nests parentheses, subqueries or function calls more than {MAX_NESTING} levels deep, Eddy's limit"))
        .with_hint("flatten the nesting: a CREATE VIEW or a WITH clause for inner queries, fewer redundant parentheses")
}

/// Counts the plan nodes of `query` (views' and CTEs' nodes each time they are
/// read, `view_nodes` giving those of the session's views) and refuses it past
/// [`MAX_PLAN_NODES`]. Returns the count, which a view keeps for the queries that read it.
pub fn check_query(query: &Query, view_nodes: &dyn Fn(&str) -> Option<usize>, location: Location) -> Result<usize> {
    let mut counter = NodeCounter::new(view_nodes);
    match query.visit(&mut counter) {
        ControlFlow::Continue(()) if counter.nodes <= MAX_PLAN_NODES => Ok(counter.nodes),
        _ => Err(too_many_nodes(location)),
    }
}

/// [`check_query`] for a lone expression (a computed column, a watermark).
pub fn check_expr(expr: &Expr, location: Location) -> Result<usize> {
    let none = |_: &str| None;
    let mut counter = NodeCounter::new(&none);
    match expr.visit(&mut counter) {
        ControlFlow::Continue(()) if counter.nodes <= MAX_PLAN_NODES => Ok(counter.nodes),
        _ => Err(too_many_nodes(location)),
    }
}

fn too_many_nodes(location: Location) -> SqlError {
    SqlError::plan(
        location,
        format!("the statement is too big to plan: it has more than {MAX_PLAN_NODES} operators, function calls, subqueries, set operations and joins (views and WITH queries count each time they are read)"),
    )
    .with_hint("write long AND/OR chains of comparisons with one column as `col IN (...)` or `col NOT IN (...)`, read many UNION ALL branches from one table, or split the work into several pipelines")
}

/// Counts nodes as the visitor meets them, and stops as soon as there are too
/// many, so the count itself never recurses deeper than the limit allows.
struct NodeCounter<'a> {
    nodes: usize,
    /// Nodes of each common table expression seen so far, by name.
    ctes: HashMap<String, usize>,
    /// The WITH queries not yet counted, by address, with their names.
    cte_queries: HashMap<*const Query, String>,
    /// The count when each query being visited began.
    open_queries: Vec<usize>,
    view_nodes: &'a dyn Fn(&str) -> Option<usize>,
}

/// The signal that the count went past the limit.
struct TooBig;

impl<'a> NodeCounter<'a> {
    fn new(view_nodes: &'a dyn Fn(&str) -> Option<usize>) -> Self {
        NodeCounter { nodes: 0, ctes: HashMap::new(), cte_queries: HashMap::new(), open_queries: Vec::new(), view_nodes }
    }

    fn add(&mut self, n: usize) -> ControlFlow<TooBig> {
        self.nodes = self.nodes.saturating_add(n);
        if self.nodes > MAX_PLAN_NODES {
            ControlFlow::Break(TooBig)
        } else {
            ControlFlow::Continue(())
        }
    }
}

impl Visitor for NodeCounter<'_> {
    type Break = TooBig;

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<TooBig> {
        self.open_queries.push(self.nodes);
        self.add(1)?;
        // Set operations are not visited on their own; count them here, without
        // recursion, before the visitor walks down a long UNION ALL chain.
        let mut pending: Vec<&SetExpr> = vec![&query.body];
        while let Some(body) = pending.pop() {
            if let SetExpr::SetOperation { left, right, .. } = body {
                self.add(1)?;
                pending.push(left);
                pending.push(right);
            }
        }
        // A WITH query is planned once and then copied wherever it is read: it
        // counts there, with the count taken when the visitor leaves it (below).
        if let Some(with) = &query.with {
            for cte in &with.cte_tables {
                self.cte_queries.insert(std::ptr::from_ref(cte.query.as_ref()), cte.alias.name.value.clone());
            }
        }
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, query: &Query) -> ControlFlow<TooBig> {
        let start = self.open_queries.pop().unwrap_or(0);
        if let Some(name) = self.cte_queries.remove(&std::ptr::from_ref(query)) {
            self.ctes.insert(name, self.nodes - start);
            self.nodes = start;
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, select: &Select) -> ControlFlow<TooBig> {
        // Each table after the first is a join (a comma is a cross join).
        let tables: usize = select.from.iter().map(|t| 1 + t.joins.len()).sum();
        self.add(1 + tables.saturating_sub(1))
    }

    fn pre_visit_relation(&mut self, relation: &ObjectName) -> ControlFlow<TooBig> {
        let Some(last) = relation.0.last() else {
            return ControlFlow::Continue(());
        };
        let name = last.to_string();
        let name = name.trim_matches('"').trim_matches('`');
        match self.ctes.get(name).copied().or_else(|| (self.view_nodes)(name)) {
            Some(n) => self.add(n),
            None => ControlFlow::Continue(()),
        }
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<TooBig> {
        match expr {
            // Leaves: they cannot make the tree deeper.
            Expr::Identifier(_) | Expr::CompoundIdentifier(_) | Expr::Value(_) | Expr::TypedString { .. } | Expr::Wildcard(_) | Expr::QualifiedWildcard(..) => {
                ControlFlow::Continue(())
            }
            _ => self.add(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{parse_script, Statement};

    fn query(sql: &str) -> Box<Query> {
        match parse_script(sql).expect("parses").remove(0).statement {
            Statement::Select { query } => query,
            other => panic!("not a query: {other:?}"),
        }
    }

    const HERE: Location = Location { line: 1, column: 1 };

    #[test]
    fn counts_operators_set_operations_joins_and_ctes() {
        let none = |_: &str| None;
        // Query + select + two comparisons + AND.
        assert_eq!(check_query(&query("SELECT a FROM t WHERE a > 1 AND b < 2"), &none, HERE).unwrap(), 5);
        // A 10 000-value IN list is one node: its values are leaves.
        let list: Vec<String> = (0..10_000).map(|i| i.to_string()).collect();
        assert_eq!(check_query(&query(&format!("SELECT a FROM t WHERE a IN ({})", list.join(", "))), &none, HERE).unwrap(), 3);
        // Three selects, two UNION ALLs, one query.
        assert_eq!(check_query(&query("SELECT a FROM t UNION ALL SELECT a FROM t UNION ALL SELECT a FROM t"), &none, HERE).unwrap(), 6);
        // A join and its condition.
        assert_eq!(check_query(&query("SELECT a FROM t JOIN u ON t.a = u.a"), &none, HERE).unwrap(), 4);
        // A CTE counts each time it is read.
        let cte = check_query(&query("WITH c AS (SELECT a FROM t WHERE a > 1) SELECT a FROM c UNION ALL SELECT a FROM c"), &none, HERE).unwrap();
        // Two for the outer query and its UNION ALL, one per SELECT, three per read of `c`.
        assert_eq!(cte, 10);
        // A view counts the nodes it was registered with.
        let views = |name: &str| (name == "v").then_some(1000);
        assert_eq!(check_query(&query("SELECT a FROM v"), &views, HERE).unwrap(), 1002);
    }

    fn chain(terms: usize, term: impl Fn(usize) -> String, separator: &str) -> String {
        (0..terms).map(term).collect::<Vec<_>>().join(separator)
    }

    /// Plans `sql` (after `setup`) as the binary would, through every recursive
    /// stage (an error, too, is formatted); the statement's node count.
    async fn plan_fully(setup: &[String], sql: &str) -> std::result::Result<usize, String> {
        let mut planner = crate::Planner::new();
        let bids = "CREATE TABLE bids (auction BIGINT, bidder BIGINT, price BIGINT, name STRING, ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '1' SECOND) WITH ('connector' = 'filesystem', 'path' = 'x.json', 'format' = 'json')";
        for statement in std::iter::once(bids.to_string()).chain(setup.iter().cloned()) {
            let parsed = parse_script(&statement).map_err(|e| e.to_string())?.remove(0);
            match parsed.statement {
                Statement::CreateTable(def) => planner.register_table(def, true, parsed.location).map_err(|e| e.to_string())?,
                Statement::CreateView { name, query } => planner.register_view(&name, &query, parsed.location).await.map_err(|e| e.to_string())?,
                other => panic!("not set-up: {other:?}"),
            }
        }
        let parsed = parse_script(sql).map_err(|e| e.to_string())?.remove(0);
        let Statement::Select { query } = &parsed.statement else { panic!("not a query") };
        let nodes = planner.check_size(query, HERE).map_err(|e| e.to_string())?;
        match planner.plan_query(query, parsed.location).await {
            Ok(plan) => {
                let explained = plan.explain(4);
                let debugged = format!("{plan:?} {parsed:?}");
                assert!(!explained.is_empty() && !debugged.is_empty());
            }
            // Some shapes are type errors; what matters is that the error, too, comes back.
            Err(e) => assert!(!format!("{e} {e:?}").is_empty()),
        }
        drop(parsed);
        Ok(nodes)
    }

    #[test]
    fn statements_at_the_limits_plan_in_a_quarter_of_the_planning_stack() {
        let quarter = std::thread::Builder::new().stack_size(PLANNING_STACK_BYTES / 4);
        let planned = quarter
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
                runtime.block_on(async {
                    let and = |n| chain(n, |i| format!("price <> {i}"), " AND ");
                    // Each statement is as big as the limits allow (2000 nodes), in one deep shape.
                    let shapes = [
                        (vec![], format!("SELECT * FROM bids WHERE {}", and(999))),
                        (vec![], format!("SELECT * FROM bids WHERE {}", chain(999, |i| format!("price = {i}"), " OR "))),
                        (vec![], chain(1000, |_| "SELECT auction FROM bids".into(), " UNION ALL ")),
                        (vec![], format!("SELECT {} FROM bids", chain(1997, |_| "price".into(), " + "))),
                        (vec![], format!("SELECT price{} FROM bids", "::BIGINT".repeat(1997))),
                        (vec![], format!("SELECT {} FROM bids", chain(1997, |_| "name".into(), " || "))),
                        (vec![], format!("SELECT * FROM bids WHERE {}", chain(1997, |_| "name".into(), " LIKE "))),
                        (vec![], format!("SELECT price{} FROM bids", " IS NULL".repeat(1997))),
                        // Views of views, whose filters the optimizer merges into one predicate.
                        (
                            vec![
                                format!("CREATE VIEW v1 AS SELECT * FROM bids WHERE {}", and(500)),
                                format!("CREATE VIEW v2 AS SELECT * FROM v1 WHERE {}", and(400)),
                            ],
                            format!("SELECT * FROM v2 WHERE {}", and(98)),
                        ),
                        // WITH queries, each reading the one before.
                        (
                            vec![],
                            format!(
                                "WITH c0 AS (SELECT * FROM bids){} SELECT * FROM c665",
                                chain(665, |i| format!(", c{} AS (SELECT * FROM c{i} WHERE price > {i})", i + 1), "")
                            ),
                        ),
                    ];
                    let mut planned = Vec::new();
                    for (setup, sql) in shapes {
                        eprintln!("planning {}...", &sql[..80]);
                        let nodes = plan_fully(&setup, &sql).await.unwrap_or_else(|e| panic!("{e}\nin {}", &sql[..200]));
                        planned.push(nodes);
                    }
                    planned
                })
            })
            .unwrap()
            .join()
            .expect("planning at the limits overflowed a quarter of the planning stack");
        // Each shape was at (or just under) the limit, so the test tests what it says.
        assert!(planned.iter().all(|&n| n > MAX_PLAN_NODES * 9 / 10 && n <= MAX_PLAN_NODES), "{planned:?}");
    }

    /// Runs `f` with the stack the binary plans with (a test thread has 2 MB).
    fn on_planning_stack(f: impl FnOnce() + Send + 'static) {
        std::thread::Builder::new().stack_size(PLANNING_STACK_BYTES).spawn(f).unwrap().join().unwrap();
    }

    #[test]
    fn refuses_a_statement_past_the_limit_with_the_limit_and_what_to_do() {
        on_planning_stack(refuses_past_the_limit);
    }

    fn refuses_past_the_limit() {
        let terms: Vec<String> = (0..MAX_PLAN_NODES).map(|i| format!("price <> {i}")).collect();
        // Refused as soon as it is parsed.
        let error = parse_script(&format!("SELECT * FROM bids WHERE {}", terms.join(" AND "))).unwrap_err().to_string();
        assert!(error.contains("more than 2000 operators"), "{error}");
        assert!(error.contains("hint: write long AND/OR chains"), "{error}");
        // A view read many times adds up.
        let views = |name: &str| (name == "v").then_some(MAX_PLAN_NODES / 4);
        let union = ["SELECT a FROM v"; 5].join(" UNION ALL ");
        assert!(check_query(&query(&union), &views, HERE).is_err());
    }

    /// `form` nested `levels` deep around `inner`, each level closed by `close`.
    fn nested(form: &str, levels: usize, inner: &str, close: &str) -> String {
        (0..levels).fold(inner.to_string(), |e, _| format!("{form}{e}{close}"))
    }

    /// Issue 17 (leftover of issue 16): 18 nested CASTs around 21 NOTs held the
    /// parser for seconds, 24 of them for minutes (sqlparser parses each CAST twice
    /// once something inside fails); such nesting is refused before sqlparser runs.
    #[test]
    fn refuses_special_forms_nested_past_the_limit_before_the_parser_runs() {
        on_planning_stack(|| {
            let issue = format!("SELECT {} FROM bids", nested("CAST(", 20, &format!("{}price", "NOT ".repeat(40)), " AS BIGINT)"));
            let error = parse_script(&issue).unwrap_err().to_string();
            assert!(error.contains("more than 8 levels deep, Eddy's limit for these forms"), "{error}");
            assert!(error.contains("hint: compute the inner levels in a CREATE VIEW"), "{error}");
            // Pointed at the CAST that goes one level too deep: the ninth.
            assert!(error.starts_with(&format!("syntax error at line 1, column {}:", 8 + 8 * "CAST(".len())), "{error}");
            // Each form counts, mixed and through other parentheses; POSITION counts twice.
            for shape in [
                nested("SUBSTRING(", 9, "name", ", 1)"),
                nested("CEIL((", 5, &nested("FLOOR(", 4, "price", ")"), "))"),
                nested("NOT (", 9, "price > 1", ")"),
                nested("POSITION('a' IN ", 5, "name", ")"),
                nested("ARRAY[", 9, "1", "]"),
            ] {
                let error = parse_script(&format!("SELECT {shape} FROM bids")).unwrap_err().to_string();
                assert!(error.contains("levels deep, Eddy's limit for these forms"), "{shape}: {error}");
            }
            // At the limit, a statement parses, and a mistake inside is reported as itself.
            parse_script(&format!("SELECT {} FROM bids", nested("CAST(", 8, "price", " AS BIGINT)"))).expect("8 nested CASTs parse");
            parse_script(&format!("SELECT {} FROM bids", nested("POSITION('a' IN ", 4, "name", ")"))).expect("4 nested POSITIONs parse");
            parse_script(&format!("SELECT {} FROM bids", nested("ABS(", 30, "price", ")"))).expect("other functions nest to the parentheses limit");
            let error = parse_script(&format!("SELECT {} FROM bids", nested("CAST(", 8, "price +", " AS BIGINT)"))).unwrap_err().to_string();
            assert!(!error.contains("levels deep"), "{error}");
        });
    }
}
