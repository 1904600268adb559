//! Which files are test files: a file named on the command line is one; under a
//! directory, every `.yaml`, `.yml` or `.json` file inside a directory named `tests`
//! (at any depth, the searched directory itself included). Manifests and programs live
//! beside those directories, so they are never mistaken for tests.

use std::path::{Path, PathBuf};

use super::SagaTestError;

/// Directories deeper than this are not searched: a symlink loop must end somewhere.
const MAX_DEPTH: usize = 32;

/// Test files under `root` (or `root` itself when it is a file), sorted so runs print
/// in a stable order. Finding none is an error: a suite that silently tests nothing
/// would pass in CI.
pub fn test_files(root: &Path) -> Result<Vec<PathBuf>, SagaTestError> {
    let problem = |problem: DiscoverProblem| SagaTestError::Discover {
        path: root.to_path_buf(),
        problem,
    };
    let meta = std::fs::metadata(root).map_err(|e| problem(DiscoverProblem::Read(e)))?;
    if meta.is_file() {
        return Ok(vec![root.to_path_buf()]);
    }
    let in_tests = root.file_name().is_some_and(|n| n == "tests");
    let mut found = Vec::new();
    walk(root, in_tests, 0, &mut found).map_err(problem)?;
    if found.is_empty() {
        return Err(problem(DiscoverProblem::NoneFound));
    }
    found.sort();
    Ok(found)
}

/// Why the path to search gave no test files.
#[derive(Debug, thiserror::Error)]
pub enum DiscoverProblem {
    #[error("cannot read: {0}")]
    Read(#[source] std::io::Error),
    #[error("{}: nested more than {MAX_DEPTH} directories deep (a symlink loop?)", .0.display())]
    TooDeep(PathBuf),
    #[error("{}: cannot list: {source}", dir.display())]
    List {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no test files found (.yaml, .yml or .json files in a `tests` directory)")]
    NoneFound,
}

fn walk(
    dir: &Path,
    in_tests: bool,
    depth: usize,
    found: &mut Vec<PathBuf>,
) -> Result<(), DiscoverProblem> {
    if depth > MAX_DEPTH {
        return Err(DiscoverProblem::TooDeep(dir.to_path_buf()));
    }
    let list = |source| DiscoverProblem::List {
        dir: dir.to_path_buf(),
        source,
    };
    let entries = std::fs::read_dir(dir).map_err(list)?;
    for entry in entries {
        let entry = entry.map_err(list)?;
        let path = entry.path();
        let name = entry.file_name();
        // Hidden entries (editor swap files, .git) are never tests.
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        // Follows symlinks, so a linked test directory counts like a real one.
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            walk(&path, in_tests || name == "tests", depth + 1, found)?;
        } else if in_tests && is_document(&path) {
            found.push(path);
        }
    }
    Ok(())
}

fn is_document(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dev::TempDir;

    fn touch(root: &Path, rel: &str) {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, "cases: []").unwrap();
    }

    #[test]
    fn only_documents_inside_tests_directories_count() {
        let dir = TempDir::new("sagatest-discover").unwrap();
        let root = dir.path();
        touch(root, "sagas.yaml");
        touch(root, "programs/p.yaml");
        touch(root, "a/tests/one.yaml");
        touch(root, "a/tests/deeper/two.json");
        touch(root, "a/tests/notes.txt");
        touch(root, "a/tests/.swap.yaml");
        touch(root, "b/tests/three.yml");
        let found: Vec<PathBuf> = test_files(root)
            .unwrap()
            .into_iter()
            .map(|p| p.strip_prefix(root).unwrap().to_path_buf())
            .collect();
        assert_eq!(
            found,
            vec![
                PathBuf::from("a/tests/deeper/two.json"),
                PathBuf::from("a/tests/one.yaml"),
                PathBuf::from("b/tests/three.yml"),
            ]
        );
        // Searching a tests directory itself finds its files too.
        assert_eq!(test_files(&root.join("b/tests")).unwrap().len(), 1);
        // A file is taken as named, wherever it is.
        let file = root.join("sagas.yaml");
        assert_eq!(test_files(&file).unwrap(), vec![file]);
    }

    #[test]
    fn nothing_found_or_a_missing_path_is_an_error() {
        let dir = TempDir::new("sagatest-discover-none").unwrap();
        touch(dir.path(), "sagas.yaml");
        let e = test_files(dir.path()).unwrap_err().to_string();
        assert!(e.contains("no test files found"), "{e}");
        let e = test_files(&dir.path().join("missing"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot read"), "{e}");
    }
}
