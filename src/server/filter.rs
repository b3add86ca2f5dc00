//! MongoDB-style run filters and orderings, as `Api.runs(filters=..., order=...)` sends them.
//!
//! Filters are parsed once (so a bad filter is an error, not an empty result) and evaluated in
//! Rust over a project's runs: JSON values of config and summary compare with Mongo semantics
//! (numbers numerically, arrays match when an element does), which SQL would not give us.

use std::cmp::Ordering;
use std::time::Duration;

use regex::Regex;
use serde_json::{Map, Value};

use super::store::parse_time;
use super::store::runs::RunRow;

#[derive(Debug, thiserror::Error)]
#[error("invalid run filter: {0}")]
pub struct FilterError(String);

fn err<T>(msg: impl Into<String>) -> Result<T, FilterError> {
    Err(FilterError(msg.into()))
}

#[derive(Debug)]
pub enum Filter {
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Nor(Vec<Filter>),
    Field(Field, Vec<Cond>),
}

#[derive(Debug)]
pub enum Cond {
    Eq(Value),
    Ne(Value),
    Cmp(Ordering, bool, Value),
    In(Vec<Value>),
    Nin(Vec<Value>),
    Exists(bool),
    Regex(Regex),
}

/// A run attribute that filters and orderings can address.
#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    State,
    Tags,
    Name,
    DisplayName,
    Group,
    JobType,
    Host,
    Notes,
    Commit,
    Sweep,
    CreatedAt,
    HeartbeatAt,
    /// Seconds between creation and the last heartbeat.
    Duration,
    /// Path below the key's `value` (the optional `.value` after the key is dropped).
    Config(Vec<String>),
    Summary(Vec<String>),
}

impl Field {
    pub fn parse(path: &str) -> Result<Field, FilterError> {
        let sub = |rest: &str| -> Vec<String> { rest.split('.').map(str::to_owned).collect() };
        if let Some(rest) = path.strip_prefix("config.") {
            let mut parts = sub(rest);
            if parts.len() > 1 && parts[1] == "value" {
                parts.remove(1);
            }
            return Ok(Field::Config(parts));
        }
        for prefix in ["summary_metrics.", "summaryMetrics.", "summary."] {
            if let Some(rest) = path.strip_prefix(prefix) {
                return Ok(Field::Summary(sub(rest)));
            }
        }
        Ok(match path {
            "state" => Field::State,
            "tags" => Field::Tags,
            "name" => Field::Name,
            "displayName" | "display_name" => Field::DisplayName,
            "group" => Field::Group,
            "jobType" | "job_type" => Field::JobType,
            "host" => Field::Host,
            "notes" => Field::Notes,
            "commit" => Field::Commit,
            "sweep" | "sweepName" => Field::Sweep,
            "createdAt" | "created_at" => Field::CreatedAt,
            "heartbeatAt" | "heartbeat_at" => Field::HeartbeatAt,
            "duration" => Field::Duration,
            other => return err(format!("unknown field {other:?}")),
        })
    }

    fn is_time(&self) -> bool {
        matches!(self, Field::CreatedAt | Field::HeartbeatAt)
    }

    /// The run's value of this field, `None` when absent. Times are Unix seconds so they
    /// compare as numbers.
    pub fn value(&self, run: &RunRow, run_timeout: Duration) -> Option<Value> {
        let opt = |s: &Option<String>| s.clone().map(Value::String);
        match self {
            Field::State => Some(Value::String(run.state(run_timeout).to_owned())),
            Field::Tags => Some(Value::from(run.tags.clone())),
            Field::Name => Some(Value::String(run.name.clone())),
            Field::DisplayName => opt(&run.display_name),
            Field::Group => opt(&run.group),
            Field::JobType => opt(&run.job_type),
            Field::Host => opt(&run.host),
            Field::Notes => opt(&run.notes),
            Field::Commit => opt(&run.commit),
            Field::Sweep => opt(&run.sweep_name),
            Field::CreatedAt => unix_seconds(&run.created_at).map(Value::from),
            Field::HeartbeatAt => unix_seconds(&run.heartbeat_at).map(Value::from),
            Field::Duration => Some(Value::from(
                unix_seconds(&run.heartbeat_at)? - unix_seconds(&run.created_at)?,
            )),
            Field::Config(path) => {
                let config = run.config_json();
                let (key, rest) = path.split_first()?;
                lookup(config.get(key)?.get("value")?, rest)
            }
            Field::Summary(path) => lookup(&run.summary_json(), path),
        }
    }
}

