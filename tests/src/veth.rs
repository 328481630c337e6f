//! Two namespaces joined by a veth pair, and UDP across it.

use std::{
    net::{SocketAddr, UdpSocket},
    time::{Duration, Instant},
};

use crate::NetnsGuard;

pub struct Pair {
    pub a: NetnsGuard,
    pub b: NetnsGuard,
}

/// A (10.79.0.1 and .3, fd79::1 and ::3) ⇄ B (10.79.0.2 and .4, fd79::2).
pub fn pair(tag: &str) -> Pair {
    let a = NetnsGuard::new(&format!("{tag}a"));
    let b = NetnsGuard::new(&format!("{tag}b"));
    a.ip(&[
        "link",
        "add",
        "va",
        "type",
        "veth",
        "peer",
        "name",
        "vb",
        "netns",
        b.name(),
    ]);
    for (ns, dev, addrs) in [
        (
            &a,
            "va",
            ["10.79.0.1/24", "10.79.0.3/24", "fd79::1/64", "fd79::3/64"],
        ),
        (
            &b,
            "vb",
            ["10.79.0.2/24", "10.79.0.4/24", "fd79::2/64", "fd79::4/64"],
        ),
    ] {
        for addr in addrs {
            let mut args = vec!["addr", "add", addr, "dev", dev];
            if addr.contains(':') {
                args.insert(0, "-6");
                args.push("nodad");
            }
            ns.ip(&args);
        }
        ns.ip(&["link", "set", dev, "up"]);
    }
    Pair { a, b }
}

/// Sends `n` datagrams from `src` to `dst` inside namespace A and returns
/// how many a receiver bound to `dst` in B got (bounded in time).
pub fn deliver(p: &Pair, src: &str, dst: &str, n: usize) -> usize {
    let dst: SocketAddr = dst.parse().unwrap();
    let receiver =
        p.b.enter(|| UdpSocket::bind(dst).expect("bind receiver in B"));
    receiver
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let dst = receiver.local_addr().unwrap();
    let src: SocketAddr = src.parse().unwrap();
    p.a.enter(|| {
        let s = UdpSocket::bind(src).expect("bind sender in A");
        for _ in 0..n {
            s.send_to(b"frame", dst).expect("send");
        }
    });
    let mut got = 0;
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut buf = [0u8; 16];
    while got < n && Instant::now() < deadline {
        if receiver.recv(&mut buf).is_ok() {
            got += 1;
        }
    }
    got
}
