//! Conversations, their members and their messages.
//!
//! Membership is checked inside the statements that act on a conversation
//! (a message is inserted by `INSERT ... SELECT` from the sender's member
//! row), so a user removed from a group can neither write to it nor be in
//! the member list a message is delivered to once the removal committed.

use chrono::NaiveDateTime;
use diesel::dsl::{self, count_star};
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::sql_types::{Datetime, Nullable, Text, Varchar};
use diesel_async::{AsyncConnection, AsyncMysqlConnection, RunQueryDsl};

use crate::last_insert_id;
use crate::notification::last_insert_id_of;
use crate::schema::{conversation_members as members, conversations, messages};
use crate::StoreError;

pub const DIRECT: &str = "direct";
pub const GROUP: &str = "group";

#[derive(Queryable, Selectable, Debug, Clone, PartialEq, Eq)]
#[diesel(table_name = conversations, check_for_backend(diesel::mysql::Mysql))]
pub struct Conversation {
    pub id: u64,
    /// [`DIRECT`] or [`GROUP`].
    pub kind: String,
    pub title: Option<String>,
    pub created_by: String,
    pub created_at: NaiveDateTime,
    pub last_message_id: Option<u64>,
    pub last_activity_at: NaiveDateTime,
}

#[derive(Queryable, Selectable, Debug, Clone, PartialEq, Eq)]
#[diesel(table_name = members, check_for_backend(diesel::mysql::Mysql))]
pub struct Member {
    pub conversation_id: u64,
    pub user_id: String,
    pub joined_at: NaiveDateTime,
    pub last_read_message_id: u64,
}

#[derive(Queryable, Selectable, Debug, Clone, PartialEq, Eq)]
#[diesel(table_name = messages, check_for_backend(diesel::mysql::Mysql))]
pub struct Message {
    pub id: u64,
    pub conversation_id: u64,
    pub sender_id: String,
    pub body: String,
    /// JSON text as validated on the way in.
    pub attachments: Option<String>,
    pub client_id: Option<String>,
    pub created_at: NaiveDateTime,
    pub edited_at: Option<NaiveDateTime>,
    pub deleted_at: Option<NaiveDateTime>,
}

/// The query of [`Message::own`].
type OwnMessage<'a> = dsl::Filter<
    dsl::Filter<
        dsl::Filter<
            dsl::Filter<messages::table, dsl::Eq<messages::id, u64>>,
            dsl::Eq<messages::conversation_id, u64>,
        >,
        dsl::Eq<messages::sender_id, &'a str>,
    >,
    dsl::IsNull<messages::deleted_at>,
>;

/// A message to store.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub conversation_id: u64,
    pub sender: String,
    pub body: String,
    /// JSON text of validated attachments; None for none.
    pub attachments: Option<String>,
    pub client_id: Option<String>,
    pub at: NaiveDateTime,
}

/// What storing a message did.
#[derive(Debug)]
pub enum Sent {
    /// Stored now. `members` are the conversation's members as of this
    /// message, the sender included: who it is delivered to.
    Stored {
        message: Message,
        members: Vec<String>,
    },
    /// The sender stored a message with this `client_id` before: that one.
    Duplicate(Message),
    /// The sender is not a member (or the conversation does not exist).
    NotMember,
}

/// A conversation as one of its members lists it.
#[derive(Debug)]
pub struct Listed {
    pub conversation: Conversation,
    pub last_read_message_id: u64,
    /// Messages of others after the member's read mark.
    pub unread_count: u64,
    pub last_message: Option<Message>,
    pub members: Vec<Member>,
}

/// Which of a user's conversations to list.
#[derive(Debug, Clone, Copy)]
pub enum Scope {
    /// Up to `limit`, strictly after the cursor `before`
    /// (`last_activity_at`, `id`) in newest-first order.
    Page {
        before: Option<(NaiveDateTime, u64)>,
        limit: i64,
    },
    /// This one, if the user is a member.
    One(u64),
}

/// What adding members did.
#[derive(Debug, PartialEq, Eq)]
pub enum Added {
    /// `added` are the users who were not members yet.
    Done { added: Vec<String> },
    /// The conversation would have more than the allowed members.
    TooMany,
}

