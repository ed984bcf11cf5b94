//! The directory an authority publishes (docs/PROTOCOL.md, "The
//! directory"): the wire types, shared by the reference server that serves
//! it and the client that syncs it, and the rules the client applies to
//! every record before anything of it reaches the NSS cache.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::username::Username;

/// Largest directory body a client reads (about 100,000 users fit in a
/// tenth of it); a larger one keeps the last good cache.
pub const MAX_DIRECTORY_BYTES: usize = 64 * 1024 * 1024;
/// Most users or groups a client accepts from one directory.
pub const MAX_RECORDS: usize = 250_000;

/// One user of the directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserEntry {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub gecos: String,
    pub home: String,
    pub shell: String,
}

/// One group of the directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupEntry {
    pub name: String,
    pub gid: u32,
    /// Supplementary members, by name.
    pub members: Vec<String>,
}

/// The document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Directory {
    pub serial: String,
    pub users: Vec<UserEntry>,
    pub groups: Vec<GroupEntry>,
}

/// The id ranges the client accepts (`[directory]` in the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ranges {
    pub min_uid: u32,
    pub max_uid: u32,
    pub min_gid: u32,
    pub max_gid: u32,
}

/// First uid (and gid) a record may have by default: the reference
/// server's first free uid.
pub const DEFAULT_MIN_UID: u32 = 10_000;
/// Last by default: `UID_MAX` of login.defs, below systemd's dynamic users
/// (61184–65519) and `nobody` (65534).
pub const DEFAULT_MAX_UID: u32 = 60_000;

impl Ranges {
    /// `[directory]` without id keys: uids and gids alike.
    pub const DEFAULT: Ranges = Ranges {
        min_uid: DEFAULT_MIN_UID,
        max_uid: DEFAULT_MAX_UID,
        min_gid: DEFAULT_MIN_UID,
        max_gid: DEFAULT_MAX_UID,
    };
}

/// The machine's own accounts, which always win: read from the files
/// themselves (`/etc/passwd`, `/etc/group`), never through NSS, which
/// would ask us.
#[derive(Debug, Clone, Default)]
pub struct Local {
    pub users: HashSet<String>,
    pub uids: HashSet<u32>,
    pub groups: HashSet<String>,
    pub gids: HashSet<u32>,
}

impl Local {
    /// From the text of `/etc/passwd` and `/etc/group`.
    pub fn from_files(passwd: &str, group: &str) -> Local {
        let mut local = Local::default();
        for fields in lines(passwd) {
            if let (Some(name), Some(uid)) = (fields.first(), fields.get(2)) {
                local.users.insert((*name).to_owned());
                if let Ok(uid) = uid.parse() {
                    local.uids.insert(uid);
                }
            }
        }
        for fields in lines(group) {
            if let (Some(name), Some(gid)) = (fields.first(), fields.get(2)) {
                local.groups.insert((*name).to_owned());
                if let Ok(gid) = gid.parse() {
                    local.gids.insert(gid);
                }
            }
        }
        local
    }
}

fn lines(text: &str) -> impl Iterator<Item = Vec<&str>> {
    text.lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| line.split(':').collect())
}

/// A name that can stand in `passwd`/`group` and as a path component: the
/// module's user-name rules, and none of `/ : ,`, whitespace, a leading
/// `-`, `.` or `..`.
pub fn name_ok(name: &str) -> bool {
    Username::parse(name.as_bytes()).is_ok()
        && !name.contains(['/', ':', ','])
        && !name.chars().any(char::is_whitespace)
        && !name.starts_with('-')
        && name != "."
        && name != ".."
}

/// A field that cannot break a `passwd` line.
fn field_ok(text: &str) -> bool {
    !text.contains([':', '\n', '\r', '\0']) && text.len() <= 1024
}

/// A serial that can stand in an `ETag` and in the cache's header: 1 to
/// 128 visible ASCII characters other than `"` and `\\`.
pub fn serial_ok(serial: &str) -> bool {
    (1..=128).contains(&serial.len())
        && serial
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
}

/// What the unprivileged half of `authtoken sync` (`fetch-directory`)
/// tells root on its first line of output; a new directory's body follows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "lowercase", deny_unknown_fields)]
pub enum Fetched {
    /// A new directory from `authority`.
    New { authority: String },
    /// `304`: the directory held is current.
    Unchanged { authority: String },
    /// No directory: why (no authority reachable, refused, too large…).
    Failed { reason: String },
}

impl Fetched {
    /// The answer's bytes: one JSON line, then the body.
    pub fn encode(&self, body: &[u8]) -> Vec<u8> {
        let mut out = serde_json::to_vec(self).unwrap_or_default();
        out.push(b'\n');
        out.extend_from_slice(body);
        out
    }

