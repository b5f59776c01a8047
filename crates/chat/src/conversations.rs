//! Creating, listing and changing conversations.

use chrono::DateTime;
use notify_auth::jwt::valid_user_id;
use notify_protocol::chat::{valid_title, MAX_GROUP_MEMBERS};
use notify_protocol::{WireConversation, WireMessage};
use notify_store::chat::{Added, Conversation, Member, Message, Scope, DIRECT, GROUP};

use crate::{wire, Chat, ChatError};

/// A conversation to open, as a user asks for it.
#[derive(Debug, Clone)]
pub struct NewConversation {
    /// `direct` or `group`.
    pub kind: String,
    /// The other members: the creator is always one.
    pub members: Vec<String>,
    /// Groups only.
    pub title: Option<String>,
}

/// One page of a user's conversations.
#[derive(Debug)]
pub struct ConversationPage {
    pub conversations: Vec<WireConversation>,
    /// Pass as `before` for the next page; None on the last.
    pub next_cursor: Option<String>,
}

/// The other users in `members`, each once, the caller left out.
fn others<'a>(user: &str, members: &'a [String]) -> Result<Vec<&'a str>, ChatError> {
    let mut others: Vec<&str> = Vec::with_capacity(members.len());
    for (i, member) in members.iter().enumerate() {
        if !valid_user_id(member) {
            return Err(ChatError::InvalidMembers(format!(
                "members[{i}] must be a user id of 1 to 191 characters without control characters or surrounding spaces"
            )));
        }
        if member != user && !others.contains(&member.as_str()) {
            others.push(member);
        }
    }
    Ok(others)
}

/// The group `id` if `user` is a member of it: what member changes start
/// from.
async fn group_of(
    conn: &mut notify_store::DbConn,
    id: u64,
    user: &str,
) -> Result<Conversation, ChatError> {
    let (conversation, _) = Conversation::of_member(conn, id, user)
        .await?
        .ok_or(ChatError::NotFound)?;
    if conversation.kind != GROUP {
        return Err(ChatError::NotAGroup);
    }
    Ok(conversation)
}

/// A cursor is `<last activity, Unix microseconds>-<conversation id>`.
fn parse_cursor(cursor: &str) -> Option<(chrono::NaiveDateTime, u64)> {
    let (micros, id) = cursor.split_once('-')?;
    let at = DateTime::from_timestamp_micros(micros.parse().ok()?)?.naive_utc();
    Some((at, id.parse().ok()?))
}

fn cursor_of(conversation: &WireConversation) -> String {
    format!(
        "{}-{}",
        conversation.last_activity_at.timestamp_micros(),
        conversation.id
    )
}

impl Chat {
    /// Opens a conversation; true when it was created now (a direct
    /// conversation that exists is returned as it is).
    pub async fn create(
        &self,
        user: &str,
        new: &NewConversation,
    ) -> Result<(WireConversation, bool), ChatError> {
        let others = others(user, &new.members)?;
        let at = notify_store::now();
        let mut conn = self.conn().await?;
        let (id, created) = match new.kind.as_str() {
            DIRECT => {
                let [other] = others.as_slice() else {
                    return Err(ChatError::InvalidMembers(
                        "a direct conversation has exactly one other member".into(),
                    ));
                };
                if new.title.is_some() {
                    return Err(ChatError::InvalidTitle);
                }
                let (conversation, created) =
                    Conversation::open_direct(&mut conn, user, other, at).await?;
                (conversation.id, created)
            }
            GROUP => {
                if others.is_empty() {
                    return Err(ChatError::InvalidMembers(
                        "a group needs at least one other member".into(),
                    ));
                }
                if others.len() >= MAX_GROUP_MEMBERS {
                    return Err(ChatError::TooManyMembers);
                }
                let title = new.title.as_deref();
                if title.is_some_and(|t| !valid_title(t)) {
                    return Err(ChatError::InvalidTitle);
                }
                let group = Conversation::create_group(&mut conn, user, &others, title, at).await?;
                (group.id, true)
            }
            _ => {
                return Err(ChatError::InvalidMembers(
                    "type must be \"direct\" or \"group\"".into(),
                ))
            }
        };
        let view = self.view(&mut conn, user, id).await?;
        Ok((view, created))
    }

