//! Hostile clients for the router's connection limits: floods of idle
//! connections, from this machine or from a container on the bed's
//! network (a source address of its own: connections from this machine to
//! the bed's gateway leave with this machine's address whatever address
//! they bind, Docker masquerading its subnets), and sysbench load whose
//! throughput is reported second by second.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::{run, AppHost, BedError, Result, APP_PASSWORD, APP_USER};

/// What became of one target's idle connections.
#[derive(Debug, Default, Clone)]
pub struct FloodOutcome {
    pub target: String,
    /// The TCP connection was not established (reset, refused, timed out).
    pub connect_failed: usize,
    /// Connected; the first packet was a MySQL error (the text of each
    /// distinct message, with its count).
    pub refused: BTreeMap<String, usize>,
    /// Connected; closed without a byte.
    pub closed_silently: usize,
    /// Connected; neither a byte nor a close until the end of the hold.
    pub silent_open: usize,
    /// Connected and greeted by a server.
    pub greeted: usize,
    /// Of the greeted: how long after connecting each was closed (those
    /// still open at the end of the hold are not here).
    pub greeted_closed_after: Vec<Duration>,
}

impl std::fmt::Display for FloodOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let closed = |pick: fn(&Duration, &Duration) -> bool| {
            self.greeted_closed_after
                .iter()
                .copied()
                .reduce(|a, b| if pick(&a, &b) { a } else { b })
        };
        write!(
            f,
            "{}: {} not connected, {} refused with an error {:?}, {} closed silently, \
             {} silent and open, {} greeted ({} of them closed, after {:?} to {:?})",
            self.target,
            self.connect_failed,
            self.refused.values().sum::<usize>(),
            self.refused,
            self.closed_silently,
            self.silent_open,
            self.greeted,
            self.greeted_closed_after.len(),
            closed(|a, b| a <= b),
            closed(|a, b| a >= b),
        )
    }
}

impl FloodOutcome {
    /// Connections refused one way or another (never greeted).
    pub fn turned_away(&self) -> usize {
        self.connect_failed + self.refused.values().sum::<usize>() + self.closed_silently
    }
}

/// A flood of idle connections under way.
#[derive(Debug)]
pub struct Flood {
    thread: std::thread::JoinHandle<Result<Vec<FloodOutcome>>>,
    /// When the connections began.
    pub started: Instant,
    /// Connections established so far (all targets).
    connected: Arc<Mutex<usize>>,
}

impl Flood {
    /// Opens `per_target` TCP connections from this machine to each
    /// target, sends nothing, reads what comes and holds each until `hold`
    /// after the start (or until the other side closes it).
    pub fn local(targets: &[SocketAddr], per_target: usize, hold: Duration) -> Flood {
        let targets = targets.to_vec();
        let connected = Arc::new(Mutex::new(0usize));
        let counter = Arc::clone(&connected);
        let started = Instant::now();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| BedError::Other(format!("flood runtime: {e}")))?;
            Ok(rt.block_on(flood(targets, per_target, hold, counter)))
        });
        Flood {
            thread,
            started,
            connected,
        }
    }

    /// The same from inside `app`, a container on the bed's network (a
    /// Perl script: the bed's image has Perl): the connections come from
    /// its address.
    pub fn from_container(
        app: &AppHost,
        targets: &[SocketAddr],
        per_target: usize,
        hold: Duration,
    ) -> Result<Flood> {
        let mut cmd = Command::new("docker");
        cmd.args(["exec", "-i", &app.container, "perl", "-"])
            .arg(per_target.to_string())
            .arg(format!("{:.3}", hold.as_secs_f64()))
            .args(targets.iter().map(|t| t.to_string()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let started = Instant::now();
        let mut child = cmd.spawn().map_err(|source| BedError::Spawn {
            cmd: "docker exec ... perl".into(),
            source,
        })?;
        if let Some(mut stdin) = child.stdin.take() {
            std::io::Write::write_all(&mut stdin, FLOOD_PL.as_bytes())
                .map_err(|e| BedError::Other(format!("flood script: {e}")))?;
        }
        let connected = Arc::new(Mutex::new(0usize));
        let counter = Arc::clone(&connected);
        let names: Vec<String> = targets.iter().map(|t| t.to_string()).collect();
        let deadline = started + hold + Duration::from_secs(60);
        let thread = std::thread::spawn(move || {
            let stdout = child.stdout.take();
            let reader = std::thread::spawn(move || {
                let mut lines = Vec::new();
                if let Some(p) = stdout {
                    for line in std::io::BufReader::new(p).lines().map_while(|l| l.ok()) {
                        if let Some(n) = line.strip_prefix("connected ") {
                            if let (Ok(n), Ok(mut g)) = (n.trim().parse(), counter.lock()) {
                                *g = n;
                            }
                        } else {
                            lines.push(line);
                        }
                    }
                }
                lines
            });
            let status = loop {
                match child.try_wait() {
                    Ok(Some(s)) => break Some(s),
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(100))
                    }
                    _ => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break None;
                    }
                }
            };
            let lines = reader.join().unwrap_or_default();
            let mut errors = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut errors);
            }
            if !status.is_some_and(|s| s.success()) {
                return Err(BedError::Other(format!(
                    "the flood in {} failed ({status:?}): {errors}",
                    "the container"
                )));
            }
            Ok(parse_flood(&names, &lines))
        });
        Ok(Flood {
            thread,
            started,
            connected,
        })
    }

    /// Connections established so far.
    pub fn connected(&self) -> usize {
        self.connected.lock().map_or(0, |g| *g)
    }

    /// Waits for the end of the hold; the outcome per target.
    pub fn join(self) -> Result<Vec<FloodOutcome>> {
        self.thread
            .join()
            .map_err(|_| BedError::Other("the flood thread panicked".into()))?
    }
}

