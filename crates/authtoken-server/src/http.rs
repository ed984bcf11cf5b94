//! Serving over HTTP/1.1 (TLS or loopback plain HTTP): MDM `UserAuthenticate`
//! check-ins or the emulated device's `/api/auth/token`, with connection and
//! request limits, answer delays, metrics, and one access-log line per
//! request.
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

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use authtoken_protocol::mdm::CONTENT_TYPE;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use authtoken_core::kinds::RestFlavor;
use zeroize::Zeroizing;

use crate::authority::{Answer, Authority, Event, Origin, PasswordCheck};
use crate::device::Device;
use crate::metrics::Metrics;
use crate::proto::mdm::parse_request;
use crate::proto::rest;
use crate::proto::scram::{ConnectionBindings, EndPoint};
use authtoken_protocol::channel_binding::EXPORTER_LABEL;

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Most connections open at once, whatever the descriptor limit allows.
pub const MAX_CONNECTIONS: usize = 4096;
/// Descriptors kept free of connections: the listeners, the store and TLS
/// files on reload, the replay directory, the logs, and a margin.
pub const FD_HEADROOM: usize = 64;
/// Most connections from one source address, unless `serve
/// --per-address-connections` says otherwise.
pub const PER_SOURCE: usize = 32;
/// Most connections from one source address once the server is half full.
pub const PER_SOURCE_WHEN_BUSY: usize = 4;
/// Deadline of a TLS handshake, of a request's headers, and of its body.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(10);
/// A keep-alive connection with no request for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(15);

/// What this server is.
pub enum Service {
    /// An MDM check-in endpoint (`UserAuthenticate`).
    Mdm(Authority),
    /// An emulated token device (`/api/auth/token`).
    Hem(Device),
    /// A `rest` token API (seeds 002, 003) over the same user store; the
    /// semaphore bounds the password derivations running at once.
    Rest {
        authority: Authority,
        flavor: RestFlavor,
        derivations: tokio::sync::Semaphore,
    },
}

/// The connection caps in force.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub per_source: usize,
}

impl Limits {
    /// Caps from the descriptor limit: the soft limit is first raised to
    /// the hard one (what systemd's `LimitNOFILE` sets), then every
    /// descriptor but [`FD_HEADROOM`] may be a connection, up to
    /// [`MAX_CONNECTIONS`].
    pub fn from_descriptor_limit(per_source: usize) -> Limits {
        use nix::sys::resource::{getrlimit, setrlimit, Resource};
        let soft = match getrlimit(Resource::RLIMIT_NOFILE) {
            Ok((soft, hard)) if soft < hard => setrlimit(Resource::RLIMIT_NOFILE, hard, hard)
                .map(|()| hard)
                .unwrap_or(soft),
            Ok((soft, _)) => soft,
            Err(_) => 1024,
        };
        Limits::for_descriptors(soft, per_source)
    }

    /// `descriptors` is an `rlim_t`: u64 on Linux and macOS, i64 on FreeBSD.
    fn for_descriptors(descriptors: libc::rlim_t, per_source: usize) -> Limits {
        let usable = usize::try_from(descriptors)
            .unwrap_or(usize::MAX)
            .saturating_sub(FD_HEADROOM);
        let max_connections = usable.clamp(8, MAX_CONNECTIONS);
        Limits {
            max_connections,
            per_source: per_source.clamp(1, max_connections),
        }
    }
}

/// Where a connection comes from, for the per-source caps: an IPv4
/// address, or the /64 of an IPv6 one (a single host is usually given a
/// whole /64, so counting its addresses one by one would give it 2^64
/// shares).
pub fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(std::net::Ipv6Addr::from(
                u128::from(v6) & !((1u128 << 64) - 1),
            )),
        },
    }
}

/// One open connection, as the slots see it.
struct Open {
    source: IpAddr,
    activity: Arc<Activity>,
    close: Arc<tokio::sync::Notify>,
}

