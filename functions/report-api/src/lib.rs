//! The report-api Lambda: the built-in dashboard and each chart's data, from the data lake.

pub mod auth;
pub mod charts;
pub mod facts;
pub mod handler;
pub mod page;
pub mod query;
pub mod setup;
pub mod svg;

pub use facts::Facts;
pub use handler::Reports;
pub use query::Filter;
pub use setup::{Settings, build};
