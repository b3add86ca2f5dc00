//! `mlwf server` over HTTP, as clients talk to it.

mod artifacts;
mod launch;
mod sdk;
mod tracking;