#[derive(Default)]
struct Registry {
    open: HashMap<u64, Open>,
    per_source: HashMap<IpAddr, usize>,
}

impl Registry {
    fn remove(&mut self, id: u64) -> Option<Open> {
        let open = self.open.remove(&id)?;
        if let Some(count) = self.per_source.get_mut(&open.source) {
            *count -= 1;
            if *count == 0 {
                self.per_source.remove(&open.source);
            }
        }
        Some(open)
    }
}

/// Open connections, in all and per source.
struct Slots {
    registry: Mutex<Registry>,
    limits: Limits,
}

/// One admitted connection's slot, given back on drop.
struct Slot {
    slots: Arc<Slots>,
    id: u64,
}

/// Why a connection was not admitted as it was.
#[derive(Debug, PartialEq, Eq)]
enum Admission {
    Admitted,
    /// Admitted in the place of this idle connection, which is told to close.
    Evicted(u64),
}

impl Slots {
    fn new(limits: Limits) -> Arc<Slots> {
        Arc::new(Slots {
            registry: Mutex::default(),
            limits,
        })
    }

    fn admit(
        self: &Arc<Self>,
        id: u64,
        source: IpAddr,
        activity: Arc<Activity>,
        close: Arc<tokio::sync::Notify>,
    ) -> Result<(Slot, Admission), &'static str> {
        let source = source_key(source);
        let mut registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        let total = registry.open.len();
        let limit = if total > self.limits.max_connections / 2 {
            PER_SOURCE_WHEN_BUSY.min(self.limits.per_source)
        } else {
            self.limits.per_source
        };
        if registry.per_source.get(&source).copied().unwrap_or(0) >= limit {
            return Err("per_source");
        }
        let mut admission = Admission::Admitted;
        if total >= self.limits.max_connections {
            let idlest = registry
                .open
                .iter()
                .filter(|(_, open)| open.activity.in_flight.load(Ordering::Relaxed) == 0)
                .min_by_key(|(_, open)| open.activity.last_read_ms.load(Ordering::Relaxed))
                .map(|(id, _)| *id)
                .ok_or("server_full")?;
            if let Some(evicted) = registry.remove(idlest) {
                evicted.close.notify_one();
            }
            admission = Admission::Evicted(idlest);
        }
        *registry.per_source.entry(source).or_insert(0) += 1;
        registry.open.insert(
            id,
            Open {
                source,
                activity,
                close,
            },
        );
        Ok((
            Slot {
                slots: self.clone(),
                id,
            },
            admission,
        ))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots
            .registry
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(self.id);
    }
}

/// Waits after a failed `accept`: 10 ms, doubling to 1 s while failures
/// go on, so a server out of descriptors neither spins nor exits.
struct AcceptBackoff(Duration);

impl AcceptBackoff {
    const FIRST: Duration = Duration::from_millis(10);
    const LONGEST: Duration = Duration::from_secs(1);

    async fn failed(&mut self) {
        tokio::time::sleep(self.0).await;
        self.0 = (self.0 * 2).min(Self::LONGEST);
    }

    fn succeeded(&mut self) {
        self.0 = Self::FIRST;
    }
}

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

