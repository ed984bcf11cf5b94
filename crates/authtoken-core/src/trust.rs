//! File trust: the one place that decides whether a file we read or run
//! could have been written by someone other than its rightful owner.
//!
//! Every file whose contents decide a login (the config, the CA bundle, the
//! client identity, the helper binary, the server's stores) is opened by
//! walking its path from `/` one component at a time with `O_NOFOLLOW`, so
//! no symlink is followed anywhere and the file checked is the file used.
//! Each directory on the way must be owned by a trusted owner and not
//! writable by group or others (a root-owned sticky directory such as
//! `/tmp` is accepted: nobody else can rename or remove root's entries in
//! it). The file itself must be a regular file of a trusted owner, not
//! writable by group or others, and for private keys not readable by them.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use nix::errno::Errno;
use nix::fcntl::{openat, OFlag};
use nix::sys::stat::{fstat, FileStat, Mode, SFlag};
use zeroize::Zeroizing;

/// Why a file is not trusted. The text names the file and, where there is
/// one, the command that fixes it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TrustError {
    #[error("{path}: no such file")]
    Missing { path: PathBuf },
    #[error("{path}: symlinks are refused; point the setting at the real file")]
    Symlink { path: PathBuf },
    #[error("{path}: not a {expected}")]
    WrongKind {
        path: PathBuf,
        expected: &'static str,
    },
    #[error("{path}: owned by uid {uid}, not root; fix: chown root:root {path}")]
    Owner { path: PathBuf, uid: u32 },
    #[error("{path}: group- or world-writable (mode {mode:o}); fix: chmod go-w {path}")]
    Writable { path: PathBuf, mode: u32 },
    #[error(
        "{path}: a private key readable by group or others (mode {mode:o}); fix: chmod 600 {path}"
    )]
    Readable { path: PathBuf, mode: u32 },
    #[error("{path}: not executable; fix: chmod 755 {path}")]
    NotExecutable { path: PathBuf },
    #[error("{path}: larger than {max} bytes")]
    TooLarge { path: PathBuf, max: u64 },
    #[error("{path}: {errno}")]
    Io { path: PathBuf, errno: Errno },
    #[error("{path}: owned by {uid}:{gid}, not {}:{}", .owner.0, .owner.1)]
    NotOurs {
        path: PathBuf,
        uid: u32,
        gid: u32,
        owner: (u32, u32),
    },
    #[error("{path}: group or others have access (mode {mode:o}); fix: chmod 700 {path}")]
    NotPrivate { path: PathBuf, mode: u32 },
}

/// What a file must be to be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// Besides root, the one other uid allowed to own the file and its
    /// directories (the reference server may run as its own user).
    pub also_owner: Option<u32>,
    /// Refuse any access by group or others (private keys, stores of
    /// verifiers, the session cache).
    pub private: bool,
}

impl Rules {
    /// Root's configuration and public key material.
    pub const ROOT: Rules = Rules {
        also_owner: None,
        private: false,
    };
    /// Root's private keys.
    pub const ROOT_PRIVATE: Rules = Rules {
        also_owner: None,
        private: true,
    };

    fn owner_ok(&self, uid: u32) -> bool {
        uid == 0 || self.also_owner == Some(uid)
    }
}

fn io(path: &Path) -> impl Fn(Errno) -> TrustError + '_ {
    move |errno| match errno {
        Errno::ENOENT => TrustError::Missing {
            path: path.to_owned(),
        },
        Errno::ELOOP => TrustError::Symlink {
            path: path.to_owned(),
        },
        errno => TrustError::Io {
            path: path.to_owned(),
            errno,
        },
    }
}

fn kind(stat: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(stat.st_mode & SFlag::S_IFMT.bits())
}

/// The permission bits (`mode_t` is 16 bits wide on macOS and FreeBSD).
#[allow(clippy::useless_conversion)] // a no-op on Linux only
fn permissions(stat: &FileStat) -> u32 {
    u32::from(stat.st_mode) & 0o7777
}

