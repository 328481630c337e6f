//! A client of the control socket for the tests that need one running as
//! another user (the test sets its credentials before exec) and behaving
//! as no CLI does.
//!
//! peer hold N SOCKET
//!   Opens N connections and sends nothing; prints
//!   {"held":H,"refused":R,"failed":F} (refused: the daemon answered or
//!   closed at once), then keeps them open until stdin closes.
//! peer handoff SOCKET LINE
//!   Connects, sends LINE, and leaves: a forked child keeps the connection
//!   and, once the process that connected has exited, prints the reply.

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    os::unix::net::UnixStream,
    time::{Duration, Instant},
};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["hold", n, socket] => hold(n.parse().expect("count"), socket),
        ["handoff", socket, line] => handoff(socket, line),
        _ => panic!("usage: peer hold N SOCKET | peer handoff SOCKET LINE"),
    }
}

fn hold(n: usize, socket: &str) {
    let mut open = Vec::new();
    let mut failed = 0;
    for _ in 0..n {
        match UnixStream::connect(socket) {
            Ok(s) => open.push(s),
            Err(_) => failed += 1,
        }
    }
    // The daemon refuses (a line, then close) right after accepting.
    std::thread::sleep(Duration::from_millis(500));
    let mut held = Vec::new();
    let mut refused = 0;
    for s in open {
        s.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 256];
        match (&s).read(&mut buf) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => held.push(s),
            _ => refused += 1,
        }
    }
    println!(
        "{{\"held\":{},\"refused\":{refused},\"failed\":{failed}}}",
        held.len()
    );
    std::io::stdout().flush().unwrap();
    let mut rest = String::new();
    let _ = std::io::stdin().read_to_string(&mut rest);
}

fn handoff(socket: &str, line: &str) {
    let mut s = UnixStream::connect(socket).expect("connect");
    s.write_all(format!("{line}\n").as_bytes()).expect("send");
    let me = std::process::id() as libc::pid_t;
    // SAFETY: single-threaded; the child only uses what it owns.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork");
    if pid > 0 {
        // The process that connected is gone before anyone reads.
        // SAFETY: ends this process without running the child's drops.
        unsafe { libc::_exit(0) };
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    // Reparented once the process that connected has exited.
    // SAFETY: getppid has no preconditions.
    while unsafe { libc::getppid() } == me && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut reply = String::new();
    let _ = BufReader::new(&s).read_line(&mut reply);
    print!("{reply}");
}
