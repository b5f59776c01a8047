DROP TABLE connection_logs;
CREATE TABLE connection_logs (
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    user_id VARCHAR(191) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    node VARCHAR(128) NOT NULL,
    session_id VARCHAR(64) NOT NULL,
    event VARCHAR(32) NOT NULL,
    remote_addr VARCHAR(64) NULL,
    user_agent VARCHAR(512) NULL,
    at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    PRIMARY KEY (id),
    KEY connection_logs_user (user_id, at),
    KEY connection_logs_session (session_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;
