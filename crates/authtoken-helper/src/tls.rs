//! The helper's TLS under ureq: rustls on ring through a connector of our
//! own, because a login bound to its connection (SCRAM-SHA-256-PLUS,
//! docs/PROTOCOL.md) needs two things ureq's connector keeps to itself:
//! the connection's exporter and the server's certificate. The same
//! connector enforces the rule that both steps of a handshake go on one
//! connection: once held, no new connection is opened.

use std::io::{Read as _, Write as _};
use std::sync::{Arc, Mutex, MutexGuard};

use authtoken_protocol::channel_binding::{
    server_end_point, Bindings, EXPORTER_LABEL, EXPORTER_LEN,
};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, ProtocolVersion, StreamOwned};
use ureq::unversioned::transport::{
    Buffers, ConnectionDetails, Connector, Either, LazyBuffers, NextTimeout, Transport,
    TransportAdapter,
};

/// What the agent's connections were, shared by the connector (which
/// writes) and the handshake driver (which reads and holds).
#[derive(Debug, Default)]
pub struct Connections(Mutex<ConnectionState>);

#[derive(Debug, Default)]
struct ConnectionState {
    /// The bindings of the newest connection: `None` before any, and
    /// empty ones for plain http.
    newest: Option<Bindings>,
    /// No further connection may be opened.
    held: bool,
}

impl Connections {
    fn state(&self) -> MutexGuard<'_, ConnectionState> {
        // A poisoned lock only means a panic elsewhere mid-update of plain
        // data; the helper is single-threaded and exits on panic anyway.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The bindings of the connection the last request went on.
    pub fn newest(&self) -> Option<Bindings> {
        self.state().newest.clone()
    }

    /// From now on every request must reuse the open connection.
    pub fn hold(&self) {
        self.state().held = true;
    }
}

/// First in the chain: refuses to open a connection once they are held.
#[derive(Debug)]
pub struct Gate(pub Arc<Connections>);

impl Connector<()> for Gate {
    type Out = ();

    fn connect(&self, _: &ConnectionDetails, _: Option<()>) -> Result<Option<()>, ureq::Error> {
        if self.0.state().held {
            return Err(ureq::Error::Io(std::io::Error::other(
                "the connection to the authority closed between the two steps; \
                 a login does not start over on another",
            )));
        }
        Ok(None)
    }
}

/// Last in the chain: TLS for https, and a record of every connection.
#[derive(Debug)]
pub struct BindingTls {
    pub config: Arc<ClientConfig>,
    pub connections: Arc<Connections>,
}

impl<In: Transport> Connector<In> for BindingTls {
    type Out = Either<In, TlsTransport>;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        let Some(transport) = chained else {
            return Ok(None);
        };
        if !details.needs_tls() || transport.is_tls() {
            self.connections.state().newest = Some(Bindings::default());
            return Ok(Some(Either::A(transport)));
        }
        let host = details
            .uri
            .authority()
            .map(|a| a.host())
            .ok_or(ureq::Error::Tls("no host to verify"))?;
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let name = ServerName::try_from(host.to_owned())
            .map_err(|_| ureq::Error::Tls("not a DNS name or IP address"))?;
        let mut conn = ClientConnection::new(self.config.clone(), name)?;
        let mut socket = TransportAdapter::new(transport.boxed(), details.current_time.clone());
        socket.set_timeout(details.timeout);
        conn.complete_io(&mut socket).map_err(handshake_failure)?;
        self.connections.state().newest = Some(bindings_of(&conn));
        Ok(Some(Either::B(TlsTransport {
            buffers: LazyBuffers::new(
                details.config.input_buffer_size(),
                details.config.output_buffer_size(),
            ),
            stream: StreamOwned::new(conn, socket),
        })))
    }
}

/// RFC 9266 `tls-exporter` on TLS 1.3 (undefined without the extended
/// master secret on 1.2, so not offered there) and RFC 5929
/// `tls-server-end-point` of the certificate the server presented.
fn bindings_of(conn: &ClientConnection) -> Bindings {
    let exporter = (conn.protocol_version() == Some(ProtocolVersion::TLSv1_3))
        .then(|| {
            conn.export_keying_material([0u8; EXPORTER_LEN], EXPORTER_LABEL, Some(&[]))
                .ok()
        })
        .flatten()
        .map(|value| value.to_vec());
    let end_point = conn
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(|leaf| server_end_point(leaf.as_ref()));
    Bindings {
        exporter,
        end_point,
    }
}

/// A failed handshake is a connect-phase failure (the next authority is
/// tried), with rustls's reason when it gave one.
fn handshake_failure(error: std::io::Error) -> ureq::Error {
    let is_rustls = error
        .get_ref()
        .is_some_and(|inner| inner.is::<rustls::Error>());
    if !is_rustls {
        return ureq::Error::from(error);
    }
    match error
        .into_inner()
        .and_then(|inner| inner.downcast::<rustls::Error>().ok())
    {
        Some(reason) => ureq::Error::Rustls(*reason),
        None => ureq::Error::Tls("TLS handshake failed"),
    }
}

/// An established TLS connection, as ureq reads and writes it.
pub struct TlsTransport {
    buffers: LazyBuffers,
    stream: StreamOwned<ClientConnection, TransportAdapter>,
}

impl std::fmt::Debug for TlsTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsTransport")
    }
}

impl Transport for TlsTransport {
    fn buffers(&mut self) -> &mut dyn Buffers {
        &mut self.buffers
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        self.stream.get_mut().set_timeout(timeout);
        let output = &self.buffers.output()[..amount];
        self.stream.write_all(output)?;
        Ok(())
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        self.stream.get_mut().set_timeout(timeout);
        let input = self.buffers.input_append_buf();
        let amount = self.stream.read(input)?;
        self.buffers.input_appended(amount);
        Ok(amount > 0)
    }

    fn is_open(&mut self) -> bool {
        self.stream.get_mut().get_mut().is_open()
    }

    fn is_tls(&self) -> bool {
        true
    }
}
