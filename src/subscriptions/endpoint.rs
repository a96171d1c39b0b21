//! Where notifications may go. A REST-hook endpoint is a URL any client with a Subscription
//! scope chooses, and the server then POSTs to it from inside the hospital's network: left
//! open, that is a request-forgery tool against the server's own `/admin`, the database, or any
//! internal service. So endpoints on loopback, private, link-local and other internal addresses
//! are refused unless the operator names their networks (`--subscription-endpoint-networks`),
//! both when the Subscription is written (for a literal address) and when the delivery connects
//! (for every address a name resolves to then: DNS cannot move an endpoint inside). An allow
//! list (`--subscription-endpoint-allow`) is matched on the parsed scheme, host, port and path,
//! never on a string prefix (which `https://allowed.example@evil.example` or
//! `https://allowed.example.evil.example` would pass). Credentials in the URL are refused: they
//! would be shown to every reader of the Subscription; `channel.header` is write-only.

use ipnet::IpNet;
use reqwest::Url;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// The operator's rules for notification endpoints.
#[derive(Debug, Clone, Default)]
pub struct EndpointPolicy {
    /// When not empty, an endpoint must fall under one of these (scheme, host, port, path).
    pub allow: Vec<Url>,
    /// Internal networks notifications may nevertheless reach.
    pub internal_networks: Vec<IpNet>,
}

impl EndpointPolicy {
    /// Whether `endpoint` may be stored as a REST-hook endpoint; the reason when not.
    pub fn check(&self, endpoint: &str) -> Result<(), String> {
        let url = Url::parse(endpoint)
            .map_err(|e| format!("the endpoint '{endpoint}' is not a URL: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err(format!(
                "the endpoint '{endpoint}' must be an http or https URL with a host"
            ));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(
                "the endpoint may not carry credentials (user:password@): every reader of \
                 the Subscription would see them; send them in channel.header, which is \
                 write-only"
                    .into(),
            );
        }
        if !self.allow.is_empty() && !self.allow.iter().any(|a| under(&url, a)) {
            return Err(format!(
                "the endpoint '{endpoint}' is not on this server's allow list of notification endpoints"
            ));
        }
        let literal = match url.host() {
            Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            _ => None,
        };
        let named_local = url
            .host_str()
            .is_some_and(|h| h.eq_ignore_ascii_case("localhost") || h.ends_with(".localhost"));
        if let Some(ip) = literal.filter(|ip| !self.may_reach(*ip)) {
            return Err(internal(endpoint, ip));
        }
        if named_local && !self.may_reach(IpAddr::from([127, 0, 0, 1])) {
            return Err(internal(endpoint, IpAddr::from([127, 0, 0, 1])));
        }
        Ok(())
    }

    /// Whether a delivery may connect to `ip`.
    pub fn may_reach(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        !is_internal(ip) || self.internal_networks.iter().any(|n| n.contains(&ip))
    }
}

fn internal(endpoint: &str, ip: IpAddr) -> String {
    format!(
        "the endpoint '{endpoint}' is an internal address ({ip}): notifications go to such \
         addresses only when the server is started with their network in \
         --subscription-endpoint-networks"
    )
}

/// Whether `url` falls under `allowed`: the same scheme, host and port, and a path at or
/// below the allowed one, segment by segment.
fn under(url: &Url, allowed: &Url) -> bool {
    let path_under = |p: &str, base: &str| {
        let base = base.trim_end_matches('/');
        p == base || p.starts_with(&format!("{base}/")) || base.is_empty()
    };
    url.scheme() == allowed.scheme()
        && url.host_str().map(str::to_ascii_lowercase)
            == allowed.host_str().map(str::to_ascii_lowercase)
        && url.port_or_known_default() == allowed.port_or_known_default()
        && path_under(url.path(), allowed.path())
}

