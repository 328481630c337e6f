//! The names behind addresses the kernel learned from DNS answers: each
//! answer that taught the DNS program addresses is reported to userspace
//! (`DNS_REPORTS`); this parses it (hickory-proto) into the asked name,
//! the CNAME chain and the addresses, and remembers address → name for a
//! while, so that a flow to such an address shows the name it came from,
//! whichever hook saw the flow. Pure: no kernel, no clock of its own.

use std::{
    collections::{HashMap, VecDeque},
    net::IpAddr,
    time::{Duration, Instant},
};

use hickory_proto::{
    op::{Header, Query},
    rr::{Name, RData, Record},
    serialize::binary::{BinDecodable, BinDecoder},
};

/// Addresses remembered at most (two learned maps' worth would be more
/// than any workstation sees in an hour).
pub const MAX_REMEMBERED: usize = 65_536;
/// Answer records read per message (the kernel walks 16).
const MAX_RECORDS: usize = 64;
/// CNAMEs followed per message.
const MAX_CHAIN: usize = 8;
/// How long a name is kept beyond the answer's TTL, and at least: a flow
/// may come after the TTL (the kernel's own clamp and grace keep the
/// address banned that long), and naming it late beats not naming it.
const KEEP_AT_LEAST: Duration = Duration::from_secs(600);
const KEEP_AT_MOST: Duration = Duration::from_secs(86_400);

/// What one answer says: the asked name, the CNAME chain to the records,
/// and the addresses with the name (on the chain) that owns each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub question: String,
    /// The question, then every CNAME target followed, in order.
    pub chain: Vec<String>,
    /// Address, TTL (s), and the index in `chain` of its owner.
    pub addrs: Vec<(IpAddr, u32, usize)>,
}

fn plain(name: &Name) -> String {
    let s = name.to_lowercase().to_ascii();
    s.strip_suffix('.').map(str::to_owned).unwrap_or(s)
}

/// Parses a (possibly cut) DNS response: the question and the answer
/// records as far as they are whole. Records whose owner is not on the
/// chain do not count (as in the kernel). `None` without a question.
pub fn parse(msg: &[u8]) -> Option<Answer> {
    let mut d = BinDecoder::new(msg);
    let header = Header::read(&mut d).ok()?;
    if header.counts.queries != 1 {
        return None;
    }
    let question = plain(Query::read(&mut d).ok()?.name());
    let mut chain = vec![question.clone()];
    let mut addrs = Vec::new();
    let answers = usize::from(header.counts.answers).min(MAX_RECORDS);
    for _ in 0..answers {
        // A message cut by the kernel's copy ends mid-record: keep what
        // was whole.
        let Ok(record) = Record::read(&mut d) else {
            break;
        };
        let owner = plain(&record.name);
        let Some(at) = chain.iter().position(|n| *n == owner) else {
            continue;
        };
        match &record.data {
            RData::CNAME(target) if chain.len() < MAX_CHAIN => {
                let target = plain(&target.0);
                if !chain.contains(&target) {
                    chain.push(target);
                }
            }
            RData::A(a) => addrs.push((IpAddr::V4(a.0), record.ttl, at)),
            RData::AAAA(a) => addrs.push((IpAddr::V6(a.0), record.ttl, at)),
            _ => {}
        }
    }
    Some(Answer {
        question,
        chain,
        addrs,
    })
}

/// The name an address came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The name the application asked for.
    pub name: String,
    /// `asked -> alias -> owner` when CNAMEs led to the address; empty
    /// when the asked name owns it.
    pub chain: String,
    expires: Instant,
}

/// Address → the name it came from, bounded: expired entries go first,
/// then the oldest.
#[derive(Debug, Default)]
pub struct Remembered {
    by_addr: HashMap<IpAddr, (Origin, u64)>,
    /// Insertion order, with each insertion's stamp (a refreshed address
    /// leaves a stale stamp behind, skipped when it comes up).
    order: VecDeque<(IpAddr, u64)>,
    stamp: u64,
    cap: usize,
}

impl Remembered {
    pub fn new(cap: usize) -> Remembered {
        Remembered {
            cap: cap.max(1),
            ..Remembered::default()
        }
    }

    pub fn len(&self) -> usize {
        self.by_addr.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_addr.is_empty()
    }

    /// Remembers the addresses of `answer`, seen at `now`.
    pub fn learn(&mut self, answer: &Answer, now: Instant) {
        for &(addr, ttl, at) in &answer.addrs {
            let chain = if at == 0 {
                String::new()
            } else {
                answer.chain[..=at].join(" -> ")
            };
            let keep = (Duration::from_secs(ttl.into()) + KEEP_AT_LEAST).min(KEEP_AT_MOST);
            let origin = Origin {
                name: answer.question.clone(),
                chain,
                expires: now + keep,
            };
            self.insert(addr.to_canonical(), origin, now);
        }
    }

