//! Any bytes a client sends in a text frame are either a valid frame or get
//! an error frame with a code and a message; the decoder never panics, and
//! neither do the checks a parsed chat message then goes through.
#![no_main]

use libfuzzer_sys::fuzz_target;
use notify_protocol::{ChatRequest, ClientFrame};

fuzz_target!(|data: &[u8]| {
    // Text frames are UTF-8 by the time they reach the decoder.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match ClientFrame::parse(text) {
        Ok(ClientFrame::Chat(request)) => {
            if let ChatRequest::Send { draft, .. } = *request {
                if let Err(error) = draft.validate() {
                    assert!(!error.code().is_empty());
                    assert!(!error.to_string().is_empty());
                }
            }
        }
        Ok(_) => {}
        Err(error) => {
            assert!(!error.code().is_empty());
            assert!(!error.to_string().is_empty());
        }
    }
});