impl Service {
    /// Whether logins can be served: a PostgreSQL store that is away is
    /// not ready (`GET /ready`).
    pub fn ready(&self) -> bool {
        match self {
            Service::Mdm(authority) | Service::Rest { authority, .. } => authority.ready(),
            Service::Hem(_) => true,
        }
    }
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

/// The clock every connection's activity is measured on, so that the
/// idlest connection can be found.
fn monotonic_ms() -> u64 {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// The last moment a connection read anything, and whether a request is
/// being answered: what the idle timeout and eviction look at.
#[derive(Default)]
struct Activity {
    last_read_ms: AtomicU64,
    in_flight: AtomicUsize,
}

impl Activity {
    fn touch(&self) {
        self.last_read_ms.store(monotonic_ms(), Ordering::Relaxed);
    }

    fn idle_for(&self) -> Option<Duration> {
        (self.in_flight.load(Ordering::Relaxed) == 0).then(|| {
            Duration::from_millis(
                monotonic_ms().saturating_sub(self.last_read_ms.load(Ordering::Relaxed)),
            )
        })
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

/// One access-log line on stderr, in one write: `eprintln!` on unbuffered
/// stderr issues a system call per formatted piece, which the profile
/// showed as a large share of the server's time per handshake.
fn log_line(conn: u64, peer: SocketAddr, user: &str, event: &str) {
    use std::io::Write as _;
    let line = format!(
        "request conn={conn} peer={peer} user={} {event}\n",
        authtoken_core::log::quote(user)
    );
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

fn reply(
    status: u16,
    body: Vec<u8>,
    content_type: Option<&'static str>,
    retry_after: Option<u64>,
    etag: Option<&str>,
    set_cookie: Option<&str>,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Some(kind) = content_type {
        response.headers_mut().insert(
            "Content-Type",
            hyper::header::HeaderValue::from_static(kind),
        );
    }
    if let Some(seconds) = retry_after {
        response
            .headers_mut()
            .insert("Retry-After", hyper::header::HeaderValue::from(seconds));
    }
    if let Some(value) = etag.and_then(|tag| hyper::header::HeaderValue::from_str(tag).ok()) {
        response.headers_mut().insert("ETag", value);
    }
    if let Some(value) = set_cookie.and_then(|c| hyper::header::HeaderValue::from_str(c).ok()) {
        response.headers_mut().insert("Set-Cookie", value);
    }
    response
}

/// The media type of a request, lower-cased and without parameters.
fn media_type(request: &Request<Incoming>) -> Option<String> {
    media_type_of(request.headers().get("Content-Type")?.as_bytes())
}

/// The media type of a `Content-Type` value, lower-cased and without
/// parameters; `None` unless it is visible ASCII.
pub fn media_type_of(value: &[u8]) -> Option<String> {
    let value = hyper::header::HeaderValue::from_bytes(value).ok()?;
    let text = value.to_str().ok()?;
    Some(
        text.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase(),
    )
}

/// The body, capped in size and bounded by the request deadline (a body
/// sent a byte at a time ends there).
async fn read_body(request: Request<Incoming>) -> Result<Bytes, Answer> {
    let collect = Limited::new(request.into_body(), MAX_BODY_BYTES).collect();
    match tokio::time::timeout(REQUEST_DEADLINE, collect).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(_)) => Err(Answer::status(
            413,
            Event::Malformed,
            "body too large or broken",
        )),
        Err(_) => Err(Answer::status(408, Event::Malformed, "body too slow")),
    }
}

/// One request being answered.
struct Exchange<'a> {
    conn: u64,
    peer: SocketAddr,
    device: Option<[u8; 32]>,
    channel: Option<ConnectionBindings>,
    metrics: &'a Metrics,
    started: Instant,
}

impl Exchange<'_> {
    fn origin(&self) -> Origin {
        Origin {
            device: self.device,
            now_ms: unix_now_ms(),
            channel: self.channel,
        }
    }

    /// Waits out the answer's delay, logs it, counts it and turns it into
    /// a response.
    async fn respond(
        &self,
        answer: Answer,
        user: &str,
        step: &'static str,
    ) -> Response<Full<Bytes>> {
        if !answer.delay.is_zero() {
            tokio::time::sleep(answer.delay).await;
        }
        let elapsed = self.started.elapsed();
        self.metrics.answered(
            step,
            answer.event,
            answer.proof_evaluated,
            elapsed.as_secs_f64(),
        );
        log_line(
            self.conn,
            self.peer,
            user,
            // One record of key=value fields: the free text is one quoted
            // value, and `outcome` is the metrics' label of the same name.
            &format!(
                "step={step} status={} outcome={} reason={}{}{} elapsed_ms={}",
                answer.status,
                answer.event.name(),
                authtoken_core::log::quote(&answer.note),
                if answer.budget_spent {
                    " budget=spent"
                } else {
                    ""
                },
                answer
                    .token_sha256
                    .as_deref()
                    .map(|fp| format!(" token_sha256={fp}"))
                    .unwrap_or_default(),
                elapsed.as_millis()
            ),
        );
        reply(
            answer.status,
            answer.body,
            answer.content_type,
            answer.retry_after,
            answer.etag.as_deref(),
            answer.set_cookie.as_deref(),
        )
    }
}

use authtoken_core::clock::unix_millis as unix_now_ms;

async fn handle_mdm(
    request: Request<Incoming>,
    at: &Exchange<'_>,
    authority: &Authority,
) -> Response<Full<Bytes>> {
    if request.method() == Method::GET && request.uri().path().ends_with("/directory") {
        let held = request
            .headers()
            .get("If-None-Match")
            .and_then(|value| value.to_str().ok());
        let answer = authority.directory(at.origin(), held);
        return at.respond(answer, "-", "directory").await;
    }
    if request.method() != Method::PUT {
        let note = format!("method {}", request.method());
        return at
            .respond(Answer::status(405, Event::Malformed, note), "-", "request")
            .await;
    }
    if media_type(&request).as_deref() != Some(CONTENT_TYPE) {
        return at
            .respond(
                Answer::status(415, Event::Malformed, "wrong Content-Type"),
                "-",
                "request",
            )
            .await;
    }
    let body = match read_body(request).await {
        Ok(body) => body,
        Err(answer) => return at.respond(answer, "-", "request").await,
    };
    let checkin = match parse_request(&body) {
        Ok(checkin) => checkin,
        Err(e) => {
            return at
                .respond(
                    Answer::status(400, Event::Malformed, e.to_string()),
                    "-",
                    "request",
                )
                .await
        }
    };
    let step = if checkin.digest_response.is_some() {
        "response"
    } else {
        "challenge"
    };
    let answer = authority.handle(&checkin, at.origin()).await;
    at.respond(answer, &checkin.identity.short_name, step).await
}

async fn handle_hem(
    request: Request<Incoming>,
    at: &Exchange<'_>,
    device: &Device,
) -> Response<Full<Bytes>> {
    if request.uri().path() != authtoken_protocol::hem::TOKEN_PATH {
        let note = format!("path {}", request.uri().path());
        return at
            .respond(Answer::status(404, Event::Malformed, note), "-", "request")
            .await;
    }
    let now = unix_now_ms() / 1000;
    match *request.method() {
        Method::GET => at.respond(device.challenge(now), "-", "challenge").await,
        Method::POST => {
            if media_type(&request).as_deref() != Some("application/json") {
                let answer = Answer::status(400, Event::Malformed, "wrong Content-Type");
                return at.respond(answer, "-", "auth").await;
            }
            let answer = match read_body(request).await {
                Ok(body) => device.authenticate(&body, now),
                Err(answer) => answer,
            };
            at.respond(answer, "-", "auth").await
        }
        ref other => {
            let note = format!("method {other}");
            at.respond(Answer::status(405, Event::Malformed, note), "-", "request")
                .await
        }
    }
}

/// Who asked, with which password, and what the flavor asked for.
struct PasswordRequest {
    user: String,
    password: Zeroizing<Vec<u8>>,
    /// json-authenticate: the duration to answer with, if a token was asked for.
    duration: Option<u32>,
}

async fn handle_rest(
    request: Request<Incoming>,
    at: &Exchange<'_>,
    service: Arc<Service>,
) -> Response<Full<Bytes>> {
    let Service::Rest { flavor, .. } = &*service else {
        return reply(500, Vec::new(), None, None, None, None);
    };
    let flavor = *flavor;
    let step = flavor.name();
    if request.method() != Method::POST {
        let note = format!("method {}", request.method());
        return at
            .respond(Answer::status(405, Event::Malformed, note), "-", step)
            .await;
    }
    let asked = match flavor {
        RestFlavor::JsonAuthenticate => {
            if media_type(&request).as_deref() != Some("application/json") {
                let answer = Answer::status(415, Event::Malformed, "wrong Content-Type");
                return at.respond(answer, "-", step).await;
            }
            let body = match read_body(request).await {
                Ok(body) => body,
                Err(answer) => return at.respond(answer, "-", step).await,
            };
            match rest::parse_json_request(&body) {
                Ok(parsed) => PasswordRequest {
                    user: parsed.user,
                    password: Zeroizing::new(parsed.password.as_bytes().to_vec()),
                    duration: parsed.wants_token.then_some(parsed.duration),
                },
                Err(why) => {
                    let answer = Answer::status(400, Event::Malformed, why);
                    return at.respond(answer, "-", step).await;
                }
            }
        }
        RestFlavor::Deki => {
            let basic = request
                .headers()
                .get("Authorization")
                .and_then(|value| rest::parse_basic(value.as_bytes()));
            match basic {
                Some((user, password)) => PasswordRequest {
                    user,
                    password,
                    duration: Some(DEKI_TOKEN_SECONDS),
                },
                None => {
                    let answer = Answer::status(401, Event::Malformed, "no Basic credentials");
                    return at.respond(answer, "-", step).await;
                }
            }
        }
    };
    let origin = at.origin();
    let user = asked.user.clone();
    let checked = {
        let service = service.clone();
        tokio::task::spawn_blocking(move || {
            let Service::Rest {
                authority,
                derivations,
                ..
            } = &*service
            else {
                return None;
            };
            // At most one derivation per core at a time; the rest wait.
            let runtime = tokio::runtime::Handle::current();
            let _permit = runtime.block_on(derivations.acquire()).ok()?;
            Some((
                runtime.block_on(authority.check_password(&asked.user, &asked.password, origin)),
                authority.failure_delay(),
            ))
        })
        .await
    };
    let Ok(Some((checked, failure_delay))) = checked else {
        let answer = Answer::status(500, Event::Failed, "password check failed");
        return at.respond(answer, &user, step).await;
    };
    let answer = rest_answer(
        flavor,
        checked,
        asked.duration,
        failure_delay,
        origin.now_ms,
    );
    at.respond(answer, &user, step).await
}

/// How long a Deki token lives here (the API has no way to ask): the
/// json-authenticate default, said in the cookie's `Expires`.
const DEKI_TOKEN_SECONDS: u32 = authtoken_core::kinds::DEFAULT_TOKEN_DURATION;

/// The flavor's answer to a checked password.
fn rest_answer(
    flavor: RestFlavor,
    checked: PasswordCheck,
    duration: Option<u32>,
    failure_delay: Duration,
    now_ms: u64,
) -> Answer {
    match checked {
        PasswordCheck::Token { token, fingerprint } => {
            let note = match duration {
                Some(seconds) => format!("token issued for {seconds} s"),
                None => "credentials verified, no token asked for".to_owned(),
            };
            let mut answer = match flavor {
                RestFlavor::JsonAuthenticate => {
                    Answer::json(rest::json_success(&token, duration), Event::Token, note)
                }
                RestFlavor::Deki => {
                    let expires = std::time::UNIX_EPOCH
                        + Duration::from_millis(now_ms)
                        + Duration::from_secs(u64::from(DEKI_TOKEN_SECONDS));
                    Answer {
                        body: token.as_bytes().to_vec(),
                        content_type: Some("text/plain; charset=utf-8"),
                        set_cookie: Some(format!(
                            "authtoken=\"{}\"; Expires={}; Path=/; Secure; HttpOnly",
                            token.as_str(),
                            httpdate::fmt_http_date(expires)
                        )),
                        ..Answer::status(200, Event::Token, note)
                    }
                }
            };
            if duration.is_some() {
                answer.token_sha256 = Some(fingerprint);
            }
            answer.proof_evaluated = true;
            answer
        }
        PasswordCheck::Rejected { budget_spent } => {
            let base = match flavor {
                RestFlavor::JsonAuthenticate => Answer::json(
                    rest::json_failure("invalid credentials", 1),
                    Event::Rejected,
                    "rejected: wrong password",
                ),
                RestFlavor::Deki => Answer {
                    body: b"Login has failed".to_vec(),
                    content_type: Some("text/plain; charset=utf-8"),
                    ..Answer::status(401, Event::Rejected, "rejected: wrong password")
                },
            };
            Answer {
                delay: failure_delay,
                proof_evaluated: true,
                budget_spent,
                ..base
            }
        }
        PasswordCheck::Throttled { retry_after_secs } => Answer {
            retry_after: Some(retry_after_secs),
            ..Answer::status(
                429,
                Event::Throttled,
                format!("throttled: retry after {retry_after_secs} s"),
            )
        },
        PasswordCheck::Unavailable => Answer {
            retry_after: Some(1),
            ..Answer::status(503, Event::StoreDown, "store unavailable")
        },
        PasswordCheck::Failed(why) => Answer::status(500, Event::Failed, why),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv6_source_is_its_slash_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff:1:2:3".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(source_key(a), source_key(b));
        assert_ne!(source_key(a), source_key(c));
        let mapped: IpAddr = "::ffff:127.0.0.5".parse().unwrap();
        assert_eq!(source_key(mapped), IpAddr::from([127, 0, 0, 5]));
        assert_eq!(
            source_key(IpAddr::from([10, 1, 2, 3])),
            IpAddr::from([10, 1, 2, 3])
        );
    }

    #[test]
    fn caps_follow_the_descriptor_limit() {
        let l = Limits::for_descriptors(1024, 32);
        assert_eq!(l.max_connections, 1024 - FD_HEADROOM);
        assert_eq!(l.per_source, 32);
        assert_eq!(
            Limits::for_descriptors(1 << 20, 32).max_connections,
            MAX_CONNECTIONS
        );
        let tiny = Limits::for_descriptors(40, 32);
        assert_eq!((tiny.max_connections, tiny.per_source), (8, 8));
    }

    fn open(
        slots: &Arc<Slots>,
        id: u64,
        source: [u8; 4],
    ) -> Result<(Slot, Admission), &'static str> {
        let activity = Arc::new(Activity::default());
        activity.last_read_ms.store(id, Ordering::Relaxed);
        slots.admit(id, IpAddr::from(source), activity, Arc::default())
    }

