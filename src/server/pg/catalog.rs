//! The metadata queries Postgres tools send, answered from Eddy's catalog.
//!
//! Eddy has no `pg_catalog` tables: DataFusion could not run psql's queries
//! anyway (they use `OPERATOR(pg_catalog.~)`, `COLLATE`, `::regclass`,
//! `pg_table_is_visible`...). Instead the queries psql's `\d` family sends are
//! recognised by what they read and answered from [`Server::relations`]:
//! - the relation list of `\d`, `\dt`, `\dv`, `\dm` (with or without a pattern);
//! - `\d name`: the relation's oid by name, its kind, and its columns.
//!
//! Any other query of `pg_catalog` or `information_schema` (psql's questions
//! about indexes, policies, publications... that Eddy has none of) answers no
//! rows. Relations get oids from 16384 in name order, as Postgres numbers user
//! objects; they are only meaningful between one tool's queries.

use datafusion::arrow::record_batch::RecordBatch;
use pgwire::api::Type;

use super::types::pg_type;
use crate::server::{Relation, RelationKind, Server};
use crate::session::string_rows;

/// The oid of the first relation (Postgres's `FirstNormalObjectId`).
const FIRST_OID: usize = 16384;

/// The schema every relation is in.
const SCHEMA: &str = "public";

/// The answer to a metadata query a Postgres tool sends, or `None` for any other statement.
pub async fn answer(server: &Server, sql: &str) -> Option<RecordBatch> {
    if !(sql.contains("pg_catalog.") || sql.contains("information_schema.")) {
        return None;
    }
    let relations = server.relations().await;
    if sql.contains("pg_catalog.pg_class c") && sql.contains("c.relkind IN (") && sql.contains("as \"Name\"") {
        return Some(relation_list(&relations, sql));
    }
    if sql.contains("SELECT c.oid,") && sql.contains("c.relname") && sql.contains("OPERATOR(pg_catalog.~)") {
        let pattern = name_pattern(sql);
        let rows = numbered(&relations)
            .filter(|(_, r)| pattern.as_ref().is_none_or(|p| p.matches(&r.name)))
            .map(|(oid, r)| vec![oid.to_string(), SCHEMA.into(), r.name.clone()]);
        return Some(string_rows(&["oid", "nspname", "relname"], rows));
    }
    if sql.contains("c.relchecks") {
        let relation = relation_by_oid(&relations, sql)?;
        let kind = relkind(relation.kind).to_string();
        let row = ["0", &kind, "f", "f", "f", "f", "f", "f", "f", "", "0", "", "p", "d", ""];
        let columns = [
            "relchecks",
            "relkind",
            "relhasindex",
            "relhasrules",
            "relhastriggers",
            "relrowsecurity",
            "relforcerowsecurity",
            "relhasoids",
            "relispartition",
            "?column?",
            "reltablespace",
            "reloftype",
            "relpersistence",
            "relreplident",
            "amname",
        ];
        return Some(string_rows(&columns, std::iter::once(row.iter().map(|v| v.to_string()).collect())));
    }
    if sql.contains("FROM pg_catalog.pg_attribute a") && sql.contains("a.attrelid = '") {
        let relation = relation_by_oid(&relations, sql)?;
        let rows = relation.columns.fields().iter().map(|f| {
            let not_null = if f.is_nullable() { "f" } else { "t" };
            vec![f.name().clone(), type_name(f.data_type()), String::new(), not_null.into(), String::new(), String::new(), String::new()]
        });
        return Some(string_rows(&["attname", "format_type", "default", "attnotnull", "attcollation", "attidentity", "attgenerated"], rows));
    }
    // Indexes, constraints, policies, publications, inheritance: Eddy has none.
    Some(string_rows(&["?column?"], std::iter::empty()))
}

/// Relations with their oids.
fn numbered(relations: &[Relation]) -> impl Iterator<Item = (usize, &Relation)> {
    relations.iter().enumerate().map(|(i, r)| (FIRST_OID + i, r))
}

/// The relation whose oid the query compares with (`c.oid = '16384'`, `a.attrelid = '16384'`).
fn relation_by_oid<'a>(relations: &'a [Relation], sql: &str) -> Option<&'a Relation> {
    let at = sql.find("c.oid = '").map(|i| i + "c.oid = '".len()).or_else(|| sql.find("a.attrelid = '").map(|i| i + "a.attrelid = '".len()))?;
    let oid: usize = sql[at..].split('\'').next()?.parse().ok()?;
    relations.get(oid.checked_sub(FIRST_OID)?)
}

