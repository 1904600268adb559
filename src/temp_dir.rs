//! Throwaway directories: `runner test` and `runner shadow` run on a store of their own
//! in one, and tests and the dev rig use them too (`crate::dev` re-exports it).

use std::path::{Path, PathBuf};

/// A directory under the system temp dir, removed with everything in it on drop.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(label: &str) -> std::io::Result<TempDir> {
        let path = std::env::temp_dir().join(format!("runner-{label}-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&path)?;
        Ok(TempDir { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // Best effort: a leftover temp dir is not worth failing a run over.
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
