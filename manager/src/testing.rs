//! Fixtures shared by the manager's unit tests.

/// A two-host cluster `main` (db1, db2) with every credential by hash and
/// every secret from the environment.
pub(crate) const CONFIG: &str = "
manager:
  token_env: MYHA_TOKEN
clusters:
  - name: main
    user: myha
    password_env: MYHA_DB_PASSWORD
    replication_user: repl
    replication_password_env: MYHA_REPL_PASSWORD
hosts:
  - name: db1
    cluster: main
    address: 10.0.0.11
  - name: db2
    cluster: main
    address: 10.0.0.12
agent:
  token_env: MYHA_TOKEN
access:
  - { name: manager, role: manager, token_sha256: 1111111111111111111111111111111111111111111111111111111111111111 }
  - { name: db1, role: agent, host: db1, token_sha256: 2222222222222222222222222222222222222222222222222222222222222222 }
  - { name: db2, role: agent, host: db2, token_sha256: 3333333333333333333333333333333333333333333333333333333333333333 }
";
