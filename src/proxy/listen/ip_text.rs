//! `IpText`: an IP address as text on the stack.
//!
//! The client address is written into `X-Forwarded-For` and the request log of every
//! request; `Ipv4Addr`'s `Display` goes through `fmt` padding logic and `to_string` through
//! the allocator, both measurable per request. So it is spelled once per connection (see
//! `Peer`), and by hand for IPv4 (nearly every client), digit by digit; IPv6 goes through
//! `fmt` into the same buffer.

use std::fmt;
use std::io::Write as _;
use std::net::IpAddr;

/// Room for the longest IPv6 text, an IPv4-mapped address in full form.
const CAPACITY: usize = 45;

#[derive(Clone, Copy)]
pub struct IpText {
    bytes: [u8; CAPACITY],
    len: usize,
}

impl IpText {
    pub fn new(ip: IpAddr) -> Self {
        let mut text = IpText {
            bytes: [0; CAPACITY],
            len: 0,
        };
        match ip {
            IpAddr::V4(v4) => {
                for (index, octet) in v4.octets().into_iter().enumerate() {
                    if index > 0 {
                        text.push(b'.');
                    }
                    if octet >= 100 {
                        text.push(b'0' + octet / 100);
                    }
                    if octet >= 10 {
                        text.push(b'0' + octet / 10 % 10);
                    }
                    text.push(b'0' + octet % 10);
                }
            }
            IpAddr::V6(v6) => {
                let mut cursor = std::io::Cursor::new(&mut text.bytes[..]);
                // Cannot fail: CAPACITY holds any IPv6 text.
                let _ = write!(cursor, "{v6}");
                text.len = usize::try_from(cursor.position()).unwrap_or(0);
            }
        }
        text
    }

    /// One byte at a time: an octet's few digits are cheaper stored than copied.
    fn push(&mut self, byte: u8) {
        self.bytes[self.len] = byte;
        self.len += 1;
    }

    /// Only ASCII digits, dots, colons and hex letters: nothing a header or JSON escapes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl fmt::Debug for IpText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(self.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_display() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "255.255.255.255",
            "10.20.3.40",
            "9.99.100.199",
            "::1",
            "2001:db8::8a2e:370:7334",
            "::ffff:255.255.255.255",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(IpText::new(ip).as_bytes(), ip.to_string().as_bytes());
        }
    }
}
