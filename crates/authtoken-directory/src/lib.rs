//! The directory an authority publishes (docs/PROTOCOL.md, "The
//! directory"): the wire types, shared by the reference server that serves
//! it and the client that syncs it; the rules the client applies to every
//! record before anything of it reaches the NSS cache (what the machine
//! decides, not the record); and [`nss_cache`], the cache file the sync
//! writes and the NSS module reads. One crate for the three users: the
//! NSS module, the sync and the server.

pub mod nss_cache;

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use authtoken_core::log::quote;
use authtoken_core::username::Username;

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

/// Where homes live unless `[directory] home_prefix` says otherwise.
pub const DEFAULT_HOME_PREFIX: &str = "/home";
/// The shell of a record whose shell is not in `/etc/shells`, unless
/// `[directory] default_shell` says otherwise.
pub const DEFAULT_SHELL: &str = "/bin/sh";

/// Names that mean privilege on some machine, or will once a package that
/// creates them is installed (`addgroup` and `systemd-sysusers` adopt a
/// name `getent` already finds, members and all): never served from a
/// directory, whether or not the machine has them yet.
pub const PRIVILEGED_NAMES: &[&str] = &[
    "root",
    "daemon",
    "bin",
    "sys",
    "adm",
    "admin",
    "wheel",
    "sudo",
    "sudoers",
    "staff",
    "shadow",
    "disk",
    "kmem",
    "tty",
    "dialout",
    "docker",
    "podman",
    "lxd",
    "incus",
    "incus-admin",
    "libvirt",
    "libvirt-qemu",
    "kvm",
    "systemd-journal",
    "systemd-network",
    "plugdev",
    "netdev",
    "input",
    "video",
    "render",
    "audio",
    "lpadmin",
    "operator",
    "nobody",
    "nogroup",
    "polkitd",
    "messagebus",
    "sshd",
    "utmp",
];

/// What the machine decides about every record, whatever the authority
/// serves (`[directory]` in the config): the ids it may have, where homes
/// live, the shell of a record whose own is not a login shell here, and
/// the names it may never take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineRules {
    pub ranges: Ranges,
    /// An absolute path without `.`, `..`, empty or trailing components.
    pub home_prefix: String,
    pub default_shell: String,
    /// Beside [`PRIVILEGED_NAMES`] and the names `sysusers.d` declares.
    pub reserved_names: Vec<String>,
}

impl Default for MachineRules {
    fn default() -> MachineRules {
        MachineRules {
            ranges: Ranges::DEFAULT,
            home_prefix: DEFAULT_HOME_PREFIX.to_owned(),
            default_shell: DEFAULT_SHELL.to_owned(),
            reserved_names: Vec::new(),
        }
    }
}

/// Whether `path` can be a `home_prefix` or a `default_shell`: absolute,
/// every component a real name (no `.`, `..`, empty, control or `:`).
pub fn clean_absolute_path(path: &str) -> bool {
    path.len() > 1
        && path.len() <= 1024
        && path.starts_with('/')
        && path[1..]
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != ".." && c.chars().all(plain_char))
}

/// Not a control character (C0, DEL, C1) and not `:`.
fn plain_char(c: char) -> bool {
    !c.is_control() && c != ':'
}

