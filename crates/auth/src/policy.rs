//! Who may subscribe to a topic, who may publish to it from a client, and
//! which topics track presence: a small file (TOML, or JSON by its `.json`
//! extension) read once at start by the api and every gateway.
//!
//! ```toml
//! [default]                    # topics no rule matches
//! subscribe = ["*"]            # "*": any authenticated user
//!
//! [[topics]]
//! pattern = "status"           # an exact name
//! publish = ["admin"]
//! subscribe = ["*"]
//!
//! [[topics]]
//! pattern = "user.{sub}.*"     # "*" at the end: every topic starting so;
//! subscribe = ["*"]            # {sub}: the subject of the asking token
//! ```
//!
//! An exact name beats every pattern; among matching patterns the longest
//! literal prefix wins, so `user.{sub}.*` (for alice, `user.alice.`) beats
//! `user.*`. In a rule, an omitted list grants nobody. `{sub}` stands only
//! for subjects of `A-Z a-z 0-9 _ -`, so that the separator after it is
//! unambiguous; other subjects match no pattern containing it.

use std::collections::HashMap;

use notify_protocol::names::{valid_role, valid_topic};
use serde::Deserialize;

/// The placeholder for the subject of the token asking.
const SUBJECT: &str = "{sub}";
/// In a list of roles: any authenticated user.
const ANYONE: &str = "*";

/// Roles granted an action on a topic.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Grant(Vec<String>);

impl Grant {
    fn anyone() -> Self {
        Grant(vec![ANYONE.to_string()])
    }

    /// Whether a user with these roles is granted it.
    pub fn allows<R: AsRef<str>>(&self, roles: &[R]) -> bool {
        self.0
            .iter()
            .any(|g| g == ANYONE || roles.iter().any(|r| r.as_ref() == g))
    }
}

/// What the policy says about one topic.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    #[serde(default)]
    pub subscribe: Grant,
    #[serde(default)]
    pub publish: Grant,
    /// Track who is subscribed, and tell subscribers who joins and leaves.
    #[serde(default)]
    pub presence: bool,
}

