-- One row per notification per recipient. `id` is the cursor clients page
-- and resume with, so it only ever grows.
--
-- Identifiers use a binary collation: user ids from JWT `sub` are
-- case-sensitive, and `Alice` must never read `alice`'s notifications.
CREATE TABLE notifications (
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    user_id VARCHAR(191) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    type VARCHAR(64) NOT NULL DEFAULT 'generic',
    title VARCHAR(255) NOT NULL DEFAULT '',
    message TEXT NOT NULL,
    link VARCHAR(2048) NULL,
    metadata JSON NULL,
    created_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    read_at DATETIME(6) NULL,
    seen_at DATETIME(6) NULL,
    delivered_at DATETIME(6) NULL,
    source VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
    idempotency_key VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
    PRIMARY KEY (id),
    UNIQUE KEY notifications_source_idempotency_key (source, idempotency_key),
    -- Feed pages: WHERE user_id = ? AND id < ? ORDER BY id DESC.
    KEY notifications_user_feed (user_id, id),
    -- Unread count, unread-only pages and mark-all-read: an index-only range
    -- over (user_id, read_at IS NULL, id).
    KEY notifications_user_unread (user_id, read_at, id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;
