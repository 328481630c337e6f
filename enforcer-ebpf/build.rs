use which::which;

/// Building this crate needs `bpf-linker` on PATH; cargo cannot express that as a dependency, so
/// rebuild whenever the linker binary changes (for example when `cargo xtask setup` rebuilds it
/// against a new nightly).
fn main() {
    let bpf_linker =
        which("bpf-linker").expect("bpf-linker not found on PATH: run `cargo xtask setup` first");
    println!("cargo:rerun-if-changed={}", bpf_linker.display());
}