/// A member's read mark after `mark_read`.
#[derive(Debug, PartialEq, Eq)]
pub struct ReadMark {
    pub up_to: u64,
    /// Whether the mark moved.
    pub moved: bool,
}

fn is_duplicate(error: &StoreError) -> bool {
    matches!(
        error,
        StoreError::Query(DieselError::DatabaseError(
            DatabaseErrorKind::UniqueViolation,
            _
        ))
    )
}

impl Conversation {
    /// The conversation and `user`'s membership of it, if they are a member.
    pub async fn of_member(
        conn: &mut AsyncMysqlConnection,
        id: u64,
        user: &str,
    ) -> Result<Option<(Conversation, Member)>, StoreError> {
        Ok(conversations::table
            .inner_join(members::table.on(members::conversation_id.eq(conversations::id)))
            .filter(conversations::id.eq(id))
            .filter(members::user_id.eq(user))
            .select((Conversation::as_select(), Member::as_select()))
            .first(conn)
            .await
            .optional()?)
    }

    async fn direct_of(
        conn: &mut AsyncMysqlConnection,
        low: &str,
        high: &str,
    ) -> Result<Option<Conversation>, StoreError> {
        Ok(conversations::table
            .filter(conversations::direct_low.eq(low))
            .filter(conversations::direct_high.eq(high))
            .select(Conversation::as_select())
            .first(conn)
            .await
            .optional()?)
    }

    /// The direct conversation of `user` and `other`, created if there is
    /// none; true when it was created now. Two users opening it at once get
    /// the same one.
    pub async fn open_direct(
        conn: &mut AsyncMysqlConnection,
        user: &str,
        other: &str,
        at: NaiveDateTime,
    ) -> Result<(Conversation, bool), StoreError> {
        let (low, high) = if user <= other {
            (user, other)
        } else {
            (other, user)
        };
        if let Some(existing) = Self::direct_of(conn, low, high).await? {
            return Ok((existing, false));
        }
        let created = Self::create(
            conn,
            DIRECT,
            None,
            Some((low, high)),
            user,
            &[low, high],
            at,
        )
        .await;
        match created {
            Ok(conversation) => Ok((conversation, true)),
            // Created by the other side meanwhile: the unique key waited for
            // its transaction, so its members are there too.
            Err(error) if is_duplicate(&error) => match Self::direct_of(conn, low, high).await? {
                Some(existing) => Ok((existing, false)),
                None => Err(error),
            },
            Err(error) => Err(error),
        }
    }

    /// A new group of `creator` and `others`.
    pub async fn create_group(
        conn: &mut AsyncMysqlConnection,
        creator: &str,
        others: &[&str],
        title: Option<&str>,
        at: NaiveDateTime,
    ) -> Result<Conversation, StoreError> {
        let mut all = Vec::with_capacity(others.len() + 1);
        all.push(creator);
        all.extend_from_slice(others);
        Self::create(conn, GROUP, title, None, creator, &all, at).await
    }

    /// Inserts a conversation and its members in one transaction; `pair`
    /// is a direct conversation's two members, smaller first.
    async fn create(
        conn: &mut AsyncMysqlConnection,
        kind: &str,
        title: Option<&str>,
        pair: Option<(&str, &str)>,
        creator: &str,
        members: &[&str],
        at: NaiveDateTime,
    ) -> Result<Conversation, StoreError> {
        let id = conn
            .transaction(async |conn| {
                diesel::insert_into(conversations::table)
                    .values((
                        conversations::kind.eq(kind),
                        conversations::title.eq(title),
                        conversations::direct_low.eq(pair.map(|(low, _)| low)),
                        conversations::direct_high.eq(pair.map(|(_, high)| high)),
                        conversations::created_by.eq(creator),
                        conversations::created_at.eq(at),
                        conversations::last_activity_at.eq(at),
                    ))
                    .execute(conn)
                    .await?;
                let id = last_insert_id_of(conn).await?;
                insert_members(conn, id, members, at, 0).await?;
                Ok::<_, StoreError>(id)
            })
            .await?;
        Ok(Conversation {
            id,
            kind: kind.into(),
            title: title.map(str::to_owned),
            created_by: creator.into(),
            created_at: at,
            last_message_id: None,
            last_activity_at: at,
        })
    }

