-- Nothing ever wrote `seen_at`: delivery is `delivered_at` (the client's ack)
-- and reading is `read_at`. A column without a writer only misleads.
ALTER TABLE notifications DROP COLUMN seen_at;
