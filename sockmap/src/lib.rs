//! Kernel relay for the myha router.
//!
//! A BPF `SOCKHASH` map holds, for each relayed connection, two entries:
//! the client socket's cookie maps to the backend socket and the backend
//! socket's cookie maps to the client socket. An `sk_skb` verdict program
//! attached to the map runs when a segment arrives on either socket, looks
//! up the arriving socket's cookie and redirects the bytes to the egress of
//! its peer. The bytes never reach the router's process: no wake-up, no
//! `recvfrom`/`sendto`, no copy through user space. If the lookup fails
//! (the pair is being torn down) the program passes the bytes to the socket
//! itself, where the router reads and relays them as usual, so nothing is
//! dropped.
//!
//! This is the only crate of the workspace with `unsafe`: the `bpf(2)`
//! syscall, `getsockopt` for the socket cookie and `TCP_INFO`, and
//! `ioctl(SIOCOUTQ)`. Each block states why it is sound.
//!
//! Needs Linux 5.13+ (`BPF_SK_SKB_VERDICT`) and `CAP_BPF`+`CAP_NET_ADMIN`
//! (root); [`Splicer::new`] says plainly when the kernel refuses.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum SockmapError {
    #[error("{what}: {source}")]
    Sys {
        what: &'static str,
        source: io::Error,
    },
    #[error("the kernel's verifier refused the relay program: {source}: {log}")]
    Verifier { source: io::Error, log: String },
}

fn sys(what: &'static str) -> impl FnOnce(io::Error) -> SockmapError {
    move |source| SockmapError::Sys { what, source }
}

// bpf(2) commands, map, program and attach types (include/uapi/linux/bpf.h).
const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_DELETE_ELEM: libc::c_long = 3;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_MAP_TYPE_SOCKHASH: u32 = 18;
const BPF_PROG_TYPE_SK_SKB: u32 = 14;
const BPF_SK_SKB_VERDICT: u32 = 38;
const BPF_NOEXIST: u64 = 1;
// Helpers called by the program.
const FN_GET_SOCKET_COOKIE: i32 = 46;
const FN_SK_REDIRECT_HASH: i32 = 72;
const SK_PASS: i32 = 1;
const SO_COOKIE: libc::c_int = 57;

/// Two entries per relayed connection.
pub const MAX_PAIRS: u32 = 65_536;

/// The `bpf_attr` union, zero-filled, written field by field at the
/// offsets of the kernel's layout.
struct Attr([u8; 128]);

impl Attr {
    fn new() -> Self {
        Attr([0; 128])
    }
    fn u32(mut self, off: usize, v: u32) -> Self {
        self.0[off..off + 4].copy_from_slice(&v.to_ne_bytes());
        self
    }
    fn u64(mut self, off: usize, v: u64) -> Self {
        self.0[off..off + 8].copy_from_slice(&v.to_ne_bytes());
        self
    }
    fn name(mut self, off: usize, name: &str) -> Self {
        let n = name.len().min(15);
        self.0[off..off + n].copy_from_slice(&name.as_bytes()[..n]);
        self
    }
}

#[allow(unsafe_code)]
fn bpf(cmd: libc::c_long, attr: &mut Attr) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a live, writable 128-byte buffer for the whole
    // call and the size passed is its length. Every pointer stored in it
    // (key, value, instructions, license, log) points to a buffer that the
    // caller keeps alive until this returns.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr.0.as_mut_ptr(),
            attr.0.len() as libc::c_uint,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// A syscall that returns a new file descriptor.
#[allow(unsafe_code)]
fn bpf_fd(cmd: libc::c_long, attr: &mut Attr) -> io::Result<OwnedFd> {
    let fd = bpf(cmd, attr)?;
    let fd = i32::try_from(fd).map_err(|_| io::Error::other("bpf returned no descriptor"))?;
    // SAFETY: the kernel has just created this descriptor for us; nothing
    // else owns it, so the OwnedFd is its only owner and closes it once.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> [u8; 8] {
    let mut b = [0u8; 8];
    b[0] = code;
    b[1] = (src << 4) | (dst & 0x0f);
    b[2..4].copy_from_slice(&off.to_le_bytes());
    b[4..8].copy_from_slice(&imm.to_le_bytes());
    b
}

