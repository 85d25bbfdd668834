//! Where a filesystem sink writes: a local directory or an object store bucket
//! (`s3://bucket/prefix`), both through `object_store`, so one sink
//! implementation covers the laptop and the data lake.

use std::sync::Arc;

use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::ObjectStore;

use super::FsOptions;
use crate::error::ConnectorError;

/// A store and the directory in it that a table's files go under.
#[derive(Debug, Clone)]
pub struct Location {
    /// The store (local file system or a bucket).
    pub store: Arc<dyn ObjectStore>,
    /// The table's directory inside the store.
    pub root: Path,
    /// The path as the user wrote it, for messages.
    pub display: String,
}

/// The URL scheme of `path`, when it has one (`s3` for `s3://b/k`).
pub(crate) fn scheme(path: &str) -> Option<&str> {
    let (scheme, _) = path.split_once("://")?;
    (!scheme.is_empty() && scheme.chars().all(|c| c.is_ascii_alphanumeric() || c == '+')).then_some(scheme)
}

impl Location {
    /// Opens the store for `options.path`: local directories are created when
    /// missing; `s3://` takes credentials from the `s3.*` options, else from the
    /// usual `AWS_*` environment variables.
    pub fn open(options: &FsOptions) -> Result<Self, ConnectorError> {
        let path = options.path.as_str();
        match scheme(path) {
            None => {
                let dir = std::path::Path::new(path);
                if dir.is_file() {
                    return Err(ConnectorError::invalid("path", path, "a filesystem sink writes into a directory, but this is an existing file"));
                }
                std::fs::create_dir_all(dir).map_err(|e| ConnectorError::io("create directory", dir, e))?;
                let store =
                    LocalFileSystem::new_with_prefix(dir).map_err(|e| ConnectorError::invalid("path", path, format!("cannot use this directory: {e}")))?;
                Ok(Location { store: Arc::new(store), root: Path::default(), display: path.to_string() })
            }
            Some("s3") => {
                let url = url_parts(path)?;
                let mut builder = AmazonS3Builder::from_env().with_bucket_name(url.0);
                let s3 = &options.s3;
                if let Some(v) = &s3.access_key {
                    builder = builder.with_access_key_id(v);
                }
                if let Some(v) = &s3.secret_key {
                    builder = builder.with_secret_access_key(v);
                }
                if let Some(v) = &s3.region {
                    builder = builder.with_region(v);
                }
                if let Some(v) = &s3.endpoint {
                    builder = builder.with_endpoint(v);
                }
                if let Some(v) = s3.allow_http {
                    builder = builder.with_allow_http(v);
                }
                if s3.path_style {
                    builder = builder.with_virtual_hosted_style_request(false);
                }
                let store = builder.build().map_err(|e| ConnectorError::invalid("path", path, format!("cannot configure S3: {e}")))?;
                Ok(Location { store: Arc::new(store), root: Path::from(url.1), display: path.to_string() })
            }
            Some(other) => Err(ConnectorError::UnsupportedPath {
                path: path.to_string(),
                reason: format!("{other}:// paths are not supported; use a local path or s3://bucket/prefix"),
            }),
        }
    }
}

/// `s3://bucket/some/prefix` → (`bucket`, `some/prefix`).
fn url_parts(path: &str) -> Result<(&str, &str), ConnectorError> {
    let rest = path.split_once("://").map_or(path, |(_, r)| r);
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(ConnectorError::invalid("path", path, "expected s3://bucket/prefix"));
    }
    Ok((bucket, prefix.trim_matches('/')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_and_s3_urls() {
        assert_eq!(scheme("s3://b/k"), Some("s3"));
        assert_eq!(scheme("/tmp/x"), None);
        assert_eq!(scheme("C:/x"), None);
        assert_eq!(url_parts("s3://bucket/a/b/").unwrap(), ("bucket", "a/b"));
        assert_eq!(url_parts("s3://bucket").unwrap(), ("bucket", ""));
        assert!(url_parts("s3:///x").is_err());
    }
}
