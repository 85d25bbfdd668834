//! One data directory, one server: an OS file lock on `DATA_DIR/LOCK`.
//!
//! Two servers on one directory would restore the same pipelines into the same
//! checkpoint folders and overwrite each other's catalog (an acknowledged view
//! lost after a restart). The lock is `flock(2)` on a file in the directory, so
//! the kernel releases it when the holder exits in any way, `kill -9` included:
//! there is never a stale lock to remove by hand. The holder's PID is written in
//! the file so the refusal can name the process.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use crate::error::EddyError;

/// The lock file's name inside the data directory.
pub const LOCK_FILE: &str = "LOCK";

/// Holds the data directory's lock until dropped (or the process ends).
#[derive(Debug)]
pub struct DataDirLock {
    /// Kept open: closing the file would release the lock.
    _file: File,
    pub path: PathBuf,
}

/// Whether `flock` got the lock.
enum Acquired {
    Yes,
    HeldByAnother,
}

impl DataDirLock {
    /// Takes the lock on `data_dir` (which must exist) or says which process holds it.
    pub fn acquire(data_dir: &Path) -> Result<DataDirLock, EddyError> {
        let path = data_dir.join(LOCK_FILE);
        let io_error = |context: String| move |source| EddyError::Io { context, source };
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_error(format!("cannot open the lock file {}", path.display())))?;
        match try_lock(&file).map_err(io_error(format!("cannot lock {}", path.display())))? {
            Acquired::Yes => {}
            Acquired::HeldByAnother => {
                let mut holder = String::new();
                // The holder may be writing its PID right now; an empty read is still an answer.
                let _ = file.read_to_string(&mut holder);
                let holder = match holder.trim() {
                    "" => "another process".to_string(),
                    pid => format!("another eddy server (pid {pid})"),
                };
                return Err(EddyError::DataDirInUse { dir: data_dir.display().to_string(), holder });
            }
        }
        // Ours now: record who holds it.
        let written = file.set_len(0).and_then(|()| file.rewind()).and_then(|()| writeln!(file, "{}", std::process::id())).and_then(|()| file.sync_data());
        written.map_err(io_error(format!("cannot write {}", path.display())))?;
        Ok(DataDirLock { _file: file, path })
    }
}

fn try_lock(file: &File) -> std::io::Result<Acquired> {
    loop {
        // SAFETY: flock only reads the descriptor, which `file` keeps open for the call.
        let result = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if result == 0 {
            return Ok(Acquired::Yes);
        }
        let error = std::io::Error::last_os_error();
        match error.raw_os_error() {
            Some(libc::EWOULDBLOCK) => return Ok(Acquired::HeldByAnother),
            Some(libc::EINTR) => continue,
            _ => return Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_directory_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataDirLock::acquire(dir.path()).unwrap();
        // flock locks belong to the open file, so a second open in this process conflicts too.
        let refused = DataDirLock::acquire(dir.path()).unwrap_err().to_string();
        assert!(refused.contains(&dir.path().display().to_string()), "{refused}");
        assert!(refused.contains(&format!("pid {}", std::process::id())), "{refused}");
        drop(first);
        DataDirLock::acquire(dir.path()).unwrap();
    }
}
