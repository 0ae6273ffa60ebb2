//! CIDR networks from the configuration, stored as IPv6 prefixes with IPv4 mapped into
//! `::ffff:0:0/96`, which is how the kernel's exclusion trie keys them.

use std::{
    fmt,
    net::{IpAddr, Ipv6Addr},
    str::FromStr,
};

/// A network such as `10.0.0.0/8` or `fd00::/8`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    /// The network address, IPv4 mapped.
    pub address: Ipv6Addr,
    /// Prefix length in bits over the mapped address (IPv4 lengths plus 96).
    pub prefix_bits: u32,
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let (address, bits) = match text.split_once('/') {
            Some((address, bits)) => (address, Some(bits)),
            None => (text, None),
        };
        let address: IpAddr = address.parse().map_err(|_| {
            "it must be an IP address with an optional prefix length, as in `10.0.0.0/8` or `fd00::/8`".to_owned()
        })?;
        let max = if address.is_ipv4() { 32 } else { 128 };
        let bits = match bits {
            None => max,
            Some(bits) => bits
                .parse::<u32>()
                .ok()
                .filter(|bits| *bits <= max)
                .ok_or_else(|| format!("the prefix length must be a number from 0 to {max}"))?,
        };
        let (mapped, offset) = match address {
            IpAddr::V4(v4) => (v4.to_ipv6_mapped(), 96),
            IpAddr::V6(v6) => (v6, 0),
        };
        let prefix_bits = bits + offset;
        let masked = mask(mapped, prefix_bits);
        if masked != mapped {
            return Err(format!(
                "it has host bits set; the network is `{}/{bits}`",
                display_address(masked, offset == 96)
            ));
        }
        Ok(Self {
            address: masked,
            prefix_bits,
        })
    }
}

impl Cidr {
    /// Returns whether `address` is inside the network.
    pub fn contains(&self, address: IpAddr) -> bool {
        let mapped = match address {
            IpAddr::V4(v4) => v4.to_ipv6_mapped(),
            IpAddr::V6(v6) => v6,
        };
        mask(mapped, self.prefix_bits) == self.address
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v4 = self.prefix_bits >= 96 && self.address.to_ipv4_mapped().is_some();
        let bits = if v4 {
            self.prefix_bits - 96
        } else {
            self.prefix_bits
        };
        write!(formatter, "{}/{bits}", display_address(self.address, v4))
    }
}

fn display_address(address: Ipv6Addr, v4: bool) -> String {
    match address.to_ipv4_mapped() {
        Some(v4_address) if v4 => v4_address.to_string(),
        _ => address.to_string(),
    }
}

fn mask(address: Ipv6Addr, bits: u32) -> Ipv6Addr {
    let value = u128::from(address);
    let masked = if bits == 0 {
        0
    } else {
        value & (u128::MAX << (128 - bits))
    };
    Ipv6Addr::from(masked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_networks_are_mapped() {
        let cidr: Cidr = "10.1.0.0/16".parse().unwrap();
        assert_eq!(cidr.prefix_bits, 112);
        assert!(cidr.contains("10.1.2.3".parse().unwrap()));
        assert!(!cidr.contains("10.2.0.1".parse().unwrap()));
        assert_eq!(cidr.to_string(), "10.1.0.0/16");
    }

    #[test]
    fn ipv6_networks_and_single_addresses() {
        let cidr: Cidr = "fd00::/8".parse().unwrap();
        assert!(cidr.contains("fd12::1".parse().unwrap()));
        assert!(!cidr.contains("fe80::1".parse().unwrap()));
        let single: Cidr = "127.0.0.1".parse().unwrap();
        assert_eq!(single.prefix_bits, 128);
        assert_eq!(single.to_string(), "127.0.0.1/32");
    }

    #[test]
    fn host_bits_are_rejected_with_the_network() {
        let error = "10.1.2.3/8".parse::<Cidr>().unwrap_err();
        assert!(error.contains("`10.0.0.0/8`"), "{error}");
    }

    #[test]
    fn bad_text_is_explained() {
        assert!("ten/8".parse::<Cidr>().unwrap_err().contains("IP address"));
        assert!(
            "10.0.0.0/33"
                .parse::<Cidr>()
                .unwrap_err()
                .contains("0 to 32")
        );
        assert!("::/129".parse::<Cidr>().unwrap_err().contains("0 to 128"));
    }
}
