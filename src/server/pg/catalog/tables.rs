//! The tables of `pg_catalog` and `information_schema` that tools read, filled
//! from Eddy's relations: the columns drivers and tools select (JDBC's
//! `DatabaseMetaData`, psycopg's `TypeInfo`, Grafana's pickers), with the
//! values Postgres would give a database of plain tables and views.
//!
//! Every relation is in schema `public` of database `eddy`, owned by `eddy`
//! (oid 10). Relations get oids from 16384 in name order, as Postgres numbers
//! user objects; they are only meaningful between one tool's queries. Eddy has
//! no indexes, constraints, defaults, comments or inheritance: those tables
//! exist, empty, so queries joining them run.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::MemTable;
use datafusion::common::ScalarValue;
use datafusion::error::Result;
use pgwire::api::Type;

use super::super::types::pg_type;
use crate::server::{Relation, RelationKind};

/// The oid of the first relation (Postgres's `FirstNormalObjectId`).
pub const FIRST_OID: usize = 16384;

/// The schema every relation is in.
pub const SCHEMA: &str = "public";

/// The one database.
pub const DATABASE: &str = "eddy";

/// The one role, owner of everything.
pub const OWNER: &str = "eddy";

/// Oids Postgres gives its own objects (`pg_namespace.dat`, `pg_class.dat`).
const PG_CATALOG_OID: i32 = 11;
const PUBLIC_OID: i32 = 2200;
const INFORMATION_SCHEMA_OID: i32 = 13_000;
const OWNER_OID: i32 = 10;

/// Postgres's `relkind` letter.
pub fn relkind(kind: RelationKind) -> char {
    match kind {
        RelationKind::Table => 'r',
        RelationKind::View => 'v',
        RelationKind::MaterializedView => 'm',
    }
}

/// The type as Postgres's `format_type` writes it.
pub fn type_name(data_type: &DataType) -> String {
    if let DataType::Decimal128(p, s) | DataType::Decimal256(p, s) = data_type {
        return format!("numeric({p},{s})");
    }
    format_type(pg_type(data_type).oid(), -1).unwrap_or_else(|| "text".into())
}

/// `format_type(oid, typmod)`: the SQL name of a type, with its modifier
/// (`numeric(10,2)`), or `None` for an oid that names no type.
pub fn format_type(oid: u32, typmod: i32) -> Option<String> {
    let name = match oid {
        16 => "boolean",
        17 => "bytea",
        18 => "\"char\"",
        19 => "name",
        20 => "bigint",
        21 => "smallint",
        23 => "integer",
        24 => "regproc",
        25 => "text",
        26 => "oid",
        700 => "real",
        701 => "double precision",
        1042 => "character",
        1043 => "character varying",
        1082 => "date",
        1083 => "time without time zone",
        1114 => "timestamp without time zone",
        1184 => "timestamp with time zone",
        1186 => "interval",
        1700 if typmod >= 4 => return Some(format!("numeric({},{})", (typmod - 4) >> 16, (typmod - 4) & 0xffff)),
        1700 => "numeric",
        _ => return TYPES.iter().find(|t| t.oid == oid).map(|t| t.name.to_string()),
    };
    Some(name.to_string())
}

/// A row of `pg_type`: the types Eddy sends and their arrays.
struct PgType {
    oid: u32,
    name: &'static str,
    len: i16,
    category: &'static str,
    /// The array type of this type, or the element type of this array type.
    array: u32,
    element: u32,
}