/// An IPv4 address written as IPv6 (`::ffff:127.0.0.1`) is the IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Addresses inside a network rather than out on the internet: loopback, private, link-local,
/// carrier-grade NAT, unspecified ("this host"), multicast and broadcast, in both families.
pub fn is_internal(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local, fc00::/7
                || (first & 0xffc0) == 0xfe80 // link-local, fe80::/10
        }
    }
}

/// The delivery client's resolver: the addresses a name resolves to, less those the policy
/// refuses; a name that resolves only to refused addresses fails to connect, and says why.
pub struct Resolver {
    pub policy: Arc<EndpointPolicy>,
}

impl reqwest::dns::Resolve for Resolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = found
                .iter()
                .copied()
                .filter(|a| policy.may_reach(a.ip()))
                .collect();
            if allowed.is_empty() && !found.is_empty() {
                let why = format!(
                    "{host} resolves to an internal address ({}), which notifications may not reach",
                    found[0].ip()
                );
                return Err(why.into());
            }
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open() -> EndpointPolicy {
        EndpointPolicy::default()
    }

    #[test]
    fn internal_addresses_are_refused_unless_their_network_is_named() {
        for e in [
            "http://127.0.0.1:8080/admin/hl7v2/messages",
            "http://[::1]/",
            "http://10.1.2.3/",
            "http://172.16.0.1/",
            "http://192.168.1.1/",
            "http://169.254.169.254/latest/meta-data/",
            "http://[fe80::1]/",
            "http://[fd00::1]/",
            "http://0.0.0.0:8080/",
            "http://[::ffff:127.0.0.1]/",
            "http://100.64.0.1/",
            "http://localhost:8080/",
            "http://api.localhost/",
            // written as a number, the URL parser reads it as 127.0.0.1
            "http://2130706433/",
        ] {
            let err = open().check(e).unwrap_err();
            assert!(err.contains("internal address"), "{e}: {err}");
        }
        assert!(open().check("https://hooks.example.org/notify").is_ok());
        assert!(open().check("https://93.184.216.34/").is_ok());
        let local = EndpointPolicy {
            internal_networks: vec!["127.0.0.0/8".parse().unwrap()],
            ..open()
        };
        assert!(local.check("http://127.0.0.1:9000/hook").is_ok());
        assert!(local.check("http://localhost:9000/hook").is_ok());
        assert!(local.check("http://10.0.0.1/").is_err());
    }

    #[test]
    fn the_allow_list_is_matched_on_the_parsed_url() {
        let p = EndpointPolicy {
            allow: vec!["https://hooks.example.org/emr".parse().unwrap()],
            ..open()
        };
        assert!(p.check("https://hooks.example.org/emr").is_ok());
        assert!(p.check("https://HOOKS.example.org:443/emr/a?x=1").is_ok());
        for e in [
            "https://hooks.example.org/emrx",
            "https://hooks.example.org/other",
            "http://hooks.example.org/emr",
            "https://hooks.example.org:8443/emr",
            "https://hooks.example.org.evil.example/emr",
            "https://hooks.example.org@evil.example/emr",
        ] {
            assert!(p.check(e).is_err(), "{e}");
        }
    }

    #[tokio::test]
    async fn names_are_checked_on_what_they_resolve_to() {
        use reqwest::dns::Resolve;
        let resolve = |policy: EndpointPolicy| {
            Resolver {
                policy: Arc::new(policy),
            }
            .resolve("localhost".parse().unwrap())
        };
        let err = resolve(open()).await.err().expect("refused").to_string();
        assert!(err.contains("internal address"), "{err}");
        let local = EndpointPolicy {
            internal_networks: vec!["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()],
            ..open()
        };
        let found: Vec<SocketAddr> = resolve(local).await.expect("allowed").collect();
        assert!(found.iter().all(|a| a.ip().is_loopback()) && !found.is_empty());
    }

    #[test]
    fn credentials_in_the_url_are_refused() {
        let err = open()
            .check("https://user:secret@hooks.example.org/")
            .unwrap_err();
        assert!(err.contains("channel.header"), "{err}");
    }
}
