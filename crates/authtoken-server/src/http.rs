//! Serving over HTTP/1.1 (TLS or loopback plain HTTP): the accept loop, the
//! TLS handshake and what it tells about the peer (its device certificate,
//! its channel bindings), one connection's requests with their deadlines,
//! and the metrics listener. Who is let in is [`crate::admission`]'s; what
//! each request is answered, [`crate::handlers`]'.
//!
//! Limits, so that no one source can crowd out the others:
//! * at most [`Limits::max_connections`] connections, derived at start from
//!   the descriptor limit (less [`FD_HEADROOM`] for the listeners, the store,
//!   the replay record and the logs), never more than [`MAX_CONNECTIONS`];
//! * at most `per_source` from one source (an IPv4 address, or an IPv6 /64,
//!   which one machine usually holds whole), and only
//!   [`PER_SOURCE_WHEN_BUSY`] once more than half of all slots are taken;
//! * when every slot is taken, a new connection closes the connection that
//!   has been idle the longest (no request in flight) instead of being
//!   refused, so a flood of idle connections cannot keep a login out;
//! * a failed `accept` (out of descriptors, say) is logged, counted, backed
//!   off and survived, never the end of the server;
//! * a TLS handshake, a request's headers, and its body each have
//!   [`REQUEST_DEADLINE`]; a keep-alive connection idle for [`IDLE_TIMEOUT`]
//!   is closed.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::Request;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::admission::{AcceptBackoff, Activity, Admission, Limits, Slots, REQUEST_DEADLINE};
use crate::handlers::{handle_hem, handle_mdm, handle_rest, log_line, reply, Exchange, Service};
use crate::metrics::Metrics;
use crate::proto::scram::{ConnectionBindings, EndPoint};
use authtoken_protocol::channel_binding::EXPORTER_LABEL;

/// A keep-alive connection with no request for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(15);

/// TLS for [`serve`]: the acceptor, and the `tls-server-end-point` of the
/// certificate it presents.
#[derive(Clone)]
pub struct Tls {
    pub acceptor: TlsAcceptor,
    pub end_point: Option<EndPoint>,
}

/// Serves `service` on `listener` within `limits`.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Tls>,
    service: Arc<Service>,
    metrics: Arc<Metrics>,
    limits: Limits,
) -> std::io::Result<()> {
    let slots = Slots::new(limits);
    let next_id = AtomicU64::new(1);
    let mut backoff = AcceptBackoff(AcceptBackoff::FIRST);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => {
                backoff.succeeded();
                accepted
            }
            Err(e) => {
                metrics.connection_refused("accept_failed");
                log_line(
                    0,
                    UNKNOWN_PEER,
                    "-",
                    &format!("accept failed: {e}; backing off"),
                );
                backoff.failed().await;
                continue;
            }
        };
        let conn = next_id.fetch_add(1, Ordering::Relaxed);
        let activity = Arc::new(Activity::default());
        activity.touch();
        let close = Arc::new(tokio::sync::Notify::new());
        let slot = match slots.admit(conn, peer.ip(), activity.clone(), close.clone()) {
            Ok((slot, Admission::Admitted)) => slot,
            Ok((slot, Admission::Evicted(idlest))) => {
                metrics.connection_refused("evicted_idle");
                log_line(idlest, peer, "-", "connection closed: idlest, to make room");
                slot
            }
            Err(reason) => {
                metrics.connection_refused(reason);
                log_line(0, peer, "-", &format!("connection refused: {reason}"));
                continue;
            }
        };
        let tls = tls.clone();
        let service = service.clone();
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let _ = stream.set_nodelay(true);
            let work = async move {
                match tls {
                    Some(Tls {
                        acceptor,
                        end_point,
                    }) => {
                        match tokio::time::timeout(REQUEST_DEADLINE, acceptor.accept(stream)).await
                        {
                            Ok(Ok(stream)) => {
                                let tls = stream.get_ref().1;
                                let device = device_identity(tls);
                                let channel = Some(ConnectionBindings {
                                    exporter: exporter(tls),
                                    end_point,
                                });
                                let at = Connection {
                                    conn,
                                    peer,
                                    device,
                                    channel,
                                    service,
                                    metrics,
                                };
                                at.serve(stream, activity).await
                            }
                            Ok(Err(e)) => {
                                log_line(conn, peer, "-", &format!("TLS handshake failed: {e}"))
                            }
                            Err(_) => {
                                metrics.connection_refused("tls_handshake_timeout");
                                log_line(conn, peer, "-", "TLS handshake timed out")
                            }
                        }
                    }
                    None => {
                        let at = Connection {
                            conn,
                            peer,
                            device: None,
                            channel: None,
                            service,
                            metrics,
                        };
                        at.serve(stream, activity).await
                    }
                }
            };
            tokio::select! {
                _ = work => {}
                _ = close.notified() => {}
            }
        });
    }
}

