//! One saga runner per store. Two processes executing sagas over one store would each
//! execute events over their own view and overwrite each other's transitions (the commit
//! check refuses such a transition, but two writers would keep refusing each other).
//! LMDB itself allows many processes on one store, and effect-mode workers rely on
//! that, so the rule is kept by a lock file of its own, taken by `runner run` when it
//! runs sagas.
//!
//! The lock is `flock`-style (`File::try_lock`): the kernel drops it when the process
//! ends, however it ends, so a crashed runner never leaves its successor locked out.
//!
//! The file names its holder for the refused one's error: pid, host name and start time.
//! In a container the pid alone says little (it is often 1 in every container sharing a
//! volume); the host name is the container's (its id, or the Swarm task's name).

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::Path;

use super::StoreError;

/// The lock file's name inside the store directory.
pub const LOCK_FILE: &str = "runner.lock";

/// Held while the process runs sagas on the store; released on drop or exit.
#[derive(Debug)]
pub struct WriterLock {
    _file: File,
}

impl WriterLock {
    /// Takes the store's lock (creating the store directory if needed), or fails at once
    /// naming the process that holds it.
    pub fn acquire(store_dir: &Path) -> Result<WriterLock, StoreError> {
        std::fs::create_dir_all(store_dir).map_err(|source| StoreError::CreateDir {
            path: store_dir.to_path_buf(),
            source,
        })?;
        let path = store_dir.join(LOCK_FILE);
        let io = |source: std::io::Error| StoreError::LockFile {
            path: path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                return Err(StoreError::InUse {
                    path: store_dir.to_path_buf(),
                    holder: holder.trim().chars().take(200).collect(),
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        // Who holds it, for the next one's error message.
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        writeln!(file, "{}", holder_line()).map_err(io)?;
        Ok(WriterLock { _file: file })
    }
}

/// `pid {pid} on {host}, since {rfc3339}`; the host is left out where none can be read.
fn holder_line() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().chars().take(64).collect::<String>())
        .filter(|h| !h.is_empty());
    let on = host.map(|h| format!(" on {h}")).unwrap_or_default();
    format!(
        "pid {}{on}, since {}",
        std::process::id(),
        crate::timefmt::now_rfc3339()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dev::TempDir;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid_and_host_until_it_lets_go() {
        let dir = TempDir::new("writer-lock").unwrap();
        let first = WriterLock::acquire(dir.path()).unwrap();
        match WriterLock::acquire(dir.path()) {
            Err(StoreError::InUse { path, holder }) => {
                assert_eq!(path, dir.path());
                let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
                let expected = format!("pid {} on {}, since ", std::process::id(), host.trim());
                assert!(holder.starts_with(&expected), "{holder:?}");
                // The start time is a readable timestamp.
                assert!(holder[expected.len()..].ends_with('Z'), "{holder:?}");
            }
            other => panic!("{other:?}"),
        }
        drop(first);
        assert!(WriterLock::acquire(dir.path()).is_ok());
    }
}
