//! Records laid out in the caller's buffer, the way glibc's `*_r`
//! functions want them: every string NUL-terminated inside `buf`, the
//! group's member list an aligned, NULL-terminated array of pointers into
//! it. All of it is safe code over `&mut [u8]`; [`crate::ffi`] only turns
//! the offsets into pointers.

use authtoken_directory::nss_cache::{Group, Passwd, Reader};

/// Why a record is not laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayoutError {
    /// The caller's buffer is too small: glibc retries with a larger one
    /// (`ERANGE`).
    TooSmall,
    /// The cache line is not a record (a damaged cache).
    Malformed,
    /// A record with uid or gid 0: root is the machine's own, never the
    /// directory's, whatever the cache says.
    Root,
}

/// Appends NUL-terminated strings to a buffer.
struct Packer<'a> {
    buf: &'a mut [u8],
    used: usize,
}

impl Packer<'_> {
    fn string(&mut self, bytes: &[u8]) -> Result<usize, LayoutError> {
        let at = self.used;
        let end = at
            .checked_add(bytes.len())
            .filter(|end| *end < self.buf.len())
            .ok_or(LayoutError::TooSmall)?;
        self.buf[at..end].copy_from_slice(bytes);
        self.buf[end] = 0;
        self.used = end + 1;
        Ok(at)
    }
}

/// A `struct passwd` as offsets into the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswdAt {
    pub name: usize,
    pub passwd: usize,
    pub uid: u32,
    pub gid: u32,
    pub gecos: usize,
    pub dir: usize,
    pub shell: usize,
}

/// Lays out a `passwd` line of the cache in `buf`. The password field is
/// `*`, never `x`: there is no shadow entry to look for.
pub fn passwd(line: &[u8], buf: &mut [u8]) -> Result<PasswdAt, LayoutError> {
    let entry = Passwd::parse(line).ok_or(LayoutError::Malformed)?;
    if entry.uid == 0 || entry.gid == 0 {
        return Err(LayoutError::Root);
    }
    let mut packer = Packer { buf, used: 0 };
    Ok(PasswdAt {
        name: packer.string(entry.name)?,
        passwd: packer.string(b"*")?,
        uid: entry.uid,
        gid: entry.gid,
        gecos: packer.string(entry.gecos)?,
        dir: packer.string(entry.home)?,
        shell: packer.string(entry.shell)?,
    })
}

/// A `struct group` as offsets into the buffer; `members` is where the
/// pointer array starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupAt {
    pub name: usize,
    pub passwd: usize,
    pub gid: u32,
    pub members: usize,
}

/// Lays out a `group` line in `buf`, whose first byte is at address `base`
/// (so the pointer array can be aligned and its pointers written).
pub fn group(line: &[u8], buf: &mut [u8], base: usize) -> Result<GroupAt, LayoutError> {
    const POINTER: usize = std::mem::size_of::<usize>();
    let entry = Group::parse(line).ok_or(LayoutError::Malformed)?;
    if entry.gid == 0 {
        return Err(LayoutError::Root);
    }
    let names: Vec<&[u8]> = entry.member_names().collect();
    // The array first, aligned for pointers, then the strings.
    let array = base.next_multiple_of(POINTER) - base;
    let array_bytes = (names.len() + 1)
        .checked_mul(POINTER)
        .ok_or(LayoutError::TooSmall)?;
    let strings = array
        .checked_add(array_bytes)
        .filter(|end| *end <= buf.len())
        .ok_or(LayoutError::TooSmall)?;
    let (head, tail) = buf.split_at_mut(strings);
    let mut packer = Packer { buf: tail, used: 0 };
    let name = strings + packer.string(entry.name)?;
    let passwd = strings + packer.string(b"*")?;
    for (i, member) in names.iter().enumerate() {
        let at = strings + packer.string(member)?;
        let slot = array + i * POINTER;
        head[slot..slot + POINTER].copy_from_slice(&(base + at).to_ne_bytes());
    }
    let last = array + names.len() * POINTER;
    head[last..last + POINTER].copy_from_slice(&0usize.to_ne_bytes());
    Ok(GroupAt {
        name,
        passwd,
        gid: entry.gid,
        members: array,
    })
}

