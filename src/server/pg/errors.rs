//! Eddy's errors as Postgres `ErrorResponse`s: a SQLSTATE code a driver can
//! branch on, the message `eddy sql` shows, and the 1-based character position
//! of the offending token (psql draws its caret under it).

use eddy_sql::{Location, SqlError};
use pgwire::error::{ErrorInfo, PgWireError};

use crate::error::EddyError;

/// SQLSTATE `42601`: the text is not valid SQL.
pub const SYNTAX_ERROR: &str = "42601";
/// SQLSTATE `42P01`: a table or view that does not exist.
pub const UNDEFINED_TABLE: &str = "42P01";
/// SQLSTATE `42703`: a column that does not exist.
pub const UNDEFINED_COLUMN: &str = "42703";
/// SQLSTATE `42883`: a function that does not exist.
pub const UNDEFINED_FUNCTION: &str = "42883";
/// SQLSTATE `42P07`: a name already taken.
pub const DUPLICATE_TABLE: &str = "42P07";
/// SQLSTATE `42000`: other planning errors (types, shapes).
pub const INVALID_STATEMENT: &str = "42000";
/// SQLSTATE `0A000`: valid SQL that Eddy does not support (here, or at all).
pub const NOT_SUPPORTED: &str = "0A000";
/// SQLSTATE `22023`: a connector option or setting with a value Eddy cannot use.
pub const INVALID_PARAMETER_VALUE: &str = "22023";
/// SQLSTATE `55000`: the statement conflicts with what runs now.
pub const NOT_IN_PREREQUISITE_STATE: &str = "55000";
/// SQLSTATE `XX000`: a failure inside Eddy (a failed pipeline, I/O, a bug).
pub const INTERNAL_ERROR: &str = "XX000";
/// SQLSTATE `54000` (`program_limit_exceeded`): an answer with more rows than the server returns.
pub const PROGRAM_LIMIT_EXCEEDED: &str = "54000";
/// The cluster's command log could not be reached (Postgres's `connection_failure`).
pub const CONNECTION_FAILURE: &str = "08006";

/// The `ErrorResponse` for `error`, raised by a statement in `sql` (the text the
/// client sent, whose line/column `error` points into).
pub fn error_response(error: &EddyError, sql: &str) -> PgWireError {
    error_response_bound(error, sql, sql)
}

/// [`error_response`] for an error of `ran`, the text the client `sent` with its
/// parameters bound: the position is kept only where both texts are the same up
/// to it, so a caret never lands on the wrong token of what the client sees.
pub fn error_response_bound(error: &EddyError, ran: &str, sent: &str) -> PgWireError {
    let mut info = ErrorInfo::new("ERROR".into(), sqlstate(error).into(), error.to_string());
    let location = match error {
        EddyError::Sql(e) => Some(e.location()),
        EddyError::Connector { location, .. } => Some(*location),
        _ => None,
    };
    let same_up_to = |p: usize| ran.chars().take(p).eq(sent.chars().take(p)) && sent.chars().count() >= p;
    info.position = location.and_then(|l| position(ran, l)).filter(|p| same_up_to(*p)).map(|p| p.to_string());
    PgWireError::UserError(Box::new(info))
}

