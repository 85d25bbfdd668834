//! `'format' = 'avro-confluent'`: Avro values in Confluent's wire format (a zero
//! byte, the writer schema's id as a big-endian u32, then the Avro datum), with
//! schemas kept in a Confluent-compatible schema registry (its REST API:
//! `GET /schemas/ids/{id}`, `POST /subjects/{subject}/versions`).
//!
//! A reader fetches each writer schema id it meets once and decodes every record
//! with the schema it was written with, resolved against the table's by arrow-avro
//! (see [`super::avro`]): fields are matched to columns by name, in any order (a
//! nullable column the writer did not have is NULL, a writer field the table does
//! not have is skipped). A writer registers the schema derived from its columns
//! under the subject (by default `<topic>-value`) once and prefixes every record
//! with the id it gets.

use std::time::Duration;

use super::avro::{split, AvroDecoder, AvroRecord, MAGIC};
use crate::filesystem::records::Chunk;

/// How long one call to the registry may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// A schema registry client (the writer schemas fetched from it are kept by the
/// [`AvroDecoder`] they are fetched for).
pub(crate) struct SchemaRegistry {
    url: String,
    client: reqwest::Client,
}

/// Why a registry call failed: worth retrying (the registry is down or busy), or not.
enum CallError {
    Transient(String),
    Refused(String),
}

impl SchemaRegistry {
    /// A client of the registry at `url` (e.g. `http://127.0.0.1:8081`).
    pub fn new(url: &str) -> Self {
        let client = reqwest::Client::builder().timeout(TIMEOUT).build().unwrap_or_default();
        SchemaRegistry { url: url.trim_end_matches('/').to_string(), client }
    }

    /// Fetches the writer schema of every record in `chunk` whose id `decoder` does
    /// not know yet, and adds it there. Fails only while the registry cannot answer
    /// (the caller retries); an id it does not know, or a schema that does not
    /// resolve to the table's columns, makes those records malformed.
    pub async fn fetch_missing(&self, chunk: &Chunk, decoder: &mut AvroDecoder) -> Result<(), String> {
        for record in &chunk.records {
            let Ok((id, _)) = split(chunk.bytes(record)) else { continue };
            if decoder.knows(id) {
                continue;
            }
            let url = format!("{}/schemas/ids/{id}", self.url);
            let known = match self.call(self.client.get(&url)).await {
                Ok(body) => match body.get("schema").and_then(|s| s.as_str()) {
                    Some(schema) => Ok(schema.to_string()),
                    None => Err(format!("{url} answered without a schema: {body}")),
                },
                Err(CallError::Refused(e)) => Err(format!("its writer schema id {id} was not found: {e}")),
                Err(CallError::Transient(e)) => return Err(e),
            };
            decoder.add_writer(id, known);
        }
        Ok(())
    }

    /// Registers `record` under `subject` (or finds it registered) and returns its id.
    pub async fn register(&self, subject: &str, record: &AvroRecord) -> Result<u32, String> {
        let url = format!("{}/subjects/{subject}/versions", self.url);
        let body = serde_json::json!({ "schema": record.schema_json() }).to_string();
        let request = self.client.post(&url).header("content-type", "application/vnd.schemaregistry.v1+json").body(body);
        let answer = self.call(request).await.map_err(|(CallError::Transient(e) | CallError::Refused(e))| e)?;
        answer.get("id").and_then(|id| id.as_u64()).and_then(|id| u32::try_from(id).ok()).ok_or_else(|| format!("{url} answered without a schema id: {answer}"))
    }

    async fn call(&self, request: reqwest::RequestBuilder) -> Result<serde_json::Value, CallError> {
        let response = request.send().await.map_err(|e| CallError::Transient(format!("cannot reach the schema registry at {}: {e}", self.url)))?;
        let status = response.status();
        let text = response.text().await.map_err(|e| CallError::Transient(format!("the schema registry at {} broke off its answer: {e}", self.url)))?;
        if status.is_server_error() {
            return Err(CallError::Transient(format!("the schema registry at {} answered {status}: {text}", self.url)));
        }
        if !status.is_success() {
            return Err(CallError::Refused(format!("the schema registry at {} answered {status}: {text}", self.url)));
        }
        serde_json::from_str(&text)
            .map_err(|e| CallError::Refused(format!("the schema registry at {} answered with something that is not JSON ({e}): {text}", self.url)))
    }
}

/// `datum` in Confluent's wire format, written with schema `id`.
pub(crate) fn frame(id: u32, datum: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(datum.len() + 5);
    out.push(MAGIC);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(datum);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wire_format_is_a_zero_byte_a_big_endian_id_and_the_datum() {
        let framed = frame(258, &[7, 8]);
        assert_eq!(framed, vec![0, 0, 0, 1, 2, 7, 8]);
        assert_eq!(split(&framed).unwrap(), (258, &[7u8, 8][..]));
        assert!(split(&[1, 0, 0, 0, 1]).unwrap_err().contains("first byte is 1"));
        assert!(split(&[]).unwrap_err().contains("tombstone"));
    }
}
