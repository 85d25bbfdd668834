//! The catalog as Flight SQL lists it (`GetSqlInfo`, `GetCatalogs`,
//! `GetDbSchemas`, `GetTables`, `GetTableTypes`), for the tools that browse a
//! database before they query it (DBeaver, ADBC's `adbc_get_objects`).
//!
//! Eddy has one namespace: every table and view is in catalog [`CATALOG`],
//! schema [`SCHEMA`], the names the Postgres face shows too.

use std::sync::OnceLock;

use arrow_flight::error::FlightError;
use arrow_flight::sql::metadata::{SqlInfoData, SqlInfoDataBuilder};
use arrow_flight::sql::{CommandGetCatalogs, CommandGetDbSchemas, CommandGetTableTypes, CommandGetTables, SqlInfo};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;

use crate::server::{RelationKind, Server};

/// The one catalog's name.
pub const CATALOG: &str = "eddy";

/// The one schema's name.
pub const SCHEMA: &str = "public";

/// The table types, as `GetTables` names them.
const TABLE_TYPES: [&str; 3] = ["TABLE", "VIEW", "MATERIALIZED VIEW"];

/// A relation kind as a Flight SQL table type.
fn table_type(kind: RelationKind) -> &'static str {
    match kind {
        RelationKind::Table => TABLE_TYPES[0],
        RelationKind::View => TABLE_TYPES[1],
        RelationKind::MaterializedView => TABLE_TYPES[2],
    }
}

/// What `GetSqlInfo` answers: who the server is and the little of its SQL a
/// client asks about before it queries.
pub fn sql_info() -> &'static SqlInfoData {
    static INFO: OnceLock<SqlInfoData> = OnceLock::new();
    INFO.get_or_init(|| {
        let mut builder = SqlInfoDataBuilder::new();
        builder.append(SqlInfo::FlightSqlServerName, "eddy");
        builder.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
        // The Arrow columnar format's version (Schema.fbs), not the crate's.
        builder.append(SqlInfo::FlightSqlServerArrowVersion, "1.3");
        builder.append(SqlInfo::FlightSqlServerReadOnly, false);
        builder.append(SqlInfo::FlightSqlServerSql, true);
        builder.append(SqlInfo::FlightSqlServerSubstrait, false);
        // 0: no transactions (SqlSupportedTransaction::None).
        builder.append(SqlInfo::FlightSqlServerTransaction, 0i32);
        builder.append(SqlInfo::FlightSqlServerCancel, false);
        builder.append(SqlInfo::SqlDdlCatalog, false);
        builder.append(SqlInfo::SqlDdlSchema, false);
        // Flink's quote for identifiers; Eddy also reads double quotes.
        builder.append(SqlInfo::SqlIdentifierQuoteChar, "`");
        builder.append(SqlInfo::SqlTransactionsSupported, false);
        // Fixed values of the types the builder takes: building cannot fail.
        builder.build().expect("the server's SQL info builds")
    })
}

/// An answer to a catalog command: its columns, and its one batch (or why it could not be built).
pub type Answer = (SchemaRef, Result<RecordBatch, FlightError>);

/// `GetCatalogs`: the one catalog.
pub fn catalogs(query: CommandGetCatalogs) -> Answer {
    let mut builder = query.into_builder();
    builder.append(CATALOG);
    (builder.schema(), builder.build())
}

/// `GetDbSchemas`: the one schema (the builder applies the client's filters).
pub fn db_schemas(query: CommandGetDbSchemas) -> Answer {
    let mut builder = query.into_builder();
    builder.append(CATALOG, SCHEMA);
    (builder.schema(), builder.build())
}

/// `GetTableTypes`: tables, views and materialized views.
pub fn table_types(query: CommandGetTableTypes) -> Answer {
    let mut builder = query.into_builder();
    for table_type in TABLE_TYPES {
        builder.append(table_type);
    }
    (builder.schema(), builder.build())
}

/// `GetTables`: every table and view, with its columns when asked (the builder
/// applies the client's filters).
pub async fn tables(server: &Server, query: CommandGetTables) -> Answer {
    let mut builder = query.into_builder();
    let schema = builder.schema();
    for relation in server.relations().await {
        if let Err(e) = builder.append(CATALOG, SCHEMA, &relation.name, table_type(relation.kind), &relation.columns) {
            return (schema, Err(e));
        }
    }
    (schema, builder.build())
}
