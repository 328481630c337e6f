//! A process for the tests to run inside a cgroup (and network namespace):
//! it joins them, optionally drops to another uid, makes one kind of
//! network attempt, and prints one JSON line with its pid and the result.
//!
//! probe --cgroup DIR [--netns NAME | --unshare-net] [--uid N] [--linger-ms N] OP ADDR
//! OP: tcp | udp-sendto | udp-connect-send | udp-connect-wait-send | tcp-loop:N
//!     | tcp-flood:N | tcp-flood-ports:N (N connects to ports 1..=N: N distinct flows)
//!     | dns-tcp:NAME:A|AAAA (ADDR is a DNS server: ask it for NAME with this
//!       process's own UDP socket, then at once listen on and connect to the
//!       first address of the answer) | dnstcp-tcp:NAME:A|AAAA (the same,
//!       asking over TCP) | udp-hold:MS (bind ADDR over UDP, print
//!       `{"bound":true}`, hold it MS milliseconds: a local DNS server
//!       stand-in whose process name is this file's name)
//!     | sockets:N (on each online CPU in turn, N UDP sockets each created,
//!       connected to ADDR and closed: N sockets in use per CPU)
//!     | send-once:KIND:NAME[:MSS] (connect, optionally with TCP_MAXSEG
//!       MSS, then write one TLS ClientHello (KIND: plain | pq | badlen |
//!       ext300 | empty | ech | grease, `enforcer_tests::tls`) or, for KIND
//!       http, an HTTP request with `Host: NAME`, for KIND connect, an HTTP
//!       CONNECT request for NAME:443, in a single write (for KIND socks, a
//!       SOCKS5 greeting, then a request for NAME:443; for socks-pipelined,
//!       both in one write); the result is the
//!       write's outcome and how long it took: `EACCES 41us`)
//! ADDR: ip:port or [ipv6]:port; port 0 means "listen on ADDR first and use
//! that port" (so that an allowed attempt really succeeds).

use std::{
    io::{self, BufRead as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream, UdpSocket},
    time::Duration,
};

