//! Following a connection's MySQL handshake from the bytes each side sends,
//! without changing them: the router disconnects a client that has not
//! completed it within `handshake_timeout`.
//!
//! The handshake, as the router sees it:
//!
//! 1. the server's greeting (protocol 10), or an error packet (too many
//!    connections, host blocked): then it is over;
//! 2. the client's handshake response, or its `SSLRequest` (32 bytes with
//!    `CLIENT_SSL`), after which both sides speak TLS;
//! 3. in clear, authentication packets until the server's OK (`0x00`) or
//!    ERR (`0xff`); an auth switch (`0xfe`) or more data (`0x01`) goes on.
//!
//! Inside TLS the packets are encrypted; the router counts TLS records
//! instead, whose 5-byte headers are in clear. The client's login is its
//! first application-data record after the TLS handshake (its second with
//! TLS 1.3, whose client `Finished` is one too); the handshake counts as
//! complete at the server's next application-data record. (With TLS 1.3
//! that may be a session ticket rather than the login's answer: the
//! client has sent its login by then, and the server decides.)
//!
//! Whatever the tracker cannot follow (not a MySQL greeting, a TLS record
//! of an unknown type) counts as complete: a misreading must never cut a
//! connection that logged in.

/// MySQL packet header: 3-byte length, sequence id.
const MYSQL_HEADER: usize = 4;
/// TLS record header: type, version (2), length (2, big endian).
const TLS_HEADER: usize = 5;
/// `CLIENT_SSL` in the client's capability flags.
const CLIENT_SSL: u32 = 0x0800;
/// An `SSLRequest`'s payload: capabilities, max packet, charset, filler.
const SSL_REQUEST_LEN: usize = 32;
/// TLS `application_data` record type.
const TLS_APPLICATION_DATA: u8 = 23;

/// How a handshake ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The server's OK to the login: clear text from here on.
    LoggedIn,
    /// The server's error packet (greeting or login): it closes next.
    Refused,
    /// The server answered the login inside TLS.
    Tls,
    /// Not a handshake the tracker can follow: left alone.
    Untracked,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    /// A MySQL packet: its length and first payload bytes.
    Mysql { len: usize, head: [u8; 4] },
    /// A TLS record: its type.
    Tls { kind: u8 },
}

/// Splits one direction's bytes into MySQL packets or TLS records.
#[derive(Debug, Default)]
struct Framer {
    tls: bool,
    header: [u8; TLS_HEADER],
    have: usize,
    /// Payload bytes still to come of the unit under way (after its header).
    remaining: usize,
    head: [u8; 4],
    head_len: usize,
}

impl Framer {
    fn header_len(&self) -> usize {
        if self.tls {
            TLS_HEADER
        } else {
            MYSQL_HEADER
        }
    }

    /// Between units: nothing of a header or payload pending.
    fn idle(&self) -> bool {
        self.have == 0 && self.remaining == 0
    }

    /// Consumes `bytes[*pos..]` until a unit ends (returned; `*pos` just
    /// past it) or the bytes run out (`None`).
    fn next(&mut self, bytes: &[u8], pos: &mut usize) -> Option<Unit> {
        while *pos < bytes.len() {
            let hl = self.header_len();
            if self.have < hl {
                let take = (hl - self.have).min(bytes.len() - *pos);
                self.header[self.have..self.have + take].copy_from_slice(&bytes[*pos..*pos + take]);
                self.have += take;
                *pos += take;
                if self.have < hl {
                    return None;
                }
                let h = self.header;
                self.remaining = if self.tls {
                    usize::from(u16::from_be_bytes([h[3], h[4]]))
                } else {
                    usize::from(h[0]) | usize::from(h[1]) << 8 | usize::from(h[2]) << 16
                };
                self.head_len = 0;
                self.head = [0; 4];
            } else {
                let take = self.remaining.min(bytes.len() - *pos);
                let keep = take.min(self.head.len() - self.head_len);
                self.head[self.head_len..self.head_len + keep]
                    .copy_from_slice(&bytes[*pos..*pos + keep]);
                self.head_len += keep;
                self.remaining -= take;
                *pos += take;
            }
            // (A unit with an empty payload ends with its header.)
            if self.remaining == 0 {
                return Some(self.finish());
            }
        }
        None
    }

    fn finish(&mut self) -> Unit {
        let h = self.header;
        let len = if self.tls {
            usize::from(u16::from_be_bytes([h[3], h[4]]))
        } else {
            usize::from(h[0]) | usize::from(h[1]) << 8 | usize::from(h[2]) << 16
        };
        self.have = 0;
        self.remaining = 0;
        if self.tls {
            Unit::Tls { kind: h[0] }
        } else {
            Unit::Mysql {
                len,
                head: self.head,
            }
        }
    }
}

