//! The NSS cache: what `authtoken sync` writes and `libnss_authtoken.so.2`
//! reads (issue 23). One file, replaced whole by an atomic rename, so a
//! reader always sees one consistent snapshot:
//!
//! ```text
//! authtoken-nss 1 serial=SERIAL synced=UNIX users=N groups=M
//! passwd=OFFSET:LENGTH byuid=OFFSET:LENGTH group=OFFSET:LENGTH bygid=OFFSET:LENGTH bymember=OFFSET:LENGTH
//! <sections>
//! ```
//!
//! Each section is `passwd`/`group`-format lines sorted by its key (name
//! bytes, or the numeric id), so a lookup is a binary search of `pread`s
//! over the file: about log2(N) small reads, no parsing of the whole file,
//! no allocation proportional to it, and no `mmap` (a truncated mapping
//! would raise SIGBUS in somebody else's process). The password field is
//! `*`: with `x`, pam_unix's account check looks for a shadow entry that
//! does not exist.
//!
//! - `passwd`, `byuid`: `name:*:uid:gid:gecos:home:shell`
//! - `group`, `bygid`: `name:*:gid:member,member`
//! - `bymember`: `member:gid,gid` (for `initgroups`)

use std::fs::File;
use std::os::unix::fs::FileExt;

use crate::Directory;

/// The format's first word and version.
const MAGIC: &str = "authtoken-nss 1";
/// Longest header read.
const MAX_HEADER_BYTES: usize = 1024;

/// The sections, in file order.
const SECTIONS: [&str; 5] = ["passwd", "byuid", "group", "bygid", "bymember"];

