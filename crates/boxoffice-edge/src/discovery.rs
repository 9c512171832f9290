//! Where a cluster's instances are: each configured `host:port` is an
//! address (used as is) or a DNS name, re-resolved every interval and when
//! a connection to the cluster fails, so a Kubernetes headless Service (one
//! A record per ready pod) gives the edge every pod, and a pod added or
//! replaced is found within one interval.
//!
//! Names go to the system resolver (`getaddrinfo`: `/etc/hosts`, then the
//! pod's DNS), or, when a DNS server is configured, straight to it over UDP
//! (A records; what [`query_a`] implements of RFC 1035 is all a headless
//! Service answers with).

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::net::UdpSocket;

/// How long one DNS question may take before the round counts as failed.
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);

/// One configured upstream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// `ip:port`: one instance, never re-resolved.
    Address(SocketAddr),
    /// `name:port`: as many instances as the name has addresses.
    Name { host: String, port: u16 },
}

impl Target {
    /// `host:port` as configured (validated by the configuration already).
    pub(crate) fn parse(authority: &str) -> Option<Self> {
        if let Ok(address) = authority.parse::<SocketAddr>() {
            return Some(Self::Address(address));
        }
        let (host, port) = authority.rsplit_once(':')?;
        let port = port.parse().ok()?;
        (!host.is_empty()).then(|| Self::Name {
            host: host.to_owned(),
            port,
        })
    }
}

/// Who answers names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Resolver {
    /// The operating system's resolver.
    System,
    /// This DNS server, asked directly.
    Server(SocketAddr),
}

impl Resolver {
    /// Every instance address of `targets` (sorted), or `None` when a name
    /// could not be resolved or resolved to nothing this round: a failed
    /// lookup must never empty a cluster that still works.
    pub(crate) async fn resolve(&self, targets: &[Target]) -> Option<BTreeSet<SocketAddr>> {
        let mut all = BTreeSet::new();
        for target in targets {
            match target {
                Target::Address(address) => {
                    all.insert(*address);
                }
                Target::Name { host, port } => {
                    let found: Vec<SocketAddr> = match self {
                        Self::System => tokio::net::lookup_host((host.as_str(), *port))
                            .await
                            .ok()?
                            .collect(),
                        Self::Server(server) => query_a(*server, host)
                            .await
                            .ok()?
                            .into_iter()
                            .map(|ip| SocketAddr::new(IpAddr::V4(ip), *port))
                            .collect(),
                    };
                    if found.is_empty() {
                        return None;
                    }
                    all.extend(found);
                }
            }
        }
        Some(all)
    }
}

/// Asks `server` for the A records of `name` (one UDP exchange).
pub(crate) async fn query_a(server: SocketAddr, name: &str) -> std::io::Result<Vec<Ipv4Addr>> {
    let bind: SocketAddr = if server.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(bind).await?;
    socket.connect(server).await?;
    let id: u16 = rand::random();
    socket.send(&encode_query(id, name)?).await?;
    let mut buffer = [0u8; 1500];
    tokio::time::timeout(QUERY_TIMEOUT, async {
        loop {
            let read = socket.recv(&mut buffer).await?;
            // Another exchange's late answer: not ours.
            if let Some(records) = decode_answer(id, &buffer[..read])? {
                return Ok(records);
            }
        }
    })
    .await
    .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "DNS query timed out"))?
}

fn invalid(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned())
}

/// A standard query (recursion desired) for `name`'s A records.
pub(crate) fn encode_query(id: u16, name: &str) -> std::io::Result<Vec<u8>> {
    let mut packet = Vec::with_capacity(32 + name.len());
    packet.extend_from_slice(&id.to_be_bytes());
    packet.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    encode_name(&mut packet, name)?;
    packet.extend_from_slice(&[0, 1, 0, 1]); // A, IN
    Ok(packet)
}