fn main() {
    let mut args = std::env::args().skip(1);
    let mut cgroup = None;
    let mut netns = None;
    let mut unshare = false;
    let mut uid = None;
    let mut linger_ms = 0u64;
    let mut rest = Vec::new();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--cgroup" => cgroup = args.next(),
            "--netns" => netns = args.next(),
            "--unshare-net" => unshare = true,
            "--uid" => uid = args.next().map(|u| u.parse::<u32>().expect("uid")),
            "--linger-ms" => linger_ms = args.next().map_or(0, |m| m.parse().expect("ms")),
            _ => rest.push(arg),
        }
    }
    let [op, addr] = <[String; 2]>::try_from(rest).expect("usage: probe [opts] OP ADDR");
    if let Some(dir) = cgroup {
        std::fs::write(format!("{dir}/cgroup.procs"), "0").expect("join cgroup");
    }
    if let Some(name) = netns {
        let f = std::fs::File::open(format!("/run/netns/{name}")).expect("open netns");
        use std::os::fd::AsRawFd as _;
        // SAFETY: a valid netns fd; this process is single-threaded.
        assert_eq!(
            unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) },
            0,
            "setns"
        );
    }
    if unshare {
        // SAFETY: single-threaded; a fresh, empty network namespace.
        assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0, "unshare");
    }
    let target: SocketAddr = addr.parse().expect("address");
    if let Some(ms) = op.strip_prefix("udp-hold:") {
        let _socket = UdpSocket::bind(target).expect("bind");
        println!("{{\"bound\":true}}");
        io::stdout().flush().unwrap();
        std::thread::sleep(Duration::from_millis(ms.parse().expect("ms")));
        return;
    }
    // Listen before dropping privileges (binding needs none, but keep the
    // order simple): an allowed attempt must then fully succeed.
    let local_target = local_twin(target);
    let tcp_listener = if target.port() == 0 && op.starts_with("tcp") {
        Some(TcpListener::bind(local_target).expect("listen"))
    } else {
        None
    };
    let udp_receiver = if target.port() == 0 && op.starts_with("udp") {
        let s = UdpSocket::bind(local_target).expect("bind receiver");
        s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        Some(s)
    } else {
        None
    };
    let mut target = target;
    if let Some(l) = &tcp_listener {
        target.set_port(l.local_addr().unwrap().port());
    }
    if let Some(r) = &udp_receiver {
        target.set_port(r.local_addr().unwrap().port());
    }
    if let Some(uid) = uid {
        // SAFETY: plain syscalls.
        unsafe {
            assert_eq!(libc::setgid(uid), 0, "setgid");
            assert_eq!(libc::setuid(uid), 0, "setuid");
        }
    }
    let result = match op.as_str() {
        "tcp" => tcp(target),
        "udp-sendto" => udp_sendto(target, udp_receiver.as_ref()),
        "udp-connect-send" => udp_connect_send(target, udp_receiver.as_ref(), false),
        "udp-connect-wait-send" => udp_connect_send(target, udp_receiver.as_ref(), true),
        flood if flood.starts_with("tcp-flood:") => {
            let n: usize = flood["tcp-flood:".len()..].parse().expect("count");
            tcp_flood(target, n)
        }
        flood if flood.starts_with("tcp-flood-ports:") => {
            let n: u16 = flood["tcp-flood-ports:".len()..].parse().expect("count");
            tcp_flood_ports(target, n)
        }
        loop_op if loop_op.starts_with("tcp-loop:") => {
            let n: usize = loop_op["tcp-loop:".len()..].parse().expect("count");
            tcp_loop(target, n)
        }
        dns if dns.starts_with("dns-tcp:") => {
            let (name, rtype) = dns["dns-tcp:".len()..]
                .split_once(':')
                .expect("dns-tcp:NAME:A|AAAA[:PORT]");
            dns_tcp(target, name, rtype, false)
        }
        dns if dns.starts_with("dnstcp-tcp:") => {
            let (name, rtype) = dns["dnstcp-tcp:".len()..]
                .split_once(':')
                .expect("dnstcp-tcp:NAME:A|AAAA[:PORT]");
            dns_tcp(target, name, rtype, true)
        }
        churn if churn.starts_with("sockets:") => {
            sockets(target, churn["sockets:".len()..].parse().expect("count"))
        }
        once if once.starts_with("send-once:") => send_once(target, &once["send-once:".len()..]),
        writes if writes.starts_with("send-writes:") => {
            send_writes(target, &writes["send-writes:".len()..])
        }
        writes if writes.starts_with("send-writes-nonblocking:") => {
            send_writes_nonblocking(target, &writes["send-writes-nonblocking:".len()..])
        }
        split if split.starts_with("send-split:") => {
            send_split(target, &split["send-split:".len()..])
        }
        again if again.starts_with("send-again:") => {
            send_again(target, &again["send-again:".len()..])
        }
        early if early.starts_with("send-early:") => {
            send_early(target, &early["send-early:".len()..])
        }
        other => panic!("unknown op {other}"),
    };
    // Lets the daemon read /proc (ppid) before this process is gone.
    std::thread::sleep(Duration::from_millis(linger_ms));
    println!(
        "{{\"pid\":{},\"port\":{},\"result\":{}}}",
        std::process::id(),
        target.port(),
        serde_json::to_string(&result).unwrap()
    );
}

/// For a v4-mapped v6 target, the v4 address to listen on.
fn local_twin(target: SocketAddr) -> SocketAddr {
    match target {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(v4.into(), v6.port()),
            None => target,
        },
        v4 => v4,
    }
}

fn name(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::EPERM) => "EPERM".into(),
        Some(libc::ECONNREFUSED) => "ECONNREFUSED".into(),
        Some(libc::ENETUNREACH) => "ENETUNREACH".into(),
        Some(libc::EHOSTUNREACH) => "EHOSTUNREACH".into(),
        Some(libc::EACCES) => "EACCES".into(),
        Some(libc::ETIMEDOUT) => "ETIMEDOUT".into(),
        Some(libc::EADDRNOTAVAIL) => "EADDRNOTAVAIL".into(),
        Some(n) => format!("errno {n}"),
        None => e.to_string(),
    }
}

fn tcp(target: SocketAddr) -> String {
    match TcpStream::connect_timeout(&target, Duration::from_secs(2)) {
        Ok(_) => "ok".into(),
        Err(e) => name(&e),
    }
}

