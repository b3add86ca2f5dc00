//! The GraphQL engine: parse and validate a request against the W&B schema, then execute it with
//! apollo-compiler's field-at-a-time executor over our resolver objects. The executor handles
//! aliases, fragments, `__typename`, directives, variables and their defaults, and non-null
//! propagation; resolvers only answer one field of one object at a time, lazily, so nested
//! fields with arguments cost nothing unless selected.

use std::sync::Arc;

use apollo_compiler::executable::OperationType;
use apollo_compiler::resolvers::{Execution, FieldError, ObjectValue, ResolveInfo, ResolvedValue};
use apollo_compiler::response::{serde_json_bytes, GraphQLError, JsonMap, JsonValue};
use apollo_compiler::validation::Valid;
use apollo_compiler::{ExecutableDocument, Schema};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::server::store::StoreError;

/// The reconstructed W&B schema, vendored with the tests so the test suite and the server
/// agree on one copy.
const SCHEMA_SDL: &str = include_str!("../../../tests/fixtures/wandb-schema.graphql");

#[derive(Clone)]
pub struct Engine {
    schema: Arc<Valid<Schema>>,
}

/// A GraphQL request body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Request {
    pub query: String,
    #[serde(default)]
    pub variables: Option<serde_json::Value>,
    #[serde(default)]
    pub operation_name: Option<String>,
}

/// A validated request, ready to run.
pub struct Prepared {
    document: Valid<ExecutableDocument>,
    operation_name: Option<String>,
    variables: JsonMap,
    pub is_mutation: bool,
}

/// Errors that reject a request before execution (HTTP 400).
#[derive(Debug, Serialize)]
pub struct RequestErrors {
    pub errors: Vec<GraphQLError>,
}

impl RequestErrors {
    pub fn message(message: impl Into<String>) -> RequestErrors {
        RequestErrors {
            errors: vec![GraphQLError {
                message: message.into(),
                locations: Vec::new(),
                path: Vec::new(),
                extensions: Default::default(),
            }],
        }
    }
}

impl Prepared {
    /// The operation's name, for logs: the requested one, else the document's only one.
    pub fn operation_name(&self) -> &str {
        self.operation_name
            .as_deref()
            .or_else(|| {
                let op = self.document.operations.get(None).ok()?;
                op.name.as_ref().map(|n| n.as_str())
            })
            .unwrap_or("")
    }
}

impl Engine {
    pub fn new() -> anyhow::Result<Engine> {
        let schema = Schema::parse_and_validate(SCHEMA_SDL, "wandb-schema.graphql")
            .map_err(|e| anyhow::anyhow!("the vendored W&B schema is invalid:\n{}", e.errors))?;
        Ok(Engine {
            schema: Arc::new(schema),
        })
    }

    pub fn prepare(&self, request: Request) -> Result<Prepared, RequestErrors> {
        let document =
            ExecutableDocument::parse_and_validate(&self.schema, &request.query, "request.graphql")
                .map_err(|invalid| RequestErrors {
                    // The SDK detects older servers by graphql-js message text such as
                    // `Cannot query field "x" on type "Y".`, so answer in that dialect.
                    errors: invalid
                        .errors
                        .iter()
                        .map(|d| d.unstable_to_json_compat())
                        .collect(),
                })?;
        // Python clients send `operationName: ""` for unnamed single-operation documents.
        let operation_name = request.operation_name.filter(|n| !n.is_empty());
        let operation = document
            .operations
            .get(operation_name.as_deref())
            .map_err(|e| RequestErrors::message(e.message().to_string()))?;
        let is_mutation = operation.operation_type == OperationType::Mutation;
        if operation.operation_type == OperationType::Subscription {
            return Err(RequestErrors::message("subscriptions are not supported"));
        }
        let variables = match request.variables {
            None | Some(serde_json::Value::Null) => JsonMap::new(),
            Some(serde_json::Value::Object(map)) => match to_json_bytes(&map) {
                JsonValue::Object(map) => map,
                _ => JsonMap::new(),
            },
            Some(_) => return Err(RequestErrors::message("variables must be a JSON object")),
        };
        Ok(Prepared {
            document,
            operation_name,
            variables,
            is_mutation,
        })
    }