/// Renders `directory` (already accepted, see [`crate::accept`])
/// as the cache file's bytes.
pub fn render(directory: &Directory, synced_unix: u64) -> Vec<u8> {
    let passwd_line = |u: &crate::UserEntry| {
        format!(
            "{}:*:{}:{}:{}:{}:{}\n",
            u.name, u.uid, u.gid, u.gecos, u.home, u.shell
        )
    };
    let group_line =
        |g: &crate::GroupEntry| format!("{}:*:{}:{}\n", g.name, g.gid, g.members.join(","));
    let mut users: Vec<_> = directory.users.iter().collect();
    users.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    let passwd: String = users.iter().map(|u| passwd_line(u)).collect();
    users.sort_by_key(|u| u.uid);
    let byuid: String = users.iter().map(|u| passwd_line(u)).collect();
    let mut groups: Vec<_> = directory.groups.iter().collect();
    groups.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    let group: String = groups.iter().map(|g| group_line(g)).collect();
    groups.sort_by_key(|g| g.gid);
    let bygid: String = groups.iter().map(|g| group_line(g)).collect();
    let mut members: std::collections::BTreeMap<&[u8], Vec<u32>> = Default::default();
    for g in &directory.groups {
        for member in &g.members {
            members.entry(member.as_bytes()).or_default().push(g.gid);
        }
    }
    let bymember: String = members
        .iter()
        .map(|(member, gids)| {
            let gids: Vec<String> = gids.iter().map(u32::to_string).collect();
            format!("{}:{}\n", String::from_utf8_lossy(member), gids.join(","))
        })
        .collect();
    let bodies = [passwd, byuid, group, bygid, bymember];
    let first = format!(
        "{MAGIC} serial={} synced={synced_unix} users={} groups={}\n",
        directory.serial,
        directory.users.len(),
        directory.groups.len()
    );
    // The header's own length depends on the offsets: widths are fixed
    // (20 digits) so it can be laid out first.
    let mut offset = first.len();
    let mut table = String::new();
    let second_len = SECTIONS
        .iter()
        .map(|name| name.len() + 1 + 20 + 1 + 20 + 1)
        .sum::<usize>();
    offset += second_len;
    for (name, body) in SECTIONS.iter().zip(&bodies) {
        let sep = if *name == "bymember" { '\n' } else { ' ' };
        table.push_str(&format!("{name}={offset:020}:{:020}{sep}", body.len()));
        offset += body.len();
    }
    let mut out = Vec::with_capacity(offset);
    out.extend_from_slice(first.as_bytes());
    out.extend_from_slice(table.as_bytes());
    for body in &bodies {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

/// A section's place in the file.
#[derive(Debug, Clone, Copy, Default)]
struct Range {
    start: u64,
    len: u64,
}

/// The sections, by what they are sorted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// `passwd` lines by name (also the enumeration order).
    Passwd = 0,
    ByUid = 1,
    /// `group` lines by name (also the enumeration order).
    Group = 2,
    ByGid = 3,
    ByMember = 4,
}

/// Longest line a lookup reads: a group of some 50,000 members.
pub const MAX_LINE_BYTES: usize = 1024 * 1024;
/// The first read of a line; longer lines are read again, larger.
const FIRST_READ_BYTES: usize = 4096;

/// An open cache, for lookups.
pub struct Reader {
    file: File,
    ranges: [Range; 5],
    pub serial: String,
    pub synced: u64,
    pub users: u64,
    pub groups: u64,
}

/// How a key compares with a line's.
#[derive(Clone, Copy)]
enum Key<'a> {
    Name(&'a [u8]),
    Id(u32),
}

/// The owner a cache must have to be believed: root, who alone writes it.
pub const OWNER: u32 = 0;

/// Whether an open file may be believed as the cache: a regular file
/// (never a FIFO or a device) owned by `owner` that neither its group nor
/// anyone else may write. Asked of the descriptor (`fstat`), so nothing
/// can be swapped in between the check and the reads.
fn trusted(file: &File, owner: u32) -> bool {
    use std::os::unix::fs::MetadataExt;
    file.metadata()
        .is_ok_and(|m| m.file_type().is_file() && m.uid() == owner && m.mode() & 0o022 == 0)
}

impl Reader {
    /// Opens the cache at `path`; `None` if it is missing, not root's
    /// alone (see [`Reader::from_file`]) or not ours.
    pub fn open(path: &std::path::Path) -> Option<Reader> {
        Reader::open_owned_by(path, OWNER)
    }

    /// [`Reader::open`] for a cache `owner` wrote (tests, tools run by a
    /// user on their own copy).
    pub fn open_owned_by(path: &std::path::Path, owner: u32) -> Option<Reader> {
        use std::os::unix::fs::OpenOptionsExt;
        // Non-blocking: a FIFO put in its place must not hang the caller
        // (the NSS module runs in every process that looks up a user).
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(path)
            .ok()?;
        Reader::from_file(file, owner)
    }

    /// Reads the header of an open cache; `None` if it is not a regular
    /// file of `owner`'s that only `owner` may write, or not ours.
    pub fn from_file(file: File, owner: u32) -> Option<Reader> {
        if !trusted(&file, owner) {
            return None;
        }
        let mut head = [0u8; MAX_HEADER_BYTES];
        let n = file.read_at(&mut head, 0).ok()?;
        let text = std::str::from_utf8(head.get(..n)?).ok()?;
        let mut lines = text.splitn(3, '\n');
        let first = lines.next()?;
        let second = lines.next()?;
        let mut words = first.split(' ');
        if words.next()? != "authtoken-nss" || words.next()? != "1" {
            return None;
        }
        let (mut serial, mut synced, mut users, mut groups) = (String::new(), 0, 0, 0);
        for word in words {
            let (key, value) = word.split_once('=')?;
            match key {
                "serial" => serial = value.to_owned(),
                "synced" => synced = value.parse().ok()?,
                "users" => users = value.parse().ok()?,
                "groups" => groups = value.parse().ok()?,
                _ => {}
            }
        }
        let mut ranges = [Range::default(); 5];
        for entry in second.split(' ') {
            let (name, place) = entry.split_once('=')?;
            let (start, len) = place.split_once(':')?;
            let index = SECTIONS.iter().position(|s| *s == name)?;
            let range = Range {
                start: start.parse().ok()?,
                len: len.parse().ok()?,
            };
            range.start.checked_add(range.len)?;
            ranges[index] = range;
        }
        Some(Reader {
            file,
            ranges,
            serial,
            synced,
            users,
            groups,
        })
    }

    /// The line starting at `at` (within `range`), and where the next one
    /// starts. A line without its newline (a cut file) is no line.
    fn line_at(&self, range: Range, at: u64) -> Option<(Vec<u8>, u64)> {
        let end = range.start + range.len;
        let mut want = FIRST_READ_BYTES;
        loop {
            if at >= end {
                return None;
            }
            let left = usize::try_from(end - at).unwrap_or(usize::MAX);
            let size = want.min(left);
            let mut buf = vec![0u8; size];
            let n = self.file.read_at(&mut buf, at).ok()?;
            if let Some(newline) = buf[..n].iter().position(|b| *b == b'\n') {
                buf.truncate(newline);
                return Some((buf, at + newline as u64 + 1));
            }
            if n < size || size == left || want >= MAX_LINE_BYTES {
                return None;
            }
            want = (want * 8).min(MAX_LINE_BYTES);
        }
    }

    /// The start of the line containing `at`.
    fn line_start(&self, range: Range, at: u64, buf: &mut [u8]) -> Option<u64> {
        let mut end = at;
        // Bounded: each step moves back by a whole buffer.
        for _ in 0..=(MAX_LINE_BYTES / buf.len().max(1)) {
            if end <= range.start {
                return Some(range.start);
            }
            let from = end.saturating_sub(buf.len() as u64).max(range.start);
            let n = (end - from) as usize;
            let read = self.file.read_at(&mut buf[..n], from).ok()?;
            if read != n {
                return None;
            }
            if let Some(i) = buf[..n].iter().rposition(|b| *b == b'\n') {
                return Some(from + i as u64 + 1);
            }
            end = from;
        }
        None
    }

    fn compare(line: &[u8], field: usize, key: Key<'_>) -> Option<std::cmp::Ordering> {
        let value = line.split(|b| *b == b':').nth(field)?;
        Some(match key {
            Key::Name(name) => value.cmp(name),
            Key::Id(id) => parse_id(value)?.cmp(&id),
        })
    }

    /// Binary search of `section` for the line whose field `field` equals
    /// `key`.
    fn find(&self, section: Section, field: usize, key: Key<'_>) -> Option<Vec<u8>> {
        let range = self.ranges[section as usize];
        let mut buf = vec![0u8; FIRST_READ_BYTES];
        let (mut low, mut high) = (range.start, range.start + range.len);
        // At most 64 probes: the range halves each time.
        for _ in 0..64 {
            if low >= high {
                return None;
            }
            let middle = low + (high - low) / 2;
            let start = self.line_start(range, middle, &mut buf)?;
            let (line, next) = self.line_at(range, start)?;
            match Reader::compare(&line, field, key)? {
                std::cmp::Ordering::Equal => return Some(line),
                std::cmp::Ordering::Less => low = next,
                std::cmp::Ordering::Greater => high = start,
            }
        }
        None
    }

    /// The line at `cursor` (0 is the first) of `section`, and the cursor
    /// of the next: enumeration (`getpwent`, `getgrent`).
    pub fn entry(&self, section: Section, cursor: u64) -> Option<(Vec<u8>, u64)> {
        let range = self.ranges[section as usize];
        let at = range.start.checked_add(cursor)?;
        let (line, next) = self.line_at(range, at)?;
        Some((line, next - range.start))
    }

    /// `passwd` line of the user `name`.
    pub fn user_by_name(&self, name: &[u8]) -> Option<Vec<u8>> {
        self.find(Section::Passwd, 0, Key::Name(name))
    }

    pub fn user_by_uid(&self, uid: u32) -> Option<Vec<u8>> {
        self.find(Section::ByUid, 2, Key::Id(uid))
    }

    pub fn group_by_name(&self, name: &[u8]) -> Option<Vec<u8>> {
        self.find(Section::Group, 0, Key::Name(name))
    }

    pub fn group_by_gid(&self, gid: u32) -> Option<Vec<u8>> {
        self.find(Section::ByGid, 2, Key::Id(gid))
    }

    /// The supplementary gids of `member`.
    pub fn groups_of(&self, member: &[u8]) -> Vec<u32> {
        self.find(Section::ByMember, 0, Key::Name(member))
            .and_then(|line| {
                let mut fields = line.split(|b| *b == b':');
                let (_member, gids) = (fields.next()?, fields.next()?);
                gids.split(|b| *b == b',').map(parse_id).collect()
            })
            .unwrap_or_default()
    }
}

/// A decimal id, as written in a cache line.
fn parse_id(text: &[u8]) -> Option<u32> {
    std::str::from_utf8(text).ok()?.parse().ok()
}

/// The fields of a `passwd` line of the cache.
#[derive(Debug, PartialEq, Eq)]
pub struct Passwd<'a> {
    pub name: &'a [u8],
    pub uid: u32,
    pub gid: u32,
    pub gecos: &'a [u8],
    pub home: &'a [u8],
    pub shell: &'a [u8],
}

