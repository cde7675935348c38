//! Which peers may tell us how clients reach the server: the `Forwarded`, `X-Forwarded-Host`
//! and `X-Forwarded-Proto` headers are believed only from a configured proxy
//! (`--trusted-proxies`, a list of IPs and CIDR ranges; none by default). From anyone else they
//! are ignored, so a client cannot make the server advertise URLs (OFREP `eventStreams`, which
//! carry a stream token) on a host of its choosing.

use ipnet::IpNet;
use std::net::IpAddr;

/// The configured proxies; empty trusts nobody.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Parses `10.0.0.0/8`, `192.168.1.7`, `::1`, `fd00::/8`, …; blank entries are skipped.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, String> {
        entries
            .iter()
            .map(|e| e.as_ref().trim())
            .filter(|e| !e.is_empty())
            .map(|e| {
                e.parse::<IpNet>()
                    .or_else(|_| e.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("{e:?} is neither an IP address nor a CIDR range"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(TrustedProxies)
    }

    /// True when `peer` is one of the proxies.
    pub fn trusts(&self, peer: IpAddr) -> bool {
        let peer = match peer {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(peer, IpAddr::V4),
            v4 => v4,
        };
        self.0.iter().any(|net| net.contains(&peer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_ranges_are_trusted_and_nothing_else() {
        let proxies = TrustedProxies::parse(&["10.0.0.0/8", " 192.168.1.7 ", "", "fd00::/8"])
            .expect("valid list");
        for ok in ["10.1.2.3", "192.168.1.7", "fd00::1", "::ffff:10.0.0.1"] {
            assert!(proxies.trusts(ok.parse().expect("ip")), "{ok}");
        }
        for no in ["11.0.0.1", "192.168.1.8", "::1", "127.0.0.1"] {
            assert!(!proxies.trusts(no.parse().expect("ip")), "{no}");
        }
        assert!(!TrustedProxies::default().trusts("127.0.0.1".parse().expect("ip")));
    }

    #[test]
    fn a_bad_entry_is_refused_by_name() {
        let err = TrustedProxies::parse(&["10.0.0.0/8", "proxy.local"]).expect_err("bad entry");
        assert!(err.contains("proxy.local"), "{err}");
        assert!(TrustedProxies::parse(&["10.0.0.0/33"]).is_err());
    }
}
