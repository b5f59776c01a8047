-- One row per connection, written when it is established and completed
-- when it ends, or one row per refused attempt. Nothing wrote the previous
-- event-per-row table, so it is replaced, not migrated.
DROP TABLE connection_logs;
CREATE TABLE connection_logs (
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    session_id CHAR(32) CHARACTER SET ascii NOT NULL,
    -- NULL for an attempt refused before its user was known.
    user_id VARCHAR(191) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
    node VARCHAR(128) NOT NULL,
    -- The gateway process: its rows are closed as node_lost once it stops
    -- renewing its liveness in Redis.
    instance VARCHAR(160) NOT NULL,
    client_address VARCHAR(64) NULL,
    user_agent VARCHAR(512) NULL,
    connected_at DATETIME(6) NOT NULL,
    disconnected_at DATETIME(6) NULL,
    close_code SMALLINT UNSIGNED NULL,
    close_reason VARCHAR(128) NULL,
    -- The refusal's error code; NULL for a connection that was established.
    refused VARCHAR(64) NULL,
    frames_in INT UNSIGNED NOT NULL DEFAULT 0,
    frames_out INT UNSIGNED NOT NULL DEFAULT 0,
    bytes_out BIGINT UNSIGNED NOT NULL DEFAULT 0,
    PRIMARY KEY (id),
    UNIQUE KEY connection_logs_session (session_id),
    KEY connection_logs_user (user_id, connected_at),
    KEY connection_logs_open (instance, disconnected_at),
    KEY connection_logs_age (connected_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;
