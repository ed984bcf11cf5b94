//! The authority's enrollment endpoints (docs/PROTOCOL.md, "Enrollment"),
//! next to the check-in URL:
//!
//! * `GET …/enroll/ca`: the root CA's certificate, which a joining machine
//!   accepts only if it matches the fingerprint it was given;
//! * `POST …/enroll`: a join token and a CSR, answered with a device
//!   certificate bound to the machine's UDID;
//! * `POST …/enroll/renew`: a CSR over mutual TLS with the current device
//!   certificate (no token), answered with the next one.
//!
//! A token is taken and the certificate recorded as one step
//! ([`crate::shared::Shared::enroll`]); the client learns only that a
//! token was refused, the log says why.

use authtoken_core::log::quote;

use crate::authority::{Answer, Authority, DeviceStanding, Origin};
use crate::enrollment::{self, EnrollError, JoinSecret};
use crate::event::Event;
use crate::shared::{Recorded, RegistryError};

impl Authority {
    /// `GET …/enroll/ca`: the root CA (PEM), or 404 when this authority
    /// does not enroll machines.
    pub fn enroll_ca(&self) -> Answer {
        match &self.settings.enroll {
            Some(enroll) => Answer {
                body: enroll.root_pem.as_bytes().to_vec(),
                content_type: Some("application/x-pem-file"),
                ..Answer::status(200, Event::Enrolled, "enroll: CA served")
            },
            None => Answer::status(404, Event::Refused, "enroll: not configured"),
        }
    }

    /// `POST …/enroll`: a machine joins with a token.
    pub async fn enroll(&self, body: &[u8], origin: Origin) -> Answer {
        let Some(enroll) = &self.settings.enroll else {
            return Answer::status(404, Event::Refused, "enroll: not configured");
        };
        let request = match enrollment::parse_request(body) {
            Ok(request) => request,
            Err(e) => return refused(400, &e),
        };
        let Some(secret) = request.token.as_deref().and_then(JoinSecret::parse) else {
            return refused(403, &EnrollError::Token(enrollment::TokenRefusal::Unknown));
        };
        let now = origin.now_ms / 1000;
        let issued = match enroll
            .device_ca
            .issue(&request.csr, &request.name, &request.udid, now)
        {
            Ok(issued) => issued,
            Err(e) => return refused(400, &e),
        };
        let recorded = self
            .settings
            .shared
            .enroll(&secret, &request.name, now, &issued.serial, &issued.record)
            .await;
        let note = format!(
            "enroll: device {} ({}) serial {} until {}",
            quote(&request.name),
            issued.record.udid,
            issued.serial,
            issued.answer.not_after
        );
        self.answer_issued(recorded, &issued.answer, note)
    }

    /// `POST …/enroll/renew`: the next certificate for a device whose
    /// current one is on record and not revoked (mutual TLS says which).
    pub async fn renew(&self, body: &[u8], origin: Origin) -> Answer {
        let Some(enroll) = &self.settings.enroll else {
            return Answer::status(404, Event::Refused, "enroll: not configured");
        };
        let (old_serial, old) = match self.current().standing(&origin) {
            DeviceStanding::Recorded { serial, record } => (serial, record),
            DeviceStanding::Revoked => {
                return Answer::status(403, Event::Refused, "renew: device revoked")
            }
            DeviceStanding::None | DeviceStanding::Unrecorded => {
                return Answer::status(
                    403,
                    Event::Refused,
                    "renew: no device certificate on record",
                )
            }
        };
        let request = match enrollment::parse_request(body) {
            Ok(request) => request,
            Err(e) => return refused(400, &e),
        };
        if !request.udid.eq_ignore_ascii_case(&old.udid) {
            return Answer::status(
                403,
                Event::Refused,
                "renew: UDID differs from the one the certificate was issued for",
            );
        }
        let now = origin.now_ms / 1000;
        // The name and UDID are the record's: a renewal renames nothing.
        let issued = match enroll
            .device_ca
            .issue(&request.csr, &old.name, &old.udid, now)
        {
            Ok(issued) => issued,
            Err(e) => return refused(400, &e),
        };
        let recorded = self
            .settings
            .shared
            .renew(&old.fingerprint, &issued.serial, &issued.record)
            .await;
        let note = format!(
            "renew: device {} serial {old_serial} -> {} until {}",
            quote(&old.name),
            issued.serial,
            issued.answer.not_after
        );
        self.answer_issued(recorded, &issued.answer, note)
    }

    /// The answer to a join or renewal, once its record was written (or
    /// why not).
    fn answer_issued(
        &self,
        recorded: Result<Recorded, RegistryError>,
        answer: &enrollment::EnrollAnswer,
        note: String,
    ) -> Answer {
        match recorded {
            Ok(Recorded::Store(store)) => self.replace_store(*store),
            Ok(Recorded::Elsewhere) => {}
            Err(RegistryError::Token(why)) => {
                return Answer {
                    body: error_body(
                        "join token refused: unknown, used, expired or for another name",
                    ),
                    content_type: Some("application/json"),
                    delay: self.settings.failure_delay,
                    ..Answer::status(
                        403,
                        Event::Refused,
                        format!("enroll: token refused ({why})"),
                    )
                }
            }
            Err(RegistryError::Revoked) => {
                return Answer::status(403, Event::Refused, "renew: device revoked")
            }
            Err(RegistryError::Down(down)) => {
                return Answer {
                    retry_after: Some(1),
                    ..Answer::status(503, Event::StoreDown, down.to_string())
                }
            }
            Err(e @ (RegistryError::NoStore | RegistryError::Store(_))) => {
                return Answer::status(500, Event::Failed, format!("enroll: {e}"))
            }
        }
        let body = serde_json::to_vec(answer).unwrap_or_default();
        Answer::json(body, Event::Enrolled, note)
    }
}

/// `{"error": "…"}`: what a refused client is told.
fn error_body(text: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({ "error": text })).unwrap_or_default()
}

/// A refused request: the status, the reason in the body and the log.
fn refused(status: u16, error: &EnrollError) -> Answer {
    let text = match error {
        // Never which part of a token was wrong.
        EnrollError::Token(_) => {
            "join token refused: unknown, used, expired or for another name".to_owned()
        }
        other => other.to_string(),
    };
    Answer {
        body: error_body(&text),
        content_type: Some("application/json"),
        ..Answer::status(status, Event::Refused, format!("enroll: {error}"))
    }
}