    /// Executes a prepared request against `root` (the Query or Mutation object). Runs
    /// synchronously: callers are on a blocking thread holding a database connection.
    pub fn execute(
        &self,
        prepared: &Prepared,
        root: &dyn ObjectValue,
    ) -> Result<Vec<u8>, RequestErrors> {
        let execution = Execution::new(&self.schema, &prepared.document)
            .operation_name(prepared.operation_name.as_deref())
            .map_err(|e| RequestErrors::message(e.message().to_string()))?
            .raw_variable_values(&prepared.variables);
        let response = execution.execute_sync(root).map_err(|e| RequestErrors {
            errors: vec![e.to_graphql_error(&prepared.document.sources)],
        })?;
        for error in &response.errors {
            tracing::debug!(
                operation = prepared.operation_name(),
                "GraphQL field error: {}",
                error.message
            );
        }
        // Serialized straight from the executor's ordered map: response fields must keep the
        // order of the selection.
        serde_json::to_vec(&response)
            .map_err(|e| RequestErrors::message(format!("cannot encode the response: {e}")))
    }
}

pub type Res<'a> = Result<ResolvedValue<'a>, FieldError>;

pub fn to_json_bytes(value: &impl Serialize) -> JsonValue {
    // Serializing our own plain data into a JSON tree cannot fail.
    serde_json_bytes::to_value(value).unwrap_or(JsonValue::Null)
}

/// A leaf value from anything serializable (`None` is null).
pub fn leaf<'a>(value: impl Serialize) -> Res<'a> {
    Ok(ResolvedValue::Leaf(to_json_bytes(&value)))
}

/// A list of leaf values (GraphQL lists must be resolved as lists, not as JSON arrays).
pub fn leaves<'a, T: Serialize>(items: impl IntoIterator<Item = T>) -> Res<'a> {
    let items: Vec<JsonValue> = items.into_iter().map(|v| to_json_bytes(&v)).collect();
    Ok(ResolvedValue::list(
        items.into_iter().map(ResolvedValue::Leaf),
    ))
}

/// A JSON value serialized into a string, for `JSONString` fields.
pub fn json_string<'a>(value: &serde_json::Value) -> Res<'a> {
    leaf(value.to_string())
}

pub fn field_error(message: impl Into<String>) -> FieldError {
    FieldError {
        message: message.into(),
    }
}

impl From<StoreError> for FieldError {
    fn from(err: StoreError) -> FieldError {
        if !matches!(err, StoreError::NotFound(_) | StoreError::Invalid(_)) {
            tracing::error!("request failed: {err}");
        }
        field_error(err.to_string())
    }
}

/// The error for schema fields this server does not implement.
pub fn unsupported(info: &ResolveInfo<'_>, type_name: &str) -> FieldError {
    field_error(format!(
        "{type_name}.{} is not supported by the mlwf server",
        info.field_name()
    ))
}

/// A field argument, deserialized; absent and null both read as JSON null.
pub fn arg<T: DeserializeOwned>(info: &ResolveInfo<'_>, name: &str) -> Result<T, FieldError> {
    let value = info
        .arguments()
        .get(name)
        .cloned()
        .unwrap_or(JsonValue::Null);
    serde_json_bytes::from_value(value)
        .map_err(|e| field_error(format!("invalid argument {name}: {e}")))
}

/// A list of objects.
pub fn objects<'a, T: ObjectValue + 'a>(
    items: impl IntoIterator<Item = T, IntoIter: 'a>,
) -> Res<'a> {
    Ok(ResolvedValue::list(
        items.into_iter().map(ResolvedValue::object),
    ))
}

pub fn object<'a>(item: impl ObjectValue + 'a) -> Res<'a> {
    Ok(ResolvedValue::object(item))
}

pub fn nullable<'a>(item: Option<impl ObjectValue + 'a>) -> Res<'a> {
    Ok(ResolvedValue::nullable_object(item))
}

/// An object with fixed fields, for payloads and small value types. Fields not listed resolve to
/// null (e.g. `clientMutationId`).
pub struct Record<'a> {
    type_name: &'static str,
    fields: Vec<(&'static str, Slot<'a>)>,
}

type Lazy<'a> = Box<dyn Fn(&ResolveInfo<'_>) -> Res<'a> + 'a>;

enum Slot<'a> {
    Leaf(JsonValue),
    Leaves(Vec<JsonValue>),
    Lazy(Lazy<'a>),
}

