//! Table definitions as declared by `CREATE TABLE`: what a connector is created
//! from. Part of the connector contract the engine owns (with [`crate::Source`] and
//! [`crate::Sink`]): the SQL layer produces them, connectors consume them.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};

/// Options every table accepts whatever its connector, handled by the engine.
pub const ENGINE_OPTIONS: &[&str] = &["connector", "late.sink", "malformed.sink"];

/// One physical column: read from or written to the external system.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnDef {
    pub name: String,
    pub data_type: DataType,
    pub nullable: bool,
    /// `METADATA [FROM 'key'] [VIRTUAL]`: the value comes from the record's
    /// envelope (a Kafka partition, offset, timestamp...) rather than its payload.
    pub metadata: Option<MetadataColumn>,
}

/// Where a metadata column's value comes from, as Flink declares it.
#[derive(Debug, Clone, PartialEq)]
pub struct MetadataColumn {
    /// The connector's metadata key (`FROM 'key'`, else the column name).
    pub key: String,
    /// `VIRTUAL`: read-only, left out when the table is written to.
    pub is_virtual: bool,
}

/// A column computed from the physical ones, e.g. `ts AS TO_TIMESTAMP_LTZ(event_ms, 3)`.
#[derive(Debug, Clone, PartialEq)]
pub struct ComputedColumn {
    pub name: String,
    /// The SQL expression text, planned against the physical columns.
    pub expr_sql: String,
}

/// `WATERMARK FOR column AS expr`: the event-time column and how far the watermark trails it.
#[derive(Debug, Clone, PartialEq)]
pub struct WatermarkDef {
    pub column: String,
    /// The SQL expression text, e.g. `ts - INTERVAL '5' SECOND`.
    pub expr_sql: String,
}

/// Everything `CREATE TABLE` declares.
#[derive(Debug, Clone, PartialEq)]
pub struct TableDef {
    pub name: String,
    /// Physical columns, in declaration order.
    pub columns: Vec<ColumnDef>,
    /// Computed columns, appended after the physical ones in the table's visible schema.
    pub computed: Vec<ComputedColumn>,
    pub watermark: Option<WatermarkDef>,
    /// `PRIMARY KEY (...) NOT ENFORCED`: the upsert key for sinks that apply changelogs.
    pub primary_key: Vec<String>,
    /// `PARTITIONED BY (...)`: columns whose values name directories (`dt=2024-01-01/`)
    /// in filesystem tables, Hive style, instead of being stored in the files.
    pub partitioned_by: Vec<String>,
    /// `WITH ('k' = 'v', ...)`, keys as written.
    pub options: BTreeMap<String, String>,
}

impl From<&Field> for ColumnDef {
    fn from(field: &Field) -> Self {
        ColumnDef { name: field.name().clone(), data_type: field.data_type().clone(), nullable: field.is_nullable(), metadata: None }
    }
}

impl TableDef {
    /// A table whose physical columns are `fields`, with `WITH` options: for tables
    /// whose schema is already known (connector defaults, tests).
    pub fn from_fields(name: &str, fields: &[Field], options: &[(&str, &str)]) -> Self {
        TableDef {
            name: name.to_string(),
            columns: fields.iter().map(ColumnDef::from).collect(),
            computed: Vec::new(),
            watermark: None,
            primary_key: Vec::new(),
            partitioned_by: Vec::new(),
            options: options.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }

    /// The schema sources read: physical columns, metadata ones included.
    pub fn physical_schema(&self) -> SchemaRef {
        Self::schema_of(self.columns.iter())
    }

    /// The schema sinks write: physical columns without `VIRTUAL` metadata ones,
    /// which are read-only (Flink's rule for `INSERT INTO`).
    pub fn sink_schema(&self) -> SchemaRef {
        Self::schema_of(self.columns.iter().filter(|c| !c.metadata.as_ref().is_some_and(|m| m.is_virtual)))
    }

    fn schema_of<'a>(columns: impl Iterator<Item = &'a ColumnDef>) -> SchemaRef {
        Arc::new(Schema::new(columns.map(|c| Field::new(&c.name, c.data_type.clone(), c.nullable)).collect::<Vec<_>>()))
    }

    /// One `WITH` option's value.
    pub fn option(&self, key: &str) -> Option<&str> {
        self.options.get(key).map(String::as_str)
    }

    /// The `'connector'` option, or an empty string when it is missing.
    pub fn connector(&self) -> &str {
        self.option("connector").unwrap_or("")
    }
}