/// The SQLSTATE of `error`. Planning errors carry no kind, so the kind is read
/// from the words DataFusion and Eddy's planner use for an unknown table,
/// column or function.
pub fn sqlstate(error: &EddyError) -> &'static str {
    match error {
        EddyError::Sql(SqlError::Syntax { .. }) => SYNTAX_ERROR,
        EddyError::Sql(SqlError::Plan { message, .. }) => {
            let message = message.to_lowercase();
            if message.contains("no field named") || message.contains("unknown column") || message.contains("column") && message.contains("not found") {
                UNDEFINED_COLUMN
            } else if message.contains("table") && (message.contains("not found") || message.contains("unknown") || message.contains("no table")) {
                UNDEFINED_TABLE
            } else if message.contains("function") && (message.contains("invalid function") || message.contains("unknown") || message.contains("not found")) {
                UNDEFINED_FUNCTION
            } else if message.contains("not supported") || message.contains("unsupported") {
                NOT_SUPPORTED
            } else {
                INVALID_STATEMENT
            }
        }
        EddyError::NotFound(_) => UNDEFINED_TABLE,
        EddyError::AlreadyExists(_) => DUPLICATE_TABLE,
        EddyError::Unsupported(_) => NOT_SUPPORTED,
        EddyError::Connector { .. } | EddyError::Setting { .. } => INVALID_PARAMETER_VALUE,
        EddyError::Conflict(_) | EddyError::ViewFailed { .. } | EddyError::DataDirInUse { .. } | EddyError::NothingValid { .. } => NOT_IN_PREREQUISITE_STATE,
        EddyError::ResultTooLarge { .. } => PROGRAM_LIMIT_EXCEEDED,
        EddyError::Cluster(_) => CONNECTION_FAILURE,
        EddyError::Pipeline { .. } | EddyError::Io { .. } | EddyError::StdoutClosed | EddyError::Internal(_) => INTERNAL_ERROR,
    }
}

/// The 1-based character offset of `location` (1-based line and column) in
/// `sql`, as Postgres's `P` field counts; `None` when it is not in the text.
pub fn position(sql: &str, location: Location) -> Option<usize> {
    if location.line == 0 || location.column == 0 {
        return None;
    }
    let mut offset = 0;
    for (index, line) in sql.split('\n').enumerate() {
        let chars = line.chars().count();
        if index as u64 + 1 == location.line {
            return (location.column as usize <= chars + 1).then_some(offset + location.column as usize);
        }
        // The line and its newline.
        offset += chars + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn position_counts_characters_across_lines() {
        let sql = "SELECT 1;\nSELEC é x";
        assert_eq!(position(sql, Location { line: 1, column: 1 }), Some(1));
        assert_eq!(position(sql, Location { line: 2, column: 1 }), Some(11));
        // `x` after a two-byte character: characters, not bytes.
        assert_eq!(position(sql, Location { line: 2, column: 9 }), Some(19));
        assert_eq!(position(sql, Location { line: 3, column: 1 }), None);
        assert_eq!(position(sql, Location { line: 0, column: 0 }), None);
    }

    #[test]
    fn a_position_past_a_bound_parameter_is_left_out() {
        let error = EddyError::Sql(SqlError::syntax(Location { line: 1, column: 20 }, "x"));
        let position = |e: PgWireError| match e {
            PgWireError::UserError(info) => info.position,
            _ => None,
        };
        assert_eq!(position(error_response_bound(&error, "SELECT * FROM v WHERE", "SELECT * FROM v WHERE")), Some("20".into()));
        assert_eq!(position(error_response_bound(&error, "SELECT 'abc' FROM v WHERE", "SELECT $1 FROM v WHERE")), None);
        let early = EddyError::Sql(SqlError::syntax(Location { line: 1, column: 3 }, "x"));
        assert_eq!(position(error_response_bound(&early, "SELECT 'abc' FROM v", "SELECT $1 FROM v")), Some("3".into()));
    }

    #[test]
    fn syntax_and_lookup_errors_get_their_sqlstate() {
        let at = Location { line: 1, column: 1 };
        assert_eq!(sqlstate(&EddyError::Sql(SqlError::syntax(at, "Expected: an expression"))), SYNTAX_ERROR);
        assert_eq!(sqlstate(&EddyError::Sql(SqlError::plan(at, "table 'nope' not found"))), UNDEFINED_TABLE);
        assert_eq!(sqlstate(&EddyError::Sql(SqlError::plan(at, "Schema error: No field named nope."))), UNDEFINED_COLUMN);
        assert_eq!(sqlstate(&EddyError::Unsupported("x".into())), NOT_SUPPORTED);
        assert_eq!(sqlstate(&EddyError::Internal("x".into())), INTERNAL_ERROR);
    }
}