/// The flood in a container: `perl - PER_TARGET HOLD_SECONDS TARGET...`.
/// Connects (blocking: a `Timeout` would select(2), which stops at
/// descriptor 1,024; the caller bounds the whole), prints `connected N`, then
/// reads without sending until the hold ends, and prints per connection
/// `conn TARGET_INDEX STATE CLOSED_AFTER HEX_OF_FIRST_BYTES` (STATE
/// `failed`, `closed` or `open`).
const FLOOD_PL: &str = r#"
use strict; use warnings;
use IO::Socket::INET; use IO::Poll qw(POLLIN POLLHUP POLLERR);
use Time::HiRes qw(time);
$| = 1;
my ($per, $hold, @targets) = @ARGV;
my $start = time;
my (@conns, @failed);
for my $i (1 .. $per) {
  for my $t (0 .. $#targets) {
    my $s = IO::Socket::INET->new(PeerAddr => $targets[$t], Proto => 'tcp');
    if (!$s) { push @failed, $t; next }
    $s->blocking(0);
    push @conns, { s => $s, t => $t, at => time, buf => '', closed => undef };
  }
}
print "connected ", scalar(@conns), "
";
my %by_fd = map { (fileno($_->{s}) => $_) } @conns;
my $poll = IO::Poll->new;
$poll->mask($_->{s} => POLLIN) for @conns;
while ((my $left = $start + $hold - time) > 0 && $poll->handles) {
  $poll->poll($left);
  for my $h ($poll->handles(POLLIN | POLLHUP | POLLERR)) {
    my $c = $by_fd{fileno($h)};
    my $n = sysread($h, my $b, 512);
    if (defined $n && $n > 0) { $c->{buf} .= $b if length($c->{buf}) < 512; next }
    next if !defined $n && $!{EAGAIN};
    $c->{closed} = time - $c->{at};
    $poll->remove($h);
  }
}
print "conn $_ failed 0 -
" for @failed;
for my $c (@conns) {
  my $hex = length($c->{buf}) ? unpack('H*', substr($c->{buf}, 0, 512)) : '-';
  if (defined $c->{closed}) { printf "conn %d closed %.3f %s
", $c->{t}, $c->{closed}, $hex }
  else { printf "conn %d open 0 %s
", $c->{t}, $hex }
}
"#;

/// Reads the Perl flood's report into outcomes per target.
fn parse_flood(targets: &[String], lines: &[String]) -> Vec<FloodOutcome> {
    let mut out: Vec<FloodOutcome> = targets
        .iter()
        .map(|t| FloodOutcome {
            target: t.clone(),
            ..FloodOutcome::default()
        })
        .collect();
    for line in lines {
        let w: Vec<&str> = line.split_whitespace().collect();
        let [_, t, state, after, hex] = w.as_slice() else {
            continue;
        };
        let Some(o) = t.parse::<usize>().ok().and_then(|t| out.get_mut(t)) else {
            continue;
        };
        let bytes = unhex(hex);
        let closed = after
            .parse::<f64>()
            .ok()
            .filter(|_| *state == "closed")
            .map(Duration::from_secs_f64);
        if *state == "failed" {
            o.connect_failed += 1;
        } else {
            o.record(&bytes, closed);
        }
    }
    out
}

fn unhex(hex: &str) -> Vec<u8> {
    (0..hex.len() / 2)
        .filter_map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

impl FloodOutcome {
    /// One connection that was established: its first bytes and when it
    /// was closed (`None`: still open at the end).
    fn record(&mut self, bytes: &[u8], closed: Option<Duration>) {
        match bytes.get(4) {
            None if closed.is_some() => self.closed_silently += 1,
            None => self.silent_open += 1,
            Some(0xff) => {
                let text = String::from_utf8_lossy(bytes.get(7..).unwrap_or_default()).into_owned();
                *self.refused.entry(text).or_insert(0) += 1;
            }
            Some(_) => {
                self.greeted += 1;
                if let Some(after) = closed {
                    self.greeted_closed_after.push(after);
                }
            }
        }
    }
}

enum Conn {
    Failed,
    /// First bytes received (up to 512), closed after (None: still open).
    Open(Vec<u8>, Option<Duration>),
}

async fn flood(
    targets: Vec<SocketAddr>,
    per_target: usize,
    hold: Duration,
    connected: Arc<Mutex<usize>>,
) -> Vec<FloodOutcome> {
    let until = tokio::time::Instant::now() + hold;
    // At most this many connects in flight: a burst, not a SYN flood.
    let gate = Arc::new(tokio::sync::Semaphore::new(128));
    let mut tasks = Vec::new();
    for _ in 0..per_target {
        for (t, target) in targets.iter().enumerate() {
            let gate = Arc::clone(&gate);
            let connected = Arc::clone(&connected);
            let target = *target;
            tasks.push((
                t,
                tokio::spawn(async move {
                    let permit = gate.acquire_owned().await;
                    idle(target, until, permit.ok(), &connected).await
                }),
            ));
        }
    }
    let mut out: Vec<FloodOutcome> = targets
        .iter()
        .map(|t| FloodOutcome {
            target: t.to_string(),
            ..FloodOutcome::default()
        })
        .collect();
    for (t, task) in tasks {
        let o = &mut out[t];
        match task.await {
            Ok(Conn::Failed) | Err(_) => o.connect_failed += 1,
            Ok(Conn::Open(bytes, closed)) => o.record(&bytes, closed),
        }
    }
    out
}

/// One idle connection: connect (bounded), then only read until the
/// other side closes or `until`.
async fn idle(
    target: SocketAddr,
    until: tokio::time::Instant,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
    connected: &Mutex<usize>,
) -> Conn {
    use tokio::io::AsyncReadExt;
    let connect = tokio::net::TcpStream::connect(target);
    let mut stream = match tokio::time::timeout(Duration::from_secs(5), connect).await {
        Ok(Ok(s)) => s,
        _ => return Conn::Failed,
    };
    drop(permit);
    if let Ok(mut g) = connected.lock() {
        *g += 1;
    }
    let opened = Instant::now();
    let mut seen = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        match tokio::time::timeout_at(until, stream.read(&mut buf)).await {
            Err(_) => return Conn::Open(seen, None),
            Ok(Ok(0)) | Ok(Err(_)) => return Conn::Open(seen, Some(opened.elapsed())),
            Ok(Ok(n)) => {
                let room = 512usize.saturating_sub(seen.len());
                seen.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
}

/// sysbench (1.0) is installed: `MYHA_BENCH_DEPS=1 scripts/install-deps`.
pub fn have_sysbench() -> bool {
    Command::new("sysbench")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn sysbench_args(test: &str, host: &str, port: u16) -> Vec<String> {
    vec![
        test.to_string(),
        format!("--mysql-host={host}"),
        format!("--mysql-port={port}"),
        format!("--mysql-user={APP_USER}"),
        format!("--mysql-password={APP_PASSWORD}"),
        "--mysql-db=sbtest".to_string(),
        "--tables=2".to_string(),
        "--table-size=10000".to_string(),
        "--db-ps-mode=disable".to_string(),
    ]
}

/// Creates sysbench's tables (2 x 10,000 rows in `sbtest`) through
/// `host:port`.
pub fn sysbench_prepare(host: &str, port: u16) -> Result<()> {
    let mut args = sysbench_args("oltp_read_only", host, port);
    args.push("prepare".into());
    run(Command::new("sysbench").args(&args))?;
    Ok(())
}

/// A sysbench run under way, reporting every second.
#[derive(Debug)]
pub struct Sysbench {
    child: Child,
    seconds: u32,
    /// When it was started (its report's second N ends about N seconds
    /// after this, plus its connections' set-up).
    pub spawned: Instant,
}

/// One second of a sysbench report.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    /// The second it ends (1, 2, ...).
    pub at: u32,
    pub tps: f64,
    pub errors: f64,
    pub reconnects: f64,
}

/// A finished sysbench run.
#[derive(Debug, Clone)]
pub struct SysbenchRun {
    pub ok: bool,
    pub intervals: Vec<Interval>,
    pub output: String,
}

impl SysbenchRun {
    /// Mean transactions per second over the report's seconds `from..to`
    /// (the second ending at `from + 1` first); 0 if there are none.
    pub fn mean_tps(&self, from: u32, to: u32) -> f64 {
        let xs: Vec<f64> = self
            .intervals
            .iter()
            .filter(|i| i.at > from && i.at <= to)
            .map(|i| i.tps)
            .collect();
        if xs.is_empty() {
            0.0
        } else {
            xs.iter().sum::<f64>() / xs.len() as f64
        }
    }

    /// Errors per second summed over `from..to`.
    pub fn errors(&self, from: u32, to: u32) -> f64 {
        self.intervals
            .iter()
            .filter(|i| i.at > from && i.at <= to)
            .map(|i| i.errors)
            .sum()
    }
}

/// A sysbench script (1.0 has no `--reconnect`): point selects, or
/// inserts with `--write=on`, on sysbench's tables, each thread logging in
/// anew every `--reconnect` events, so that new connections go through the
/// router all along, as an application's short-lived ones do.
const RECONNECTING_LUA: &str = r#"
sysbench.cmdline.options = {
  table_size = {"Rows per table", 10000},
  tables = {"Number of tables", 2},
  reconnect = {"Log in anew every N events (0: never)", 20},
  write = {"Insert rows instead of reading them", false},
}
function thread_init()
  drv = sysbench.sql.driver()
  con = drv:connect()
  events = 0
end
function thread_done()
  con:disconnect()
end
function event()
  local t = sysbench.rand.uniform(1, sysbench.opt.tables)
  local id = sysbench.rand.default(1, sysbench.opt.table_size)
  if sysbench.opt.write then
    con:query(string.format("INSERT INTO sbtest%d (k, c, pad) VALUES (%d, 'myha', 'flood')", t, id))
  else
    con:query(string.format("SELECT c FROM sbtest%d WHERE id = %d", t, id))
  end
  events = events + 1
  if sysbench.opt.reconnect > 0 and events % sysbench.opt.reconnect == 0 then
    con:disconnect()
    con = drv:connect()
  end
end
"#;

/// Writes [`RECONNECTING_LUA`] into `dir`; its path.
pub fn reconnecting_script(dir: &std::path::Path) -> Result<std::path::PathBuf> {
    let path = dir.join("myha_reconnecting.lua");
    std::fs::write(&path, RECONNECTING_LUA)
        .map_err(|e| BedError::Other(format!("{}: {e}", path.display())))?;
    Ok(path)
}

impl Sysbench {
    /// Starts `test` (a built-in test or a script's path) through
    /// `host:port` for `seconds` with `threads` and `extra` options,
    /// reporting each second.
    pub fn start(
        test: &str,
        host: &str,
        port: u16,
        threads: u32,
        seconds: u32,
        extra: &[&str],
    ) -> Result<Sysbench> {
        let mut args = sysbench_args(test, host, port);
        args.extend([
            format!("--threads={threads}"),
            format!("--time={seconds}"),
            "--report-interval=1".to_string(),
        ]);
        args.extend(extra.iter().map(|s| s.to_string()));
        args.push("run".to_string());
        let child = Command::new("sysbench")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| BedError::Spawn {
                cmd: "sysbench".into(),
                source,
            })?;
        Ok(Sysbench {
            child,
            seconds,
            spawned: Instant::now(),
        })
    }

    /// Waits for the run to end (killed 60 s after its time if it hangs).
    pub fn finish(mut self) -> Result<SysbenchRun> {
        let deadline = self.spawned + Duration::from_secs(u64::from(self.seconds) + 60);
        let stdout = self.child.stdout.take();
        let stderr = self.child.stderr.take();
        let read = |pipe: Option<std::process::ChildStdout>| {
            std::thread::spawn(move || {
                let mut lines = Vec::new();
                if let Some(p) = pipe {
                    for line in std::io::BufReader::new(p).lines().map_while(|l| l.ok()) {
                        lines.push(line);
                    }
                }
                lines
            })
        };
        let out = read(stdout);
        let err = std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(mut p) = stderr {
                let _ = std::io::Read::read_to_string(&mut p, &mut s);
            }
            s
        });
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(s)) => break Some(s),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100))
                }
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break None;
                }
            }
        };
        let lines = out.join().unwrap_or_default();
        let errors = err.join().unwrap_or_default();
        let intervals = lines.iter().filter_map(|l| parse_interval(l)).collect();
        Ok(SysbenchRun {
            ok: status.is_some_and(|s| s.success()),
            intervals,
            output: format!("{}\n{errors}", lines.join("\n")),
        })
    }
}

