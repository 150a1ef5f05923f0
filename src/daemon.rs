//! `myha agent|manager|router`: the daemons live in their own binary,
//! `myhad`, so that the CLI links none of them. This replaces the process
//! with `myhad` and the same arguments (same PID: a supervisor's signals
//! reach the daemon).
use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::ExitCode;

/// The daemons' binary: `MYHA_DAEMON_BIN`, else `myhad` next to this
/// executable, else `myhad` on `PATH`.
fn daemon_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("MYHA_DAEMON_BIN") {
        return PathBuf::from(p);
    }
    std::env::current_exe()
        .ok()
        .map(|me| me.with_file_name("myhad"))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("myhad"))
}

/// Exec `myhad` with this process's arguments. Returns only on failure,
/// with the reason on stderr.
pub fn exec() -> ExitCode {
    let bin = daemon_bin();
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let err = std::process::Command::new(&bin).args(&args).exec();
    eprintln!(
        "myha: cannot run the daemons' binary {}: {err} (install myhad next to myha, or set MYHA_DAEMON_BIN)",
        bin.display()
    );
    ExitCode::from(127)
}
