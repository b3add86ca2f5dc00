//! W&B Tables logged to a run, in the official client's format.
//!
//! The table's rows go to a run file `media/table/<key>_<step>_<sha256[:20]>.table.json` holding
//! `{"columns": [...], "data": [[...], ...]}`; the history row holds a reference to it:
//! `{"_type": "table-file", "sha256", "size", "path", "ncols", "nrows", "log_mode"}`. The file is
//! compact UTF-8 JSON, byte for byte what the official client (0.31, through `pydantic_core`)
//! writes, so the same table gets the same digest and name from either client.

use anyhow::{ensure, Context};
use serde::Serialize;
use serde_json::{json, Value};

use super::super::data::sha256_hex;
use crate::wandb::Run;

/// The official client's `Table.log_mode` for tables logged once.
const LOG_MODE: &str = "IMMUTABLE";

/// Columns and rows of JSON values.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Table {
    columns: Vec<String>,
    data: Vec<Vec<Value>>,
}

impl Table {
    pub fn new(columns: &[&str]) -> Self {
        Self {
            columns: columns.iter().map(|c| c.to_string()).collect(),
            data: Vec::new(),
        }
    }

    pub fn push(&mut self, row: Vec<Value>) -> anyhow::Result<()> {
        ensure!(
            row.len() == self.columns.len(),
            "a table row has {} values for {} columns ({})",
            row.len(),
            self.columns.len(),
            self.columns.join(", ")
        );
        self.data.push(row);
        Ok(())
    }

    pub fn ncols(&self) -> usize {
        self.columns.len()
    }

    pub fn nrows(&self) -> usize {
        self.data.len()
    }

    /// The `.table.json` file's bytes.
    pub fn to_file_bytes(&self) -> Vec<u8> {
        // Plain strings and JSON values into memory: nothing here can fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Uploads the table as a run file for history `step` under `key` and returns the value to
    /// log under `key` at that step.
    pub async fn save(&self, run: &Run, key: &str, step: u64) -> anyhow::Result<Value> {
        let bytes = self.to_file_bytes();
        let sha256 = sha256_hex(&bytes);
        let path = format!(
            "media/table/{}_{step}_{}.table.json",
            upload_safe(key),
            &sha256[..20]
        );
        let size = bytes.len();
        run.save_bytes(&path, bytes)
            .await
            .with_context(|| format!("uploading table {key} (step {step}) as {path}"))?;
        Ok(json!({
            "_type": "table-file",
            "sha256": sha256,
            "size": size,
            "path": path,
            "ncols": self.ncols(),
            "nrows": self.nrows(),
            "log_mode": LOG_MODE,
        }))
    }
}

/// One evaluation prompt and what the model made of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prediction {
    pub prompt: String,
    pub prediction: String,
    pub target: String,
    pub correct: bool,
}

/// A table with columns `prompt`, `prediction`, `target`, `correct`.
pub fn predictions_table(predictions: &[Prediction]) -> Table {
    Table {
        columns: ["prompt", "prediction", "target", "correct"]
            .map(String::from)
            .to_vec(),
        data: predictions
            .iter()
            .map(|p| {
                vec![
                    json!(p.prompt),
                    json!(p.prediction),
                    json!(p.target),
                    json!(p.correct),
                ]
            })
            .collect(),
    }
}

/// A history key as a file path, as the official client makes it: no leading `/`, and no `.`
/// or `..` components.
fn upload_safe(key: &str) -> String {
    key.trim_start_matches('/')
        .split('/')
        .map(|part| match part {
            "." | ".." => "_",
            other => other,
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_written_as_the_official_client_writes_them() {
        let mut table = Table::new(&["prompt", "ok"]);
        table
            .push(vec![json!("a\"b\\c\n\t\u{1}é€😀\u{7f}"), json!(true)])
            .unwrap();
        table.push(vec![json!(""), json!(false)]).unwrap();
        let text = String::from_utf8(table.to_file_bytes()).unwrap();
        // What `pydantic_core.to_json` (the official client's JSON writer) gives for them.
        assert_eq!(
            text,
            "{\"columns\":[\"prompt\",\"ok\"],\"data\":[[\"a\\\"b\\\\c\\n\\t\\u0001é€😀\u{7f}\",true],[\"\",false]]}"
        );
        assert!(table.push(vec![json!(1)]).is_err());
        assert_eq!((table.ncols(), table.nrows()), (2, 2));
    }

    #[test]
    fn keys_become_safe_paths() {
        assert_eq!(upload_safe("val/predictions"), "val/predictions");
        assert_eq!(upload_safe("/a/../b/./c"), "a/_/b/_/c");
    }

    #[test]
    fn predictions_have_the_four_columns() {
        let table = predictions_table(&[Prediction {
            prompt: "1+2=".into(),
            prediction: "300".into(),
            target: "300".into(),
            correct: true,
        }]);
        assert_eq!(
            serde_json::to_value(&table).unwrap(),
            json!({"columns": ["prompt", "prediction", "target", "correct"],
                   "data": [["1+2=", "300", "300", true]]})
        );
    }
}
