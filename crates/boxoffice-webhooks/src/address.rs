//! Where webhooks may go. Only `http` and `https` URLs without credentials;
//! unless the deployment allows private addresses, no loopback, private,
//! link-local, shared, multicast or otherwise special address — checked for
//! an address in the URL when it is registered and again when sending, and
//! for a host name by the sender's own resolver, which hands the HTTP
//! client only public addresses (so a name that later resolves to an
//! internal address, DNS rebinding, reaches nothing).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::Url;

/// Longest URL an endpoint may have.
pub const MAX_URL_CHARS: usize = 2048;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum UrlRefusal {
    #[error("is not a URL")]
    NotAUrl,
    #[error("must be at most 2048 characters")]
    TooLong,
    #[error("must be http:// or https://")]
    Scheme,
    #[error("must not carry a user name or password")]
    Credentials,
    #[error("must name a host")]
    NoHost,
    #[error("points at a private, loopback or otherwise internal address")]
    Private,
}

fn v4_is_internal(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        // Shared address space (carrier-grade NAT), 100.64.0.0/10.
        || (a == 100 && (64..128).contains(&b))
        // IETF protocol assignments and benchmarking.
        || (a == 192 && b == 0 && ip.octets()[2] == 0)
        || (a == 198 && (18..20).contains(&b))
        // Reserved, 240.0.0.0/4.
        || a >= 240
}

fn v6_is_internal(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return v4_is_internal(v4);
    }
    let first = ip.segments()[0];
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        // Unique local fc00::/7, link-local fe80::/10.
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
        // Documentation 2001:db8::/32.
        || (first == 0x2001 && ip.segments()[1] == 0x0db8)
        // NAT64 64:ff9b::/96 reaches IPv4 addresses: judge those.
        || (first == 0x0064 && ip.segments()[1] == 0xff9b && {
            let [.., c, d] = ip.segments();
            v4_is_internal(Ipv4Addr::new((c >> 8) as u8, c as u8, (d >> 8) as u8, d as u8))
        })
}

/// Whether `ip` is an address webhooks must not reach by default.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4_is_internal(v4),
        IpAddr::V6(v6) => v6_is_internal(v6),
    }
}

/// Parses and checks an endpoint URL (`allow_private`: the deployment lets
/// endpoints reach internal addresses).
pub fn check_url(text: &str, allow_private: bool) -> Result<Url, UrlRefusal> {
    if text.chars().count() > MAX_URL_CHARS {
        return Err(UrlRefusal::TooLong);
    }
    let url = Url::parse(text.trim()).map_err(|_| UrlRefusal::NotAUrl)?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(UrlRefusal::Scheme);
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(UrlRefusal::Credentials);
    }
    let host = url.host().ok_or(UrlRefusal::NoHost)?;
    if !allow_private {
        let internal = match host {
            url::Host::Ipv4(ip) => v4_is_internal(ip),
            url::Host::Ipv6(ip) => v6_is_internal(ip),
            url::Host::Domain(name) => {
                let name = name.trim_end_matches('.').to_ascii_lowercase();
                name == "localhost" || name.ends_with(".localhost") || name.ends_with(".internal")
            }
        };
        if internal {
            return Err(UrlRefusal::Private);
        }
    }
    Ok(url)
}

/// The sender's resolver: a name's public addresses only (every address
/// when private ones are allowed).
pub(crate) struct PublicOnly {
    pub(crate) allow_private: bool,
}

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_private = self.allow_private;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|address| allow_private || !is_internal(address.ip()))
                .collect();
            if found.is_empty() {
                return Err("the host has no address webhooks may reach".into());
            }
            let addresses: reqwest::dns::Addrs = Box::new(found.into_iter());
            Ok(addresses)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_refused_unless_allowed() {
        for url in [
            "http://127.0.0.1:8080/hook",
            "http://10.1.2.3/",
            "http://192.168.0.10/",
            "http://172.16.0.1/",
            "http://169.254.169.254/latest/meta-data",
            "http://100.64.0.1/",
            "http://0.0.0.0/",
            "http://[::1]/",
            "http://[fd00::1]/",
            "http://[fe80::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://localhost:9000/",
            "http://metadata.google.internal/",
        ] {
            assert_eq!(check_url(url, false), Err(UrlRefusal::Private), "{url}");
            assert!(check_url(url, true).is_ok(), "{url} allowed in development");
        }
        assert!(check_url("https://hooks.example.com/boxoffice", false).is_ok());
        assert!(check_url("http://93.184.216.34/", false).is_ok());
    }

    #[test]
    fn only_plain_http_urls_without_credentials() {
        assert_eq!(
            check_url("ftp://example.com/", true),
            Err(UrlRefusal::Scheme)
        );
        assert_eq!(
            check_url("file:///etc/passwd", true),
            Err(UrlRefusal::Scheme)
        );
        assert_eq!(check_url("gopher://x/", true), Err(UrlRefusal::Scheme));
        assert_eq!(
            check_url("https://user:pw@example.com/", true),
            Err(UrlRefusal::Credentials)
        );
        assert_eq!(check_url("not a url", true), Err(UrlRefusal::NotAUrl));
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_CHARS));
        assert_eq!(check_url(&long, true), Err(UrlRefusal::TooLong));
    }
}