    /// `user`'s conversations in `scope`, newest activity first, each with
    /// its last message, members and `user`'s unread count: four queries
    /// for a whole page.
    pub async fn list_for(
        conn: &mut AsyncMysqlConnection,
        user: &str,
        scope: Scope,
    ) -> Result<Vec<Listed>, StoreError> {
        let mut query = conversations::table
            .inner_join(members::table.on(members::conversation_id.eq(conversations::id)))
            .filter(members::user_id.eq(user))
            .into_boxed();
        let limit = match scope {
            Scope::Page { before, limit } => {
                if let Some((at, id)) = before {
                    query = query.filter(
                        conversations::last_activity_at
                            .lt(at)
                            .or(conversations::last_activity_at
                                .eq(at)
                                .and(conversations::id.lt(id))),
                    );
                }
                limit
            }
            Scope::One(id) => {
                query = query.filter(conversations::id.eq(id));
                1
            }
        };
        let rows: Vec<(Conversation, u64)> = query
            .order((
                conversations::last_activity_at.desc(),
                conversations::id.desc(),
            ))
            .limit(limit)
            .select((Conversation::as_select(), members::last_read_message_id))
            .load(conn)
            .await?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<u64> = rows.iter().map(|(c, _)| c.id).collect();
        let last_ids: Vec<u64> = rows.iter().filter_map(|(c, _)| c.last_message_id).collect();
        let mut last_messages: Vec<Message> = if last_ids.is_empty() {
            Vec::new()
        } else {
            messages::table
                .filter(messages::id.eq_any(&last_ids))
                .select(Message::as_select())
                .load(conn)
                .await?
        };
        let unread: Vec<(u64, i64)> = messages::table
            .inner_join(
                members::table.on(members::conversation_id
                    .eq(messages::conversation_id)
                    .and(members::user_id.eq(user))),
            )
            .filter(messages::conversation_id.eq_any(&ids))
            .filter(messages::id.gt(members::last_read_message_id))
            .filter(messages::sender_id.ne(user))
            .filter(messages::deleted_at.is_null())
            .group_by(messages::conversation_id)
            .select((messages::conversation_id, count_star()))
            .load(conn)
            .await?;
        let mut all_members: Vec<Member> = members::table
            .filter(members::conversation_id.eq_any(&ids))
            .order((members::joined_at.asc(), members::user_id.asc()))
            .select(Member::as_select())
            .load(conn)
            .await?;
        Ok(rows
            .into_iter()
            .map(|(conversation, last_read_message_id)| {
                let id = conversation.id;
                let last_message = last_messages
                    .iter()
                    .position(|m| m.conversation_id == id)
                    .map(|i| last_messages.swap_remove(i));
                let unread_count = unread
                    .iter()
                    .find(|(c, _)| *c == id)
                    .map_or(0, |(_, n)| u64::try_from(*n).unwrap_or(0));
                let members = all_members
                    .extract_if(.., |m| m.conversation_id == id)
                    .collect();
                Listed {
                    conversation,
                    last_read_message_id,
                    unread_count,
                    last_message,
                    members,
                }
            })
            .collect())
    }
}

/// Locks the rows of `ids` (sorted), which every change of a
/// conversation's messages or members takes first.
async fn lock_conversations(
    conn: &mut AsyncMysqlConnection,
    ids: &[u64],
) -> Result<(), StoreError> {
    let _: Vec<u64> = conversations::table
        .filter(conversations::id.eq_any(ids))
        .order(conversations::id.asc())
        .select(conversations::id)
        .for_update()
        .load(conn)
        .await?;
    Ok(())
}

async fn insert_members(
    conn: &mut AsyncMysqlConnection,
    conversation: u64,
    users: &[&str],
    at: NaiveDateTime,
    last_read: u64,
) -> Result<(), StoreError> {
    let rows: Vec<_> = users
        .iter()
        .map(|user| {
            (
                members::conversation_id.eq(conversation),
                members::user_id.eq(*user),
                members::joined_at.eq(at),
                members::last_read_message_id.eq(last_read),
            )
        })
        .collect();
    diesel::insert_into(members::table)
        .values(&rows)
        .execute(conn)
        .await?;
    Ok(())
}

