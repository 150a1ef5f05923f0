//! `myha`: the operator's CLI. `myha agent|manager|router` runs the daemons'
//! binary, `myhad`, found next to this one (or on `PATH`), with the same
//! arguments: the CLI links none of the daemons.
#![forbid(unsafe_code)]

mod check;
mod client;
mod daemon;
mod import_mha;
mod ops;
mod status;
mod token;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "myha",
    version,
    about = "High-availability failover manager for MySQL and MariaDB replication"
)]
struct Cli {
    /// Configuration file.
    #[arg(
        long,
        global = true,
        env = "MYHA_CONFIG",
        default_value = "/etc/myha/myha.yaml"
    )]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the agent of one database host.
    Agent {
        /// This host's name in the configuration.
        #[arg(long, env = "MYHA_HOST")]
        host: String,
        /// Listen address (default 0.0.0.0:<agent_port>).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
    },
    /// Run the manager daemon.
    Manager,
    /// Run a router for one cluster (writer and reader ports, discovery).
    Router {
        /// The cluster (may be omitted when the config has one).
        #[arg(long)]
        cluster: Option<String>,
    },
    /// Show the live topology of every cluster (or one).
    Status {
        /// The cluster (may be omitted when the config has one).
        #[arg(long)]
        cluster: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Validate the configuration and the cluster (like masterha_check_repl, and more).
    Check {
        /// The cluster (may be omitted when the config has one).
        #[arg(long)]
        cluster: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Fail over a dead master by hand, plan one (--dry-run), or acknowledge
    /// the last failover so automatic failover works again (--ack).
    Failover {
        /// The cluster (may be omitted when the config has one).
        #[arg(long)]
        cluster: Option<String>,
        /// Promote this host (it must be eligible).
        #[arg(long)]
        to: Option<String>,
        /// Show what would happen; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Acknowledge the last failover: lift the anti-flapping block.
        #[arg(long, conflicts_with_all = ["to", "dry_run"])]
        ack: bool,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Planned switchover of a healthy master to a replica.
    Switchover {
        /// The cluster (may be omitted when the config has one).
        #[arg(long)]
        cluster: Option<String>,
        /// The replica to promote (default: the best candidate).
        #[arg(long)]
        to: Option<String>,
        /// Run the pre-checks only; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// How long the target may take to reach the old master's final position.
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Rejoin a returning server (former master) as a replica of the master.
    Rejoin {
        /// The server to rejoin.
        host: String,
        /// The cluster (may be omitted when the config has one).
        #[arg(long)]
        cluster: Option<String>,
        /// MariaDB: reinstate a diverged server: the transactions it has
        /// that the master lacks are saved to a file under the manager's
        /// state_dir, undone by binlog flashback, then it rejoins. Refused
        /// (nothing changed) for DDL or statement-format DML.
        #[arg(long)]
        force: bool,
        /// Print the manager's answer as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Make every manager read its configuration file again (as SIGHUP
    /// does): clusters added, removed or changed take effect without a
    /// restart. An invalid file, or an operation in progress on a cluster
    /// it changes, is refused and changes nothing.
    Reload {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Print the shell completion script for `shell` (no configuration
    /// needed): e.g. `myha completions bash > /etc/bash_completion.d/myha`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Write the man pages (myha.1, myha-status.1, ...) into a directory
    /// (no configuration needed).
    Man {
        /// Where to write them.
        #[arg(long, default_value = ".")]
        out: PathBuf,
    },
    /// Make or hash credentials for `access:` (no configuration needed).
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
    /// Convert an MHA configuration (app.cnf over its global defaults) to a
    /// myha.yaml; the settings it cannot map are listed on stderr with
    /// their line (no myha configuration needed).
    ImportMha {
        /// MHA's application file, e.g. /etc/masterha/app1.cnf.
        app: PathBuf,
        /// MHA's global defaults file, e.g. /etc/masterha_default.cnf.
        #[arg(long)]
        global: Option<PathBuf>,
        /// Write the YAML to this new file (never overwritten) instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
        /// The cluster's name (default: the application file's name without .cnf).
        #[arg(long)]
        cluster: Option<String>,
        /// The servers' flavor, which MHA's files do not tell: mysql (assumed) or mariadb.
        #[arg(long)]
        flavor: Option<String>,
    },
    /// The journal of failovers and decisions, oldest first.
    History {
        /// The cluster (may be omitted when the config has one).
        #[arg(long)]
        cluster: Option<String>,
        /// Only events since then: a duration back from now (`2h`, `30m`)
        /// or a UTC time (`2026-12-01T22:00:00Z`).
        #[arg(long, value_parser = ops::parse_since)]
        since: Option<u64>,
        /// At most the latest N events (the manager answers 10,000 at most).
        #[arg(long, alias = "last", default_value_t = 200)]
        limit: usize,
        /// Print JSON instead of lines.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
enum TokenAction {
    /// A new random token (256 bits) and its `token_sha256` for `access:`.
    /// With --out the token goes to a new file (mode 0600) and only the
    /// hash is printed.
    New {
        /// Write the token to this new file (mode 0600) and print only
        /// its hash.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// The `token_sha256` of the token read from standard input.
    Hash,
}

fn load_config(
    path: &std::path::Path,
    role: &myha_config::Role,
) -> Result<myha_config::Config, ExitCode> {
    myha_config::load_or_explain(path, role).map_err(|why| {
        eprintln!("{why}");
        ExitCode::from(2)
    })
}

/// The process the configuration is loaded for: it decides which secrets
/// are read (see docs/security.md).
fn role_of(command: &Command) -> myha_config::Role {
    myha_config::Role::Cli {
        database: matches!(command, Command::Check { .. }),
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Command::Token { action } = &cli.command {
        return token::run(action);
    }
    if let Command::Completions { shell } = &cli.command {
        let mut cmd = <Cli as clap::CommandFactory>::command();
        clap_complete::generate(*shell, &mut cmd, "myha", &mut std::io::stdout());
        return Ok(ExitCode::SUCCESS);
    }
    if let Command::Man { out } = &cli.command {
        let cmd = <Cli as clap::CommandFactory>::command();
        std::fs::create_dir_all(out)?;
        clap_mangen::generate_to(cmd, out)?;
        println!("man pages written to {}", out.display());
        return Ok(ExitCode::SUCCESS);
    }
    if let Command::ImportMha {
        app,
        global,
        out,
        cluster,
        flavor,
    } = &cli.command
    {
        let (global, out) = (global.as_deref(), out.as_deref());
        let (cluster, flavor) = (cluster.as_deref(), flavor.as_deref());
        return Ok(import_mha::run(app, global, out, cluster, flavor));
    }
    if matches!(
        cli.command,
        Command::Agent { .. } | Command::Manager | Command::Router { .. }
    ) {
        return Ok(daemon::exec());
    }
    let config = match load_config(&cli.config, &role_of(&cli.command)) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    match cli.command {
        Command::Token { .. }
        | Command::ImportMha { .. }
        | Command::Completions { .. }
        | Command::Man { .. } => Ok(ExitCode::SUCCESS),
        Command::Agent { .. } | Command::Manager | Command::Router { .. } => Ok(daemon::exec()),
        Command::Status { cluster, json } => status::run(&config, cluster.as_deref(), json).await,
        Command::Check { cluster, json } => check::run(&config, cluster.as_deref(), json).await,
        Command::Failover {
            cluster,
            to,
            dry_run,
            ack,
            json,
        } => {
            ops::failover(
                &config,
                cluster.as_deref(),
                to.as_deref(),
                dry_run,
                ack,
                json,
            )
            .await
        }
        Command::Switchover {
            cluster,
            to,
            dry_run,
            timeout,
            json,
        } => {
            ops::switchover(
                &config,
                cluster.as_deref(),
                to.as_deref(),
                dry_run,
                timeout,
                json,
            )
            .await
        }
        Command::Rejoin {
            host,
            cluster,
            force,
            json,
        } => ops::rejoin(&config, cluster.as_deref(), &host, force, json).await,
        Command::History {
            cluster,
            since,
            limit,
            json,
        } => ops::history(&config, cluster.as_deref(), since, limit, json).await,
        Command::Reload { json } => ops::reload(&config, json).await,
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // rustls with ring for every TLS connection (HTTP APIs and MySQL).
    myha_http::install_crypto_provider();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("myha: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("myha: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every command, subcommand and argument says what it is for.
    #[test]
    fn no_blank_help() {
        fn walk(cmd: &clap::Command, path: &str, blank: &mut Vec<String>) {
            let here = format!("{path} {}", cmd.get_name()).trim().to_string();
            if cmd
                .get_about()
                .is_none_or(|a| a.to_string().trim().is_empty())
            {
                blank.push(here.clone());
            }
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if matches!(id, "help" | "version") {
                    continue;
                }
                if arg
                    .get_help()
                    .is_none_or(|h| h.to_string().trim().is_empty())
                {
                    blank.push(format!("{here} --{id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &here, blank);
            }
        }
        let mut blank = Vec::new();
        walk(&Cli::command(), "", &mut blank);
        assert!(blank.is_empty(), "blank help strings: {blank:#?}");
    }
}
