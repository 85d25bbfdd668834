//! The metadata queries Postgres tools send, answered from Eddy's catalog.
//!
//! A query that reads `pg_catalog` or `information_schema` (qualified or not),
//! or calls a function of Postgres's session (`version()`, `current_schema()`,
//! `current_setting(...)`...), runs for real in a DataFusion context of its own
//! ([`context`]): its `pg_catalog` and `information_schema` are tables filled
//! from Eddy's relations ([`tables`]), its Postgres functions answer for Eddy's
//! one database ([`functions`]), and the Postgres syntax tools write is
//! rewritten into DataFusion's ([`rewrite`]). So JDBC's `DatabaseMetaData`,
//! psycopg's type lookups, Grafana's table and column pickers and DBeaver's
//! navigator list Eddy's relations and columns (tests/data/pg_metadata holds
//! their queries). The context is built per query: relations are few, and
//! oids follow from the relations' names, so they agree between one tool's
//! queries while the catalog stays the same.
//! A query described before its parameters are bound runs with NULLs for them.
//!
//! psql's `\d` family reads columns these tables do not model: [`psql`]
//! recognises those queries and answers them first. A catalog query that still
//! fails (it reads what Eddy has none of: indexes, policies, publications...)
//! answers no rows rather than an error, so a tool carries on.

mod functions;
mod psql;
mod rewrite;
mod tables;

use std::sync::Arc;

use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{MemorySchemaProvider, SchemaProvider, TableProvider};
use datafusion::datasource::empty::EmptyTable;
use datafusion::error::{DataFusionError, Result};
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

use super::params;
use crate::server::{Relation, Server};
use crate::session::string_rows;

/// The answer to a metadata query a Postgres tool sends, or `None` for any other statement.
pub async fn answer(server: &Server, sql: &str) -> Option<RecordBatch> {
    if !reads_catalog(sql) {
        return None;
    }
    let relations = server.relations().await;
    if let Some(answer) = psql::answer(&relations, sql) {
        return Some(answer);
    }
    match run(&relations, sql).await {
        Ok(batch) => Some(batch),
        Err(error) => {
            tracing::debug!(target: "eddy::pg", "catalog query answered with no rows ({error}): {sql}");
            Some(string_rows(&["?column?"], std::iter::empty()))
        }
    }
}

/// Whether `sql` is a query of Postgres's catalog: a `SELECT` (or `WITH`)
/// naming `pg_catalog`, `information_schema`, a catalog table (`pg_type`) or
/// calling one of the catalog's functions (`version()`, `current_user`).
/// Eddy's own relations may have any other name, `pg_` ones included.
fn reads_catalog(sql: &str) -> bool {
    let Ok(tokens) = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize() else { return false };
    let words: Vec<String> = tokens
        .iter()
        .filter_map(|t| match t {
            Token::Word(w) => Some(w.value.to_ascii_lowercase()),
            Token::LParen => Some("(".into()),
            _ => None,
        })
        .collect();
    if !matches!(words.iter().find(|w| *w != "("), Some(first) if first == "select" || first == "with") {
        return false;
    }
    words.iter().enumerate().any(|(i, word)| {
        let called =
            words.get(i + 1).is_some_and(|w| w == "(") || matches!(word.as_str(), "current_catalog" | "current_schema" | "current_user" | "session_user");
        matches!(word.as_str(), "pg_catalog" | "information_schema")
            || tables::PG_CATALOG_TABLES.contains(&word.as_str())
            || (called && functions::names().iter().any(|f| f == word))
    })
}

/// Runs catalog query `sql` in a context over `relations`. A statement still
/// holding `$N` placeholders (described before it is bound) runs with NULLs for them.
async fn run(relations: &[Relation], sql: &str) -> Result<RecordBatch> {
    let count = params::parameter_count(sql).map_err(|e| DataFusionError::Plan(e.to_string()))?;
    let sql = match count {
        0 => sql.to_string(),
        n => params::substitute(sql, &vec!["NULL".to_string(); n]).map_err(|e| DataFusionError::Plan(e.to_string()))?,
    };
    let sql = rewrite::replace_fragments(&sql);
    let mut statements = Parser::parse_sql(&PostgreSqlDialect {}, &sql)?;
    let (Some(mut statement), None) = (statements.pop(), statements.pop()) else {
        return Err(DataFusionError::Plan("a catalog query is one statement".into()));
    };
    rewrite::rewrite(&mut statement, relations);
    let ctx = context(relations)?;
    let plan = ctx.state().statement_to_plan(datafusion::sql::parser::Statement::Statement(Box::new(statement))).await?;
    let frame = ctx.execute_logical_plan(plan).await?;
    let schema = Arc::new(frame.schema().as_arrow().clone());
    let batches = frame.collect().await?;
    Ok(concat_batches(&schema, &batches)?)
}

/// A context whose `pg_catalog` and `information_schema` describe `relations`,
/// which are in `public` as empty tables (so a query may join them by name).
/// The catalog tables are in `public` too: Postgres finds them without their
/// schema's name (`FROM pg_type`).
fn context(relations: &[Relation]) -> Result<SessionContext> {
    let config = SessionConfig::new().with_default_catalog_and_schema(tables::DATABASE, tables::SCHEMA).set_str("datafusion.sql_parser.dialect", "PostgreSQL");
    let ctx = SessionContext::new_with_config(config);
    let catalog = ctx.catalog(tables::DATABASE).ok_or_else(|| DataFusionError::Internal("the catalog context has no database".into()))?;
    let public = Arc::new(MemorySchemaProvider::new());
    for relation in relations {
        let table: Arc<dyn TableProvider> = Arc::new(EmptyTable::new(Arc::clone(&relation.columns)));
        public.register_table(relation.name.clone(), table)?;
    }
    let pg_catalog = Arc::new(MemorySchemaProvider::new());
    for (name, table) in tables::pg_catalog(relations)? {
        pg_catalog.register_table(name.to_string(), Arc::clone(&table) as Arc<dyn TableProvider>)?;
        public.register_table(name.to_string(), table)?;
    }
    let information_schema = Arc::new(MemorySchemaProvider::new());
    for (name, table) in tables::information_schema(relations)? {
        information_schema.register_table(name.to_string(), table)?;
    }
    catalog.register_schema(tables::SCHEMA, public)?;
    catalog.register_schema("pg_catalog", pg_catalog)?;
    catalog.register_schema("information_schema", information_schema)?;
    for function in functions::all() {
        ctx.register_udf(function);
    }
    Ok(ctx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_queries_are_told_from_eddys_own() {
        assert!(reads_catalog("SELECT typname FROM pg_type WHERE oid = 20"));
        assert!(reads_catalog("select * from information_schema.tables"));
        assert!(reads_catalog("SELECT version()"));
        assert!(reads_catalog("select current_schema()"));
        assert!(reads_catalog("SELECT current_user"));
        assert!(reads_catalog("select current_catalog"));
        assert!(!reads_catalog("SELECT version FROM releases"));
        assert!(!reads_catalog("SELECT 'pg_type' FROM bids"));
        assert!(!reads_catalog("CREATE VIEW pg_like AS SELECT * FROM bids"));
        assert!(!reads_catalog("SELECT auction FROM bids"));
        assert!(!reads_catalog("SELECT * FROM pg_orders"));
        assert!(reads_catalog("SELECT oid, typname FROM pg_type"));
    }
}
