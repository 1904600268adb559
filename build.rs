//! Sets `RUNNER_GIT_SHA` for the crate (`runner --version`, `GET /info`): the value the
//! build environment gives (the container build passes it: there is no `.git` in its
//! context), else `git rev-parse --short HEAD` of this checkout, else "unknown". Never
//! fails: a build from a tarball without `.git`, or without git installed, still builds.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=RUNNER_GIT_SHA");
    println!("cargo:rerun-if-changed=build.rs");
    let root = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let given = std::env::var("RUNNER_GIT_SHA")
        .ok()
        .filter(|s| !s.is_empty() && s != "unknown");
    let sha = given
        .or_else(|| git(&root, &["rev-parse", "--short", "HEAD"]))
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=RUNNER_GIT_SHA={sha}");
    // Build again when HEAD moves: HEAD itself (a checkout), the branch it names (a
    // commit) and packed-refs. Only files that exist: cargo treats a missing one as
    // always changed, which would rebuild the crate on every build.
    let mut watched = vec!["HEAD".to_string(), "packed-refs".to_string()];
    if let Some(branch) = git(&root, &["symbolic-ref", "-q", "HEAD"]) {
        watched.push(branch);
    }
    for name in watched {
        if let Some(path) = git(&root, &["rev-parse", "--git-path", &name]) {
            let path = root.join(path);
            if path.is_file() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
}

/// One line of git's output, or `None` (no git, no repository, an error).
fn git(root: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(root)
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let line = text.trim();
    (out.status.success() && !line.is_empty()).then(|| line.to_string())
}