impl Member {
    /// The user ids of a conversation's members.
    pub async fn user_ids(
        conn: &mut AsyncMysqlConnection,
        conversation: u64,
    ) -> Result<Vec<String>, StoreError> {
        Ok(members::table
            .filter(members::conversation_id.eq(conversation))
            .select(members::user_id)
            .load(conn)
            .await?)
    }

    /// Every member of a conversation, earliest first.
    pub async fn all(
        conn: &mut AsyncMysqlConnection,
        conversation: u64,
    ) -> Result<Vec<Member>, StoreError> {
        Ok(members::table
            .filter(members::conversation_id.eq(conversation))
            .order((members::joined_at.asc(), members::user_id.asc()))
            .select(Member::as_select())
            .load(conn)
            .await?)
    }

    /// Adds the users among `users` who are not members yet, unless the
    /// conversation would then have more than `max` members. New members
    /// start with everything already sent read, so joining does not
    /// arrive as a wall of unread history.
    pub async fn add(
        conn: &mut AsyncMysqlConnection,
        conversation: u64,
        users: &[&str],
        max: usize,
        at: NaiveDateTime,
    ) -> Result<Added, StoreError> {
        conn.transaction(async |conn| {
            // The conversation's row serialises membership changes, so two
            // concurrent additions cannot both pass the size check.
            let last: Option<u64> = conversations::table
                .find(conversation)
                .select(conversations::last_message_id)
                .for_update()
                .first(conn)
                .await?;
            let existing = Self::user_ids(conn, conversation).await?;
            let mut added: Vec<&str> = Vec::new();
            for user in users {
                if !existing.iter().any(|m| m == user) && !added.contains(user) {
                    added.push(user);
                }
            }
            if existing.len() + added.len() > max {
                return Ok(Added::TooMany);
            }
            if !added.is_empty() {
                insert_members(conn, conversation, &added, at, last.unwrap_or(0)).await?;
            }
            Ok(Added::Done {
                added: added.into_iter().map(str::to_owned).collect(),
            })
        })
        .await
    }

    /// Removes `users` from a conversation if every one of them is a
    /// member; false (and nothing removed) otherwise.
    pub async fn remove(
        conn: &mut AsyncMysqlConnection,
        conversation: u64,
        users: &[&str],
    ) -> Result<bool, StoreError> {
        let mut users = users.to_vec();
        users.sort_unstable();
        users.dedup();
        conn.transaction(async |conn| {
            // Serialised with sends and additions (see `Message::send_all`).
            lock_conversations(conn, &[conversation]).await?;
            let removed = diesel::delete(
                members::table
                    .filter(members::conversation_id.eq(conversation))
                    .filter(members::user_id.eq_any(&users)),
            )
            .execute(conn)
            .await?;
            if removed != users.len() {
                // Someone listed was not a member: undo the rest.
                return Err(StoreError::Query(DieselError::RollbackTransaction));
            }
            Ok(())
        })
        .await
        .map(|()| true)
        .or_else(|error| match error {
            StoreError::Query(DieselError::RollbackTransaction) => Ok(false),
            error => Err(error),
        })
    }

    /// Moves `user`'s read mark forward to `up_to`, at most to the
    /// conversation's last message. None when they are not a member.
    pub async fn mark_read(
        conn: &mut AsyncMysqlConnection,
        conversation_id: u64,
        user: &str,
        up_to: u64,
    ) -> Result<Option<ReadMark>, StoreError> {
        let Some((conversation, member)) =
            Conversation::of_member(conn, conversation_id, user).await?
        else {
            return Ok(None);
        };
        let last = conversation.last_message_id.unwrap_or(0);
        let current = member.last_read_message_id;
        let target = up_to.min(last);
        if target <= current {
            return Ok(Some(ReadMark {
                up_to: current,
                moved: false,
            }));
        }
        // Only forward: a concurrent mark further ahead is kept.
        let moved = diesel::update(
            members::table
                .filter(members::conversation_id.eq(conversation_id))
                .filter(members::user_id.eq(user))
                .filter(members::last_read_message_id.lt(target)),
        )
        .set(members::last_read_message_id.eq(target))
        .execute(conn)
        .await?;
        Ok(Some(ReadMark {
            up_to: target,
            moved: moved > 0,
        }))
    }

