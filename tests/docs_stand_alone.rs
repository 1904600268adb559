//! The repository stands alone: nothing cites a document outside it (the platform's
//! shared spec lives elsewhere; `docs/contracts.md` and `docs/program-language.md` are
//! the project's own reference of it), and every `docs/contracts.md §N` a file cites is
//! a section that exists.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const ROOTS: [&str; 10] = [
    "src",
    "stages",
    "tests",
    "benches",
    "docs",
    "manifests",
    "docker",
    "swarm",
    "README.md",
    "ARCHITECTURE.md",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn text_files(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_dir() {
        let mut entries: Vec<_> = std::fs::read_dir(path)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for entry in entries {
            text_files(&entry, out);
        }
    } else if ["rs", "md", "toml", "yml", "yaml", "json", "conf", "sh"]
        .iter()
        .any(|ext| path.extension().is_some_and(|e| e == *ext))
    {
        out.push(path.to_path_buf());
    }
}

fn files() -> Vec<(String, String)> {
    let mut paths = Vec::new();
    for r in ROOTS {
        text_files(&root().join(r), &mut paths);
    }
    paths
        .into_iter()
        .filter(|p| !p.ends_with("tests/docs_stand_alone.rs"))
        .filter_map(|p| {
            let text = std::fs::read_to_string(&p).ok()?;
            let name = p.strip_prefix(root()).unwrap().display().to_string();
            Some((name, text))
        })
        .collect()
}

#[test]
fn nothing_cites_a_document_outside_the_repository() {
    let mut outside = Vec::new();
    for (name, text) in files() {
        for (n, line) in text.lines().enumerate() {
            if ["CONTRACTS.md", "PROGRAMS.md", "shared/spec"]
                .iter()
                .any(|c| line.contains(c))
            {
                outside.push(format!("{name}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    assert!(
        outside.is_empty(),
        "cite docs/contracts.md or docs/program-language.md instead:\n{}",
        outside.join("\n")
    );
}

#[test]
fn every_contracts_section_cited_exists() {
    let contracts = std::fs::read_to_string(root().join("docs/contracts.md")).unwrap();
    let sections: BTreeSet<String> = contracts
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .filter_map(|l| l.split('.').next())
        .map(str::to_string)
        .collect();
    assert!(
        sections.contains("1") && sections.contains("6"),
        "{sections:?}"
    );
    let mut cited = 0;
    let mut missing = Vec::new();
    for (name, text) in files() {
        for piece in text.split("contracts.md §").skip(1) {
            let number: String = piece.chars().take_while(char::is_ascii_digit).collect();
            cited += 1;
            if !sections.contains(&number) {
                missing.push(format!("{name}: §{number}"));
            }
        }
    }
    assert!(
        cited > 20,
        "the code cites its contracts ({cited} citations)"
    );
    assert!(missing.is_empty(), "no such section: {missing:?}");
}