/// Results counted by kind: `EPERM=3,ok=7`.
fn tally(results: impl Iterator<Item = String>) -> String {
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for r in results {
        *counts.entry(r).or_default() += 1;
    }
    counts
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The result of a connect without a timeout of its own.
fn connect(target: SocketAddr) -> String {
    match TcpStream::connect(target) {
        Ok(_) => "ok".into(),
        Err(e) => name(&e),
    }
}

fn tcp_loop(target: SocketAddr, n: usize) -> String {
    tally((0..n).map(|_| {
        let r = tcp(target);
        std::thread::sleep(Duration::from_millis(2));
        r
    }))
}

/// As fast as it goes: `n` connects, counted by result.
fn tcp_flood(target: SocketAddr, n: usize) -> String {
    tally((0..n).map(|_| connect(target)))
}

/// As fast as it goes: one connect to each of ports 1..=n.
fn tcp_flood_ports(target: SocketAddr, n: u16) -> String {
    tally((1..=n).map(|port| connect(SocketAddr::new(target.ip(), port))))
}

fn unbound_for(target: SocketAddr) -> UdpSocket {
    let any: SocketAddr = if target.is_ipv4() {
        "0.0.0.0:0".parse().unwrap()
    } else {
        "[::]:0".parse().unwrap()
    };
    UdpSocket::bind(any).expect("bind sender")
}

fn received(receiver: Option<&UdpSocket>) -> String {
    match receiver {
        None => "ok".into(),
        Some(r) => {
            let mut buf = [0u8; 16];
            match r.recv(&mut buf) {
                Ok(_) => "ok".into(),
                Err(_) => "sent-not-received".into(),
            }
        }
    }
}

fn udp_sendto(target: SocketAddr, receiver: Option<&UdpSocket>) -> String {
    let s = unbound_for(target);
    match s.send_to(b"probe", target) {
        Ok(_) => received(receiver),
        Err(e) => name(&e),
    }
}

fn udp_connect_send(target: SocketAddr, receiver: Option<&UdpSocket>, wait: bool) -> String {
    let s = unbound_for(target);
    if let Err(e) = s.connect(target) {
        return format!("connect:{}", name(&e));
    }
    if wait {
        println!("connected");
        io::stdout().flush().unwrap();
        let mut line = String::new();
        io::stdin().lock().read_line(&mut line).unwrap();
    }
    match s.send(b"probe") {
        Ok(_) => received(receiver),
        Err(e) => name(&e),
    }
}

/// Resolves `name` with a query of our own to `server` and connects to the
/// first address the instant the answer is read: what the in-kernel DNS
/// program must have judged by then.
/// `rtype` may end in `:PORT`: the connection then goes to that port
/// (listened on first), else to an ephemeral one.
fn dns_tcp(server: SocketAddr, name: &str, rtype: &str, over_tcp: bool) -> String {
    let (rtype, port) = match rtype.split_once(':') {
        Some((t, p)) => (t, p.parse::<u16>().expect("port")),
        None => (rtype, 0),
    };
    use hickory_proto::{
        op::{Message, Query},
        rr::{Name, RData, RecordType},
    };
    use std::io::{Read as _, Write as _};
    let rtype = match rtype {
        "A" => RecordType::A,
        "AAAA" => RecordType::AAAA,
        other => panic!("record type {other}"),
    };
    let mut query = Message::query();
    query.metadata.id = 4242;
    query.metadata.recursion_desired = true;
    query.add_query(Query::query(
        Name::from_ascii(format!("{name}.")).expect("name"),
        rtype,
    ));
    let wire = query.to_vec().unwrap();
    let mut buf = [0u8; 4096];
    let n = if over_tcp {
        let mut stream = match TcpStream::connect_timeout(&server, Duration::from_secs(2)) {
            Ok(s) => s,
            Err(e) => return format!("dns-connect: {}", self::name(&e)),
        };
        stream
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let mut framed = (wire.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&wire);
        if let Err(e) = stream.write_all(&framed) {
            return format!("dns-send: {}", self::name(&e));
        }
        let mut len = [0u8; 2];
        if let Err(e) = stream.read_exact(&mut len) {
            return format!("dns-recv: {}", self::name(&e));
        }
        let n = u16::from_be_bytes(len) as usize;
        if let Err(e) = stream.read_exact(&mut buf[..n]) {
            return format!("dns-recv: {}", self::name(&e));
        }
        n
    } else {
        let local: SocketAddr = if server.is_ipv4() {
            "0.0.0.0:0".parse().unwrap()
        } else {
            "[::]:0".parse().unwrap()
        };
        let socket = UdpSocket::bind(local).expect("bind");
        socket
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        if let Err(e) = socket.send_to(&wire, server) {
            return format!("dns-send: {}", self::name(&e));
        }
        match socket.recv(&mut buf) {
            Ok(n) => n,
            Err(e) => return format!("dns-recv: {}", self::name(&e)),
        }
    };
    let answer = Message::from_vec(&buf[..n]).expect("answer");
    // The first address on the question's chain, as a stub resolver
    // takes it (records for other names are not ours).
    let mut chain = vec![Name::from_ascii(format!("{name}.")).expect("name")];
    let mut found = None;
    for r in &answer.answers {
        if !chain.iter().any(|n| n.eq_case(&r.name) || *n == r.name) {
            continue;
        }
        match &r.data {
            RData::CNAME(c) => chain.push(c.0.clone()),
            RData::A(a) => {
                found = Some(std::net::IpAddr::V4(a.0));
                break;
            }
            RData::AAAA(a) => {
                found = Some(std::net::IpAddr::V6(a.0));
                break;
            }
            _ => {}
        }
    }
    let Some(ip) = found else {
        return "no-address".into();
    };
    let listener = match TcpListener::bind(SocketAddr::new(ip, port)) {
        Ok(l) => l,
        Err(e) => return format!("listen {ip}: {}", self::name(&e)),
    };
    let target = listener.local_addr().unwrap();
    match TcpStream::connect_timeout(&target, Duration::from_secs(2)) {
        Ok(_) => "ok".into(),
        Err(e) => self::name(&e),
    }
}

/// `n` sockets made, connected (a UDP connect sends nothing) and closed on
/// each online CPU, pinned there: per-CPU kernel tables fill per CPU, and
/// an LRU keeps what was used, not merely made. Bounded by `n` and the
/// CPU count.
fn sockets(target: SocketAddr, n: usize) -> String {
    let domain = if target.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    let (addr, len) = sockaddr(target);
    // SAFETY: sysconf has no preconditions.
    let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(1) as usize;
    for cpu in 0..cpus {
        // SAFETY: a zeroed cpu_set_t is empty; CPU_SET stays within it.
        let pinned = unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
        };
        if pinned != 0 {
            return format!("affinity cpu {cpu}: {}", name(&io::Error::last_os_error()));
        }
        for _ in 0..n {
            // SAFETY: plain socket creation; the fd is closed at once.
            let fd = unsafe { libc::socket(domain, libc::SOCK_DGRAM, 0) };
            if fd < 0 {
                return format!("socket: {}", name(&io::Error::last_os_error()));
            }
            // SAFETY: our own fd and a valid address.
            let connected = unsafe { libc::connect(fd, (&raw const addr).cast(), len) } == 0;
            let err = io::Error::last_os_error();
            // SAFETY: our own fd.
            unsafe { libc::close(fd) };
            if !connected {
                return format!("connect: {}", name(&err));
            }
        }
    }
    "ok".into()
}

