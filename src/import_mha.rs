//! `myha import-mha`: an MHA configuration (the application file, e.g.
//! `/etc/masterha/app1.cnf`, over the global defaults file
//! `/etc/masterha_default.cnf`) turned into a `myha.yaml`.
//!
//! The files are read as MHA reads them (Config::Tiny, then MHA::Config):
//! `[section]` headers, `key=value` lines, whole-line `#` and `;` comments
//! and ` ; ` inline comments; a repeated key keeps its last value; the
//! global file gives only `[server default]`, the application file's
//! `[server default]` overrides it and applies to every `[serverN]`, whose
//! own values win; servers are ordered by the number in their section
//! name. Every value keeps its file and line.
//!
//! What maps: the servers (`hostname`, `ip`, `port`, `candidate_master`,
//! `no_master`) to `hosts:`; `user`, `repl_user` to the cluster; `password`
//! and `repl_password` to secret files the operator writes (never copied);
//! `ping_interval` to `manager.probe_interval` and `master_down_after`; the
//! scripts to `hooks:`. Everything else is listed as `file:line:
//! key=value: why`. Malformed input (a line that is not `key=value`, a
//! server without `hostname`, the same server twice, ...) is an error with
//! its location.
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

/// One MHA file's text and the name it is reported under.
pub(crate) struct Input {
    pub path: String,
    pub text: String,
}

/// Choices the MHA files cannot tell.
pub(crate) struct Options {
    /// The cluster's name (default: the application file's name without
    /// `.cnf`, which is MHA's application name).
    pub cluster: Option<String>,
    /// `mysql` or `mariadb`; `None`: `mysql`, assumed.
    pub flavor: Option<String>,
}

/// A converted configuration.
pub(crate) struct Output {
    pub yaml: String,
    /// `file:line: key=value: why`, in file and line order.
    pub unmapped: Vec<String>,
    /// What the operator must still do before `myha check` passes.
    pub todo: Vec<String>,
}

/// An error in the input, with its place: `file:line: message`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Located {
    pub file: String,
    pub line: Option<usize>,
    pub message: String,
}

impl std::fmt::Display for Located {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.file, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// `myha import-mha`: 0 when converted (even with settings not mapped),
/// 2 with a located error for malformed or unreadable input.
pub(crate) fn run(
    app: &Path,
    global: Option<&Path>,
    out: Option<&Path>,
    cluster: Option<&str>,
    flavor: Option<&str>,
) -> ExitCode {
    let read = |p: &Path| -> Result<Input, Located> {
        std::fs::read_to_string(p)
            .map(|text| Input {
                path: p.display().to_string(),
                text,
            })
            .map_err(|e| Located {
                file: p.display().to_string(),
                line: None,
                message: format!("cannot read: {e}"),
            })
    };
    let inputs = read(app).and_then(|a| Ok((a, global.map(read).transpose()?)));
    let (app_in, global_in) = match inputs {
        Ok(x) => x,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let opts = Options {
        cluster: cluster.map(str::to_owned),
        flavor: flavor.map(str::to_owned),
    };
    let output = match convert(&app_in, global_in.as_ref(), &opts) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            eprintln!("myha: nothing was converted");
            return ExitCode::from(2);
        }
    };
    match out {
        None => print!("{}", output.yaml),
        Some(path) => {
            if let Err(e) = write_new(path, &output.yaml) {
                eprintln!("myha: {e}");
                return ExitCode::from(2);
            }
            eprintln!("myha: wrote {}", path.display());
        }
    }
    if global.is_none() && Path::new(DEFAULT_GLOBAL).exists() {
        eprintln!(
            "myha: note: {DEFAULT_GLOBAL} exists and MHA reads it under every application \
             file: add --global {DEFAULT_GLOBAL} if this application used it"
        );
    }
    if output.unmapped.is_empty() {
        eprintln!("myha: every MHA setting was mapped");
    } else {
        eprintln!(
            "myha: {} MHA setting(s) not mapped (file:line: key=value: why):",
            output.unmapped.len()
        );
        for line in &output.unmapped {
            eprintln!("{line}");
        }
    }
    eprintln!("myha: before `myha check` passes:");
    for (i, step) in output.todo.iter().enumerate() {
        eprintln!("  {}. {step}", i + 1);
    }
    ExitCode::SUCCESS
}

/// MHA's global file when `--global_conf` is not given.
const DEFAULT_GLOBAL: &str = "/etc/masterha_default.cnf";

/// Creates `path` with `text`; an existing file is never overwritten.
fn write_new(path: &Path, text: &str) -> Result<(), String> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => {
                format!("{} exists: not overwritten", path.display())
            }
            _ => format!("cannot create {}: {e}", path.display()),
        })?;
    file.write_all(text.as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

// ---- the INI format, as Config::Tiny reads it ----------------------------

/// One `key=value` line.
#[derive(Debug, Clone)]
struct Setting {
    key: String,
    /// As written (after Config::Tiny's trimming and inline comments).
    raw: String,
    file: usize,
    line: usize,
}

impl Setting {
    /// The value as MHA uses it: one pair of surrounding quotes removed
    /// (`s/^['"]?(.*)['"]$/$1/`).
    fn value(&self) -> &str {
        unquote(&self.raw)
    }
}

fn unquote(v: &str) -> &str {
    match v.strip_suffix(['"', '\'']) {
        Some(rest) => rest.strip_prefix(['"', '\'']).unwrap_or(rest),
        None => v,
    }
}

/// Perl's truth of a string: false when empty or `0`.
fn truthy(v: &str) -> bool {
    !v.is_empty() && v != "0"
}

#[derive(Debug)]
struct Section {
    name: String,
    line: usize,
    /// In file order, repeated keys included.
    settings: Vec<Setting>,
}

#[derive(Debug)]
struct Ini {
    /// Settings before the first section header.
    root: Vec<Setting>,
    /// Sections in order of first appearance; a repeated header continues
    /// its section, as in Config::Tiny.
    sections: Vec<Section>,
}

/// Parses one file as Config::Tiny does; a line that is neither a comment,
/// a `[section]` nor `key=value` is an error with its line. The line itself
/// is not echoed: it might hold a password.
fn parse_ini(text: &str, file: usize, path: &str) -> Result<Ini, Located> {
    let mut ini = Ini {
        root: Vec::new(),
        sections: Vec::new(),
    };
    let mut current: Option<usize> = None;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    for (i, line) in text
        .split("\r\n")
        .flat_map(|l| l.split(['\n', '\r']))
        .enumerate()
    {
        let number = i + 1;
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        let line = strip_inline_comment(line);
        let t = line.trim();
        if let Some(inner) = t.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            let name = inner.trim();
            if name.is_empty() {
                return Err(Located {
                    file: path.to_owned(),
                    line: Some(number),
                    message: "empty section name `[]`".into(),
                });
            }
            current = Some(match ini.sections.iter().position(|s| s.name == name) {
                Some(at) => at,
                None => {
                    ini.sections.push(Section {
                        name: name.to_owned(),
                        line: number,
                        settings: Vec::new(),
                    });
                    ini.sections.len() - 1
                }
            });
            continue;
        }
        let Some((key, value)) = t.split_once('=') else {
            return Err(Located {
                file: path.to_owned(),
                line: Some(number),
                message: "not `key=value`, a `[section]` header or a comment".into(),
            });
        };
        let key = key.trim();
        if key.is_empty() {
            return Err(Located {
                file: path.to_owned(),
                line: Some(number),
                message: "`=value` without a key".into(),
            });
        }
        let setting = Setting {
            key: key.to_owned(),
            raw: value.trim().to_owned(),
            file,
            line: number,
        };
        match current {
            Some(at) => ini.sections[at].settings.push(setting),
            None => ini.root.push(setting),
        }
    }
    Ok(ini)
}