impl<'a> Passwd<'a> {
    pub fn parse(line: &'a [u8]) -> Option<Passwd<'a>> {
        let mut fields = line.split(|b| *b == b':');
        let name = fields.next()?;
        let _password = fields.next()?;
        let passwd = Passwd {
            name,
            uid: parse_id(fields.next()?)?,
            gid: parse_id(fields.next()?)?,
            gecos: fields.next()?,
            home: fields.next()?,
            shell: fields.next()?,
        };
        fields.next().is_none().then_some(passwd)
    }
}

/// The fields of a `group` line of the cache.
#[derive(Debug, PartialEq, Eq)]
pub struct Group<'a> {
    pub name: &'a [u8],
    pub gid: u32,
    /// Comma-separated names (empty: none).
    pub members: &'a [u8],
}

impl<'a> Group<'a> {
    pub fn parse(line: &'a [u8]) -> Option<Group<'a>> {
        let mut fields = line.split(|b| *b == b':');
        let name = fields.next()?;
        let _password = fields.next()?;
        let group = Group {
            name,
            gid: parse_id(fields.next()?)?,
            members: fields.next()?,
        };
        fields.next().is_none().then_some(group)
    }

    pub fn member_names(&self) -> impl Iterator<Item = &'a [u8]> {
        self.members.split(|b| *b == b',').filter(|m| !m.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{GroupEntry, UserEntry};

    fn directory(n: u32) -> Directory {
        let users = (0..n)
            .map(|i| UserEntry {
                name: format!("user{i:06}x{}", (i * 7919) % 1000),
                uid: 10_000 + (i * 31) % n.max(1) * 3 + i % 3,
                gid: 10_000,
                gecos: format!("User {i}"),
                home: format!("/home/u{i}"),
                shell: "/bin/bash".into(),
            })
            .collect::<Vec<_>>();
        let groups = vec![
            GroupEntry {
                name: "staff".into(),
                gid: 10_000,
                members: users.iter().take(3).map(|u| u.name.clone()).collect(),
            },
            GroupEntry {
                name: "ops".into(),
                gid: 10_001,
                members: vec![users[1].name.clone()],
            },
        ];
        Directory {
            serial: "abc".into(),
            users,
            groups,
        }
    }

    fn me() -> u32 {
        nix::unistd::geteuid().as_raw()
    }

    /// Writes a cache as sync does: 0644, whatever the umask.
    fn write_cache(path: &std::path::Path, bytes: &[u8]) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(path, bytes).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
    }

    fn written(directory: &Directory) -> (tempfile::TempDir, Reader) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache");
        write_cache(&path, &render(directory, 1_700_000_000));
        let reader = Reader::open_owned_by(&path, me()).unwrap();
        (dir, reader)
    }

