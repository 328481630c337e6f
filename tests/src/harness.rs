//! The real object, loaded and attached through the library into a test's
//! own cgroup and private bpffs, so a test can read the events and counters
//! itself.

use std::path::Path;

use aya::programs::{Program, TestRun as _, TestRunOptions};
use enforcer::{
    bpf::{
        CgroupHook, Datapath, Pins,
        events::{BlockEvent, EventReader},
        nat64::write_prefixes,
        stats::{Stats, set_mode},
        writer::MapWriter,
    },
    desired::{RuleTable, compile},
    policy::{Mode, Policy, Source},
};

use crate::{BpffsGuard, CgroupGuard};

/// What the DNS program reads, as the daemon writes it.
fn write_dns(pins: &Pins, p: &Policy, rules: &RuleTable) {
    enforcer::bpf::dnsnames::write_names(pins, rules).expect("write DNS names");
    enforcer::bpf::dnsnames::write_config(pins, p).expect("write DNS config");
    let ports = enforcer::portmaps::build(rules, &Default::default());
    enforcer::bpf::ports::write(pins, &ports).expect("write port rules");
}

pub struct Harness {
    pub pins: Pins,
    pub datapath: Datapath,
    pub writer: MapWriter,
    pub rules: RuleTable,
    runtime: tokio::runtime::Runtime,
    // Dropped last: unmounting releases the links.
    pub bpffs: BpffsGuard,
}

pub fn policy(json: &str) -> Policy {
    Policy::parse(json, Source::File("test-policy.json".into())).expect("test policy")
}

/// The id the daemon gives the first rule of `policy_json` whose target
/// reads `target` (`10.0.0.0/8`, `api.example.com`, `*:853/tcp`). Ids follow
/// a rule's content (`enforcer::rules`), not its place.
pub fn rule_id(policy_json: &str, target: &str) -> u32 {
    enforcer::rules::RuleTable::new(std::sync::Arc::new(policy(policy_json)))
        .id_of(target)
        .unwrap_or_else(|| panic!("no rule {target} in {policy_json}"))
}

impl Harness {
    /// Loads the object with `policy_json` in the maps and attaches `hooks`
    /// to `cgroup`.
    pub fn new(
        tag: &str,
        cgroup: &CgroupGuard,
        policy_json: &str,
        hooks: &[CgroupHook],
    ) -> Harness {
        Harness::with_capacity(tag, cgroup, policy_json, hooks, &[])
    }

    /// As `new`, with some maps made smaller (or larger) than the defaults.
    pub fn with_capacity(
        tag: &str,
        cgroup: &CgroupGuard,
        policy_json: &str,
        hooks: &[CgroupHook],
        capacity: &[(&'static str, u32)],
    ) -> Harness {
        let bpffs = BpffsGuard::new(tag);
        let pins = Pins::new(bpffs.pins_dir());
        let mut datapath =
            Datapath::load_with_capacity(&pins, capacity).expect("load the eBPF object");
        let mut writer = MapWriter::open(&pins).expect("open maps");
        let p = std::sync::Arc::new(policy(policy_json));
        let (desired, rules) = compile(&p, &Default::default());
        writer.apply(&desired).expect("apply policy");
        set_mode(&pins, p.mode.as_config()).expect("set mode");
        write_prefixes(&pins, &p).expect("write NAT64 prefixes");
        write_dns(&pins, &p, &rules);
        if !hooks.is_empty() {
            datapath
                .attach_cgroup(cgroup.path(), hooks)
                .expect("attach cgroup programs");
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        Harness {
            pins,
            datapath,
            writer,
            rules,
            runtime,
            bpffs,
        }
    }

    /// Replaces the policy in the maps.
    pub fn apply(&mut self, policy_json: &str) {
        let p = std::sync::Arc::new(policy(policy_json));
        let (desired, rules) = compile(&p, &Default::default());
        self.writer.apply(&desired).expect("apply policy");
        set_mode(&self.pins, p.mode.as_config()).expect("set mode");
        write_prefixes(&self.pins, &p).expect("write NAT64 prefixes");
        write_dns(&self.pins, &p, &rules);
        self.rules = rules;
    }

    /// The id of the rule whose target reads `target` (ids are derived
    /// from a rule's content: `enforcer::rules`).
    pub fn rule_id(&self, target: &str) -> u32 {
        self.rules
            .id_of(target)
            .unwrap_or_else(|| panic!("no rule {target} in the policy"))
    }

    pub fn set_mode(&self, mode: Mode) {
        set_mode(&self.pins, mode.as_config()).expect("set mode");
    }

    /// Every event emitted so far (each call returns only new ones).
    pub fn events(&self) -> Vec<BlockEvent> {
        let _ctx = self.runtime.enter();
        let mut reader = EventReader::open(&self.pins).expect("open ring buffer");
        let mut events = Vec::new();
        reader.drain(|ev| events.push(ev.expect("decodable event")));
        events
    }

    pub fn stats(&self) -> Stats {
        Stats::read(&self.pins).expect("read stats")
    }

    pub fn pins_dir(&self) -> &Path {
        self.pins.root()
    }

    /// The program `name` (XDP or cgroup_skb) run by the kernel on `frame`
    /// (BPF_PROG_TEST_RUN): its return value.
    pub fn test_run(&mut self, name: &str, frame: &[u8]) -> u32 {
        let opts = TestRunOptions {
            data_in: Some(frame),
            ..Default::default()
        };
        let program = self
            .datapath
            .ebpf_mut()
            .program_mut(name)
            .unwrap_or_else(|| panic!("no program {name} in the object"));
        let out = match program {
            Program::Xdp(p) => p.test_run(opts),
            Program::CgroupSkb(p) => p.test_run(opts),
            _ => panic!("{name}: not an XDP or cgroup_skb program"),
        };
        out.expect("BPF_PROG_TEST_RUN").return_value
    }
}
