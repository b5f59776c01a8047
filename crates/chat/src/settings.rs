//! Chat settings, read from the environment by the api and the gateways.

use notify_service::settings::parsed;

#[derive(Clone, Debug)]
pub struct ChatSettings {
    /// `CHAT_NOTIFY_OFFLINE` (true): members with no live session get a
    /// `chat.message` notification, at most one per conversation per
    /// minute.
    pub notify_offline: bool,
    /// `CHAT_MESSAGES_PER_SECOND` (10) and `CHAT_MESSAGE_BURST` (30): sends
    /// per user and process.
    pub message_rate: u32,
    pub message_burst: u32,
    /// `CHAT_SIGNALS_PER_SECOND` (5) and `CHAT_SIGNAL_BURST` (20): typing
    /// and read frames per user and process.
    pub signal_rate: u32,
    pub signal_burst: u32,
}

impl Default for ChatSettings {
    fn default() -> Self {
        Self {
            notify_offline: true,
            message_rate: 10,
            message_burst: 30,
            signal_rate: 5,
            signal_burst: 20,
        }
    }
}

impl ChatSettings {
    pub fn from_environment() -> anyhow::Result<Self> {
        let defaults = Self::default();
        Ok(Self {
            notify_offline: parsed("CHAT_NOTIFY_OFFLINE")?.unwrap_or(defaults.notify_offline),
            message_rate: parsed("CHAT_MESSAGES_PER_SECOND")?.unwrap_or(defaults.message_rate),
            message_burst: parsed("CHAT_MESSAGE_BURST")?.unwrap_or(defaults.message_burst),
            signal_rate: parsed("CHAT_SIGNALS_PER_SECOND")?.unwrap_or(defaults.signal_rate),
            signal_burst: parsed("CHAT_SIGNAL_BURST")?.unwrap_or(defaults.signal_burst),
        })
    }
}
