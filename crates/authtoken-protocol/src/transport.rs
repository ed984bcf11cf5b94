//! What a backend driver needs from the network: one request to the
//! authority at a time. The helper implements it over HTTPS (with its
//! failover between authorities); unit tests implement it with scripted
//! replies. Both drivers, MDM's and HEM's, speak through it.

/// One HTTP reply.
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
}

/// Why a request got no reply, described safely for a log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportFailure {
    /// No authority could be connected to (refused, name not found,
    /// connect timeout, TLS handshake).
    Unreachable(String),
    /// Connected, but no usable reply (timeout, oversized body, reset).
    Failed(String),
}

/// Sends one request to the authority.
pub trait Transport {
    /// `path` is appended to the authority's URL (empty: the URL itself,
    /// MDM's `CheckInURL`).
    fn request(
        &mut self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: Option<&[u8]>,
    ) -> Result<Reply, TransportFailure>;
}
