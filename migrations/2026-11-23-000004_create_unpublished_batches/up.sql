-- The outbox: one row per committed batch of new notifications (ids
-- first_id..=last_id, consecutive), written in the same transaction as the
-- batch and deleted once every event of the batch reached Redis. A row that
-- stays (the api died between commit and publish, or Redis was away for
-- longer than the publisher retries) is found by the sweep, which
-- republishes the batch. One row per batch rather than a flag per
-- notification keeps the bookkeeping off the hot path.
--
-- A batch is named by its first notification id (ids are never reused), so
-- recording it needs no second LAST_INSERT_ID() round trip.
CREATE TABLE unpublished_batches (
    first_id BIGINT UNSIGNED NOT NULL,
    last_id BIGINT UNSIGNED NOT NULL,
    created_at DATETIME(6) NOT NULL,
    PRIMARY KEY (first_id),
    KEY unpublished_batches_created_at (created_at)
) ENGINE = InnoDB;