/// For log lines about no connection in particular.
const UNKNOWN_PEER: SocketAddr = SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0);

/// RFC 9266 `tls-exporter` of a TLS 1.3 connection (on 1.2 it would need
/// the extended master secret checked, so it is not offered there).
fn exporter(tls: &rustls::ServerConnection) -> Option<[u8; 32]> {
    if tls.protocol_version() != Some(rustls::ProtocolVersion::TLSv1_3) {
        return None;
    }
    tls.export_keying_material([0u8; 32], EXPORTER_LABEL, Some(&[]))
        .ok()
}

/// The SHA-256 of the client certificate rustls verified against
/// `--client-ca` (none is asked for without it).
fn device_identity(tls: &rustls::ServerConnection) -> Option<[u8; 32]> {
    let leaf = tls.peer_certificates()?.first()?;
    ring::digest::digest(&ring::digest::SHA256, leaf.as_ref())
        .as_ref()
        .try_into()
        .ok()
}

/// Serves `GET /metrics` and `GET /ready` (200, or 503 while a PostgreSQL
/// store is away) on its own listener.
pub async fn serve_metrics(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    service: Arc<Service>,
) -> std::io::Result<()> {
    let mut backoff = AcceptBackoff(AcceptBackoff::FIRST);
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => {
                backoff.succeeded();
                stream
            }
            Err(_) => {
                backoff.failed().await;
                continue;
            }
        };
        let metrics = metrics.clone();
        let service = service.clone();
        tokio::spawn(async move {
            let handler = hyper::service::service_fn(move |request: Request<Incoming>| {
                let metrics = metrics.clone();
                let ready = service.ready();
                async move {
                    let response = match request.uri().path() {
                        "/metrics" => reply(
                            200,
                            metrics.render().into_bytes(),
                            Some("text/plain; version=0.0.4"),
                            None,
                            None,
                            None,
                        ),
                        "/ready" if ready => {
                            reply(200, b"ready\n".to_vec(), None, None, None, None)
                        }
                        "/ready" => {
                            reply(503, b"store unavailable\n".to_vec(), None, None, None, None)
                        }
                        _ => reply(404, Vec::new(), None, None, None, None),
                    };
                    Ok::<_, Infallible>(response)
                }
            });
            let _ = tokio::time::timeout(
                REQUEST_DEADLINE,
                hyper::server::conn::http1::Builder::new()
                    .keep_alive(false)
                    .serve_connection(TokioIo::new(stream), handler),
            )
            .await;
        });
    }
}

/// A stream that records when it last read something.
struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// One accepted connection.
struct Connection {
    conn: u64,
    peer: SocketAddr,
    device: Option<[u8; 32]>,
    channel: Option<ConnectionBindings>,
    service: Arc<Service>,
    metrics: Arc<Metrics>,
}

/// Decrements the in-flight count when a request's answer is done.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Connection {
    async fn serve<S>(self, stream: S, activity: Arc<Activity>)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let io = TokioIo::new(Watched {
            inner: stream,
            activity: activity.clone(),
        });
        let Connection {
            conn,
            peer,
            device,
            channel,
            service,
            metrics,
        } = self;
        let watched = activity.clone();
        let handler = hyper::service::service_fn(move |request| {
            let service = service.clone();
            let metrics = metrics.clone();
            watched.in_flight.fetch_add(1, Ordering::Relaxed);
            let in_flight = InFlight(watched.clone());
            async move {
                let _in_flight = in_flight;
                let at = Exchange {
                    conn,
                    peer,
                    device,
                    channel,
                    metrics: &metrics,
                    started: Instant::now(),
                };
                let response = match &*service {
                    Service::Mdm(authority) => handle_mdm(request, &at, authority).await,
                    Service::Hem(device) => handle_hem(request, &at, device).await,
                    Service::Rest { .. } => handle_rest(request, &at, service.clone()).await,
                };
                Ok::<_, Infallible>(response)
            }
        });
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(REQUEST_DEADLINE)
            .keep_alive(true)
            .serve_connection(io, handler);
        tokio::pin!(connection);
        let idle = async {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if activity.idle_for().is_some_and(|idle| idle >= IDLE_TIMEOUT) {
                    break;
                }
            }
        };
        tokio::select! {
            _ = &mut connection => {}
            _ = idle => log_line(conn, peer, "-", "connection closed: idle"),
        }
    }
}
