//! The floors of `docs/architecture.md`, checked: a module of `src/` may use modules on lower
//! floors only, never one on its own floor or above. Test code (`#[cfg(test)]` modules) and
//! comments are not imports and are skipped.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The crate's top-level modules by floor, lowest first.
const CRATE_FLOORS: &[&[&str]] = &[
    &["git", "secrets", "retry"],
    &["wandb", "server", "github"],
    &["experiment", "connect"],
    &[
        "train",
        "analyze",
        "launch",
        "agent",
        "datasets",
        "artifacts",
    ],
    &["lifecycle", "automation"],
    &["scaffold"],
    &["testkit"],
    &["bench"],
    &["cli"],
    &["commands"],
];

/// `src/train/`'s own modules by floor, lowest first.
const TRAIN_FLOORS: &[&[&str]] = &[
    &["rng"],
    &["backend"],
    &["optim", "cpu", "cuda"],
    &["model", "device"],
    &["config"],
    &["data"],
    &["tracking"],
    &["eval"],
    &["trainer"],
];

fn floor(floors: &[&[&str]], module: &str) -> Option<usize> {
    floors.iter().position(|names| names.contains(&module))
}

fn sources(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            sources(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

/// The code of a file without its comments and its test module.
fn product_code(text: &str) -> String {
    let end = ["#[cfg(test)]", "#[cfg(all(test"]
        .iter()
        .filter_map(|marker| text.find(marker))
        .min()
        .unwrap_or(text.len());
    text[..end]
        .lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The `prefix` modules named in `code` (`crate::train::cpu` gives `cpu` for `crate::train::`).
fn uses(code: &str, prefix: &str) -> BTreeSet<String> {
    code.match_indices(prefix)
        .map(|(at, _)| {
            code[at + prefix.len()..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect()
        })
        .collect()
}

/// Every upward or sideways use in `src/` under `floors`, as `file: module -> used`.
fn violations(floors: &[&[&str]], root: &str, prefix: &str) -> Vec<String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src.join(root), &mut files);
    let mut found = Vec::new();
    for file in files {
        let relative = file.strip_prefix(src.join(root)).expect("under root");
        let module = relative
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .map(|name| name.trim_end_matches(".rs").to_owned())
            .expect("a module");
        let Some(own) = floor(floors, &module) else {
            continue;
        };
        let code = product_code(&std::fs::read_to_string(&file).expect("read source"));
        let mut used_modules = uses(&code, prefix);
        // A file directly in `root` names its siblings through `super::`.
        if relative.components().count() == 1 {
            used_modules.extend(uses(&code, "super::"));
        }
        for used in used_modules {
            if used == module {
                continue;
            }
            if floor(floors, &used).is_some_and(|theirs| theirs >= own) {
                found.push(format!("{}: {module} -> {used}", file.display()));
            }
        }
    }
    found
}

#[test]
fn imports_only_point_down_between_the_crates_modules() {
    let found = violations(CRATE_FLOORS, "", "crate::");
    assert!(found.is_empty(), "upward imports:\n{}", found.join("\n"));
}

#[test]
fn imports_only_point_down_inside_the_trainer() {
    let found = violations(TRAIN_FLOORS, "train", "crate::train::");
    assert!(found.is_empty(), "upward imports:\n{}", found.join("\n"));
}

#[test]
fn the_floor_check_catches_an_upward_import() {
    let code = product_code("use crate::analyze::x;\n// use crate::cli::y;\nfn f() {}");
    assert_eq!(
        uses(&code, "crate::"),
        BTreeSet::from(["analyze".to_owned()])
    );
    assert!(floor(CRATE_FLOORS, "analyze") > floor(CRATE_FLOORS, "wandb"));
}