/// The machine's own accounts, which always win, and what else it knows
/// about names and shells: read from the files themselves (`/etc/passwd`,
/// `/etc/group`, `/etc/shells`, `sysusers.d`), never through NSS, which
/// would ask us.
#[derive(Debug, Clone, Default)]
pub struct Local {
    pub users: HashSet<String>,
    pub uids: HashSet<u32>,
    pub groups: HashSet<String>,
    pub gids: HashSet<u32>,
    /// Local accounts' homes: never a network user's too.
    pub homes: HashSet<String>,
    /// `/etc/shells`: the login shells a record may keep.
    pub shells: HashSet<String>,
    /// Names `sysusers.d` declares (users and groups a package creates,
    /// perhaps later): never a network account's.
    pub declared: HashSet<String>,
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
                if let Some(home) = fields.get(5).filter(|home| !home.is_empty()) {
                    local.homes.insert(normalize(home));
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

    /// Adds the login shells of an `/etc/shells` text.
    pub fn with_shells(mut self, shells: &str) -> Local {
        self.shells.extend(
            shells
                .lines()
                .map(str::trim)
                .filter(|line| line.starts_with('/'))
                .map(str::to_owned),
        );
        self
    }

    /// Adds the names one `sysusers.d` file declares: `u`, `g` and `m`
    /// lines (both names of an `m` line); `r` lines name nothing.
    pub fn with_sysusers(mut self, text: &str) -> Local {
        for line in text.lines() {
            let mut words = line.split_whitespace();
            let (Some(kind), Some(name)) = (words.next(), words.next()) else {
                continue;
            };
            match kind.trim_end_matches('!') {
                "u" | "g" => {
                    self.declared.insert(name.to_owned());
                }
                "m" => {
                    self.declared.insert(name.to_owned());
                    if let Some(group) = words.next() {
                        self.declared.insert(group.to_owned());
                    }
                }
                _ => {}
            }
        }
        self
    }
}

/// A path with its repeated and trailing slashes taken out, for comparing
/// homes (`/home//bob/` is `/home/bob`).
fn normalize(path: &str) -> String {
    let parts: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    format!("/{}", parts.join("/"))
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

/// What [`accept`] kept, one line per record it dropped, and one per
/// field the machine decided instead of the record (a home, a shell, a
/// gecos).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub directory: Directory,
    pub dropped: Vec<String>,
    pub adjusted: Vec<String>,
}

/// Why a whole directory is refused (the last good cache stays).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("not a directory document: {0}")]
    Malformed(String),
    #[error("more than {MAX_RECORDS} users or groups")]
    TooMany,
}

/// Why a name that [`name_ok`] allows may still not belong to a network
/// account on this machine: only digits (`chown 0` would pick it, as
/// `useradd` knows), or one of the names that mean privilege here.
fn name_refusal(name: &str, rules: &MachineRules, local: &Local) -> Option<&'static str> {
    if name.bytes().all(|b| b.is_ascii_digit()) {
        Some("a name made only of digits")
    } else if PRIVILEGED_NAMES.contains(&name)
        || rules.reserved_names.iter().any(|r| r == name)
        || local.declared.contains(name)
    {
        Some("a name reserved on this machine")
    } else {
        None
    }
}

/// The home a record may have: the authority's when it is exactly one
/// plain component below `home_prefix`, else `home_prefix/NAME`; and the
/// line saying why, when it is not the authority's.
fn home_for(user: &UserEntry, prefix: &str) -> (String, Option<String>) {
    let derived = format!("{prefix}/{}", user.name);
    let component = user
        .home
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('/'));
    let one_below = component.is_some_and(|c| {
        !c.is_empty() && c != "." && c != ".." && !c.contains('/') && c.chars().all(plain_char)
    });
    if one_below {
        (user.home.clone(), None)
    } else {
        let why = format!(
            "user {}: home {} is not one directory below {prefix}: {} instead",
            quote(&user.name),
            quote(&user.home),
            quote(&derived)
        );
        (derived, Some(why))
    }
}

