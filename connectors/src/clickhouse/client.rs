//! ClickHouse's HTTP interface: one POST per query, retried with exponential
//! backoff when the failure may be temporary.
//!
//! A request fails for good when the server rejects it (4xx other than 408 and
//! 429: syntax, unknown table, wrong password...) or when its exception code says
//! the query itself is wrong: servers before about 19.x answer 500 to most
//! exceptions, so the status alone cannot tell a bad query from an overloaded
//! server. Connection errors, timeouts and other 5xx answers are retried.

use std::time::Duration;

use reqwest::{StatusCode, Url};

use crate::error::ConnectorError;
use crate::options::retry_delay;

/// Time to open a TCP (and TLS) connection before the attempt counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time for a whole request, upload included: generous, as an INSERT of a large
/// batch into a busy server can take a while, but not forever on a hung server.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);
/// Longest server message kept in an error.
const MESSAGE_CHARS_MAX: usize = 2_000;

/// ClickHouse exception codes that mean the request itself is wrong, so sending it
/// again cannot help (from ClickHouse's `src/Common/ErrorCodes.cpp`).
const PERMANENT_CODES: &[u32] = &[
    16,  // NO_SUCH_COLUMN_IN_TABLE
    27,  // CANNOT_PARSE_INPUT_ASSERTION_FAILED
    33,  // CANNOT_READ_ALL_DATA (a body that does not match the columns)
    36,  // BAD_ARGUMENTS
    42,  // NUMBER_OF_ARGUMENTS_DOESNT_MATCH
    43,  // ILLEGAL_TYPE_OF_ARGUMENT
    44,  // ILLEGAL_COLUMN
    46,  // UNKNOWN_FUNCTION
    47,  // UNKNOWN_IDENTIFIER
    53,  // TYPE_MISMATCH
    56,  // UNKNOWN_STORAGE (table engine)
    57,  // TABLE_ALREADY_EXISTS
    60,  // UNKNOWN_TABLE
    62,  // SYNTAX_ERROR
    70,  // CANNOT_CONVERT_TYPE
    73,  // UNKNOWN_FORMAT
    80,  // INCORRECT_QUERY
    81,  // UNKNOWN_DATABASE
    115, // UNKNOWN_SETTING
    117, // INCORRECT_DATA
    164, // READONLY
    192, // UNKNOWN_USER
    193, // WRONG_PASSWORD
    194, // REQUIRED_PASSWORD
    195, // IP_ADDRESS_NOT_ALLOWED
    497, // ACCESS_DENIED
    516, // AUTHENTICATION_FAILED
];

/// Why one attempt failed.
#[derive(Debug)]
struct Failure {
    /// The server's message, or the transport error with its causes.
    reason: String,
    /// Whether another attempt may succeed.
    retryable: bool,
}

/// The server's version, for the features that depend on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct ServerVersion {
    pub major: u32,
    pub minor: u32,
}

impl ServerVersion {
    /// Parses `SELECT version()`'s answer, e.g. `18.16.1` or `24.3.2.23`.
    pub(crate) fn parse(text: &str) -> Option<ServerVersion> {
        let mut parts = text.trim().split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        Some(ServerVersion { major, minor })
    }

    /// `DateTime64` exists from 20.1.
    pub(crate) fn has_datetime64(self) -> bool {
        self >= ServerVersion { major: 20, minor: 1 }
    }

    /// The `insert_deduplication_token` setting exists from 22.2.
    pub(crate) fn has_deduplication_token(self) -> bool {
        self >= ServerVersion { major: 22, minor: 2 }
    }

    /// Before 19.x, `LowCardinality` columns need `allow_experimental_low_cardinality_type`.
    pub(crate) fn low_cardinality_is_experimental(self) -> bool {
        self.major < 19
    }
}

/// A ClickHouse server's HTTP endpoint with the sink's credentials and retry budget.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    http: reqwest::Client,
    url: Url,
    /// The URL without credentials, for messages and logs.
    label: String,
    /// The target table, `db`.`table`, for logs.
    table: String,
    username: Option<String>,
    password: Option<String>,
    max_retries: u32,
}

