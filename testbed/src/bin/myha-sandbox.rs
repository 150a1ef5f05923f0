//! `myha-sandbox up [N] [--tls] [--ha]` / `myha-sandbox down`: the demo
//! cluster, a long-lived test bed. Called by `scripts/sandbox`. With
//! `--tls`, every HTTP API is https and MariaDB requires TLS (a CA of the
//! sandbox's own). With `--ha`, three managers on an etcd cluster of three
//! members (docs/ha.md) instead of one manager.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use myha_testbed::{Bed, BedOptions};

const NAME: &str = "myha-sandbox";

fn usage() -> ExitCode {
    eprintln!(
        "usage: myha-sandbox up [N] [--tls] [--ha] --myha-bin PATH --dir DIR | down --dir DIR"
    );
    ExitCode::from(2)
}

fn arg_value(args: &[String], flag: &str) -> Option<String> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1).cloned())
}

fn down(dir: &std::path::Path) {
    // The manager(s) and the router first, then etcd (`--ha`).
    let mut pids: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "pid"))
                .collect()
        })
        .unwrap_or_default();
    pids.sort_by_key(|p| p.to_string_lossy().contains("etcd-"));
    for f in pids {
        if let Ok(pid) = std::fs::read_to_string(&f) {
            let _ = std::process::Command::new("kill").arg(pid.trim()).status();
        }
    }
    // The router (relay: nat) leaves a retired nftables table, named after
    // its writer listener; it goes with the sandbox.
    let config = std::fs::read_to_string(dir.join("myha.yaml")).unwrap_or_default();
    if let Some(listen) = config
        .split("writer_listen: ")
        .nth(1)
        .and_then(|r| r.split([',', ' ']).next())
    {
        std::thread::sleep(std::time::Duration::from_millis(500));
        myha_testbed::delete_nat_table(listen);
    }
    let _ = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "docker ps -aq --filter name=^{NAME}- | xargs -r docker rm -f -v >/dev/null; \
             docker network rm {NAME} >/dev/null 2>&1; true"
        ))
        .status();
    myha_testbed::remove_blackhole_if_unused();
    let _ = std::fs::remove_dir_all(dir);
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(dir) = arg_value(&args, "--dir").map(PathBuf::from) else {
        return usage();
    };
    match args.first().map(String::as_str) {
        Some("down") => {
            down(&dir);
            eprintln!("sandbox removed");
            ExitCode::SUCCESS
        }
        Some("up") => {
            let Some(bin) = arg_value(&args, "--myha-bin") else {
                return usage();
            };
            let hosts = args
                .get(1)
                .and_then(|n| n.parse::<usize>().ok())
                .unwrap_or(3);
            down(&dir);
            let mut opts = BedOptions::new(bin);
            opts.hosts = hosts;
            opts.name = Some(NAME.into());
            opts.dir = Some(dir.clone());
            opts.image_with_agent = arg_value(&args, "--image");
            opts.vip = true;
            opts.router = true;
            // The demo runs as root: its router has the kernel forward
            // connections by NAT (docs/router.md); it says so in its log
            // and falls back to user space where nftables is missing.
            opts.router_extra = ", relay: nat".into();
            opts.tls = args.iter().any(|a| a == "--tls");
            if args.iter().any(|a| a == "--ha") {
                opts.ha_managers = 3;
                opts.ha_direct = true;
            }
            match Bed::start(opts) {
                Ok(bed) => {
                    let config = bed.config_path.clone();
                    let tls = bed.tls;
                    let ha = (0..bed.ha_managers())
                        .map(|i| bed.manager_url_n(i))
                        .collect::<Vec<_>>();
                    if let Some(pid) = bed.detach() {
                        let _ = std::fs::write(dir.join("manager.pid"), pid.to_string());
                    }
                    // Standard output: the config path alone (scripts use it).
                    println!("{}", config.display());
                    let token = dir.join("operator.token");
                    let hosts = dir.join("hosts");
                    eprintln!(
                        "[sandbox] the CLI: export MYHA_CONFIG={}; target/release/myha status",
                        config.display()
                    );
                    eprintln!(
                        "[sandbox]   it presents the operator token in {} (`cli.token_file`, mode 0600)",
                        token.display()
                    );
                    eprintln!(
                        "[sandbox]   each database host sees only {}/<name>/: its copy of the config, its own agent token",
                        hosts.display()
                    );
                    if !ha.is_empty() {
                        eprintln!(
                            "[sandbox]   HA: managers {} on an etcd cluster of 3 members ({}/etcd); `myha status` names the leader",
                            ha.join(", "),
                            dir.display()
                        );
                    }
                    if tls {
                        eprintln!(
                            "[sandbox]   TLS: every API is https and MariaDB requires TLS (the sandbox's CA: {})",
                            dir.join("tls").join("ca.pem").display()
                        );
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("sandbox failed: {e}");
                    down(&dir);
                    ExitCode::FAILURE
                }
            }
        }
        _ => usage(),
    }
}
