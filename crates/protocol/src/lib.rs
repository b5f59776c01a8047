//! Wire types shared by every service: the events the api publishes, the
//! frames the gateway forwards to clients, and how Redis channels are named.
//!
//! An event is serialised exactly once, by whoever caused it, and the bytes
//! travel unchanged through Redis to every connected client. Keeping the types
//! here is what guarantees the api and the gateway agree on them.

pub mod channel;
pub mod chat;
pub mod control;
pub mod event;
pub mod frame;
pub mod names;
pub mod socketio;
pub mod topic_event;

pub use channel::{Audience, ChannelNames};
pub use chat::{ChatFrame, ChatRequest, Draft, MessageError, WireConversation, WireMessage};
pub use control::Control;
pub use event::{Event, WireNotification};
pub use frame::{ClientFrame, FrameError, ServerFrame, TopicRequest};
pub use topic_event::{EventAudience, TopicEvent};