/// The handshake of one connection, fed with each side's bytes in the
/// order they arrive.
#[derive(Debug, Default)]
pub(crate) struct Handshake {
    server: Framer,
    client: Framer,
    server_packets: u64,
    client_packets: u64,
    /// TLS: application-data records the client has sent.
    client_app_records: u32,
    /// TLS 1.3: the server sent application data before the client did.
    tls13: bool,
    outcome: Option<Outcome>,
}

impl Handshake {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn outcome(&self) -> Option<Outcome> {
        self.outcome
    }

    /// Bytes from the server. Returns the offset just past the packet or
    /// record that completed the handshake, if one in `bytes` did.
    pub fn server(&mut self, bytes: &[u8]) -> Option<usize> {
        let mut pos = 0;
        while self.outcome.is_none() {
            let unit = self.server.next(bytes, &mut pos)?;
            self.server_unit(unit);
            if self.outcome.is_some() {
                return Some(pos);
            }
        }
        None
    }

    /// Bytes from the client. Returns the offset just past the packet
    /// that completed the handshake (only an untrackable one can).
    pub fn client(&mut self, bytes: &[u8]) -> Option<usize> {
        let mut pos = 0;
        while self.outcome.is_none() {
            let unit = self.client.next(bytes, &mut pos)?;
            self.client_unit(unit);
            if self.outcome.is_some() {
                return Some(pos);
            }
        }
        None
    }

    fn server_unit(&mut self, unit: Unit) {
        self.server_packets += 1;
        match unit {
            Unit::Mysql { head, .. } if self.server_packets == 1 => match head[0] {
                // Protocol 10: the greeting.
                10 => {}
                0xff => self.outcome = Some(Outcome::Refused),
                _ => self.outcome = Some(Outcome::Untracked),
            },
            // Before the client's login the server has nothing to say.
            Unit::Mysql { .. } if self.client_packets == 0 => {
                self.outcome = Some(Outcome::Untracked)
            }
            Unit::Mysql { head, len } => match head[0] {
                0x00 if len > 0 => self.outcome = Some(Outcome::LoggedIn),
                0xff => self.outcome = Some(Outcome::Refused),
                // Auth switch (0xfe), more data (0x01): the exchange goes on.
                _ => {}
            },
            Unit::Tls { kind } => match kind {
                TLS_APPLICATION_DATA => {
                    let login = if self.tls13 { 2 } else { 1 };
                    if self.client_app_records == 0 {
                        self.tls13 = true;
                    } else if self.client_app_records >= login {
                        self.outcome = Some(Outcome::Tls);
                    }
                }
                // Change cipher spec, alert, handshake, heartbeat.
                20..=22 | 24 => {}
                _ => self.outcome = Some(Outcome::Untracked),
            },
        }
    }

    fn client_unit(&mut self, unit: Unit) {
        self.client_packets += 1;
        match unit {
            Unit::Mysql { len, head } => {
                let caps = u32::from_le_bytes(head);
                if self.client_packets == 1 && len == SSL_REQUEST_LEN && caps & CLIENT_SSL != 0 {
                    // Both sides speak TLS next; the server has been
                    // waiting since its greeting.
                    if !self.server.idle() || !self.client.idle() {
                        self.outcome = Some(Outcome::Untracked);
                        return;
                    }
                    self.server.tls = true;
                    self.client.tls = true;
                }
            }
            Unit::Tls { kind } => match kind {
                TLS_APPLICATION_DATA => self.client_app_records += 1,
                20..=22 | 24 => {}
                _ => self.outcome = Some(Outcome::Untracked),
            },
        }
    }
}

/// Read buffer per direction while the handshake is relayed.
const FOLLOW_BUF: usize = 4096;

/// How [`follow`] left a connection.
#[derive(Debug)]
pub(crate) struct Followed {
    /// The server's last bytes, which completed the handshake: not yet
    /// passed on to the client.
    pub pending: Vec<u8>,
}