/// Config::Tiny's `s/\s\;\s.+$//`: from the first ` ; ` (whitespace on both
/// sides, something after) to the end of the line.
fn strip_inline_comment(line: &str) -> &str {
    let chars: Vec<(usize, char)> = line.char_indices().collect();
    for w in 1..chars.len().saturating_sub(2) {
        if chars[w].1 == ';' && chars[w - 1].1.is_whitespace() && chars[w + 1].1.is_whitespace() {
            return &line[..chars[w - 1].0];
        }
    }
    line
}

// ---- MHA's parameters ----------------------------------------------------

/// Parameters MHA reads only from a server's own section: in `[server
/// default]` it ignores them.
const LOCAL_ONLY: &[&str] = &[
    "hostname",
    "ip",
    "candidate_master",
    "no_master",
    "ignore_fail",
    "skip_init_ssh_check",
    "node_label",
    "ssh_host",
    "ssh_ip",
];

/// Parameters that become a myha key (or part of one).
const MAPPED: &[&str] = &[
    "hostname",
    "ip",
    "port",
    "candidate_master",
    "no_master",
    "user",
    "password",
    "repl_user",
    "repl_password",
    "ping_interval",
    "master_ip_failover_script",
    "master_ip_online_change_script",
    "shutdown_script",
    "report_script",
];

fn is_secret(key: &str) -> bool {
    key.contains("password") || key.contains("passwd")
}

/// Why an MHA parameter has no myha key (`None` for the mapped ones).
fn why_unmapped(key: &str) -> Option<&'static str> {
    if MAPPED.contains(&key) {
        return None;
    }
    Some(match key {
        "ssh_user"
        | "ssh_host"
        | "ssh_ip"
        | "ssh_port"
        | "ssh_connection_timeout"
        | "ssh_options"
        | "skip_init_ssh_check" => {
            "myha needs no SSH: its agent runs on each database host (`myha agent`) and the \
             manager talks to it over HTTP"
        }
        "remote_workdir" => {
            "not needed: myha copies no files to the database hosts (no saved binlogs, no \
             relay-log diffs)"
        }
        "master_binlog_dir" => {
            "not needed: myha never reads the dead master's binlog files; with GTID it catches \
             the candidate up from the most advanced replica, and semi-sync keeps every \
             acknowledged commit on a replica"
        }
        "handle_raw_binlog" | "disable_log_bin" => {
            "not needed: myha applies no binlog or relay-log diffs itself; the replicas' SQL \
             threads do, by GTID"
        }
        "master_pid_file" => {
            "not needed: the master's agent sees on its own host whether mysqld runs (passed to \
             shutdown_script only when that is set)"
        }
        "manager_workdir" => {
            "the manager keeps its state in `manager.state_dir` (default /var/lib/myha); MHA's \
             *.failover.complete guard is `failover_block_period` (default 10m)"
        }
        "manager_log" => {
            "the daemons log to standard error (journald under systemd); every failover step is \
             in `myha history`"
        }
        "log_level" => "set in the environment of the daemons: MYHA_LOG=debug",
        "client_bindir" | "client_libdir" => {
            "not needed: myha runs no MySQL client programs (mysqlbinlog, mysql)"
        }
        "check_repl_delay" => {
            "myha never promotes a replica lagging more than `max_lag` (default 10s), with no \
             exception for candidates: raise the cluster's `max_lag` for a similar effect"
        }
        "check_repl_filter" => {
            "always on: `myha check` fails when the servers' replication filters differ (check \
             `filters`)"
        }
        "latest_priority" => {
            "no equivalent: myha promotes the most advanced eligible replica; \
             `candidate_master`, `priority` and file order only break ties"
        }
        "multi_tier_slave" => {
            "myha manages a master and its direct replicas: a server replicating from a replica \
             fails `myha check` (check `replicates`); leave lower tiers out of `hosts`"
        }
        "ignore_fail" => {
            "not needed: a broken replica never blocks a myha failover, it is excluded with its \
             reason (`myha failover --dry-run` shows it)"
        }
        "skip_reset_slave" => {
            "no equivalent: the promoted server always forgets its old source (step `detach`)"
        }
        "ping_type" => {
            "no equivalent to choose: the manager's own probe, the master's agent on its host \
             and every replica's view must agree before a failover (docs/failover.md, \
             Detection)"
        }
        "secondary_check_script" => {
            "built in: before a failover every reachable replica's agent must confirm from its \
             own host that the master is unreachable, the check masterha_secondary_check made \
             through other routes"
        }
        "init_conf_load_script" => {
            "myha runs no script to load settings: put the secrets it printed in the `*_file`s \
             named in the YAML (never in the YAML itself)"
        }
        "node_label" => "no equivalent: a host's `name` is its label",
        "use_gtid_auto_pos" => "always on: myha replicates with GTID only (check `gtid`)",
        _ => "not an MHA parameter (MHA refuses to start with it): ignored",
    })
}

// ---- the model -----------------------------------------------------------

#[derive(Debug)]
struct Server {
    /// The section name, e.g. `server1`.
    id: String,
    file: usize,
    line: usize,
    /// The last value of each key in the section.
    own: BTreeMap<String, Setting>,
}

/// A host of the output.
#[derive(Debug)]
struct Host {
    name: String,
    address: String,
    port: u16,
    agent_port: Option<u16>,
    candidate_master: bool,
    no_master: bool,
    /// Where each value came from, for the YAML's comments.
    origin: String,
}

