-- Chat: conversations, their members and their messages.
--
-- User ids use a binary collation, as in `notifications`: `Alice` is not
-- `alice`.
CREATE TABLE conversations (
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    kind VARCHAR(8) CHARACTER SET ascii NOT NULL,
    title VARCHAR(255) NULL,
    -- Direct conversations only: their two members, the smaller id first.
    -- The unique key makes "one direct conversation per pair" hold under
    -- concurrent creation; groups leave both NULL, which never collide.
    direct_low VARCHAR(191) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
    direct_high VARCHAR(191) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
    created_by VARCHAR(191) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    created_at DATETIME(6) NOT NULL,
    last_message_id BIGINT UNSIGNED NULL,
    -- Creation or the latest message: what "newest activity first" sorts by.
    last_activity_at DATETIME(6) NOT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY conversations_direct_pair (direct_low, direct_high)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

CREATE TABLE conversation_members (
    conversation_id BIGINT UNSIGNED NOT NULL,
    user_id VARCHAR(191) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    joined_at DATETIME(6) NOT NULL,
    -- Messages up to this id count as read by this member.
    last_read_message_id BIGINT UNSIGNED NOT NULL DEFAULT 0,
    PRIMARY KEY (conversation_id, user_id),
    -- A user's conversations.
    KEY conversation_members_user (user_id, conversation_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

CREATE TABLE messages (
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    conversation_id BIGINT UNSIGNED NOT NULL,
    sender_id VARCHAR(191) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    body TEXT NOT NULL,
    -- References to files stored elsewhere: [{url, name, mime_type, size}].
    attachments JSON NULL,
    client_id VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NULL,
    created_at DATETIME(6) NOT NULL,
    edited_at DATETIME(6) NULL,
    deleted_at DATETIME(6) NULL,
    PRIMARY KEY (id),
    -- History pages and unread counts: WHERE conversation_id = ? AND id ...
    KEY messages_conversation (conversation_id, id),
    -- A retried send with the same client_id stores nothing new.
    UNIQUE KEY messages_client_id (conversation_id, sender_id, client_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;
