//! A real DNS server on loopback for the controller tests: UDP, the wire
//! format through hickory-proto, answers from a zone the test changes while
//! it runs (A, AAAA, CNAME chains, TTLs), and SERVFAIL or silence on demand.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    str::FromStr,
    sync::{Arc, Mutex},
    time::Instant,
};

use hickory_proto::{
    op::{Message, MessageType, OpCode, ResponseCode},
    rr::{
        Name, RData, Record, RecordType,
        rdata::{A, AAAA, CNAME},
    },
};
use tokio::net::UdpSocket;

#[derive(Debug, Clone)]
enum Rec {
    Addr(IpAddr),
    Cname(String),
}

#[derive(Default)]
struct Zone {
    /// name (lower-case, no trailing dot) → (records, ttl)
    names: HashMap<String, (Vec<Rec>, u32)>,
    servfail: bool,
    /// Record types answered with REFUSED (a resolver that fails one type).
    refused: Vec<RecordType>,
    /// Extra A records for other names, appended to every answer (a
    /// hostile upstream).
    extra: Vec<(String, IpAddr)>,
    /// When each name was last answered (the benchmark times from there).
    served: HashMap<String, Instant>,
}

/// The server; it runs on its own runtime thread until dropped.
pub struct DnsServer {
    addr: SocketAddr,
    zone: Arc<Mutex<Zone>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl DnsServer {
    pub fn start() -> DnsServer {
        DnsServer::start_on("127.0.0.1:0".parse().unwrap())
    }

    /// On a given address (resolv.conf names servers on port 53 only).
    pub fn start_on(bind: SocketAddr) -> DnsServer {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let socket = runtime
            .block_on(UdpSocket::bind(bind))
            .expect("bind DNS server on loopback");
        let addr = socket.local_addr().unwrap();
        let zone = Arc::new(Mutex::new(Zone::default()));
        let served = zone.clone();
        runtime.spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
                    return;
                };
                if let Some(reply) = answer(&served, &buf[..n]) {
                    let _ = socket.send_to(&reply, peer).await;
                }
            }
        });
        // DNS over TCP on the same address (RFC 7766 framing: a 2-byte
        // length before each message), one query per connection.
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(addr))
            .expect("bind DNS server (TCP)");
        let served = zone.clone();
        runtime.spawn(async move {
            use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let served = served.clone();
                tokio::spawn(async move {
                    let mut len = [0u8; 2];
                    if stream.read_exact(&mut len).await.is_err() {
                        return;
                    }
                    let mut query = vec![0u8; u16::from_be_bytes(len) as usize];
                    if stream.read_exact(&mut query).await.is_err() {
                        return;
                    }
                    if let Some(reply) = answer(&served, &query) {
                        let mut framed = (reply.len() as u16).to_be_bytes().to_vec();
                        framed.extend_from_slice(&reply);
                        let _ = stream.write_all(&framed).await;
                    }
                });
            }
        });
        DnsServer {
            addr,
            zone,
            runtime: Some(runtime),
        }
    }

    /// `ip:port` for the policy's `resolver.upstreams`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sets the A/AAAA records of `name`.
    pub fn set_addrs(&self, name: &str, addrs: &[&str], ttl: u32) {
        let recs = addrs
            .iter()
            .map(|a| Rec::Addr(a.parse().unwrap()))
            .collect();
        self.zone
            .lock()
            .unwrap()
            .names
            .insert(key(name), (recs, ttl));
    }

    /// `set_addrs` for each (name, addresses), all with `ttl`.
    pub fn set_all(&self, names: &[(&str, &[&str])], ttl: u32) {
        for (name, addrs) in names {
            self.set_addrs(name, addrs, ttl);
        }
    }

    pub fn set_cname(&self, name: &str, target: &str, ttl: u32) {
        self.zone
            .lock()
            .unwrap()
            .names
            .insert(key(name), (vec![Rec::Cname(key(target))], ttl));
    }

    pub fn remove(&self, name: &str) {
        self.zone.lock().unwrap().names.remove(&key(name));
    }

    /// Answers queries of `rtype` with REFUSED.
    pub fn refuse(&self, rtype: RecordType) {
        self.zone.lock().unwrap().refused.push(rtype);
    }

    /// Appends an A/AAAA record for `name` to every answer.
    pub fn add_extra(&self, name: &str, addr: &str) {
        self.zone
            .lock()
            .unwrap()
            .extra
            .push((key(name), addr.parse().unwrap()));
    }

    pub fn set_servfail(&self, on: bool) {
        self.zone.lock().unwrap().servfail = on;
    }

    /// When a query for `name` was last answered.
    pub fn served_at(&self, name: &str) -> Option<Instant> {
        self.zone.lock().unwrap().served.get(&key(name)).copied()
    }

    /// Stops serving: the port closes, queries get no answer.
    pub fn stop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

fn answer(zone: &Mutex<Zone>, query: &[u8]) -> Option<Vec<u8>> {
    let request = Message::from_vec(query).ok()?;
    let q = request.queries.first()?.clone();
    let mut reply = Message::new(request.metadata.id, MessageType::Response, OpCode::Query);
    reply.metadata.recursion_desired = request.metadata.recursion_desired;
    reply.metadata.recursion_available = true;
    reply.metadata.authoritative = true;
    reply.add_query(q.clone());
    let mut zone = zone.lock().unwrap();
    zone.served.insert(key(&q.name.to_ascii()), Instant::now());
    if zone.servfail {
        reply.metadata.response_code = ResponseCode::ServFail;
        return reply.to_vec().ok();
    }
    if zone.refused.contains(&q.query_type) {
        reply.metadata.response_code = ResponseCode::Refused;
        return reply.to_vec().ok();
    }
    for (name, addr) in &zone.extra {
        let owner = Name::from_str(&format!("{name}.")).ok()?;
        let rdata = match addr {
            IpAddr::V4(a) => RData::A(A(*a)),
            IpAddr::V6(a) => RData::AAAA(AAAA(*a)),
        };
        reply.add_answer(Record::from_rdata(owner, 60, rdata));
    }
    let mut name = key(&q.name.to_ascii());
    if !zone.names.contains_key(&name) {
        reply.metadata.response_code = ResponseCode::NXDomain;
        return reply.to_vec().ok();
    }
    // Follow the CNAME chain inside the zone, like an authoritative server
    // that also holds the targets.
    for _ in 0..8 {
        let Some((recs, ttl)) = zone.names.get(&name) else {
            break;
        };
        let owner = Name::from_str(&format!("{name}.")).ok()?;
        if let Some(Rec::Cname(target)) = recs.first() {
            let t = Name::from_str(&format!("{target}.")).ok()?;
            reply.add_answer(Record::from_rdata(owner, *ttl, RData::CNAME(CNAME(t))));
            name = target.clone();
            continue;
        }
        for rec in recs {
            let rdata = match (rec, q.query_type) {
                (Rec::Addr(IpAddr::V4(a)), RecordType::A) => RData::A(A(*a)),
                (Rec::Addr(IpAddr::V6(a)), RecordType::AAAA) => RData::AAAA(AAAA(*a)),
                _ => continue,
            };
            reply.add_answer(Record::from_rdata(owner.clone(), *ttl, rdata));
        }
        break;
    }
    reply.to_vec().ok()
}
