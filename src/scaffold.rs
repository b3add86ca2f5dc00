//! `mlwf init`: scaffolds (or completes) an experiment repository from the templates in
//! `templates/`. A file mlwf manages is rewritten only while it is still what mlwf last wrote
//! (a hash per file in [`MANIFEST`]); a hand edit is never overwritten without `--force`, and the
//! refusal shows the diff. Nothing is written unless every file can be.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::lifecycle::notes;

/// What mlwf last wrote, per file: committed, so every clone knows.
pub const MANIFEST: &str = ".claude/mlwf-managed.json";
/// The slash commands, each a skill folder `.claude/skills/<name>/`.
pub const SKILLS: [&str; 14] = [
    "init-project",
    "setup-automation",
    "new-experiment",
    "pick-issue",
    "launch-job",
    "check-results",
    "fix-and-relaunch",
    "merge-winners",
    "run-baseline",
    "rollback-baseline",
    "manage-queue",
    "manage-runs",
    "manage-datasets",
    "manage-artifacts",
];
/// Lines `.gitignore` must have: the local store, and the secrets file.
const IGNORED: [&str; 2] = [".mlwf/", ".claude/settings.local.json"];

/// How a file is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Rewritten while unchanged since mlwf wrote it.
    Managed,
    /// Written once; the user's from then on (the training config, the baseline history).
    Seed,
}

/// A file of the scaffold and its text.
struct Planned {
    path: String,
    kind: Kind,
    text: String,
}

/// The project's name and description, filled into the templates.
#[derive(Debug, Clone)]
pub struct Project {
    pub name: String,
    pub description: String,
}

/// What `init` did (or would do) to each file.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Outcome {
    pub created: Vec<String>,
    pub updated: Vec<String>,
    pub unchanged: Vec<String>,
    /// Edited by hand and overwritten (`--force`).
    pub forced: Vec<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Manifest {
    /// What the project was initialised as, for runs that do not say it again.
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    description: Option<String>,
    /// Path → SHA-256 of the text mlwf wrote, its baseline table left out.
    files: BTreeMap<String, String>,
}

/// The name and description a previous `mlwf init` of `dir` recorded, if any.
pub fn recorded(dir: &Path) -> (Option<String>, Option<String>) {
    let manifest: Manifest = std::fs::read_to_string(dir.join(MANIFEST))
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_default();
    (manifest.name, manifest.description)
}

fn templates() -> Vec<(String, Kind, &'static str)> {
    let files = [
        (
            "mlwf.toml",
            Kind::Seed,
            include_str!("../templates/mlwf.toml"),
        ),
        (
            "CLAUDE.md",
            Kind::Managed,
            include_str!("../templates/CLAUDE.md"),
        ),
        (
            ".claude/settings.json",
            Kind::Seed,
            include_str!("../templates/settings.json"),
        ),
        (
            ".claude/rules/tracking.md",
            Kind::Managed,
            include_str!("../templates/rules/tracking.md"),
        ),
        (
            ".claude/rules/git.md",
            Kind::Managed,
            include_str!("../templates/rules/git.md"),
        ),
        (
            ".claude/rules/launch.md",
            Kind::Managed,
            include_str!("../templates/rules/launch.md"),
        ),
        (
            ".claude/rules/environment.md",
            Kind::Managed,
            include_str!("../templates/rules/environment.md"),
        ),
        (
            ".claude/agents/experiment-runner.md",
            Kind::Managed,
            include_str!("../templates/agents/experiment-runner.md"),
        ),
        (
            ".github/workflows/wandb-run-finished.yml",
            Kind::Managed,
            include_str!("../templates/wandb-run-finished.yml"),
        ),
        (
            ".github/wandb-webhook-payload.json",
            Kind::Managed,
            include_str!("../templates/wandb-webhook-payload.json"),
        ),
    ];
    let skills = SKILLS.iter().zip(skill_texts()).map(|(name, text)| {
        (
            format!(".claude/skills/{name}/SKILL.md"),
            Kind::Managed,
            text,
        )
    });
    files
        .into_iter()
        .map(|(path, kind, text)| (path.to_owned(), kind, text))
        .chain(skills)
        .collect()
}