fn lookup(value: &Value, path: &[String]) -> Option<Value> {
    path.iter().try_fold(value, |v, key| v.get(key)).cloned()
}

fn unix_seconds(stored: &str) -> Option<f64> {
    parse_time(stored).map(|t| t.unix_timestamp_nanos() as f64 / 1e9)
}

/// Query-side times: RFC 3339, or W&B's zone-less `YYYY-MM-DDTHH:MM:SS`, or a date, all UTC.
fn query_time(value: &Value) -> Result<Value, FilterError> {
    let Value::String(s) = value else {
        return Ok(value.clone());
    };
    let candidates = [s.clone(), format!("{s}Z"), format!("{s}T00:00:00Z")];
    candidates
        .iter()
        .find_map(|c| unix_seconds(c))
        .map(Value::from)
        .ok_or_else(|| FilterError(format!("cannot read {s:?} as a time")))
}

impl Filter {
    pub fn parse_json(text: Option<&str>) -> Result<Filter, FilterError> {
        match text.map(str::trim) {
            None | Some("") | Some("null") => Ok(Filter::And(Vec::new())),
            Some(text) => {
                let value: Value = serde_json::from_str(text)
                    .map_err(|e| FilterError(format!("not valid JSON: {e}")))?;
                Filter::parse(&value)
            }
        }
    }

    pub fn parse(value: &Value) -> Result<Filter, FilterError> {
        let Value::Object(map) = value else {
            return err("a filter must be a JSON object");
        };
        let mut parts = Vec::new();
        for (key, value) in map {
            let list = |v: &Value| -> Result<Vec<Filter>, FilterError> {
                match v {
                    Value::Array(items) => items.iter().map(Filter::parse).collect(),
                    _ => err(format!("{key} takes a list of filters")),
                }
            };
            parts.push(match key.as_str() {
                "$and" => Filter::And(list(value)?),
                "$or" => Filter::Or(list(value)?),
                "$nor" => Filter::Nor(list(value)?),
                op if op.starts_with('$') => return err(format!("unknown operator {op}")),
                path => {
                    let field = Field::parse(path)?;
                    let conds = parse_conds(&field, value)?;
                    Filter::Field(field, conds)
                }
            });
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Filter::And(parts)
        })
    }

    /// Whether `run` passes; its state is as [`RunRow::state`] reads it after `run_timeout`.
    pub fn matches(&self, run: &RunRow, run_timeout: Duration) -> bool {
        match self {
            Filter::And(fs) => fs.iter().all(|f| f.matches(run, run_timeout)),
            Filter::Or(fs) => fs.iter().any(|f| f.matches(run, run_timeout)),
            Filter::Nor(fs) => !fs.iter().any(|f| f.matches(run, run_timeout)),
            Filter::Field(field, conds) => {
                let value = field.value(run, run_timeout);
                conds.iter().all(|c| c.holds(value.as_ref()))
            }
        }
    }
}

fn is_operator_object(map: &Map<String, Value>) -> bool {
    !map.is_empty() && map.keys().all(|k| k.starts_with('$'))
}

