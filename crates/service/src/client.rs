//! The address of the client behind a request, for per-client limits, the
//! same way in both services.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use actix_web::HttpRequest;

/// Loopback: nginx on the same host.
pub fn default_trusted_proxies() -> Vec<IpAddr> {
    vec![
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ]
}

/// The client's address: the peer's, or, when the peer is a trusted proxy,
/// the last address in `X-Forwarded-For` that is not a trusted proxy (a
/// client may write anything in the header; only what a trusted proxy
/// appended counts). As the gateway determines it.
pub fn client_addr(req: &HttpRequest, trusted: &[IpAddr]) -> IpAddr {
    // Only a server without a TCP peer (none here) has no peer address;
    // such requests share one address.
    let Some(peer) = req.peer_addr().map(|addr| addr.ip()) else {
        return IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    };
    if !trusted.contains(&peer) {
        return peer;
    }
    req.headers()
        .get_all("x-forwarded-for")
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|hop| hop.trim().parse::<IpAddr>().ok())
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .find(|hop| !trusted.contains(hop))
        .unwrap_or(peer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn from(peer: &str, forwarded: Option<&str>) -> IpAddr {
        let mut req = TestRequest::default().peer_addr(format!("{peer}:40000").parse().unwrap());
        if let Some(forwarded) = forwarded {
            req = req.insert_header(("x-forwarded-for", forwarded));
        }
        client_addr(&req.to_http_request(), &default_trusted_proxies())
    }

    #[test]
    fn forwarded_for_counts_only_behind_a_trusted_proxy() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(from("127.0.0.1", None), ip("127.0.0.1"));
        assert_eq!(from("127.0.0.1", Some("203.0.113.9")), ip("203.0.113.9"));
        // A client's own entries come first; the proxy appends the peer.
        assert_eq!(
            from("127.0.0.1", Some("10.9.9.9, 203.0.113.9")),
            ip("203.0.113.9")
        );
        assert_eq!(
            from("127.0.0.1", Some("203.0.113.9, 127.0.0.1")),
            ip("203.0.113.9")
        );
        assert_eq!(from("127.0.0.1", Some("garbage")), ip("127.0.0.1"));
        assert_eq!(
            from("198.51.100.4", Some("203.0.113.9")),
            ip("198.51.100.4")
        );
    }
}
