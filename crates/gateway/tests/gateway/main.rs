//! Integration tests of the gateway: real gateways and a real api in
//! process, real MySQL and Redis, real WebSocket clients over TCP.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod auth;
mod bus;
mod chat;
mod delivery;
mod faults;
mod helpers;
mod idp;
mod limits;
mod logs;
mod proxy_logs;
mod redis_cluster;
mod resilience;
mod resume;
mod revoke;
mod sessions;
mod socketio;
mod topics;