/// One write of a ClientHello or HTTP request on a fresh connection.
fn send_once(target: SocketAddr, spec: &str) -> String {
    use std::os::fd::{AsRawFd as _, FromRawFd as _};
    let mut parts = spec.split(':');
    let kind = parts.next().expect("KIND");
    let host = parts.next().expect("NAME");
    let mss: Option<libc::c_int> = parts.next().map(|m| m.parse().expect("MSS"));
    let mut greeting = None;
    let bytes = if kind == "http" {
        enforcer_tests::tls::http_request(host)
    } else if kind == "connect" {
        enforcer_tests::tls::connect_request(host)
    } else if kind == "socks-pipelined" {
        let (mut hello, request) = enforcer_tests::tls::socks5(host);
        hello.extend_from_slice(&request);
        hello
    } else if kind == "socks" {
        let (hello, request) = enforcer_tests::tls::socks5(host);
        greeting = Some(hello);
        request
    } else if kind == "socks-ip" {
        let (hello, request) = enforcer_tests::tls::socks5_ip(host.parse().expect("IPv4"));
        greeting = Some(hello);
        request
    } else if kind == "socks4" {
        enforcer_tests::tls::socks4(host.parse().expect("IPv4"))
    } else if kind == "socks4a" {
        enforcer_tests::tls::socks4a(host, "")
    } else if kind == "socks4a-user" {
        enforcer_tests::tls::socks4a(host, "dev")
    } else if kind == "tfo" || kind == "tfoconnect" || kind == "mptcp" {
        enforcer_tests::tls::client_hello(host, enforcer_tests::tls::Hello::Plain)
    } else {
        enforcer_tests::tls::client_hello(host, kind.parse().expect("KIND"))
    };
    let domain = if target.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: plain socket creation; the fd is owned by the stream below.
    // IPPROTO_MPTCP (262): a multipath TCP connection.
    let protocol = if kind == "mptcp" { 262 } else { 0 };
    // SAFETY: plain socket creation; the fd is owned by the stream below.
    let fd = unsafe { libc::socket(domain, libc::SOCK_STREAM, protocol) };
    if fd < 0 {
        return format!("socket-{}", name(&io::Error::last_os_error()));
    }
    // SAFETY: a fresh fd we own.
    let socket = unsafe { std::net::TcpStream::from_raw_fd(fd) };
    if let Some(mss) = mss {
        set_tcp_option(socket.as_raw_fd(), libc::TCP_MAXSEG, mss, "TCP_MAXSEG");
    }
    let (addr, len) = sockaddr(target);
    if kind == "tfo" {
        // TCP Fast Open: the connect and the first bytes in one call.
        let start = std::time::Instant::now();
        // SAFETY: a valid fd, buffer and address.
        let sent = unsafe {
            libc::sendto(
                socket.as_raw_fd(),
                bytes.as_ptr().cast(),
                bytes.len(),
                libc::MSG_FASTOPEN,
                (&addr as *const libc::sockaddr_storage).cast(),
                len,
            )
        };
        let took = start.elapsed().as_micros();
        if sent < 0 {
            return format!("{} {took}us", name(&io::Error::last_os_error()));
        }
        return format!("ok {took}us");
    }
    if kind == "tfoconnect" {
        set_tcp_option(
            socket.as_raw_fd(),
            libc::TCP_FASTOPEN_CONNECT,
            1,
            "TCP_FASTOPEN_CONNECT",
        );
    }
    // SAFETY: a valid fd and address.
    if unsafe {
        libc::connect(
            socket.as_raw_fd(),
            (&addr as *const libc::sockaddr_storage).cast(),
            len,
        )
    } != 0
    {
        return name(&io::Error::last_os_error());
    }
    if let Some(hello) = greeting {
        // SAFETY: a valid fd and buffer.
        let sent = unsafe { libc::send(socket.as_raw_fd(), hello.as_ptr().cast(), hello.len(), 0) };
        if sent < 0 {
            return format!("greeting {}", name(&io::Error::last_os_error()));
        }
    }
    let start = std::time::Instant::now();
    // SAFETY: a valid fd and buffer: one send() of the whole message.
    let sent = unsafe { libc::send(socket.as_raw_fd(), bytes.as_ptr().cast(), bytes.len(), 0) };
    let took = start.elapsed().as_micros();
    if sent < 0 {
        return format!("{} {took}us", name(&io::Error::last_os_error()));
    }
    assert_eq!(sent as usize, bytes.len(), "one write took it all");
    format!("ok {took}us")
}