struct Converter {
    files: Vec<String>,
    /// The global `[server default]` under the application's.
    defaults: BTreeMap<String, Setting>,
    servers: Vec<Server>,
    /// (file, line, what, why).
    unmapped: Vec<(usize, usize, String, String)>,
    /// Password values from the files (4 characters or more, so that a
    /// trivial one does not blank out unrelated text): never written out.
    secrets: Vec<String>,
}

/// Converts the MHA files to a myha.yaml.
pub(crate) fn convert(
    app: &Input,
    global: Option<&Input>,
    opts: &Options,
) -> Result<Output, Located> {
    let mut files = vec![app.path.clone()];
    let app_ini = parse_ini(&app.text, 0, &app.path)?;
    let global_ini = match global {
        Some(g) => {
            files.push(g.path.clone());
            Some(parse_ini(&g.text, 1, &g.path)?)
        }
        None => None,
    };
    let mut c = Converter {
        files,
        defaults: BTreeMap::new(),
        servers: Vec::new(),
        unmapped: Vec::new(),
        secrets: Vec::new(),
    };
    for ini in global_ini.iter().chain(std::iter::once(&app_ini)) {
        for s in ini
            .root
            .iter()
            .chain(ini.sections.iter().flat_map(|s| &s.settings))
        {
            if is_secret(&s.key) && s.value().len() >= 4 {
                c.secrets.push(s.value().to_owned());
            }
        }
    }
    let cluster = cluster_name(opts.cluster.as_deref(), &app.path)?;
    let flavor = match opts.flavor.as_deref() {
        None => None,
        Some(f @ ("mysql" | "mariadb")) => Some(f),
        Some(other) => {
            return Err(Located {
                file: "--flavor".into(),
                line: None,
                message: format!("must be `mysql` or `mariadb`, got `{other}`"),
            })
        }
    };
    if let Some(g) = global_ini {
        c.read_global(g);
    }
    c.read_app(app_ini)?;
    let hosts = c.hosts()?;
    c.report_unmapped_keys();
    c.yaml(&cluster, flavor, &hosts)
}

/// `--cluster`, or the application file's name as MHA names the
/// application (`app1.cnf` is `app1`), made a valid myha name.
fn cluster_name(given: Option<&str>, app_path: &str) -> Result<String, Located> {
    if let Some(name) = given {
        if !is_name(name) {
            return Err(Located {
                file: "--cluster".into(),
                line: None,
                message: format!(
                    "`{name}` is not a cluster name: letters, digits, `_`, `.` and `-` only"
                ),
            });
        }
        return Ok(name.to_owned());
    }
    let stem = Path::new(app_path)
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = stem.strip_suffix(".cnf").unwrap_or(&stem);
    let name: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let name = name.trim_matches(['-', '.']).to_owned();
    Ok(if name.is_empty() { "main".into() } else { name })
}

/// A myha name: letters, digits, `_`, `.`, `-`.
fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// An IP address or a DNS name.
fn is_address(s: &str) -> bool {
    s.parse::<std::net::IpAddr>().is_ok() || myha_config::is_host_name(s)
}

/// Whether `name` is a `[serverN]` block for MHA: `server` and at least one
/// more character that is not whitespace.
fn is_server_block(name: &str) -> bool {
    name.strip_prefix("server")
        .and_then(|rest| rest.chars().next())
        .is_some_and(|c| !c.is_whitespace())
}