/// The verdict program:
///
/// ```text
/// r6 = r1                                   ; the skb
/// r0 = bpf_get_socket_cookie(r1)            ; the socket it arrived on
/// *(u64 *)(r10 - 8) = r0
/// r0 = bpf_sk_redirect_hash(r6, map, r10 - 8, 0)  ; to its peer's egress
/// return SK_PASS        ; redirected if the peer was found, else kept
/// ```
fn program(map_fd: i32) -> Vec<u8> {
    const MOV64_REG: u8 = 0xbf; // BPF_ALU64 | BPF_MOV | BPF_X
    const MOV64_IMM: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
    const ADD64_IMM: u8 = 0x07; // BPF_ALU64 | BPF_ADD | BPF_K
    const STX_DW: u8 = 0x7b; // BPF_STX | BPF_MEM | BPF_DW
    const LD_IMM64: u8 = 0x18; // BPF_LD | BPF_DW | BPF_IMM
    const CALL: u8 = 0x85; // BPF_JMP | BPF_CALL
    const EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT
    const PSEUDO_MAP_FD: u8 = 1;
    [
        insn(MOV64_REG, 6, 1, 0, 0),
        insn(CALL, 0, 0, 0, FN_GET_SOCKET_COOKIE),
        insn(STX_DW, 10, 0, -8, 0),
        insn(MOV64_REG, 1, 6, 0, 0),
        insn(LD_IMM64, 2, PSEUDO_MAP_FD, 0, map_fd),
        insn(0, 0, 0, 0, 0),
        insn(MOV64_REG, 3, 10, 0, 0),
        insn(ADD64_IMM, 3, 0, 0, -8),
        insn(MOV64_IMM, 4, 0, 0, 0),
        insn(CALL, 0, 0, 0, FN_SK_REDIRECT_HASH),
        insn(MOV64_IMM, 0, 0, 0, SK_PASS),
        insn(EXIT, 0, 0, 0, 0),
    ]
    .concat()
}

#[derive(Debug)]
struct Inner {
    map: OwnedFd,
    _prog: OwnedFd,
}

/// The loaded map and program; cheap to clone. Dropping the last clone
/// releases them and every socket still in the map goes back to plain
/// TCP.
#[derive(Debug, Clone)]
pub struct Splicer(Arc<Inner>);

impl Splicer {
    /// Create the map, load the verdict program and attach it.
    pub fn new() -> Result<Self, SockmapError> {
        let map = bpf_fd(
            BPF_MAP_CREATE,
            &mut Attr::new()
                .u32(0, BPF_MAP_TYPE_SOCKHASH)
                .u32(4, 8) // key: the socket cookie
                .u32(8, 4) // value: a socket descriptor
                .u32(12, 2 * MAX_PAIRS)
                .name(28, "myha_relay"),
        )
        .map_err(sys("creating the sockhash map"))?;
        let code = program(map.as_raw_fd());
        let license = b"GPL\0";
        let load = |log: &mut [u8]| {
            let mut attr = Attr::new()
                .u32(0, BPF_PROG_TYPE_SK_SKB)
                .u32(4, (code.len() / 8) as u32)
                .u64(8, code.as_ptr() as u64)
                .u64(16, license.as_ptr() as u64)
                .name(48, "myha_relay");
            if !log.is_empty() {
                attr = attr
                    .u32(24, 1)
                    .u32(28, log.len() as u32)
                    .u64(32, log.as_mut_ptr() as u64);
            }
            bpf_fd(BPF_PROG_LOAD, &mut attr)
        };
        let prog = match load(&mut []) {
            Ok(p) => p,
            Err(first) if first.raw_os_error() == Some(libc::EPERM) => {
                return Err(SockmapError::Sys {
                    what: "loading the relay program (needs root or CAP_BPF+CAP_NET_ADMIN)",
                    source: first,
                })
            }
            Err(first) => {
                let mut log = vec![0u8; 16 * 1024];
                let again = load(&mut log);
                let text = String::from_utf8_lossy(&log);
                let text = text.trim_end_matches('\0').trim().to_string();
                return Err(SockmapError::Verifier {
                    source: again.err().unwrap_or(first),
                    log: text,
                });
            }
        };
        bpf(
            BPF_PROG_ATTACH,
            &mut Attr::new()
                .u32(0, map.as_raw_fd() as u32)
                .u32(4, prog.as_raw_fd() as u32)
                .u32(8, BPF_SK_SKB_VERDICT),
        )
        .map_err(sys("attaching the relay program to the map"))?;
        Ok(Splicer(Arc::new(Inner { map, _prog: prog })))
    }