/// The supplementary groups `initgroups` adds for `user` from the cache:
/// not `primary` (the caller has it), not those already in `held`, and
/// never gid 0.
pub fn groups_to_add(reader: &Reader, user: &[u8], primary: u32, held: &[u32]) -> Vec<u32> {
    let mut out: Vec<u32> = Vec::new();
    for gid in reader.groups_of(user) {
        if gid != 0 && gid != primary && !held.contains(&gid) && !out.contains(&gid) {
            out.push(gid);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(buf: &[u8], at: usize) -> &[u8] {
        let end = buf[at..].iter().position(|b| *b == 0).unwrap();
        &buf[at..at + end]
    }

    #[test]
    fn a_passwd_record_fits_exactly_or_asks_for_more() {
        let line = b"carol:*:10001:10002:Carol C:/home/carol:/bin/bash";
        let needed = "carol".len() + 1 + 2 + "Carol C".len() + 1 + "/home/carol".len() + 1 + 10;
        let mut buf = vec![0xffu8; needed];
        let at = passwd(line, &mut buf).unwrap();
        assert_eq!(text(&buf, at.name), b"carol");
        assert_eq!(text(&buf, at.passwd), b"*");
        assert_eq!((at.uid, at.gid), (10_001, 10_002));
        assert_eq!(text(&buf, at.gecos), b"Carol C");
        assert_eq!(text(&buf, at.dir), b"/home/carol");
        assert_eq!(text(&buf, at.shell), b"/bin/bash");
        for short in 0..needed {
            assert_eq!(
                passwd(line, &mut vec![0u8; short]),
                Err(LayoutError::TooSmall),
                "{short}"
            );
        }
        assert_eq!(passwd(b"broken", &mut buf), Err(LayoutError::Malformed));
    }

    #[test]
    fn root_ids_are_never_laid_out() {
        let mut buf = vec![0u8; 256];
        let base = buf.as_ptr() as usize;
        for line in [
            &b"toor:*:0:10001::/home/toor:/bin/sh"[..],
            b"toor:*:10001:0::/home/toor:/bin/sh",
        ] {
            assert_eq!(passwd(line, &mut buf), Err(LayoutError::Root));
        }
        assert_eq!(
            group(b"wheel2:*:0:carol", &mut buf, base),
            Err(LayoutError::Root)
        );
    }

    #[test]
    fn initgroups_never_adds_gid_0() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache");
        let directory = authtoken_directory::Directory {
            serial: "s".into(),
            users: vec![],
            groups: vec![
                authtoken_directory::GroupEntry {
                    name: "zero".into(),
                    gid: 0,
                    members: vec!["carol".into()],
                },
                authtoken_directory::GroupEntry {
                    name: "team".into(),
                    gid: 10_100,
                    members: vec!["carol".into()],
                },
            ],
        };
        std::fs::write(&path, authtoken_directory::nss_cache::render(&directory, 1)).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let reader = Reader::open_owned_by(&path, nix::unistd::geteuid().as_raw()).unwrap();
        assert_eq!(groups_to_add(&reader, b"carol", 10_001, &[]), [10_100]);
    }

    #[test]
    fn a_group_gets_an_aligned_null_terminated_member_array() {
        let line = b"staff:*:10100:carol,dave";
        for offset in 0..8 {
            let mut storage = vec![0u8; 256];
            let buf = &mut storage[offset..];
            let base = buf.as_ptr() as usize;
            let at = group(line, buf, base).unwrap();
            assert_eq!((base + at.members) % std::mem::size_of::<usize>(), 0);
            let pointer = |i: usize| {
                let slot = at.members + i * std::mem::size_of::<usize>();
                usize::from_ne_bytes(
                    buf[slot..slot + std::mem::size_of::<usize>()]
                        .try_into()
                        .unwrap(),
                )
            };
            assert_eq!(text(buf, pointer(0) - base), b"carol");
            assert_eq!(text(buf, pointer(1) - base), b"dave");
            assert_eq!(pointer(2), 0);
            assert_eq!(text(buf, at.name), b"staff");
            assert_eq!(at.gid, 10_100);
        }
        let mut small = vec![0u8; 30];
        let base = small.as_ptr() as usize;
        assert_eq!(group(line, &mut small, base), Err(LayoutError::TooSmall));
        let mut empty = vec![0u8; 64];
        let base = empty.as_ptr() as usize;
        let at = group(b"solo:*:10101:", &mut empty, base).unwrap();
        let slot = at.members;
        assert_eq!(
            usize::from_ne_bytes(
                empty[slot..slot + std::mem::size_of::<usize>()]
                    .try_into()
                    .unwrap()
            ),
            0
        );
    }
}
