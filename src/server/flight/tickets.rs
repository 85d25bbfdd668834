//! The rows `GetFlightInfo` started, kept under a ticket until `DoGet` reads them.
//!
//! Each ticket is read once. The map is small and its entries expire: a client
//! that asks for a result and never reads it holds a paused statement, so the
//! oldest entries are dropped (stopping their statements) past
//! [`TICKETS_KEPT_MAX`] or after [`TICKET_TTL`].

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::statements::Rows;

/// How many unread results are kept at once.
pub const TICKETS_KEPT_MAX: usize = 64;

/// How long an unread result is kept: clients read theirs right after asking.
pub const TICKET_TTL: Duration = Duration::from_secs(300);

/// Unread results by ticket.
#[derive(Default)]
pub struct Tickets {
    kept: Mutex<Kept>,
}

#[derive(Default)]
struct Kept {
    next: u64,
    /// Oldest first.
    entries: VecDeque<(String, Instant, Rows)>,
}

impl Tickets {
    /// Keeps `rows` and answers the ticket that reads them.
    pub fn keep(&self, rows: Rows) -> String {
        let mut kept = self.kept.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        while kept.entries.front().is_some_and(|(_, at, _)| now.duration_since(*at) > TICKET_TTL) || kept.entries.len() >= TICKETS_KEPT_MAX {
            kept.entries.pop_front();
        }
        kept.next += 1;
        let ticket = format!("r{}", kept.next);
        kept.entries.push_back((ticket.clone(), now, rows));
        ticket
    }

    /// The rows under `ticket`, which is then spent; `None` for an unknown,
    /// spent or expired ticket.
    pub fn take(&self, ticket: &str) -> Option<Rows> {
        let mut kept = self.kept.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let index = kept.entries.iter().position(|(t, at, _)| t == ticket && at.elapsed() <= TICKET_TTL)?;
        kept.entries.remove(index).map(|(_, _, rows)| rows)
    }
}
