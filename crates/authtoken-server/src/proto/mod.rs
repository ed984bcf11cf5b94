//! The server halves of the protocols: what only an authority does. The
//! client halves they pair with live in `authtoken-protocol`.

pub mod digest;
pub mod hem;
pub mod mdm;
pub mod rest;
pub mod scram;
