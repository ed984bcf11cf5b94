//! Which PAM library the module is built for. macOS and FreeBSD have
//! OpenPAM; Linux has Linux-PAM, or OpenPAM's own build for the tests
//! (feature `openpam`, found through `OPENPAM_PREFIX`). Code that differs
//! by library says `#[cfg(openpam)]`, so the OpenPAM build on Linux runs
//! exactly what macOS and FreeBSD compile.
use std::path::Path;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(openpam)");
    println!("cargo::rerun-if-env-changed=OPENPAM_PREFIX");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let feature = std::env::var_os("CARGO_FEATURE_OPENPAM").is_some();
    if feature || os == "macos" || os == "freebsd" {
        println!("cargo::rustc-cfg=openpam");
    }
    if feature && os == "linux" {
        // Linux-PAM's libpam.so.0 and OpenPAM's libpam.so.2 must never be
        // in one process: link OpenPAM's, found first, and find it again
        // at run time without the system's.
        let Some(prefix) = std::env::var_os("OPENPAM_PREFIX") else {
            println!(
                "cargo::error=feature openpam on Linux needs OPENPAM_PREFIX, OpenPAM's install prefix"
            );
            return;
        };
        let lib = Path::new(&prefix).join("lib");
        if !lib.join("libpam.so.2").exists() {
            println!(
                "cargo::error=OPENPAM_PREFIX: no OpenPAM at {} (libpam.so.2 missing)",
                lib.display()
            );
            return;
        }
        println!("cargo::rustc-link-search=native={}", lib.display());
        println!("cargo::rustc-link-arg=-Wl,-rpath,{}", lib.display());
        println!(
            "cargo::rustc-env=OPENPAM_HEADERS={}",
            Path::new(&prefix).join("include/security").display()
        );
    }
}