/// How a directory on the way, or an executable, is opened: for its
/// identity only where the system has `O_PATH` (Linux, FreeBSD); macOS has
/// none, and root (who runs these walks) may read every directory.
#[cfg(any(target_os = "linux", target_os = "freebsd"))]
const IDENTITY_ONLY: OFlag = OFlag::O_PATH;
#[cfg(not(any(target_os = "linux", target_os = "freebsd")))]
const IDENTITY_ONLY: OFlag = OFlag::O_RDONLY;

/// How an executable is opened: Linux runs an `O_PATH` descriptor
/// (`execveat`), FreeBSD's `fexecve` needs `O_EXEC`, macOS runs the path.
#[cfg(target_os = "linux")]
const EXECUTABLE: OFlag = OFlag::O_PATH;
#[cfg(target_os = "freebsd")]
const EXECUTABLE: OFlag = OFlag::O_EXEC;
#[cfg(not(any(target_os = "linux", target_os = "freebsd")))]
const EXECUTABLE: OFlag = OFlag::O_RDONLY;

/// Checks a directory on the way to a trusted file.
fn check_directory(path: &Path, stat: &FileStat, rules: Rules) -> Result<(), TrustError> {
    let mode = permissions(stat);
    if !rules.owner_ok(stat.st_uid) {
        return Err(TrustError::Owner {
            path: path.to_owned(),
            uid: stat.st_uid,
        });
    }
    let sticky_root = stat.st_uid == 0 && mode & 0o1000 != 0;
    if mode & 0o022 != 0 && !sticky_root {
        return Err(TrustError::Writable {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

/// Checks the file itself.
fn check_file(path: &Path, stat: &FileStat, rules: Rules) -> Result<(), TrustError> {
    let mode = permissions(stat);
    match kind(stat) {
        SFlag::S_IFREG => {}
        SFlag::S_IFLNK => {
            return Err(TrustError::Symlink {
                path: path.to_owned(),
            })
        }
        _ => {
            return Err(TrustError::WrongKind {
                path: path.to_owned(),
                expected: "regular file",
            })
        }
    }
    if !rules.owner_ok(stat.st_uid) {
        return Err(TrustError::Owner {
            path: path.to_owned(),
            uid: stat.st_uid,
        });
    }
    if mode & 0o022 != 0 {
        return Err(TrustError::Writable {
            path: path.to_owned(),
            mode,
        });
    }
    if rules.private && mode & 0o077 != 0 {
        return Err(TrustError::Readable {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

/// Opens the directory holding `path`, checking every directory from `/`
/// down, and returns it with the file's last component.
fn open_parent(path: &Path, rules: Rules) -> Result<(OwnedFd, PathBuf, &OsStr), TrustError> {
    if !path.is_absolute() {
        return Err(TrustError::WrongKind {
            path: path.to_owned(),
            expected: "absolute path",
        });
    }
    let mut names: Vec<&OsStr> = Vec::new();
    for component in path.components() {
        match component {
            Component::RootDir => {}
            Component::Normal(name) => names.push(name),
            // `..` would make the walk check directories the path leaves.
            Component::ParentDir | Component::CurDir | Component::Prefix(_) => {
                return Err(TrustError::WrongKind {
                    path: path.to_owned(),
                    expected: "path without '.' or '..'",
                })
            }
        }
    }
    let Some((file_name, dirs)) = names.split_last() else {
        return Err(TrustError::WrongKind {
            path: path.to_owned(),
            expected: "file path",
        });
    };
    let dir_flags = IDENTITY_ONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let mut walked = PathBuf::from("/");
    let mut dir = nix::fcntl::open("/", dir_flags, Mode::empty()).map_err(io(&walked))?;
    check_directory(&walked, &fstat(&dir).map_err(io(&walked))?, rules)?;
    for name in dirs {
        walked.push(name);
        dir = openat(&dir, *name, dir_flags, Mode::empty()).map_err(|e| match e {
            // O_DIRECTORY|O_NOFOLLOW on a symlink answers ENOTDIR.
            Errno::ENOTDIR if is_symlink_at(&dir, name) => TrustError::Symlink {
                path: walked.clone(),
            },
            e => io(&walked)(e),
        })?;
        check_directory(&walked, &fstat(&dir).map_err(io(&walked))?, rules)?;
    }
    Ok((dir, walked, file_name))
}

fn is_symlink_at(dir: &OwnedFd, name: &OsStr) -> bool {
    nix::sys::stat::fstatat(dir, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
        .is_ok_and(|stat| kind(&stat) == SFlag::S_IFLNK)
}

/// Opens `path` for reading after checking it and every directory above it.
pub fn open(path: &Path, rules: Rules) -> Result<File, TrustError> {
    open_with(path, rules, OFlag::O_RDONLY)
}

/// Opens an existing `path` for reading and writing, with the same checks
/// (a record that must survive the process, such as a rate limit).
pub fn open_read_write(path: &Path, rules: Rules) -> Result<File, TrustError> {
    open_with(path, rules, OFlag::O_RDWR)
}

fn open_with(path: &Path, rules: Rules, access: OFlag) -> Result<File, TrustError> {
    let (dir, _, name) = open_parent(path, rules)?;
    let fd = openat(
        &dir,
        name,
        access | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(io(path))?;
    check_file(path, &fstat(&fd).map_err(io(path))?, rules)?;
    Ok(File::from(fd))
}

/// Reads a trusted file of at most `max` bytes into a zeroizing buffer
/// (key material and stores pass through here).
pub fn read(path: &Path, rules: Rules, max: u64) -> Result<Zeroizing<Vec<u8>>, TrustError> {
    let file = open(path, rules)?;
    let len = fstat(file.as_fd()).map_err(io(path))?.st_size as u64;
    if len > max {
        return Err(TrustError::TooLarge {
            path: path.to_owned(),
            max,
        });
    }
    let mut bytes = Zeroizing::new(Vec::with_capacity(len as usize + 1));
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| io(path)(Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))))?;
    if bytes.len() as u64 > max {
        return Err(TrustError::TooLarge {
            path: path.to_owned(),
            max,
        });
    }
    Ok(bytes)
}

/// Reads a trusted UTF-8 text file.
pub fn read_text(path: &Path, rules: Rules, max: u64) -> Result<Zeroizing<String>, TrustError> {
    let bytes = read(path, rules, max)?;
    match std::str::from_utf8(&bytes) {
        Ok(text) => Ok(Zeroizing::new(text.to_owned())),
        Err(_) => Err(TrustError::WrongKind {
            path: path.to_owned(),
            expected: "UTF-8 text file",
        }),
    }
}

/// Opens a root-owned executable (as an `O_PATH` descriptor where there
/// are those), for running exactly the file that was checked (see
/// `authtoken-spawn` for how each system executes it).
pub fn open_executable(path: &Path) -> Result<OwnedFd, TrustError> {
    open_executable_under(path, Rules::ROOT)
}

/// [`open_executable`] under other rules: what the spawner's tests use to
/// run scripts of their own without root.
pub fn open_executable_under(path: &Path, rules: Rules) -> Result<OwnedFd, TrustError> {
    let (dir, _, name) = open_parent(path, rules)?;
    let fd = openat(
        &dir,
        name,
        EXECUTABLE | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(io(path))?;
    let stat = fstat(&fd).map_err(io(path))?;
    check_file(path, &stat, rules)?;
    if permissions(&stat) & 0o111 == 0 {
        return Err(TrustError::NotExecutable {
            path: path.to_owned(),
        });
    }
    Ok(fd)
}

/// `meta` (from `symlink_metadata`) is a directory, not a link to one.
fn real_directory(path: &Path, meta: &std::fs::Metadata) -> Result<(), TrustError> {
    if meta.file_type().is_symlink() {
        return Err(TrustError::Symlink {
            path: path.to_owned(),
        });
    }
    if !meta.is_dir() {
        return Err(TrustError::WrongKind {
            path: path.to_owned(),
            expected: "directory",
        });
    }
    Ok(())
}

/// A directory of ours, as [`ensure_private_dir`] leaves it: a real
/// directory (not a symlink), owned by `owner` (uid, gid), and closed to
/// group and others. `meta` is from `symlink_metadata`.
pub fn check_private_dir(
    path: &Path,
    meta: &std::fs::Metadata,
    owner: (u32, u32),
) -> Result<(), TrustError> {
    use std::os::unix::fs::MetadataExt;
    real_directory(path, meta)?;
    let path = path.to_owned();
    if (meta.uid(), meta.gid()) != owner {
        return Err(TrustError::NotOurs {
            path,
            uid: meta.uid(),
            gid: meta.gid(),
            owner,
        });
    }
    if meta.mode() & 0o077 != 0 {
        return Err(TrustError::NotPrivate {
            path,
            mode: meta.mode() & 0o7777,
        });
    }
    Ok(())
}

/// Creates `dir` (0700, with any missing parents) if it is missing and
/// gives a new one to `owner`, then insists on [`check_private_dir`]. The
/// one way the session cache, the offline store and chkpwd's attempt
/// records make their directories. A setuid host (sudo) runs with the
/// caller's gid, which a new directory would inherit: hence the chown.
pub fn ensure_private_dir(dir: &Path, owner: (u32, u32)) -> Result<(), TrustError> {
    use std::os::unix::fs::DirBuilderExt;
    let io_error =
        |e: std::io::Error| io(dir)(Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)));
    let create = || std::fs::DirBuilder::new().mode(0o700).create(dir);
    let created = match create() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            make_parents(dir, owner).map_err(io_error)?;
            create()
        }
        other => other,
    };
    match created {
        Ok(()) => std::os::unix::fs::chown(dir, Some(owner.0), Some(owner.1)).map_err(io_error)?,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io_error(e)),
    }
    let meta = std::fs::symlink_metadata(dir).map_err(io_error)?;
    check_private_dir(dir, &meta, owner)
}

/// Makes `dir` a directory root owns and everyone may read but only root
/// write (0755): created with any missing parents, or an existing one
/// opened up to 0755 if it was closed (the offline store makes its parent
/// 0700). The NSS cache lives here: every process on the machine reads it.
pub fn ensure_shared_dir(dir: &Path) -> Result<(), TrustError> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    let io_error =
        |e: std::io::Error| io(dir)(Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)));
    make_parents(dir, (0, 0)).map_err(io_error)?;
    match std::fs::DirBuilder::new().mode(0o755).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io_error(e)),
    }
    let meta = std::fs::symlink_metadata(dir).map_err(io_error)?;
    real_directory(dir, &meta)?;
    let path = dir.to_owned();
    if meta.uid() != 0 {
        return Err(TrustError::Owner {
            path,
            uid: meta.uid(),
        });
    }
    if meta.mode() & 0o022 != 0 {
        return Err(TrustError::Writable {
            path,
            mode: meta.mode() & 0o7777,
        });
    }
    if meta.mode() & 0o7777 != 0o755 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).map_err(io_error)?;
    }
    Ok(())
}

