//! What each request is answered: routing to the service (MDM check-ins,
//! the emulated device, a token API), reading a bounded body, the reply
//! with its headers and delay, the metrics, and one access-log line per
//! request. The connection it came on is [`crate::http`]'s.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use authtoken_core::kinds::RestFlavor;
use authtoken_protocol::mdm::CONTENT_TYPE;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use zeroize::Zeroizing;

use crate::admission::REQUEST_DEADLINE;
use crate::authority::{Answer, Authority, Origin, PasswordCheck};
use crate::device::Device;
use crate::event::Event;
use crate::metrics::Metrics;
use crate::proto::mdm::parse_request;
use crate::proto::rest;
use crate::proto::scram::ConnectionBindings;

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// What this server is.
pub enum Service {
    /// An MDM check-in endpoint (`UserAuthenticate`).
    Mdm(Arc<Authority>),
    /// An emulated token device (`/api/auth/token`).
    Hem(Box<Device>),
    /// A `rest` token API (seeds 002, 003) over the same user store; the
    /// semaphore bounds the password derivations running at once.
    Rest {
        authority: Arc<Authority>,
        flavor: RestFlavor,
        derivations: tokio::sync::Semaphore,
    },
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

/// One access-log line on stderr, in one write: `eprintln!` on unbuffered
/// stderr issues a system call per formatted piece, which the profile
/// showed as a large share of the server's time per handshake.
pub(crate) fn log_line(conn: u64, peer: SocketAddr, user: &str, event: &str) {
    use std::io::Write as _;
    let line = format!(
        "request conn={conn} peer={peer} user={} {event}\n",
        authtoken_core::log::quote(user)
    );
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

pub(crate) fn reply(
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

/// The body, read as [`read_body`] does, of a request of media type
/// `media`; another type is refused (415) unread.
async fn read_body_of_type(request: Request<Incoming>, media: &str) -> Result<Bytes, Answer> {
    if media_type(&request).as_deref() != Some(media) {
        return Err(Answer::status(415, Event::Malformed, "wrong Content-Type"));
    }
    read_body(request).await
}

/// One request being answered.
pub(crate) struct Exchange<'a> {
    pub(crate) conn: u64,
    pub(crate) peer: SocketAddr,
    pub(crate) device: Option<[u8; 32]>,
    pub(crate) channel: Option<ConnectionBindings>,
    pub(crate) metrics: &'a Metrics,
    pub(crate) started: Instant,
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

pub(crate) async fn handle_mdm(
    request: Request<Incoming>,
    at: &Exchange<'_>,
    authority: &Authority,
) -> Response<Full<Bytes>> {
    let path = request.uri().path().to_owned();
    if request.method() == Method::GET && path.ends_with("/enroll/ca") {
        return at.respond(authority.enroll_ca(), "-", "enroll").await;
    }
    if request.method() == Method::POST
        && (path.ends_with("/enroll") || path.ends_with("/enroll/renew"))
    {
        let step = if path.ends_with("/renew") {
            "renew"
        } else {
            "enroll"
        };
        let body = match read_body_of_type(request, "application/json").await {
            Ok(body) => body,
            Err(answer) => return at.respond(answer, "-", step).await,
        };
        let answer = if step == "renew" {
            authority.renew(&body, at.origin()).await
        } else {
            authority.enroll(&body, at.origin()).await
        };
        return at.respond(answer, "-", step).await;
    }
    if request.method() == Method::GET && path.ends_with("/directory") {
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
    let body = match read_body_of_type(request, CONTENT_TYPE).await {
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

pub(crate) async fn handle_hem(
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

pub(crate) async fn handle_rest(
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
            let body = match read_body_of_type(request, "application/json").await {
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
        PasswordCheck::Refused(why) => Answer::status(403, Event::Refused, why),
        PasswordCheck::Failed(why) => Answer::status(500, Event::Failed, why),
    }
}
