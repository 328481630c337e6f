//! Hand-made TLS ClientHellos (RFC 8446 §4.1.2), well-formed and not, for
//! the name inspection tests: the kernel must find server_name wherever it
//! stands, in hellos as large as post-quantum key shares make them.

/// Which ClientHello to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hello {
    /// server_name first, an X25519 key share: ~250 bytes.
    Plain,
    /// An X25519MLKEM768 key share (1216 bytes) and padding before
    /// server_name, the last extension: ~1.7 KB, two segments at MSS 536.
    PostQuantum,
    /// server_name's length runs past the end of the extensions.
    LengthPastEnd,
    /// 300 empty extensions before server_name.
    ManyExtensions,
    /// server_name with a zero-length host name.
    EmptyName,
    /// Encrypted Client Hello: an outer name (`cloudflare-ech.test`, the
    /// front end's public name) and an encrypted_client_hello extension;
    /// the `name` asked for travels encrypted, so it is not written.
    Ech,
    /// GREASE ECH: the extension, with `name` outside as the real name.
    GreaseEch,
    /// A TLS alert record, then a plain ClientHello, in one write.
    AlertFirst,
    /// A plain ClientHello split over two TLS records, the first ending
    /// after the compression methods: its extensions (server_name among
    /// them) are all in the second, as a server reassembles them.
    Split,
}

impl std::str::FromStr for Hello {
    type Err = String;
    fn from_str(s: &str) -> Result<Hello, String> {
        Ok(match s {
            "plain" => Hello::Plain,
            "pq" => Hello::PostQuantum,
            "badlen" => Hello::LengthPastEnd,
            "ext300" => Hello::ManyExtensions,
            "empty" => Hello::EmptyName,
            "ech" => Hello::Ech,
            "grease" => Hello::GreaseEch,
            "split" => Hello::Split,
            "alert" => Hello::AlertFirst,
            other => return Err(format!("unknown hello {other:?}")),
        })
    }
}

fn u16be(v: usize) -> [u8; 2] {
    (v as u16).to_be_bytes()
}

fn ext(out: &mut Vec<u8>, kind: u16, body: &[u8]) {
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&u16be(body.len()));
    out.extend_from_slice(body);
}

fn server_name(out: &mut Vec<u8>, name: &str) {
    let mut body = Vec::new();
    body.extend_from_slice(&u16be(name.len() + 3));
    body.push(0); // host_name
    body.extend_from_slice(&u16be(name.len()));
    body.extend_from_slice(name.as_bytes());
    ext(out, 0, &body);
}

fn key_share(out: &mut Vec<u8>, groups: &[(u16, usize)]) {
    let mut shares = Vec::new();
    for &(group, len) in groups {
        shares.extend_from_slice(&group.to_be_bytes());
        shares.extend_from_slice(&u16be(len));
        shares.extend((0..len).map(|i| (i * 7 + 3) as u8));
    }
    let mut body = u16be(shares.len()).to_vec();
    body.extend_from_slice(&shares);
    ext(out, 0x0033, &body);
}

