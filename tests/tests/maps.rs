//! The map writer against real maps: capacity, diffs, and what the kernel
//! holds afterwards.

use enforcer::{
    bpf::{
        CgroupHook,
        writer::{MapWriter, WriteError},
    },
    desired::compile,
};
use enforcer_common::maps::{ALLOW_LPM_V4, DENY_V4};
use enforcer_tests::{CgroupGuard, Harness, NetnsGuard, Probe, harness::policy};

fn bans(addrs: &[&str]) -> String {
    let list: Vec<String> = addrs.iter().map(|a| format!("\"{a}\"")).collect();
    format!(r#"{{"version":1,"deny":{{"cidrs":[{}]}}}}"#, list.join(","))
}

#[test]
fn over_capacity_fails_whole_and_leaves_the_maps_as_they_were() {
    let cg = CgroupGuard::new("cap");
    let ns = NetnsGuard::new("cap");
    ns.add_lo_addr("10.77.0.2/32");
    let four = bans(&["10.77.0.2", "10.9.0.2", "10.9.0.3", "10.9.0.4"]);
    let mut h = Harness::with_capacity("cap", &cg, &four, &CgroupHook::ALL, &[(DENY_V4, 4)]);
    let before = MapWriter::open(&h.pins).unwrap().current();
    assert_eq!(before.deny_v4.len(), 4);

    let five = bans(&["10.77.0.2", "10.9.0.2", "10.9.0.3", "10.9.0.4", "10.9.0.5"]);
    let err = h
        .writer
        .apply(&compile(&policy(&five).into(), &Default::default()).0)
        .unwrap_err();
    assert!(
        matches!(
            err,
            WriteError::Capacity {
                map: "DENY_V4",
                needed: 5,
                capacity: 4
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("nothing was changed"), "{err}");
    // The kernel holds exactly what it held (read back through a new handle).
    assert_eq!(MapWriter::open(&h.pins).unwrap().current(), before);
    let probe = Probe::new().cgroup(cg.path()).netns(ns.name());
    assert_eq!(probe.run("tcp", "10.77.0.2:0").result, "EPERM");

    // A full map can still be changed: the stale entries make room first.
    let swapped = bans(&["10.77.0.2", "10.9.0.2", "10.9.0.8", "10.9.0.9"]);
    let (desired, _) = compile(&policy(&swapped).into(), &Default::default());
    let applied = h.writer.apply(&desired).unwrap();
    assert_eq!((applied.upserts, applied.removes), (2, 2));
    assert_eq!(MapWriter::open(&h.pins).unwrap().current(), desired);
    assert_eq!(probe.run("tcp", "10.77.0.2:0").result, "EPERM");
}

#[test]
fn the_kernel_holds_exactly_the_desired_state_after_each_change() {
    let cg = CgroupGuard::new("eq");
    let mut h = Harness::new("eq", &cg, r#"{"version":1}"#, &[]);
    let steps = [
        r#"{"version":1,"deny":{"cidrs":["1.2.3.4","10.0.0.0/8","::5","2607:6bc0::/48"]},"allow":{"cidrs":["10.20.0.0/16","2607:6bc0:1::/64"]}}"#,
        r#"{"version":1,"deny":{"cidrs":["1.2.3.4","10.0.0.0/9","::6"]},"allow":{"cidrs":["10.20.0.0/16"]}}"#,
        r#"{"version":1,"deny":{"cidrs":["10.0.0.0/9","1.2.3.4"]}}"#,
        r#"{"version":1}"#,
    ];
    for step in steps {
        let (desired, _) = compile(&policy(step).into(), &Default::default());
        h.writer.apply(&desired).unwrap();
        assert_eq!(
            MapWriter::open(&h.pins).unwrap().current(),
            desired,
            "after {step}"
        );
    }
}

#[test]
fn allow_exception_capacity_is_checked_too() {
    let cg = CgroupGuard::new("ca");
    let mut h = Harness::with_capacity("ca", &cg, r#"{"version":1}"#, &[], &[(ALLOW_LPM_V4, 1)]);
    let two = r#"{"version":1,"deny":{"cidrs":["10.0.0.0/8"]},"allow":{"cidrs":["10.1.0.0/16","10.2.0.0/16"]}}"#;
    let err = h
        .writer
        .apply(&compile(&policy(two).into(), &Default::default()).0)
        .unwrap_err();
    assert!(
        matches!(
            err,
            WriteError::Capacity {
                map: "ALLOW_LPM_V4",
                needed: 2,
                capacity: 1
            }
        ),
        "{err}"
    );
    // Checked before any write: not even the ban went in.
    assert!(MapWriter::open(&h.pins).unwrap().current().is_empty());
}

/// Pins of an older build that still had the owner LRU (`SOCK_OWNERS`,
/// now socket-local storage): adopted, the retired map's pin removed (it
/// would hold the map's memory for nothing), the new map pinned.
#[test]
fn pins_with_the_retired_owner_lru_are_adopted_and_its_pin_removed() {
    use aya::maps::{HashMap, MapData};
    use enforcer::bpf::Datapath;
    use enforcer_common::{SockOwner, maps::SK_OWNERS};

    let cg = CgroupGuard::new("ar");
    let h = Harness::new(
        "ar",
        &cg,
        r#"{"version":1,"deny":{"cidrs":["10.77.0.2"]}}"#,
        &[],
    );
    // A map pinned under the retired name, owners by cookie, as the older
    // build left it (aya makes no LRU alone; the type is not what counts).
    let retired = h.pins.map("SOCK_OWNERS");
    HashMap::<MapData, u64, SockOwner>::create(1024, 0)
        .expect("create the retired map")
        .pin(&retired)
        .expect("pin it");
    assert!(retired.exists());
    let adopted = Datapath::load(&h.pins).expect("adopt the older pins");
    assert!(adopted.adopted());
    assert!(!retired.exists(), "the retired map's pin is gone");
    assert!(h.pins.map(SK_OWNERS).exists(), "the new map is pinned");
    assert_eq!(
        MapWriter::open(&h.pins).unwrap().current().deny_v4.len(),
        1,
        "the adopted bans are kept"
    );
}

#[test]
fn pins_from_before_the_nat64_map_are_adopted_and_the_new_map_is_pinned_beside_them() {
    use enforcer::bpf::{Datapath, nat64::write_prefixes};
    use enforcer_common::maps::NAT64_PREFIXES;

    let cg = CgroupGuard::new("an");
    let ns = NetnsGuard::new("an");
    ns.add_lo_addr("2001:db8:64::a4d:2/128");
    let with_prefix = r#"{"version":1,"deny":{"cidrs":["10.77.0.2"]},
                          "nat64_prefixes":["2001:db8:64::/96"]}"#;
    let h = Harness::new("an", &cg, with_prefix, &[]);
    // The pins as a build without the map left them.
    std::fs::remove_file(h.pins.map(NAT64_PREFIXES)).unwrap();
    let mut adopted = Datapath::load(&h.pins).expect("adopt the older pins");
    assert!(adopted.adopted());
    assert!(h.pins.map(NAT64_PREFIXES).exists(), "the new map is pinned");
    assert_eq!(
        MapWriter::open(&h.pins).unwrap().current().deny_v4.len(),
        1,
        "the adopted bans are kept"
    );
    write_prefixes(&h.pins, &policy(with_prefix)).unwrap();
    adopted.attach_cgroup(cg.path(), &CgroupHook::ALL).unwrap();
    let probe = Probe::new().cgroup(cg.path()).netns(ns.name());
    assert_eq!(probe.run("tcp", "[2001:db8:64::a4d:2]:0").result, "EPERM");
}

/// Large loads go in through `BPF_MAP_UPDATE_BATCH` (in chunks of 8192):
/// every address and its rule land, for both families, a banned one is
/// refused at once, and a later diff (one by one) changes exactly what it
/// must.
#[test]
fn a_large_load_in_batches_lands_whole_and_enforces() {
    let cg = CgroupGuard::new("bt");
    let ns = NetnsGuard::new("bt");
    ns.add_lo_addr("10.77.0.2/32");
    let mut h = Harness::new("bt", &cg, r#"{"version":1}"#, &CgroupHook::ALL);
    let many = |extra: &str| {
        let mut list: Vec<String> = (0..20_000u32)
            .map(|i| format!("\"100.{}.{}.{}\"", 64 + i / 65536, (i / 256) % 256, i % 256))
            .collect();
        list.extend((0..9_000u32).map(|i| format!("\"2001:db8:ba::{i:x}/128\"")));
        list.push(format!("\"{extra}\""));
        format!(r#"{{"version":1,"deny":{{"cidrs":[{}]}}}}"#, list.join(","))
    };
    let (desired, _) = compile(&policy(&many("10.77.0.2")).into(), &Default::default());
    let applied = h.writer.apply(&desired).unwrap();
    assert_eq!(applied.upserts, 29_001);
    assert_eq!(MapWriter::open(&h.pins).unwrap().current(), desired);
    let probe = Probe::new().cgroup(cg.path()).netns(ns.name());
    assert_eq!(probe.run("tcp", "10.77.0.2:0").result, "EPERM");
    let (desired, _) = compile(&policy(&many("10.9.9.9")).into(), &Default::default());
    let applied = h.writer.apply(&desired).unwrap();
    assert_eq!((applied.upserts, applied.removes), (1, 1));
    assert_eq!(MapWriter::open(&h.pins).unwrap().current(), desired);
    assert_ne!(probe.run("tcp", "10.77.0.2:0").result, "EPERM");
}