/// Postgres's own oids, lengths and categories (`pg_type.dat`).
const TYPES: &[PgType] = &[
    PgType { oid: 16, name: "bool", len: 1, category: "B", array: 1000, element: 0 },
    PgType { oid: 17, name: "bytea", len: -1, category: "U", array: 1001, element: 0 },
    PgType { oid: 18, name: "char", len: 1, category: "Z", array: 1002, element: 0 },
    PgType { oid: 19, name: "name", len: 64, category: "S", array: 1003, element: 0 },
    PgType { oid: 20, name: "int8", len: 8, category: "N", array: 1016, element: 0 },
    PgType { oid: 21, name: "int2", len: 2, category: "N", array: 1005, element: 0 },
    PgType { oid: 23, name: "int4", len: 4, category: "N", array: 1007, element: 0 },
    PgType { oid: 25, name: "text", len: -1, category: "S", array: 1009, element: 0 },
    PgType { oid: 26, name: "oid", len: 4, category: "N", array: 1028, element: 0 },
    PgType { oid: 114, name: "json", len: -1, category: "U", array: 199, element: 0 },
    PgType { oid: 700, name: "float4", len: 4, category: "N", array: 1021, element: 0 },
    PgType { oid: 701, name: "float8", len: 8, category: "N", array: 1022, element: 0 },
    PgType { oid: 1042, name: "bpchar", len: -1, category: "S", array: 1014, element: 0 },
    PgType { oid: 1043, name: "varchar", len: -1, category: "S", array: 1015, element: 0 },
    PgType { oid: 1082, name: "date", len: 4, category: "D", array: 1182, element: 0 },
    PgType { oid: 1083, name: "time", len: 8, category: "D", array: 1183, element: 0 },
    PgType { oid: 1114, name: "timestamp", len: 8, category: "D", array: 1115, element: 0 },
    PgType { oid: 1184, name: "timestamptz", len: 8, category: "D", array: 1185, element: 0 },
    PgType { oid: 1186, name: "interval", len: 16, category: "T", array: 1187, element: 0 },
    PgType { oid: 1700, name: "numeric", len: -1, category: "N", array: 1231, element: 0 },
    PgType { oid: 2950, name: "uuid", len: 16, category: "U", array: 2951, element: 0 },
    PgType { oid: 3802, name: "jsonb", len: -1, category: "U", array: 3807, element: 0 },
    PgType { oid: 1000, name: "_bool", len: -1, category: "A", array: 0, element: 16 },
    PgType { oid: 1001, name: "_bytea", len: -1, category: "A", array: 0, element: 17 },
    PgType { oid: 1005, name: "_int2", len: -1, category: "A", array: 0, element: 21 },
    PgType { oid: 1007, name: "_int4", len: -1, category: "A", array: 0, element: 23 },
    PgType { oid: 1009, name: "_text", len: -1, category: "A", array: 0, element: 25 },
    PgType { oid: 1015, name: "_varchar", len: -1, category: "A", array: 0, element: 1043 },
    PgType { oid: 1016, name: "_int8", len: -1, category: "A", array: 0, element: 20 },
    PgType { oid: 1021, name: "_float4", len: -1, category: "A", array: 0, element: 700 },
    PgType { oid: 1022, name: "_float8", len: -1, category: "A", array: 0, element: 701 },
    PgType { oid: 1115, name: "_timestamp", len: -1, category: "A", array: 0, element: 1114 },
    PgType { oid: 1182, name: "_date", len: -1, category: "A", array: 0, element: 1082 },
    PgType { oid: 1185, name: "_timestamptz", len: -1, category: "A", array: 0, element: 1184 },
    PgType { oid: 1231, name: "_numeric", len: -1, category: "A", array: 0, element: 1700 },
];

/// The oid of the type `name` names (`int8`, `bigint`, `pg_catalog.int8`,
/// `timestamp without time zone`...), as `to_regtype` finds it.
pub fn type_oid(name: &str) -> Option<u32> {
    let name = name.trim().trim_matches('"');
    let name = name.strip_prefix("pg_catalog.").unwrap_or(name).to_ascii_lowercase();
    let alias = match name.as_str() {
        "boolean" => "bool",
        "bigint" => "int8",
        "integer" | "int" => "int4",
        "smallint" => "int2",
        "real" => "float4",
        "double precision" => "float8",
        "decimal" => "numeric",
        "character varying" => "varchar",
        "character" => "bpchar",
        "timestamp without time zone" => "timestamp",
        "timestamp with time zone" => "timestamptz",
        "time without time zone" => "time",
        other => other,
    };
    TYPES.iter().find(|t| t.name == alias).map(|t| t.oid)
}