    #[test]
    fn only_a_regular_file_its_owner_alone_may_write_is_believed() {
        use std::os::unix::fs::PermissionsExt;
        let bytes = render(&directory(3), 1);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache");
        write_cache(&path, &bytes);
        assert!(Reader::open_owned_by(&path, me()).is_some());
        // Another owner's: never, whoever asks.
        assert!(Reader::open_owned_by(&path, me().wrapping_add(1)).is_none());
        if me() != OWNER {
            assert!(Reader::open(&path).is_none(), "not root's");
        }
        for mode in [0o664, 0o646, 0o666] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            assert!(Reader::open_owned_by(&path, me()).is_none(), "{mode:o}");
        }
        // A FIFO in its place answers nothing, at once (no writer ever comes).
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
        assert!(Reader::open_owned_by(&fifo, me()).is_none());
    }

    #[test]
    fn every_user_and_group_is_found_by_name_and_by_id() {
        let directory = directory(1000);
        let (_dir, reader) = written(&directory);
        assert_eq!(
            (reader.serial.as_str(), reader.synced),
            ("abc", 1_700_000_000)
        );
        for user in &directory.users {
            let line = reader.user_by_name(user.name.as_bytes()).expect(&user.name);
            let text = String::from_utf8(line).unwrap();
            assert!(
                text.starts_with(&format!("{}:*:{}:", user.name, user.uid)),
                "{text}"
            );
            let by_id = reader.user_by_uid(user.uid).unwrap();
            assert!(String::from_utf8(by_id)
                .unwrap()
                .contains(&format!(":*:{}:", user.uid)));
        }
        assert!(reader.user_by_name(b"nobody-here").is_none());
        assert!(reader.user_by_name(b"").is_none());
        assert!(reader.user_by_uid(9_999).is_none());
        assert_eq!(
            String::from_utf8(reader.group_by_name(b"ops").unwrap()).unwrap(),
            format!("ops:*:10001:{}", directory.users[1].name)
        );
        assert!(reader.group_by_gid(10_000).is_some());
        assert_eq!(
            reader.groups_of(directory.users[1].name.as_bytes()),
            [10_000, 10_001]
        );
        assert!(reader.groups_of(b"nobody-here").is_empty());
        assert_eq!((reader.users, reader.groups), (1000, 2));
    }

    #[test]
    fn enumeration_visits_every_entry_once_in_name_order() {
        let directory = directory(300);
        let (_dir, reader) = written(&directory);
        let mut names = Vec::new();
        let mut cursor = 0;
        while let Some((line, next)) = reader.entry(Section::Passwd, cursor) {
            let entry = Passwd::parse(&line).unwrap();
            names.push(String::from_utf8(entry.name.to_vec()).unwrap());
            cursor = next;
        }
        let mut expected: Vec<_> = directory.users.iter().map(|u| u.name.clone()).collect();
        expected.sort();
        assert_eq!(names, expected);
        let (line, next) = reader.entry(Section::Group, 0).unwrap();
        assert_eq!(Group::parse(&line).unwrap().name, b"ops");
        let (line, _) = reader.entry(Section::Group, next).unwrap();
        let staff = Group::parse(&line).unwrap();
        assert_eq!(staff.member_names().count(), 3);
    }

    #[test]
    fn a_group_larger_than_one_read_is_found_whole() {
        let mut directory = directory(20_000);
        directory.groups[0].members = directory.users.iter().map(|u| u.name.clone()).collect();
        let (_dir, reader) = written(&directory);
        let line = reader.group_by_name(b"staff").unwrap();
        assert!(line.len() > 200_000);
        assert_eq!(Group::parse(&line).unwrap().member_names().count(), 20_000);
        assert!(
            reader.group_by_gid(10_001).is_some(),
            "the next line is intact"
        );
        let first = directory.users[0].name.as_bytes();
        assert_eq!(reader.groups_of(first), [10_000]);
    }

    #[test]
    fn lines_parse_into_their_fields_or_not_at_all() {
        let user = Passwd::parse(b"carol:*:10001:10001:Carol C:/home/carol:/bin/bash").unwrap();
        assert_eq!(
            (user.name, user.uid, user.gid),
            (&b"carol"[..], 10_001, 10_001)
        );
        assert_eq!(user.shell, b"/bin/bash");
        assert!(Passwd::parse(b"carol:*:10001:10001:Carol:/home/carol").is_none());
        assert!(Passwd::parse(b"carol:*:-1:10001:Carol:/home/carol:/bin/sh").is_none());
        assert!(Passwd::parse(b"carol:*:1:1:C:/h:/s:extra").is_none());
        let group = Group::parse(b"staff:*:10100:carol,dave").unwrap();
        assert_eq!(
            group.member_names().collect::<Vec<_>>(),
            [&b"carol"[..], b"dave"]
        );
        assert_eq!(
            Group::parse(b"solo:*:10101:")
                .unwrap()
                .member_names()
                .count(),
            0
        );
        assert!(Group::parse(b"solo:*:x:").is_none());
    }

    #[test]
    fn a_cut_file_answers_only_what_is_whole() {
        let directory = directory(100);
        let bytes = render(&directory, 1);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache");
        for cut in [10, 200, bytes.len() / 2, bytes.len() - 1] {
            write_cache(&path, &bytes[..cut]);
            if let Some(reader) = Reader::open_owned_by(&path, me()) {
                for user in &directory.users {
                    if let Some(line) = reader.user_by_name(user.name.as_bytes()) {
                        assert!(Passwd::parse(&line).is_some());
                    }
                }
                let mut cursor = 0;
                for _ in 0..1000 {
                    match reader.entry(Section::Passwd, cursor) {
                        Some((_, next)) => cursor = next,
                        None => break,
                    }
                }
            }
        }
    }

    #[test]
    fn an_empty_directory_and_a_foreign_file_answer_nothing() {
        let (_dir, reader) = written(&Directory {
            serial: "s".into(),
            users: vec![],
            groups: vec![],
        });
        assert!(reader.user_by_name(b"a").is_none());
        assert!(reader.group_by_gid(1).is_none());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache");
        write_cache(&path, b"root:x:0:0:root:/root:/bin/bash\n");
        assert!(Reader::open_owned_by(&path, me()).is_none());
        assert!(Reader::open_owned_by(&dir.path().join("missing"), me()).is_none());
    }
}
