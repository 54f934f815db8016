//! Address helpers: the key a scenario counts by and the network a single host is.

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use std::net::IpAddr;

/// The network that is exactly `ip` (a /32 or a /128).
pub fn host_net(ip: IpAddr) -> IpNet {
    match ip {
        IpAddr::V4(a) => IpNet::V4(Ipv4Net::new(a, 32).expect("32 is a valid v4 prefix")),
        IpAddr::V6(a) => IpNet::V6(Ipv6Net::new(a, 128).expect("128 is a valid v6 prefix")),
    }
}

/// The key an address is tracked under: the address itself for IPv4, and its
/// `/v6_prefix` network for IPv6 (one host usually holds a whole /64).
/// An IPv4-mapped IPv6 address is treated as the IPv4 address it carries.
pub fn key_for(ip: IpAddr, v6_prefix: u8) -> IpNet {
    match ip {
        IpAddr::V4(_) => host_net(ip),
        IpAddr::V6(a) => {
            if let Some(v4) = a.to_ipv4_mapped() {
                return host_net(IpAddr::V4(v4));
            }
            let p = v6_prefix.min(128);
            IpNet::V6(Ipv6Net::new(a, p).expect("prefix clamped to 128").trunc())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v6_grouped_by_prefix() {
        let a: IpAddr = "2001:db8:1:2:3:4:5:6".parse().unwrap();
        assert_eq!(key_for(a, 64).to_string(), "2001:db8:1:2::/64");
        assert_eq!(key_for(a, 128).to_string(), "2001:db8:1:2:3:4:5:6/128");
        let m: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(key_for(m, 64).to_string(), "192.0.2.1/32");
    }
}