/// Relays a connection's handshake, both directions, following it, until
/// it completes; the server's bytes that complete it are returned, not
/// passed on. Bounded by the caller (`handshake_timeout`). An end that
/// closes or fails first is an error: the caller closes both.
pub(crate) async fn follow(
    client: &mut tokio::net::TcpStream,
    backend: &mut tokio::net::TcpStream,
) -> std::io::Result<Followed> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let closed = |who: &str| {
        std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("the {who} closed during the handshake"),
        )
    };
    let mut hs = Handshake::new();
    let (mut client_rx, mut client_tx) = client.split();
    let (mut backend_rx, mut backend_tx) = backend.split();
    let mut up = vec![0u8; FOLLOW_BUF];
    let mut down = vec![0u8; FOLLOW_BUF];
    loop {
        tokio::select! {
            r = client_rx.read(&mut up) => {
                let n = r?;
                if n == 0 {
                    return Err(closed("client"));
                }
                hs.client(&up[..n]);
                backend_tx.write_all(&up[..n]).await?;
                if hs.outcome().is_some() {
                    return Ok(Followed { pending: Vec::new() });
                }
            }
            r = backend_rx.read(&mut down) => {
                let n = r?;
                if n == 0 {
                    return Err(closed("server"));
                }
                if hs.server(&down[..n]).is_some() {
                    return Ok(Followed { pending: down[..n].to_vec() });
                }
                client_tx.write_all(&down[..n]).await?;
            }
        }
    }
}

