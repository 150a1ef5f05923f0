//! `myhad`: the daemons, the agent of one database host, the manager and a
//! router. The operator's `myha agent|manager|router` runs this binary with
//! the same arguments; the CLI itself links none of the daemons.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio::sync::watch;

/// mimalloc instead of glibc's malloc: the manager allocates and frees
/// for every report and probe it handles, thousands a second, and spent
/// about 15% of its time in glibc's allocator under `bench/manager-scale`.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "myhad",
    version,
    about = "The myha daemons (run through `myha agent|manager|router`)"
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
    /// Log format on standard error: `text` (colours only on a terminal)
    /// or `json` (one object per line, for log shippers).
    #[arg(
        long,
        global = true,
        env = "MYHA_LOG_FORMAT",
        value_enum,
        default_value_t = LogFormat::Text
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Daemon,
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// The daemons. Their arguments are the CLI's `myha agent|manager|router`.
#[derive(Subcommand, Debug)]
enum Daemon {
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
}

/// Logs on standard error, filtered by `MYHA_LOG` (default `info`): text
/// with colours only when standard error is a terminal (a log file or the
/// journal gets no escape codes), or JSON.
fn init_tracing(format: LogFormat) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_env("MYHA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => logs.json().with_current_span(false).init(),
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
    }
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

/// A channel that turns true on SIGTERM or SIGINT.
fn shutdown_signal() -> anyhow::Result<watch::Receiver<bool>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = int.recv() => tracing::info!("SIGINT: shutting down"),
        }
        let _ = tx.send(true);
    });
    Ok(rx)
}

/// One message per SIGHUP: the manager reloads its configuration file.
fn hangup_signal() -> anyhow::Result<tokio::sync::mpsc::Receiver<()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            // One pending reload covers every SIGHUP sent before it runs.
            let _ = tx.try_send(());
        }
    });
    Ok(rx)
}

/// Agents and routers read their configuration at start only: a SIGHUP
/// (which would end them by default) is logged and changes nothing.
fn ignore_hangup() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            tracing::warn!("SIGHUP: this daemon reads its configuration only at start; restart it to apply a change");
        }
    });
    Ok(())
}

/// The process the configuration is loaded for: it decides which secrets
/// are read (see docs/security.md). A router without `--cluster` is the
/// router of the file's one cluster.
fn role_of(command: &Daemon, config_path: &Path) -> Result<myha_config::Role, ExitCode> {
    use myha_config::Role;
    Ok(match command {
        Daemon::Agent { host, .. } => Role::Agent(host.clone()),
        Daemon::Manager => Role::Manager,
        Daemon::Router { cluster: Some(c) } => Role::Router(c.clone()),
        Daemon::Router { cluster: None } => {
            // The one cluster of the file: read it without any secret.
            let config = load_config(config_path, &Role::Cli { database: false })
                .or_else(|_| load_config(config_path, &Role::Manager))?;
            match config.clusters.as_slice() {
                [one] => Role::Router(one.name.clone()),
                _ => {
                    eprintln!(
                        "myha: the configuration has several clusters: name one with --cluster"
                    );
                    return Err(ExitCode::from(2));
                }
            }
        }
    })
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let role = match role_of(&cli.command, &cli.config) {
        Ok(r) => r,
        Err(code) => return Ok(code),
    };
    let config = match load_config(&cli.config, &role) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    init_tracing(cli.log_format);
    match cli.command {
        Daemon::Agent { host, listen } => {
            ignore_hangup()?;
            myha_agent::run(config, &host, listen, shutdown_signal()?).await?;
        }
        Daemon::Manager => myha_manager::run(config, shutdown_signal()?, hangup_signal()?).await?,
        Daemon::Router { .. } => {
            let name = match &role {
                myha_config::Role::Router(name) if config.cluster(name).is_some() => name,
                _ => {
                    eprintln!(
                        "myha: no such cluster in {} (see --cluster)",
                        cli.config.display()
                    );
                    return Ok(ExitCode::from(2));
                }
            };
            ignore_hangup()?;
            myha_router::run(config.clone(), name, shutdown_signal()?).await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // rustls with ring for every TLS connection (HTTP APIs and MySQL).
    myha_http::install_crypto_provider();
    // A daemon serves many clients: its soft file limit goes to the hard
    // one (the router raises its own in `myha_router::run`, where it also
    // warns when the hard limit is low).
    if matches!(cli.command, Daemon::Agent { .. } | Daemon::Manager) {
        if let Err(e) = myha_http::raise_nofile_limit() {
            eprintln!("myha: cannot raise the open-file limit: {e}");
        }
    }
    // The router relays bytes: one thread without work stealing costs less
    // CPU per query than a pool that moves tasks between cores.
    // MYHA_ROUTER_THREADS overrides (0 = one per core). The manager uses
    // one worker per core unless MYHA_MANAGER_THREADS says otherwise: one
    // thread costs about a fifth less CPU per cluster (docs/scale.md) but
    // caps reports, probes and detectors at one core, and a call that
    // blocks (a slow disk, an etcd round trip) then holds up all of them.
    let (threads_var, default_threads) = match cli.command {
        Daemon::Router { .. } => (Some("MYHA_ROUTER_THREADS"), 1),
        Daemon::Manager => (Some("MYHA_MANAGER_THREADS"), 0),
        _ => (None, 0),
    };
    let threads = match threads_var.map(|var| (var, std::env::var(var))) {
        Some((var, Ok(v))) => match v.trim().parse::<usize>() {
            Ok(n) => n,
            Err(_) => {
                eprintln!("myha: {var}={v:?} is not a number of threads (0 = one per core)");
                return ExitCode::FAILURE;
            }
        },
        _ => default_threads,
    };
    let built = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        if threads > 1 {
            b.worker_threads(threads);
        }
        b.enable_all().build()
    };
    let runtime = match built {
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
