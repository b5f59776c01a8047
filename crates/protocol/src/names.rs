//! What a topic, a role and an event name may be. One definition for the
//! api, the gateway and the policy, so a name one of them accepts is never
//! refused by another.

/// Longest topic name, in characters (all ASCII).
pub const MAX_TOPIC_CHARS: usize = 128;
/// Longest role name.
pub const MAX_ROLE_CHARS: usize = 64;
/// Longest event name.
pub const MAX_EVENT_NAME_CHARS: usize = 128;

/// The characters of topic and role names: safe inside Redis channel names,
/// Prometheus labels and URL paths without escaping.
fn name_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-')
}

/// 1–128 characters of `A-Z a-z 0-9 _ . : -`.
pub fn valid_topic(name: &str) -> bool {
    (1..=MAX_TOPIC_CHARS).contains(&name.len()) && name.bytes().all(name_char)
}

/// 1–64 characters of `A-Z a-z 0-9 _ . : -`.
pub fn valid_role(name: &str) -> bool {
    (1..=MAX_ROLE_CHARS).contains(&name.len()) && name.bytes().all(name_char)
}

/// 1–128 characters of `A-Z a-z 0-9 _ . : / -`.
pub fn valid_event_name(name: &str) -> bool {
    (1..=MAX_EVENT_NAME_CHARS).contains(&name.len())
        && name.bytes().all(|b| name_char(b) || b == b'/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_their_rules() {
        for good in [
            "status",
            "space:42",
            "user.alice.inbox",
            "a-b_c",
            &"x".repeat(128),
        ] {
            assert!(valid_topic(good), "{good}");
        }
        for bad in ["", "a b", "a/b", "é", "a*", "a\n", &"x".repeat(129)] {
            assert!(!valid_topic(bad), "{bad:?}");
        }
        assert!(valid_role("admin"));
        assert!(!valid_role(&"r".repeat(65)));
        assert!(valid_event_name("admin:refresh-status"));
        assert!(valid_event_name("orders/created"));
        assert!(!valid_event_name("a\"b"));
        assert!(!valid_event_name(""));
    }
}