/// The record holding one ClientHello for `name`, shaped as `kind` says.
pub fn client_hello(name: &str, kind: Hello) -> Vec<u8> {
    let mut exts = Vec::new();
    let common = |exts: &mut Vec<u8>| {
        ext(exts, 0x002b, &[2, 3, 4]); // supported_versions: TLS 1.3
        ext(exts, 0x000a, &[0, 4, 0x11, 0xec, 0, 0x1d]); // supported_groups
        ext(exts, 0x000d, &[0, 4, 4, 3, 8, 4]); // signature_algorithms
    };
    match kind {
        Hello::Plain | Hello::Split | Hello::AlertFirst => {
            server_name(&mut exts, name);
            common(&mut exts);
            key_share(&mut exts, &[(0x001d, 32)]);
        }
        Hello::PostQuantum => {
            common(&mut exts);
            key_share(&mut exts, &[(0x11ec, 1216), (0x001d, 32)]);
            ext(&mut exts, 0x0015, &[0; 200]); // padding
            server_name(&mut exts, name);
        }
        Hello::LengthPastEnd => {
            common(&mut exts);
            exts.extend_from_slice(&0u16.to_be_bytes());
            exts.extend_from_slice(&u16be(0x4000));
            exts.extend_from_slice(name.as_bytes());
        }
        Hello::ManyExtensions => {
            for i in 0..300u16 {
                ext(&mut exts, 0xfa00 + i, &[]);
            }
            server_name(&mut exts, name);
        }
        Hello::EmptyName => {
            common(&mut exts);
            server_name(&mut exts, "");
        }
        Hello::Ech | Hello::GreaseEch => {
            let outer = if kind == Hello::Ech {
                "cloudflare-ech.test"
            } else {
                name
            };
            server_name(&mut exts, outer);
            common(&mut exts);
            key_share(&mut exts, &[(0x001d, 32)]);
            // ECHClientHello (outer): type, cipher suite, config id, enc, payload.
            let mut ech = vec![0, 0, 1, 0, 1, 0x2a, 0, 32];
            ech.extend([0x11; 32]);
            ech.extend_from_slice(&u16be(144));
            ech.extend([0x22; 144]);
            ext(&mut exts, 0xfe0d, &ech);
        }
    }
    let mut body = vec![3, 3]; // legacy_version
    body.extend((0..32).map(|i| i as u8)); // random
    body.push(32);
    body.extend([0x5a; 32]); // legacy_session_id
    body.extend_from_slice(&[0, 6, 0x13, 0x01, 0x13, 0x02, 0x13, 0x03]);
    body.extend_from_slice(&[1, 0]); // compression: null
    body.extend_from_slice(&u16be(exts.len()));
    body.extend_from_slice(&exts);
    let mut hs = vec![1]; // client_hello
    hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend_from_slice(&body);
    let record = |part: &[u8]| {
        let mut r = vec![0x16, 3, 1];
        r.extend_from_slice(&u16be(part.len()));
        r.extend_from_slice(part);
        r
    };
    if kind == Hello::AlertFirst {
        // level warning (1), close_notify (0)
        let mut both = vec![0x15, 3, 3, 0, 2, 1, 0];
        both.extend(record(&hs));
        return both;
    }
    if kind == Hello::Split {
        // The handshake up to and including the compression methods.
        let cut = hs.len() - exts.len() - 2;
        let mut both = record(&hs[..cut]);
        both.extend(record(&hs[cut..]));
        return both;
    }
    record(&hs)
}

/// A plain HTTP/1.1 request for `host`.
pub fn http_request(host: &str) -> Vec<u8> {
    format!("GET /v1/models HTTP/1.1\r\nUser-Agent: probe\r\nHost: {host}\r\nAccept: */*\r\n\r\n")
        .into_bytes()
}

/// An HTTP CONNECT request to an explicit proxy for `host`:443.
pub fn connect_request(host: &str) -> Vec<u8> {
    format!("CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\nUser-Agent: probe\r\n\r\n")
        .into_bytes()
}

/// A SOCKS5 greeting (no authentication) and CONNECT request for `host`:443
/// by name (ATYP 3), as two writes.
pub fn socks5(host: &str) -> (Vec<u8>, Vec<u8>) {
    let mut req = vec![5, 1, 0, 3, host.len() as u8];
    req.extend_from_slice(host.as_bytes());
    req.extend_from_slice(&443u16.to_be_bytes());
    (vec![5, 1, 0], req)
}

/// A SOCKS5 greeting and a CONNECT request for an IPv4 address, port 443.
pub fn socks5_ip(addr: std::net::Ipv4Addr) -> (Vec<u8>, Vec<u8>) {
    let mut req = vec![5, 1, 0, 1];
    req.extend_from_slice(&addr.octets());
    req.extend_from_slice(&443u16.to_be_bytes());
    (vec![5, 1, 0], req)
}

/// A SOCKS4 CONNECT request for an IPv4 address, port 443, no user id.
pub fn socks4(addr: std::net::Ipv4Addr) -> Vec<u8> {
    socks4_user(addr, "")
}

/// A SOCKS4 CONNECT request for an IPv4 address, port 443, with `user` as
/// user id.
pub fn socks4_user(addr: std::net::Ipv4Addr, user: &str) -> Vec<u8> {
    let mut req = vec![4, 1];
    req.extend_from_slice(&443u16.to_be_bytes());
    req.extend_from_slice(&addr.octets());
    req.extend_from_slice(user.as_bytes());
    req.push(0);
    req
}

/// A SOCKS4a CONNECT request for a name, port 443, with `user` as user id.
pub fn socks4a(host: &str, user: &str) -> Vec<u8> {
    let mut req = vec![4, 1];
    req.extend_from_slice(&443u16.to_be_bytes());
    req.extend_from_slice(&[0, 0, 0, 1]);
    req.extend_from_slice(user.as_bytes());
    req.push(0);
    req.extend_from_slice(host.as_bytes());
    req.push(0);
    req
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_post_quantum_hello_is_as_large_as_real_ones() {
        let h = client_hello("api.example.test", Hello::PostQuantum);
        assert!((1600..1900).contains(&h.len()), "{}", h.len());
        // Record length and handshake length agree with the bytes.
        assert_eq!(usize::from(u16::from_be_bytes([h[3], h[4]])), h.len() - 5);
        assert!(h.ends_with(b"api.example.test"));
    }
}
