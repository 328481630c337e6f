fn main() { println!("{}", enforcer::OBJECT.len()); }