/// The skills' texts, in the order of [`SKILLS`].
pub fn skill_texts() -> [&'static str; 14] {
    [
        include_str!("../templates/skills/init-project/SKILL.md"),
        include_str!("../templates/skills/setup-automation/SKILL.md"),
        include_str!("../templates/skills/new-experiment/SKILL.md"),
        include_str!("../templates/skills/pick-issue/SKILL.md"),
        include_str!("../templates/skills/launch-job/SKILL.md"),
        include_str!("../templates/skills/check-results/SKILL.md"),
        include_str!("../templates/skills/fix-and-relaunch/SKILL.md"),
        include_str!("../templates/skills/merge-winners/SKILL.md"),
        include_str!("../templates/skills/run-baseline/SKILL.md"),
        include_str!("../templates/skills/rollback-baseline/SKILL.md"),
        include_str!("../templates/skills/manage-queue/SKILL.md"),
        include_str!("../templates/skills/manage-runs/SKILL.md"),
        include_str!("../templates/skills/manage-datasets/SKILL.md"),
        include_str!("../templates/skills/manage-artifacts/SKILL.md"),
    ]
}

fn render(template: &str, project: &Project) -> String {
    template
        .replace("{{name}}", &project.name)
        .replace("{{description}}", &project.description)
}

fn plan(project: &Project) -> Vec<Planned> {
    let mut planned: Vec<Planned> = templates()
        .into_iter()
        .map(|(path, kind, text)| Planned {
            path,
            kind,
            text: render(text, project),
        })
        .collect();
    planned.push(Planned {
        path: notes::BASELINES_DOC.to_owned(),
        kind: Kind::Seed,
        text: notes::baselines_doc(),
    });
    planned
}

/// The SHA-256 of `text` without its baseline table, which `merge-winners` keeps: the table's
/// rows are never a hand edit.
fn digest(text: &str) -> String {
    let without = match table(text) {
        Some((start, end)) => format!("{}{}", &text[..start], &text[end..]),
        None => text.to_owned(),
    };
    hex::encode(Sha256::digest(without.as_bytes()))
}

/// Where the baseline table (markers included) is in `text`.
fn table(text: &str) -> Option<(usize, usize)> {
    let start = text.find(notes::TABLE_START)?;
    let end = start + text[start..].find(notes::TABLE_END)? + notes::TABLE_END.len();
    Some((start, end))
}

/// `want` with the current baseline table of `current`.
fn keep_table(want: &str, current: &str) -> String {
    let region = table;
    match (region(want), region(current)) {
        (Some((ws, we)), Some((cs, ce))) => {
            format!("{}{}{}", &want[..ws], &current[cs..ce], &want[we..])
        }
        _ => want.to_owned(),
    }
}

