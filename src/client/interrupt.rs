//! Ctrl-C for the client, as psql treats it: it cancels the statement or the
//! loop (`\watch`, `\subscribe`) that runs, and never ends the session.
//!
//! One SIGINT listener lives as long as the client, so a Ctrl-C that comes
//! between two steps of a loop (after a `\watch` round, before its sleep) is
//! not lost. The line editor must leave SIGINT alone for this to work: it
//! reads Ctrl-C as a key while it has the terminal in raw mode, and the
//! signal belongs to this listener the rest of the time. rustyline installs a
//! SIGINT handler of its own when its editor is made, for the editor's whole
//! life (that is why Ctrl-C did nothing during a statement), so the editor is
//! made through [`keep_sigint`]. (Its `signal-hook` feature would leave SIGINT
//! alone, but then it waits on the terminal with `select` and misses input it
//! has already buffered: a line typed or pasted at once hangs after its first key.)

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

/// Runs `make` (which may install a SIGINT handler of its own, as rustyline's
/// editor does) and then puts back the SIGINT handler that was there before,
/// this listener's.
#[cfg(unix)]
pub fn keep_sigint<T>(make: impl FnOnce() -> T) -> T {
    // SAFETY: `sigaction` with a null new action only writes the current action
    // into `ours`, a zeroed (valid) `sigaction` that lives through the call.
    let mut ours: libc::sigaction = unsafe { std::mem::zeroed() };
    let saved = unsafe { libc::sigaction(libc::SIGINT, std::ptr::null(), &mut ours) } == 0;
    let made = make();
    if saved {
        // SAFETY: `ours` is the action the kernel gave back above (tokio's
        // handler, which stays installed for the process's life); setting it
        // again only reads it, and the old action is not asked for (null).
        unsafe { libc::sigaction(libc::SIGINT, &ours, std::ptr::null_mut()) };
    }
    made
}

/// Elsewhere there is no competing handler to undo.
#[cfg(not(unix))]
pub fn keep_sigint<T>(make: impl FnOnce() -> T) -> T {
    make()
}