    /// Messages of others after `user`'s read mark in one conversation.
    pub async fn unread_count(
        conn: &mut AsyncMysqlConnection,
        conversation: u64,
        user: &str,
    ) -> Result<u64, StoreError> {
        let count: i64 = messages::table
            .inner_join(
                members::table.on(members::conversation_id
                    .eq(messages::conversation_id)
                    .and(members::user_id.eq(user))),
            )
            .filter(messages::conversation_id.eq(conversation))
            .filter(messages::id.gt(members::last_read_message_id))
            .filter(messages::sender_id.ne(user))
            .filter(messages::deleted_at.is_null())
            .select(count_star())
            .first(conn)
            .await?;
        Ok(u64::try_from(count).unwrap_or(0))
    }
}

impl Message {
    /// Stores each message whose sender is a member, all in one
    /// transaction: per message an `INSERT IGNORE ... SELECT` from the
    /// sender's member row (membership checked and the row written in one
    /// statement), the members with the new id, and the conversation's last
    /// message moved forward; one BEGIN and COMMIT for the batch. Messages
    /// are written in conversation order, so two batches lock conversations
    /// in the same order and cannot deadlock on them.
    ///
    /// `IGNORE` only ever skips the unique `client_id` key: every other
    /// value is checked before (lengths, JSON), so it never truncates.
    pub async fn send_all(
        conn: &mut AsyncMysqlConnection,
        batch: &[NewMessage],
    ) -> Result<Vec<Sent>, StoreError> {
        let mut order: Vec<usize> = (0..batch.len()).collect();
        order.sort_by_key(|&i| batch[i].conversation_id);
        let mut conversations: Vec<u64> = order.iter().map(|&i| batch[i].conversation_id).collect();
        conversations.dedup();
        conn.transaction(async |conn| {
            // The conversations' rows first, in id order: membership
            // changes take the same lock, so the members read below are the
            // ones at commit, and a conversation's ids become visible in
            // the order they were given.
            lock_conversations(conn, &conversations).await?;
            let mut stored = vec![None; batch.len()];
            for &i in &order {
                stored[i] = Self::insert(conn, &batch[i]).await?;
            }
            let mut sent = Vec::with_capacity(batch.len());
            for (new, stored) in batch.iter().zip(stored) {
                sent.push(match stored {
                    Some((id, members)) => Sent::Stored {
                        message: Message {
                            id,
                            conversation_id: new.conversation_id,
                            sender_id: new.sender.clone(),
                            body: new.body.clone(),
                            attachments: new.attachments.clone(),
                            client_id: new.client_id.clone(),
                            created_at: new.at,
                            edited_at: None,
                            deleted_at: None,
                        },
                        members,
                    },
                    // Not inserted: a retry of a stored client_id, or not
                    // a member. Looked up in the transaction, so that a
                    // failure here leaves nothing committed to retry.
                    None => match &new.client_id {
                        Some(client_id) => messages::table
                            .filter(messages::conversation_id.eq(new.conversation_id))
                            .filter(messages::sender_id.eq(&new.sender))
                            .filter(messages::client_id.eq(client_id))
                            .select(Message::as_select())
                            .first(conn)
                            .await
                            .optional()?
                            .map_or(Sent::NotMember, Sent::Duplicate),
                        None => Sent::NotMember,
                    },
                });
            }
            Ok::<_, StoreError>(sent)
        })
        .await
    }

