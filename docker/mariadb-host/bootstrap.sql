-- Users of the test bed. Passwords are the bed's own (see tests/ and
-- scripts/sandbox, which hand them to myha through password_file).
--
-- 'myha' (the cluster's `user`: manager, agents, `myha check`) has the least
-- privileges myha needs on MariaDB 10.11, not ALL (docs/security-privileges.md;
-- each one checked against the error MariaDB gives without it):
--   PROCESS                  information_schema.PROCESSLIST of every account
--                            (the fence's sessions to kill) and INNODB_TRX
--                            (a switchover's long transactions)
--   CONNECTION ADMIN         KILL CONNECTION of other accounts' sessions (fence)
--   READ_ONLY ADMIN          SET GLOBAL read_only (fence, promotion); also lets
--                            this account write on a read-only server (the
--                            flashback of a reinstatement, heartbeats)
--   SLAVE MONITOR            SHOW ALL SLAVES STATUS
--   REPLICATION SLAVE ADMIN  STOP/START SLAVE, CHANGE MASTER, SET GLOBAL
--                            gtid_slave_pos and gtid_strict_mode
--   RELOAD                   RESET SLAVE ALL (promotion), RESET MASTER
--                            (reinstatement)
--   REPLICATION MASTER ADMIN SET GLOBAL rpl_semi_sync_master_* (semi-sync on the
--                            master, its degrade), SET GLOBAL gtid_binlog_state
--                            (reinstatement)
--   BINLOG MONITOR           SHOW BINARY LOGS (reinstatement)
--   REPLICATION SLAVE        mariadb-binlog --read-from-remote-server (the
--                            diverged transactions a reinstatement saves)
--   BINLOG REPLAY            SET SESSION gtid_domain_id (heartbeats in their own
--                            domain), the BINLOG statements of a flashback
--   BINLOG ADMIN             SET SESSION sql_log_bin=0 (the flashback is not
--                            binary-logged)
--   SELECT, INSERT, UPDATE, CREATE on myha.*   the heartbeat table
--   SELECT on mysql.*        only `myha check` (SHOW GRANTS FOR the replication
--                            user needs it); it shows password hashes: drop it
--                            where `myha check` is not run with this account
-- No SUPER, no GRANT OPTION, no FILE, no SHUTDOWN, no DML on application tables
-- (a flashback's row events are applied by BINLOG REPLAY).
CREATE USER 'myha'@'%' IDENTIFIED BY 'myha-admin-pw';
GRANT PROCESS, CONNECTION ADMIN, READ_ONLY ADMIN, SLAVE MONITOR, REPLICATION SLAVE ADMIN,
      RELOAD, REPLICATION MASTER ADMIN, BINLOG MONITOR, REPLICATION SLAVE, BINLOG REPLAY,
      BINLOG ADMIN
  ON *.* TO 'myha'@'%';
GRANT SELECT, INSERT, UPDATE, CREATE ON myha.* TO 'myha'@'%';
GRANT SELECT ON mysql.* TO 'myha'@'%';
CREATE USER 'repl'@'%' IDENTIFIED BY 'myha-repl-pw';
-- 'repl' (the cluster's `replication_user`): a replica's IO thread only.
GRANT REPLICATION SLAVE ON *.* TO 'repl'@'%';
CREATE USER 'app'@'%' IDENTIFIED BY 'myha-app-pw';
GRANT ALL PRIVILEGES ON app.* TO 'app'@'%';
GRANT ALL PRIVILEGES ON sbtest.* TO 'app'@'%';
CREATE DATABASE app;
CREATE DATABASE sbtest;
FLUSH PRIVILEGES;
