-- Users of the test bed. Passwords are the bed's own (see tests/ and
-- scripts/sandbox, which hand them to myha through password_env/password_file).
CREATE USER 'myha'@'%' IDENTIFIED BY 'myha-admin-pw';
GRANT ALL PRIVILEGES ON *.* TO 'myha'@'%' WITH GRANT OPTION;
CREATE USER 'repl'@'%' IDENTIFIED BY 'myha-repl-pw';
GRANT REPLICATION SLAVE, REPLICATION SLAVE ADMIN, BINLOG MONITOR ON *.* TO 'repl'@'%';
CREATE USER 'app'@'%' IDENTIFIED BY 'myha-app-pw';
GRANT ALL PRIVILEGES ON app.* TO 'app'@'%';
GRANT ALL PRIVILEGES ON sbtest.* TO 'app'@'%';
CREATE DATABASE app;
CREATE DATABASE sbtest;
FLUSH PRIVILEGES;
