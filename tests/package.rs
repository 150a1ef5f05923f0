//! The Debian package, its systemd units and the container image.
//!
//! `scripts/package` builds the .deb of the binaries under test. One test
//! reads it (`dpkg-deb`), installs, removes and purges it in a plain
//! Debian 12 container (the `myha` user, the directories and their modes,
//! the shipped `/etc/myha/myha.yaml` loading for every role once its
//! secret files exist), and builds the container image from it.
//!
//! The other runs the units as a production install would: four
//! containers of the test bed's host image (MariaDB 10.11 from Debian)
//! with systemd as PID 1 and the package installed by `dpkg -i`, three
//! database hosts and a manager host on a network of their own. The
//! servers get the package's example settings and grants, the hosts its
//! `/etc/myha/myha.yaml` with only the addresses and the `access:` hashes
//! changed (and `relay: nat`), and then `systemctl start` brings up the
//! agents (`myha-agent@dbN`), the manager and the router: the cluster must
//! be healthy with every agent reporting, each daemon running as `myha`
//! with exactly the capabilities its unit grants, the VIP and the master's
//! lease on db1, the router sending writes to the master, its `relay: nat`
//! refused without the drop-in and working with it, a switchover moving
//! all of that to db2, `systemctl reload` re-reading the file and `systemctl
//! stop` ending the manager cleanly. `systemd-analyze verify` checks each
//! unit where it is installed.
//!
//! systemd runs in unprivileged containers (CAP_SYS_ADMIN for its
//! sandboxing, the cgroup hierarchy writable); its packages are fetched on
//! this machine with apt against the image's own package list, so the
//! containers need no mirror.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The test bed's label: containers and networks of a test process that is
/// gone are removed by the next bed (`myha_testbed::reap_stale`).
const LABEL: &str = "org.myha.testbed";
const CLUSTER: &str = "shop";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run(cmd: &mut Command) -> Result<String, String> {
    let shown = format!("{cmd:?}");
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{shown}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!(
            "{shown} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn docker(args: &[&str]) -> Result<String, String> {
    run(Command::new("docker").args(args))
}

/// `docker exec -i c sh -c script` with `input` on its stdin.
fn exec_in(container: &str, script: &str, input: &str) -> Result<String, String> {
    let mut child = Command::new("docker")
        .args(["exec", "-i", container, "sh", "-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("docker exec {container}: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.as_bytes())
            .map_err(|e| format!("stdin of docker exec {container}: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("docker exec {container}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!(
            "{container}: `{script}` failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Poll `f` until it gives a value, for at most `limit`.
fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Images and directories of earlier runs whose test process is gone
/// (their containers and networks carry the bed's label and go with
/// `myha_testbed::reap_stale`).
fn reap_earlier_runs() {
    let dead =
        |pid: &str| pid.parse::<u32>().is_ok() && !Path::new(&format!("/proc/{pid}")).exists();
    for repo in ["myha-test/systemd-host", "myha-test/image"] {
        let Ok(tags) = docker(&["images", "--format", "{{.Tag}}", repo]) else {
            continue;
        };
        for tag in tags.lines() {
            if tag.strip_prefix('t').is_some_and(dead) {
                let _ = docker(&["rmi", "-f", &format!("{repo}:{tag}")]);
            }
        }
    }
    if let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.strip_prefix("myha-pkg-t").is_some_and(dead) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

/// The .deb of the binaries under test (`scripts/package --bin-dir`), built
/// once per test process in the target's temporary directory.
fn deb() -> &'static Path {
    static DEB: OnceLock<PathBuf> = OnceLock::new();
    DEB.get_or_init(|| {
        let bin = Path::new(common::myha_bin());
        let bin_dir = bin.parent().expect("the binaries' directory");
        let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
        // Packages of earlier test processes that are gone.
        if let Ok(entries) = std::fs::read_dir(tmp) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if let Some(pid) = name.strip_prefix("package-t") {
                    if !Path::new(&format!("/proc/{pid}")).exists() {
                        let _ = std::fs::remove_dir_all(e.path());
                    }
                }
            }
        }
        let out = tmp.join(format!("package-t{}", std::process::id()));
        let profile = if bin.to_string_lossy().contains("/release/") {
            "release"
        } else {
            "debug"
        };
        let started = Instant::now();
        let stdout = run(Command::new(repo().join("scripts/package"))
            .args(["--profile", profile, "--bin-dir"])
            .arg(bin_dir)
            .arg("--out")
            .arg(&out)
            .current_dir(repo()))
        .unwrap_or_else(|e| panic!("scripts/package: {e}"));
        let deb = PathBuf::from(stdout.lines().last().unwrap_or_default());
        assert!(deb.is_file(), "scripts/package printed {stdout:?}");
        eprintln!(
            "package: {} ({} MB) in {:.1} s",
            deb.display(),
            std::fs::metadata(&deb).map(|m| m.len() >> 20).unwrap_or(0),
            started.elapsed().as_secs_f64()
        );
        deb
    })
}

fn version() -> String {
    let out = run(Command::new(common::myha_bin()).arg("--version")).unwrap();
    out.split_whitespace().nth(1).unwrap().to_string()
}

/// The package's control data, files and maintainer scripts; install,
/// remove and purge in a Debian 12 container; the shipped configuration
/// loads for every role; the container image.
#[test]
fn the_package_installs_its_files_user_and_configuration_and_builds_the_image() {
    let deb = deb();
    let deb_s = deb.to_str().unwrap();
    let version = version();

    let info = run(Command::new("dpkg-deb").args(["--info", deb_s])).unwrap();
    for want in [
        "Package: myha",
        &format!("Version: {version}"),
        &format!(
            "Architecture: {}",
            run(Command::new("dpkg").arg("--print-architecture")).unwrap()
        ),
        "Depends: libc6 (>= 2.",
        "passwd",
        "Recommends: iproute2, iptables, arping",
    ] {
        assert!(
            info.contains(want),
            "dpkg-deb --info lacks {want:?}:\n{info}"
        );
    }
    let field = |f: &str| run(Command::new("dpkg-deb").args(["--field", deb_s, f])).unwrap();
    assert_eq!(field("Package"), "myha");

    let contents = run(Command::new("dpkg-deb").args(["--contents", deb_s])).unwrap();
    for path in [
        "./usr/bin/myha",
        "./usr/bin/myhad",
        "./lib/systemd/system/myha-agent@.service",
        "./lib/systemd/system/myha-manager.service",
        "./lib/systemd/system/myha-router@.service",
        "./usr/share/myha/systemd/router-nat.conf",
        "./usr/share/myha/examples/mariadb-server.cnf",
        "./usr/share/myha/examples/grants.sql",
        "./etc/myha/myha.yaml",
        "./etc/default/myha",
        "./usr/share/doc/myha/deploy.md",
        "./usr/share/doc/myha/config.md",
        "./usr/share/doc/myha/copyright",
    ] {
        let line = contents
            .lines()
            .find(|l| l.ends_with(&format!(" {path}")))
            .unwrap_or_else(|| panic!("{path} not in the package:\n{contents}"));
        assert!(line.contains("root/root"), "{line}");
        if path.starts_with("./usr/bin/") {
            assert!(line.starts_with("-rwxr-xr-x"), "{line}");
        }
    }
    // Nothing that belongs to the myha user comes from the archive (the
    // postinst creates those), and no secret is shipped.
    assert!(!contents.contains("./etc/myha/secrets"), "{contents}");
    assert!(!contents.contains("./var/lib/myha"), "{contents}");

    // The control archive: conffiles and the maintainer scripts.
    let control = deb.parent().unwrap().join("control");
    let _ = std::fs::remove_dir_all(&control);
    run(Command::new("dpkg-deb")
        .args(["--control", deb_s])
        .arg(&control))
    .unwrap();
    let read = |f: &str| std::fs::read_to_string(control.join(f)).unwrap();
    assert_eq!(
        read("conffiles").lines().collect::<Vec<_>>(),
        ["/etc/myha/myha.yaml", "/etc/default/myha"]
    );
    assert!(read("postinst").contains("useradd --system"));
    assert!(read("postinst").contains("-m 0700 /etc/myha/secrets"));
    assert!(read("prerm").contains("remove|deconfigure)"));
    let _ = std::fs::remove_dir_all(&control);

    // Install, use, remove and purge in a fresh Debian 12 container
    // without a network (nothing is fetched; connecting fails at once).
    myha_testbed::ensure_images().unwrap();
    let dir = deb.parent().unwrap().display().to_string();
    let script = r#"
set -eu
dpkg -i /pkg/myha_*.deb >/dev/null
echo "user: $(id -un myha) $(getent passwd myha | cut -d: -f6,7)"
stat -c 'mode: %U:%G %a %n' /var/lib/myha /etc/myha /etc/myha/secrets /etc/myha/myha.yaml
# The shipped file's secrets, created as its daemons would read them.
for t in manager agent cli router; do
  runuser -u myha -- myha token new --out /etc/myha/secrets/$t.token >/dev/null 2>&1
done
for p in db-admin db-repl; do
  install -o myha -g myha -m 0600 /dev/null /etc/myha/secrets/$p.pw
  echo "pw-$p" >/etc/myha/secrets/$p.pw
done
set +e
# Each role loads the file; what fails is the network (exit 2 and
# `myha.yaml:LINE:COL` would be a configuration error).
myha status >/tmp/status.out 2>&1; echo "status: $? $(cat /tmp/status.out)"
runuser -u myha -- myha agent --host db2 >/tmp/agent.out 2>&1; echo "agent: $? $(tail -1 /tmp/agent.out)"
runuser -u myha -- timeout --preserve-status -s TERM 3 myha manager >/tmp/manager.out 2>&1; echo "manager: $? $(grep -c 'manager stopped' /tmp/manager.out)"
runuser -u myha -- timeout --preserve-status -s TERM 2 myha router --cluster shop >/tmp/router.out 2>&1; echo "router: $? $(grep -c 'router started' /tmp/router.out)"
ls /var/lib/myha >/dev/null && echo "state: $(ls /var/lib/myha | wc -l) files"
there() { if [ -e "$1" ]; then echo "$1"; else echo "no-$1"; fi; }
dpkg -r myha >/dev/null 2>&1; echo "removed: $? $(there /usr/bin/myha) $(there /etc/myha/myha.yaml) $(there /var/lib/myha)"
dpkg -P myha >/dev/null 2>&1; echo "purged: $? $(there /etc/myha/myha.yaml) $(there /var/lib/myha)"
echo "secrets kept: $(ls /etc/myha/secrets | wc -l)"
"#;
    let out = docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        &format!("{dir}:/pkg:ro"),
        "--entrypoint",
        "sh",
        "debian:bookworm-slim",
        "-c",
        script,
    ])
    .unwrap_or_else(|e| panic!("install in a container: {e}"));
    eprintln!("{out}");
    let line = |prefix: &str| {
        out.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} in:\n{out}"))
            .to_string()
    };
    assert_eq!(line("user:"), "user: myha /var/lib/myha:/usr/sbin/nologin");
    assert!(out.contains("mode: myha:myha 750 /var/lib/myha"), "{out}");
    assert!(out.contains("mode: root:root 755 /etc/myha\n"), "{out}");
    assert!(
        out.contains("mode: myha:myha 700 /etc/myha/secrets"),
        "{out}"
    );
    assert!(
        out.contains("mode: root:root 644 /etc/myha/myha.yaml"),
        "{out}"
    );
    // Not 0, not 2 (a configuration error): the manager is unreachable.
    let status = line("status:");
    assert!(
        !status.starts_with("status: 0 ")
            && !status.starts_with("status: 2 ")
            && status.contains("cannot reach the manager"),
        "{out}"
    );
    let agent = line("agent:");
    assert!(
        agent.starts_with("agent: 1 ") && agent.contains("cannot listen on 10.0.0.12:7071"),
        "{out}"
    );
    // SIGTERM: each daemon ends cleanly (status 0) after it had started.
    assert_eq!(line("manager:"), "manager: 0 1", "{out}");
    assert_eq!(line("router:"), "router: 0 1", "{out}");
    assert!(!out.contains("myha.yaml:"), "a configuration error:\n{out}");
    // Removed: the binaries go, the configuration and the state stay;
    // purged: those go too, the secrets the administrator made stay.
    assert_eq!(
        line("removed:"),
        "removed: 0 no-/usr/bin/myha /etc/myha/myha.yaml /var/lib/myha",
        "{out}"
    );
    assert_eq!(
        line("purged:"),
        "purged: 0 no-/etc/myha/myha.yaml no-/var/lib/myha",
        "{out}"
    );
    assert_eq!(line("secrets kept:"), "secrets kept: 6", "{out}");

    // The container image, from this package.
    let tag = format!("myha-test/image:t{}", std::process::id());
    let started = Instant::now();
    let built = run(Command::new(repo().join("scripts/build-image"))
        .args(["--deb", deb_s, "--tag", &tag])
        .current_dir(repo()));
    let checks = built.and_then(|_| {
        Ok((
            docker(&["run", "--rm", &tag, "--version"])?,
            docker(&["run", "--rm", "--entrypoint", "id", &tag, "-un"])?,
            docker(&["run", "--rm", "--network", "none", &tag, "token", "new"])?,
        ))
    });
    let _ = docker(&["rmi", "-f", &tag]);
    let (ver, user, token) = checks.unwrap_or_else(|e| panic!("the image: {e}"));
    eprintln!(
        "image built and checked in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(ver, format!("myha {version}"));
    assert_eq!(user, "myha");
    assert!(token.contains("token_sha256: "), "{token}");
}

/// Containers with systemd as PID 1 on a network of their own; removed
/// when dropped (kept with MYHA_KEEP_BED=1).
struct Hosts {
    prefix: String,
    network: String,
    /// `10.213.N`: hosts are `.11`-`.13`, the manager `.5`, the VIP `.100`.
    sub: String,
    image: String,
    containers: Vec<String>,
    dir: PathBuf,
}

impl Drop for Hosts {
    fn drop(&mut self) {
        if std::env::var_os("MYHA_KEEP_BED").is_some() {
            eprintln!("MYHA_KEEP_BED: leaving {} in place", self.prefix);
            return;
        }
        if !self.containers.is_empty() {
            let mut args = vec!["rm", "-f", "-v"];
            args.extend(self.containers.iter().map(String::as_str));
            let _ = docker(&args);
        }
        let _ = docker(&["network", "rm", &self.network]);
        let _ = docker(&["rmi", "-f", &self.image]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Hosts {
    fn container(&self, host: &str) -> String {
        format!("{}-{host}", self.prefix)
    }

    fn ip(&self, host: &str) -> String {
        match host {
            "mgr" => format!("{}.5", self.sub),
            h => format!(
                "{}.{}",
                self.sub,
                10 + h.trim_start_matches("db").parse::<u32>().unwrap()
            ),
        }
    }

    /// `sh -c script` in `host`.
    fn sh(&self, host: &str, script: &str) -> Result<String, String> {
        docker(&["exec", &self.container(host), "sh", "-c", script])
    }

    /// Like `sh`, panicking with the hosts' logs on failure.
    fn must(&self, host: &str, script: &str) -> String {
        self.sh(host, script)
            .unwrap_or_else(|e| self.fail(&format!("{host}: {e}")))
    }

    fn sql(&self, host: &str, sql: &str) -> Result<String, String> {
        exec_in(&self.container(host), "mariadb -uroot -N -B", sql)
    }

    /// `myha status --json` on the manager host, this cluster's entry.
    fn status(&self) -> Option<Value> {
        let out = self.sh("mgr", "myha status --json").ok()?;
        let all: Value = serde_json::from_str(&out).ok()?;
        all.get(0).cloned()
    }

    /// The journal of every myha unit and the status, for a failure.
    fn diagnostics(&self) -> String {
        let mut out = String::new();
        for h in ["mgr", "db1", "db2", "db3"] {
            let j = self
                .sh(h, "journalctl -a -o short-monotonic --no-pager -n 80 -u 'myha-*'; systemctl --failed --no-pager")
                .unwrap_or_else(|e| e);
            out.push_str(&format!("--- {h}:\n{j}\n"));
        }
        out.push_str(&format!(
            "--- myha status:\n{}\n",
            self.sh("mgr", "myha status").unwrap_or_else(|e| e)
        ));
        out
    }

    fn fail(&self, msg: &str) -> ! {
        panic!("{msg}\n{}", self.diagnostics())
    }

    /// The main process of `unit` on `host`: its uid, effective
    /// capabilities and no_new_privs, from /proc.
    fn process(&self, host: &str, unit: &str) -> (String, String, String) {
        let status = self.must(
            host,
            &format!("cat /proc/$(systemctl show -p MainPID --value {unit})/status"),
        );
        let field = |k: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{k}:")))
                .map(|v| v.split_whitespace().next().unwrap_or_default().to_string())
                .unwrap_or_default()
        };
        (field("Uid"), field("CapEff"), field("NoNewPrivs"))
    }

    /// The server's writes go where `SELECT @@hostname` through the
    /// router's writer port says, asked from db3.
    fn writer_host(&self) -> Option<String> {
        self.sh(
            "db3",
            &format!(
                "mariadb -h {} -P 6033 -u {} -p{} -N -B -e 'SELECT @@hostname'",
                self.ip("mgr"),
                myha_testbed::APP_USER,
                myha_testbed::APP_PASSWORD
            ),
        )
        .ok()
    }

    fn vip_on(&self, host: &str) -> bool {
        self.sh(host, "ip -4 -o addr show dev eth0")
            .is_ok_and(|o| o.contains(&format!(" {}.100/24 ", self.sub)))
    }

    /// The lease rules in the master's kernel (chain MYHA_LEASE).
    fn lease_rules(&self, host: &str) -> String {
        self.sh(
            host,
            "iptables -t mangle -S MYHA_LEASE 2>/dev/null | grep -e '^-A' || true",
        )
        .unwrap_or_default()
    }
}

/// The packages systemd needs in the bed's host image, fetched here by
/// apt (resolved against the image's own package list) into `dir`.
fn fetch_systemd_debs(dir: &Path) {
    let status = dir.join("status");
    let image_status = docker(&[
        "run",
        "--rm",
        "--entrypoint",
        "cat",
        myha_testbed::IMAGE,
        "/var/lib/dpkg/status",
    ])
    .unwrap();
    std::fs::write(&status, image_status + "\n").unwrap();
    let debs = dir.join("debs");
    std::fs::create_dir_all(debs.join("partial")).unwrap();
    let download = || {
        run(Command::new("apt-get")
            .args([
                "install",
                "--download-only",
                "-y",
                "-q",
                "--no-install-recommends",
            ])
            .arg(format!("-o=Dir::State::status={}", status.display()))
            .arg(format!("-o=Dir::Cache::archives={}", debs.display()))
            .args(["-o=Debug::NoLocking=1", "systemd", "nftables", "conntrack"])
            .env("DEBIAN_FRONTEND", "noninteractive"))
    };
    if let Err(first) = download() {
        eprintln!("apt-get download failed ({first}); apt-get update and again");
        run(Command::new("apt-get").args(["update", "-q"])).unwrap();
        download().unwrap_or_else(|e| panic!("fetching systemd's packages: {e}"));
    }
    let _ = std::fs::remove_dir_all(debs.join("partial"));
    let _ = std::fs::remove_file(debs.join("lock"));
}

/// How systemd gets a writable cgroup hierarchy in a container without
/// `--privileged`: on cgroup v1 (and hybrid) the host's, on v2 a private
/// namespace that the image's entry point remounts read-write.
fn cgroup_args() -> Vec<String> {
    let v2 = run(Command::new("stat").args(["-fc", "%T", "/sys/fs/cgroup"]))
        .is_ok_and(|t| t == "cgroup2fs");
    if v2 {
        vec!["--cgroupns=private".into()]
    } else {
        vec![
            "--cgroupns=host".into(),
            "-v".into(),
            "/sys/fs/cgroup:/sys/fs/cgroup:rw".into(),
        ]
    }
}

const TEST_IMAGE_DOCKERFILE: &str = r#"FROM myha/mariadb-host:10.11
COPY debs /tmp/debs
RUN dpkg -i /tmp/debs/*.deb >/dev/null && rm -rf /tmp/debs
COPY myha.deb /tmp/myha.deb
# The package as an administrator installs it, and its server settings.
RUN dpkg -i /tmp/myha.deb && rm /tmp/myha.deb && \
    cp /usr/share/myha/examples/mariadb-server.cnf /etc/mysql/mariadb.conf.d/60-myha.cnf
COPY init /usr/local/sbin/myha-test-init
STOPSIGNAL SIGRTMIN+3
ENTRYPOINT ["/usr/local/sbin/myha-test-init"]
"#;

const TEST_IMAGE_INIT: &str = r#"#!/bin/sh
# cgroup v2 in a private namespace is mounted read-only without --privileged.
if [ "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ]; then
  mount -o remount,rw /sys/fs/cgroup || echo "cannot remount /sys/fs/cgroup read-write" >&2
fi
exec /lib/systemd/systemd "$@"
"#;

#[test]
fn systemctl_start_of_the_units_brings_up_a_working_cluster() {
    let t0 = Instant::now();
    let deb = deb();
    myha_testbed::ensure_images().unwrap();
    myha_testbed::reap_stale();
    reap_earlier_runs();
    eprintln!(
        "[{:>5.1}s] package and base image ready",
        t0.elapsed().as_secs_f64()
    );
    let pid = std::process::id();
    let dir = std::env::temp_dir().join(format!("myha-pkg-t{pid}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();

    let mut hosts = Hosts {
        prefix: format!("myha-pkg-t{pid}"),
        network: format!("myha-pkg-t{pid}"),
        sub: String::new(),
        image: format!("myha-test/systemd-host:t{pid}"),
        containers: Vec::new(),
        dir: dir.clone(),
    };

    // The image: the bed's host image, systemd, the package.
    let ctx = dir.join("image");
    std::fs::create_dir_all(&ctx).unwrap();
    fetch_systemd_debs(&ctx);
    eprintln!(
        "[{:>5.1}s] systemd's packages fetched",
        t0.elapsed().as_secs_f64()
    );
    std::fs::copy(deb, ctx.join("myha.deb")).unwrap();
    std::fs::write(ctx.join("Dockerfile"), TEST_IMAGE_DOCKERFILE).unwrap();
    std::fs::write(ctx.join("init"), TEST_IMAGE_INIT).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(ctx.join("init"), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    docker(&["build", "-q", "-t", &hosts.image, ctx.to_str().unwrap()])
        .unwrap_or_else(|e| panic!("building the systemd image: {e}"));
    let _ = std::fs::remove_dir_all(&ctx);
    eprintln!(
        "[{:>5.1}s] image {} built",
        t0.elapsed().as_secs_f64(),
        hosts.image
    );

    // A /24 of our own, out of the range beds pick theirs from (20-219).
    for attempt in 0..35u32 {
        let octet = 220 + (pid + attempt) % 35;
        let made = docker(&[
            "network",
            "create",
            "--driver",
            "bridge",
            "--subnet",
            &format!("10.213.{octet}.0/24"),
            "--label",
            &format!("{LABEL}={pid}"),
            &hosts.network,
        ]);
        if made.is_ok() {
            hosts.sub = format!("10.213.{octet}");
            break;
        }
    }
    assert!(!hosts.sub.is_empty(), "no free 10.213.220-254.0/24 subnet");

    // Four hosts, systemd as PID 1. The manager host runs no MariaDB.
    for (i, name) in ["db1", "db2", "db3", "mgr"].iter().enumerate() {
        let hd = dir.join(name);
        std::fs::create_dir_all(&hd).unwrap();
        let cnf = hd.join("91-host.cnf");
        std::fs::write(
            &cnf,
            format!(
                "[mariadbd]\nserver_id = {}\nreport_host = {name}\ninnodb_buffer_pool_size = 64M\nperformance_schema = OFF\n",
                i + 1
            ),
        )
        .unwrap();
        let container = hosts.container(name);
        let ip = hosts.ip(name);
        let label = format!("{LABEL}={pid}");
        let mount = format!("{}:/etc/mysql/mariadb.conf.d/91-host.cnf:ro", cnf.display());
        let mut args: Vec<String> = [
            "run",
            "-d",
            "--name",
            &container,
            "--hostname",
            name,
            "--network",
            &hosts.network,
            "--ip",
            &ip,
            "--label",
            &label,
            "--cap-add",
            "SYS_ADMIN",
            "--cap-add",
            "NET_ADMIN",
            "--cap-add",
            "NET_RAW",
            "--security-opt",
            "seccomp=unconfined",
            "--security-opt",
            "apparmor=unconfined",
            "--tmpfs",
            "/run",
            "--tmpfs",
            "/run/lock",
            "-v",
            &mount,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(cgroup_args());
        args.push(hosts.image.clone());
        if *name == "mgr" {
            args.extend([
                "systemd.mask=mariadb.service".into(),
                "systemd.mask=mariadb.socket".into(),
            ]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        docker(&args).unwrap_or_else(|e| hosts.fail(&format!("starting {name}: {e}")));
        hosts.containers.push(container);
    }
    for h in ["db1", "db2", "db3", "mgr"] {
        let state = wait_for(Duration::from_secs(60), || {
            let s = hosts
                .sh(h, "timeout 5 systemctl is-system-running --wait || true")
                .ok()?;
            (s == "running" || s == "degraded").then_some(s)
        })
        .unwrap_or_else(|| {
            let logs = docker(&["logs", "--tail", "40", &hosts.container(h)]).unwrap_or_else(|e| e);
            hosts.fail(&format!("systemd did not come up on {h}: {logs}"))
        });
        if state.contains("degraded") {
            eprintln!("{h}: {}", hosts.must(h, "systemctl --failed --no-pager"));
        }
    }
    eprintln!(
        "[{:>5.1}s] systemd up on 4 hosts",
        t0.elapsed().as_secs_f64()
    );

    // The servers: the package's grants (least privilege) replace the
    // bed's accounts, outside the binary log; db1 the master, semi-sync.
    let admin_pw = myha_testbed::new_token().unwrap();
    let repl_pw = myha_testbed::new_token().unwrap();
    let grants = hosts
        .must("db1", "cat /usr/share/myha/examples/grants.sql")
        .replace("10.0.0.%", &format!("{}.%", hosts.sub))
        .replace("CHANGE-ME-admin", &admin_pw)
        .replace("CHANGE-ME-repl", &repl_pw);
    for h in ["db1", "db2", "db3"] {
        wait_for(Duration::from_secs(60), || hosts.sql(h, "SELECT 1").ok())
            .unwrap_or_else(|| hosts.fail(&format!("mariadb on {h} does not answer")));
        let setup = format!(
            "SET SESSION sql_log_bin = 0;\nDROP USER IF EXISTS 'myha'@'%';\nDROP USER IF EXISTS 'repl'@'%';\n{grants}"
        );
        hosts
            .sql(h, &setup)
            .unwrap_or_else(|e| hosts.fail(&format!("grants on {h}: {e}")));
    }
    hosts
        .sql(
            "db1",
            "SET GLOBAL read_only = OFF; SET GLOBAL rpl_semi_sync_master_enabled = ON",
        )
        .unwrap();
    for h in ["db2", "db3"] {
        hosts
            .sql(
                h,
                &format!(
                    "CHANGE MASTER TO MASTER_HOST='{}', MASTER_PORT=3306, MASTER_USER='repl', \
                     MASTER_PASSWORD='{repl_pw}', MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1, \
                     MASTER_HEARTBEAT_PERIOD=0.5; START SLAVE",
                    hosts.ip("db1")
                ),
            )
            .unwrap_or_else(|e| hosts.fail(&format!("replication on {h}: {e}")));
    }
    for h in ["db2", "db3"] {
        wait_for(Duration::from_secs(30), || {
            let s = hosts
                .sh(h, "mariadb -uroot -e 'SHOW SLAVE STATUS\\G'")
                .ok()?;
            (s.contains("Slave_IO_Running: Yes") && s.contains("Slave_SQL_Running: Yes"))
                .then_some(())
        })
        .unwrap_or_else(|| {
            let st = hosts
                .sh(h, "mariadb -uroot -e 'SHOW SLAVE STATUS\\G'")
                .unwrap_or_else(|e| e);
            hosts.fail(&format!("{h} does not replicate from db1:\n{st}"))
        });
    }

    // Secrets as the install guide makes them: tokens by `myha token new`
    // as the myha user, passwords in myha-owned 0600 files.
    let token = |h: &str, name: &str| {
        let out = hosts.must(
            h,
            &format!("runuser -u myha -- myha token new --out /etc/myha/secrets/{name}.token 2>/dev/null"),
        );
        out.strip_prefix("token_sha256: ")
            .unwrap_or_else(|| panic!("myha token new printed {out:?}"))
            .to_string()
    };
    let password = |h: &str, name: &str, pw: &str| {
        hosts.must(
            h,
            &format!(
                "f=/etc/myha/secrets/{name}.pw; install -o myha -g myha -m 0600 /dev/null $f && printf '%s\\n' '{pw}' >$f"
            ),
        );
    };
    let mut access = String::from("access:\n");
    for (name, role) in [
        ("manager", "manager"),
        ("cli", "operator"),
        ("router", "router"),
    ] {
        access.push_str(&format!(
            "  - {{ name: {name}, role: {role}, token_sha256: {} }}\n",
            token("mgr", name)
        ));
    }
    password("mgr", "db-admin", &admin_pw);
    password("mgr", "db-repl", &repl_pw);
    for h in ["db1", "db2", "db3"] {
        access.push_str(&format!(
            "  - {{ name: agent-{h}, role: agent, host: {h}, token_sha256: {} }}\n",
            token(h, "agent")
        ));
        // An agent reads the admin password, never the replication one.
        password(h, "db-admin", &admin_pw);
    }

    // The shipped /etc/myha/myha.yaml with this network's addresses, the
    // real hashes and `relay: nat`; the same file on every host.
    let shipped = hosts.must("mgr", "cat /etc/myha/myha.yaml");
    let (head, _) = shipped
        .split_once("\naccess:\n")
        .expect("the shipped file ends with access:");
    assert_eq!(shipped.matches("relay: userspace").count(), 1);
    let config = format!("{head}\n{access}")
        .replace("10.0.0.", &format!("{}.", hosts.sub))
        .replace("relay: userspace", "relay: nat");
    for h in ["mgr", "db1", "db2", "db3"] {
        exec_in(
            &hosts.container(h),
            "cat >/etc/myha/myha.yaml && chmod 0644 /etc/myha/myha.yaml",
            &config,
        )
        .unwrap();
    }

    // The units, verified where they are installed.
    for (h, units) in [
        (
            "mgr",
            format!("myha-manager.service myha-router@{CLUSTER}.service"),
        ),
        ("db1", "myha-agent@db1.service".to_string()),
    ] {
        let out = hosts
            .sh(h, &format!("systemd-analyze verify {units} 2>&1"))
            .unwrap_or_else(|e| hosts.fail(&format!("systemd-analyze verify {units}: {e}")));
        assert!(
            !out.to_lowercase().contains("myha"),
            "systemd-analyze verify {units}:\n{out}"
        );
    }

    // systemctl start.
    let started = Instant::now();
    for h in ["db1", "db2", "db3"] {
        hosts.must(h, &format!("systemctl start myha-agent@{h}"));
    }
    hosts.must(
        "mgr",
        &format!("systemctl start myha-manager myha-router@{CLUSTER}"),
    );
    let healthy = |master: &str| {
        let st = hosts.status()?;
        let servers = st["servers"].as_array()?;
        let ok = st["master"] == master
            && st["epoch_master"] == master
            && st["verdict"] == "healthy"
            && servers.len() == 3
            && servers.iter().all(|s| {
                s["mysqld_up"] == true
                    && s["host_reachable"] == true
                    // Each agent reports, and sees its mysqld in /proc.
                    && s["agent"]["reachable"] == true
                    && s["agent"]["mysqld_process"] == true
                    && (s["name"] == master
                        || (s["role"] == "replica"
                            && s["io_running"] == "running"
                            && s["sql_running"] == "running"))
            });
        ok.then_some(st)
    };
    wait_for(Duration::from_secs(60), || healthy("db1"))
        .unwrap_or_else(|| hosts.fail("the cluster did not become healthy with db1 master"));
    eprintln!(
        "[{:>5.1}s] healthy {:.1} s after systemctl start",
        t0.elapsed().as_secs_f64(),
        started.elapsed().as_secs_f64()
    );

    // Each daemon: the myha user, the capabilities of its unit, no new
    // privileges.
    let uid = hosts.must("mgr", "id -u myha");
    let nat_cap = "0000000000001000"; // CAP_NET_ADMIN
    let agent_caps = "0000000000003000"; // CAP_NET_ADMIN, CAP_NET_RAW
    let none = "0000000000000000";
    assert_eq!(
        hosts.process("mgr", "myha-manager"),
        (uid.clone(), none.into(), "1".into())
    );
    assert_eq!(
        hosts.process("mgr", &format!("myha-router@{CLUSTER}")),
        (uid.clone(), none.into(), "1".into())
    );
    for h in ["db1", "db2", "db3"] {
        assert_eq!(
            hosts.process(h, &format!("myha-agent@{h}")),
            (uid.clone(), agent_caps.into(), "1".into()),
            "{h}"
        );
    }

    // The master's agent, as myha: the VIP (netlink, arping) and the
    // lease (iptables) on db1; the router sends writes to db1.
    wait_for(Duration::from_secs(20), || {
        (hosts.vip_on("db1") && hosts.lease_rules("db1").contains("--datestop")).then_some(())
    })
    .unwrap_or_else(|| {
        hosts.fail(&format!(
            "no VIP or lease on db1: lease rules {:?}",
            hosts.lease_rules("db1")
        ))
    });
    assert!(!hosts.vip_on("db2") && !hosts.vip_on("db3"));
    let arp = hosts.must("db1", "journalctl -a -o cat --no-pager -u myha-agent@db1");
    assert!(!arp.contains("Operation not permitted"), "{arp}");
    wait_for(Duration::from_secs(20), || {
        (hosts.writer_host()? == "db1").then_some(())
    })
    .unwrap_or_else(|| hosts.fail("the router's writer port does not reach db1"));

    // `relay: nat` needs CAP_NET_ADMIN: refused by the plain unit...
    let router_log = || {
        hosts.must(
            "mgr",
            &format!("journalctl -a -o cat --no-pager -u myha-router@{CLUSTER}"),
        )
    };
    assert!(
        router_log().contains("relay: nat is unavailable here; relaying in user space"),
        "{}",
        router_log()
    );
    assert!(!hosts.must("mgr", "nft list tables").contains("myha_router"));
    // ...and granted by the package's drop-in.
    hosts.must(
        "mgr",
        &format!(
            "install -D -m 0644 /usr/share/myha/systemd/router-nat.conf \
             /etc/systemd/system/myha-router@{CLUSTER}.service.d/nat.conf && \
             systemctl daemon-reload && systemctl restart myha-router@{CLUSTER}"
        ),
    );
    let verify = hosts.must(
        "mgr",
        &format!("systemd-analyze verify myha-router@{CLUSTER}.service 2>&1"),
    );
    assert!(!verify.to_lowercase().contains("myha"), "{verify}");
    assert_eq!(
        hosts.process("mgr", &format!("myha-router@{CLUSTER}")),
        (uid.clone(), nat_cap.into(), "1".into())
    );
    wait_for(Duration::from_secs(20), || {
        hosts
            .must("mgr", "nft list tables")
            .contains("myha_router")
            .then_some(())
    })
    .unwrap_or_else(|| hosts.fail("the router wrote no nftables table with the drop-in"));
    assert!(
        router_log().contains("relay: nat (nftables)"),
        "{}",
        router_log()
    );
    wait_for(Duration::from_secs(20), || {
        (hosts.writer_host()? == "db1").then_some(())
    })
    .unwrap_or_else(|| hosts.fail("the nat router's writer port does not reach db1"));

    // A switchover moves the master, the VIP, the lease and the writes.
    hosts
        .sh("mgr", "myha switchover --to db2")
        .unwrap_or_else(|e| hosts.fail(&format!("switchover: {e}")));
    wait_for(Duration::from_secs(30), || healthy("db2"))
        .unwrap_or_else(|| hosts.fail("not healthy with db2 master after the switchover"));
    wait_for(Duration::from_secs(20), || {
        (hosts.vip_on("db2")
            && !hosts.vip_on("db1")
            && hosts.lease_rules("db2").contains("--datestop")
            && hosts.lease_rules("db1").is_empty())
        .then_some(())
    })
    .unwrap_or_else(|| {
        hosts.fail(&format!(
            "VIP and lease did not move to db2: lease db1 {:?}, db2 {:?}",
            hosts.lease_rules("db1"),
            hosts.lease_rules("db2")
        ))
    });
    wait_for(Duration::from_secs(20), || {
        (hosts.writer_host()? == "db2").then_some(())
    })
    .unwrap_or_else(|| hosts.fail("the router's writer port does not follow to db2"));
    eprintln!(
        "[{:>5.1}s] switched over to db2",
        t0.elapsed().as_secs_f64()
    );

    // systemctl reload: SIGHUP, the file read again.
    hosts.must("mgr", "systemctl reload myha-manager");
    wait_for(Duration::from_secs(10), || {
        hosts
            .must("mgr", "journalctl -a -o cat --no-pager -u myha-manager")
            .contains("configuration reloaded")
            .then_some(())
    })
    .unwrap_or_else(|| hosts.fail("no `configuration reloaded` after systemctl reload"));
    assert!(
        healthy("db2").is_some() || wait_for(Duration::from_secs(10), || healthy("db2")).is_some()
    );

    // systemctl stop: SIGTERM, a clean exit well within TimeoutStopSec.
    for (h, unit) in [
        ("mgr", format!("myha-router@{CLUSTER}")),
        ("mgr", "myha-manager".to_string()),
        ("db3", "myha-agent@db3".to_string()),
    ] {
        let at = Instant::now();
        hosts.must(h, &format!("systemctl stop {unit}"));
        let took = at.elapsed();
        let show = |p: &str| hosts.must(h, &format!("systemctl show -p {p} --value {unit}"));
        assert_eq!(
            (show("Result"), show("ExecMainStatus")),
            ("success".to_string(), "0".to_string()),
            "{unit} after stop"
        );
        assert!(
            took < Duration::from_secs(10),
            "{unit} took {took:?} to stop"
        );
    }
    eprintln!("[{:>5.1}s] done", t0.elapsed().as_secs_f64());
}
