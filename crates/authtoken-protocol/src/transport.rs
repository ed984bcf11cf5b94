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

/// One request to the authority: what every driver sends.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a str,
    /// Appended to the authority's URL (empty: the URL itself, MDM's
    /// `CheckInURL`).
    pub path: &'a str,
    pub content_type: Option<&'a str>,
    /// An `Authorization` header (HTTP Basic, for the `rest` backend's
    /// Deki flavor).
    pub authorization: Option<&'a str>,
    /// `None` sends no body (GET).
    pub body: Option<&'a [u8]>,
}

impl<'a> Request<'a> {
    /// `method path`, nothing else yet.
    pub fn new(method: &'a str, path: &'a str) -> Request<'a> {
        Request {
            method,
            path,
            content_type: None,
            authorization: None,
            body: None,
        }
    }

    /// With a body of `content_type`.
    pub fn with_body(self, content_type: &'a str, body: &'a [u8]) -> Request<'a> {
        Request {
            content_type: Some(content_type),
            body: Some(body),
            ..self
        }
    }

    /// With an `Authorization` header.
    pub fn authorized(self, authorization: &'a str) -> Request<'a> {
        Request {
            authorization: Some(authorization),
            ..self
        }
    }
}

/// Sends one request to the authority: the drivers' only way out. The
/// drivers are blocking: each calls `send` and waits for the reply (they
/// are not state machines); what makes them testable without a network is
/// that the transport, the randomness and the clock are all passed in.
pub trait Transport {
    fn send(&mut self, request: &Request<'_>) -> Result<Reply, TransportFailure>;

    /// What binds a login to the connection the last request went on
    /// (SCRAM-SHA-256-PLUS): `None` for a transport without TLS or that
    /// cannot tell.
    fn channel_bindings(&self) -> Option<crate::channel_binding::Bindings> {
        None
    }
}
