//! The WebSocket gateway: holds users' connections and delivers the events
//! the api publishes on their Redis channels.
//!
//! A node keeps no state that must outlive it. Each node has one Redis
//! subscriber connection and subscribes to the channel of every user, topic
//! and role it holds, so an event only reaches the nodes that have a use
//! for it.

pub mod acks;
pub mod batching;
pub mod broker;
pub mod budget;
pub mod catchup;
pub mod chat_requests;
pub mod config;
pub mod connection;
pub mod handshake;
pub mod interest;
pub mod journal;
pub mod liveness;
pub mod node;
pub mod presence;
pub mod registry;
pub mod requests;
pub mod routes;
pub mod seen;
pub mod send_queue;
pub mod sessions;
pub mod socket;
pub mod socketio;
pub mod startup;
pub mod subscriber;
pub mod topic_requests;
pub mod topics;

pub use config::Config;
pub use startup::Application;
