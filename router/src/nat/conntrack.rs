//! Closing, on this host, the client sockets of connections the kernel
//! forwarded: `conntrack -L` lists them, `ss -K` closes them.

use std::net::SocketAddrV4;

use super::{run_tool, Nat, NatError};

/// The clients (address, port) of the connections `conntrack -L` lists,
/// from each entry's original tuple (its first `src=` and `sport=`).
pub(crate) fn conntrack_clients(listing: &str) -> Vec<(std::net::Ipv4Addr, u16)> {
    listing
        .lines()
        .filter_map(|line| {
            let field = |key: &str| {
                line.split_whitespace()
                    .find_map(|w| w.strip_prefix(key))
                    .map(str::to_string)
            };
            Some((field("src=")?.parse().ok()?, field("sport=")?.parse().ok()?))
        })
        .collect()
}

/// An `ss` filter for the sockets of `clients` connected to `listen` (its
/// port, on any address for a wildcard listener).
pub(crate) fn ss_filter(
    clients: &[(std::net::Ipv4Addr, u16)],
    listen: SocketAddrV4,
) -> Vec<String> {
    let mut f = vec!["(".to_string()];
    for (i, (ip, sport)) in clients.iter().enumerate() {
        if i > 0 {
            f.push("or".into());
        }
        f.push("src".into());
        f.push(format!("{ip}:{sport}"));
    }
    f.extend([")".into(), "and".into()]);
    if listen.ip().is_unspecified() {
        f.extend(["dport".into(), "=".into(), format!(":{}", listen.port())]);
    } else {
        f.extend(["dst".into(), listen.to_string()]);
    }
    f
}

impl Nat {
    /// Close at once, on this host, the client sockets of writer
    /// connections the kernel forwarded to `old`: a client blocked reading
    /// an answer from a master that vanished would otherwise hear of the
    /// reset only at its next packet. Clients on other hosts cannot be
    /// reached this way (the reset rules answer their next packet).
    /// Returns how many sockets were closed.
    pub async fn close_local_clients(&self, old: SocketAddrV4) -> Result<usize, NatError> {
        let (ip, port) = (old.ip().to_string(), old.port().to_string());
        self.close_forwarded(
            self.writer_listen,
            &["--reply-src", &ip, "--reply-port-src", &port],
        )
        .await
    }

    /// The router is stopping: close this host's clients of every
    /// connection it had forwarded, on both ports, as the other relays'
    /// sockets close with the router.
    pub async fn close_all_local_clients(&self) -> Result<usize, NatError> {
        let mut closed = 0;
        for listen in [self.writer_listen, self.reader_listen] {
            closed += self.close_forwarded(listen, &["--dst-nat"]).await?;
        }
        Ok(closed)
    }

    /// `ss -K` on this host's client sockets of the connections to
    /// `listen` that `conntrack -L` lists with `filter`: this router's
    /// only, when other routers listen on the same port elsewhere.
    async fn close_forwarded(
        &self,
        listen: SocketAddrV4,
        filter: &[&str],
    ) -> Result<usize, NatError> {
        let (ip, port) = (listen.ip().to_string(), listen.port().to_string());
        let mut args = vec!["-L", "-p", "tcp", "--orig-port-dst", &port];
        if !listen.ip().is_unspecified() {
            args.extend(["--orig-dst", &ip]);
        }
        args.extend_from_slice(filter);
        let listing = run_tool("conntrack", &args).await?;
        let clients = conntrack_clients(&listing);
        let mut closed = 0;
        for chunk in clients.chunks(64) {
            let filter = ss_filter(chunk, listen);
            let mut args = vec!["-K", "-t", "-H"];
            args.extend(filter.iter().map(String::as_str));
            let out = run_tool("ss", &args).await?;
            closed += out.lines().filter(|l| !l.trim().is_empty()).count();
        }
        Ok(closed)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn a(s: &str) -> SocketAddrV4 {
        s.parse().unwrap()
    }

    #[test]
    fn clients_are_read_from_conntrack_and_matched_by_ss() {
        let listing = "tcp      6 431999 ESTABLISHED src=10.213.186.1 dst=10.213.186.1 sport=55126 dport=6033 src=10.213.186.12 dst=10.213.186.1 sport=3306 dport=55126 [ASSURED] mark=0 use=1\n\
                       tcp      6 10 CLOSE src=10.0.0.7 dst=10.213.186.1 sport=40000 dport=6033 src=10.213.186.12 dst=10.213.186.1 sport=3306 dport=40000 mark=0 use=1\n\
                       conntrack v1.4.7 (conntrack-tools): 2 flow entries have been shown.\n";
        let clients = conntrack_clients(listing);
        assert_eq!(
            clients,
            vec![
                ("10.213.186.1".parse().unwrap(), 55126),
                ("10.0.0.7".parse().unwrap(), 40000)
            ]
        );
        assert_eq!(
            ss_filter(&clients, a("10.213.186.1:6033")).join(" "),
            "( src 10.213.186.1:55126 or src 10.0.0.7:40000 ) and dst 10.213.186.1:6033"
        );
        assert_eq!(
            ss_filter(&clients[..1], a("0.0.0.0:6033")).join(" "),
            "( src 10.213.186.1:55126 ) and dport = :6033"
        );
    }
}
