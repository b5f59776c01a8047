//! Any text a Socket.IO client sends is a packet or a refusal with a
//! message; its events become native frames the native decoder takes or
//! refuses; and any server frame translates without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use notify_protocol::socketio::{self, ConnectAuth, Incoming, NotificationEvent};
use notify_protocol::ClientFrame;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match socketio::parse(text) {
        Ok(Incoming::Event { name, args, .. }) => {
            if let Some(native) = socketio::native_frame(&name, &args) {
                if let Err(error) = ClientFrame::parse(&native) {
                    assert!(!error.code().is_empty());
                }
            }
        }
        Ok(Incoming::Connect { auth }) => {
            let _ = ConnectAuth::parse(auth.as_deref());
        }
        Ok(_) => {}
        Err(error) => assert!(!error.message().is_empty()),
    }
    // The same bytes as a server frame (the gateway only translates its
    // own, but the translation must hold for anything).
    for packet in socketio::translate(text, NotificationEvent::NewNotification) {
        assert!(packet.starts_with('4'));
    }
});
