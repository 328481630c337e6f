//! DNS responses built byte by byte, for the tests and the benchmark that
//! feed the DNS program crafted (and broken) messages.

/// A response header: NOERROR, one question, `an` answers.
pub fn header(an: u16) -> Vec<u8> {
    let mut h = vec![0x12, 0x34, 0x81, 0x80, 0, 1];
    h.extend_from_slice(&an.to_be_bytes());
    h.extend_from_slice(&[0, 0, 0, 0]);
    h
}

/// The question `name` A IN, uncompressed.
pub fn question(name: &str) -> Vec<u8> {
    let mut q = Vec::new();
    for l in name.split('.') {
        q.push(l.len() as u8);
        q.extend_from_slice(l.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

/// An A record (TTL 60) whose owner is a pointer to the question.
pub fn a_record(addr: [u8; 4]) -> Vec<u8> {
    let mut r = vec![0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4];
    r.extend_from_slice(&addr);
    r
}

/// A whole response for `name` with `an` answers in `body`.
pub fn message(name: &str, an: u16, body: &[u8]) -> Vec<u8> {
    let mut m = header(an);
    m.extend_from_slice(&question(name));
    m.extend_from_slice(body);
    m
}
