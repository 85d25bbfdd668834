//! Flink's hash functions: `MD5`, `SHA1`, `SHA224`, `SHA256`, `SHA384`,
//! `SHA512`, each the lower-case hex digest of a string's UTF-8 bytes (DataFusion's
//! `sha256` gives the raw bytes instead).

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, StringBuilder};
use datafusion::common::Result;
use datafusion::logical_expr::{ColumnarValue, ScalarUDF};
use md5::Md5;
use sha1::Sha1;
use sha2::{Digest, Sha224, Sha256, Sha384, Sha512};

use super::flink_fn::{string, Body, FlinkFn, Param, Strs};

/// Flink's hash functions.
pub(super) fn functions() -> Vec<ScalarUDF> {
    let hash = |name: &'static str, usage: &'static str, body: Body| FlinkFn::new(name, usage, &[Param::Str], 1, string, body).udf();
    vec![
        hash("MD5", "MD5(text)", hex_digest::<Md5>),
        hash("SHA1", "SHA1(text)", hex_digest::<Sha1>),
        hash("SHA224", "SHA224(text)", hex_digest::<Sha224>),
        hash("SHA256", "SHA256(text)", hex_digest::<Sha256>),
        hash("SHA384", "SHA384(text)", hex_digest::<Sha384>),
        hash("SHA512", "SHA512(text)", hex_digest::<Sha512>),
    ]
}

/// Each row's digest as lower-case hex, written through a stack buffer.
fn hex_digest<D: Digest>(args: &[ColumnarValue], rows: usize) -> Result<ArrayRef> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let texts = Strs::of(&args[0])?;
    let width = 2 * <D as Digest>::output_size();
    let mut out = StringBuilder::with_capacity(rows, rows * width);
    let mut buffer = [0u8; 128];
    for i in 0..rows {
        let Some(text) = texts.get(i) else {
            out.append_null();
            continue;
        };
        let digest = D::digest(text.as_bytes());
        for (j, byte) in digest.iter().enumerate() {
            buffer[2 * j] = HEX[usize::from(byte >> 4)];
            buffer[2 * j + 1] = HEX[usize::from(byte & 15)];
        }
        // Only ASCII hex digits were written.
        out.append_value(std::str::from_utf8(&buffer[..width]).unwrap_or_default());
    }
    Ok(Arc::new(out.finish()))
}
