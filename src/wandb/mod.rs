//! W&B client: GraphQL transport, runs, file stream, run files, artifacts, reads, alerts.

pub mod graphql;