/// Creates the missing parents of `dir`, top down, each 0755 and given to
/// `owner`: a setuid program (chkpwd) runs with its caller's gid, which a
/// new directory such as `/var/lib/authtoken` would otherwise keep.
fn make_parents(dir: &Path, owner: (u32, u32)) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let missing: Vec<&Path> = dir
        .ancestors()
        .skip(1)
        .take_while(|p| !p.as_os_str().is_empty() && std::fs::symlink_metadata(p).is_err())
        .collect();
    for parent in missing.into_iter().rev() {
        match std::fs::DirBuilder::new().mode(0o755).create(parent) {
            Ok(()) => {
                std::os::unix::fs::chown(parent, Some(owner.0), Some(owner.1))?;
                std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o755))?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Writes `bytes` to `path` atomically and private to its owner (0600);
/// see [`write_atomic`].
pub fn write_private(path: &Path, bytes: &[u8], owner: Option<(u32, u32)>) -> std::io::Result<()> {
    write_atomic(path, bytes, 0o600, owner)
}

/// Writes `bytes` to `path` atomically: a new file beside it, created
/// exclusively, without following links and private until complete,
/// optionally given to `owner` (uid, gid), synced, set to `mode`, then
/// renamed over `path`. Readers see the old file or the new one, never a
/// half-written one, and never a file others could read in between.
///
/// Not `tempfile`: its random names come from a thread-local generator
/// whose first use registers a thread-exit destructor, and in the PAM
/// module (a library the host unloads with `pam_end`) that destructor
/// would later run from unmapped code and crash the host's thread. The
/// temporary name here is unique by pid, a per-load counter and the clock.
pub fn write_atomic(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    owner: Option<(u32, u32)>,
) -> std::io::Result<()> {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    // A file-size limit (inherited by a setuid host such as su from its
    // caller) would cut the write short, and with SIGXFSZ at its default
    // kill the host midway: refuse before anything is created.
    if let Ok((soft, _)) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_FSIZE)
    {
        // rlim_t is u64 on Linux and macOS, i64 on FreeBSD.
        if soft != nix::sys::resource::RLIM_INFINITY && soft < bytes.len() as libc::rlim_t {
            return Err(std::io::Error::new(
                std::io::ErrorKind::StorageFull,
                format!("the file-size limit ({soft} bytes) is below this record's size"),
            ));
        }
    }
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let nanos = crate::clock::unix_nanos() % 1_000_000_000;
    let temp = dir.join(format!(
        ".tmp-{}-{}-{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let write = || -> std::io::Result<()> {
        let mut file = File::options()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&temp)?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::fchown(&file, Some(uid), Some(gid))?;
        }
        file.write_all(bytes)?;
        file.sync_all()?;
        // Exactly `mode`, whatever the umask took away.
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        std::fs::rename(&temp, path)
    };
    write().inspect_err(|_| {
        let _ = std::fs::remove_file(&temp);
    })
}

