//! Integration tests of the api against real MySQL and Redis. Each test gets
//! its own database and its own Redis channel prefix, so they run in
//! parallel.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod config;
mod connection_log;
mod dev_tokens;
mod faults;
mod feed;
mod helpers;
mod idempotency;
mod large;
mod limits;
mod logs;
mod mysql_server;
mod publish;
mod replica;
mod revoke;
mod send;
mod signed;
mod status;
