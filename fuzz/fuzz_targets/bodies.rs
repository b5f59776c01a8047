//! Any request body sent to `/v1/notifications`, `/webhook/notify` or
//! `/v1/events` is either valid or refused with a 4xx error; parsing never
//! panics.
#![no_main]

use actix_web::ResponseError;
use libfuzzer_sys::fuzz_target;
use notify_api::validation::events::check_event_body;
use notify_api::validation::{check_send_body, check_webhook_body};

fuzz_target!(|data: &[u8]| {
    for result in [
        check_send_body(data),
        check_webhook_body(data),
        check_event_body(data),
    ] {
        if let Err(error) = result {
            assert!(error.status_code().is_client_error(), "{error:?}");
        }
    }
});