/// The catalog tables of Postgres's own: oids for `'pg_class'::regclass`.
const CATALOG_TABLES: &[(&str, i32)] = &[
    ("pg_type", 1247),
    ("pg_attribute", 1249),
    ("pg_proc", 1255),
    ("pg_class", 1259),
    ("pg_attrdef", 2604),
    ("pg_constraint", 2606),
    ("pg_description", 2609),
    ("pg_index", 2610),
    ("pg_namespace", 2615),
    ("pg_database", 1262),
];

/// The oid of relation `name` (`pg_class`, `public.bids`, `bids`), as `::regclass` finds it.
pub fn relation_oid(relations: &[Relation], name: &str) -> Option<i32> {
    let name = name.trim().trim_matches('"');
    if let Some((_, oid)) = CATALOG_TABLES.iter().find(|(table, _)| name.strip_prefix("pg_catalog.").unwrap_or(name) == *table) {
        return Some(*oid);
    }
    let name = name.strip_prefix("public.").unwrap_or(name);
    relations.iter().position(|r| r.name == name).and_then(|i| i32::try_from(FIRST_OID + i).ok())
}

/// A relation's columns with their Postgres type oids and modifiers.
fn columns(relation: &Relation) -> impl Iterator<Item = (i16, &Field, u32, i32)> {
    relation.columns.fields().iter().enumerate().map(|(i, field)| {
        let typmod = match field.data_type() {
            DataType::Decimal128(p, s) | DataType::Decimal256(p, s) => ((i32::from(*p) << 16) | (i32::from(*s) & 0xffff)) + 4,
            _ => -1,
        };
        (i16::try_from(i + 1).unwrap_or(i16::MAX), field.as_ref(), pg_type(field.data_type()).oid(), typmod)
    })
}

/// A table of `columns` (name and type) holding `rows`, one value per column.
struct Builder {
    fields: Vec<Field>,
    rows: Vec<Vec<ScalarValue>>,
}

impl Builder {
    fn new(columns: &[(&str, DataType)]) -> Builder {
        Builder { fields: columns.iter().map(|(name, ty)| Field::new(*name, ty.clone(), true)).collect(), rows: Vec::new() }
    }

    fn row(&mut self, values: Vec<ScalarValue>) {
        self.rows.push(values);
    }

    fn table(self) -> Result<Arc<MemTable>> {
        let schema = Arc::new(Schema::new(self.fields));
        let columns = (0..schema.fields().len())
            .map(|i| {
                let data_type = schema.field(i).data_type();
                if self.rows.is_empty() {
                    return Ok(datafusion::arrow::array::new_empty_array(data_type));
                }
                let values = self.rows.iter().map(|row| row.get(i).cloned().unwrap_or(ScalarValue::Null).cast_to(data_type));
                ScalarValue::iter_to_array(values.collect::<Result<Vec<_>>>()?)
            })
            .collect::<Result<Vec<ArrayRef>>>()?;
        let batch = RecordBatch::try_new(Arc::clone(&schema), columns)?;
        Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
    }
}

fn text(value: impl Into<String>) -> ScalarValue {
    ScalarValue::Utf8(Some(value.into()))
}

fn no_text() -> ScalarValue {
    ScalarValue::Utf8(None)
}

fn int(value: i64) -> ScalarValue {
    ScalarValue::Int64(Some(value))
}

fn no_int() -> ScalarValue {
    ScalarValue::Int64(None)
}

fn boolean(value: bool) -> ScalarValue {
    ScalarValue::Boolean(Some(value))
}

