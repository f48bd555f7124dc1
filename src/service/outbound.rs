//! Every request netterms makes to an address a PSP gave (webhook deliveries, `invoice_url`
//! fetches, anything later) goes through one guard: [`Outbound::request`] checks the URL — its
//! scheme, and an IP address written into it in any notation the URL standard accepts
//! (`127.0.0.1`, `2130706433`, `0x7f.1`, `[::ffff:7f00:1]`) — and the client's resolver drops
//! private addresses a host name resolves to, so neither a literal nor a name leads a request to
//! an internal service. The same check refuses such targets when they are registered.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration as StdDuration;

use super::Services;

/// Why a target was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub &'static str);

/// Checks a URL a PSP gave as a target of our requests: an absolute http(s) URL, https unless
/// the deployment may reach private addresses, and (unless it may) no IP address or name that is
/// private, loopback or link-local by its form. Names are checked again, as resolved, when used.
pub fn check_url(raw: &str, allow_private: bool) -> Result<url::Url, Refused> {
    let url = url::Url::parse(raw).map_err(|_| Refused("not an absolute URL"))?;
    match url.scheme() {
        "https" => {}
        "http" if allow_private => {}
        "http" => return Err(Refused("must use https")),
        _ => return Err(Refused("must be an http(s) URL")),
    }
    if allow_private {
        return Ok(url);
    }
    let private = Refused("must not point at a private, loopback or link-local address");
    match url.host() {
        Some(url::Host::Ipv4(ip)) if !is_public(IpAddr::V4(ip)) => Err(private),
        Some(url::Host::Ipv6(ip)) if !is_public(IpAddr::V6(ip)) => Err(private),
        Some(url::Host::Domain(d)) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            if d == "localhost" || d.ends_with(".localhost") { Err(private) } else { Ok(url) }
        }
        Some(_) => Ok(url),
        None => Err(Refused("has no host")),
    }
}

/// The client for requests to PSP-given addresses, with its guard.
#[derive(Clone)]
pub struct Outbound {
    client: reqwest::Client,
    allow_private: bool,
}

impl Outbound {
    /// `webhook_timeout_secs`, no redirects (a redirect would skip the guard), never a proxy from
    /// the environment (it would resolve names itself, past the guard), and unless the deployment
    /// allows private addresses, a resolver that keeps only public ones.
    pub fn new(s: &Services, user_agent: &'static str) -> reqwest::Result<Outbound> {
        let allow_private = s.config.webhooks_may_reach_private();
        let mut builder = reqwest::Client::builder()
            .timeout(StdDuration::from_secs(s.config.webhook_timeout_secs))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(user_agent)
            .no_proxy()
            .pool_max_idle_per_host(32);
        if !allow_private {
            builder = builder.dns_resolver(Arc::new(PublicOnlyResolver));
        }
        Ok(Outbound { client: builder.build()?, allow_private })
    }

    /// A request to `url`, once the guard let it through.
    pub fn request(&self, method: reqwest::Method, url: &str) -> Result<reqwest::RequestBuilder, Refused> {
        let url = check_url(url, self.allow_private)?;
        Ok(self.client.request(method, url))
    }
}

/// DNS resolution that drops non-public addresses, so a host name cannot lead a request to an
/// internal service (checked on the addresses actually connected to).
struct PublicOnlyResolver;

/// Whether an address is one webhooks may reach when private addresses are refused: not in any
/// block of the IANA special-purpose registries that is not globally reachable. IPv6 forms that
/// carry an IPv4 address (mapped, compatible, NAT64, 6to4) are judged by that address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => {
            let seg = v6.segments();
            let embedded = |hi: u16, lo: u16| {
                let [a, b] = hi.to_be_bytes();
                let [c, d] = lo.to_be_bytes();
                std::net::Ipv4Addr::new(a, b, c, d)
            };
            // ::/96 (IPv4-compatible, also :: and ::1), ::ffff:0:0/96 (mapped), 64:ff9b::/96 (NAT64).
            if seg[..6] == [0, 0, 0, 0, 0, 0]
                || seg[..6] == [0, 0, 0, 0, 0, 0xffff]
                || seg[..6] == [0x64, 0xff9b, 0, 0, 0, 0]
            {
                return is_public_v4(embedded(seg[6], seg[7]));
            }
            // 2002::/16 (6to4): the IPv4 address follows the prefix.
            if seg[0] == 0x2002 {
                return is_public_v4(embedded(seg[1], seg[2]));
            }
            !((seg[0] == 0x64 && seg[1] == 0xff9b && seg[2] == 1) // 64:ff9b:1::/48 local-use NAT64
                || (seg[0] == 0x100 && seg[1..4] == [0, 0, 0]) // 100::/64 discard-only
                || (seg[0] == 0x2001 && seg[1] < 0x200) // 2001::/23 IETF protocol assignments (Teredo, …)
                || (seg[0] == 0x2001 && seg[1] == 0x0db8) // 2001:db8::/32 documentation
                || (seg[0] & 0xfff0) == 0x3ff0 // 3fff::/20 documentation
                || seg[0] == 0x5f00 // 5f00::/16 segment routing
                || (seg[0] & 0xfe00) == 0xfc00 // fc00::/7 unique local
                || (seg[0] & 0xffc0) == 0xfe80 // fe80::/10 link-local
                || (seg[0] & 0xffc0) == 0xfec0 // fec0::/10 site-local (deprecated)
                || (seg[0] & 0xff00) == 0xff00) // ff00::/8 multicast
        }
    }
}

