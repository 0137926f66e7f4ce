//! hourly-optimizer: the article's Scenario 2 as a Lambda. `handler` reads the invocation and runs the
//! engine; `engine` is the use case (run, apply, revert, report); `extract` is the daily ad-platform
//! extract for the data lake; `setup` builds the clients at cold start and the engine from each config
//! version.

pub mod engine;
pub mod extract;
pub mod handler;
pub mod setup;
