//! The unprivileged half of `authtoken sync`: fetch the authority's
//! directory over the login's trust rules (verified https, `ca_file`, the
//! device identity, the failover list), as `helper_user`. What the body
//! holds is judged by root afterwards ([`crate::sync`]).

use std::time::{Duration, Instant};

use authtoken_config::Config;
use authtoken_directory::{reply_meaning, Fetched, MAX_DIRECTORY_BYTES};

use crate::privilege;
use crate::transport::{failover_unreachable, first_answering, Http};

/// How long one fetch may take: a directory of 100,000 users is about
/// 10 MB, which a slow link needs a while for.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(60);

/// Fetches the directory, sending `held` (the cache's serial) as
/// `If-None-Match`. Root is dropped before the first byte goes out.
pub fn fetch(config: &Config, held: Option<&str>) -> (Fetched, Vec<u8>) {
    let failed = |reason: String| (Fetched::Failed { reason }, Vec::new());
    let http = match Http::new(config, Instant::now() + FETCH_TIMEOUT) {
        Ok(http) => http,
        Err(e) => return failed(e.to_string()),
    };
    if let Err(e) = privilege::drop_to(config.helper_user.as_str()) {
        return failed(format!("cannot drop privileges: {e}"));
    }
    let if_none_match = held.map(|serial| format!("\"{serial}\""));
    let header = if_none_match
        .as_deref()
        .map(|value| ("If-None-Match", value));
    let urls = &config.directory.url;
    let failover = first_answering(urls, |url| {
        http.get(url.as_str(), header, MAX_DIRECTORY_BYTES as u64)
    });
    let Some((i, reply)) = failover.answer else {
        return failed(failover_unreachable(&failover.passed_over));
    };
    let url = &urls[i];
    let reply = match reply {
        Ok(reply) => reply,
        Err(e) => return failed(format!("{url}: {e}")),
    };
    let authority = url.to_string();
    match reply_meaning(reply.status, held.is_some()) {
        Ok(true) => (Fetched::New { authority }, reply.body),
        Ok(false) => (Fetched::Unchanged { authority }, Vec::new()),
        Err(why) => failed(format!("{url}: {why}")),
    }
}