/// `[ 5s ] thds: 4 tps: 2969.84 qps: 2969.84 (r/w/o: ...) lat (ms,95%):
/// 1.89 err/s: 0.00 reconn/s: 148.49`
pub fn parse_interval(line: &str) -> Option<Interval> {
    let rest = line.trim().strip_prefix('[')?;
    let (at, rest) = rest.split_once("s ]")?;
    let field = |key: &str| -> Option<f64> {
        let mut words = rest.split_whitespace();
        words.find(|w| *w == key)?;
        words.next()?.parse().ok()
    };
    Some(Interval {
        at: at.trim().parse().ok()?,
        tps: field("tps:")?,
        errors: field("err/s:").unwrap_or(0.0),
        reconnects: field("reconn/s:").unwrap_or(0.0),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn sysbench_report_lines_are_read() {
        let i = parse_interval(
            "[ 12s ] thds: 4 tps: 2969.84 qps: 2969.84 (r/w/o: 2969.84/0.00/0.00) lat (ms,95%): 1.89 err/s: 0.50 reconn/s: 148.49",
        )
        .unwrap();
        assert_eq!(i.at, 12);
        assert!((i.tps - 2969.84).abs() < 1e-9);
        assert!((i.errors - 0.5).abs() < 1e-9);
        assert!((i.reconnects - 148.49).abs() < 1e-9);
        assert!(parse_interval("SQL statistics:").is_none());
        let flood = parse_flood(
            &["a".into(), "b".into()],
            &[
                "conn 0 failed 0 -".into(),
                "conn 1 closed 5.012 4a0000000a31312e34".into(),
                "conn 1 closed 0.001 17000000ff1004546f6f206d616e79".into(),
                "conn 0 open 0 -".into(),
                "garbage".into(),
            ],
        );
        assert_eq!(flood[0].connect_failed, 1);
        assert_eq!(flood[0].silent_open, 1);
        assert_eq!(flood[1].greeted, 1);
        assert_eq!(
            flood[1].greeted_closed_after,
            vec![Duration::from_millis(5012)]
        );
        assert_eq!(flood[1].refused.get("Too many"), Some(&1));
        let run = SysbenchRun {
            ok: true,
            intervals: (1..=4)
                .map(|at| Interval {
                    at,
                    tps: f64::from(at),
                    errors: 0.0,
                    reconnects: 0.0,
                })
                .collect(),
            output: String::new(),
        };
        assert!((run.mean_tps(1, 3) - 2.5).abs() < 1e-9);
        assert_eq!(run.mean_tps(9, 10), 0.0);
    }
}