    /// The answer and the body after it.
    pub fn decode(bytes: &[u8]) -> Result<(Fetched, &[u8]), Refused> {
        let newline = bytes
            .iter()
            .position(|b| *b == b'\n')
            .ok_or_else(|| Refused::Malformed("no answer line".into()))?;
        let fetched = serde_json::from_slice(&bytes[..newline])
            .map_err(|e| Refused::Malformed(e.to_string()))?;
        Ok((fetched, &bytes[newline + 1..]))
    }
}

/// What a directory URL's reply means (docs/PROTOCOL.md): `Ok(true)` a new
/// directory in the body, `Ok(false)` unchanged (only when a serial was
/// sent), else why there is none.
pub fn reply_meaning(status: u16, sent_serial: bool) -> Result<bool, String> {
    match status {
        200 => Ok(true),
        304 if sent_serial => Ok(false),
        304 => Err("304 to a request without If-None-Match".into()),
        401 | 403 => Err(format!(
            "{status}: the authority serves its directory to enrolled devices only (client_cert, client_key)"
        )),
        404 => Err("404: the authority publishes no directory at this URL".into()),
        other => Err(format!("HTTP {other}")),
    }
}

/// What [`accept`] kept, and one line per record it dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub directory: Directory,
    pub dropped: Vec<String>,
}

/// Why a whole directory is refused (the last good cache stays).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("not a directory document: {0}")]
    Malformed(String),
    #[error("more than {MAX_RECORDS} users or groups")]
    TooMany,
}

