//! `auth.trusted_proxies`: the reverse proxies whose `X-Forwarded-For` and
//! `X-Forwarded-Proto` are believed, and the one rule that picks a request's client address
//! from them (docs/security.md, "Behind a reverse proxy").

use std::net::IpAddr;

use serde::Deserialize;

/// One trusted proxy: an address (`10.0.0.2`, `::1`) or a network in CIDR form
/// (`10.0.0.0/24`, `fd00::/64`). IPv4-mapped IPv6 addresses match their IPv4 form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct ProxyNet {
    addr: IpAddr,
    prefix: u8,
}

impl TryFrom<String> for ProxyNet {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl std::str::FromStr for ProxyNet {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "`{s}` is not an IP address or network (e.g. \"10.0.0.2\", \"10.0.0.0/24\", \"::1\"); host names are not accepted"
            )
        };
        let (a, p) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s.trim(), None),
        };
        let addr = canonical(a.parse::<IpAddr>().map_err(|_| bad())?);
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            None => max,
            Some(p) => p.parse::<u8>().ok().filter(|n| *n <= max).ok_or_else(bad)?,
        };
        if prefix == 0 {
            return Err(format!("`{s}` would trust every address; list the proxies themselves"));
        }
        Ok(ProxyNet { addr, prefix })
    }
}

impl ProxyNet {
    pub fn contains(&self, ip: IpAddr) -> bool {
        let bits = |ip: IpAddr| -> u128 {
            match ip {
                IpAddr::V4(v) => u128::from(u32::from(v)) << 96,
                IpAddr::V6(v) => u128::from(v),
            }
        };
        let ip = canonical(ip);
        if ip.is_ipv4() != self.addr.is_ipv4() {
            return false;
        }
        let mask = if self.prefix == 0 { 0 } else { u128::MAX << (128 - u32::from(self.prefix)) };
        bits(ip) & mask == bits(self.addr) & mask
    }
}

/// `::ffff:a.b.c.d` as `a.b.c.d` (a dual-stack listener reports IPv4 peers so).
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v) => v.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// One `X-Forwarded-For` element as an address: `1.2.3.4`, `1.2.3.4:5678`, `::1`,
/// `[::1]:5678`. `None` for anything else (`unknown`, an obfuscated identifier, garbage).
fn forwarded_ip(s: &str) -> Option<IpAddr> {
    let s = s.trim().trim_matches('"');
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Some(rest) = s.strip_prefix('[') {
        return rest.split_once(']').and_then(|(a, _)| a.parse().ok()).map(canonical);
    }
    let (a, port) = s.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    a.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

/// The client of a request, and whether its proxy headers are to be believed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forwarded {
    pub client: Option<IpAddr>,
    /// The connection came from a trusted proxy: its `X-Forwarded-Proto` counts.
    pub via_trusted_proxy: bool,
}

/// The client address of a request that came from `peer` with the `X-Forwarded-For`
/// header values `xff` (in order), with `trusted` proxies.
///
/// A peer that is not a trusted proxy is the client, whatever its headers say. From a
/// trusted proxy, the header's entries are read right to left (each proxy appends the
/// address it received the request from) and the first one that is not itself a trusted
/// proxy is the client: entries to its left were written by the client or by proxies
/// nobody vouches for, so a client cannot choose its own address by sending the header.
/// An entry that is not an address stops the walk at the last trusted hop (the proxy that
/// received the request from it stands for the client). Every entry trusted: the leftmost.
pub fn forwarded_client<'a>(
    peer: Option<IpAddr>,
    xff: impl IntoIterator<Item = &'a str>,
    trusted: &[ProxyNet],
) -> Forwarded {
    let peer = peer.map(canonical);
    let is_trusted = |ip: IpAddr| trusted.iter().any(|n| n.contains(ip));
    let Some(mut hop) = peer.filter(|p| is_trusted(*p)) else {
        return Forwarded { client: peer, via_trusted_proxy: false };
    };
    let entries: Vec<&str> = xff.into_iter().flat_map(|v| v.split(',')).collect();
    for e in entries.iter().rev() {
        match forwarded_ip(e) {
            Some(ip) if is_trusted(ip) => hop = ip,
            Some(ip) => return Forwarded { client: Some(ip), via_trusted_proxy: true },
            None => break,
        }
    }
    Forwarded { client: Some(hop), via_trusted_proxy: true }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(v: &[&str]) -> Vec<ProxyNet> {
        v.iter().map(|s| s.parse().unwrap()).collect()
    }

    fn client(peer: &str, xff: &[&str], trusted: &[&str]) -> (Option<String>, bool) {
        let f = forwarded_client(peer.parse().ok(), xff.iter().copied(), &nets(trusted));
        (f.client.map(|c| c.to_string()), f.via_trusted_proxy)
    }

    #[test]
    fn parses_addresses_and_networks() {
        assert!("10.0.0.0/8".parse::<ProxyNet>().unwrap().contains("10.200.1.1".parse().unwrap()));
        assert!(!"10.0.0.0/8".parse::<ProxyNet>().unwrap().contains("11.0.0.1".parse().unwrap()));
        assert!("127.0.0.1"
            .parse::<ProxyNet>()
            .unwrap()
            .contains("::ffff:127.0.0.1".parse().unwrap()));
        assert!("fd00::/64".parse::<ProxyNet>().unwrap().contains("fd00::9".parse().unwrap()));
        assert!(!"::1".parse::<ProxyNet>().unwrap().contains("127.0.0.1".parse().unwrap()));
        for bad in ["proxy.lan", "10.0.0.0/33", "0.0.0.0/0", "::/0", "1.2.3", "", "10.0.0.1/x"] {
            assert!(bad.parse::<ProxyNet>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn rightmost_untrusted_entry_is_the_client() {
        let p = &["10.0.0.2"];
        // Direct, untrusted peer: its headers are ignored entirely.
        assert_eq!(client("203.0.113.9", &["1.1.1.1"], p), (Some("203.0.113.9".into()), false));
        // Through the proxy: the entry it appended.
        assert_eq!(client("10.0.0.2", &["198.51.100.7"], p), (Some("198.51.100.7".into()), true));
        // A spoofed first entry (the client's own header) is not believed.
        assert_eq!(
            client("10.0.0.2", &["6.6.6.6, 127.0.0.1, 198.51.100.7"], p),
            (Some("198.51.100.7".into()), true)
        );
        // Several header lines are one list; trusted hops are skipped right to left.
        assert_eq!(
            client("10.0.0.2", &["6.6.6.6", "198.51.100.7:5000, 10.0.0.2"], p),
            (Some("198.51.100.7".into()), true)
        );
        assert_eq!(
            client("10.0.0.2", &["[2001:db8::1]:443"], p),
            (Some("2001:db8::1".into()), true)
        );
        // Garbage stops the walk at the last trusted hop; no header: the proxy itself.
        assert_eq!(client("10.0.0.2", &["6.6.6.6, unknown"], p), (Some("10.0.0.2".into()), true));
        assert_eq!(client("10.0.0.2", &[], p), (Some("10.0.0.2".into()), true));
        // Every entry a trusted proxy: the leftmost.
        assert_eq!(
            client("10.0.0.2", &["10.0.0.3, 10.0.0.2"], &["10.0.0.0/24"]),
            (Some("10.0.0.3".into()), true)
        );
        // No trusted proxies: nothing is believed.
        assert_eq!(client("10.0.0.2", &["6.6.6.6"], &[]), (Some("10.0.0.2".into()), false));
        assert_eq!(client("", &["6.6.6.6"], p), (None, false));
    }
}