/// `send-writes:HEX[,HEX...]`: each as one write, 20 ms apart. Prints
/// "ok", or the first failure and the write's index (`EACCES@1`).
fn send_writes(target: SocketAddr, spec: &str) -> String {
    let mut stream = match std::net::TcpStream::connect(target) {
        Ok(s) => s,
        Err(e) => return name(&e),
    };
    for (i, hex) in spec.split(',').enumerate() {
        if let Err(e) = stream.write_all(&enforcer_tests::hex::decode(hex)) {
            return format!("{}@{i}", name(&e));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // What was queued leaves before the socket closes.
    std::thread::sleep(std::time::Duration::from_millis(100));
    "ok".to_owned()
}

/// `send-writes-nonblocking:HEX[*N][,HEX[*N]...]`: as `send-writes`, on a
/// non-blocking socket (as curl, Node and browsers write) with a 16 KB
/// send buffer: a write the buffer cannot take is cut short (EAGAIN
/// after part of it), and the rest written again once there is room.
fn send_writes_nonblocking(target: SocketAddr, spec: &str) -> String {
    use std::os::fd::AsRawFd as _;
    let mut stream = match std::net::TcpStream::connect(target) {
        Ok(s) => s,
        Err(e) => return name(&e),
    };
    set_int_option(
        stream.as_raw_fd(),
        libc::SOL_SOCKET,
        libc::SO_SNDBUF,
        16384,
        "SO_SNDBUF",
    );
    stream.set_nonblocking(true).expect("non-blocking");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    for (i, hex) in spec.split(',').enumerate() {
        // `HEX*N`: the bytes N times (a command line argument holds 128 KB).
        let (hex, times) = hex.split_once('*').unwrap_or((hex, "1"));
        let bytes = enforcer_tests::hex::decode(hex).repeat(times.parse().expect("count"));
        let mut at = 0;
        while at < bytes.len() {
            match stream.write(&bytes[at..]) {
                Ok(n) => at += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if std::time::Instant::now() > deadline {
                        return format!("stuck@{i}");
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(e) => return format!("{}@{i}", name(&e)),
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(100));
    "ok".to_owned()
}

/// `send-split:KIND:NAME:AT[,AT...]|-`: one message (KIND: `connect`,
/// `http`, `hello`, `socks` (greeting and request), `socks-login`
/// (greeting offering a login, an RFC 1929 login, the request), `socks4a`)
/// written in pieces cut at the given offsets, 20 ms apart. Prints the
/// first failure, else "ok".
fn send_split(target: SocketAddr, spec: &str) -> String {
    use enforcer_tests::tls;
    let mut parts = spec.split(':');
    let kind = parts.next().expect("KIND");
    let host = parts.next().expect("NAME");
    let cuts: Vec<usize> = match parts.next().expect("AT") {
        "-" => Vec::new(),
        at => at.split(',').map(|c| c.parse().expect("offset")).collect(),
    };
    let bytes = match kind {
        "connect" => tls::connect_request(host),
        "http" => tls::http_request(host),
        "hello" => tls::client_hello(host, tls::Hello::Plain),
        "socks" => {
            let (mut m, request) = tls::socks5(host);
            m.extend_from_slice(&request);
            m
        }
        "socks-login" => {
            let (_, request) = tls::socks5(host);
            let mut m = vec![5, 2, 0, 2, 1, 4];
            m.extend_from_slice(b"user");
            m.push(4);
            m.extend_from_slice(b"pass");
            m.extend_from_slice(&request);
            m
        }
        "socks4a" => tls::socks4a(host, ""),
        other => panic!("unknown kind {other}"),
    };
    let mut stream = match std::net::TcpStream::connect(target) {
        Ok(s) => s,
        Err(e) => return name(&e),
    };
    let mut from = 0;
    for to in cuts.into_iter().chain([bytes.len()]) {
        if let Err(e) = stream.write_all(&bytes[from..to]) {
            return name(&e);
        }
        from = to;
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    "ok".to_owned()
}

/// `send-again:FIRST:SECOND:ADDR2`: connects to the target and writes
/// FIRST's ClientHello ("-": nothing), dissolves the connection with
/// `connect(AF_UNSPEC)`, connects the same socket to ADDR2 (IPv4
/// `a.b.c.d:port`) and writes SECOND's. Prints "FIRST/SECOND" outcomes.
fn send_again(target: SocketAddr, spec: &str) -> String {
    use enforcer_tests::tls::{Hello, client_hello};
    let mut parts = spec.splitn(3, ':');
    let first = parts.next().expect("FIRST");
    let second = client_hello(parts.next().expect("SECOND"), Hello::Plain);
    let again: SocketAddr = parts.next().expect("ADDR2").parse().expect("ADDR2");
    // SAFETY: plain socket creation; closed at the end.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
    assert!(fd >= 0, "socket");
    let connect = |to: SocketAddr| {
        let (addr, len) = sockaddr(to);
        // SAFETY: a valid fd and address.
        let r = unsafe { libc::connect(fd, (&addr as *const libc::sockaddr_storage).cast(), len) };
        if r == 0 {
            Ok(())
        } else {
            Err(name(&io::Error::last_os_error()))
        }
    };
    let send = |bytes: &[u8]| send_raw(fd, bytes);
    let outcome = (|| {
        connect(target)?;
        let a = if first == "-" {
            "-".to_owned()
        } else {
            send(&client_hello(first, Hello::Plain))
        };
        // SAFETY: an all-zero sockaddr with family AF_UNSPEC dissolves the
        // association (connect(2)).
        let unspec: libc::sockaddr = unsafe { std::mem::zeroed() };
        // SAFETY: a valid fd and address.
        let r = unsafe {
            libc::connect(
                fd,
                &unspec,
                std::mem::size_of::<libc::sockaddr>() as libc::socklen_t,
            )
        };
        if r != 0 {
            return Err(format!("unspec {}", name(&io::Error::last_os_error())));
        }
        connect(again)?;
        Ok(format!("{a}/{}", send(&second)))
    })();
    // SAFETY: our fd.
    unsafe { libc::close(fd) };
    outcome.unwrap_or_else(|e| e)
}

/// `send-early:plain|cork:FIRST:SECOND`: a non-blocking connect, then
/// (blocking again) a write of FIRST's ClientHello while the handshake is
/// still under way: it waits inside TCP for the connection, not on the
/// path a connection takes once established. Then SECOND's ClientHello
/// as a second write. `cork` holds the first write's bytes in the queue
/// (TCP_CORK) until after the second. Prints "FIRST-OUTCOME/SECOND-OUTCOME",
/// after 300 ms for what was queued to leave.
fn send_early(target: SocketAddr, spec: &str) -> String {
    use enforcer_tests::tls::{Hello, client_hello};
    let mut parts = spec.split(':');
    let cork = parts.next().expect("plain|cork") == "cork";
    let first = client_hello(parts.next().expect("FIRST"), Hello::Plain);
    let second = client_hello(parts.next().expect("SECOND"), Hello::Plain);
    let domain = if target.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: plain socket creation; closed at the end.
    let fd = unsafe { libc::socket(domain, libc::SOCK_STREAM | libc::SOCK_NONBLOCK, 0) };
    assert!(fd >= 0, "socket");
    let set_cork = |on| set_tcp_option(fd, libc::TCP_CORK, on, "TCP_CORK");
    if cork {
        set_cork(1);
    }
    let (addr, len) = sockaddr(target);
    // SAFETY: a valid fd and address.
    let r = unsafe { libc::connect(fd, (&addr as *const libc::sockaddr_storage).cast(), len) };
    let err = io::Error::last_os_error();
    if r != 0 && err.raw_os_error() != Some(libc::EINPROGRESS) {
        // SAFETY: our fd.
        unsafe { libc::close(fd) };
        return name(&err);
    }
    // SAFETY: a valid fd; clears O_NONBLOCK.
    unsafe { libc::fcntl(fd, libc::F_SETFL, 0) };
    let send = |bytes: &[u8]| send_raw(fd, bytes);
    let a = send(&first);
    let b = send(&second);
    if cork {
        set_cork(0);
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    // SAFETY: our fd.
    unsafe { libc::close(fd) };
    format!("{a}/{b}")
}

/// One `send()` of `bytes` on `fd`: "ok" or the error's name.
fn send_raw(fd: libc::c_int, bytes: &[u8]) -> String {
    // SAFETY: a valid fd and buffer.
    let n = unsafe { libc::send(fd, bytes.as_ptr().cast(), bytes.len(), 0) };
    if n < 0 {
        name(&io::Error::last_os_error())
    } else {
        "ok".to_owned()
    }
}

/// An `IPPROTO_TCP` socket option of type int; panics (naming it) if
/// the kernel refuses it.
fn set_tcp_option(fd: libc::c_int, option: libc::c_int, value: libc::c_int, what: &str) {
    set_int_option(fd, libc::IPPROTO_TCP, option, value, what);
}

/// A socket option of type int at `level`; panics (naming it) if the
/// kernel refuses it.
fn set_int_option(
    fd: libc::c_int,
    level: libc::c_int,
    option: libc::c_int,
    value: libc::c_int,
    what: &str,
) {
    // SAFETY: a valid fd and option buffer.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            option,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(r, 0, "{what}");
}

fn sockaddr(target: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: an all-zero sockaddr_storage is valid.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match target {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than sockaddr_in.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: 0,
            };
            // SAFETY: sockaddr_storage is larger than sockaddr_in6.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}
