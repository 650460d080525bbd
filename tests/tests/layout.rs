//! The repository's structure rules, checked on every test run: no module imports from a module
//! that imports from it (`.ci/module_cycles.py`, which says how it decides), and the code and
//! docs cite docs/ rather than a design document outside the repository or an issue number.

use std::path::Path;
use std::process::Command;

use quiver_tests::workspace_root;

/// Runs the cycle checker on `dirs` (every workspace crate when empty): exit code and output.
fn module_cycles(dirs: &[&Path]) -> (Option<i32>, String) {
    let root = workspace_root();
    let out = Command::new("python3")
        .arg(root.join(".ci/module_cycles.py"))
        .args(dirs)
        .output()
        .expect("python3 runs .ci/module_cycles.py");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

#[test]
fn no_module_imports_from_a_module_that_imports_from_it() {
    let (code, text) = module_cycles(&[]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("module cycles: none"), "{text}");
}

#[test]
fn the_cycle_check_finds_a_cycle() {
    let fixture = workspace_root().join("tests/fixtures/module-cycle");
    let (code, text) = module_cycles(&[&fixture]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("cycle among a, b (a -> b; b -> a)"), "{text}");
    assert!(!text.contains("c ->"), "c only imports: {text}");
}

/// Every file git tracks whose name ends in one of `endings`.
fn tracked(endings: &[&str]) -> Vec<String> {
    let out = Command::new("git")
        .args(["ls-files"])
        .current_dir(workspace_root())
        .output()
        .expect("git ls-files");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|f| endings.iter().any(|e| f.ends_with(e)))
        .map(str::to_owned)
        .collect()
}

#[test]
fn code_and_docs_cite_docs_not_an_outside_design_document() {
    let files = tracked(&[".rs", ".md", ".toml", ".proto", ".py", ".sh"]);
    assert!(files.iter().any(|f| f == "README.md"), "{files:?}");
    // Spelled apart so this file does not cite it either.
    let outside = ["DESIGN", ".md"].concat();
    let citing: Vec<&String> = files
        .iter()
        .filter(|f| {
            std::fs::read_to_string(workspace_root().join(f))
                .is_ok_and(|text| text.contains(&outside))
        })
        .collect();
    assert!(citing.is_empty(), "{outside} is cited in {citing:?}");
}

#[test]
fn code_and_docs_say_what_a_thing_is_rather_than_cite_an_issue_number() {
    let files = tracked(&[".rs", ".md", ".toml", ".proto", ".py", ".sh"]);
    let mut found = Vec::new();
    for f in &files {
        let Ok(text) = std::fs::read_to_string(workspace_root().join(f)) else {
            continue;
        };
        for (n, line) in text.lines().enumerate() {
            let lower = line.to_lowercase();
            // The word, an optional hash and a number; or a hash and a number in brackets.
            let cites = lower.match_indices("issue").any(|(at, w)| {
                let rest = lower[at + w.len()..].trim_start_matches([' ', '#']);
                rest.starts_with(|c: char| c.is_ascii_digit())
            }) || lower
                .match_indices("(#")
                .any(|(at, _)| lower[at + 2..].starts_with(|c: char| c.is_ascii_digit()));
            if cites {
                found.push(format!("{f}:{}: {line}", n + 1));
            }
        }
    }
    assert!(
        found.is_empty(),
        "issue numbers cited:\n{}",
        found.join("\n")
    );
}
