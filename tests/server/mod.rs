//! `mlwf server` over HTTP, as clients talk to it.

mod artifacts;
mod automations;
mod launch;
mod sdk;
mod tracking;