/// MHA's sort key: the first number after `server` (`^server\D*(\d+)`).
fn server_number(name: &str) -> Option<u128> {
    let rest = name.strip_prefix("server")?;
    let start = rest.find(|c: char| c.is_ascii_digit())?;
    let digits: String = rest[start..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

impl Converter {
    fn file(&self, id: usize) -> &str {
        &self.files[id]
    }

    fn base(&self, id: usize) -> String {
        Path::new(self.file(id))
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.file(id).to_owned())
    }

    fn located(&self, file: usize, line: Option<usize>, message: String) -> Located {
        Located {
            file: self.file(file).to_owned(),
            line,
            message,
        }
    }

    /// `key=value` for the report, a secret's value hidden.
    fn shown(&self, s: &Setting) -> String {
        if is_secret(&s.key) {
            format!("{}=(hidden)", s.key)
        } else {
            format!("{}={}", s.key, self.redact(&s.raw).0)
        }
    }

    fn note(&mut self, s: &Setting, why: impl Into<String>) {
        let what = self.shown(s);
        self.unmapped.push((s.file, s.line, what, why.into()));
    }

    /// The last value of each key of `section`; an earlier one of the same
    /// key is reported (MHA takes the last silently).
    fn last_values(&mut self, settings: &[Setting]) -> BTreeMap<String, Setting> {
        let mut out: BTreeMap<String, Setting> = BTreeMap::new();
        for s in settings {
            if let Some(before) = out.insert(s.key.clone(), s.clone()) {
                self.note(
                    &before,
                    format!(
                        "set again at line {}: the last one counts, as in MHA",
                        s.line
                    ),
                );
            }
        }
        out
    }

    /// The global file: its `[server default]` only, as MHA reads it.
    fn read_global(&mut self, ini: Ini) {
        for s in &ini.root {
            self.note(s, "outside any section: MHA ignores it");
        }
        for section in ini.sections {
            if section.name == "server default" {
                let values = self.last_values(&section.settings);
                self.defaults.extend(values);
            } else if section.name.starts_with("binlog") {
                self.binlog_section(1, &section);
            } else {
                self.unmapped.push((
                    1,
                    section.line,
                    format!("[{}]", section.name),
                    "MHA reads only [server default] from the global file: ignored".into(),
                ));
            }
        }
    }

    fn binlog_section(&mut self, file: usize, section: &Section) {
        self.unmapped.push((
            file,
            section.line,
            format!("[{}]", section.name),
            "MHA binlog servers have no equivalent: with semi-sync every acknowledged commit \
             is on a replica already"
                .into(),
        ));
    }

    /// The application file: `[server default]` over the global one, and
    /// the servers in MHA's order.
    fn read_app(&mut self, ini: Ini) -> Result<(), Located> {
        if let Some(s) = ini.root.first() {
            return Err(self.located(
                0,
                Some(s.line),
                format!(
                    "`{}` is outside any section: MHA reads settings only under \
                     [server default] and [serverN]",
                    s.key
                ),
            ));
        }
        let mut servers = Vec::new();
        for section in ini.sections {
            if section.name == "server default" {
                let values = self.last_values(&section.settings);
                self.defaults.extend(values);
            } else if section.name.starts_with("binlog") {
                self.binlog_section(0, &section);
            } else if is_server_block(&section.name) {
                let own = self.last_values(&section.settings);
                servers.push(Server {
                    id: section.name,
                    file: 0,
                    line: section.line,
                    own,
                });
            } else {
                return Err(self.located(
                    0,
                    Some(section.line),
                    format!(
                        "[{}]: MHA accepts only [server default] and sections whose name \
                         starts with `server` (e.g. [server1])",
                        section.name
                    ),
                ));
            }
        }
        if servers.is_empty() {
            return Err(self.located(
                0,
                None,
                "no [serverN] section: MHA needs at least one server".into(),
            ));
        }
        // Config::Tiny's sections sorted by name, then by their number
        // when every one has one (a stable sort, as Perl's).
        servers.sort_by(|a, b| a.id.as_bytes().cmp(b.id.as_bytes()));
        if servers.iter().all(|s| server_number(&s.id).is_some()) {
            servers.sort_by_key(|s| server_number(&s.id));
        }
        self.servers = servers;
        Ok(())
    }

    /// A server's value of `key`: its own, else `[server default]`'s.
    fn effective(&self, server: &Server, key: &str) -> Option<Setting> {
        server
            .own
            .get(key)
            .or_else(|| self.defaults.get(key))
            .cloned()
    }

    fn hosts(&mut self) -> Result<Vec<Host>, Located> {
        let mut hosts: Vec<Host> = Vec::new();
        // (address, port) -> (file, line) of the first.
        let mut seen: BTreeMap<(String, u16), (usize, usize)> = BTreeMap::new();
        let mut conflicts = Vec::new();
        for server in &self.servers {
            let Some(hostname) = server.own.get("hostname").filter(|h| !h.value().is_empty())
            else {
                return Err(self.located(
                    server.file,
                    Some(server.line),
                    format!("[{}] has no `hostname`", server.id),
                ));
            };
            let name_value = hostname.value().to_owned();
            if !is_address(&name_value) {
                return Err(self.located(
                    hostname.file,
                    Some(hostname.line),
                    format!("hostname `{name_value}` is not a host name or an IP address"),
                ));
            }
            let address = match server.own.get("ip").filter(|s| !s.value().is_empty()) {
                Some(ip) if ip.value().parse::<std::net::IpAddr>().is_ok() => ip.value().to_owned(),
                Some(ip) => {
                    return Err(self.located(
                        ip.file,
                        Some(ip.line),
                        format!("ip `{}` is not an IP address", ip.value()),
                    ))
                }
                None => name_value.clone(),
            };
            let port = match self.effective(server, "port") {
                None => 3306,
                Some(p) if p.value().is_empty() => 3306,
                Some(p) => match p.value().parse::<u16>() {
                    Ok(n) if n > 0 => n,
                    _ => {
                        return Err(self.located(
                            p.file,
                            Some(p.line),
                            format!("port `{}` is not a port number (1-65535)", p.value()),
                        ))
                    }
                },
            };
            if let Some(&(file, line)) = seen.get(&(address.clone(), port)) {
                return Err(self.located(
                    hostname.file,
                    Some(hostname.line),
                    format!(
                        "[{}] is {address}:{port} again (first at {}:{line}): MHA refuses \
                         duplicate servers too",
                        server.id,
                        self.file(file)
                    ),
                ));
            }
            seen.insert((address.clone(), port), (hostname.file, hostname.line));
            let flag = |key: &str| server.own.get(key).filter(|s| truthy(s.value())).cloned();
            let no_master = flag("no_master");
            let mut candidate = flag("candidate_master");
            if let (Some(c), Some(n)) = (&candidate, &no_master) {
                let why = format!(
                    "conflicts with no_master=1 (line {}): myha refuses both, kept `no_master: \
                     true`",
                    n.line
                );
                conflicts.push((c.clone(), why));
                candidate = None;
            }
            let name = if is_name(&name_value) {
                name_value.clone()
            } else {
                server.id.clone()
            };
            hosts.push(Host {
                name,
                address,
                port,
                agent_port: None,
                candidate_master: candidate.is_some(),
                no_master: no_master.is_some(),
                origin: format!("[{}] {}:{}", server.id, self.base(server.file), server.line),
            });
        }
        for (s, why) in conflicts {
            self.note(&s, why);
        }
        // The same name twice (one machine, several mysqld): name-port.
        let names: Vec<String> = hosts.iter().map(|h| h.name.clone()).collect();
        for h in &mut hosts {
            if names.iter().filter(|n| **n == h.name).count() > 1 {
                h.name = format!("{}-{}", h.name, h.port);
            }
        }
        // Several mysqld on one address: one agent each, on its own port.
        let mut per_address: BTreeMap<String, u16> = BTreeMap::new();
        let addresses: Vec<String> = hosts.iter().map(|h| h.address.clone()).collect();
        for h in &mut hosts {
            if addresses.iter().filter(|a| **a == h.address).count() > 1 {
                let next = per_address.entry(h.address.clone()).or_insert(0);
                h.agent_port = Some(7071 + *next);
                *next += 1;
            }
        }
        Ok(hosts)
    }

    /// Every occurrence of a parameter without a myha key, and of a
    /// per-server one in `[server default]`.
    fn report_unmapped_keys(&mut self) {
        let mut notes = Vec::new();
        for s in self.defaults.values() {
            if LOCAL_ONLY.contains(&s.key.as_str()) {
                notes.push((
                    s.clone(),
                    "a per-server parameter: MHA ignores it in [server default]".to_owned(),
                ));
            } else if let Some(why) = why_unmapped(&s.key) {
                notes.push((s.clone(), why.to_owned()));
            }
        }
        let pid_used = self.servers.iter().any(|s| {
            self.effective(s, "shutdown_script")
                .is_some_and(|v| !v.value().is_empty())
        });
        for server in &self.servers {
            for s in server.own.values() {
                if let Some(why) = why_unmapped(&s.key) {
                    notes.push((s.clone(), why.to_owned()));
                }
            }
        }
        for (s, why) in notes {
            if s.key == "master_pid_file" && pid_used {
                continue;
            }
            self.note(&s, why);
        }
    }

    /// A cluster-wide parameter: the value all servers use; when they
    /// differ, `[server default]`'s, else the first server's, and each
    /// server using another one is reported. `mha_default` is MHA's value
    /// when none is set (for comparing).
    fn cluster_setting(
        &mut self,
        key: &str,
        mha_default: Option<&str>,
        target: &str,
    ) -> Option<Setting> {
        let effective: Vec<Option<Setting>> = self
            .servers
            .iter()
            .map(|s| self.effective(s, key))
            .collect();
        let value = |s: &Option<Setting>| {
            s.as_ref()
                .map(|s| s.value().to_owned())
                .or(mha_default.map(str::to_owned))
        };
        let first = value(effective.first()?);
        if effective.iter().all(|e| value(e) == first) {
            return effective.into_iter().flatten().next();
        }
        let chosen = self
            .defaults
            .get(key)
            .cloned()
            .or_else(|| self.servers.iter().find_map(|s| s.own.get(key).cloned()));
        let chosen_value = value(&chosen);
        let mut missing = Vec::new();
        let mut notes = Vec::new();
        for (server, e) in self.servers.iter().zip(&effective) {
            if value(e) == chosen_value {
                continue;
            }
            match server.own.get(key) {
                Some(own) => {
                    let at = match &chosen {
                        Some(c) => format!(" ({}:{})", self.base(c.file), c.line),
                        None => String::new(),
                    };
                    notes.push((
                        own.clone(),
                        format!(
                            "[{}] differs from the value used for the cluster{at}: myha has \
                             one `{target}` per cluster",
                            server.id
                        ),
                    ));
                }
                None => missing.push(format!("[{}]", server.id)),
            }
        }
        if let (Some(c), false) = (&chosen, missing.is_empty()) {
            notes.push((
                c.clone(),
                format!(
                    "not set for {}: myha applies `{target}` to every server of the cluster",
                    missing.join(", ")
                ),
            ));
        }
        for (s, why) in notes {
            self.note(&s, why);
        }
        chosen
    }

    /// `text` with every password of the files, and every value given to a
    /// `...password=` / `...passwd=` option, replaced by `REDACTED`; true
    /// if anything was.
    fn redact(&self, text: &str) -> (String, bool) {
        let mut out = text.to_owned();
        for s in &self.secrets {
            out = out.replace(s.as_str(), "REDACTED");
        }
        let mut words: Vec<String> = Vec::new();
        for word in out.split(' ') {
            let lower = word.to_ascii_lowercase();
            let at = ["password=", "passwd="]
                .iter()
                .find_map(|k| lower.find(k).map(|i| i + k.len()));
            match at {
                Some(i) if i < word.len() => words.push(format!("{}REDACTED", &word[..i])),
                _ => words.push(word.to_owned()),
            }
        }
        let out = words.join(" ");
        let changed = out != text;
        (out, changed)
    }

    /// A script's command line for a hook, with any password in it removed
    /// (and reported).
    fn script(&mut self, s: &Setting) -> String {
        let (command, changed) = self.redact(s.value());
        if changed {
            self.note(
                s,
                "its command line holds a password: replaced by REDACTED in the YAML (readable \
                 on every myha host); make the script read it from a file of its own",
            );
        }
        command
    }

    /// The cluster-wide values, the hooks and what is left to do, then the
    /// YAML text.
    fn yaml(
        &mut self,
        cluster: &str,
        flavor: Option<&str>,
        hosts: &[Host],
    ) -> Result<Output, Located> {
        let set = |s: Option<Setting>| s.filter(|s| !s.value().is_empty());
        let user = set(self.cluster_setting("user", Some("root"), "user"));
        let password = set(self.cluster_setting("password", Some(""), "password_file"));
        let repl_user = set(self.cluster_setting("repl_user", None, "replication_user"));
        let repl_password =
            set(self.cluster_setting("repl_password", None, "replication_password_file"));
        let ping = match set(self.cluster_setting("ping_interval", None, "probe_interval")) {
            None => None,
            Some(p) => match p.value().parse::<u64>() {
                Ok(n) if n >= 1 && p.value().bytes().all(|b| b.is_ascii_digit()) => Some((n, p)),
                _ => {
                    let why = format!(
                        "ping_interval `{}` is not a positive whole number of seconds (MHA \
                         refuses it too)",
                        p.value()
                    );
                    return Err(self.located(p.file, Some(p.line), why));
                }
            },
        };
        let hooks = self.hooks();
        let plan = Plan {
            cluster: cluster.to_owned(),
            flavor: flavor.map(str::to_owned),
            admin_file: format!("secrets/{cluster}-admin.pw"),
            repl_file: format!("secrets/{cluster}-repl.pw"),
            user,
            password,
            repl_user,
            repl_password,
            ping,
            hooks,
        };
        let todo = plan.todo();
        let yaml = self.render(&plan, hosts, &todo);
        let mut unmapped = std::mem::take(&mut self.unmapped);
        unmapped.sort_by_key(|a| (a.0, a.1));
        unmapped.dedup();
        let unmapped = unmapped
            .into_iter()
            .map(|(file, line, what, why)| format!("{}:{line}: {what}: {why}", self.file(file)))
            .collect();
        Ok(Output {
            yaml,
            unmapped,
            todo,
        })
    }

    /// `file:line` of a setting, the file by its name only.
    fn origin(&self, s: &Setting) -> String {
        format!("{}:{}", self.base(s.file), s.line)
    }

    /// MHA's scripts as myha hooks, each called the way MHA called it as
    /// far as the MYHA_* variables allow.
    fn hooks(&mut self) -> Vec<Hook> {
        let set = |s: Option<Setting>| s.filter(|s| !s.value().is_empty());
        let failover = set(self.cluster_setting(
            "master_ip_failover_script",
            None,
            "hooks.master_ip_failover_script",
        ));
        let shutdown = set(self.cluster_setting("shutdown_script", None, "hooks.pre_failover"));
        let report =
            set(self.cluster_setting("report_script", None, "hooks.post_failover/on_failure"));
        let online = set(self.cluster_setting(
            "master_ip_online_change_script",
            None,
            "hooks.pre_switchover/post_switchover",
        ));
        let mut hooks = Vec::new();
        if let Some(s) = &failover {
            hooks.push(Hook {
                key: "master_ip_failover_script",
                command: self.script(s),
                note: format!(
                    "master_ip_failover_script ({}): called as MHA calls it, --command=stop \
                     before the promotion and --command=start after, with the \
                     --orig_master_*/--new_master_* host, ip and port; without --ssh_user, \
                     --new_master_user/--new_master_password and the startup --command=status. \
                     A non-zero exit (even 10) fails the step.",
                    self.origin(s)
                ),
            });
        }
        if let Some(s) = &shutdown {
            let mut command = format!(
                "{} --command=stop --host=\"$MYHA_OLD_MASTER\" --ip=\"$MYHA_OLD_MASTER_ADDRESS\" \
                 --port=\"$MYHA_OLD_MASTER_PORT\"",
                self.script(s)
            );
            if let Some(pid) =
                set(self.cluster_setting("master_pid_file", None, "hooks.pre_failover"))
            {
                command.push_str(&format!(" --pid_file={}", self.redact(pid.value()).0));
            }
            command.push_str("; rc=$?; [ \"$rc\" -eq 0 ] || [ \"$rc\" -eq 10 ]");
            hooks.push(Hook {
                key: "pre_failover",
                command,
                note: format!(
                    "shutdown_script ({}): before every failover (and before \
                     master_ip_failover_script --command=stop); exit 0 or 10 proceeds, anything \
                     else aborts the failover. myha fences the old master itself (read_only, \
                     sessions killed, the agent's kernel lease): delete this hook if the \
                     power-off is not wanted.",
                    self.origin(s)
                ),
            });
        }
        if let Some(s) = &report {
            let script = self.script(s);
            hooks.push(Hook {
                key: "post_failover",
                command: format!(
                    "{script} --orig_master_host=\"$MYHA_OLD_MASTER\" \
                     --new_master_host=\"$MYHA_NEW_MASTER\" --subject=\"$MYHA_CLUSTER: MySQL \
                     Master failover $MYHA_OLD_MASTER to $MYHA_NEW_MASTER succeeded\" \
                     --body=\"myha operation $MYHA_OPERATION, epoch $MYHA_EPOCH: see myha \
                     history\""
                ),
                note: format!(
                    "report_script ({}) after a failover, as MHA calls it (without \
                     --new_slave_hosts).",
                    self.origin(s)
                ),
            });
            hooks.push(Hook {
                key: "on_failure",
                command: format!(
                    "{script} --orig_master_host=\"$MYHA_OLD_MASTER\" --subject=\"$MYHA_CLUSTER: \
                     MySQL Master failover or switchover from $MYHA_OLD_MASTER failed\" \
                     --body=\"$MYHA_DETAIL\""
                ),
                note: format!(
                    "report_script ({}) when a failover fails or a switchover rolls back.",
                    self.origin(s)
                ),
            });
        }
        if let Some(s) = &online {
            let script = self.script(s);
            let args = "--orig_master_host=\"$MYHA_OLD_MASTER\" \
                        --orig_master_ip=\"$MYHA_OLD_MASTER_ADDRESS\" \
                        --orig_master_port=\"$MYHA_OLD_MASTER_PORT\" \
                        --new_master_host=\"$MYHA_NEW_MASTER\" \
                        --new_master_ip=\"$MYHA_NEW_MASTER_ADDRESS\" \
                        --new_master_port=\"$MYHA_NEW_MASTER_PORT\"";
            hooks.push(Hook {
                key: "pre_switchover",
                command: format!("{script} --command=stop {args}"),
                note: format!(
                    "master_ip_online_change_script ({}), stop phase: before the old master \
                     is made read-only; a non-zero exit aborts the switchover. No user or \
                     password is passed: myha fences and promotes by itself.",
                    self.origin(s)
                ),
            });
            hooks.push(Hook {
                key: "post_switchover",
                command: format!("{script} --command=start {args}"),
                note: "master_ip_online_change_script, start phase: after the switchover.".into(),
            });
        }
        hooks
    }

    fn render(&self, plan: &Plan, hosts: &[Host], todo: &[String]) -> String {
        let mut y: Vec<String> = Vec::new();
        let sources = match self.files.len() {
            2 => format!("{} over {}", self.base(0), self.base(1)),
            _ => self.base(0),
        };
        y.push(format!(
            "# myha configuration imported from MHA's {sources} by"
        ));
        y.push("# `myha import-mha`. Read it through: each comment names the MHA line a".into());
        y.push("# value comes from; docs/migrating-from-mha.md is the procedure.".into());
        y.push("#".into());
        y.push("# To do before `myha check` passes:".into());
        for (i, t) in todo.iter().enumerate() {
            for (j, l) in wrap(t, 70).iter().enumerate() {
                y.push(match j {
                    0 => format!("# {:>2}. {l}", i + 1),
                    _ => format!("#     {l}"),
                });
            }
        }
        y.push("# Relative paths (secrets/...) resolve against this file's directory.".into());
        y.push(String::new());

        y.push("manager:".into());
        y.push("  listen: 0.0.0.0:7070".into());
        y.push(
            "  url: http://manager.invalid:7070   # TO DO: how the agents reach this manager"
                .into(),
        );
        y.push(
            "  token_file: secrets/manager.token   # myha token new --out secrets/manager.token"
                .into(),
        );
        if let Some((secs, p)) = &plan.ping {
            y.push(format!(
                "  # ping_interval={secs} ({}): MHA declares a master dead after 3 missed pings.",
                self.origin(p)
            ));
            y.push(
                "  # myha's defaults (500ms probes, master_down_after 1s) detect faster:".into(),
            );
            y.push(
                "  # delete probe_interval and the cluster's master_down_after to use them.".into(),
            );
            y.push(match secs {
                11.. => "  probe_interval: 10s   # myha's maximum".into(),
                _ => format!("  probe_interval: {secs}s"),
            });
        }
        y.push("agent:".into());
        y.push("  token_file: secrets/agent.token   # on each database host, its own token".into());
        y.push("cli:".into());
        y.push("  token_file: secrets/cli.token".into());

        y.push("clusters:".into());
        y.push(format!("  - name: {}", scalar(&plan.cluster)));
        y.push(match &plan.flavor {
            Some(f) => format!("    flavor: {f}"),
            None => "    flavor: mysql   # TO DO: assumed, MHA's files do not say".into(),
        });
        y.push(match &plan.user {
            Some(u) => format!("    user: {}   # {}", scalar(u.value()), self.origin(u)),
            None => "    user: root   # MHA's default user".into(),
        });
        y.push(format!(
            "    password_file: {}   # {}",
            plan.admin_file,
            match &plan.password {
                Some(p) => format!("password at {}, not copied: write it there", self.origin(p)),
                None => "MHA had no password: set one".into(),
            }
        ));
        y.push(match &plan.repl_user {
            Some(u) => format!(
                "    replication_user: {}   # {}",
                scalar(u.value()),
                self.origin(u)
            ),
            None => "    replication_user: repl   # TO DO: MHA's files name no repl_user".into(),
        });
        y.push(format!(
            "    replication_password_file: {}   # {}",
            plan.repl_file,
            match &plan.repl_password {
                Some(p) => format!(
                    "repl_password at {}, not copied: write it there",
                    self.origin(p)
                ),
                None => "MHA's files give none: write it there".into(),
            }
        ));
        if let Some((secs, _)) = &plan.ping {
            let down = (secs * 3).min(3600);
            y.push(format!(
                "    master_down_after: {down}s   # 3 x ping_interval, MHA's detection time"
            ));
            // semi_sync_degrade_after must outlast self-fencing:
            // max(master_down_after, 1s) + agent.interval (250ms) + 1.25s.
            if down * 1000 + 1500 >= 10_000 {
                y.push(format!(
                    "    semi_sync_degrade_after: {}s   # must exceed master_down_after + 1.5s",
                    down + 5
                ));
            }
        }
        if !plan.hooks.is_empty() {
            y.push("    hooks:".into());
            y.push("      # Each runs with `sh -c` on the manager's host, given the MYHA_*".into());
            y.push(
                "      # variables of docs/failover.md, and is killed after `timeout` (30s)."
                    .into(),
            );
            for hook in &plan.hooks {
                for l in wrap(&hook.note, 70) {
                    y.push(format!("      # {l}"));
                }
                y.push(format!("      {}: {}", hook.key, quoted(&hook.command)));
            }
        }

        y.push("hosts:".into());
        for h in hosts {
            y.push(format!("  - name: {}   # {}", scalar(&h.name), h.origin));
            y.push(format!("    cluster: {}", scalar(&plan.cluster)));
            y.push(format!("    address: {}", scalar(&h.address)));
            y.push(format!("    port: {}", h.port));
            if let Some(p) = h.agent_port {
                y.push(format!(
                    "    agent_port: {p}   # one agent per mysqld of this machine"
                ));
            }
            if h.candidate_master {
                y.push("    candidate_master: true".into());
            }
            if h.no_master {
                y.push("    no_master: true".into());
            }
        }

        let zero = "0".repeat(64);
        y.push("# Who may do what, each credential by its SHA-256 only. TO DO: each hash".into());
        y.push("# below is a placeholder that matches no token: replace it with the".into());
        y.push("# token_sha256 that `myha token new --out FILE` prints.".into());
        y.push("access:".into());
        y.push(format!(
            "  - {{ name: manager, role: manager, token_sha256: {zero} }}"
        ));
        for h in hosts {
            y.push(format!(
                "  - {{ name: {}, role: agent, host: {}, token_sha256: {zero} }}",
                scalar(&format!("agent-{}", h.name)),
                scalar(&h.name)
            ));
        }
        y.push(format!(
            "  - {{ name: operator, role: operator, token_sha256: {zero} }}"
        ));
        let mut text = y.join("\n");
        text.push('\n');
        text
    }
}

/// A hook of the output.
struct Hook {
    key: &'static str,
    command: String,
    /// Its comment: where it comes from, how it differs from MHA.
    note: String,
}

/// The cluster-wide values of the output.
struct Plan {
    cluster: String,
    flavor: Option<String>,
    admin_file: String,
    repl_file: String,
    user: Option<Setting>,
    password: Option<Setting>,
    repl_user: Option<Setting>,
    repl_password: Option<Setting>,
    /// `ping_interval`, in seconds.
    ping: Option<(u64, Setting)>,
    hooks: Vec<Hook>,
}

impl Plan {
    /// What the operator must still do before `myha check` passes.
    fn todo(&self) -> Vec<String> {
        let user = self.user.as_ref().map_or("root", |u| u.value());
        let repl = self.repl_user.as_ref().map_or("repl", |u| u.value());
        let mut todo = vec![format!(
            "secrets, never copied from MHA's files: the password of `{user}` in {}, that \
             of `{repl}` in {}, next to this file and readable by their owner only: \
             `install -d -m 700 secrets; (umask 077; printf '%s' 'PASSWORD' > {})`",
            self.admin_file, self.repl_file, self.admin_file
        )];
        if self.password.is_none() {
            todo.push(format!(
                "MHA's files give `{user}` no password (MHA connected with an empty one): \
                 myha needs one"
            ));
        }
        if self.repl_user.is_none() {
            todo.push(
                "MHA's files name no repl_user (MHA read Master_User from SHOW SLAVE STATUS): \
                 set `replication_user` to the replicas' account"
                    .into(),
            );
        }
        todo.push(
            "tokens: each `token_sha256: 000...` in `access:` is a placeholder that matches no \
             token; replace it with what `myha token new --out FILE` prints (the manager's \
             FILE: secrets/manager.token; each agent's, on its host: secrets/agent.token; \
             yours: secrets/cli.token)"
                .into(),
        );
        todo.push(
            "manager.url: the address the agents reach this manager at (MHA's files do not \
             name the manager's host)"
                .into(),
        );
        if self.flavor.is_none() {
            todo.push(
                "flavor: `mysql` was assumed, MHA's files do not say (--flavor mariadb for \
                 MariaDB)"
                    .into(),
            );
        }
        todo
    }
}

/// `text` in lines of at most about `width` characters, at spaces.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// A YAML scalar: plain when that reads back as the same string, else
/// double-quoted.
fn scalar(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '/' | ':'))
        && s.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_' || c == '/')
        && !s.ends_with(':')
        && !s.contains(": ")
        && s.parse::<f64>().is_err()
        && s.parse::<i64>().is_err()
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "true" | "false" | "yes" | "no" | "on" | "off" | "y" | "n" | "null" | "nan" | "inf"
        )
        && !s.starts_with("0x")
        && !s.starts_with("0o");
    if plain {
        s.to_owned()
    } else {
        quoted(s)
    }
}

