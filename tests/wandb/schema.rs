//! Every GraphQL document the W&B client sends must validate against the vendored schema
//! (`tests/fixtures/wandb-schema.graphql`), so a typo or an invented field fails here instead
//! of against the real service.

use std::collections::HashSet;

use apollo_compiler::validation::Valid;
use apollo_compiler::{ExecutableDocument, Schema};
use mlwf::wandb::graphql::ALL;

const SCHEMA_PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/wandb-schema.graphql"
);

fn schema() -> Valid<Schema> {
    let text = std::fs::read_to_string(SCHEMA_PATH).expect("read the vendored schema");
    Schema::parse_and_validate(text, SCHEMA_PATH)
        .unwrap_or_else(|invalid| panic!("the vendored schema is invalid:\n{}", invalid.errors))
}

fn validate(
    schema: &Valid<Schema>,
    name: &str,
    document: &str,
) -> Result<Valid<ExecutableDocument>, String> {
    ExecutableDocument::parse_and_validate(schema, document, format!("{name}.graphql"))
        .map_err(|invalid| invalid.errors.to_string())
}

#[test]
fn every_document_validates_against_the_schema() {
    let schema = schema();
    let failures: Vec<String> = ALL
        .iter()
        .filter_map(|op| {
            validate(&schema, op.name, op.document)
                .err()
                .map(|e| format!("{}:\n{e}", op.name))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "invalid GraphQL documents:\n{}",
        failures.join("\n")
    );
}

#[test]
fn each_document_holds_exactly_its_named_operation() {
    let schema = schema();
    for op in ALL {
        let doc =
            validate(&schema, op.name, op.document).unwrap_or_else(|e| panic!("{}: {e}", op.name));
        assert!(
            doc.operations.anonymous.is_none(),
            "{}: anonymous operation",
            op.name
        );
        let names: Vec<&str> = doc.operations.named.keys().map(|n| n.as_str()).collect();
        assert_eq!(
            names,
            [op.name],
            "{}: the document must define exactly that operation",
            op.name
        );
    }
}

#[test]
fn operation_names_are_unique() {
    let mut seen = HashSet::new();
    for op in ALL {
        assert!(seen.insert(op.name), "{} is registered twice", op.name);
    }
}

#[test]
fn validation_rejects_fields_the_schema_lacks() {
    // Guards the test itself: if validation silently accepted everything, the checks above
    // would prove nothing.
    let schema = schema();
    let err = validate(
        &schema,
        "Broken",
        "query Broken { viewer { id inventedField } }",
    )
    .expect_err("a made-up field must not validate");
    assert!(err.contains("inventedField"), "{err}");
}