fn encode_name(packet: &mut Vec<u8>, name: &str) -> std::io::Result<()> {
    for label in name.trim_end_matches('.').split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(invalid("not a DNS name"));
        }
        packet.push(label.len() as u8);
        packet.extend_from_slice(label.as_bytes());
    }
    packet.push(0);
    Ok(())
}

/// Skips a (possibly compressed) name starting at `at`; answers where it ends.
fn skip_name(packet: &[u8], mut at: usize) -> std::io::Result<usize> {
    loop {
        let length = *packet.get(at).ok_or_else(|| invalid("truncated name"))?;
        match length {
            0 => return Ok(at + 1),
            // A pointer ends the name here.
            l if l & 0xC0 == 0xC0 => return Ok(at + 2),
            l => at += 1 + l as usize,
        }
    }
}

fn u16_at(packet: &[u8], at: usize) -> std::io::Result<u16> {
    packet
        .get(at..at + 2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]))
        .ok_or_else(|| invalid("truncated record"))
}

/// The A records of an answer to query `id`; `None` for another id's.
/// A name that does not exist (NXDOMAIN) is an empty answer.
pub(crate) fn decode_answer(id: u16, packet: &[u8]) -> std::io::Result<Option<Vec<Ipv4Addr>>> {
    if packet.len() < 12 {
        return Err(invalid("truncated header"));
    }
    if u16_at(packet, 0)? != id || packet[2] & 0x80 == 0 {
        return Ok(None);
    }
    match packet[3] & 0x0F {
        0 => {}
        3 => return Ok(Some(Vec::new())),
        _ => return Err(invalid("the DNS server refused the query")),
    }
    let questions = u16_at(packet, 4)?;
    let answers = u16_at(packet, 6)?;
    let mut at = 12;
    for _ in 0..questions {
        at = skip_name(packet, at)? + 4;
    }
    let mut records = Vec::new();
    for _ in 0..answers {
        at = skip_name(packet, at)?;
        let kind = u16_at(packet, at)?;
        let class = u16_at(packet, at + 2)?;
        let length = u16_at(packet, at + 8)? as usize;
        let data = packet
            .get(at + 10..at + 10 + length)
            .ok_or_else(|| invalid("truncated record data"))?;
        if kind == 1 && class == 1 && length == 4 {
            records.push(Ipv4Addr::new(data[0], data[1], data[2], data[3]));
        }
        at += 10 + length;
    }
    Ok(Some(records))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_addresses_or_names() {
        assert_eq!(
            Target::parse("127.0.0.1:8080"),
            Some(Target::Address("127.0.0.1:8080".parse().unwrap()))
        );
        assert_eq!(
            Target::parse("inventory.boxoffice.svc:8080"),
            Some(Target::Name {
                host: "inventory.boxoffice.svc".into(),
                port: 8080
            })
        );
        assert_eq!(Target::parse("inventory"), None);
        assert_eq!(Target::parse(":8080"), None);
    }

    #[test]
    fn answers_decode_with_compressed_names_and_skip_other_records() {
        let mut answer = encode_query(7, "inventory").unwrap();
        answer[2] |= 0x80; // a response
        answer[7] = 3; // three answers
        for record in [
            // A 10.0.0.1, name as a pointer to the question's.
            &[0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4, 10, 0, 0, 1][..],
            // A CNAME-shaped record of another type is skipped.
            &[0xC0, 12, 0, 5, 0, 1, 0, 0, 0, 30, 0, 2, 0xC0, 12][..],
            &[0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4, 10, 0, 0, 2][..],
        ] {
            answer.extend_from_slice(record);
        }
        assert_eq!(
            decode_answer(7, &answer).unwrap(),
            Some(vec![Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2)])
        );
        assert_eq!(decode_answer(8, &answer).unwrap(), None, "another id");
        assert!(decode_answer(7, &answer[..answer.len() - 3]).is_err());
    }
}
