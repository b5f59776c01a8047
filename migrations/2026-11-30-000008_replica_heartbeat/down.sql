DROP TABLE replica_heartbeat;