/// `\d`'s list: Schema, Name, Type, Owner of the relations of the kinds the
/// query asks for (`c.relkind IN ('r','p','')`) and the name pattern it gives.
fn relation_list(relations: &[Relation], sql: &str) -> RecordBatch {
    let kinds: String = sql.split("c.relkind IN (").nth(1).and_then(|rest| rest.split(')').next()).unwrap_or_default().to_string();
    let pattern = name_pattern(sql);
    let rows = relations
        .iter()
        .filter(|r| kinds.contains(&format!("'{}'", relkind(r.kind))))
        .filter(|r| pattern.as_ref().is_none_or(|p| p.matches(&r.name)))
        .map(|r| vec![SCHEMA.into(), r.name.clone(), r.kind.name().into(), "eddy".into()]);
    string_rows(&["Schema", "Name", "Type", "Owner"], rows)
}

/// Postgres's `relkind` letter.
fn relkind(kind: RelationKind) -> char {
    match kind {
        RelationKind::Table => 'r',
        RelationKind::View => 'v',
        RelationKind::MaterializedView => 'm',
    }
}

/// The type as Postgres's `format_type` writes it.
fn type_name(data_type: &datafusion::arrow::datatypes::DataType) -> String {
    use datafusion::arrow::datatypes::DataType;
    if let DataType::Decimal128(p, s) | DataType::Decimal256(p, s) = data_type {
        return format!("numeric({p},{s})");
    }
    match pg_type(data_type) {
        Type::BOOL => "boolean",
        Type::INT2 => "smallint",
        Type::INT4 => "integer",
        Type::INT8 => "bigint",
        Type::FLOAT4 => "real",
        Type::FLOAT8 => "double precision",
        Type::NUMERIC => "numeric",
        Type::BYTEA => "bytea",
        Type::DATE => "date",
        Type::TIMESTAMP => "timestamp without time zone",
        Type::TIMESTAMPTZ => "timestamp with time zone",
        Type::TIME => "time without time zone",
        _ => "text",
    }
    .to_string()
}

/// The name pattern psql sends (`c.relname OPERATOR(pg_catalog.~) '^(bid.*)$'`).
fn name_pattern(sql: &str) -> Option<Pattern> {
    let marker = "OPERATOR(pg_catalog.~) '";
    let at = sql.find(&format!("relname {marker}"))? + "relname ".len() + marker.len();
    let regex = sql[at..].split('\'').next()?;
    Some(Pattern::from_psql(regex))
}

/// The part of a regular expression psql writes for a `\d` pattern: `*` is
/// `.*`, `?` is `.`, the rest literal (other regex syntax is matched literally).
#[derive(Debug)]
struct Pattern {
    parts: Vec<Part>,
}

#[derive(Debug, PartialEq)]
enum Part {
    Literal(char),
    AnyOne,
    AnyRun,
}

impl Pattern {
    fn from_psql(regex: &str) -> Pattern {
        let inner = regex.strip_prefix("^(").and_then(|r| r.strip_suffix(")$")).unwrap_or(regex);
        let mut parts = Vec::new();
        let mut chars = inner.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '.' if chars.peek() == Some(&'*') => {
                    chars.next();
                    parts.push(Part::AnyRun);
                }
                '.' => parts.push(Part::AnyOne),
                '\\' => parts.extend(chars.next().map(Part::Literal)),
                c => parts.push(Part::Literal(c)),
            }
        }
        Pattern { parts }
    }

    fn matches(&self, name: &str) -> bool {
        fn at(parts: &[Part], name: &[char]) -> bool {
            match parts.split_first() {
                None => name.is_empty(),
                Some((Part::AnyRun, rest)) => (0..=name.len()).any(|skip| at(rest, &name[skip..])),
                Some((Part::AnyOne, rest)) => !name.is_empty() && at(rest, &name[1..]),
                Some((Part::Literal(c), rest)) => name.first() == Some(c) && at(rest, &name[1..]),
            }
        }
        at(&self.parts, &name.chars().collect::<Vec<_>>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psql_patterns_match_as_psql_means_them() {
        assert!(Pattern::from_psql("^(bids)$").matches("bids"));
        assert!(!Pattern::from_psql("^(bids)$").matches("bids2"));
        assert!(Pattern::from_psql("^(bid.*)$").matches("bid_counts"));
        assert!(Pattern::from_psql("^(b.ds)$").matches("bids"));
        assert!(!Pattern::from_psql("^(b.ds)$").matches("bds"));
    }
}