impl<'a> Record<'a> {
    pub fn new(type_name: &'static str) -> Record<'a> {
        Record {
            type_name,
            fields: Vec::new(),
        }
    }

    pub fn leaf(mut self, name: &'static str, value: impl Serialize) -> Record<'a> {
        self.fields.push((name, Slot::Leaf(to_json_bytes(&value))));
        self
    }

    /// A list-typed field of leaves.
    pub fn leaves<T: Serialize>(
        mut self,
        name: &'static str,
        items: impl IntoIterator<Item = T>,
    ) -> Record<'a> {
        let items = items.into_iter().map(|v| to_json_bytes(&v)).collect();
        self.fields.push((name, Slot::Leaves(items)));
        self
    }

    /// A field computed when selected (objects, lists, anything needing the database or the
    /// field's arguments).
    pub fn with(
        mut self,
        name: &'static str,
        f: impl Fn(&ResolveInfo<'_>) -> Res<'a> + 'a,
    ) -> Record<'a> {
        self.fields.push((name, Slot::Lazy(Box::new(f))));
        self
    }
}

impl ObjectValue for Record<'_> {
    fn type_name(&self) -> &str {
        self.type_name
    }

    fn resolve_field<'b>(&'b self, info: &'b ResolveInfo<'b>) -> Res<'b> {
        match self
            .fields
            .iter()
            .find(|(name, _)| *name == info.field_name())
        {
            Some((_, Slot::Leaf(value))) => Ok(ResolvedValue::Leaf(value.clone())),
            Some((_, Slot::Leaves(items))) => Ok(ResolvedValue::list(
                items.iter().cloned().map(ResolvedValue::Leaf),
            )),
            Some((_, Slot::Lazy(f))) => f(info).map(shorten),
            None => Ok(ResolvedValue::null()),
        }
    }
}

/// Narrows a value's lifetime. `ResolvedValue` is invariant in it (its list variant is a boxed
/// iterator of itself), so a value built for the record's lifetime must be rebuilt to be
/// returned for a shorter borrow of the record.
fn shorten<'a: 'b, 'b>(value: ResolvedValue<'a>) -> ResolvedValue<'b> {
    match value {
        ResolvedValue::Leaf(leaf) => ResolvedValue::Leaf(leaf),
        ResolvedValue::Object(object) => ResolvedValue::Object(object),
        ResolvedValue::List(items) => {
            ResolvedValue::List(Box::new(items.map(|item| item.map(shorten))))
        }
        ResolvedValue::SkipForPartialExecution => ResolvedValue::SkipForPartialExecution,
    }
}

/// One page of a Relay-style connection: `edges { node cursor }` and `pageInfo`.
pub struct Page<N> {
    pub connection_type: &'static str,
    pub edge_type: &'static str,
    pub items: Vec<(String, N)>,
    pub has_next_page: bool,
}

struct Edge<'p, N> {
    edge_type: &'static str,
    cursor: &'p str,
    node: &'p N,
}

impl<N: ObjectValue + Clone> ObjectValue for Page<N> {
    fn type_name(&self) -> &str {
        self.connection_type
    }

    fn resolve_field<'b>(&'b self, info: &'b ResolveInfo<'b>) -> Res<'b> {
        match info.field_name() {
            "edges" => objects(self.items.iter().map(|(cursor, node)| Edge {
                edge_type: self.edge_type,
                cursor,
                node,
            })),
            "pageInfo" => object(
                Record::new("PageInfo")
                    .leaf("hasNextPage", self.has_next_page)
                    .leaf("endCursor", self.items.last().map(|(cursor, _)| cursor)),
            ),
            // FileConnection.uploadHeaders: no extra headers are needed for this server's PUTs.
            "uploadHeaders" => leaves(Vec::<String>::new()),
            _ => Err(unsupported(info, self.connection_type)),
        }
    }
}

impl<N: ObjectValue + Clone> ObjectValue for Edge<'_, N> {
    fn type_name(&self) -> &str {
        self.edge_type
    }

    fn resolve_field<'b>(&'b self, info: &'b ResolveInfo<'b>) -> Res<'b> {
        match info.field_name() {
            "node" => object(self.node.clone()),
            "cursor" => leaf(self.cursor),
            _ => Err(unsupported(info, self.edge_type)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vendored_schema_is_valid() {
        Engine::new().unwrap();
    }

    #[test]
    fn invalid_documents_get_graphql_js_style_errors() {
        let engine = Engine::new().unwrap();
        let errors = engine
            .prepare(Request {
                query: "query { serverInfo { nosuch } }".into(),
                variables: None,
                operation_name: None,
            })
            .err()
            .unwrap();
        assert!(
            errors
                .errors
                .iter()
                .any(|e| e.message == r#"Cannot query field "nosuch" on type "ServerInfo"."#),
            "{errors:?}"
        );
        assert!(engine
            .prepare(Request {
                query: "query {".into(),
                variables: None,
                operation_name: None,
            })
            .is_err());
    }
}