fn parse_conds(field: &Field, value: &Value) -> Result<Vec<Cond>, FilterError> {
    let norm = |v: &Value| {
        if field.is_time() {
            query_time(v)
        } else {
            Ok(v.clone())
        }
    };
    let Value::Object(map) = value else {
        return Ok(vec![Cond::Eq(norm(value)?)]);
    };
    if !is_operator_object(map) {
        return Ok(vec![Cond::Eq(value.clone())]);
    }
    let list = |op: &str, v: &Value| -> Result<Vec<Value>, FilterError> {
        match v {
            Value::Array(items) => items.iter().map(norm).collect(),
            _ => err(format!("{op} takes a list")),
        }
    };
    map.iter()
        .filter(|(op, _)| op.as_str() != "$options")
        .map(|(op, v)| {
            Ok(match op.as_str() {
                "$eq" => Cond::Eq(norm(v)?),
                "$ne" => Cond::Ne(norm(v)?),
                "$gt" => Cond::Cmp(Ordering::Greater, false, norm(v)?),
                "$gte" => Cond::Cmp(Ordering::Greater, true, norm(v)?),
                "$lt" => Cond::Cmp(Ordering::Less, false, norm(v)?),
                "$lte" => Cond::Cmp(Ordering::Less, true, norm(v)?),
                "$in" => Cond::In(list(op, v)?),
                "$nin" => Cond::Nin(list(op, v)?),
                "$exists" => Cond::Exists(
                    v.as_bool()
                        .ok_or_else(|| FilterError("$exists takes a boolean".into()))?,
                ),
                "$regex" => {
                    let pattern = v
                        .as_str()
                        .ok_or_else(|| FilterError("$regex takes a string".into()))?;
                    let case_insensitive = map
                        .get("$options")
                        .and_then(Value::as_str)
                        .is_some_and(|o| o.contains('i'));
                    let pattern = if case_insensitive {
                        format!("(?i){pattern}")
                    } else {
                        pattern.to_owned()
                    };
                    Cond::Regex(
                        Regex::new(&pattern)
                            .map_err(|e| FilterError(format!("bad $regex {pattern:?}: {e}")))?,
                    )
                }
                other => return err(format!("unknown operator {other}")),
            })
        })
        .collect()
}

/// Mongo semantics: a condition on an array field holds when it holds for the array itself or
/// for one of its elements.
fn any_element(value: Option<&Value>, test: impl Fn(Option<&Value>) -> bool) -> bool {
    if test(value) {
        return true;
    }
    match value {
        Some(Value::Array(items)) => items.iter().any(|item| test(Some(item))),
        _ => false,
    }
}

fn json_eq(a: Option<&Value>, b: &Value) -> bool {
    match (a, b) {
        (None, Value::Null) => true,
        (None, _) => false,
        (Some(Value::Number(x)), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Some(a), b) => a == b,
    }
}

impl Cond {
    fn holds(&self, value: Option<&Value>) -> bool {
        match self {
            Cond::Eq(want) => any_element(value, |v| json_eq(v, want)),
            Cond::Ne(want) => !any_element(value, |v| json_eq(v, want)),
            Cond::Cmp(dir, or_equal, bound) => any_element(value, |v| {
                v.and_then(|v| compare_same_type(v, bound))
                    .is_some_and(|ord| ord == *dir || (*or_equal && ord == Ordering::Equal))
            }),
            Cond::In(options) => options
                .iter()
                .any(|want| any_element(value, |v| json_eq(v, want))),
            Cond::Nin(options) => !options
                .iter()
                .any(|want| any_element(value, |v| json_eq(v, want))),
            Cond::Exists(want) => value.is_some_and(|v| !v.is_null()) == *want,
            Cond::Regex(re) => any_element(value, |v| {
                v.and_then(Value::as_str).is_some_and(|s| re.is_match(s))
            }),
        }
    }
}