/// A double-quoted YAML string.
fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(path: &str, text: &str) -> Input {
        Input {
            path: path.into(),
            text: text.into(),
        }
    }

    fn opts() -> Options {
        Options {
            cluster: None,
            flavor: None,
        }
    }

    fn err(app: &str) -> String {
        match convert(&input("app.cnf", app), None, &opts()) {
            Err(e) => e.to_string(),
            Ok(o) => panic!("converted:\n{}", o.yaml),
        }
    }

    #[test]
    fn config_tiny_lines() {
        let ini = parse_ini(
            "# c\n; c\n  \n[ server default ]\nuser = root ; inline\nrepl_user=repl;x\n\
             a=b=c\n[server1]\r\nhostname=\"h1\"\r\n[server default]\nport=3307\n",
            0,
            "f",
        )
        .unwrap();
        assert!(ini.root.is_empty());
        assert_eq!(ini.sections.len(), 2);
        let d = &ini.sections[0];
        assert_eq!(d.name, "server default");
        assert_eq!(d.line, 4);
        let kv: Vec<(&str, &str, usize)> = d
            .settings
            .iter()
            .map(|s| (s.key.as_str(), s.raw.as_str(), s.line))
            .collect();
        assert_eq!(
            kv,
            [
                ("user", "root", 5),
                ("repl_user", "repl;x", 6),
                ("a", "b=c", 7),
                ("port", "3307", 11)
            ]
        );
        assert_eq!(ini.sections[1].settings[0].value(), "h1");
        assert_eq!(ini.sections[1].settings[0].line, 9);
    }

    #[test]
    fn quotes_and_comments_as_mha() {
        assert_eq!(unquote("\"a b\""), "a b");
        assert_eq!(unquote("'a'"), "a");
        assert_eq!(unquote("a'"), "a");
        assert_eq!(unquote("'a"), "'a");
        assert_eq!(unquote("\""), "");
        assert_eq!(strip_inline_comment("k=v ; c"), "k=v");
        assert_eq!(strip_inline_comment("k=v;c"), "k=v;c");
        assert_eq!(strip_inline_comment("k=v # c"), "k=v # c");
        assert_eq!(strip_inline_comment("k=v ;"), "k=v ;");
        assert!(truthy("1") && truthy("yes") && !truthy("0") && !truthy(""));
    }

    #[test]
    fn malformed_lines_are_located_and_not_echoed() {
        let e = err("[server1]\nhostname=h1\npassword s3cretpw\n");
        assert_eq!(
            e,
            "app.cnf:3: not `key=value`, a `[section]` header or a comment"
        );
        assert_eq!(err("[server1]\n=x\n"), "app.cnf:2: `=value` without a key");
        assert!(
            err("user=root\n[server1]\nhostname=h\n").starts_with("app.cnf:1: `user` is outside")
        );
        assert!(err("[server default]\nuser=root\n").starts_with("app.cnf: no [serverN]"));
        assert!(err("[mysql]\nhostname=h\n").starts_with("app.cnf:1: [mysql]: MHA accepts"));
        assert!(err("[server default]\n[]\n").starts_with("app.cnf:2: empty section"));
    }

    #[test]
    fn server_errors_are_located() {
        assert_eq!(
            err("[server1]\nhostname=a\n\n[server2]\nport=3306\n"),
            "app.cnf:4: [server2] has no `hostname`"
        );
        assert_eq!(
            err("[server1]\nhostname=\n"),
            "app.cnf:1: [server1] has no `hostname`"
        );
        assert!(err("[server1]\nhostname=a\n[server2]\nhostname=a\n")
            .starts_with("app.cnf:4: [server2] is a:3306 again (first at app.cnf:2)"));
        assert!(err("[server1]\nhostname=a b\n").starts_with("app.cnf:2: hostname `a b`"));
        assert!(err("[server1]\nhostname=a\nport=x\n").starts_with("app.cnf:3: port `x`"));
        assert!(
            err("[server default]\nping_interval=1.5\n[server1]\nhostname=a\n")
                .starts_with("app.cnf:2: ping_interval `1.5`")
        );
        assert!(err("[server1]\nhostname=a\nip=nope\n").starts_with("app.cnf:3: ip `nope`"));
    }

    #[test]
    fn servers_in_mha_order_and_same_machine() {
        let o = convert(
            &input(
                "/etc/masterha/app1.cnf",
                "[server10]\nhostname=h\nport=3310\n[server2]\nhostname=h\nport=3302\n\
                 [server1]\nhostname=g\n",
            ),
            None,
            &opts(),
        )
        .unwrap();
        let names: Vec<&str> = o
            .yaml
            .lines()
            .filter_map(|l| l.strip_prefix("  - name: "))
            .map(|l| l.split(' ').next().unwrap_or(""))
            .collect();
        assert_eq!(names, ["app1", "g", "h-3302", "h-3310"]);
        assert!(o.yaml.contains("    agent_port: 7071"));
        assert!(o.yaml.contains("    agent_port: 7072"));
    }

    #[test]
    fn local_only_in_defaults_and_repeats_are_reported() {
        let o = convert(
            &input(
                "a.cnf",
                "[server default]\ncandidate_master=1\n[server1]\nhostname=h\nno_master=0\n\
                 no_master=1\ncandidate_master=1\n",
            ),
            None,
            &opts(),
        )
        .unwrap();
        let all = o.unmapped.join("\n");
        assert!(
            all.contains("a.cnf:2: candidate_master=1: a per-server parameter"),
            "{all}"
        );
        assert!(
            all.contains("a.cnf:5: no_master=0: set again at line 6"),
            "{all}"
        );
        assert!(
            all.contains("a.cnf:7: candidate_master=1: conflicts with no_master=1 (line 6)"),
            "{all}"
        );
        assert!(o.yaml.contains("    no_master: true"));
        assert!(!o.yaml.contains("candidate_master: true"));
    }

    #[test]
    fn differing_cluster_values_are_reported() {
        let o = convert(
            &input(
                "a.cnf",
                "[server default]\nuser=admin\npassword=topsecret\n[server1]\nhostname=h1\n\
                 [server2]\nhostname=h2\nuser=other\npassword=othersecret\n\
                 [server3]\nhostname=h3\nmaster_ip_failover_script=/bin/ipf\n",
            ),
            None,
            &opts(),
        )
        .unwrap();
        let all = o.unmapped.join("\n");
        assert!(
            all.contains("a.cnf:8: user=other: [server2] differs"),
            "{all}"
        );
        assert!(
            all.contains("a.cnf:9: password=(hidden): [server2] differs"),
            "{all}"
        );
        assert!(
            all.contains(
                "a.cnf:12: master_ip_failover_script=/bin/ipf: not set for [server1], [server2]"
            ),
            "{all}"
        );
        assert!(o.yaml.contains("    user: admin"));
        assert!(o.yaml.contains("master_ip_failover_script: \"/bin/ipf\""));
        for s in ["topsecret", "othersecret"] {
            assert!(!o.yaml.contains(s) && !all.contains(s));
        }
    }

    #[test]
    fn passwords_on_command_lines_are_redacted() {
        let o = convert(
            &input(
                "a.cnf",
                "[server default]\npassword=hunter22\nreport_script=/bin/r --smtp-password=xyz \
                 --p hunter22\n[server1]\nhostname=h1\n",
            ),
            None,
            &opts(),
        )
        .unwrap();
        assert!(!o.yaml.contains("hunter22") && !o.yaml.contains("xyz"));
        assert!(o
            .yaml
            .contains("/bin/r --smtp-password=REDACTED --p REDACTED"));
        let all = o.unmapped.join("\n");
        let want = "a.cnf:3: report_script=/bin/r --smtp-password=REDACTED --p REDACTED: \
                    its command line holds a password";
        assert!(all.contains(want), "{all}");
    }

    #[test]
    fn names_and_scalars() {
        assert_eq!(
            cluster_name(None, "/etc/masterha/app1.cnf").unwrap(),
            "app1"
        );
        assert_eq!(cluster_name(None, "my app.cnf").unwrap(), "my-app");
        assert_eq!(cluster_name(None, ".cnf").unwrap(), "main");
        assert!(cluster_name(Some("a b"), "x").is_err());
        assert_eq!(scalar("db1"), "db1");
        assert_eq!(scalar("10.0.0.1"), "10.0.0.1");
        assert_eq!(scalar("123"), "\"123\"");
        assert_eq!(scalar("yes"), "\"yes\"");
        assert_eq!(scalar("a b"), "\"a b\"");
        assert_eq!(quoted("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(server_number("server_db12x3"), Some(12));
        assert!(is_server_block("server1") && !is_server_block("server default"));
        assert!(!is_server_block("server"));
    }
}
