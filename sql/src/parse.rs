//! Splitting a script into statements and parsing the Flink dialect.
//!
//! sqlparser does not know Flink's streaming DDL (`WATERMARK FOR`, computed
//! columns, `METADATA`, `NOT ENFORCED`) nor window table functions with `TABLE t`
//! and `DESCRIPTOR(col)` arguments, so this module works on sqlparser's tokens:
//! `CREATE TABLE` is parsed here by a small recursive-descent parser, window
//! table functions are rewritten to references to planner-provided tables (see
//! [`crate::window`]), and the rest is handed to sqlparser with the original token
//! locations, so every error still points at the user's line and column.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, TimeUnit};
use datafusion::sql::sqlparser::ast::Query;
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer, Whitespace};

use crate::error::{Location, Result, SqlError};
use eddy_engine::table::{ColumnDef, ComputedColumn, MetadataColumn, TableDef, WatermarkDef};

/// One statement of a script, with where it starts.
#[derive(Debug, Clone)]
pub struct ParsedStatement {
    pub statement: Statement,
    pub location: Location,
    /// The statement's own text (without the `;`), so a server can store and show it.
    pub text: String,
}

/// The statements Eddy understands.
#[derive(Debug, Clone)]
pub enum Statement {
    /// `CREATE TABLE ... WITH (...)`: declares a source or sink.
    CreateTable(TableDef),
    /// `CREATE [TEMPORARY] VIEW name AS query`: a named query, inlined where used.
    CreateView { name: String, query: Box<Query> },
    /// `INSERT INTO table query`: starts a pipeline.
    Insert { table: String, query: Box<Query> },
    /// A bare query: runs and prints (or returns) its rows.
    Select { query: Box<Query> },
    /// `SET 'key' = 'value'`: a session setting such as `parallelism`.
    Set { key: String, value: String },
    /// `CREATE MATERIALIZED VIEW name AS query`: a pipeline whose result the server keeps and serves.
    CreateMaterializedView { name: String, query: Box<Query> },
    /// `SHOW TABLES | VIEWS | PIPELINES`.
    Show(ShowWhat),
    /// `SHOW CREATE TABLE | VIEW | MATERIALIZED VIEW name`: the statement that
    /// made it, with its secrets masked (server only: it keeps the statements).
    ShowCreate { what: DropWhat, name: String },
    /// `DESCRIBE name` (or `DESC name`): a table's or view's columns.
    Describe { name: String },
    /// `EXPLAIN statement`: the streaming operator graph the statement would run.
    Explain { statement: Box<Statement> },
    /// `EXPLAIN ANALYZE pipeline`: a running pipeline's operators with their live
    /// figures (server only; the pipeline by id or by the table or view it writes).
    ExplainAnalyze { pipeline: String },
    /// `DROP TABLE | VIEW | MATERIALIZED VIEW [IF EXISTS] name`.
    Drop { what: DropWhat, name: String, if_exists: bool },
    /// `STOP PIPELINE id [WITH SAVEPOINT]`: stops a running pipeline; with a
    /// savepoint, a checkpoint is taken first so it restarts exactly there.
    StopPipeline { id: String, savepoint: bool },
    /// `RESTART PIPELINE id [WITH PARALLELISM n]`: starts a stopped pipeline again
    /// from its last checkpoint (a savepoint), with another parallelism when given:
    /// keyed state is split again by key.
    RestartPipeline { id: String, parallelism: Option<usize> },
}

/// What `SHOW` lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShowWhat {
    Tables,
    Views,
    Pipelines,
}

/// What `DROP` removes (and `SHOW CREATE` shows): a kind of relation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropWhat {
    Table,
    View,
    MaterializedView,
}

/// Parses every statement of a script, separated by `;`.
pub fn parse_script(sql: &str) -> Result<Vec<ParsedStatement>> {
    // Editors on Windows save UTF-8 with a byte-order mark; it is not part of the
    // SQL, and no editor counts it as a column.
    let sql = sql.strip_prefix('\u{feff}').unwrap_or(sql);
    let lines = LineStarts::new(sql);
    let dialect = GenericDialect {};
    let tokens = Tokenizer::new(&dialect, sql)
        .tokenize_with_location()
        .map_err(|e| SqlError::syntax(Location { line: e.location.line, column: e.location.column }, e.message))?;
    let mut statements = Vec::new();
    let mut current: Vec<TokenWithSpan> = Vec::new();
    for token in tokens {
        match &token.token {
            Token::Whitespace(_) => {}
            Token::SemiColon => {
                if !current.is_empty() {
                    statements.push(parse_statement(sql, &lines, std::mem::take(&mut current))?);
                }
            }
            Token::EOF => {}
            _ => current.push(token),
        }
    }
    if !current.is_empty() {
        statements.push(parse_statement(sql, &lines, current)?);
    }
    Ok(statements)
}

fn location_of(token: &TokenWithSpan) -> Location {
    Location { line: token.span.start.line, column: token.span.start.column }
}

fn parse_statement(sql: &str, lines: &LineStarts, tokens: Vec<TokenWithSpan>) -> Result<ParsedStatement> {
    let location = location_of(&tokens[0]);
    crate::limits::check_tokens(tokens.len(), location)?;
    crate::limits::check_parentheses(&tokens)?;
    crate::limits::check_special_forms(&tokens)?;
    let text = match tokens.last() {
        Some(last) => lines.slice(sql, location, Location { line: last.span.end.line, column: last.span.end.column }),
        None => String::new(),
    };
    let mut cursor = Cursor::new(tokens);
    let statement = cursor.parse_statement_body()?;
    Ok(ParsedStatement { statement, location, text })
}

