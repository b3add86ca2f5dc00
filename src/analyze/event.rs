//! The event that started the job (`$GITHUB_EVENT_PATH`): a `repository_dispatch` from a W&B
//! automation, a manual `workflow_dispatch`, or a schedule.
//!
//! The payload is a hint, never trusted: W&B webhooks may carry no run variables at all, and
//! whatever they carry is validated and only used as data. Reconciling reads the truth from
//! W&B, so an empty or partly malformed payload loses nothing.

use std::sync::OnceLock;

use anyhow::{bail, Context};
use regex::Regex;
use serde_json::Value;

use crate::git::valid_branch;

/// The `repository_dispatch` event type the workflow listens for.
pub const EVENT_TYPE: &str = "wandb_run_finished";

/// What the event says, each field validated; `warnings` lists what was ignored and why.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Dispatch {
    pub run_id: Option<String>,
    pub branch: Option<String>,
    pub state: Option<String>,
    pub entity: Option<String>,
    pub project: Option<String>,
    pub warnings: Vec<String>,
}

/// Reads and parses the event file.
pub fn read_event(path: &std::path::Path) -> anyhow::Result<Dispatch> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the event file {}", path.display()))?;
    parse_event(&text).with_context(|| format!("in the event file {}", path.display()))
}

/// Parses an Actions event. Only a file that is not a JSON object is an error; bad fields
/// inside it are dropped with a warning.
pub fn parse_event(text: &str) -> anyhow::Result<Dispatch> {
    let event: Value = serde_json::from_str(text).context("the event is not valid JSON")?;
    let Value::Object(event) = event else {
        bail!("the event is not a JSON object");
    };
    let mut dispatch = Dispatch::default();
    if let Some(action) = event.get("action").and_then(Value::as_str) {
        if event.contains_key("client_payload") && action != EVENT_TYPE {
            dispatch.warnings.push(format!(
                "the dispatch's event type is {:?}, not {EVENT_TYPE:?}; reconciling anyway",
                truncate(action)
            ));
        }
    }
    // repository_dispatch carries `client_payload`; workflow_dispatch carries `inputs`.
    let payload = match (event.get("client_payload"), event.get("inputs")) {
        (Some(Value::Object(p)), _) => p.clone(),
        (Some(Value::Null) | None, Some(Value::Object(inputs))) => inputs.clone(),
        (Some(Value::Null) | None, _) => Default::default(),
        (Some(other), _) => {
            dispatch.warnings.push(format!(
                "client_payload is {}, not an object; ignoring it",
                kind(other)
            ));
            Default::default()
        }
    };
    let mut field = |names: &[&str], check: fn(&str) -> anyhow::Result<()>| -> Option<String> {
        let (name, value) = names
            .iter()
            .find_map(|n| payload.get(*n).map(|v| (*n, v)))?;
        match value {
            Value::String(s) if s.trim().is_empty() => None,
            // An unsubstituted W&B template variable, e.g. "${run_id}".
            Value::String(s) if s.starts_with("${") => None,
            Value::String(s) => match check(s.trim()) {
                Ok(()) => Some(s.trim().to_owned()),
                Err(why) => {
                    dispatch
                        .warnings
                        .push(format!("ignoring client_payload.{name}: {why}"));
                    None
                }
            },
            Value::Null => None,
            other => {
                dispatch.warnings.push(format!(
                    "ignoring client_payload.{name}: expected a string, got {}",
                    kind(other)
                ));
                None
            }
        }
    };
    let run_id = field(&["run_id", "run", "run_name"], check_run_id);
    let branch = field(&["branch"], |b| valid_branch(b).map(drop));
    let state = field(&["state", "run_state"], check_state);
    let entity = field(&["entity", "entity_name"], check_name);
    let project = field(&["project", "project_name"], check_name);
    dispatch.run_id = run_id;
    dispatch.branch = branch;
    dispatch.state = state;
    dispatch.entity = entity;
    dispatch.project = project;
    Ok(dispatch)
}

/// W&B run ids: letters, digits, `-` and `_`.
pub fn check_run_id(id: &str) -> anyhow::Result<()> {
    static ID: OnceLock<Regex> = OnceLock::new();
    let re = ID.get_or_init(|| Regex::new(r"^[A-Za-z0-9_-]{1,128}$").expect("valid"));
    if re.is_match(id) {
        Ok(())
    } else {
        bail!("{:?} is not a W&B run id", truncate(id))
    }
}

fn check_name(name: &str) -> anyhow::Result<()> {
    static NAME: OnceLock<Regex> = OnceLock::new();
    let re = NAME.get_or_init(|| Regex::new(r"^[A-Za-z0-9_.-]{1,128}$").expect("valid"));
    if re.is_match(name) {
        Ok(())
    } else {
        bail!("{:?} is not a W&B entity or project name", truncate(name))
    }
}

fn check_state(state: &str) -> anyhow::Result<()> {
    match state.to_ascii_lowercase().as_str() {
        "finished" | "failed" | "crashed" | "killed" | "preempted" | "running" => Ok(()),
        _ => bail!("{:?} is not a run state", truncate(state)),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn truncate(text: &str) -> String {
    text.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_payload_is_read() {
        let d = parse_event(
            r#"{"action": "wandb_run_finished", "client_payload": {"run_id": "ab12cd34",
            "branch": "feat/x", "state": "finished", "entity_name": "team", "project_name": "p"}}"#,
        )
        .unwrap();
        assert_eq!(d.run_id.as_deref(), Some("ab12cd34"));
        assert_eq!(d.branch.as_deref(), Some("feat/x"));
        assert_eq!(d.entity.as_deref(), Some("team"));
        assert_eq!(d.project.as_deref(), Some("p"));
        assert!(d.warnings.is_empty());
    }

    #[test]
    fn empty_and_template_payloads_mean_reconcile() {
        for text in [
            r#"{"action": "wandb_run_finished", "client_payload": {}}"#,
            r#"{"action": "wandb_run_finished", "client_payload": null}"#,
            r#"{"action": "wandb_run_finished", "client_payload": {"run_id": "${run_id}"}}"#,
            r#"{"schedule": "*/30 * * * *"}"#,
        ] {
            let d = parse_event(text).unwrap();
            assert_eq!(d, Dispatch::default(), "{text}");
        }
    }

    #[test]
    fn hostile_fields_are_dropped_with_a_warning() {
        let d = parse_event(
            r#"{"client_payload": {"run_id": "$(curl evil)", "branch": "x\"; curl evil #",
            "state": 3, "project": "../etc"}}"#,
        )
        .unwrap();
        assert_eq!(
            (d.run_id, d.branch, d.state, d.project),
            (None, None, None, None)
        );
        assert_eq!(d.warnings.len(), 4, "{:?}", d.warnings);
        assert!(d.warnings[1].contains("not a valid branch name"));
        let d = parse_event(r#"{"client_payload": "run=1"}"#).unwrap();
        assert_eq!(
            d.warnings,
            ["client_payload is a string, not an object; ignoring it"]
        );
    }

    #[test]
    fn workflow_dispatch_inputs_count_too() {
        let d = parse_event(r#"{"inputs": {"run_id": "zz99"}}"#).unwrap();
        assert_eq!(d.run_id.as_deref(), Some("zz99"));
    }

    #[test]
    fn a_file_that_is_not_a_json_object_is_an_error() {
        assert!(parse_event("{not json")
            .unwrap_err()
            .to_string()
            .contains("not valid JSON"));
        assert!(parse_event("[1]").is_err());
    }
}
