//! GitHub Actions workflow commands: the job summary (`$GITHUB_STEP_SUMMARY`), step outputs
//! (`$GITHUB_OUTPUT`) and `::warning::` (`::add-mask::` is `secrets::add_mask`). Outside Actions (no file configured)
//! summaries and outputs are simply not written.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::secrets::workflow_command_data;

/// Where the runner wants summaries and outputs; `None` outside Actions.
#[derive(Debug, Clone, Default)]
pub struct Actions {
    pub step_summary: Option<PathBuf>,
    pub output: Option<PathBuf>,
}

impl Actions {
    /// Appends markdown to the job summary.
    pub fn summary(&self, markdown: &str) -> anyhow::Result<()> {
        match &self.step_summary {
            Some(path) => append(path, &format!("{markdown}\n"))
                .with_context(|| format!("writing the job summary {}", path.display())),
            None => Ok(()),
        }
    }

    /// Sets step outputs; values may span lines (a delimiter no value contains is chosen).
    pub fn outputs(&self, outputs: &[(&str, String)]) -> anyhow::Result<()> {
        let Some(path) = &self.output else {
            return Ok(());
        };
        let mut text = String::new();
        for (name, value) in outputs {
            let mut delimiter = String::from("MLWF_EOF");
            while value.contains(&delimiter) {
                delimiter.push('_');
            }
            text.push_str(&format!("{name}<<{delimiter}\n{value}\n{delimiter}\n"));
        }
        append(path, &text).with_context(|| format!("writing step outputs {}", path.display()))
    }
}

fn append(path: &Path, text: &str) -> std::io::Result<()> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?
        .write_all(text.as_bytes())
}

/// A warning annotation on the workflow run.
pub fn warning(message: &str) {
    println!("::warning::{}", workflow_command_data(message));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_use_a_delimiter_the_value_lacks() {
        let dir = tempfile::tempdir().unwrap();
        let actions = Actions {
            step_summary: Some(dir.path().join("summary.md")),
            output: Some(dir.path().join("output")),
        };
        actions
            .outputs(&[("verdict", "better".into()), ("x", "a\nMLWF_EOF\nb".into())])
            .unwrap();
        actions.summary("# one").unwrap();
        actions.summary("# two").unwrap();
        let output = std::fs::read_to_string(dir.path().join("output")).unwrap();
        assert_eq!(
            output,
            "verdict<<MLWF_EOF\nbetter\nMLWF_EOF\nx<<MLWF_EOF_\na\nMLWF_EOF\nb\nMLWF_EOF_\n"
        );
        let summary = std::fs::read_to_string(dir.path().join("summary.md")).unwrap();
        assert_eq!(summary, "# one\n# two\n");
    }
}