/// Compares values of the same JSON type; different types do not compare (Mongo's range
/// operators only match values of the bound's type).
fn compare_same_type(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

/// Total order for sorting: numbers, then strings, then booleans, then anything else.
fn sort_cmp(a: &Value, b: &Value) -> Ordering {
    fn rank(v: &Value) -> u8 {
        match v {
            Value::Number(_) => 0,
            Value::String(_) => 1,
            Value::Bool(_) => 2,
            _ => 3,
        }
    }
    compare_same_type(a, b).unwrap_or_else(|| rank(a).cmp(&rank(b)))
}

/// An `order` argument: `+created_at`, `-summary_metrics.loss`, `config.lr.value`...
#[derive(Debug)]
pub struct Order {
    field: Field,
    descending: bool,
}

impl Order {
    pub fn parse(text: Option<&str>) -> Result<Order, FilterError> {
        let text = text
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .unwrap_or("+created_at");
        let (descending, path) = match text.as_bytes()[0] {
            b'-' => (true, &text[1..]),
            b'+' => (false, &text[1..]),
            _ => (false, text),
        };
        Ok(Order {
            field: Field::parse(path)?,
            descending,
        })
    }

    /// Sorts runs; runs without a value come last in either direction, and ties keep creation
    /// order (reversed when descending) so paging is stable.
    pub fn sort(&self, runs: &mut [RunRow], run_timeout: Duration) {
        let mut keyed: Vec<(Option<Value>, RunRow)> = runs
            .iter()
            .map(|r| {
                (
                    self.field.value(r, run_timeout).filter(|v| !v.is_null()),
                    r.clone(),
                )
            })
            .collect();
        keyed.sort_by(|(ka, ra), (kb, rb)| {
            let by_key = match (ka, kb) {
                (Some(a), Some(b)) => {
                    let ord = sort_cmp(a, b);
                    if self.descending {
                        ord.reverse()
                    } else {
                        ord
                    }
                }
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (None, None) => Ordering::Equal,
            };
            let by_age = (&ra.created_at, ra.id).cmp(&(&rb.created_at, rb.id));
            by_key.then(if self.descending {
                by_age.reverse()
            } else {
                by_age
            })
        });
        for (slot, (_, run)) in runs.iter_mut().zip(keyed) {
            *slot = run;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::DEFAULT_RUN_TIMEOUT;
    use serde_json::json;

    fn run(
        id: i64,
        name: &str,
        config: Value,
        summary: Value,
        tags: &[&str],
        created: &str,
    ) -> RunRow {
        RunRow {
            id,
            project_id: 1,
            name: name.into(),
            display_name: Some(format!("d-{name}")),
            description: None,
            notes: None,
            stored_state: "finished".into(),
            config: config.to_string(),
            summary: summary.to_string(),
            system_metrics: "{}".into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            group: Some("g".into()),
            job_type: None,
            commit: None,
            host: None,
            sweep_name: None,
            created_at: created.into(),
            updated_at: created.into(),
            heartbeat_at: created.into(),
            stopped: false,
            exit_code: Some(0),
            history_last_step: None,
        }
    }

    fn runs() -> Vec<RunRow> {
        vec![
            run(
                1,
                "a",
                json!({"lr": {"value": 0.1}, "branch": {"value": "main"}}),
                json!({"loss": 3}),
                &["x"],
                "2026-01-01T00:00:00.000000Z",
            ),
            run(
                2,
                "b",
                json!({"lr": {"value": 0.01}, "branch": {"value": "feat-x"}, "opt": {"value": {"name": "adam"}}}),
                json!({"loss": 1}),
                &["x", "probe"],
                "2026-01-02T00:00:00.000000Z",
            ),
            run(
                3,
                "c",
                json!({"lr": {"value": 0.001}}),
                json!({}),
                &[],
                "2026-01-03T00:00:00.000000Z",
            ),
        ]
    }

    fn names(filter: Value) -> Vec<String> {
        let f = Filter::parse(&filter).unwrap();
        runs()
            .into_iter()
            .filter(|r| f.matches(r, DEFAULT_RUN_TIMEOUT))
            .map(|r| r.name)
            .collect()
    }

    #[test]
    fn field_equality_and_config_paths() {
        assert_eq!(names(json!({"config.branch.value": "feat-x"})), ["b"]);
        assert_eq!(names(json!({"config.branch": "feat-x"})), ["b"]);
        assert_eq!(names(json!({"config.opt.value.name": "adam"})), ["b"]);
        assert_eq!(names(json!({"name": "c"})), ["c"]);
        assert_eq!(names(json!({"displayName": "d-a"})), ["a"]);
        assert_eq!(
            names(json!({"state": "finished", "group": "g"})),
            ["a", "b", "c"]
        );
    }

    #[test]
    fn operators() {
        assert_eq!(names(json!({"config.lr": {"$gt": 0.005}})), ["a", "b"]);
        assert_eq!(
            names(json!({"config.lr.value": {"$gte": 0.01, "$lt": 0.1}})),
            ["b"]
        );
        assert_eq!(names(json!({"config.lr": {"$lte": 0.001}})), ["c"]);
        assert_eq!(
            names(json!({"summary_metrics.loss": {"$ne": 3}})),
            ["b", "c"]
        );
        assert_eq!(names(json!({"tags": {"$in": ["probe"]}})), ["b"]);
        assert_eq!(names(json!({"tags": "x"})), ["a", "b"]);
        assert_eq!(names(json!({"tags": {"$nin": ["x"]}})), ["c"]);
        assert_eq!(
            names(json!({"summary_metrics.loss": {"$exists": false}})),
            ["c"]
        );
        assert_eq!(names(json!({"name": {"$regex": "^[ab]$"}})), ["a", "b"]);
        assert_eq!(
            names(json!({"$or": [{"name": "a"}, {"name": "c"}]})),
            ["a", "c"]
        );
        assert_eq!(
            names(json!({"$nor": [{"name": "a"}, {"name": "c"}]})),
            ["b"]
        );
        assert_eq!(
            names(
                json!({"$and": [{"config.branch.value": "feat-x"}, {"state": "finished"}, {"tags": {"$in": ["probe"]}}]})
            ),
            ["b"]
        );
        assert_eq!(
            names(json!({"createdAt": {"$gt": "2026-01-01T12:00:00"}})),
            ["b", "c"]
        );
        assert_eq!(names(json!({"createdAt": {"$lt": "2026-01-02"}})), ["a"]);
        // A number bound does not match strings.
        assert_eq!(
            names(json!({"config.branch": {"$gt": 1}})),
            Vec::<String>::new()
        );
    }

    #[test]
    fn bad_filters_are_errors() {
        for bad in [
            json!([]),
            json!({"$foo": []}),
            json!({"name": {"$bogus": 1}}),
            json!({"nosuch": 1}),
            json!({"name": {"$regex": "("}}),
        ] {
            assert!(Filter::parse(&bad).is_err(), "{bad}");
        }
        assert!(Filter::parse_json(Some("{")).is_err());
        assert!(Filter::parse_json(None)
            .unwrap()
            .matches(&runs()[0], DEFAULT_RUN_TIMEOUT));
    }

    #[test]
    fn ordering() {
        let order = |o: &str| {
            let mut rs = runs();
            Order::parse(Some(o))
                .unwrap()
                .sort(&mut rs, DEFAULT_RUN_TIMEOUT);
            rs.into_iter().map(|r| r.name).collect::<Vec<_>>()
        };
        assert_eq!(order("+created_at"), ["a", "b", "c"]);
        assert_eq!(order("-created_at"), ["c", "b", "a"]);
        assert_eq!(order("+config.lr.value"), ["c", "b", "a"]);
        assert_eq!(order("-summary_metrics.loss"), ["a", "b", "c"]);
        assert_eq!(order("+summary_metrics.loss"), ["b", "a", "c"]);
        assert!(Order::parse(Some("-nosuch")).is_err());
    }
}
