//! What an answer meant: the request log's `outcome=` and the metrics'
//! labels. A leaf, so the metrics and every answering module can name it
//! without depending on each other.

/// What an answer meant, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Event {
    Challenge,
    Token,
    Rejected,
    Unmanaged,
    NoToken,
    Throttled,
    Malformed,
    Failed,
    /// A good proof refused because the replay record could not take it.
    ReplayFull,
    /// The PostgreSQL store could not be reached: answered 503.
    StoreDown,
    /// The directory sent (or `304`, unchanged) to an enrolled device.
    Directory,
    /// The directory refused: no enrolled device on the connection; or
    /// an enrollment, a renewal or (`--require-device`) a login refused.
    Refused,
    /// A device certificate issued (a join or a renewal), or the CA served.
    Enrolled,
}

impl Event {
    pub fn name(self) -> &'static str {
        match self {
            Event::Challenge => "challenge",
            Event::Token => "token",
            Event::Rejected => "rejected",
            Event::Unmanaged => "unmanaged",
            Event::NoToken => "no_token",
            Event::Throttled => "throttled",
            Event::Malformed => "malformed",
            Event::Failed => "failed",
            Event::ReplayFull => "replay_record_full",
            Event::StoreDown => "store_unavailable",
            Event::Directory => "directory",
            Event::Refused => "refused",
            Event::Enrolled => "enrolled",
        }
    }
}