    fn insert(&mut self, addr: IpAddr, origin: Origin, now: Instant) {
        self.stamp += 1;
        self.by_addr.insert(addr, (origin, self.stamp));
        self.order.push_back((addr, self.stamp));
        while self.by_addr.len() > self.cap {
            self.by_addr.retain(|_, (o, _)| o.expires > now);
            if self.by_addr.len() <= self.cap {
                break;
            }
            self.evict_oldest();
        }
        // Stale stamps of refreshed addresses: rebuilt before they pile up.
        if self.order.len() > 2 * self.cap {
            let by_addr = &self.by_addr;
            self.order
                .retain(|(a, s)| by_addr.get(a).is_some_and(|(_, live)| live == s));
        }
    }

    fn evict_oldest(&mut self) {
        while let Some((addr, stamp)) = self.order.pop_front() {
            if self.by_addr.get(&addr).is_some_and(|(_, s)| *s == stamp) {
                self.by_addr.remove(&addr);
                return;
            }
        }
    }

    /// The name `addr` came from, if an answer taught it and its time is
    /// not over.
    pub fn lookup(&self, addr: IpAddr, now: Instant) -> Option<&Origin> {
        self.by_addr
            .get(&addr.to_canonical())
            .map(|(o, _)| o)
            .filter(|o| o.expires > now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `innocent.test` CNAME `real.banned.test` A 192.0.2.7 and AAAA
    /// 2001:db8::7, then a record for another name; every owner and the
    /// CNAME target's tail written as compression pointers.
    fn crafted() -> Vec<u8> {
        let mut m = vec![0x12, 0x34, 0x81, 0x80, 0, 1, 0, 4, 0, 0, 0, 0];
        // 12: question innocent.test A IN; "test" at 21.
        m.extend_from_slice(b"\x08innocent\x04test\x00\x00\x01\x00\x01");
        // CNAME: owner -> 12; target "real" "banned" then a pointer to
        // "test" (21). The target starts at 43.
        m.extend_from_slice(&[0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 60, 0, 14]);
        assert_eq!(m.len(), 43);
        m.extend_from_slice(b"\x04REAL\x06banned\xc0\x15");
        // A and AAAA owned by the target (pointer to 43).
        m.extend_from_slice(&[0xc0, 43, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4, 192, 0, 2, 7]);
        m.extend_from_slice(&[0xc0, 43, 0, 28, 0, 1, 0, 0, 0, 30, 0, 16]);
        m.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7]);
        // A record of a name that is not on the chain: "other" + ptr.
        m.extend_from_slice(b"\x05other\xc0\x15");
        m.extend_from_slice(&[0, 1, 0, 1, 0, 0, 0, 30, 0, 4, 192, 0, 2, 9]);
        m
    }

    #[test]
    fn a_crafted_answer_with_pointers_gives_the_question_chain_and_addresses() {
        let a = parse(&crafted()).unwrap();
        assert_eq!(a.question, "innocent.test");
        assert_eq!(a.chain, ["innocent.test", "real.banned.test"]);
        assert_eq!(
            a.addrs,
            [
                ("192.0.2.7".parse().unwrap(), 30, 1),
                ("2001:db8::7".parse().unwrap(), 30, 1)
            ]
        );
        let now = Instant::now();
        let mut r = Remembered::new(16);
        r.learn(&a, now);
        let o = r.lookup("::ffff:192.0.2.7".parse().unwrap(), now).unwrap();
        assert_eq!(o.name, "innocent.test");
        assert_eq!(o.chain, "innocent.test -> real.banned.test");
        assert!(r.lookup("192.0.2.9".parse().unwrap(), now).is_none());
        // Forgotten after TTL + the margin.
        let later = now + Duration::from_secs(30) + KEEP_AT_LEAST;
        assert!(r.lookup("192.0.2.7".parse().unwrap(), later).is_none());
    }

    #[test]
    fn a_cut_message_keeps_its_whole_records_and_garbage_is_none() {
        let m = crafted();
        // Cut inside the AAAA record: the A record before it stays.
        let a = parse(&m[..m.len() - 22 - 10]).unwrap();
        assert_eq!(a.addrs.len(), 1);
        assert_eq!(parse(&m[..10]), None);
        assert_eq!(parse(b"\xff\xff\xff"), None);
    }

    #[test]
    fn memory_is_bounded_expired_first_then_oldest() {
        let now = Instant::now();
        let mut r = Remembered::new(4);
        let answer = |last: u8, ttl: u32| Answer {
            question: format!("n{last}.test"),
            chain: vec![format!("n{last}.test")],
            addrs: vec![(IpAddr::from([192, 0, 2, last]), ttl, 0)],
        };
        for i in 0..4 {
            r.learn(&answer(i, 60), now);
        }
        // Refreshing 0 makes it the newest; 1 is now the oldest.
        r.learn(&answer(0, 60), now);
        r.learn(&answer(10, 60), now);
        assert_eq!(r.len(), 4);
        assert!(r.lookup("192.0.2.1".parse().unwrap(), now).is_none());
        assert!(r.lookup("192.0.2.0".parse().unwrap(), now).is_some());
        // Much later everything has expired: a new one replaces them.
        let later = now + KEEP_AT_MOST;
        r.learn(&answer(20, 60), later);
        assert_eq!(r.len(), 1);
        for i in 0..1000u16 {
            r.learn(&answer((i % 3) as u8, 60), later);
        }
        assert!(r.order.len() <= 8 + 1, "{}", r.order.len());
    }
}