    /// One message's statements in `send_all`'s transaction: its id and
    /// the conversation's members, or None when nothing was inserted.
    async fn insert(
        conn: &mut AsyncMysqlConnection,
        new: &NewMessage,
    ) -> Result<Option<(u64, Vec<String>)>, StoreError> {
        let inserted = diesel::insert_or_ignore_into(messages::table)
            .values(
                members::table
                    .filter(members::conversation_id.eq(new.conversation_id))
                    .filter(members::user_id.eq(&new.sender))
                    .select((
                        members::conversation_id,
                        members::user_id,
                        new.body.as_str().into_sql::<Text>(),
                        new.attachments.as_deref().into_sql::<Nullable<Text>>(),
                        new.client_id.as_deref().into_sql::<Nullable<Varchar>>(),
                        new.at.into_sql::<Datetime>(),
                    )),
            )
            .into_columns((
                messages::conversation_id,
                messages::sender_id,
                messages::body,
                messages::attachments,
                messages::client_id,
                messages::created_at,
            ))
            .execute(conn)
            .await?;
        if inserted == 0 {
            return Ok(None);
        }
        // The members, and the new id with them: one round trip for both
        // (`LAST_INSERT_ID()` is this connection's).
        let rows: Vec<(String, u64)> = members::table
            .filter(members::conversation_id.eq(new.conversation_id))
            .select((members::user_id, last_insert_id()))
            .load(conn)
            .await?;
        let id = match rows.as_slice() {
            [(_, id), ..] => *id,
            // The sender's row was there for the INSERT.
            [] => return Err(StoreError::Query(DieselError::RollbackTransaction)),
        };
        // Only forward: a concurrent send with a higher id may have
        // committed first.
        diesel::update(
            conversations::table.find(new.conversation_id).filter(
                conversations::last_message_id
                    .is_null()
                    .or(conversations::last_message_id.lt(id)),
            ),
        )
        .set((
            conversations::last_message_id.eq(id),
            conversations::last_activity_at.eq(new.at),
        ))
        .execute(conn)
        .await?;
        Ok(Some((id, rows.into_iter().map(|(user, _)| user).collect())))
    }

    /// Replaces the body of a message `sender` wrote, unless it was
    /// deleted; the message as it is now, or None when there is no such
    /// message of theirs.
    pub async fn edit(
        conn: &mut AsyncMysqlConnection,
        conversation: u64,
        id: u64,
        sender: &str,
        body: &str,
        at: NaiveDateTime,
    ) -> Result<Option<Message>, StoreError> {
        let changed = diesel::update(Self::own(conversation, id, sender))
            .set((messages::body.eq(body), messages::edited_at.eq(at)))
            .execute(conn)
            .await?;
        if changed == 0 {
            return Ok(None);
        }
        Self::find(conn, id).await
    }

    /// Deletes a message `sender` wrote: its body and attachments are
    /// erased and `deleted_at` set, so the history keeps its place. The
    /// message as it is now (None when there is no such message of theirs,
    /// or it was deleted already).
    pub async fn delete(
        conn: &mut AsyncMysqlConnection,
        conversation: u64,
        id: u64,
        sender: &str,
        at: NaiveDateTime,
    ) -> Result<Option<Message>, StoreError> {
        let changed = diesel::update(Self::own(conversation, id, sender))
            .set((
                messages::body.eq(""),
                messages::attachments.eq(None::<String>),
                messages::deleted_at.eq(at),
            ))
            .execute(conn)
            .await?;
        if changed == 0 {
            return Ok(None);
        }
        Self::find(conn, id).await
    }

    /// A message of `sender` in `conversation` that is not deleted: what
    /// its sender may still change.
    fn own(conversation: u64, id: u64, sender: &str) -> OwnMessage<'_> {
        messages::table
            .filter(messages::id.eq(id))
            .filter(messages::conversation_id.eq(conversation))
            .filter(messages::sender_id.eq(sender))
            .filter(messages::deleted_at.is_null())
    }

    async fn find(conn: &mut AsyncMysqlConnection, id: u64) -> Result<Option<Message>, StoreError> {
        Ok(messages::table
            .find(id)
            .select(Message::as_select())
            .first(conn)
            .await
            .optional()?)
    }

    /// One page of a conversation's messages, newest first, strictly older
    /// than `before`.
    pub async fn page(
        conn: &mut AsyncMysqlConnection,
        conversation: u64,
        before: Option<u64>,
        limit: i64,
    ) -> Result<Vec<Message>, StoreError> {
        Ok(messages::table
            .filter(messages::conversation_id.eq(conversation))
            .filter(messages::id.lt(before.unwrap_or(u64::MAX)))
            .order(messages::id.desc())
            .limit(limit)
            .select(Message::as_select())
            .load(conn)
            .await?)
    }
}
