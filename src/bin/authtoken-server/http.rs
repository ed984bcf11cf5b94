//! Serving `UserAuthenticate` over HTTP/1.1 (TLS or loopback plain HTTP):
//! request limits, the failure delay, and one log line per request.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use pam_authtoken::protocol::mdm::{parse_request, CONTENT_TYPE};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use crate::authority::Authority;

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
const MAX_CONNECTIONS: usize = 512;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    authority: Arc<Authority>,
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
        let authority = authority.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _ = stream.set_nodelay(true);
            match tls {
                Some(acceptor) => {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            serve_connection(TokioIo::new(stream), conn, peer, authority).await
                        }
                        Ok(Err(e)) => {
                            log_line(conn, peer, "-", &format!("TLS handshake failed: {e}"))
                        }
                        Err(_) => log_line(conn, peer, "-", "TLS handshake timed out"),
                    }
                }
                None => serve_connection(TokioIo::new(stream), conn, peer, authority).await,
            }
        });
    }
}

async fn serve_connection<I>(io: I, conn: u64, peer: SocketAddr, authority: Arc<Authority>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |request| {
        let authority = authority.clone();
        async move { Ok::<_, Infallible>(handle(request, conn, peer, &authority).await) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .keep_alive(true)
        .serve_connection(io, service)
        .await;
}

fn log_line(conn: u64, peer: SocketAddr, user: &str, event: &str) {
    eprintln!("request conn={conn} peer={peer} user={user} {event}");
}

fn reply(status: u16, body: Vec<u8>) -> Response<Full<Bytes>> {
    let has_body = !body.is_empty();
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if has_body {
        response.headers_mut().insert(
            "Content-Type",
            hyper::header::HeaderValue::from_static("application/xml"),
        );
    }
    response
}

async fn handle(
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
        return reply(405, Vec::new());
    }
    let content_type = request
        .headers()
        .get("Content-Type")
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    if content_type.as_deref() != Some(CONTENT_TYPE) {
        log_line(conn, peer, "-", "status=415 wrong Content-Type");
        return reply(415, Vec::new());
    }
    let body = match Limited::new(request.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            log_line(conn, peer, "-", "status=413 body too large or broken");
            return reply(413, Vec::new());
        }
    };
    let checkin = match parse_request(&body) {
        Ok(checkin) => checkin,
        Err(e) => {
            log_line(conn, peer, "-", &format!("status=400 {e}"));
            return reply(400, Vec::new());
        }
    };
    let step = if checkin.digest_response.is_some() {
        "response"
    } else {
        "challenge"
    };
    let answer = authority.handle(&checkin, Instant::now());
    if !answer.delay.is_zero() {
        tokio::time::sleep(answer.delay).await;
    }
    log_line(
        conn,
        peer,
        &pam_authtoken::log::sanitize(&checkin.identity.short_name),
        &format!(
            "step={step} status={} {} elapsed_ms={}",
            answer.status,
            answer.event,
            started.elapsed().as_millis()
        ),
    );
    reply(answer.status, answer.body)
}
