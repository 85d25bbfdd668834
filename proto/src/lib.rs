//! Eddy's public gRPC API, generated from `eddy.proto` by tonic and prost.
//! The server (`eddy server`) and the client (`eddy sql`) both use these types,
//! so the wire format has one definition.

#![allow(clippy::all, missing_docs)]

/// Version 1 of the API (`package eddy.v1`).
pub mod v1 {
    tonic::include_proto!("eddy.v1");
}

pub use v1::*;
