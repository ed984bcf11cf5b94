//! Serving over HTTP/1.1 (TLS or loopback plain HTTP): MDM `UserAuthenticate`
//! check-ins or the emulated device's `/api/auth/token`, with request
//! limits, answer delays, and one log line per request.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use authtoken_protocol::mdm::CONTENT_TYPE;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use crate::authority::{Answer, Authority};
use crate::device::Device;
use crate::proto::mdm::parse_request;

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
const MAX_CONNECTIONS: usize = 512;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// What this server is.
pub enum Service {
    /// An MDM check-in endpoint (`UserAuthenticate`).
    Mdm(Authority),
    /// An emulated token device (`/api/auth/token`).
    Hem(Device),
}

pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    service: Arc<Service>,
) -> std::io::Result<()> {
    let connections = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let next_id = AtomicU64::new(1);
    loop {
        let (stream, peer) = listener.accept().await?;
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            log_line(0, peer, "-", "connection refused: too many connections");
            continue;
        };
        let conn = next_id.fetch_add(1, Ordering::Relaxed);
        let tls = tls.clone();
        let service = service.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _ = stream.set_nodelay(true);
            match tls {
                Some(acceptor) => {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            serve_connection(TokioIo::new(stream), conn, peer, service).await
                        }
                        Ok(Err(e)) => {
                            log_line(conn, peer, "-", &format!("TLS handshake failed: {e}"))
                        }
                        Err(_) => log_line(conn, peer, "-", "TLS handshake timed out"),
                    }
                }
                None => serve_connection(TokioIo::new(stream), conn, peer, service).await,
            }
        });
    }
}

async fn serve_connection<I>(io: I, conn: u64, peer: SocketAddr, service: Arc<Service>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let handler = hyper::service::service_fn(move |request| {
        let service = service.clone();
        async move {
            let response = match &*service {
                Service::Mdm(authority) => handle_mdm(request, conn, peer, authority).await,
                Service::Hem(device) => handle_hem(request, conn, peer, device).await,
            };
            Ok::<_, Infallible>(response)
        }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .keep_alive(true)
        .serve_connection(io, handler)
        .await;
}

fn log_line(conn: u64, peer: SocketAddr, user: &str, event: &str) {
    eprintln!("request conn={conn} peer={peer} user={user} {event}");
}

fn reply(status: u16, body: Vec<u8>, content_type: Option<&'static str>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Some(kind) = content_type {
        response.headers_mut().insert(
            "Content-Type",
            hyper::header::HeaderValue::from_static(kind),
        );
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

async fn read_body(request: Request<Incoming>) -> Option<Bytes> {
    Limited::new(request.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
        .ok()
        .map(|collected| collected.to_bytes())
}

/// Where a request was answered, for its log line.
struct Context<'a> {
    conn: u64,
    peer: SocketAddr,
    user: &'a str,
    step: &'a str,
    started: Instant,
}

/// Waits out the answer's delay, logs it and turns it into a response.
async fn respond(answer: Answer, at: Context<'_>) -> Response<Full<Bytes>> {
    if !answer.delay.is_zero() {
        tokio::time::sleep(answer.delay).await;
    }
    log_line(
        at.conn,
        at.peer,
        at.user,
        &format!(
            "step={} status={} {} elapsed_ms={}",
            at.step,
            answer.status,
            answer.event,
            at.started.elapsed().as_millis()
        ),
    );
    reply(answer.status, answer.body, answer.content_type)
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

async fn handle_mdm(
    request: Request<Incoming>,
    conn: u64,
    peer: SocketAddr,
    authority: &Authority,
) -> Response<Full<Bytes>> {
    let started = Instant::now();
    if request.method() != Method::PUT {
        log_line(
            conn,
            peer,
            "-",
            &format!("status=405 method {}", request.method()),
        );
        return reply(405, Vec::new(), None);
    }
    if media_type(&request).as_deref() != Some(CONTENT_TYPE) {
        log_line(conn, peer, "-", "status=415 wrong Content-Type");
        return reply(415, Vec::new(), None);
    }
    let Some(body) = read_body(request).await else {
        log_line(conn, peer, "-", "status=413 body too large or broken");
        return reply(413, Vec::new(), None);
    };
    let checkin = match parse_request(&body) {
        Ok(checkin) => checkin,
        Err(e) => {
            log_line(conn, peer, "-", &format!("status=400 {e}"));
            return reply(400, Vec::new(), None);
        }
    };
    let step = if checkin.digest_response.is_some() {
        "response"
    } else {
        "challenge"
    };
    let user = authtoken_core::log::sanitize(&checkin.identity.short_name);
    let answer = authority.handle(&checkin, Instant::now());
    respond(
        answer,
        Context {
            conn,
            peer,
            user: &user,
            step,
            started,
        },
    )
    .await
}

async fn handle_hem(
    request: Request<Incoming>,
    conn: u64,
    peer: SocketAddr,
    device: &Device,
) -> Response<Full<Bytes>> {
    let started = Instant::now();
    let at = |step| Context {
        conn,
        peer,
        user: "-",
        step,
        started,
    };
    if request.uri().path() != authtoken_protocol::hem::TOKEN_PATH {
        log_line(
            conn,
            peer,
            "-",
            &format!("status=404 path {}", request.uri().path()),
        );
        return reply(404, Vec::new(), None);
    }
    match *request.method() {
        Method::GET => respond(device.challenge(unix_now()), at("challenge")).await,
        Method::POST => {
            if media_type(&request).as_deref() != Some("application/json") {
                return respond(Answer::status(400, "wrong Content-Type"), at("auth")).await;
            }
            match read_body(request).await {
                Some(body) => respond(device.authenticate(&body, unix_now()), at("auth")).await,
                None => respond(Answer::status(413, "body too large or broken"), at("auth")).await,
            }
        }
        ref other => {
            log_line(conn, peer, "-", &format!("status=405 method {other}"));
            reply(405, Vec::new(), None)
        }
    }
}
