-- The accounts of a myha cluster on MariaDB 10.11, least privilege
-- (docs/deploy.md and docs/security.md say what each privilege is for).
-- Run as root on EVERY server before replication is set up; the accounts
-- are created outside the binary log, so no server gets transactions of
-- its own. Replace the two passwords and the network (10.0.0.%: the
-- addresses of the manager and database hosts; skip_name_resolve=ON needs
-- addresses, not names).
SET SESSION sql_log_bin = 0;

-- The cluster's `user`: the manager, the agents, `myha check`.
CREATE USER 'myha'@'10.0.0.%' IDENTIFIED BY 'CHANGE-ME-admin';
GRANT PROCESS, CONNECTION ADMIN, READ_ONLY ADMIN, SLAVE MONITOR,
      REPLICATION SLAVE ADMIN, RELOAD, REPLICATION MASTER ADMIN,
      BINLOG MONITOR, REPLICATION SLAVE, BINLOG REPLAY, BINLOG ADMIN
  ON *.* TO 'myha'@'10.0.0.%';
-- The heartbeat table (heartbeat_table: myha.heartbeat), created on first use.
GRANT SELECT, INSERT, UPDATE, CREATE ON myha.* TO 'myha'@'10.0.0.%';
-- Only for `myha check` (it reads the replication account's grants); it
-- shows password hashes: leave it out if `myha check` is not run.
GRANT SELECT ON mysql.* TO 'myha'@'10.0.0.%';

-- The cluster's `replication_user`: a replica's IO thread.
CREATE USER 'repl'@'10.0.0.%' IDENTIFIED BY 'CHANGE-ME-repl';
GRANT REPLICATION SLAVE ON *.* TO 'repl'@'10.0.0.%';

SET SESSION sql_log_bin = 1;
