//! The notification api: stores notifications in MySQL and publishes each
//! change on the recipient's Redis channel once it is committed.

pub mod auth;
pub mod batcher;
pub mod body;
pub mod config;
pub mod error;
pub mod housekeeping;
pub mod limits;
pub mod reads;
pub mod routes;
pub mod signed;
pub mod startup;
pub mod state;
pub mod sweeper;
pub mod validation;

pub use config::Config;
pub use startup::Application;

pub use notify_auth::unix_now;
