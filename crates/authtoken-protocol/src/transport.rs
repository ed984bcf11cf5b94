//! What a backend driver needs from the network: one request to the
//! authority at a time. The helper implements it over HTTPS (with its
//! failover between authorities); unit tests implement it with scripted
//! replies. Every driver (MDM's, HEM's, the rest flavors') speaks through it.

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

    /// What binds a login to the connection the last request went on
    /// (SCRAM-SHA-256-PLUS): `None` for a transport without TLS or that
    /// cannot tell.
    fn channel_bindings(&self) -> Option<crate::channel_binding::Bindings> {
        None
    }

    /// The same with an `Authorization` header (HTTP Basic, for the `rest`
    /// backend's Deki flavor). A transport that cannot send one fails the
    /// request rather than send it without.
    fn request_authorized(
        &mut self,
        _method: &str,
        _path: &str,
        _authorization: &str,
        _content_type: Option<&str>,
        _body: Option<&[u8]>,
    ) -> Result<Reply, TransportFailure> {
        Err(TransportFailure::Failed(
            "this transport sends no Authorization header".to_owned(),
        ))
    }
}
