//! The reference token authority as a library: the binary
//! (`authtoken-server`) is its command line, and the fuzz targets reach
//! every parser of outside input through it.

#![forbid(unsafe_code)]

pub mod admission;
pub mod authority;
pub mod device;
pub mod directory;
pub mod enroll;
pub mod enrollment;
pub mod error;
pub mod event;
pub mod files;
pub mod handlers;
pub mod http;
pub mod metrics;
pub mod nonce;
pub mod pgaccess;
pub mod pgstore;
pub mod proto;
pub mod replica;
pub mod server;
pub mod shared;
pub mod store;
pub mod store_location;
pub mod throttle;
pub mod tls;
