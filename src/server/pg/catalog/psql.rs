//! psql's `\d` family, recognised by what its queries read and answered from
//! the relations: psql's queries use `OPERATOR(pg_catalog.~)`, `COLLATE`,
//! `::regclass` and columns of `pg_class` (rules, triggers, policies...) that
//! the catalog tables of [`super::tables`] do not model, so they are answered here:
//! - the relation list of `\d`, `\dt`, `\dv`, `\dm` (with or without a pattern);
//! - `\d name`: the relation's oid by name, its kind, and its columns.
//!
//! Relations get the oids [`super::tables`] gives them (16384 on, in name order).

use datafusion::arrow::record_batch::RecordBatch;

use super::tables::{relkind, type_name, FIRST_OID, SCHEMA};
use crate::server::Relation;
use crate::session::string_rows;

/// The answer to one of psql's `\d` queries, or `None` for any other query.
pub fn answer(relations: &[Relation], sql: &str) -> Option<RecordBatch> {
    if sql.contains("pg_catalog.pg_class c") && sql.contains("c.relkind IN (") && sql.contains("as \"Name\"") {
        return Some(relation_list(relations, sql));
    }
    if sql.contains("SELECT c.oid,") && sql.contains("c.relname") && sql.contains("OPERATOR(pg_catalog.~)") {
        let pattern = name_pattern(sql);
        let rows = numbered(relations)
            .filter(|(_, r)| pattern.as_ref().is_none_or(|p| p.matches(&r.name)))
            .map(|(oid, r)| vec![oid.to_string(), SCHEMA.into(), r.name.clone()]);
        return Some(string_rows(&["oid", "nspname", "relname"], rows));
    }
    if sql.contains("c.relchecks") {
        let relation = relation_by_oid(relations, sql)?;
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
        let relation = relation_by_oid(relations, sql)?;
        let rows = relation.columns.fields().iter().map(|f| {
            let not_null = if f.is_nullable() { "f" } else { "t" };
            vec![f.name().clone(), type_name(f.data_type()), String::new(), not_null.into(), String::new(), String::new(), String::new()]
        });
        return Some(string_rows(&["attname", "format_type", "default", "attnotnull", "attcollation", "attidentity", "attgenerated"], rows));
    }
    None
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
