ALTER TABLE notifications ADD COLUMN seen_at DATETIME(6) NULL AFTER read_at;