fn is_public_v4(v4: std::net::Ipv4Addr) -> bool {
    let o = v4.octets();
    !(o[0] == 0 // 0.0.0.0/8 "this network"
        || o[0] == 10 // private
        || (o[0] == 100 && (64..128).contains(&o[1])) // 100.64.0.0/10 shared (CGNAT)
        || o[0] == 127 // loopback
        || (o[0] == 169 && o[1] == 254) // link-local
        || (o[0] == 172 && (16..32).contains(&o[1])) // private
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // 192.0.0.0/24 IETF protocol assignments
        || (o[0] == 192 && o[1] == 0 && o[2] == 2) // TEST-NET-1
        || (o[0] == 192 && o[1] == 88 && o[2] == 99) // 6to4 relay anycast (deprecated)
        || (o[0] == 192 && o[1] == 168) // private
        || (o[0] == 198 && (o[1] == 18 || o[1] == 19)) // benchmarking
        || (o[0] == 198 && o[1] == 51 && o[2] == 100) // TEST-NET-2
        || (o[0] == 203 && o[1] == 0 && o[2] == 113) // TEST-NET-3
        || o[0] >= 224) // multicast, reserved, broadcast
}

impl reqwest::dns::Resolve for PublicOnlyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((name.as_str(), 0)).await?.filter(|a| is_public(a.ip())).collect();
            if addrs.is_empty() {
                return Err("refused: the host resolves only to private, loopback or link-local addresses".into());
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{check_url, is_public};

    #[test]
    fn addresses_written_into_urls_are_judged_in_every_notation() {
        for u in [
            "https://127.0.0.1:8443/x",
            "https://2130706433/x",
            "https://0x7f000001/x",
            "https://0x7f.1/x",
            "https://0177.0.0.1/x",
            "https://127.1/x",
            "https://[::1]/x",
            "https://[::ffff:7f00:1]/x",
            "https://[::ffff:169.254.169.254]/latest",
            "https://169.254.169.254/latest",
            "https://10.0.0.1/x",
            "https://localhost/x",
            "https://api.localhost./x",
            "https://LOCALHOST:80/x",
        ] {
            assert!(check_url(u, false).is_err(), "{u} must be refused");
            assert!(check_url(u, true).is_ok(), "{u} is fine where private addresses are allowed");
        }
        assert!(check_url("http://93.184.216.34/x", false).is_err(), "https only");
        assert!(check_url("ftp://example.com/x", true).is_err());
        assert!(check_url("/relative", true).is_err());
        for u in ["https://93.184.216.34/x", "https://psp.example/hooks", "https://[2606:4700::1111]/x"] {
            assert!(check_url(u, false).is_ok(), "{u}");
        }
    }

    #[test]
    fn special_purpose_addresses_are_not_public() {
        for a in [
            "10.1.2.3",
            "127.0.0.1",
            "169.254.169.254",
            "172.16.0.1",
            "192.168.1.1",
            "100.64.0.1",
            "0.0.0.0",
            "192.0.0.8",
            "192.0.2.1",
            "198.18.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::127.0.0.1",
            "::10.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b::7f00:1",
            "64:ff9b:1::1",
            "2002:7f00:1::1",
            "2002:c0a8:101::1",
            "2001::1",
            "2001:db8::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "100::1",
            "3fff::1",
        ] {
            assert!(!is_public(a.parse().unwrap()), "{a} must be refused");
        }
        for a in
            ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "64:ff9b::808:808", "::ffff:8.8.8.8", "2002:808:808::1"]
        {
            assert!(is_public(a.parse().unwrap()), "{a} is public");
        }
    }
}