impl Default for Rule {
    /// For topics no rule matches, unless the file says otherwise: anyone
    /// may subscribe, no client may publish, no presence.
    fn default() -> Self {
        Rule {
            subscribe: Grant::anyone(),
            publish: Grant::default(),
            presence: false,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PatternRule {
    pattern: String,
    #[serde(default)]
    subscribe: Grant,
    #[serde(default)]
    publish: Grant,
    #[serde(default)]
    presence: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    default: Rule,
    #[serde(default)]
    topics: Vec<PatternRule>,
}

#[derive(Debug, Default)]
pub struct TopicPolicy {
    default: Rule,
    /// Exact names without placeholder, looked up directly.
    exact: HashMap<String, Rule>,
    /// Everything else, tried in turn: (pattern without the trailing `*`,
    /// is a prefix, rule).
    templates: Vec<(String, bool, Rule)>,
}

impl TopicPolicy {
    /// Reads the policy file at `path`.
    pub fn from_file(path: &str) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the topic policy {path}: {e}"))?;
        let parsed = if path.ends_with(".json") {
            Self::from_json(&text)
        } else {
            Self::from_toml(&text)
        };
        parsed.map_err(|e| format!("invalid topic policy {path}: {e}"))
    }

    pub fn from_toml(text: &str) -> Result<Self, String> {
        Self::build(toml::from_str(text).map_err(|e| e.to_string())?)
    }

    pub fn from_json(text: &str) -> Result<Self, String> {
        Self::build(serde_json::from_str(text).map_err(|e| e.to_string())?)
    }

    fn build(file: File) -> Result<Self, String> {
        check_grants(&file.default, "[default]")?;
        let mut policy = TopicPolicy {
            default: file.default,
            ..TopicPolicy::default()
        };
        for PatternRule {
            pattern,
            subscribe,
            publish,
            presence,
        } in file.topics
        {
            let rule = Rule {
                subscribe,
                publish,
                presence,
            };
            check_grants(&rule, &pattern)?;
            let (literal, prefix) = match pattern.strip_suffix('*') {
                Some(literal) => (literal.to_string(), true),
                None => (pattern.clone(), false),
            };
            let plain = literal.replace(SUBJECT, "");
            if !plain.is_empty() && !valid_topic(&plain) {
                return Err(format!(
                    "pattern {pattern:?}: a topic name, optionally with {SUBJECT} and a trailing *"
                ));
            }
            if plain.is_empty() && !prefix && !literal.contains(SUBJECT) {
                return Err("an empty pattern matches nothing".into());
            }
            if !prefix && !literal.contains(SUBJECT) {
                if policy.exact.insert(literal, rule).is_some() {
                    return Err(format!("pattern {pattern:?} is listed twice"));
                }
            } else {
                if policy
                    .templates
                    .iter()
                    .any(|(l, p, _)| *l == literal && *p == prefix)
                {
                    return Err(format!("pattern {pattern:?} is listed twice"));
                }
                policy.templates.push((literal, prefix, rule));
            }
        }
        Ok(policy)
    }

    /// The rule for `topic` when `subject` asks.
    pub fn rule(&self, topic: &str, subject: &str) -> &Rule {
        if let Some(rule) = self.exact.get(topic) {
            return rule;
        }
        // Separators in a subject would let `user.{sub}.*` of "bob" match
        // the topics of "bob.x": such subjects match no placeholder.
        let substitutable = !subject.is_empty()
            && subject
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        let mut best: Option<(usize, bool, &Rule)> = None;
        for (literal, prefix, rule) in &self.templates {
            if literal.contains(SUBJECT) && !substitutable {
                continue;
            }
            let literal = literal.replace(SUBJECT, subject);
            let matches = if *prefix {
                topic.starts_with(&literal)
            } else {
                topic == literal
            };
            if !matches {
                continue;
            }
            // An exact template beats every prefix; then the longest.
            let rank = (!*prefix, literal.len());
            if best.is_none_or(|(len, exact, _)| rank > (exact, len)) {
                best = Some((literal.len(), !*prefix, rule));
            }
        }
        best.map_or(&self.default, |(_, _, rule)| rule)
    }

    /// Whether any topic tracks presence, so a node that needs none does
    /// not run the presence task.
    pub fn any_presence(&self) -> bool {
        self.default.presence
            || self.exact.values().any(|r| r.presence)
            || self.templates.iter().any(|(_, _, r)| r.presence)
    }
}

fn check_grants(rule: &Rule, at: &str) -> Result<(), String> {
    for role in rule.subscribe.0.iter().chain(&rule.publish.0) {
        if role != ANYONE && !valid_role(role) {
            return Err(format!("{at}: {role:?} is not a role name"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
        [[topics]]
        pattern = "status"
        subscribe = ["*"]
        publish = ["admin"]

        [[topics]]
        pattern = "space:*"
        subscribe = ["*"]
        presence = true

        [[topics]]
        pattern = "user.{sub}.*"
        subscribe = ["*"]

        [[topics]]
        pattern = "user.*"

        [[topics]]
        pattern = "ops.*"
        subscribe = ["ops", "admin"]
        publish = ["ops"]
    "#;

    #[test]
    fn most_specific_rule_wins() {
        let policy = TopicPolicy::from_toml(EXAMPLE).unwrap();
        let none: [&str; 0] = [];
        let status = policy.rule("status", "bob");
        assert!(status.subscribe.allows(&none));
        assert!(!status.publish.allows(&["user"]));
        assert!(status.publish.allows(&["user", "admin"]));
        assert!(policy.rule("space:42", "bob").presence);
        assert!(!policy.rule("status", "bob").presence);
        assert!(policy
            .rule("user.alice.inbox", "alice")
            .subscribe
            .allows(&none));
        assert!(!policy
            .rule("user.alice.inbox", "bob")
            .subscribe
            .allows(&["admin"]));
        // "alice.x" has no placeholder topics, and cannot reach alice's.
        assert!(!policy
            .rule("user.alice.x.inbox", "alice.x")
            .subscribe
            .allows(&none));
        assert!(!policy
            .rule("user.alice.inbox", "alice.x")
            .subscribe
            .allows(&none));
        assert!(!policy
            .rule("ops.deploys", "bob")
            .subscribe
            .allows(&["user"]));
        assert!(policy
            .rule("ops.deploys", "bob")
            .subscribe
            .allows(&["admin"]));
        // No rule: the default.
        assert!(policy.rule("news", "bob").subscribe.allows(&none));
        assert!(!policy.rule("news", "bob").publish.allows(&["admin"]));
    }

    #[test]
    fn json_and_defaults() {
        let policy = TopicPolicy::from_json(
            r#"{"default":{"subscribe":["member"]},"topics":[{"pattern":"*","publish":["admin"]}]}"#,
        )
        .unwrap();
        // "*" matches everything and grants nobody subscribe.
        assert!(!policy.rule("x", "u").subscribe.allows(&["member"]));
        assert!(policy.rule("x", "u").publish.allows(&["admin"]));
        let empty = TopicPolicy::default();
        assert!(empty.rule("anything", "u").subscribe.allows(&[] as &[&str]));
        assert!(!empty.any_presence());
    }

    #[test]
    fn refuses_bad_files() {
        for bad in [
            "[[topics]]\npattern = \"a b\"",
            "[[topics]]\npattern = \"\"",
            "[[topics]]\npattern = \"x\"\nsubscribe = [\"bad role\"]",
            "[[topics]]\npattern = \"x\"\nsubscrbe = [\"*\"]",
            "[[topics]]\npattern = \"x\"\n[[topics]]\npattern = \"x\"",
            "nonsense = 1",
        ] {
            assert!(TopicPolicy::from_toml(bad).is_err(), "{bad}");
        }
    }
}
