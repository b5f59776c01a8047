//! What a `POST /v1/events` body must be: an event name, any JSON `data`,
//! and exactly one audience.

use notify_auth::jwt::MAX_ROLES;
use notify_protocol::names::{valid_event_name, valid_role, valid_topic};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::{json_depth, MAX_METADATA_DEPTH};
use crate::error::ApiError;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventRequest {
    event: String,
    /// Absent means `null`.
    data: Option<Box<RawValue>>,
    topic: Option<String>,
    roles: Option<Vec<String>>,
    users: Option<Vec<String>>,
    all: Option<bool>,
    #[serde(default)]
    retain: bool,
}

/// Who an event is for.
pub enum Audience<'a> {
    Topic { topic: &'a str, retain: bool },
    Roles(Vec<String>),
    Users(Vec<&'a str>),
    All,
}

/// A request that passed every check.
pub struct CheckedEvent<'a> {
    pub event: &'a str,
    /// None for `null`.
    pub data: Option<&'a RawValue>,
    pub audience: Audience<'a>,
}

impl EventRequest {
    pub fn check(&self) -> Result<CheckedEvent<'_>, ApiError> {
        if !valid_event_name(&self.event) {
            return Err(ApiError::InvalidField(
                "event must be 1 to 128 characters of A-Z a-z 0-9 _ . : / -".into(),
            ));
        }
        if let Some(data) = &self.data {
            if json_depth(data.get()) > MAX_METADATA_DEPTH {
                return Err(ApiError::InvalidField(format!(
                    "data nests deeper than {MAX_METADATA_DEPTH} levels"
                )));
            }
        }
        let all = self.all == Some(true);
        let named = [
            self.topic.is_some(),
            self.roles.is_some(),
            self.users.is_some(),
            all,
        ];
        if named.iter().filter(|n| **n).count() != 1 {
            return Err(ApiError::InvalidField(
                "name exactly one audience: topic, roles, users or all: true".into(),
            ));
        }
        if self.retain && self.topic.is_none() {
            return Err(ApiError::InvalidField(
                "retain is only for events to a topic".into(),
            ));
        }
        let audience = if let Some(topic) = &self.topic {
            if !valid_topic(topic) {
                return Err(ApiError::InvalidTopic);
            }
            Audience::Topic {
                topic,
                retain: self.retain,
            }
        } else if let Some(roles) = &self.roles {
            if roles.is_empty() || roles.len() > MAX_ROLES {
                return Err(ApiError::InvalidField(format!(
                    "roles must list 1 to {MAX_ROLES} roles"
                )));
            }
            let mut unique: Vec<String> = Vec::with_capacity(roles.len());
            for role in roles {
                if !valid_role(role) {
                    return Err(ApiError::InvalidField(
                        "a role is 1 to 64 characters of A-Z a-z 0-9 _ . : -".into(),
                    ));
                }
                if !unique.contains(role) {
                    unique.push(role.clone());
                }
            }
            Audience::Roles(unique)
        } else if let Some(users) = &self.users {
            Audience::Users(super::user_list(users)?)
        } else {
            Audience::All
        };
        Ok(CheckedEvent {
            event: &self.event,
            data: self.data.as_deref(),
            audience,
        })
    }
}

/// Checks an events body exactly as the route does, without publishing:
/// for fuzzing.
pub fn check_event_body(body: &[u8]) -> Result<(), ApiError> {
    crate::body::parse_json::<EventRequest>(body)?
        .check()
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(body: &str) -> Result<(), String> {
        check_event_body(body.as_bytes()).map_err(|e| e.code().to_string())
    }

    #[test]
    fn accepts_each_audience() {
        for good in [
            r#"{"event":"service:status","data":{"up":true},"topic":"status","retain":true}"#,
            r#"{"event":"e","roles":["admin","admin"]}"#,
            r#"{"event":"e","users":["alice","bob"],"data":null}"#,
            r#"{"event":"e","all":true,"data":[1]}"#,
            r#"{"event":"e","all":false,"topic":"t"}"#,
        ] {
            assert_eq!(check(good), Ok(()), "{good}");
        }
    }

    #[test]
    fn refuses_with_stable_codes() {
        for (bad, code) in [
            (r#"{"event":"e"}"#, "invalid_field"),
            (r#"{"event":"e","all":false}"#, "invalid_field"),
            (r#"{"event":"e","topic":"t","all":true}"#, "invalid_field"),
            (
                r#"{"event":"e","roles":["a"],"retain":true}"#,
                "invalid_field",
            ),
            (r#"{"event":"e","topic":"a b"}"#, "invalid_topic"),
            (r#"{"event":"","topic":"t"}"#, "invalid_field"),
            (r#"{"event":"e","roles":[]}"#, "invalid_field"),
            (r#"{"event":"e","roles":["no spaces"]}"#, "invalid_field"),
            (r#"{"event":"e","users":[]}"#, "invalid_field"),
            (r#"{"event":"e","users":[" x"]}"#, "invalid_field"),
            (
                r#"{"event":"e","topic":"t","topics":["x"]}"#,
                "invalid_body",
            ),
            (
                r#"{"event":"e","topic":"t","data":[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]}"#,
                "invalid_field",
            ),
        ] {
            assert_eq!(check(bad), Err(code.to_string()), "{bad}");
        }
        let many = format!(
            r#"{{"event":"e","users":[{}]}}"#,
            (0..1001)
                .map(|i| format!("\"u{i}\""))
                .collect::<Vec<_>>()
                .join(",")
        );
        assert_eq!(check(&many), Err("too_many_recipients".into()));
    }
}