/// Parses a body and applies the rules of docs/PROTOCOL.md and the
/// machine's own ([`MachineRules`]) to every record: each record that
/// breaks one is dropped with a line saying why, each field the machine
/// decides instead is replaced with a line saying why; the document as a
/// whole is refused only when it is not one.
pub fn accept(body: &[u8], rules: &MachineRules, local: &Local) -> Result<Accepted, Refused> {
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
    let ranges = rules.ranges;
    let mut dropped = Vec::new();
    let mut adjusted = Vec::new();
    let mut groups = Vec::new();
    let mut group_names = HashSet::new();
    let mut gids = HashSet::new();
    for group in document.groups {
        let why = if !name_ok(&group.name) {
            Some("a name the rules refuse")
        } else if local.groups.contains(&group.name) || local.gids.contains(&group.gid) {
            Some("a local group has that name or gid")
        } else if let Some(why) = name_refusal(&group.name, rules, local) {
            Some(why)
        } else if !(ranges.min_gid..=ranges.max_gid).contains(&group.gid) || group.gid == 0 {
            Some("gid outside the accepted range")
        } else if !group_names.insert(group.name.clone()) || !gids.insert(group.gid) {
            Some("a name or gid given twice")
        } else {
            None
        };
        match why {
            Some(why) => dropped.push(format!("group {}: dropped, {why}", quote(&group.name))),
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
        } else if let Some(why) = name_refusal(&user.name, rules, local) {
            Some(why)
        } else if !(ranges.min_uid..=ranges.max_uid).contains(&user.uid) || user.uid == 0 {
            Some("uid outside the accepted range")
        } else if !gids.contains(&user.gid) {
            Some("its primary gid is not an accepted group")
        } else if ![&user.gecos, &user.home, &user.shell]
            .iter()
            .all(|f| field_ok(f))
        {
            Some("a field the rules refuse")
        } else if user_names.contains(&user.name) || !uids.insert(user.uid) {
            Some("a name or uid given twice")
        } else {
            None
        };
        match why {
            Some(why) => dropped.push(format!("user {}: dropped, {why}", quote(&user.name))),
            None => {
                user_names.insert(user.name.clone());
                users.push(user);
            }
        }
    }
    // Homes: the machine's prefix, one directory each, never a local
    // account's or another record's.
    let prefix = &rules.home_prefix;
    let derived: HashSet<String> = users
        .iter()
        .map(|u| format!("{prefix}/{}", u.name))
        .collect();
    let mut homes = HashSet::new();
    let mut kept = Vec::with_capacity(users.len());
    for mut user in users {
        let (mut home, mut why) = home_for(&user, prefix);
        let own = format!("{prefix}/{}", user.name);
        let taken = derived.contains(&home) || local.homes.contains(&home) || homes.contains(&home);
        if home != own && taken {
            why = Some(format!(
                "user {}: home {} belongs to another account: {} instead",
                quote(&user.name),
                quote(&home),
                quote(&own)
            ));
            home = own;
        }
        if local.homes.contains(&home) || !homes.insert(home.clone()) {
            dropped.push(format!(
                "user {}: dropped, its home {} is another account's",
                quote(&user.name),
                quote(&home)
            ));
            user_names.remove(&user.name);
            continue;
        }
        adjusted.extend(why);
        user.home = home;
        if !local.shells.contains(&user.shell) {
            adjusted.push(format!(
                "user {}: shell {} is not in /etc/shells: {} instead",
                quote(&user.name),
                quote(&user.shell),
                quote(&rules.default_shell)
            ));
            user.shell = rules.default_shell.clone();
        }
        if user.gecos.chars().any(char::is_control) {
            adjusted.push(format!(
                "user {}: gecos holds control characters: left empty",
                quote(&user.name)
            ));
            user.gecos.clear();
        }
        kept.push(user);
    }
    // Members who are not accepted users are left out of their groups.
    for group in &mut groups {
        group.members.retain(|member| user_names.contains(member));
    }
    Ok(Accepted {
        directory: Directory {
            serial: document.serial,
            users: kept,
            groups,
        },
        dropped,
        adjusted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> MachineRules {
        MachineRules::default()
    }

    fn body(users: &str, groups: &str) -> Vec<u8> {
        format!("{{\"serial\":\"s1\",\"users\":[{users}],\"groups\":[{groups}]}}").into_bytes()
    }

    fn user(name: &str, uid: u32) -> String {
        user_with(name, uid, "", &format!("/home/{name}"), "/bin/bash")
    }

    fn user_with(name: &str, uid: u32, gecos: &str, home: &str, shell: &str) -> String {
        serde_json::json!({
            "name": name, "uid": uid, "gid": 10000, "gecos": gecos, "home": home, "shell": shell
        })
        .to_string()
    }

    const TEAM: &str = "{\"name\":\"team\",\"gid\":10000,\"members\":[\"carol\",\"ghost\"]}";

    fn machine() -> Local {
        Local::from_files(
            "root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/bash\n\
             svc:x:999:999::/home/service:/usr/sbin/nologin\n",
            "root:x:0:\nalice:x:1000:\n",
        )
        .with_shells("# /etc/shells\n/bin/sh\n/bin/bash\n/usr/bin/zsh\n")
    }

    fn accepted_users(accepted: &Accepted) -> Vec<(&str, &str, &str, &str)> {
        accepted
            .directory
            .users
            .iter()
            .map(|u| {
                (
                    u.name.as_str(),
                    u.home.as_str(),
                    u.shell.as_str(),
                    u.gecos.as_str(),
                )
            })
            .collect()
    }

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
        let accepted = accept(&body(&users, TEAM), &rules(), &local).unwrap();
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
            .any(|l| l.contains("\"alice\"") && l.contains("local")));
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
        assert!(accept(b"not json", &rules(), &local).is_err());
        assert!(accept(b"{\"serial\":\"s\",\"users\":[]}", &rules(), &local).is_err());
        let huge = vec![b' '; MAX_DIRECTORY_BYTES + 1];
        assert!(accept(&huge, &rules(), &local).is_err());
        let mut many = String::from("{\"serial\":\"s\",\"groups\":[],\"users\":[");
        many.push_str(&vec![user("u", 10_001); MAX_RECORDS + 1].join(","));
        many.push_str("]}");
        assert_eq!(
            accept(many.as_bytes(), &rules(), &local),
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
            &rules(),
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

    #[test]
    fn homes_stay_one_directory_below_the_prefix() {
        let hostile = [
            "/etc/systemd/system/cron.service.d",
            "/root",
            "/etc",
            "/home/../etc",
            "/home/./x",
            "/home//x",
            "/home/",
            "/home",
            "/home/x/y",
            "/homework/x",
            "relative",
            "/home/a\u{1b}b",
        ];
        let users: Vec<String> = hostile
            .iter()
            .enumerate()
            .map(|(i, home)| user_with(&format!("u{i}"), 10_001 + i as u32, "", home, "/bin/sh"))
            .collect();
        let accepted = accept(&body(&users.join(","), TEAM), &rules(), &machine()).unwrap();
        assert_eq!(
            accepted.directory.users.len(),
            hostile.len(),
            "{:?}",
            accepted.dropped
        );
        for user in &accepted.directory.users {
            assert_eq!(user.home, format!("/home/{}", user.name));
        }
        assert_eq!(accepted.adjusted.len(), hostile.len());
        assert!(accepted.adjusted[0].contains("not one directory below /home"));
        // One component below the prefix is the authority's to choose.
        let fine = user_with("carol", 10_001, "", "/home/carol.smith", "/bin/sh");
        let accepted = accept(&body(&fine, TEAM), &rules(), &machine()).unwrap();
        assert_eq!(accepted.directory.users[0].home, "/home/carol.smith");
        assert!(accepted.adjusted.is_empty());
        // Another prefix, set by the machine.
        let elsewhere = MachineRules {
            home_prefix: "/srv/homes".into(),
            ..rules()
        };
        let accepted = accept(&body(&fine, TEAM), &elsewhere, &machine()).unwrap();
        assert_eq!(accepted.directory.users[0].home, "/srv/homes/carol");
    }

    #[test]
    fn a_home_is_never_another_accounts() {
        let users = [
            // A local account's home, and another record's own.
            user_with("mallory", 10_001, "", "/home/alice", "/bin/sh"),
            user_with("eve", 10_002, "", "/home/carol", "/bin/sh"),
            user_with("carol", 10_003, "", "/home/carol", "/bin/sh"),
            user_with("dave", 10_004, "", "/home/shared", "/bin/sh"),
            user_with("erin", 10_005, "", "/home/shared", "/bin/sh"),
            // Its own home is a local account's: no home to give it.
            user_with("service", 10_006, "", "/home/service", "/bin/sh"),
        ]
        .join(",");
        let accepted = accept(&body(&users, TEAM), &rules(), &machine()).unwrap();
        let homes: Vec<_> = accepted_users(&accepted)
            .iter()
            .map(|(name, home, _, _)| format!("{name}={home}"))
            .collect();
        assert_eq!(
            homes,
            [
                "mallory=/home/mallory",
                "eve=/home/eve",
                "carol=/home/carol",
                "dave=/home/shared",
                "erin=/home/erin"
            ]
        );
        assert!(
            accepted.dropped[0].contains("\"service\""),
            "{:?}",
            accepted.dropped
        );
    }

    #[test]
    fn shells_not_in_etc_shells_become_the_default() {
        let users = [
            user_with("carol", 10_001, "", "/home/carol", "/usr/bin/zsh"),
            user_with("dave", 10_002, "", "/home/dave", "/tmp/evil"),
            user_with("erin", 10_003, "", "/home/erin", "/bin/../tmp/evil"),
        ]
        .join(",");
        let accepted = accept(&body(&users, TEAM), &rules(), &machine()).unwrap();
        let shells: Vec<_> = accepted_users(&accepted).iter().map(|u| u.2).collect();
        assert_eq!(shells, ["/usr/bin/zsh", "/bin/sh", "/bin/sh"]);
        assert_eq!(accepted.adjusted.len(), 2);
        let strict = MachineRules {
            default_shell: "/usr/sbin/nologin".into(),
            ..rules()
        };
        let accepted = accept(&body(&users, TEAM), &strict, &machine()).unwrap();
        assert_eq!(accepted.directory.users[1].shell, "/usr/sbin/nologin");
    }

    #[test]
    fn names_that_mean_privilege_are_never_served() {
        let local = machine().with_sysusers(
            "# sysusers.d\nu systemd-timesync - \"Time\"\ng! lpadmin2 -\nm carol kvm2\nr - 500-900\n",
        );
        let reserved = MachineRules {
            reserved_names: vec!["payroll".into()],
            ..rules()
        };
        let groups = [
            "docker", "lxd", "libvirt", "kvm", "wheel", "sudo", "kvm2", "lpadmin2", "payroll",
            "1234", "team",
        ]
        .iter()
        .enumerate()
        .map(|(i, name)| {
            serde_json::json!({"name": name, "gid": 10_000 + i as u32, "members": ["dave"]})
                .to_string()
        })
        .collect::<Vec<_>>()
        .join(",");
        let users = [
            user("0", 10_001),
            user("1000", 10_002),
            user("systemd-timesync", 10_003),
            user("payroll", 10_004),
            user("adm", 10_005),
            user("dave", 10_006),
        ]
        .join(",");
        let accepted = accept(&body(&users, &groups), &reserved, &local).unwrap();
        let groups: Vec<_> = accepted
            .directory
            .groups
            .iter()
            .map(|g| g.name.as_str())
            .collect();
        // gid 10000 ("docker") is dropped, so the users' primary group is gone:
        // only "team" (gid 10010) is left, and nobody has it as primary.
        assert_eq!(groups, ["team"]);
        assert!(
            accepted.directory.users.is_empty(),
            "{:?}",
            accepted.directory.users
        );
        assert_eq!(accepted.dropped.len(), 10 + 6, "{:?}", accepted.dropped);
        assert!(accepted
            .dropped
            .iter()
            .any(|l| l.contains("\"0\"") && l.contains("only of digits")));
        assert!(accepted
            .dropped
            .iter()
            .any(|l| l.contains("\"kvm2\"") && l.contains("reserved")));
    }

    #[test]
    fn gecos_with_control_characters_is_left_empty() {
        for bad in ["a\tb", "a\u{7f}", "a\u{85}b", "\u{1b}[31mred"] {
            let one = user_with("carol", 10_001, bad, "/home/carol", "/bin/sh");
            let accepted = accept(&body(&one, TEAM), &rules(), &machine()).unwrap();
            assert_eq!(accepted.directory.users[0].gecos, "", "{bad:?}");
            assert_eq!(accepted.adjusted.len(), 1);
        }
        let fine = user_with(
            "carol",
            10_001,
            "Carol Doe, Room 4",
            "/home/carol",
            "/bin/sh",
        );
        let accepted = accept(&body(&fine, TEAM), &rules(), &machine()).unwrap();
        assert_eq!(accepted.directory.users[0].gecos, "Carol Doe, Room 4");
    }

    #[test]
    fn members_are_accepted_users_only() {
        // dave is dropped for carol's uid: he is in no group's list.
        let users = [user("carol", 10_001), user("dave", 10_001)].join(",");
        let team = "{\"name\":\"team\",\"gid\":10000,\"members\":[\"carol\",\"dave\"]}";
        let accepted = accept(&body(&users, team), &rules(), &machine()).unwrap();
        assert_eq!(accepted.directory.groups[0].members, ["carol"]);
    }

    #[test]
    fn prefixes_and_shells_in_the_config_must_be_clean_paths() {
        for good in ["/home", "/srv/homes", "/bin/sh"] {
            assert!(clean_absolute_path(good), "{good}");
        }
        for bad in [
            "",
            "/",
            "home",
            "/home/",
            "/home//x",
            "/home/../etc",
            "/./x",
            "/a:b",
            "/a\nb",
        ] {
            assert!(!clean_absolute_path(bad), "{bad:?}");
        }
    }
}