/// Parses a body and applies the rules of docs/PROTOCOL.md to every
/// record: each record that breaks one is dropped with a line saying why;
/// the document as a whole is refused only when it is not one.
pub fn accept(body: &[u8], ranges: Ranges, local: &Local) -> Result<Accepted, Refused> {
    if body.len() > MAX_DIRECTORY_BYTES {
        return Err(Refused::Malformed(format!(
            "larger than {MAX_DIRECTORY_BYTES} bytes"
        )));
    }
    let document: Directory =
        serde_json::from_slice(body).map_err(|e| Refused::Malformed(e.to_string()))?;
    if document.users.len() > MAX_RECORDS || document.groups.len() > MAX_RECORDS {
        return Err(Refused::TooMany);
    }
    if !serial_ok(&document.serial) {
        return Err(Refused::Malformed("serial".into()));
    }
    let mut dropped = Vec::new();
    let mut groups = Vec::new();
    let mut group_names = HashSet::new();
    let mut gids = HashSet::new();
    for group in document.groups {
        let why = if !name_ok(&group.name) {
            Some("a name the rules refuse")
        } else if !(ranges.min_gid..=ranges.max_gid).contains(&group.gid) || group.gid == 0 {
            Some("gid outside the accepted range")
        } else if local.groups.contains(&group.name) || local.gids.contains(&group.gid) {
            Some("a local group has that name or gid")
        } else if !group_names.insert(group.name.clone()) || !gids.insert(group.gid) {
            Some("a name or gid given twice")
        } else {
            None
        };
        match why {
            Some(why) => dropped.push(format!(
                "group {}: dropped, {why}",
                crate::log::quote(&group.name)
            )),
            None => groups.push(group),
        }
    }
    let mut users = Vec::new();
    let mut user_names = HashSet::new();
    let mut uids = HashSet::new();
    for user in document.users {
        let why = if !name_ok(&user.name) {
            Some("a name the rules refuse")
        } else if local.users.contains(&user.name) || local.uids.contains(&user.uid) {
            Some("a local account has that name or uid")
        } else if !(ranges.min_uid..=ranges.max_uid).contains(&user.uid) || user.uid == 0 {
            Some("uid outside the accepted range")
        } else if !gids.contains(&user.gid) {
            Some("its primary gid is not an accepted group")
        } else if ![&user.gecos, &user.home, &user.shell]
            .iter()
            .all(|f| field_ok(f))
            || !user.home.starts_with('/')
            || !user.shell.starts_with('/')
        {
            Some("a field the rules refuse")
        } else if !user_names.insert(user.name.clone()) || !uids.insert(user.uid) {
            Some("a name or uid given twice")
        } else {
            None
        };
        match why {
            Some(why) => dropped.push(format!(
                "user {}: dropped, {why}",
                crate::log::quote(&user.name)
            )),
            None => users.push(user),
        }
    }
    // Members who are not accepted users are left out of their groups.
    for group in &mut groups {
        group.members.retain(|member| user_names.contains(member));
    }
    Ok(Accepted {
        directory: Directory {
            serial: document.serial,
            users,
            groups,
        },
        dropped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const RANGES: Ranges = Ranges::DEFAULT;

    fn body(users: &str, groups: &str) -> Vec<u8> {
        format!("{{\"serial\":\"s1\",\"users\":[{users}],\"groups\":[{groups}]}}").into_bytes()
    }

    fn user(name: &str, uid: u32) -> String {
        format!(
            "{{\"name\":\"{name}\",\"uid\":{uid},\"gid\":10000,\"gecos\":\"\",\"home\":\"/home/x\",\"shell\":\"/bin/bash\"}}"
        )
    }

    const STAFF: &str = "{\"name\":\"staff\",\"gid\":10000,\"members\":[\"carol\",\"ghost\"]}";

    #[test]
    fn good_records_pass_and_each_bad_one_is_dropped_with_a_reason() {
        let local = Local::from_files(
            "root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/bash\n",
            "root:x:0:\nalice:x:1000:\n",
        );
        let users = [
            user("carol", 10_001),
            user("root", 10_002),
            user("alice", 10_003),
            user("toor", 0),
            user("eve/evil", 10_004),
            user("ev:il", 10_005),
            user("dave", 10_001),
            user("low", 1000),
        ]
        .join(",");
        let accepted = accept(&body(&users, STAFF), RANGES, &local).unwrap();
        let names: Vec<_> = accepted
            .directory
            .users
            .iter()
            .map(|u| u.name.as_str())
            .collect();
        assert_eq!(names, ["carol"]);
        assert_eq!(accepted.dropped.len(), 7, "{:?}", accepted.dropped);
        assert!(accepted
            .dropped
            .iter()
            .any(|l| l.contains("\"root\"") && l.contains("local")));
        assert_eq!(
            accepted.directory.groups[0].members,
            ["carol"],
            "ghost left out"
        );
    }

    #[test]
    fn a_document_that_is_not_one_is_refused_whole() {
        let local = Local::default();
        assert!(accept(b"not json", RANGES, &local).is_err());
        assert!(accept(b"{\"serial\":\"s\",\"users\":[]}", RANGES, &local).is_err());
        let huge = vec![b' '; MAX_DIRECTORY_BYTES + 1];
        assert!(accept(&huge, RANGES, &local).is_err());
        let mut many = String::from("{\"serial\":\"s\",\"groups\":[],\"users\":[");
        many.push_str(&vec![user("u", 10_001); MAX_RECORDS + 1].join(","));
        many.push_str("]}");
        assert_eq!(
            accept(many.as_bytes(), RANGES, &local),
            Err(Refused::TooMany)
        );
    }

    #[test]
    fn serials_are_etag_safe() {
        assert!(serial_ok("3f5c0a9d"));
        assert!(serial_ok("v1.2-x_y"));
        for bad in ["", "a b", "a\"b", "a\\b", "a\nb", "é", &"x".repeat(129)] {
            assert!(!serial_ok(bad), "{bad:?}");
        }
        let refused = accept(
            b"{\"serial\":\"a b\",\"users\":[],\"groups\":[]}",
            RANGES,
            &Local::default(),
        );
        assert!(refused.is_err());
    }

    #[test]
    fn the_fetch_answer_frames_the_body() {
        let answer = Fetched::New {
            authority: "https://a/directory".into(),
        };
        let bytes = answer.encode(b"{\"x\":\n1}");
        let (decoded, body) = Fetched::decode(&bytes).unwrap();
        assert_eq!((decoded, body), (answer, &b"{\"x\":\n1}"[..]));
        assert!(Fetched::decode(b"no line").is_err());
        assert!(Fetched::decode(b"{\"result\":\"new\"}\n").is_err());
    }

    #[test]
    fn replies_mean_what_the_protocol_says() {
        assert_eq!(reply_meaning(200, false), Ok(true));
        assert_eq!(reply_meaning(304, true), Ok(false));
        assert!(reply_meaning(304, false).is_err());
        for status in [401, 403, 404, 429, 500, 302] {
            assert!(reply_meaning(status, true).is_err(), "{status}");
        }
    }

    #[test]
    fn names_that_would_break_a_file_or_a_path_are_refused() {
        for bad in ["", "a/b", "a:b", "a,b", "a b", "-rf", ".", "..", "a\nb"] {
            assert!(!name_ok(bad), "{bad:?}");
        }
        for good in ["carol", "carol.c", "c_arol", "carol-c", "José"] {
            assert!(name_ok(good), "{good:?}");
        }
    }
}
