//! mlwf's W&B client against a fake server that injects faults, and the GraphQL documents
//! against the schema.

mod artifacts;
mod filestream;
mod reads;
mod schema;
mod transport;