    #[test]
    fn a_full_server_closes_its_idlest_connection_for_a_new_one() {
        let slots = Slots::new(Limits {
            max_connections: 4,
            per_source: 4,
        });
        let held: Vec<_> = (1..=4)
            .map(|i| open(&slots, i, [127, 0, 0, i as u8]).unwrap().0)
            .collect();
        // Connection 1 is busy: the idlest idle one is 2.
        slots.registry.lock().unwrap().open[&1]
            .activity
            .in_flight
            .store(1, Ordering::Relaxed);
        let (_new, admission) = open(&slots, 5, [127, 0, 0, 9]).unwrap();
        assert_eq!(admission, Admission::Evicted(2));
        assert_eq!(slots.registry.lock().unwrap().open.len(), 4);
        drop(held);
        assert_eq!(
            slots.registry.lock().unwrap().open.len(),
            1,
            "only the new one"
        );
    }

    #[test]
    fn a_full_server_of_busy_connections_refuses() {
        let slots = Slots::new(Limits {
            max_connections: 2,
            per_source: 2,
        });
        let held: Vec<_> = (1..=2)
            .map(|i| open(&slots, i, [127, 0, 0, i as u8]).unwrap().0)
            .collect();
        for open in slots.registry.lock().unwrap().open.values() {
            open.activity.in_flight.store(1, Ordering::Relaxed);
        }
        assert_eq!(open(&slots, 3, [127, 0, 0, 3]).err(), Some("server_full"));
        drop(held);
    }
}
