//! Any bytes a client sends in a text frame are either a valid frame or get
//! an error frame with a code and a message; the decoder never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use notify_protocol::ClientFrame;

fuzz_target!(|data: &[u8]| {
    // Text frames are UTF-8 by the time they reach the decoder.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(error) = ClientFrame::parse(text) {
        assert!(!error.code().is_empty());
        assert!(!error.to_string().is_empty());
    }
});