impl Client {
    /// A client for `url`; connects on the first request.
    pub(crate) fn new(url: Url, table: String, username: Option<String>, password: Option<String>, max_retries: u32) -> Result<Client, ConnectorError> {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| ConnectorError::clickhouse(format!("cannot create an HTTP client for {url}"), error_chain(&e)))?;
        Ok(Client { http, label: url_label(&url), url, table, username, password, max_retries })
    }

    /// The server URL without credentials.
    pub(crate) fn label(&self) -> &str {
        &self.label
    }

    /// Runs a query whose text is the request body, returning the answer.
    pub(crate) async fn query(&self, what: &str, sql: &str, settings: &[(&str, &str)]) -> Result<String, ConnectorError> {
        self.send(what, settings, sql.as_bytes()).await
    }

    /// POSTs `body` with `params` as URL parameters (`query` and settings), retrying
    /// temporary failures; `what` names the request in logs and errors.
    pub(crate) async fn send(&self, what: &str, params: &[(&str, &str)], body: &[u8]) -> Result<String, ConnectorError> {
        self.send_unless(what, params, body, None, false).await
    }

    /// As [`Client::send`], but before each retry asks `landed` (a query answering
    /// a count) whether the failed attempt reached the table after all, and stops
    /// if it did: a retry without a deduplication token must not insert twice.
    /// `maybe_sent`: the body may have landed before this call (a restarted sink),
    /// so the check comes before the first attempt too.
    pub(crate) async fn send_unless(
        &self,
        what: &str,
        params: &[(&str, &str)],
        body: &[u8],
        landed: Option<&str>,
        maybe_sent: bool,
    ) -> Result<String, ConnectorError> {
        let mut attempt = 0u32;
        // While the body may have landed, the check comes first.
        let mut unsure = maybe_sent;
        loop {
            attempt = attempt.saturating_add(1);
            let outcome = match (unsure, landed) {
                (true, Some(count)) => match self.attempt(&[], count.as_bytes()).await {
                    Ok(answer) if counts_rows(&answer) => {
                        tracing::info!(url = %self.label, table = %self.table, "an earlier attempt ({what}) had landed; not sending it again");
                        return Ok(String::new());
                    }
                    Ok(_) => self.attempt(params, body).await,
                    Err(failure) => Err(failure),
                },
                _ => self.attempt(params, body).await,
            };
            let failure = match outcome {
                Ok(answer) => return Ok(answer),
                Err(failure) => failure,
            };
            if !failure.retryable || attempt > self.max_retries {
                let tries = if attempt > 1 { format!(" (after {attempt} attempts)") } else { String::new() };
                return Err(ConnectorError::clickhouse(format!("{what} at {}{tries}", self.label), failure.reason));
            }
            let pause = retry_delay(attempt);
            tracing::warn!(
                url = %self.label,
                table = %self.table,
                attempt,
                max_attempts = self.max_retries.saturating_add(1),
                error = %failure.reason,
                "ClickHouse request failed ({what}); retrying in {pause:?}"
            );
            tokio::time::sleep(pause).await;
            unsure = landed.is_some();
        }
    }

    async fn attempt(&self, params: &[(&str, &str)], body: &[u8]) -> Result<String, Failure> {
        let mut url = self.url.clone();
        if !params.is_empty() {
            url.query_pairs_mut().extend_pairs(params);
        }
        // A copy per attempt keeps the body for the next one; copying is cheap next
        // to sending it.
        let mut request = self.http.post(url).body(body.to_vec());
        if let Some(user) = &self.username {
            request = request.header("X-ClickHouse-User", user);
        }
        if let Some(password) = &self.password {
            request = request.header("X-ClickHouse-Key", password);
        }
        let transport = |e: reqwest::Error| Failure { reason: error_chain(&e), retryable: true };
        let response = request.send().await.map_err(transport)?;
        let status = response.status();
        let text = response.text().await.map_err(transport)?;
        if status.is_success() {
            return Ok(text);
        }
        Err(classify(status, &text))
    }
}

/// Whether an answer with `status` and body `text` is worth retrying, with the
/// server's message cleaned up for people.
fn classify(status: StatusCode, text: &str) -> Failure {
    let message = server_message(text);
    let reason = if message.is_empty() { format!("HTTP {status}") } else { message };
    let client_error = status.is_client_error() && status != StatusCode::REQUEST_TIMEOUT && status != StatusCode::TOO_MANY_REQUESTS;
    let permanent = exception_code(text).is_some_and(|code| PERMANENT_CODES.contains(&code));
    Failure { reason, retryable: !client_error && !permanent }
}

