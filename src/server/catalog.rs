//! The server's catalog on disk: the statements that built its tables, views and
//! settings, and its pipelines with their SQL, in `DATA_DIR/catalog.json`.
//!
//! Statements are kept as SQL text and replayed through a fresh session at start,
//! so the file stays readable and never drifts from what the parser accepts. Each
//! change rewrites the file through a temporary file and a rename, so a crash
//! leaves either the old catalog or the new one.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::EddyError;

/// What the catalog file holds.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Catalog {
    /// `CREATE TABLE`, `CREATE VIEW` and `SET` statements, in the order they ran.
    pub statements: Vec<CatalogStatement>,
    /// Every pipeline (`INSERT INTO` and materialized views), in the order they were created.
    pub pipelines: Vec<PipelineRecord>,
    /// The number the next pipeline id gets.
    pub next_pipeline: u64,
}

/// One statement that built the catalog.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CatalogStatement {
    /// `table`, `view` or `set`.
    pub kind: String,
    /// The table's or view's name, or the setting's key.
    pub name: String,
    pub sql: String,
}

/// One pipeline, enough to start it again.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PipelineRecord {
    pub id: String,
    /// The table it writes or the materialized view it maintains.
    pub name: String,
    /// `INSERT INTO ...` or `CREATE MATERIALIZED VIEW ...`.
    pub sql: String,
    /// True while it should run: a server started again starts it again.
    pub running: bool,
    /// Tasks per keyed operator when it was created: its checkpoints can only be
    /// restored with the same number, whatever `SET 'parallelism'` says later.
    #[serde(default)]
    pub parallelism: Option<usize>,
}

impl Catalog {
    fn path(data_dir: &Path) -> PathBuf {
        data_dir.join("catalog.json")
    }

    /// Reads the catalog of `data_dir`; an empty one when there is none yet.
    pub fn load(data_dir: &Path) -> Result<Catalog, EddyError> {
        let path = Self::path(data_dir);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| EddyError::Io {
                context: format!("the catalog {} is damaged (fix or move it away to start empty)", path.display()),
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Catalog::default()),
            Err(source) => Err(EddyError::Io { context: format!("cannot read the catalog {}", path.display()), source }),
        }
    }

    /// Writes the catalog atomically.
    pub fn save(&self, data_dir: &Path) -> Result<(), EddyError> {
        let path = Self::path(data_dir);
        let temporary = data_dir.join(".catalog.json.tmp");
        let io = |source| EddyError::Io { context: format!("cannot write the catalog {}", path.display()), source };
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| io(std::io::Error::other(e)))?;
        {
            use std::io::Write;
            let mut file = std::fs::File::create(&temporary).map_err(io)?;
            file.write_all(&bytes).map_err(io)?;
            file.sync_all().map_err(io)?;
        }
        std::fs::rename(&temporary, &path).map_err(io)
    }

    /// Records a statement; a `SET` of the same key replaces the earlier one.
    pub fn add_statement(&mut self, kind: &str, name: &str, sql: &str) {
        if kind == "set" {
            self.statements.retain(|s| !(s.kind == "set" && s.name == name));
        }
        self.statements.push(CatalogStatement { kind: kind.to_string(), name: name.to_string(), sql: sql.to_string() });
    }

    /// Forgets the statement that created `name` (a dropped table or view).
    pub fn remove_statement(&mut self, kind: &str, name: &str) {
        self.statements.retain(|s| !(s.kind == kind && s.name == name));
    }

    /// A new pipeline id: `p1`, `p2`, ...
    pub fn new_pipeline_id(&mut self) -> String {
        self.next_pipeline += 1;
        format!("p{}", self.next_pipeline)
    }

    /// Records whether pipeline `id` runs, and with how many tasks when that changed.
    pub fn set_running(&mut self, id: &str, running: bool, parallelism: Option<usize>) {
        if let Some(record) = self.pipeline_mut(id) {
            record.running = running;
            record.parallelism = parallelism.or(record.parallelism);
        }
    }

    /// The record of pipeline `id`, to update.
    fn pipeline_mut(&mut self, id: &str) -> Option<&mut PipelineRecord> {
        self.pipelines.iter_mut().find(|p| p.id == id)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn saves_and_loads_and_set_replaces() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Catalog::load(dir.path()).unwrap().statements.is_empty());
        let mut catalog = Catalog::default();
        catalog.add_statement("set", "parallelism", "SET 'parallelism' = '2'");
        catalog.add_statement("table", "t", "CREATE TABLE t (a INT) WITH ('connector' = 'datagen')");
        catalog.add_statement("set", "parallelism", "SET 'parallelism' = '4'");
        let id = catalog.new_pipeline_id();
        catalog.pipelines.push(PipelineRecord {
            id: id.clone(),
            name: "out".into(),
            sql: "INSERT INTO out SELECT * FROM t".into(),
            running: true,
            parallelism: Some(3),
        });
        catalog.save(dir.path()).unwrap();
        let loaded = Catalog::load(dir.path()).unwrap();
        assert_eq!(loaded.statements.len(), 2);
        assert_eq!(loaded.statements[1].sql, "SET 'parallelism' = '4'");
        assert_eq!(loaded.pipelines[0].id, "p1");
        assert_eq!(loaded.next_pipeline, 1);
        assert_eq!(loaded.pipelines[0].parallelism, Some(3));
        std::fs::write(dir.path().join("catalog.json"), "{not json").unwrap();
        let err = Catalog::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("damaged"), "{err}");
    }
}
