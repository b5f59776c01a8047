ALTER TABLE notifications DROP KEY notifications_unpublished, DROP COLUMN published_at;