/// Scaffolds `dir` for `project`. With `dry_run` nothing is written.
pub fn init(dir: &Path, project: &Project, force: bool, dry_run: bool) -> anyhow::Result<Outcome> {
    let manifest_path = dir.join(MANIFEST);
    let mut manifest: Manifest = match std::fs::read_to_string(&manifest_path) {
        Ok(text) => serde_json::from_str(&text)
            .with_context(|| format!("{} is not mlwf's manifest", manifest_path.display()))?,
        Err(_) => Manifest::default(),
    };
    manifest.name = Some(project.name.clone());
    manifest.description = Some(project.description.clone());
    let mut outcome = Outcome::default();
    let mut writes: Vec<(PathBuf, String)> = Vec::new();
    let mut refusals: Vec<String> = Vec::new();
    for file in plan(project) {
        let path = dir.join(&file.path);
        let current = std::fs::read_to_string(&path).ok();
        let name = file.path;
        let Some(current) = current else {
            manifest.files.insert(name.clone(), digest(&file.text));
            writes.push((path, file.text));
            outcome.created.push(name);
            continue;
        };
        if file.kind == Kind::Seed {
            outcome.unchanged.push(name);
            continue;
        }
        let want = keep_table(&file.text, &current);
        if current == want {
            manifest.files.insert(name.clone(), digest(&want));
            outcome.unchanged.push(name);
            continue;
        }
        let ours = manifest.files.get(&name) == Some(&digest(&current));
        if ours || force {
            manifest.files.insert(name.clone(), digest(&want));
            writes.push((path, want));
            if ours {
                outcome.updated.push(name);
            } else {
                outcome.forced.push(name);
            }
        } else {
            refusals.push(format!(
                "{name} was edited by hand:\n{}",
                diff(&current, &want)
            ));
        }
    }
    if !refusals.is_empty() {
        bail!(
            "mlwf init would overwrite hand edits; nothing was written. Keep them, or run again \
             with --force to take mlwf's version (shown with +):\n\n{}",
            refusals.join("\n")
        );
    }
    let gitignore = dir.join(".gitignore");
    let ignored = std::fs::read_to_string(&gitignore).unwrap_or_default();
    let missing: Vec<&str> = IGNORED
        .iter()
        .copied()
        .filter(|line| !ignored.lines().any(|l| l.trim() == *line))
        .collect();
    if !missing.is_empty() {
        let mut text = ignored.clone();
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        for line in &missing {
            text += &format!("{line}\n");
        }
        writes.push((gitignore, text));
        let list = if ignored.is_empty() {
            &mut outcome.created
        } else {
            &mut outcome.updated
        };
        list.push(".gitignore".to_owned());
    } else {
        outcome.unchanged.push(".gitignore".to_owned());
    }
    if dry_run {
        return Ok(outcome);
    }
    let changed = !writes.is_empty() || !dir.join(MANIFEST).exists();
    for (path, text) in writes {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    if changed {
        let text = serde_json::to_string_pretty(&manifest)? + "\n";
        std::fs::write(&manifest_path, text)
            .with_context(|| format!("writing {}", manifest_path.display()))?;
    }
    Ok(outcome)
}

/// A line diff of `old` → `new` (`-` removed, `+` added), only the changed lines with one line
/// of context.
fn diff(old: &str, new: &str) -> String {
    let (a, b): (Vec<&str>, Vec<&str>) = (old.lines().collect(), new.lines().collect());
    // Longest common subsequence by dynamic programming: files here are short.
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut lines: Vec<(char, &str)> = Vec::new();
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            lines.push((' ', a[i]));
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            // Removals first, as `diff -u` shows them.
            lines.push(('-', a[i]));
            i += 1;
        } else {
            lines.push(('+', b[j]));
            j += 1;
        }
    }
    let near = |k: usize| {
        lines[k.saturating_sub(1)..(k + 2).min(lines.len())]
            .iter()
            .any(|(mark, _)| *mark != ' ')
    };
    lines
        .iter()
        .enumerate()
        .filter(|(k, _)| near(*k))
        .map(|(_, (mark, line))| format!("{mark} {line}\n"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_diff_marks_changed_lines_with_context() {
        let shown = diff("a\nb\nc\nd\ne\n", "a\nb\nC\nd\ne\n");
        assert_eq!(shown, "  b\n- c\n+ C\n  d\n");
    }

    #[test]
    fn the_baseline_table_is_the_repositorys_not_the_templates() {
        let want = format!("x\n{}\nnew\n{}\ny\n", notes::TABLE_START, notes::TABLE_END);
        let current = format!(
            "x\n{}\n| row |\n{}\nold y\n",
            notes::TABLE_START,
            notes::TABLE_END
        );
        assert_eq!(
            keep_table(&want, &current),
            format!(
                "x\n{}\n| row |\n{}\ny\n",
                notes::TABLE_START,
                notes::TABLE_END
            )
        );
    }

    #[test]
    fn the_training_config_template_is_valid() {
        let dir = tempfile::tempdir().unwrap();
        let project = Project {
            name: "demo".into(),
            description: "d".into(),
        };
        let path = dir.path().join("mlwf.toml");
        std::fs::write(
            &path,
            render(include_str!("../templates/mlwf.toml"), &project),
        )
        .unwrap();
        crate::train::config::TrainConfig::load(None, Some(&path), &[], |_| None).unwrap();
    }
}
