//! Eddy's public gRPC API, generated from `eddy.proto` by tonic and prost.
//! The server (`eddy server`) and the client (`eddy sql`) both use these types,
//! so the wire format has one definition.

#![allow(clippy::all, missing_docs)]

/// Version 1 of the API (`package eddy.v1`).
pub mod v1 {
    tonic::include_proto!("eddy.v1");
}

pub use v1::*;

/// The largest SQL text one `ExecuteSql` request may carry. A statement is code,
/// not data: bulk rows belong in a table read from files or Kafka.
pub const MAX_STATEMENT_BYTES: usize = 16 * 1024 * 1024;

/// The largest gRPC message either side accepts: above [`MAX_STATEMENT_BYTES`], so
/// an oversized statement reaches the server's own check and its clear refusal
/// instead of the transport's bare "message length too large"; and room for wide
/// result batches (tonic's default is 4 MiB).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// The refusal of a statement over [`MAX_STATEMENT_BYTES`], the same from server and client.
pub fn statement_too_large(bytes: usize) -> String {
    format!(
        "the request is {:.1} MB of SQL; the limit is {} MB per request. Split the script into several requests, or put bulk data in a file or Kafka topic and read it as a table",
        bytes as f64 / (1024.0 * 1024.0),
        MAX_STATEMENT_BYTES / (1024 * 1024)
    )
}
