//! glibc dlopens `libnss_authtoken.so.2`: give the library that soname.
fn main() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libnss_authtoken.so.2");
    }
}
