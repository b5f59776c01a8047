-- When the notification's event was published on Redis. Rows left NULL
-- (the api died between commit and publish, or Redis was away for longer
-- than the publisher retries) are found and republished by the sweep.
ALTER TABLE notifications
    ADD COLUMN published_at DATETIME(6) NULL,
    ADD KEY notifications_unpublished (published_at, id);