use DataType::{Boolean as Bool, Int16 as I16, Int32 as I32, Utf8 as Text};

/// The names of the tables [`pg_catalog`] makes.
pub const PG_CATALOG_TABLES: &[&str] = &[
    "pg_namespace",
    "pg_class",
    "pg_attribute",
    "pg_type",
    "pg_database",
    "pg_roles",
    "pg_user",
    "pg_settings",
    "pg_tables",
    "pg_views",
    "pg_matviews",
    "pg_description",
    "pg_attrdef",
    "pg_index",
    "pg_constraint",
    "pg_inherits",
    "pg_proc",
    "pg_extension",
    "pg_enum",
    "pg_range",
    "pg_collation",
    "pg_am",
    "pg_trigger",
    "pg_rewrite",
    "pg_depend",
    "pg_foreign_table",
    "pg_sequence",
    "pg_tablespace",
];

/// The tables of `pg_catalog`, by name.
pub fn pg_catalog(relations: &[Relation]) -> Result<Vec<(&'static str, Arc<MemTable>)>> {
    let oid_of = |i: usize| int(i64::try_from(FIRST_OID + i).unwrap_or(i64::MAX));
    let mut tables = Vec::new();

    let mut namespace = Builder::new(&[("oid", I32), ("nspname", Text), ("nspowner", I32), ("nspacl", Text)]);
    for (oid, name) in [(PG_CATALOG_OID, "pg_catalog"), (PUBLIC_OID, SCHEMA), (INFORMATION_SCHEMA_OID, "information_schema")] {
        namespace.row(vec![int(oid.into()), text(name), int(OWNER_OID.into()), no_text()]);
    }
    tables.push(("pg_namespace", namespace.table()?));

    let mut class = Builder::new(&[
        ("oid", I32),
        ("relname", Text),
        ("relnamespace", I32),
        ("reltype", I32),
        ("reloftype", I32),
        ("relowner", I32),
        ("relam", I32),
        ("relfilenode", I32),
        ("reltablespace", I32),
        ("relpages", I32),
        ("reltuples", DataType::Float32),
        ("relallvisible", I32),
        ("reltoastrelid", I32),
        ("relhasindex", Bool),
        ("relisshared", Bool),
        ("relpersistence", Text),
        ("relkind", Text),
        ("relnatts", I16),
        ("relchecks", I16),
        ("relhasrules", Bool),
        ("relhastriggers", Bool),
        ("relhassubclass", Bool),
        ("relrowsecurity", Bool),
        ("relforcerowsecurity", Bool),
        ("relispopulated", Bool),
        ("relreplident", Text),
        ("relispartition", Bool),
        ("relhasoids", Bool),
        ("relacl", Text),
        ("reloptions", Text),
        ("relpartbound", Text),
    ]);
    let mut class_row = |oid: ScalarValue, name: &str, namespace: i32, kind: char, columns: usize| {
        let f = boolean(false);
        class.row(vec![
            oid.clone(),
            text(name),
            int(namespace.into()),
            int(0),
            int(0),
            int(OWNER_OID.into()),
            int(0),
            oid,
            int(0),
            int(0),
            ScalarValue::Float32(Some(-1.0)),
            int(0),
            int(0),
            f.clone(),
            f.clone(),
            text("p"),
            text(kind.to_string()),
            int(i64::try_from(columns).unwrap_or(0)),
            int(0),
            f.clone(),
            f.clone(),
            f.clone(),
            f.clone(),
            f.clone(),
            boolean(true),
            text("d"),
            f.clone(),
            f,
            no_text(),
            no_text(),
            no_text(),
        ]);
    };
    for (i, relation) in relations.iter().enumerate() {
        class_row(oid_of(i), &relation.name, PUBLIC_OID, relkind(relation.kind), relation.columns.fields().len());
    }
    for (name, oid) in CATALOG_TABLES {
        class_row(int((*oid).into()), name, PG_CATALOG_OID, 'r', 0);
    }
    tables.push(("pg_class", class.table()?));

    let mut attribute = Builder::new(&[
        ("attrelid", I32),
        ("attname", Text),
        ("atttypid", I32),
        ("attstattarget", I32),
        ("attlen", I16),
        ("attnum", I16),
        ("attndims", I32),
        ("attcacheoff", I32),
        ("atttypmod", I32),
        ("attbyval", Bool),
        ("attstorage", Text),
        ("attalign", Text),
        ("attnotnull", Bool),
        ("atthasdef", Bool),
        ("atthasmissing", Bool),
        ("attidentity", Text),
        ("attgenerated", Text),
        ("attisdropped", Bool),
        ("attislocal", Bool),
        ("attinhcount", I32),
        ("attcollation", I32),
        ("attacl", Text),
        ("attoptions", Text),
        ("attfdwoptions", Text),
    ]);
    for (i, relation) in relations.iter().enumerate() {
        for (number, field, type_oid, typmod) in columns(relation) {
            let len = TYPES.iter().find(|t| t.oid == type_oid).map_or(-1, |t| t.len);
            let f = boolean(false);
            attribute.row(vec![
                oid_of(i),
                text(field.name()),
                int(type_oid.into()),
                int(-1),
                int(len.into()),
                int(number.into()),
                int(0),
                int(-1),
                int(typmod.into()),
                boolean(len > 0),
                text(if len > 0 { "p" } else { "x" }),
                text("d"),
                boolean(!field.is_nullable()),
                f.clone(),
                f.clone(),
                text(""),
                text(""),
                f,
                boolean(true),
                int(0),
                int(if type_oid == Type::TEXT.oid() { 100 } else { 0 }),
                no_text(),
                no_text(),
                no_text(),
            ]);
        }
    }
    tables.push(("pg_attribute", attribute.table()?));

    let mut types = Builder::new(&[
        ("oid", I32),
        ("typname", Text),
        ("typnamespace", I32),
        ("typowner", I32),
        ("typlen", I16),
        ("typbyval", Bool),
        ("typtype", Text),
        ("typcategory", Text),
        ("typispreferred", Bool),
        ("typisdefined", Bool),
        ("typdelim", Text),
        ("typrelid", I32),
        ("typelem", I32),
        ("typarray", I32),
        ("typinput", Text),
        ("typoutput", Text),
        ("typreceive", Text),
        ("typsend", Text),
        ("typalign", Text),
        ("typstorage", Text),
        ("typnotnull", Bool),
        ("typbasetype", I32),
        ("typtypmod", I32),
        ("typndims", I32),
        ("typcollation", I32),
        ("typdefault", Text),
        ("typacl", Text),
    ]);
    for t in TYPES {
        let base = if t.element == 0 { t.name } else { "array" };
        types.row(vec![
            int(t.oid.into()),
            text(t.name),
            int(PG_CATALOG_OID.into()),
            int(OWNER_OID.into()),
            int(t.len.into()),
            boolean(t.len > 0 && t.len <= 8),
            text("b"),
            text(t.category),
            boolean(false),
            boolean(true),
            text(","),
            int(0),
            int(t.element.into()),
            int(t.array.into()),
            text(format!("{base}_in")),
            text(format!("{base}_out")),
            text(format!("{base}_recv")),
            text(format!("{base}_send")),
            text(if t.len == 8 { "d" } else { "i" }),
            text(if t.len > 0 { "p" } else { "x" }),
            boolean(false),
            int(0),
            int(-1),
            int(0),
            int(if t.category == "S" { 100 } else { 0 }),
            no_text(),
            no_text(),
        ]);
    }
    tables.push(("pg_type", types.table()?));

    let mut database = Builder::new(&[
        ("oid", I32),
        ("datname", Text),
        ("datdba", I32),
        ("encoding", I32),
        ("datcollate", Text),
        ("datctype", Text),
        ("datistemplate", Bool),
        ("datallowconn", Bool),
        ("datconnlimit", I32),
        ("dattablespace", I32),
        ("datacl", Text),
    ]);
    database.row(vec![
        int(16_383),
        text(DATABASE),
        int(OWNER_OID.into()),
        int(6),
        text("C.UTF-8"),
        text("C.UTF-8"),
        boolean(false),
        boolean(true),
        int(-1),
        int(1663),
        no_text(),
    ]);
    tables.push(("pg_database", database.table()?));

    let mut roles = Builder::new(&[
        ("oid", I32),
        ("rolname", Text),
        ("rolsuper", Bool),
        ("rolinherit", Bool),
        ("rolcreaterole", Bool),
        ("rolcreatedb", Bool),
        ("rolcanlogin", Bool),
        ("rolreplication", Bool),
        ("rolconnlimit", I32),
        ("rolvaliduntil", Text),
        ("rolbypassrls", Bool),
        ("rolconfig", Text),
    ]);
    roles.row(vec![
        int(OWNER_OID.into()),
        text(OWNER),
        boolean(true),
        boolean(true),
        boolean(false),
        boolean(false),
        boolean(true),
        boolean(false),
        int(-1),
        no_text(),
        boolean(false),
        no_text(),
    ]);
    tables.push(("pg_roles", roles.table()?));
    let mut user = Builder::new(&[("usename", Text), ("usesysid", I32), ("usecreatedb", Bool), ("usesuper", Bool)]);
    user.row(vec![text(OWNER), int(OWNER_OID.into()), boolean(false), boolean(true)]);
    tables.push(("pg_user", user.table()?));

    let mut settings = Builder::new(&[
        ("name", Text),
        ("setting", Text),
        ("unit", Text),
        ("category", Text),
        ("short_desc", Text),
        ("context", Text),
        ("vartype", Text),
        ("source", Text),
        ("boot_val", Text),
        ("reset_val", Text),
    ]);
    for (name, value) in SETTINGS {
        settings.row(vec![
            text(*name),
            text(*value),
            no_text(),
            text("Eddy"),
            no_text(),
            text("internal"),
            text("string"),
            text("default"),
            text(*value),
            text(*value),
        ]);
    }
    tables.push(("pg_settings", settings.table()?));

    let mut pg_tables = Builder::new(&[
        ("schemaname", Text),
        ("tablename", Text),
        ("tableowner", Text),
        ("tablespace", Text),
        ("hasindexes", Bool),
        ("hasrules", Bool),
        ("hastriggers", Bool),
        ("rowsecurity", Bool),
    ]);
    let mut views = Builder::new(&[("schemaname", Text), ("viewname", Text), ("viewowner", Text), ("definition", Text)]);
    let mut matviews = Builder::new(&[
        ("schemaname", Text),
        ("matviewname", Text),
        ("matviewowner", Text),
        ("tablespace", Text),
        ("hasindexes", Bool),
        ("ispopulated", Bool),
        ("definition", Text),
    ]);
    for relation in relations {
        let name = text(&relation.name);
        match relation.kind {
            RelationKind::Table => {
                pg_tables.row(vec![text(SCHEMA), name, text(OWNER), no_text(), boolean(false), boolean(false), boolean(false), boolean(false)])
            }
            RelationKind::View => views.row(vec![text(SCHEMA), name, text(OWNER), no_text()]),
            RelationKind::MaterializedView => matviews.row(vec![text(SCHEMA), name, text(OWNER), no_text(), boolean(false), boolean(true), no_text()]),
        }
    }
    tables.push(("pg_tables", pg_tables.table()?));
    tables.push(("pg_views", views.table()?));
    tables.push(("pg_matviews", matviews.table()?));

    // What Eddy has none of: the tables exist, without rows.
    let empty: &[(&'static str, &[(&str, DataType)])] = &[
        ("pg_description", &[("objoid", I32), ("classoid", I32), ("objsubid", I32), ("description", Text)]),
        ("pg_attrdef", &[("oid", I32), ("adrelid", I32), ("adnum", I16), ("adbin", Text)]),
        (
            "pg_index",
            &[
                ("indexrelid", I32),
                ("indrelid", I32),
                ("indnatts", I16),
                ("indnkeyatts", I16),
                ("indisunique", Bool),
                ("indisprimary", Bool),
                ("indisclustered", Bool),
                ("indisvalid", Bool),
                ("indkey", Text),
                ("indexprs", Text),
                ("indpred", Text),
            ],
        ),
        (
            "pg_constraint",
            &[
                ("oid", I32),
                ("conname", Text),
                ("connamespace", I32),
                ("contype", Text),
                ("conrelid", I32),
                ("conindid", I32),
                ("confrelid", I32),
                ("conkey", Text),
                ("confkey", Text),
                ("convalidated", Bool),
            ],
        ),
        ("pg_inherits", &[("inhrelid", I32), ("inhparent", I32), ("inhseqno", I32)]),
        ("pg_proc", &[("oid", I32), ("proname", Text), ("pronamespace", I32), ("proowner", I32), ("prorettype", I32), ("prokind", Text)]),
        ("pg_extension", &[("oid", I32), ("extname", Text), ("extowner", I32), ("extnamespace", I32), ("extversion", Text)]),
        ("pg_enum", &[("oid", I32), ("enumtypid", I32), ("enumsortorder", DataType::Float32), ("enumlabel", Text)]),
        ("pg_range", &[("rngtypid", I32), ("rngsubtype", I32), ("rngmultitypid", I32)]),
        ("pg_collation", &[("oid", I32), ("collname", Text), ("collnamespace", I32)]),
        ("pg_am", &[("oid", I32), ("amname", Text), ("amtype", Text)]),
        ("pg_trigger", &[("oid", I32), ("tgrelid", I32), ("tgname", Text)]),
        ("pg_rewrite", &[("oid", I32), ("rulename", Text), ("ev_class", I32)]),
        ("pg_depend", &[("classid", I32), ("objid", I32), ("objsubid", I32), ("refclassid", I32), ("refobjid", I32), ("refobjsubid", I32), ("deptype", Text)]),
        ("pg_foreign_table", &[("ftrelid", I32), ("ftserver", I32)]),
        ("pg_sequence", &[("seqrelid", I32), ("seqtypid", I32)]),
        ("pg_tablespace", &[("oid", I32), ("spcname", Text)]),
    ];
    for (name, columns) in empty {
        tables.push((name, Builder::new(columns).table()?));
    }
    Ok(tables)
}

/// The settings `current_setting` and `pg_settings` answer (what tools ask).
pub const SETTINGS: &[(&str, &str)] = &[
    ("server_version", "16.6"),
    ("server_version_num", "160006"),
    ("search_path", "\"$user\", public"),
    ("server_encoding", "UTF8"),
    ("client_encoding", "UTF8"),
    ("standard_conforming_strings", "on"),
    ("DateStyle", "ISO, MDY"),
    ("TimeZone", "UTC"),
    ("integer_datetimes", "on"),
    ("max_identifier_length", "63"),
    ("transaction_isolation", "read committed"),
    ("default_transaction_read_only", "off"),
    ("application_name", ""),
];

/// The tables of `information_schema`, by name: schemata, tables, columns, views.
pub fn information_schema(relations: &[Relation]) -> Result<Vec<(&'static str, Arc<MemTable>)>> {
    let mut schemata = Builder::new(&[("catalog_name", Text), ("schema_name", Text), ("schema_owner", Text)]);
    for schema in ["information_schema", "pg_catalog", SCHEMA] {
        schemata.row(vec![text(DATABASE), text(schema), text(OWNER)]);
    }
    let mut tables = Builder::new(&[
        ("table_catalog", Text),
        ("table_schema", Text),
        ("table_name", Text),
        ("table_type", Text),
        ("is_insertable_into", Text),
        ("is_typed", Text),
    ]);
    let mut views = Builder::new(&[("table_catalog", Text), ("table_schema", Text), ("table_name", Text), ("view_definition", Text)]);
    let mut columns_table = Builder::new(&[
        ("table_catalog", Text),
        ("table_schema", Text),
        ("table_name", Text),
        ("column_name", Text),
        ("ordinal_position", I32),
        ("column_default", Text),
        ("is_nullable", Text),
        ("data_type", Text),
        ("character_maximum_length", I32),
        ("numeric_precision", I32),
        ("numeric_scale", I32),
        ("datetime_precision", I32),
        ("udt_catalog", Text),
        ("udt_schema", Text),
        ("udt_name", Text),
        ("is_updatable", Text),
    ]);
    for relation in relations {
        // Postgres lists a materialized view in neither `tables` nor `views`,
        // but its columns in `columns`; tools pick tables from `tables`, so
        // Eddy lists it there as a view.
        let kind = if relation.kind == RelationKind::Table { "BASE TABLE" } else { "VIEW" };
        tables.row(vec![text(DATABASE), text(SCHEMA), text(&relation.name), text(kind), text("NO"), text("NO")]);
        if relation.kind != RelationKind::Table {
            views.row(vec![text(DATABASE), text(SCHEMA), text(&relation.name), no_text()]);
        }
        for (number, field, type_oid, _) in columns(relation) {
            let (precision, scale) = match field.data_type() {
                DataType::Decimal128(p, s) | DataType::Decimal256(p, s) => (int((*p).into()), int((*s).into())),
                DataType::Int16 | DataType::Int8 | DataType::UInt8 => (int(16), int(0)),
                DataType::Int32 | DataType::UInt16 => (int(32), int(0)),
                DataType::Int64 | DataType::UInt32 => (int(64), int(0)),
                DataType::Float32 | DataType::Float16 => (int(24), no_int()),
                DataType::Float64 => (int(53), no_int()),
                _ => (no_int(), no_int()),
            };
            let datetime =
                matches!(field.data_type(), DataType::Timestamp(..) | DataType::Time32(_) | DataType::Time64(_)).then(|| int(6)).unwrap_or_else(no_int);
            let data_type = format_type(type_oid, -1).unwrap_or_else(|| "text".into());
            let udt = TYPES.iter().find(|t| t.oid == type_oid).map_or("text", |t| t.name);
            columns_table.row(vec![
                text(DATABASE),
                text(SCHEMA),
                text(&relation.name),
                text(field.name()),
                int(number.into()),
                no_text(),
                text(if field.is_nullable() { "YES" } else { "NO" }),
                text(data_type),
                no_int(),
                precision,
                scale,
                datetime,
                text(DATABASE),
                text("pg_catalog"),
                text(udt),
                text("NO"),
            ]);
        }
    }
    Ok(vec![("schemata", schemata.table()?), ("tables", tables.table()?), ("views", views.table()?), ("columns", columns_table.table()?)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalog_tables_are_the_ones_named() {
        let made: Vec<&str> = pg_catalog(&[]).unwrap().into_iter().map(|(name, _)| name).collect();
        assert_eq!(made, PG_CATALOG_TABLES);
    }

    #[test]
    fn types_are_named_as_postgres_names_them() {
        assert_eq!(format_type(20, -1).as_deref(), Some("bigint"));
        assert_eq!(format_type(1700, (10 << 16 | 2) + 4).as_deref(), Some("numeric(10,2)"));
        assert_eq!(format_type(1016, -1).as_deref(), Some("_int8"));
        assert_eq!(type_oid("timestamp with time zone"), Some(1184));
        assert_eq!(type_oid("pg_catalog.int8"), Some(20));
        assert_eq!(type_oid("no_such_type"), None);
    }
}