    /// From now on, bytes arriving on `a` leave through `b` and bytes
    /// arriving on `b` leave through `a`, inside the kernel. Both must be
    /// established TCP sockets. Bytes already queued on either socket are
    /// not moved: relay them first (the router reads the server's greeting
    /// before it pairs a connection).
    pub fn pair(&self, a: BorrowedFd<'_>, b: BorrowedFd<'_>) -> Result<Pairing, SockmapError> {
        let ka = cookie(a).map_err(sys("reading a socket cookie"))?;
        let kb = cookie(b).map_err(sys("reading a socket cookie"))?;
        self.put(ka, b)?;
        if let Err(e) = self.put(kb, a) {
            self.delete(ka);
            return Err(e);
        }
        Ok(Pairing {
            splicer: self.clone(),
            keys: [ka, kb],
        })
    }

    fn put(&self, key: u64, value: BorrowedFd<'_>) -> Result<(), SockmapError> {
        let key = key.to_ne_bytes();
        let fd = (value.as_raw_fd() as u32).to_ne_bytes();
        bpf(
            BPF_MAP_UPDATE_ELEM,
            &mut Attr::new()
                .u32(0, self.0.map.as_raw_fd() as u32)
                .u64(8, key.as_ptr() as u64)
                .u64(16, fd.as_ptr() as u64)
                .u64(24, BPF_NOEXIST),
        )
        .map(drop)
        .map_err(sys("adding a socket to the relay map"))
    }

    fn delete(&self, key: u64) {
        let key = key.to_ne_bytes();
        // ENOENT is expected: closing a socket removes its entries.
        let _ = bpf(
            BPF_MAP_DELETE_ELEM,
            &mut Attr::new()
                .u32(0, self.0.map.as_raw_fd() as u32)
                .u64(8, key.as_ptr() as u64),
        );
    }
}

/// A connection relayed by the kernel; dropping it takes both sockets out
/// of the map (closing a socket does too).
#[derive(Debug)]
pub struct Pairing {
    splicer: Splicer,
    keys: [u64; 2],
}

impl Drop for Pairing {
    fn drop(&mut self) {
        for k in self.keys {
            self.splicer.delete(k);
        }
    }
}

#[allow(unsafe_code)]
fn cookie(fd: BorrowedFd<'_>) -> io::Result<u64> {
    let mut v: u64 = 0;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: `fd` is a live descriptor for the call; `v` and `len` are
    // valid for writes and `len` holds the size of `v`.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_COOKIE,
            (&mut v as *mut u64).cast(),
            &mut len,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(v)
}

/// Byte counters of a TCP socket, for draining a kernel-relayed direction
/// before its end is passed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpCounters {
    /// Bytes received in order (`tcpi_bytes_received`; a FIN counts one).
    pub received: u64,
    /// Bytes ever put in the send queue: acknowledged plus still queued
    /// (`tcpi_bytes_acked` + `SIOCOUTQ`). Read in that order, so a
    /// concurrent ACK can only make it low, never high.
    pub queued: u64,
}

/// `struct tcp_info` offsets (include/uapi/linux/tcp.h).
const TCPI_BYTES_ACKED: usize = 120;
const TCPI_BYTES_RECEIVED: usize = 128;

#[allow(unsafe_code)]
pub fn tcp_counters(fd: BorrowedFd<'_>) -> io::Result<TcpCounters> {
    let mut info = [0u8; 232];
    let mut len = info.len() as libc::socklen_t;
    // SAFETY: `fd` is live for the call; `info` is writable for `len`
    // bytes and the kernel writes at most that many.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    if (len as usize) < TCPI_BYTES_RECEIVED + 8 {
        return Err(io::Error::other(
            "the kernel's tcp_info has no byte counters",
        ));
    }
    let at = |off: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&info[off..off + 8]);
        u64::from_ne_bytes(b)
    };
    let acked = at(TCPI_BYTES_ACKED);
    let received = at(TCPI_BYTES_RECEIVED);
    let mut outq: libc::c_int = 0;
    // SAFETY: `fd` is live; SIOCOUTQ writes one int to `outq`.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCOUTQ, &mut outq) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(TcpCounters {
        received,
        queued: acked + u64::try_from(outq).unwrap_or(0),
    })
}

#[cfg(test)]
mod tests;
