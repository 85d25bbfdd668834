//! Where results go, as psql sends them: to standard output, through a pager
//! when they are taller (or wider) than the terminal (`\pset pager`), or to a
//! file chosen with `\o FILE`.
//!
//! The pager is `$PAGER`, else `less -SFX` (chop long lines instead of
//! wrapping them, quit at once when the text fits, leave it on the screen),
//! and is used only when standard output is a terminal whose size is known.

use std::fs::File;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// Whether results taller than the terminal go through a pager (`\pset pager`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pager {
    On,
    Off,
}

/// The pager psql users expect when `$PAGER` is unset.
const DEFAULT_PAGER: &str = "less -SFX";

/// Where results are written.
pub struct Output {
    /// `\o FILE`: results go there (and its path, for `\conninfo`-like messages).
    file: Option<(PathBuf, File)>,
    pub pager: Pager,
}

impl Default for Output {
    fn default() -> Output {
        Output::new()
    }
}

impl Output {
    /// Standard output, paged when it is a terminal (psql's default).
    pub fn new() -> Output {
        let pager = if std::io::stdout().is_terminal() { Pager::On } else { Pager::Off };
        Output { file: None, pager }
    }

    /// `\o FILE` sends results to `FILE` (created or truncated); `\o` alone back to standard output.
    pub fn redirect(&mut self, path: Option<&str>) -> Result<(), String> {
        self.file = match path {
            None => None,
            Some(path) => {
                let file = File::create(path).map_err(|e| format!("cannot write to {path}: {e}"))?;
                Some((PathBuf::from(path), file))
            }
        };
        Ok(())
    }

    /// Writes one result's text: to the `\o` file, or to standard output through
    /// the pager when it does not fit on the screen.
    pub fn write(&mut self, text: &str) {
        if let Some((path, file)) = &mut self.file {
            if let Err(e) = file.write_all(text.as_bytes()).and_then(|()| file.flush()) {
                eprintln!("eddy sql: cannot write to {}: {e}", path.display());
            }
            return;
        }
        if self.pager == Pager::On && !fits_on_screen(text) && page(text).is_ok() {
            return;
        }
        let mut stdout = std::io::stdout().lock();
        // A closed pipe (`eddy sql | head`) is not an error worth a message.
        let _ = stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush());
    }
}

/// Whether `text` fits in the terminal standard output is, or there is no such terminal to fit.
fn fits_on_screen(text: &str) -> bool {
    let Some((rows, columns)) = terminal_size() else { return true };
    let lines = text.lines().count();
    let widest = text.lines().map(|l| l.chars().count()).max().unwrap_or(0);
    // One row stays free for the prompt that follows.
    lines < rows && widest <= columns
}

/// Shows `text` in the pager and waits until the user leaves it.
fn page(text: &str) -> std::io::Result<()> {
    let pager = std::env::var("PAGER").ok().filter(|p| !p.trim().is_empty()).unwrap_or_else(|| DEFAULT_PAGER.to_string());
    let mut child = Command::new("sh").arg("-c").arg(&pager).stdin(Stdio::piped()).spawn()?;
    if let Some(mut input) = child.stdin.take() {
        // The user may quit the pager before reading everything: a broken pipe then is normal.
        let _ = input.write_all(text.as_bytes());
    }
    child.wait()?;
    Ok(())
}

/// Rows and columns of the terminal standard output is, when it is one.
fn terminal_size() -> Option<(usize, usize)> {
    if !std::io::stdout().is_terminal() {
        return None;
    }
    let mut size = libc::winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCGWINSZ writes one `winsize` into the struct we pass, which
    // lives through the call; it reads nothing else.
    let result = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) };
    (result == 0 && size.ws_row > 0 && size.ws_col > 0).then_some((usize::from(size.ws_row), usize::from(size.ws_col)))
}