/// A MySQL error packet sent in place of a greeting (sequence 0, no SQL
/// state: the client has not negotiated the 4.1 protocol yet), as a server
/// refusing a connection sends it.
pub(crate) fn error_packet(code: u16, message: &str) -> Vec<u8> {
    let mut payload = Vec::with_capacity(3 + message.len());
    payload.push(0xff);
    payload.extend_from_slice(&code.to_le_bytes());
    payload.extend_from_slice(message.as_bytes());
    let len = payload.len().min(0xff_ffff) as u32;
    let mut packet = Vec::with_capacity(4 + payload.len());
    packet.extend_from_slice(&len.to_le_bytes()[..3]);
    packet.push(0);
    packet.extend_from_slice(&payload);
    packet
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(seq: u8, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut p = len.to_le_bytes()[..3].to_vec();
        p.push(seq);
        p.extend_from_slice(payload);
        p
    }

    fn greeting() -> Vec<u8> {
        let mut g = vec![10];
        g.extend_from_slice(b"11.4.2-MariaDB\0");
        g.extend_from_slice(&[0; 40]);
        packet(0, &g)
    }

    fn response() -> Vec<u8> {
        let mut r = 0x000f_a685u32.to_le_bytes().to_vec(); // no CLIENT_SSL
        r.extend_from_slice(&[0; 28]);
        r.extend_from_slice(b"app\0");
        r.push(20);
        r.extend_from_slice(&[7; 20]);
        packet(1, &r)
    }

    fn ok(seq: u8) -> Vec<u8> {
        packet(seq, &[0, 0, 0, 2, 0, 0, 0])
    }

    fn tls_record(kind: u8, len: usize) -> Vec<u8> {
        let mut r = vec![kind, 3, 3];
        r.extend_from_slice(&(len as u16).to_be_bytes());
        r.extend(std::iter::repeat_n(0xaa, len));
        r
    }

    #[test]
    fn a_clear_login_completes_at_the_end_of_the_servers_ok() {
        let mut h = Handshake::new();
        assert_eq!(h.server(&greeting()), None);
        assert_eq!(h.client(&response()), None);
        assert_eq!(h.outcome(), None);
        let ok = ok(2);
        assert_eq!(h.server(&ok), Some(ok.len()));
        assert_eq!(h.outcome(), Some(Outcome::LoggedIn));
    }

    #[test]
    fn bytes_arrive_in_any_pieces() {
        let mut h = Handshake::new();
        let g = greeting();
        for b in &g {
            assert_eq!(h.server(std::slice::from_ref(b)), None);
        }
        let r = response();
        let (a, b) = r.split_at(3);
        assert_eq!(h.client(a), None);
        assert_eq!(h.client(b), None);
        // The OK and a byte the server should not have sent after it.
        let mut tail = ok(2);
        let end = tail.len();
        tail.push(9);
        assert_eq!(h.server(&tail[..2]), None);
        assert_eq!(h.server(&tail[2..]), Some(end - 2));
    }

    #[test]
    fn an_idle_or_half_sent_client_never_completes() {
        let mut h = Handshake::new();
        h.server(&greeting());
        assert_eq!(h.outcome(), None);
        h.client(&response()[..10]);
        assert_eq!(h.outcome(), None);
    }

    #[test]
    fn auth_switch_and_more_data_go_on_until_ok_or_err() {
        let mut h = Handshake::new();
        h.server(&greeting());
        h.client(&response());
        let mut switch = vec![0xfe];
        switch.extend_from_slice(b"client_ed25519\0");
        switch.extend_from_slice(&[1; 32]);
        assert_eq!(h.server(&packet(2, &switch)), None);
        h.client(&packet(3, &[5; 64]));
        assert_eq!(h.server(&packet(4, &[1, 4])), None, "more data");
        h.client(&packet(5, &[6; 32]));
        assert_eq!(h.outcome(), None);
        let mut err = vec![0xff, 0x15, 0x04];
        err.extend_from_slice(b"#28000Access denied");
        assert!(h.server(&packet(6, &err)).is_some());
        assert_eq!(h.outcome(), Some(Outcome::Refused));
    }

    #[test]
    fn an_error_instead_of_a_greeting_ends_it() {
        let mut h = Handshake::new();
        let e = error_packet(1040, "Too many connections");
        assert_eq!(h.server(&e), Some(e.len()));
        assert_eq!(h.outcome(), Some(Outcome::Refused));
    }

    #[test]
    fn what_is_not_mysql_is_left_alone() {
        let mut h = Handshake::new();
        h.server(&packet(0, b"\x09protocol nine"));
        assert_eq!(h.outcome(), Some(Outcome::Untracked));
        let mut h = Handshake::new();
        h.server(&greeting());
        h.server(&packet(1, &[0, 0, 0]));
        assert_eq!(h.outcome(), Some(Outcome::Untracked), "server spoke twice");
    }

    #[test]
    fn a_pipelining_client_completes_at_the_ok() {
        let mut h = Handshake::new();
        h.server(&greeting());
        let mut both = response();
        both.extend(packet(0, b"\x03SET NAMES utf8mb4"));
        h.client(&both);
        h.server(&ok(2));
        assert_eq!(h.outcome(), Some(Outcome::LoggedIn));
    }

    fn ssl_request() -> Vec<u8> {
        let mut r = (0x000f_a685u32 | CLIENT_SSL).to_le_bytes().to_vec();
        r.extend_from_slice(&[0; 28]);
        packet(1, &r)
    }

    #[test]
    fn tls12_completes_at_the_servers_first_record_after_the_login() {
        let mut h = Handshake::new();
        h.server(&greeting());
        let mut hello = ssl_request();
        hello.extend(tls_record(22, 200)); // ClientHello in the same segment
        h.client(&hello);
        h.server(&[tls_record(22, 90), tls_record(22, 900), tls_record(22, 4)].concat());
        h.client(&[tls_record(22, 70), tls_record(20, 1), tls_record(22, 40)].concat());
        h.server(&[tls_record(20, 1), tls_record(22, 40)].concat());
        assert_eq!(h.outcome(), None, "TLS is up; no login yet");
        h.client(&tls_record(23, 120));
        assert_eq!(h.outcome(), None);
        let answer = tls_record(23, 30);
        assert_eq!(h.server(&answer), Some(answer.len()));
        assert_eq!(h.outcome(), Some(Outcome::Tls));
    }

    #[test]
    fn tls13_waits_for_the_clients_second_application_record() {
        let mut h = Handshake::new();
        h.server(&greeting());
        h.client(&ssl_request());
        h.client(&tls_record(22, 300));
        // ServerHello, compatibility CCS, then encrypted handshake records.
        h.server(&[tls_record(22, 90), tls_record(20, 1), tls_record(23, 2000)].concat());
        // The client's Finished.
        h.client(&[tls_record(20, 1), tls_record(23, 53)].concat());
        // Session tickets answer the Finished: not the login's answer.
        h.server(&[tls_record(23, 200), tls_record(23, 200)].concat());
        assert_eq!(h.outcome(), None);
        h.client(&tls_record(23, 150));
        assert!(h.server(&tls_record(23, 30)).is_some());
        assert_eq!(h.outcome(), Some(Outcome::Tls));
    }

    #[test]
    fn an_unknown_tls_record_is_left_alone() {
        let mut h = Handshake::new();
        h.server(&greeting());
        h.client(&ssl_request());
        h.client(&tls_record(99, 3));
        assert_eq!(h.outcome(), Some(Outcome::Untracked));
    }

    #[test]
    fn the_error_packet_is_a_pre_handshake_error() {
        let p = error_packet(1040, "Too many connections");
        assert_eq!(&p[..4], &[23, 0, 0, 0]);
        assert_eq!(&p[4..7], &[0xff, 0x10, 0x04]);
        assert_eq!(&p[7..], b"Too many connections");
    }
}