/// The names of the tables and views a query reads (CTE names included), so a
/// server can tell queries over materialized views from queries over streams.
pub fn referenced_tables(query: &Query) -> Vec<String> {
    let mut names = Vec::new();
    let _ = datafusion::sql::sqlparser::ast::visit_relations(query, |relation| {
        if let Some(last) = relation.0.last() {
            names.push(last.to_string().trim_matches('"').trim_matches('`').to_string());
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    names.sort();
    names.dedup();
    names
}

/// The text of `sql` from `start` up to (not including) `end`, both 1-based line/column in characters.
/// Where each line of a script starts, so a statement's text is cut out in time
/// proportional to the statement, not to everything before it (a script of many
/// statements, or one huge literal, stays linear).
struct LineStarts(Vec<usize>);

impl LineStarts {
    fn new(sql: &str) -> Self {
        LineStarts(std::iter::once(0).chain(sql.match_indices('\n').map(|(i, _)| i + 1)).collect())
    }

    /// The byte offset of a 1-based line and column (sqlparser counts columns in characters).
    fn offset(&self, sql: &str, at: Location) -> usize {
        let Some(&line_start) = self.0.get((at.line.max(1) - 1) as usize) else { return sql.len() };
        let rest = sql.get(line_start..).unwrap_or_default();
        let skip = (at.column.max(1) - 1) as usize;
        rest.char_indices().take_while(|(_, c)| *c != '\n').nth(skip).map(|(i, _)| line_start + i).unwrap_or_else(|| {
            // The column is just past the line's last character.
            line_start + rest.find('\n').unwrap_or(rest.len())
        })
    }

    /// The text between two locations, trimmed.
    fn slice(&self, sql: &str, start: Location, end: Location) -> String {
        let (from, to) = (self.offset(sql, start), self.offset(sql, end));
        sql.get(from..to.max(from)).unwrap_or_default().trim().to_string()
    }
}

impl Cursor {
    fn parse_statement_body(&mut self) -> Result<Statement> {
        let cursor = self;
        let location = cursor.here();
        let statement = if cursor.peek_keywords(&[Keyword::CREATE, Keyword::TABLE]) {
            Statement::CreateTable(cursor.parse_create_table()?)
        } else if cursor.peek_keyword(Keyword::CREATE) {
            cursor.parse_create_view()?
        } else if cursor.peek_keyword(Keyword::INSERT) {
            cursor.expect_keyword(Keyword::INSERT)?;
            cursor.expect_keyword(Keyword::INTO)?;
            let table = cursor.parse_identifier()?;
            Statement::Insert { table, query: cursor.parse_rest_as_query()? }
        } else if cursor.peek_keyword(Keyword::SET) {
            cursor.parse_set()?
        } else if cursor.peek_keyword(Keyword::SELECT) || cursor.peek_keyword(Keyword::WITH) || cursor.peek_token(&Token::LParen) {
            Statement::Select { query: cursor.parse_rest_as_query()? }
        } else if cursor.consume_keyword(Keyword::SHOW) {
            if cursor.consume_keyword(Keyword::CREATE) {
                let what = if cursor.consume_keyword(Keyword::TABLE) {
                    DropWhat::Table
                } else if cursor.consume_keyword(Keyword::VIEW) {
                    DropWhat::View
                } else if cursor.consume_keyword(Keyword::MATERIALIZED) {
                    cursor.expect_keyword(Keyword::VIEW)?;
                    DropWhat::MaterializedView
                } else {
                    return Err(cursor.error_expected("TABLE, VIEW or MATERIALIZED VIEW after SHOW CREATE"));
                };
                let name = cursor.parse_identifier()?;
                cursor.expect_end()?;
                return Ok(Statement::ShowCreate { what, name });
            }
            let what = if cursor.consume_keyword(Keyword::TABLES) {
                ShowWhat::Tables
            } else if cursor.consume_keyword(Keyword::VIEWS) {
                ShowWhat::Views
            } else if cursor.consume_word("PIPELINES") {
                ShowWhat::Pipelines
            } else {
                return Err(cursor.error_expected("TABLES, VIEWS, PIPELINES or CREATE after SHOW"));
            };
            cursor.expect_end()?;
            Statement::Show(what)
        } else if cursor.consume_keyword(Keyword::DESCRIBE) || cursor.consume_keyword(Keyword::DESC) {
            let name = cursor.parse_identifier()?;
            cursor.expect_end()?;
            Statement::Describe { name }
        } else if cursor.consume_keyword(Keyword::EXPLAIN) {
            // Only one EXPLAIN: a chain of them would recurse here once per word.
            if cursor.peek_keyword(Keyword::EXPLAIN) {
                return Err(SqlError::syntax(
                    cursor.here(),
                    "EXPLAIN shows the plan of an INSERT INTO, a SELECT or a CREATE MATERIALIZED VIEW, not of another EXPLAIN",
                ));
            }
            if cursor.consume_keyword(Keyword::ANALYZE) {
                let pipeline = cursor.parse_identifier()?;
                cursor.expect_end()?;
                Statement::ExplainAnalyze { pipeline }
            } else {
                Statement::Explain { statement: Box::new(cursor.parse_statement_body()?) }
            }
        } else if cursor.consume_keyword(Keyword::DROP) {
            let what = if cursor.consume_keyword(Keyword::TABLE) {
                DropWhat::Table
            } else if cursor.consume_keywords(&[Keyword::MATERIALIZED, Keyword::VIEW]) {
                DropWhat::MaterializedView
            } else if cursor.consume_keyword(Keyword::VIEW) {
                DropWhat::View
            } else {
                return Err(cursor.error_expected("TABLE, VIEW or MATERIALIZED VIEW after DROP"));
            };
            let if_exists = cursor.consume_keywords(&[Keyword::IF, Keyword::EXISTS]);
            let name = cursor.parse_identifier()?;
            cursor.expect_end()?;
            Statement::Drop { what, name, if_exists }
        } else if cursor.consume_word("STOP") {
            let id = cursor.parse_pipeline_id("STOP")?;
            let savepoint = cursor.consume_keyword(Keyword::WITH);
            if savepoint && !cursor.consume_word("SAVEPOINT") {
                return Err(cursor.error_expected("SAVEPOINT after STOP PIPELINE id WITH"));
            }
            cursor.expect_end()?;
            Statement::StopPipeline { id, savepoint }
        } else if cursor.consume_word("RESTART") {
            let id = cursor.parse_pipeline_id("RESTART")?;
            let parallelism = if cursor.consume_keyword(Keyword::WITH) {
                if !cursor.consume_word("PARALLELISM") {
                    return Err(cursor.error_expected("PARALLELISM after RESTART PIPELINE id WITH"));
                }
                match cursor.peek().map(|t| t.token.clone()) {
                    Some(Token::Number(n, _)) if n.parse::<usize>().is_ok_and(|n| n > 0) => {
                        cursor.index += 1;
                        n.parse().ok()
                    }
                    _ => return Err(cursor.error_expected("a positive number of tasks after WITH PARALLELISM")),
                }
            } else {
                None
            };
            cursor.expect_end()?;
            Statement::RestartPipeline { id, parallelism }
        } else {
            let Some(first) = cursor.peek() else {
                return Err(cursor.error_expected("a statement"));
            };
            return Err(SqlError::syntax(location, format!("unsupported statement starting with `{}`", first.token))
            .with_hint("Eddy runs CREATE TABLE, CREATE [MATERIALIZED] VIEW, INSERT INTO ... SELECT, SELECT, SET, SHOW, DESCRIBE, EXPLAIN, DROP, STOP PIPELINE and RESTART PIPELINE statements"));
        };
        Ok(statement)
    }
}

/// A position in one statement's tokens (whitespace already removed).
struct Cursor {
    tokens: Vec<TokenWithSpan>,
    index: usize,
}

impl Cursor {
    fn new(tokens: Vec<TokenWithSpan>) -> Self {
        Cursor { tokens, index: 0 }
    }

    fn peek(&self) -> Option<&TokenWithSpan> {
        self.tokens.get(self.index)
    }

    fn here(&self) -> Location {
        match self.peek().or(self.tokens.last()) {
            Some(t) => {
                let mut l = location_of(t);
                if self.index >= self.tokens.len() {
                    l.column = t.span.end.column;
                }
                l
            }
            None => Location { line: 1, column: 1 },
        }
    }

    fn error_expected(&self, what: &str) -> SqlError {
        let found = match self.peek() {
            Some(t) => format!("found `{}`", t.token),
            None => "found the end of the statement".to_string(),
        };
        SqlError::syntax(self.here(), format!("expected {what}, {found}"))
    }

    fn peek_token(&self, token: &Token) -> bool {
        self.peek().is_some_and(|t| &t.token == token)
    }

    fn consume_token(&mut self, token: &Token) -> bool {
        if self.peek_token(token) {
            self.index += 1;
            true
        } else {
            false
        }
    }

    fn expect_token(&mut self, token: &Token) -> Result<()> {
        if self.consume_token(token) {
            Ok(())
        } else {
            Err(self.error_expected(&format!("`{token}`")))
        }
    }

    fn keyword_at(&self, offset: usize) -> Option<Keyword> {
        match self.tokens.get(self.index + offset).map(|t| &t.token) {
            Some(Token::Word(w)) if w.quote_style.is_none() => Some(w.keyword),
            _ => None,
        }
    }

    fn peek_keyword(&self, keyword: Keyword) -> bool {
        self.keyword_at(0) == Some(keyword)
    }

    fn peek_keywords(&self, keywords: &[Keyword]) -> bool {
        keywords.iter().enumerate().all(|(i, k)| self.keyword_at(i) == Some(*k))
    }

    fn consume_keyword(&mut self, keyword: Keyword) -> bool {
        if self.peek_keyword(keyword) {
            self.index += 1;
            true
        } else {
            false
        }
    }

    fn consume_keywords(&mut self, keywords: &[Keyword]) -> bool {
        if self.peek_keywords(keywords) {
            self.index += keywords.len();
            true
        } else {
            false
        }
    }

    /// Flink words sqlparser has no keyword for (`WATERMARK`, `ENFORCED`, `METADATA`).
    /// Fails unless every token of the statement has been read.
    fn expect_end(&self) -> Result<()> {
        match self.peek() {
            None => Ok(()),
            Some(t) => Err(SqlError::syntax(location_of(t), format!("unexpected `{}` at the end of the statement", t.token))),
        }
    }

    fn consume_word(&mut self, word: &str) -> bool {
        let matches = matches!(self.peek().map(|t| &t.token), Some(Token::Word(w)) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word));
        if matches {
            self.index += 1;
        }
        matches
    }

    fn expect_keyword(&mut self, keyword: Keyword) -> Result<()> {
        if self.consume_keyword(keyword) {
            Ok(())
        } else {
            Err(self.error_expected(&format!("{keyword:?}")))
        }
    }

    /// A table or column name: a plain or quoted word, kept as written (names are case-sensitive, as in Flink).
    /// `PIPELINE id` after `verb`: the id as a name or a quoted string.
    fn parse_pipeline_id(&mut self, verb: &str) -> Result<String> {
        if !self.consume_word("PIPELINE") {
            return Err(self.error_expected(&format!("PIPELINE after {verb}")));
        }
        match self.peek().map(|t| t.token.clone()) {
            Some(Token::SingleQuotedString(s)) => {
                self.index += 1;
                Ok(s)
            }
            _ => self.parse_identifier(),
        }
    }

    fn parse_identifier(&mut self) -> Result<String> {
        match self.peek().map(|t| t.token.clone()) {
            Some(Token::Word(w)) => {
                self.index += 1;
                let mut name = w.value;
                // `catalog.db.table`: Eddy has one namespace, so keep the last part.
                while self.consume_token(&Token::Period) {
                    name = self.parse_identifier()?;
                }
                Ok(name)
            }
            _ => Err(self.error_expected("a name")),
        }
    }

    fn parse_string_literal(&mut self) -> Result<String> {
        match self.peek().map(|t| t.token.clone()) {
            Some(Token::SingleQuotedString(s)) | Some(Token::DoubleQuotedString(s)) => {
                self.index += 1;
                Ok(s)
            }
            _ => Err(self.error_expected("a quoted string")),
        }
    }

    /// Takes tokens up to (not including) a `,` or `)` at nesting depth zero.
    fn take_until_element_end(&mut self) -> Vec<TokenWithSpan> {
        let mut depth = 0usize;
        let start = self.index;
        while let Some(t) = self.peek() {
            match t.token {
                Token::LParen | Token::LBracket => depth += 1,
                Token::RParen | Token::RBracket if depth == 0 => break,
                Token::RParen | Token::RBracket => depth -= 1,
                Token::Comma if depth == 0 => break,
                _ => {}
            }
            self.index += 1;
        }
        self.tokens[start..self.index].to_vec()
    }

    fn parse_create_table(&mut self) -> Result<TableDef> {
        let start = self.here();
        self.expect_keyword(Keyword::CREATE)?;
        self.expect_keyword(Keyword::TABLE)?;
        self.consume_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
        let name = self.parse_identifier()?;
        let mut table = TableDef {
            name,
            columns: Vec::new(),
            computed: Vec::new(),
            watermark: None,
            primary_key: Vec::new(),
            partitioned_by: Vec::new(),
            options: BTreeMap::new(),
        };
        if self.consume_token(&Token::LParen) && !self.consume_token(&Token::RParen) {
            loop {
                self.parse_table_element(&mut table)?;
                if self.consume_token(&Token::Comma) {
                    continue;
                }
                self.expect_token(&Token::RParen)?;
                break;
            }
        }
        if self.consume_keyword(Keyword::COMMENT) {
            self.parse_string_literal()?;
        }
        if self.consume_keywords(&[Keyword::PARTITIONED, Keyword::BY]) {
            self.expect_token(&Token::LParen)?;
            loop {
                let location = self.here();
                let column = self.parse_identifier()?;
                if !table.columns.iter().any(|c| c.name == column && c.metadata.is_none()) {
                    let known: Vec<&str> = table.columns.iter().map(|c| c.name.as_str()).collect();
                    return Err(SqlError::syntax(location, format!("PARTITIONED BY names '{column}', which is not a physical column"))
                        .with_hint(format!("columns: {}", known.join(", "))));
                }
                if table.partitioned_by.contains(&column) {
                    return Err(SqlError::syntax(location, format!("'{column}' is named twice in PARTITIONED BY")));
                }
                table.partitioned_by.push(column);
                if !self.consume_token(&Token::Comma) {
                    break;
                }
            }
            self.expect_token(&Token::RParen)?;
        }
        if self.consume_keyword(Keyword::WITH) {
            self.expect_token(&Token::LParen)?;
            if !self.consume_token(&Token::RParen) {
                loop {
                    let option_location = self.here();
                    let key = self.parse_string_literal()?;
                    self.expect_token(&Token::Eq)?;
                    let value = self.parse_string_literal()?;
                    if table.options.insert(key.clone(), value).is_some() {
                        return Err(SqlError::syntax(option_location, format!("option '{key}' is given twice")));
                    }
                    if self.consume_token(&Token::Comma) {
                        continue;
                    }
                    self.expect_token(&Token::RParen)?;
                    break;
                }
            }
        }
        if self.peek().is_some() {
            return Err(self.error_expected("WITH (...) or the end of the statement"));
        }
        check_primary_key(&table, start)?;
        let known: Vec<&str> = table.columns.iter().map(|c| c.name.as_str()).chain(table.computed.iter().map(|c| c.name.as_str())).collect();
        if let Some(wm) = &table.watermark {
            if !known.contains(&wm.column.as_str()) {
                return Err(SqlError::syntax(
                    self.here(),
                    format!("WATERMARK FOR names column `{}`, which the table does not have; columns: {}", wm.column, known.join(", ")),
                ));
            }
        }
        Ok(table)
    }

    fn parse_table_element(&mut self, table: &mut TableDef) -> Result<()> {
        if self.consume_word("WATERMARK") {
            self.expect_keyword(Keyword::FOR)?;
            let column = self.parse_identifier()?;
            self.expect_keyword(Keyword::AS)?;
            let expr = self.take_until_element_end();
            if expr.is_empty() {
                return Err(self.error_expected("a watermark expression such as `ts - INTERVAL '5' SECOND`"));
            }
            if table.watermark.is_some() {
                return Err(SqlError::syntax(location_of(&expr[0]), "a table can declare only one WATERMARK"));
            }
            check_expression_size(&expr)?;
            table.watermark = Some(WatermarkDef { column, expr_sql: tokens_to_sql(&expr) });
            return Ok(());
        }
        if self.consume_keyword(Keyword::CONSTRAINT) {
            self.parse_identifier()?;
        }
        if self.consume_keywords(&[Keyword::PRIMARY, Keyword::KEY]) {
            self.expect_token(&Token::LParen)?;
            loop {
                table.primary_key.push(self.parse_identifier()?);
                if !self.consume_token(&Token::Comma) {
                    break;
                }
            }
            self.expect_token(&Token::RParen)?;
            if self.consume_keyword(Keyword::NOT) && !self.consume_word("ENFORCED") {
                return Err(self.error_expected("ENFORCED"));
            }
            return Ok(());
        }
        let name_location = self.here();
        let name = self.parse_identifier()?;
        if table.columns.iter().any(|c| c.name == name) || table.computed.iter().any(|c| c.name == name) {
            return Err(SqlError::syntax(name_location, format!("column `{name}` is declared twice")));
        }
        if self.consume_keyword(Keyword::AS) {
            let expr = self.take_until_element_end();
            if expr.is_empty() {
                return Err(self.error_expected("an expression for the computed column"));
            }
            check_expression_size(&expr)?;
            table.computed.push(ComputedColumn { name, expr_sql: tokens_to_sql(&expr) });
            return Ok(());
        }
        let data_type = self.parse_data_type(&format!("column `{name}` of table `{}`", table.name))?;
        let mut nullable = true;
        let mut metadata = None;
        loop {
            if self.consume_keywords(&[Keyword::NOT, Keyword::NULL]) {
                nullable = false;
            } else if self.consume_keyword(Keyword::NULL) {
            } else if self.consume_word("METADATA") {
                let key = if self.consume_keyword(Keyword::FROM) { self.parse_string_literal()? } else { name.clone() };
                let is_virtual = self.consume_word("VIRTUAL");
                metadata = Some(MetadataColumn { key, is_virtual });
            } else if self.consume_keyword(Keyword::COMMENT) {
                self.parse_string_literal()?;
            } else if self.consume_keywords(&[Keyword::PRIMARY, Keyword::KEY]) {
                table.primary_key.push(name.clone());
                if self.consume_keyword(Keyword::NOT) && !self.consume_word("ENFORCED") {
                    return Err(self.error_expected("ENFORCED"));
                }
            } else {
                break;
            }
        }
        if !(self.peek_token(&Token::Comma) || self.peek_token(&Token::RParen)) {
            return Err(self.error_expected("`,` or `)` after the column definition"));
        }
        table.columns.push(ColumnDef { name, data_type, nullable, metadata });
        Ok(())
    }

    /// Flink's SQL types, mapped to the Arrow types Eddy computes with. Type
    /// arguments out of Flink's bounds are refused here, naming `what` (the column),
    /// rather than clamped or ignored.
    fn parse_data_type(&mut self, what: &str) -> Result<DataType> {
        let location = self.here();
        let word = match self.peek().map(|t| t.token.clone()) {
            Some(Token::Word(w)) => {
                self.index += 1;
                w.value.to_ascii_uppercase()
            }
            _ => return Err(self.error_expected("a column type such as BIGINT, STRING or TIMESTAMP(3)")),
        };
        match word.as_str() {
            "ARRAY" | "MAP" | "ROW" => return self.parse_nested_type(&word, what),
            _ => {}
        }
        let mut args: Vec<u64> = Vec::new();
        if self.consume_token(&Token::LParen) {
            loop {
                match self.peek().map(|t| t.token.clone()) {
                    Some(Token::Number(n, _)) => {
                        self.index += 1;
                        args.push(n.parse().map_err(|_| SqlError::syntax(location, format!("bad type argument `{n}`")))?);
                    }
                    _ => return Err(self.error_expected("a number")),
                }
                if !self.consume_token(&Token::Comma) {
                    break;
                }
            }
            self.expect_token(&Token::RParen)?;
        }
        let data_type = match word.as_str() {
            "BOOLEAN" | "BOOL" => DataType::Boolean,
            "TINYINT" => DataType::Int8,
            "SMALLINT" => DataType::Int16,
            "INT" | "INTEGER" => DataType::Int32,
            "BIGINT" => DataType::Int64,
            "FLOAT" | "REAL" => DataType::Float32,
            "DOUBLE" => {
                self.consume_keyword(Keyword::PRECISION);
                DataType::Float64
            }
            "DECIMAL" | "DEC" | "NUMERIC" => {
                let precision = args.first().copied().unwrap_or(10);
                let scale = args.get(1).copied().unwrap_or(0);
                let written = format!("{word}({precision}, {scale})");
                if !(1..=38).contains(&precision) {
                    return Err(SqlError::syntax(location, format!("{what}: {written} has a precision of {precision}; DECIMAL allows 1 to 38 digits"))
                        .with_hint("write DECIMAL(p, s) with 1 <= p <= 38 and 0 <= s <= p, e.g. DECIMAL(10, 2)"));
                }
                if scale > precision {
                    let example = if precision + scale <= 38 {
                        format!(": {precision} digits before the point and {scale} after is DECIMAL({}, {scale})", precision + scale)
                    } else {
                        String::new()
                    };
                    return Err(SqlError::syntax(location, format!("{what}: {written} has a scale ({scale}) larger than its precision ({precision})"))
                        .with_hint(format!("the scale is how many of the precision's digits come after the point, so it is at most the precision{example}")));
                }
                DataType::Decimal128(precision as u8, scale as i8)
            }
            "STRING" | "VARCHAR" | "CHAR" | "TEXT" => DataType::Utf8,
            "BYTES" | "VARBINARY" | "BINARY" => DataType::Binary,
            "DATE" => DataType::Date32,
            "TIME" => {
                if let Some(&digits) = args.first().filter(|&&p| p > 9) {
                    return Err(SqlError::syntax(location, format!("{what}: TIME({digits}) has a precision of {digits}; TIME allows 0 to 9 digits after the second"))
                        .with_hint("write TIME or TIME(3)"));
                }
                DataType::Time32(TimeUnit::Millisecond)
            }
            // Event times are kept at millisecond precision (Flink's TIMESTAMP(3)), the unit watermarks and windows use.
            "TIMESTAMP" | "TIMESTAMP_LTZ" => {
                if let Some(&digits) = args.first().filter(|&&p| p > 9) {
                    return Err(SqlError::syntax(
                        location,
                        format!("{what}: {word}({digits}) has a precision of {digits}; {word} allows 0 to 9 digits after the second"),
                    )
                    .with_hint(format!("write {word}(3): Eddy keeps event times in milliseconds (any precision from 0 to 9 is accepted and kept as milliseconds)")));
                }
                if self.consume_keyword(Keyword::WITH) {
                    self.consume_keyword(Keyword::LOCAL);
                    self.expect_keyword(Keyword::TIME)?;
                    self.expect_keyword(Keyword::ZONE)?;
                } else if self.consume_keyword(Keyword::WITHOUT) {
                    self.expect_keyword(Keyword::TIME)?;
                    self.expect_keyword(Keyword::ZONE)?;
                }
                DataType::Timestamp(TimeUnit::Millisecond, None)
            }
            other => {
                return Err(SqlError::syntax(location, format!("unknown or unsupported column type `{other}`")).with_hint(
                    "supported types: BOOLEAN, TINYINT, SMALLINT, INT, BIGINT, FLOAT, DOUBLE, DECIMAL(p, s), STRING, VARCHAR(n), BYTES, DATE, TIME, TIMESTAMP(3), TIMESTAMP_LTZ(3), ARRAY<t>, MAP<k, v>, ROW<name t, ...>",
                ))
            }
        };
        Ok(data_type)
    }

    /// Flink's collection and structured types: `ARRAY<t>`, `MAP<k, v>`, and
    /// `ROW<name t, ...>` (or `ROW(name t, ...)`), as Arrow lists, maps and structs.
    /// Elements, values and fields may be NULL unless declared `NOT NULL`; map keys never are.
    fn parse_nested_type(&mut self, word: &str, what: &str) -> Result<DataType> {
        let parenthesized = word == "ROW" && self.consume_token(&Token::LParen);
        if !parenthesized {
            self.expect_token(&Token::Lt)?;
        }
        let data_type = match word {
            "ARRAY" => {
                let (element, nullable) = self.parse_nested_member(what)?;
                DataType::List(Arc::new(Field::new("element", element, nullable)))
            }
            "MAP" => {
                let (key, _) = self.parse_nested_member(what)?;
                self.expect_token(&Token::Comma)?;
                let (value, nullable) = self.parse_nested_member(what)?;
                let entries = Field::new("entries", DataType::Struct(vec![Field::new("key", key, false), Field::new("value", value, nullable)].into()), false);
                DataType::Map(Arc::new(entries), false)
            }
            _ => {
                let mut fields = Vec::new();
                loop {
                    let name = match self.peek().map(|t| t.token.clone()) {
                        Some(Token::Word(w)) => {
                            self.index += 1;
                            w.value
                        }
                        _ => return Err(self.error_expected("a field name")),
                    };
                    let (data_type, nullable) = self.parse_nested_member(&format!("{what}.{name}"))?;
                    fields.push(Field::new(name, data_type, nullable));
                    if !self.consume_token(&Token::Comma) {
                        break;
                    }
                }
                DataType::Struct(fields.into())
            }
        };
        if parenthesized {
            self.expect_token(&Token::RParen)?;
        } else {
            self.expect_closing_angle()?;
        }
        Ok(data_type)
    }

    /// An element, value or field type, and whether it may be NULL.
    fn parse_nested_member(&mut self, what: &str) -> Result<(DataType, bool)> {
        let data_type = self.parse_data_type(what)?;
        let nullable = !(self.peek_keyword(Keyword::NOT) && self.keyword_at(1) == Some(Keyword::NULL));
        if !nullable {
            self.index += 2;
        }
        Ok((data_type, nullable))
    }

    /// A `>` closing a type; of `>>` (two nested types closing), the first half.
    fn expect_closing_angle(&mut self) -> Result<()> {
        if self.peek_token(&Token::ShiftRight) {
            self.tokens[self.index].token = Token::Gt;
            return Ok(());
        }
        self.expect_token(&Token::Gt)
    }

    fn parse_create_view(&mut self) -> Result<Statement> {
        self.expect_keyword(Keyword::CREATE)?;
        self.consume_keyword(Keyword::TEMPORARY);
        let materialized = self.consume_keyword(Keyword::MATERIALIZED);
        self.expect_keyword(Keyword::VIEW)?;
        self.consume_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
        let name = self.parse_identifier()?;
        self.expect_keyword(Keyword::AS)?;
        let query = self.parse_rest_as_query()?;
        Ok(if materialized { Statement::CreateMaterializedView { name, query } } else { Statement::CreateView { name, query } })
    }

    fn parse_set(&mut self) -> Result<Statement> {
        self.expect_keyword(Keyword::SET)?;
        let read = |c: &mut Cursor| -> Result<String> {
            match c.peek().map(|t| t.token.clone()) {
                Some(Token::SingleQuotedString(s)) => {
                    c.index += 1;
                    Ok(s)
                }
                _ => {
                    // Unquoted: `SET parallelism = 4` or `SET table.exec.x = y`.
                    let tokens = c.take_until_set_separator();
                    if tokens.is_empty() {
                        return Err(c.error_expected("a setting name or value"));
                    }
                    Ok(tokens.iter().map(|t| t.token.to_string()).collect::<String>())
                }
            }
        };
        let key = read(self)?;
        self.expect_token(&Token::Eq)?;
        let value = read(self)?;
        if self.peek().is_some() {
            return Err(self.error_expected("the end of the SET statement"));
        }
        Ok(Statement::Set { key, value })
    }

    fn take_until_set_separator(&mut self) -> Vec<TokenWithSpan> {
        let start = self.index;
        while let Some(t) = self.peek() {
            if t.token == Token::Eq {
                break;
            }
            self.index += 1;
        }
        self.tokens[start..self.index].to_vec()
    }

    /// Hands the remaining tokens to sqlparser as a query, after rewriting window table functions.
    fn parse_rest_as_query(&mut self) -> Result<Box<Query>> {
        let rest = self.tokens[self.index..].to_vec();
        if rest.is_empty() {
            return Err(self.error_expected("a query"));
        }
        let rewritten = crate::window::rewrite_window_tvfs(rest)?;
        let (rewritten, as_of_clauses) = crate::system_time::take_clauses(rewritten)?;
        let rewritten = crate::functions::rewrite_tokens(rewritten);
        let dialect = GenericDialect {};
        let mut parser = Parser::new(&dialect).with_recursion_limit(crate::limits::MAX_NESTING).with_tokens_with_locations(rewritten);
        // Errors at the end of input carry no position: point just past the last token.
        let end = self.tokens.last().map(|t| Location { line: t.span.end.line, column: t.span.end.column }).unwrap_or(self.here());
        let here = self.here();
        let mut query = match parser.parse_query() {
            Ok(query) => query,
            // Where the parser gave up is where the nesting got too deep.
            Err(ParserError::RecursionLimitExceeded) => {
                let at = location_of(&parser.peek_token());
                return Err(crate::limits::nesting_error(if at.line == 0 { here } else { at }));
            }
            Err(e) => return Err(collection_cast_hint(parser_error(e, end), &self.tokens[self.index..])),
        };
        // Bounds every later walk of the tree; the planner checks again with the views it reads.
        crate::limits::check_query(&query, &|_| None, here)?;
        crate::system_time::attach(&mut query, as_of_clauses)?;
        if parser.peek_token().token != Token::EOF {
            let t = parser.peek_token();
            return Err(SqlError::syntax(location_of(&t), format!("unexpected `{}` after the end of the query", t.token)));
        }
        self.index = self.tokens.len();
        Ok(query)
    }
}

/// Refuses a computed column's or watermark's expression too big to plan
/// (see [`crate::limits`]); other mistakes in it are the planner's to report.
fn check_expression_size(tokens: &[TokenWithSpan]) -> Result<()> {
    let Some(first) = tokens.first() else {
        return Ok(());
    };
    let dialect = GenericDialect {};
    let mut parser = Parser::new(&dialect).with_recursion_limit(crate::limits::MAX_NESTING).with_tokens_with_locations(tokens.to_vec());
    match parser.parse_expr() {
        Ok(expr) => crate::limits::check_expr(&expr, location_of(first)).map(|_| ()),
        Err(ParserError::RecursionLimitExceeded) => Err(crate::limits::nesting_error(location_of(first))),
        Err(_) => Ok(()),
    }
}

/// `PRIMARY KEY (...)` must name physical columns of the table, each once (Flink's
/// rule): a key on a column that does not exist would otherwise only fail, or be
/// ignored, when a sink first writes by it.
fn check_primary_key(table: &TableDef, location: Location) -> Result<()> {
    let physical: Vec<&str> = table.columns.iter().map(|c| c.name.as_str()).collect();
    let hint = || format!("the table's physical columns are {}", physical.join(", "));
    for (i, key) in table.primary_key.iter().enumerate() {
        if table.primary_key[..i].contains(key) {
            return Err(SqlError::syntax(location, format!("CREATE TABLE {}: PRIMARY KEY names column `{key}` twice", table.name)));
        }
        if physical.contains(&key.as_str()) {
            continue;
        }
        let what =
            if table.computed.iter().any(|c| &c.name == key) { "which is computed; a key must be a physical column" } else { "which the table does not have" };
        return Err(SqlError::syntax(location, format!("CREATE TABLE {}: PRIMARY KEY names column `{key}`, {what}", table.name)).with_hint(hint()));
    }
    Ok(())
}

/// Says what is missing when sqlparser stops at the `<` of `MAP<` or `ROW<`
/// (`CAST(x AS MAP<STRING, INT>)`): those types are read in CREATE TABLE only.
fn collection_cast_hint(error: SqlError, tokens: &[TokenWithSpan]) -> SqlError {
    let at = error.location();
    let Some(i) = tokens.iter().position(|t| t.token == Token::Lt && location_of(t) == at) else { return error };
    let before = tokens[..i].iter().rev().find(|t| !matches!(t.token, Token::Whitespace(_)));
    match before.map(|t| &t.token) {
        Some(Token::Word(w)) if w.value.eq_ignore_ascii_case("MAP") || w.value.eq_ignore_ascii_case("ROW") => error.with_hint(
            "CAST to MAP<...> or ROW<...> is not supported yet (MAP and ROW types are read in CREATE TABLE; CAST to ARRAY<...> and to STRING are supported)",
        ),
        _ => error,
    }
}

/// Turns a sqlparser error ("... at Line: 3, Column: 14") into one with a location.
pub(crate) fn parser_error(error: datafusion::sql::sqlparser::parser::ParserError, fallback: Location) -> SqlError {
    let text = error.to_string();
    let text = text.strip_prefix("sql parser error: ").unwrap_or(&text).to_string();
    if let Some(pos) = text.rfind(" at Line: ") {
        let tail = &text[pos + " at Line: ".len()..];
        let mut parts = tail.split(", Column: ");
        let line = parts.next().and_then(|l| l.trim().parse().ok());
        let column = parts.next().and_then(|c| c.trim().parse().ok());
        if let (Some(line), Some(column)) = (line, column) {
            return SqlError::syntax(Location { line, column }, text[..pos].to_string());
        }
    }
    SqlError::syntax(fallback, text)
}

/// Re-creates SQL text from tokens (for expressions kept as text in the catalog).
pub(crate) fn tokens_to_sql(tokens: &[TokenWithSpan]) -> String {
    let mut out = String::new();
    for (i, t) in tokens.iter().enumerate() {
        if i > 0 && !matches!(t.token, Token::Whitespace(Whitespace::Space)) {
            out.push(' ');
        }
        out.push_str(&t.token.to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(sql: &str) -> TableDef {
        match parse_script(sql).expect("parses").remove(0).statement {
            Statement::CreateTable(t) => t,
            other => panic!("not a table: {other:?}"),
        }
    }

    #[test]
    fn collection_types_nest_and_keep_not_null_members() {
        let t = create(
            "CREATE TABLE n (a ARRAY<ARRAY<INT NOT NULL>>, m MAP<STRING, ROW<n INT, s ARRAY<STRING>>>, r ROW(x INT NOT NULL, y STRING)) WITH ('connector' = 'blackhole')",
        );
        let names: Vec<String> = t.columns.iter().map(|c| crate::types::sql_type_name(&c.data_type)).collect();
        assert_eq!(names, ["ARRAY<ARRAY<INT NOT NULL>>", "MAP<STRING, ROW<`n` INT, `s` ARRAY<STRING>>>", "ROW<`x` INT NOT NULL, `y` STRING>"]);
        let e = parse_script("CREATE TABLE n (a ARRAY<INT) WITH ('connector' = 'blackhole')").unwrap_err().to_string();
        assert!(e.contains("expected `>`"), "{e}");
    }

    #[test]
    fn create_table_with_watermark_computed_and_key() {
        let t = create(
            "CREATE TABLE bids (\n  auction BIGINT NOT NULL, price DECIMAL(10, 2), event_ms BIGINT,\n  ts AS TO_TIMESTAMP_LTZ(event_ms, 3),\n  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND,\n  PRIMARY KEY (auction) NOT ENFORCED\n) WITH ('connector' = 'filesystem', 'path' = 'x.json', 'format' = 'json');",
        );
        assert_eq!(t.name, "bids");
        assert_eq!(t.columns.len(), 3);
        assert!(!t.columns[0].nullable);
        assert_eq!(t.columns[1].data_type, DataType::Decimal128(10, 2));
        assert_eq!(t.computed[0].name, "ts");
        assert_eq!(t.computed[0].expr_sql, "TO_TIMESTAMP_LTZ ( event_ms , 3 )");
        let wm = t.watermark.clone().expect("watermark");
        assert_eq!(wm.column, "ts");
        assert_eq!(wm.expr_sql, "ts - INTERVAL '5' SECOND");
        assert_eq!(t.primary_key, vec!["auction"]);
        assert_eq!(t.option("path"), Some("x.json"));
    }

    #[test]
    fn partitioned_by_names_physical_columns() {
        let t = create("CREATE TABLE t (a INT, dt STRING, `hour` INT) PARTITIONED BY (dt, `hour`) WITH ('connector' = 'print')");
        assert_eq!(t.partitioned_by, vec!["dt", "hour"]);
        let e = parse_script("CREATE TABLE t (a INT) PARTITIONED BY (b) WITH ('connector' = 'print')").unwrap_err().to_string();
        assert!(e.contains("PARTITIONED BY names 'b', which is not a physical column") && e.contains("columns: a"), "{e}");
        let e = parse_script("CREATE TABLE t (a INT) PARTITIONED BY (a, a)").unwrap_err().to_string();
        assert!(e.contains("'a' is named twice"), "{e}");
    }

    #[test]
    fn errors_point_at_line_and_column() {
        let err = parse_script("CREATE TABLE t (\n  a BIGINT,\n  b FOOTYPE\n) WITH ('connector' = 'print')").unwrap_err();
        assert_eq!(err.location(), Location { line: 3, column: 5 });
        assert!(err.to_string().contains("unknown or unsupported column type `FOOTYPE`"), "{err}");

        let err = parse_script("CREATE TABLE t (a BIGINT, WATERMARK FOR nope AS nope)").unwrap_err();
        assert!(err.to_string().contains("WATERMARK FOR names column `nope`"), "{err}");

        let err = parse_script("SELECT a FROM t;\nSELECT a FROM t WHERE").unwrap_err();
        assert_eq!(err.location().line, 2, "{err}");
    }

    #[test]
    fn statements_split_on_semicolons() {
        let stmts = parse_script("SET 'parallelism' = '2';\n-- a comment; with a semicolon\nINSERT INTO out SELECT * FROM t;").expect("parses");
        assert_eq!(stmts.len(), 2);
        assert!(matches!(&stmts[0].statement, Statement::Set { key, value } if key == "parallelism" && value == "2"));
        assert!(matches!(&stmts[1].statement, Statement::Insert { table, .. } if table == "out"));
        assert_eq!(stmts[1].location.line, 3);
        assert_eq!(stmts[0].text, "SET 'parallelism' = '2'");
        assert_eq!(stmts[1].text, "INSERT INTO out SELECT * FROM t");
    }

    #[test]
    fn server_statements_parse() {
        let stmts = parse_script(
            "SHOW TABLES; show pipelines; DESCRIBE bids; EXPLAIN INSERT INTO out SELECT * FROM t;\n\
             DROP MATERIALIZED VIEW IF EXISTS v; DROP TABLE t; STOP PIPELINE p1 WITH SAVEPOINT;\n\
             CREATE MATERIALIZED VIEW v AS SELECT a, COUNT(*) FROM t GROUP BY a",
        )
        .expect("parses");
        assert!(matches!(stmts[0].statement, Statement::Show(ShowWhat::Tables)));
        assert!(matches!(stmts[1].statement, Statement::Show(ShowWhat::Pipelines)));
        assert!(matches!(&stmts[2].statement, Statement::Describe { name } if name == "bids"));
        assert!(matches!(&stmts[3].statement, Statement::Explain { statement } if matches!(**statement, Statement::Insert { .. })));
        let analyze = parse_script("EXPLAIN ANALYZE p3").unwrap();
        assert!(matches!(&analyze[0].statement, Statement::ExplainAnalyze { pipeline } if pipeline == "p3"));
        assert!(matches!(&stmts[4].statement, Statement::Drop { what: DropWhat::MaterializedView, name, if_exists: true } if name == "v"));
        assert!(matches!(&stmts[5].statement, Statement::Drop { what: DropWhat::Table, name, if_exists: false } if name == "t"));
        assert!(matches!(&stmts[6].statement, Statement::StopPipeline { id, savepoint: true } if id == "p1"));
        assert!(matches!(&stmts[7].statement, Statement::CreateMaterializedView { name, .. } if name == "v"));
        assert_eq!(stmts[7].text, "CREATE MATERIALIZED VIEW v AS SELECT a, COUNT(*) FROM t GROUP BY a");
        assert!(parse_script("EXPLAIN").is_err(), "EXPLAIN of nothing is an error, not a panic");
        let restarts = parse_script("RESTART PIPELINE p1; RESTART PIPELINE 'totals' WITH PARALLELISM 4").expect("parses");
        assert!(matches!(&restarts[0].statement, Statement::RestartPipeline { id, parallelism: None } if id == "p1"));
        assert!(matches!(&restarts[1].statement, Statement::RestartPipeline { id, parallelism: Some(4) } if id == "totals"));
        let err = parse_script("RESTART PIPELINE p1 WITH PARALLELISM 0").expect_err("zero tasks");
        assert!(err.to_string().contains("a positive number of tasks after WITH PARALLELISM"), "{err}");
        let err = parse_script("SHOW TABLES extra").expect_err("trailing token");
        assert_eq!(err.location(), Location { line: 1, column: 13 });
    }
}
