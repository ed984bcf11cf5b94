//! Serving over HTTP/1.1 (TLS or loopback plain HTTP): MDM `UserAuthenticate`
//! check-ins or the emulated device's `/api/auth/token`, with connection and
//! request limits, answer delays, metrics, and one access-log line per
//! request.
//!
//! Limits, so that no one source can crowd out the others:
//! * at most [`MAX_CONNECTIONS`] connections, at most [`PER_SOURCE`] from one
//!   address, and only [`PER_SOURCE_WHEN_BUSY`] once more than half of all
//!   slots are taken, which leaves room for new sources;
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

use crate::authority::{Answer, Authority, Event, Origin};
use crate::device::Device;
use crate::metrics::Metrics;
use crate::proto::mdm::parse_request;

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Most connections open at once.
pub const MAX_CONNECTIONS: usize = 1024;
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
}

/// Open connections, in all and per source address.
struct Slots {
    per_source: Mutex<HashMap<IpAddr, usize>>,
    per_source_limit: usize,
}

/// One admitted connection's slot, given back on drop.
struct Slot {
    slots: Arc<Slots>,
    source: IpAddr,
}

impl Slots {
    fn admit(self: &Arc<Self>, source: IpAddr) -> Result<Slot, &'static str> {
        let mut per_source = self.per_source.lock().unwrap_or_else(|p| p.into_inner());
        let total: usize = per_source.values().sum();
        if total >= MAX_CONNECTIONS {
            return Err("server_full");
        }
        let limit = if total > MAX_CONNECTIONS / 2 {
            PER_SOURCE_WHEN_BUSY.min(self.per_source_limit)
        } else {
            self.per_source_limit
        };
        let mine = per_source.entry(source).or_insert(0);
        if *mine >= limit {
            return Err("per_source");
        }
        *mine += 1;
        Ok(Slot {
            slots: self.clone(),
            source,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut per_source = self
            .slots
            .per_source
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(count) = per_source.get_mut(&self.source) {
            *count -= 1;
            if *count == 0 {
                per_source.remove(&self.source);
            }
        }
    }
}

/// Serves `service` on `listener`, admitting at most `per_source_limit`
/// connections from one address (while the server is less than half full).
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    service: Arc<Service>,
    metrics: Arc<Metrics>,
    per_source_limit: usize,
) -> std::io::Result<()> {
    let slots = Arc::new(Slots {
        per_source: Mutex::default(),
        per_source_limit,
    });
    let next_id = AtomicU64::new(1);
    loop {
        let (stream, peer) = listener.accept().await?;
        let slot = match slots.admit(peer.ip()) {
            Ok(slot) => slot,
            Err(reason) => {
                metrics.connection_refused(reason);
                log_line(0, peer, "-", &format!("connection refused: {reason}"));
                continue;
            }
        };
        let conn = next_id.fetch_add(1, Ordering::Relaxed);
        let tls = tls.clone();
        let service = service.clone();
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let _ = stream.set_nodelay(true);
            let at = Connection {
                conn,
                peer,
                service,
                metrics,
            };
            match tls {
                Some(acceptor) => {
                    match tokio::time::timeout(REQUEST_DEADLINE, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => at.serve(stream).await,
                        Ok(Err(e)) => {
                            log_line(conn, peer, "-", &format!("TLS handshake failed: {e}"))
                        }
                        Err(_) => {
                            at.metrics.connection_refused("tls_handshake_timeout");
                            log_line(conn, peer, "-", "TLS handshake timed out")
                        }
                    }
                }
                None => at.serve(stream).await,
            }
        });
    }
}

/// Serves `GET /metrics` on its own listener.
pub async fn serve_metrics(listener: TcpListener, metrics: Arc<Metrics>) -> std::io::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let handler = hyper::service::service_fn(move |request: Request<Incoming>| {
                let metrics = metrics.clone();
                async move {
                    let response = if request.uri().path() == "/metrics" {
                        reply(
                            200,
                            metrics.render().into_bytes(),
                            Some("text/plain; version=0.0.4"),
                            None,
                        )
                    } else {
                        reply(404, Vec::new(), None, None)
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

/// The last moment a connection read anything, and whether a request is
/// being answered: what the idle timeout looks at.
#[derive(Default)]
struct Activity {
    epoch: std::sync::OnceLock<Instant>,
    last_read_ms: AtomicU64,
    in_flight: AtomicUsize,
}

impl Activity {
    fn now_ms(&self) -> u64 {
        self.epoch.get_or_init(Instant::now).elapsed().as_millis() as u64
    }

    fn touch(&self) {
        self.last_read_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    fn idle_for(&self) -> Option<Duration> {
        (self.in_flight.load(Ordering::Relaxed) == 0).then(|| {
            Duration::from_millis(
                self.now_ms()
                    .saturating_sub(self.last_read_ms.load(Ordering::Relaxed)),
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
    async fn serve<S>(self, stream: S)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let activity = Arc::new(Activity::default());
        activity.touch();
        let io = TokioIo::new(Watched {
            inner: stream,
            activity: activity.clone(),
        });
        let Connection {
            conn,
            peer,
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
                    metrics: &metrics,
                    started: Instant::now(),
                };
                let response = match &*service {
                    Service::Mdm(authority) => handle_mdm(request, &at, authority).await,
                    Service::Hem(device) => handle_hem(request, &at, device).await,
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
    let line = format!("request conn={conn} peer={peer} user={user} {event}\n");
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

fn reply(
    status: u16,
    body: Vec<u8>,
    content_type: Option<&'static str>,
    retry_after: Option<u64>,
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
    response
}

/// The media type of a request, lower-cased and without parameters.
fn media_type(request: &Request<Incoming>) -> Option<String> {
    request
        .headers()
        .get("Content-Type")
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
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
    metrics: &'a Metrics,
    started: Instant,
}

impl Exchange<'_> {
    fn origin(&self) -> Origin {
        Origin {
            source: self.peer.ip(),
            now_ms: unix_now_ms(),
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
            &format!(
                "step={step} status={} outcome={} {} elapsed_ms={}",
                answer.status,
                answer.event.name(),
                answer.note,
                elapsed.as_millis()
            ),
        );
        reply(
            answer.status,
            answer.body,
            answer.content_type,
            answer.retry_after,
        )
    }
}

fn unix_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

async fn handle_mdm(
    request: Request<Incoming>,
    at: &Exchange<'_>,
    authority: &Authority,
) -> Response<Full<Bytes>> {
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
    let user = authtoken_core::log::quote(&checkin.identity.short_name);
    let answer = authority.handle(&checkin, at.origin());
    at.respond(answer, &user, step).await
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