/// The `N` of a `Code: N` exception text.
fn exception_code(text: &str) -> Option<u32> {
    let rest = text.trim_start().strip_prefix("Code:")?.trim_start();
    let end = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// The server's exception text on one line, without the old servers' repetition:
/// `Code: 60, e.displayText() = DB::Exception: Table x doesn't exist., e.what() = DB::Exception`
/// becomes `Code: 60. DB::Exception: Table x doesn't exist.` (the form of current servers).
pub(crate) fn server_message(text: &str) -> String {
    let text = text.trim();
    let text = text.strip_suffix(", e.what() = DB::Exception").unwrap_or(text);
    let mut message = text.replacen(", e.displayText() = ", ". ", 1).replace('\n', " ");
    if message.chars().count() > MESSAGE_CHARS_MAX {
        message = message.chars().take(MESSAGE_CHARS_MAX).collect::<String>() + "...";
    }
    message
}

/// An error with all its causes: reqwest's own message alone does not say
/// whether the connection was refused or timed out.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// `url` without its password, for messages and logs.
pub(crate) fn url_label(url: &Url) -> String {
    let mut url = url.clone();
    if url.password().is_some() {
        // Cannot fail for URLs with a host, which are the only ones accepted.
        let _ = url.set_password(Some("***"));
    }
    url.as_str().trim_end_matches('/').to_string()
}

/// The rows of a `FORMAT TabSeparated` answer, each field unescaped.
pub(crate) fn parse_tab_separated(text: &str) -> Vec<Vec<String>> {
    text.lines().filter(|line| !line.is_empty()).map(|line| line.split('\t').map(unescape).collect()).collect()
}

/// Undoes TabSeparated escaping (`\t`, `\n`, `\\`, `\'`...).
pub(crate) fn unescape(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('0') => out.push('\0'),
            Some('b') => out.push('\u{8}'),
            Some('f') => out.push('\u{c}'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

/// A name quoted as a ClickHouse identifier: `` `a``b` `` for ``a`b``.
pub(crate) fn quote_identifier(name: &str) -> String {
    format!("`{}`", name.replace('\\', "\\\\").replace('`', "\\`"))
}

/// A ClickHouse string literal.
pub(crate) fn quote_string(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// Whether the answer to a `SELECT count()` counts any row.
pub(crate) fn counts_rows(answer: &str) -> bool {
    answer.trim().parse::<u64>().is_ok_and(|n| n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_and_new_exception_texts_are_classified() {
        let old = "Code: 60, e.displayText() = DB::Exception: Table default.x doesn't exist., e.what() = DB::Exception\n";
        let f = classify(StatusCode::NOT_FOUND, old);
        assert_eq!(f.reason, "Code: 60. DB::Exception: Table default.x doesn't exist.");
        assert!(!f.retryable);
        // Old servers answer 500 to a missing column; the code says it is permanent.
        let f =
            classify(StatusCode::INTERNAL_SERVER_ERROR, "Code: 16, e.displayText() = DB::Exception: No such column zz in table a, e.what() = DB::Exception");
        assert!(!f.retryable);
        let new = "Code: 252. DB::Exception: Too many parts (300). (TOO_MANY_PARTS) (version 23.8.1.1)";
        let f = classify(StatusCode::INTERNAL_SERVER_ERROR, new);
        assert_eq!(f.reason, new);
        assert!(f.retryable);
        assert!(classify(StatusCode::SERVICE_UNAVAILABLE, "").retryable);
        assert_eq!(classify(StatusCode::SERVICE_UNAVAILABLE, "").reason, "HTTP 503 Service Unavailable");
        assert!(classify(StatusCode::TOO_MANY_REQUESTS, "slow down").retryable);
        assert!(classify(StatusCode::REQUEST_TIMEOUT, "").retryable);
        assert!(!classify(StatusCode::BAD_REQUEST, "Code: 62. DB::Exception: Syntax error").retryable);
    }

    #[test]
    fn versions_and_tab_separated_answers_parse() {
        let v = ServerVersion::parse("18.16.1\n").unwrap();
        assert!(!v.has_datetime64() && !v.has_deduplication_token() && v.low_cardinality_is_experimental());
        let v = ServerVersion::parse("24.3.2.23").unwrap();
        assert!(v.has_datetime64() && v.has_deduplication_token() && !v.low_cardinality_is_experimental());
        assert!(ServerVersion::parse("22.1.3").is_some_and(|v| !v.has_deduplication_token()));
        assert!(ServerVersion::parse("x").is_none());
        assert_eq!(
            parse_tab_separated("t\tDateTime(\\'UTC\\')\na\\tb\tString\n"),
            vec![vec!["t".to_string(), "DateTime('UTC')".to_string()], vec!["a\tb".to_string(), "String".to_string()]]
        );
        assert_eq!(quote_identifier("a`b"), "`a\\`b`");
        assert_eq!(quote_string("it's"), "'it\\'s'");
        let url = Url::parse("http://u:secret@host:8123/").unwrap();
        assert_eq!(url_label(&url), "http://u:***@host:8123");
    }
}
