//! Diesel's view of the tables in `migrations/`.

diesel::table! {
    notifications (id) {
        id -> Unsigned<Bigint>,
        user_id -> Varchar,
        #[sql_name = "type"]
        kind -> Varchar,
        title -> Varchar,
        message -> Text,
        link -> Nullable<Varchar>,
        // JSON on MySQL 8, LONGTEXT with a json_valid check on MariaDB; read
        // and written as text on both so the sender's bytes pass unchanged.
        metadata -> Nullable<Text>,
        created_at -> Datetime,
        read_at -> Nullable<Datetime>,
        delivered_at -> Nullable<Datetime>,
        source -> Nullable<Varchar>,
        idempotency_key -> Nullable<Varchar>,
    }
}

diesel::table! {
    connection_logs (id) {
        id -> Unsigned<Bigint>,
        session_id -> Char,
        user_id -> Nullable<Varchar>,
        node -> Varchar,
        instance -> Varchar,
        client_address -> Nullable<Varchar>,
        user_agent -> Nullable<Varchar>,
        connected_at -> Datetime,
        disconnected_at -> Nullable<Datetime>,
        close_code -> Nullable<Unsigned<Smallint>>,
        close_reason -> Nullable<Varchar>,
        refused -> Nullable<Varchar>,
        frames_in -> Unsigned<Integer>,
        frames_out -> Unsigned<Integer>,
        bytes_out -> Unsigned<Bigint>,
    }
}

diesel::table! {
    idempotency_keys (source, idempotency_key) {
        source -> Varchar,
        idempotency_key -> Varchar,
        request_hash -> Char,
        response -> Nullable<Text>,
        created_at -> Datetime,
    }
}

diesel::table! {
    unpublished_batches (first_id) {
        first_id -> Unsigned<Bigint>,
        last_id -> Unsigned<Bigint>,
        created_at -> Datetime,
    }
}

diesel::table! {
    conversations (id) {
        id -> Unsigned<Bigint>,
        kind -> Varchar,
        title -> Nullable<Varchar>,
        direct_low -> Nullable<Varchar>,
        direct_high -> Nullable<Varchar>,
        created_by -> Varchar,
        created_at -> Datetime,
        last_message_id -> Nullable<Unsigned<Bigint>>,
        last_activity_at -> Datetime,
    }
}

diesel::table! {
    conversation_members (conversation_id, user_id) {
        conversation_id -> Unsigned<Bigint>,
        user_id -> Varchar,
        joined_at -> Datetime,
        last_read_message_id -> Unsigned<Bigint>,
    }
}

diesel::table! {
    messages (id) {
        id -> Unsigned<Bigint>,
        conversation_id -> Unsigned<Bigint>,
        sender_id -> Varchar,
        body -> Text,
        // JSON text, as `notifications.metadata`.
        attachments -> Nullable<Text>,
        client_id -> Nullable<Varchar>,
        created_at -> Datetime,
        edited_at -> Nullable<Datetime>,
        deleted_at -> Nullable<Datetime>,
    }
}

diesel::allow_tables_to_appear_in_same_query!(conversations, conversation_members, messages);
