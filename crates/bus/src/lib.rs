//! The Redis bus between the api (which publishes a change on the owner's
//! channel after it is committed) and the gateways (which subscribe to the
//! channels of the users they hold).

pub mod nodes;
pub mod pool;
pub mod presence;
pub mod publisher;
pub mod replay;
pub mod revocation;
pub mod sessions;
pub mod token_gate;

pub use nodes::NodeStore;
pub use pool::{build_pool, ping, slot, BusError, RedisConnection, RedisPool, RedisTarget};
pub use presence::PresenceStore;
pub use publisher::{
    publish_now, PublishStats, PublishedBatches, Publisher, QueueLimits, MAX_PIPELINE,
};
pub use revocation::Revoked;
pub use sessions::{LiveSession, SessionChange, SessionStore, UserPresence};
pub use token_gate::{TokenGate, TokenRefusal};
