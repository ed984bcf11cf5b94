//! Tells the tests where the workspace's binaries and the module are: the
//! profile directory of the shared target dir (OUT_DIR is
//! `<target>/<profile>/build/<pkg>-<hash>/out`). They are built by
//! `cargo build --workspace`, which scripts/test.sh runs first.
fn main() {
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let profile_dir = out
        .ancestors()
        .nth(3)
        .expect("OUT_DIR is <target>/<profile>/build/<pkg>/out");
    println!(
        "cargo:rustc-env=AUTHTOKEN_BIN_DIR={}",
        profile_dir.display()
    );
    println!("cargo:rerun-if-changed=build.rs");
}