    /// `user`'s view of one conversation.
    pub async fn get(&self, user: &str, id: u64) -> Result<WireConversation, ChatError> {
        let mut conn = self.conn().await?;
        self.view(&mut conn, user, id).await
    }

    async fn view(
        &self,
        conn: &mut notify_store::DbConn,
        user: &str,
        id: u64,
    ) -> Result<WireConversation, ChatError> {
        Conversation::list_for(conn, user, Scope::One(id))
            .await?
            .pop()
            .map(wire::conversation)
            .ok_or(ChatError::NotFound)
    }

    /// One page of `user`'s conversations, newest activity first.
    pub async fn list(
        &self,
        user: &str,
        before: Option<&str>,
        limit: u32,
    ) -> Result<ConversationPage, ChatError> {
        let before = match before {
            Some(cursor) => Some(parse_cursor(cursor).ok_or(ChatError::InvalidCursor)?),
            None => None,
        };
        let mut conn = self.conn().await?;
        // One extra row tells whether another page exists.
        let scope = Scope::Page {
            before,
            limit: i64::from(limit) + 1,
        };
        let mut listed = Conversation::list_for(&mut conn, user, scope).await?;
        let more = listed.len() > limit as usize;
        listed.truncate(limit as usize);
        let conversations: Vec<WireConversation> =
            listed.into_iter().map(wire::conversation).collect();
        let next_cursor = more.then(|| conversations.last().map(cursor_of)).flatten();
        Ok(ConversationPage {
            conversations,
            next_cursor,
        })
    }

    /// A page of messages, newest first, older than `before`.
    pub async fn history(
        &self,
        user: &str,
        id: u64,
        before: Option<u64>,
        limit: u32,
    ) -> Result<Vec<WireMessage>, ChatError> {
        let mut conn = self.conn().await?;
        if Conversation::of_member(&mut conn, id, user)
            .await?
            .is_none()
        {
            return Err(ChatError::NotFound);
        }
        let page = Message::page(&mut conn, id, before, i64::from(limit)).await?;
        Ok(page.into_iter().map(wire::message).collect())
    }

    /// Adds users to a group `user` is a member of.
    pub async fn add_members(
        &self,
        user: &str,
        id: u64,
        members: &[String],
    ) -> Result<WireConversation, ChatError> {
        let others = others(user, members)?;
        let mut conn = self.conn().await?;
        group_of(&mut conn, id, user).await?;
        if others.is_empty() {
            return Err(ChatError::InvalidMembers(
                "list at least one user to add".into(),
            ));
        }
        let at = notify_store::now();
        match Member::add(&mut conn, id, &others, MAX_GROUP_MEMBERS, at).await? {
            Added::TooMany => Err(ChatError::TooManyMembers),
            Added::Done { .. } => self.view(&mut conn, user, id).await,
        }
    }

    /// Removes users from a group: anyone may leave, only the creator may
    /// remove others. Nothing changes unless every removal is allowed and
    /// every user listed is a member.
    pub async fn remove_members(
        &self,
        user: &str,
        id: u64,
        members: &[String],
    ) -> Result<(), ChatError> {
        if members.is_empty() {
            return Err(ChatError::InvalidMembers(
                "list at least one user to remove".into(),
            ));
        }
        let mut conn = self.conn().await?;
        let conversation = group_of(&mut conn, id, user).await?;
        if conversation.created_by != user && members.iter().any(|m| m != user) {
            return Err(ChatError::NotCreator);
        }
        let members: Vec<&str> = members.iter().map(String::as_str).collect();
        if !Member::remove(&mut conn, id, &members).await? {
            return Err(ChatError::NotAMember);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip() {
        let at = DateTime::from_timestamp_micros(1_700_000_000_123_456).map(|t| t.naive_utc());
        assert_eq!(parse_cursor("1700000000123456-42"), at.map(|at| (at, 42)));
        for bad in ["", "1-", "-1", "x-1", "1-x", "1-2-3"] {
            assert_eq!(parse_cursor(bad), None, "{bad}");
        }
    }

    #[test]
    fn members_are_checked_and_deduplicated() {
        let list = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let members = list(&["bob", "alice", "bob", "carol"]);
        assert_eq!(others("alice", &members).ok(), Some(vec!["bob", "carol"]));
        assert!(others("alice", &list(&[" bob"])).is_err());
        assert!(others("alice", &list(&[""])).is_err());
    }
}
