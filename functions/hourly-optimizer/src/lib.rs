//! hourly-optimizer: the article's Scenario 2 as a Lambda. `handler` reads the invocation and runs the
//! engine; `wiring` builds the engine from the config file, secrets and clients.

pub mod handler;
pub mod wiring;
