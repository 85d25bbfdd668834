//! Ctrl-C for the client, as psql treats it: it cancels the statement or the
//! loop (`\watch`, `\subscribe`) that runs, and never ends the session.
//!
//! One SIGINT listener lives as long as the client, so a Ctrl-C that comes
//! between two steps of a loop (after a `\watch` round, before its sleep) is
//! not lost. The line editor must leave SIGINT alone for this to work: it
//! reads Ctrl-C as a key while it has the terminal in raw mode, and the
//! signal belongs to this listener the rest of the time (rustyline's
//! `signal-hook` feature, without which it takes SIGINT over for its whole life).

/// The client's SIGINT listener.
pub struct Interrupt {
    #[cfg(unix)]
    signal: Option<tokio::signal::unix::Signal>,
}

impl Interrupt {
    /// Starts listening; from now on SIGINT no longer ends the process.
    /// Needs a running tokio runtime.
    pub fn listen() -> Interrupt {
        #[cfg(unix)]
        {
            let signal = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()) {
                Ok(signal) => Some(signal),
                Err(e) => {
                    eprintln!("eddy sql: Ctrl-C will not cancel statements: {e}");
                    None
                }
            };
            Interrupt { signal }
        }
        #[cfg(not(unix))]
        Interrupt {}
    }

    /// Waits for the next Ctrl-C (forever when there is no listener).
    pub async fn recv(&mut self) {
        #[cfg(unix)]
        match &mut self.signal {
            Some(signal) => {
                if signal.recv().await.is_none() {
                    // The runtime's signal driver is gone: no Ctrl-C can come any more.
                    std::future::pending::<()>().await;
                }
            }
            None => std::future::pending::<()>().await,
        }
        #[cfg(not(unix))]
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Forgets a Ctrl-C that came before now (typed at the prompt, where it only
    /// cleared the line), so it does not cancel the statement about to run.
    pub fn forget(&mut self) {
        use futures::FutureExt;
        while self.recv().now_or_never().is_some() {}
    }
}