/// A path made absolute against the working directory (for paths an
/// administrator types); a path that is already absolute is unchanged.
pub fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    /// A private directory whose ancestors a root test can trust: under
    /// the target directory when /tmp's ancestors are fine too.
    fn scratch() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        chmod(dir.path(), 0o700);
        dir
    }

    #[test]
    fn relative_and_dotted_paths_are_refused() {
        assert!(matches!(
            open(Path::new("etc/passwd"), Rules::ROOT),
            Err(TrustError::WrongKind { .. })
        ));
        assert!(matches!(
            open(Path::new("/etc/../etc/passwd"), Rules::ROOT),
            Err(TrustError::WrongKind { .. })
        ));
    }

    #[test]
    #[ignore = "needs root"]
    fn modes_owners_and_symlinks() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "run as root (scripts/test.sh runs ignored tests as root)"
        );
        let dir = scratch();
        let file = dir.path().join("f");
        std::fs::write(&file, "x").unwrap();
        chmod(&file, 0o644);
        assert_eq!(&*read(&file, Rules::ROOT, 10).unwrap(), b"x");
        assert!(matches!(
            read(&file, Rules::ROOT_PRIVATE, 10),
            Err(TrustError::Readable { .. })
        ));
        chmod(&file, 0o600);
        assert!(read(&file, Rules::ROOT_PRIVATE, 10).is_ok());
        assert!(matches!(
            read(&file, Rules::ROOT, 0),
            Err(TrustError::TooLarge { .. })
        ));
        chmod(&file, 0o666);
        let err = read(&file, Rules::ROOT, 10).unwrap_err();
        assert!(err.to_string().contains("chmod go-w"), "{err}");

        chmod(&file, 0o644);
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        let err = read(&link, Rules::ROOT, 10).unwrap_err();
        assert!(matches!(err, TrustError::Symlink { .. }));
        assert!(err.to_string().contains("symlinks are refused"), "{err}");

        // A symlinked directory on the way is refused too.
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        std::fs::write(sub.join("g"), "y").unwrap();
        let linked_dir = dir.path().join("linked");
        std::os::unix::fs::symlink(&sub, &linked_dir).unwrap();
        assert!(matches!(
            read(&linked_dir.join("g"), Rules::ROOT, 10),
            Err(TrustError::Symlink { .. })
        ));

        // A directory others can write makes everything below it untrusted.
        chmod(&sub, 0o777);
        assert!(matches!(
            read(&sub.join("g"), Rules::ROOT, 10),
            Err(TrustError::Writable { .. })
        ));
        chmod(&sub, 0o1777);
        assert!(read(&sub.join("g"), Rules::ROOT, 10).is_ok(), "root sticky");

        nix::unistd::chown(&file, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
        let err = read(&file, Rules::ROOT, 10).unwrap_err();
        assert!(err.to_string().contains("chown root:root"), "{err}");
        let server = Rules {
            also_owner: Some(65534),
            private: false,
        };
        assert!(read(&file, server, 10).is_ok());
        assert!(matches!(
            read(&dir.path().join("absent"), Rules::ROOT, 10),
            Err(TrustError::Missing { .. })
        ));
    }

    #[test]
    fn private_writes_are_atomic_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store");
        write_private(&path, b"one", None).unwrap();
        write_private(&path, b"two", None).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
        assert_eq!(names.len(), 1, "no temporary file left behind");
    }

    #[test]
    fn new_parents_of_a_private_directory_go_to_its_owner() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let me = (
            nix::unistd::getuid().as_raw(),
            nix::unistd::getgid().as_raw(),
        );
        // A gid of the process other than its own (as a setuid program's
        // caller's) must not end up on the parents: here the owner's is
        // asked for explicitly, so the parents must carry exactly it.
        let leaf = dir.path().join("a/b/offline");
        ensure_private_dir(&leaf, me).unwrap();
        for parent in [dir.path().join("a"), dir.path().join("a/b")] {
            let meta = std::fs::metadata(&parent).unwrap();
            assert_eq!((meta.uid(), meta.gid()), me);
            assert_eq!(meta.mode() & 0o7777, 0o755, "{}", parent.display());
        }
        assert_eq!(std::fs::metadata(&leaf).unwrap().mode() & 0o7777, 0o700);
        if nix::unistd::geteuid().is_root() {
            let other = dir.path().join("x/y/z");
            ensure_private_dir(&other, (0, 65534)).unwrap();
            let meta = std::fs::metadata(dir.path().join("x")).unwrap();
            assert_eq!(
                meta.gid(),
                65534,
                "the parent took the owner's gid, not the process's"
            );
        }
    }

    #[test]
    #[ignore = "needs root"]
    fn shared_directories_are_roots_and_readable_by_all() {
        use std::os::unix::fs::PermissionsExt;
        assert!(
            nix::unistd::geteuid().is_root(),
            "run as root (scripts/test.sh runs ignored tests as root)"
        );
        let dir = tempfile::tempdir().unwrap();
        let nss = dir.path().join("lib/nss");
        ensure_shared_dir(&nss).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&nss), 0o755);
        let closed = dir.path().join("closed");
        std::fs::create_dir(&closed).unwrap();
        std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o700)).unwrap();
        ensure_shared_dir(&closed).unwrap();
        assert_eq!(mode(&closed), 0o755, "opened up to 0755");
        std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o775)).unwrap();
        assert!(matches!(
            ensure_shared_dir(&closed),
            Err(TrustError::Writable { .. })
        ));
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&nss, &link).unwrap();
        assert!(matches!(
            ensure_shared_dir(&link),
            Err(TrustError::Symlink { .. })
        ));
        std::os::unix::fs::chown(&nss, Some(65534), None).unwrap();
        assert!(matches!(
            ensure_shared_dir(&nss),
            Err(TrustError::Owner { .. })
        ));
    }

    #[test]
    #[ignore = "needs root"]
    fn executables() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "run as root (scripts/test.sh runs ignored tests as root)"
        );
        let dir = scratch();
        let exe = dir.path().join("helper");
        std::fs::write(&exe, "#!/bin/sh\n").unwrap();
        chmod(&exe, 0o644);
        assert!(matches!(
            open_executable(&exe),
            Err(TrustError::NotExecutable { .. })
        ));
        chmod(&exe, 0o755);
        assert!(open_executable(&exe).is_ok());
        chmod(dir.path(), 0o777);
        assert!(matches!(
            open_executable(&exe),
            Err(TrustError::Writable { .. })
        ));
    }
}
