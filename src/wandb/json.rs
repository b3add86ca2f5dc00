//! JSON shapes of the W&B API: the `{"key": {"value": v}}` run config, and `JSONString` fields
//! that servers return either as a string or already decoded.

use serde_json::{Map, Value};

/// One row of metrics (a history line, a summary update, a config): key → JSON value.
pub type Row = Map<String, Value>;

/// Config keys the SDK keeps for itself; they are not user config.
const RESERVED_CONFIG_KEYS: [&str; 2] = ["_wandb", "wandb_version"];

/// The config as upsertBucket expects it: a JSON string of `{key: {"value": v}}`.
pub(crate) fn wrap_config(config: &Row) -> String {
    let wrapped: Row = config
        .iter()
        .map(|(key, value)| {
            let mut entry = Map::with_capacity(1);
            entry.insert("value".to_owned(), value.clone());
            (key.clone(), Value::Object(entry))
        })
        .collect();
    Value::Object(wrapped).to_string()
}

/// The user config from a run's `config` field: each `{"value": v}` unwrapped (older clients
/// also wrote `"desc"`, which is dropped), SDK-internal keys removed. Entries not in the wrapped
/// form are kept as they are.
pub(crate) fn unwrap_config(raw: Value) -> Row {
    json_object(raw)
        .into_iter()
        .filter(|(key, _)| !RESERVED_CONFIG_KEYS.contains(&key.as_str()))
        .map(|(key, value)| match value {
            Value::Object(mut entry) if entry.contains_key("value") => {
                (key, entry.remove("value").unwrap_or(Value::Null))
            }
            other => (key, other),
        })
        .collect()
}

/// Decodes a `JSONString` field. Servers differ: some return the string, some the decoded
/// value. A string that is not JSON stays a string.
pub(crate) fn json_value(raw: Value) -> Value {
    match raw {
        Value::String(text) => serde_json::from_str(&text).unwrap_or(Value::String(text)),
        other => other,
    }
}

/// A `JSONString` field that should hold an object; anything else gives an empty object.
pub(crate) fn json_object(raw: Value) -> Row {
    match json_value(raw) {
        Value::Object(map) => map,
        _ => Row::new(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn row(value: Value) -> Row {
        value.as_object().cloned().unwrap()
    }

    #[test]
    fn config_is_wrapped_per_key_as_a_json_string() {
        let config = row(json!({"lr": 0.001, "branch": "feat-x", "nested": {"a": 1}}));
        let wrapped: Value = serde_json::from_str(&wrap_config(&config)).unwrap();
        assert_eq!(
            wrapped,
            json!({"lr": {"value": 0.001}, "branch": {"value": "feat-x"}, "nested": {"value": {"a": 1}}})
        );
    }

    #[test]
    fn config_unwraps_from_string_or_object_and_drops_sdk_keys() {
        let raw = json!(
            "{\"lr\": {\"value\": 0.001, \"desc\": null}, \"branch\": {\"value\": \"feat-x\"}, \
             \"_wandb\": {\"value\": {\"t\": 1}}, \"wandb_version\": 1, \"odd\": 5, \
             \"nested\": {\"value\": {\"value\": 2}}}"
        );
        let expected =
            row(json!({"lr": 0.001, "branch": "feat-x", "odd": 5, "nested": {"value": 2}}));
        assert_eq!(unwrap_config(raw.clone()), expected);
        assert_eq!(unwrap_config(json_value(raw)), expected);
        assert_eq!(unwrap_config(Value::Null), Row::new());
        assert_eq!(unwrap_config(json!("not json")), Row::new());
    }

    #[test]
    fn wrap_then_unwrap_round_trips() {
        let config = row(json!({"a": [1, 2], "b": null, "c": {"value": 3}}));
        assert_eq!(unwrap_config(Value::String(wrap_config(&config))), config);
    }

    #[test]
    fn json_strings_decode_leniently() {
        assert_eq!(json_value(json!("{\"a\":1}")), json!({"a": 1}));
        assert_eq!(json_value(json!({"a": 1})), json!({"a": 1}));
        assert_eq!(json_value(json!("plain")), json!("plain"));
        assert_eq!(json_object(json!("[1]")), Row::new());
    }
}
