-- One row the api rewrites on the primary every half second while a read
-- replica is configured: how old it reads on the replica is how far the
-- replica lags (the approach of pt-heartbeat; needs no privileges and works
-- the same on MySQL and MariaDB).
CREATE TABLE replica_heartbeat (
  id TINYINT UNSIGNED NOT NULL PRIMARY KEY,
  beat_at DATETIME(6) NOT NULL
) ENGINE=InnoDB;
