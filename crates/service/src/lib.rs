//! What every service binary shares: settings read from the environment and
//! the logging setup.

pub mod client;
pub mod healthcheck;
pub mod http;
pub mod refusals;
pub mod settings;
pub mod shutdown;
pub mod telemetry;
