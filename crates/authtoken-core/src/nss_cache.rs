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

use crate::directory::Directory;

/// The format's first word and version.
const MAGIC: &str = "authtoken-nss 1";
/// Longest header read.
const MAX_HEADER_BYTES: usize = 1024;
/// Longest line a lookup reads.
pub const MAX_LINE_BYTES: usize = 4096;

/// The sections, in file order.
const SECTIONS: [&str; 5] = ["passwd", "byuid", "group", "bygid", "bymember"];

/// Renders `directory` (already accepted, see [`crate::directory::accept`])
/// as the cache file's bytes.
pub fn render(directory: &Directory, synced_unix: u64) -> Vec<u8> {
    let passwd_line = |u: &crate::directory::UserEntry| {
        format!(
            "{}:*:{}:{}:{}:{}:{}\n",
            u.name, u.uid, u.gid, u.gecos, u.home, u.shell
        )
    };
    let group_line = |g: &crate::directory::GroupEntry| {
        format!("{}:*:{}:{}\n", g.name, g.gid, g.members.join(","))
    };
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

/// An open cache, for lookups.
pub struct Reader {
    file: File,
    ranges: [Range; 5],
    pub serial: String,
    pub synced: u64,
}

/// How a key compares with a line's.
#[derive(Clone, Copy)]
enum Key<'a> {
    Name(&'a [u8]),
    Id(u32),
}

impl Reader {
    /// Opens the cache at `path`; `None` if it is missing or not ours.
    pub fn open(path: &std::path::Path) -> Option<Reader> {
        let file = File::open(path).ok()?;
        let mut head = [0u8; MAX_HEADER_BYTES];
        let n = file.read_at(&mut head, 0).ok()?;
        let text = std::str::from_utf8(&head[..n]).ok()?;
        let mut lines = text.splitn(3, '\n');
        let first = lines.next()?;
        let second = lines.next()?;
        let mut words = first.split(' ');
        if words.next()? != "authtoken-nss" || words.next()? != "1" {
            return None;
        }
        let mut serial = String::new();
        let mut synced = 0;
        for word in words {
            if let Some(value) = word.strip_prefix("serial=") {
                serial = value.to_owned();
            } else if let Some(value) = word.strip_prefix("synced=") {
                synced = value.parse().ok()?;
            }
        }
        let mut ranges = [Range::default(); 5];
        for entry in second.split(' ') {
            let (name, place) = entry.split_once('=')?;
            let (start, len) = place.split_once(':')?;
            let index = SECTIONS.iter().position(|s| *s == name)?;
            ranges[index] = Range {
                start: start.parse().ok()?,
                len: len.parse().ok()?,
            };
        }
        Some(Reader {
            file,
            ranges,
            serial,
            synced,
        })
    }

    /// The line starting at or after `at` (within `range`), and where the
    /// next one starts.
    fn line_at(&self, range: Range, at: u64, buf: &mut [u8]) -> Option<(Vec<u8>, u64)> {
        let end = range.start + range.len;
        if at >= end {
            return None;
        }
        let want = buf.len().min((end - at) as usize);
        let n = self.file.read_at(&mut buf[..want], at).ok()?;
        let newline = buf[..n].iter().position(|b| *b == b'\n')?;
        Some((buf[..newline].to_vec(), at + newline as u64 + 1))
    }

    /// The start of the line containing `at`.
    fn line_start(&self, range: Range, at: u64, buf: &mut [u8]) -> Option<u64> {
        let mut end = at;
        loop {
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
    }

    fn compare(line: &[u8], field: usize, key: Key<'_>) -> Option<std::cmp::Ordering> {
        let value = line.split(|b| *b == b':').nth(field)?;
        Some(match key {
            Key::Name(name) => value.cmp(name),
            Key::Id(id) => std::str::from_utf8(value)
                .ok()?
                .parse::<u32>()
                .ok()?
                .cmp(&id),
        })
    }

    /// Binary search of section `index` for the line whose field `field`
    /// equals `key`.
    fn find(&self, index: usize, field: usize, key: Key<'_>) -> Option<Vec<u8>> {
        let range = self.ranges[index];
        let mut buf = vec![0u8; MAX_LINE_BYTES];
        let (mut low, mut high) = (range.start, range.start + range.len);
        // At most 64 probes: the range halves each time.
        for _ in 0..64 {
            if low >= high {
                return None;
            }
            let middle = low + (high - low) / 2;
            let start = self.line_start(range, middle, &mut buf)?;
            let (line, next) = self.line_at(range, start, &mut buf)?;
            match Reader::compare(&line, field, key)? {
                std::cmp::Ordering::Equal => return Some(line),
                std::cmp::Ordering::Less => low = next,
                std::cmp::Ordering::Greater => high = start,
            }
        }
        None
    }

    /// `passwd` line of the user `name`.
    pub fn user_by_name(&self, name: &str) -> Option<Vec<u8>> {
        self.find(0, 0, Key::Name(name.as_bytes()))
    }

    pub fn user_by_uid(&self, uid: u32) -> Option<Vec<u8>> {
        self.find(1, 2, Key::Id(uid))
    }

    pub fn group_by_name(&self, name: &str) -> Option<Vec<u8>> {
        self.find(2, 0, Key::Name(name.as_bytes()))
    }

    pub fn group_by_gid(&self, gid: u32) -> Option<Vec<u8>> {
        self.find(3, 2, Key::Id(gid))
    }

    /// The supplementary gids of `member`.
    pub fn groups_of(&self, member: &str) -> Vec<u32> {
        self.find(4, 0, Key::Name(member.as_bytes()))
            .and_then(|line| {
                let text = String::from_utf8(line).ok()?;
                let (_, gids) = text.split_once(':')?;
                Some(gids.split(',').filter_map(|g| g.parse().ok()).collect())
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::{GroupEntry, UserEntry};

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

    fn written(directory: &Directory) -> (tempfile::TempDir, Reader) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache");
        std::fs::write(&path, render(directory, 1_700_000_000)).unwrap();
        let reader = Reader::open(&path).unwrap();
        (dir, reader)
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
            let line = reader.user_by_name(&user.name).expect(&user.name);
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
        assert!(reader.user_by_name("nobody-here").is_none());
        assert!(reader.user_by_name("").is_none());
        assert!(reader.user_by_uid(9_999).is_none());
        assert_eq!(
            String::from_utf8(reader.group_by_name("ops").unwrap()).unwrap(),
            format!("ops:*:10001:{}", directory.users[1].name)
        );
        assert!(reader.group_by_gid(10_000).is_some());
        assert_eq!(reader.groups_of(&directory.users[1].name), [10_000, 10_001]);
        assert!(reader.groups_of("nobody-here").is_empty());
    }

    #[test]
    fn an_empty_directory_and_a_foreign_file_answer_nothing() {
        let (_dir, reader) = written(&Directory {
            serial: "s".into(),
            users: vec![],
            groups: vec![],
        });
        assert!(reader.user_by_name("a").is_none());
        assert!(reader.group_by_gid(1).is_none());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache");
        std::fs::write(&path, "root:x:0:0:root:/root:/bin/bash\n").unwrap();
        assert!(Reader::open(&path).is_none());
        assert!(Reader::open(&dir.path().join("missing")).is_none());
    }
}
