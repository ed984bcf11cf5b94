//! The glibc NSS entry points (`nss/nss.h`, `nss_files`' own signatures):
//! every `unsafe` of the NSS module is here. Each call opens the cache,
//! answers from a few `pread`s and closes it; enumeration keeps one
//! descriptor between `set*ent` and `end*ent`, which glibc calls under its
//! own lock, so two atomics are all the state there is. No call panics
//! into C: a panic is caught and answered as `NSS_STATUS_UNAVAIL`.

// The entry points are found by symbol name, not by Rust path.
#![allow(unreachable_pub)]

use std::ffi::CStr;
use std::fs::File;
use std::os::fd::{FromRawFd, IntoRawFd, RawFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};

use authtoken_directory::nss_cache::{self, Reader, Section};
use libc::{c_char, c_int, c_long, gid_t, size_t, uid_t};

use crate::entry::{self, LayoutError};

// enum nss_status
const NSS_STATUS_TRYAGAIN: c_int = -2;
const NSS_STATUS_UNAVAIL: c_int = -1;
const NSS_STATUS_NOTFOUND: c_int = 0;
const NSS_STATUS_SUCCESS: c_int = 1;

/// What a call ends in, before it is said in glibc's terms.
enum Answer {
    Found,
    NotFound,
    Unavailable,
    /// The caller's buffer is too small (`ERANGE`: glibc grows it and
    /// calls again).
    TooSmall,
    /// Out of memory growing the initgroups list.
    NoMemory,
    /// A record never answered (uid or gid 0): not found to a lookup,
    /// passed over by an enumeration.
    Skipped,
}

impl From<LayoutError> for Answer {
    fn from(error: LayoutError) -> Answer {
        match error {
            LayoutError::TooSmall => Answer::TooSmall,
            LayoutError::Malformed => Answer::Unavailable,
            LayoutError::Root => Answer::Skipped,
        }
    }
}

/// Runs `body`, contains a panic, and says the answer: the status, and
/// `*errnop` as glibc expects it.
fn answer(errnop: *mut c_int, body: impl FnOnce() -> Answer) -> c_int {
    let answer = catch_unwind(AssertUnwindSafe(body)).unwrap_or(Answer::Unavailable);
    let (status, errno) = match answer {
        Answer::Found => return NSS_STATUS_SUCCESS,
        Answer::NotFound | Answer::Skipped => (NSS_STATUS_NOTFOUND, libc::ENOENT),
        Answer::Unavailable => (NSS_STATUS_UNAVAIL, libc::ENOENT),
        Answer::TooSmall => (NSS_STATUS_TRYAGAIN, libc::ERANGE),
        Answer::NoMemory => (NSS_STATUS_TRYAGAIN, libc::ENOMEM),
    };
    if !errnop.is_null() {
        // SAFETY: glibc passes a valid pointer to the thread's errno slot.
        unsafe { *errnop = errno };
    }
    status
}

fn open() -> Option<Reader> {
    Reader::open(std::path::Path::new(crate::CACHE))
}

/// The caller's buffer as a slice.
///
/// # Safety
/// `buffer` must be valid for writes of `buflen` bytes for the call.
unsafe fn caller_buffer<'a>(buffer: *mut c_char, buflen: size_t) -> Option<&'a mut [u8]> {
    if buffer.is_null() {
        return None;
    }
    // SAFETY: the caller's contract: `buflen` writable bytes at `buffer`.
    Some(unsafe { std::slice::from_raw_parts_mut(buffer.cast::<u8>(), buflen) })
}

/// Lays out `line` in the buffer and points `result` at it.
///
/// # Safety
/// `result` must be valid for writes; `buffer` for `buflen` bytes.
unsafe fn fill_passwd(
    line: &[u8],
    result: *mut libc::passwd,
    buffer: *mut c_char,
    buflen: size_t,
) -> Answer {
    // SAFETY: forwarded from the caller.
    let Some(buf) = (unsafe { caller_buffer(buffer, buflen) }) else {
        return Answer::TooSmall;
    };
    if result.is_null() {
        return Answer::Unavailable;
    }
    let at = match entry::passwd(line, buf) {
        Ok(at) => at,
        Err(e) => return e.into(),
    };
    // SAFETY: every offset is inside the buffer (entry::passwd), and
    // `result` is valid for writes.
    unsafe {
        let field = |offset: usize| buffer.add(offset);
        (*result).pw_name = field(at.name);
        (*result).pw_passwd = field(at.passwd);
        (*result).pw_uid = at.uid;
        (*result).pw_gid = at.gid;
        (*result).pw_gecos = field(at.gecos);
        (*result).pw_dir = field(at.dir);
        (*result).pw_shell = field(at.shell);
    }
    Answer::Found
}

/// Lays out `line` in the buffer and points `result` at it.
///
/// # Safety
/// `result` must be valid for writes; `buffer` for `buflen` bytes.
unsafe fn fill_group(
    line: &[u8],
    result: *mut libc::group,
    buffer: *mut c_char,
    buflen: size_t,
) -> Answer {
    // SAFETY: forwarded from the caller.
    let Some(buf) = (unsafe { caller_buffer(buffer, buflen) }) else {
        return Answer::TooSmall;
    };
    if result.is_null() {
        return Answer::Unavailable;
    }
    let at = match entry::group(line, buf, buffer as usize) {
        Ok(at) => at,
        Err(e) => return e.into(),
    };
    // SAFETY: every offset is inside the buffer, and the member array at
    // `at.members` is aligned and NULL-terminated (entry::group).
    unsafe {
        (*result).gr_name = buffer.add(at.name);
        (*result).gr_passwd = buffer.add(at.passwd);
        (*result).gr_gid = at.gid;
        (*result).gr_mem = buffer.add(at.members).cast::<*mut c_char>();
    }
    Answer::Found
}

/// The bytes of a C string argument.
///
/// # Safety
/// `name` must be null or a valid NUL-terminated string.
unsafe fn name_arg<'a>(name: *const c_char) -> Option<&'a [u8]> {
    // SAFETY: the caller's contract.
    (!name.is_null()).then(|| unsafe { CStr::from_ptr(name) }.to_bytes())
}

/// One lookup: the cache opened, the line `find` picks, laid out by `fill`.
fn look_up(
    errnop: *mut c_int,
    find: impl FnOnce(&Reader) -> Option<Vec<u8>>,
    fill: impl FnOnce(&[u8]) -> Answer,
) -> c_int {
    answer(errnop, || {
        let Some(reader) = open() else {
            return Answer::Unavailable;
        };
        match find(&reader) {
            Some(line) => fill(&line),
            None => Answer::NotFound,
        }
    })
}

/// # Safety
/// glibc's contract for `getpwnam_r` in an NSS module.
#[no_mangle]
pub unsafe extern "C" fn _nss_authtoken_getpwnam_r(
    name: *const c_char,
    result: *mut libc::passwd,
    buffer: *mut c_char,
    buflen: size_t,
    errnop: *mut c_int,
) -> c_int {
    // SAFETY: glibc passes a NUL-terminated name.
    let name = unsafe { name_arg(name) };
    look_up(
        errnop,
        |reader| reader.user_by_name(name?),
        // SAFETY: glibc's `result`, `buffer` and `buflen`.
        |line| unsafe { fill_passwd(line, result, buffer, buflen) },
    )
}

/// # Safety
/// glibc's contract for `getpwuid_r` in an NSS module.
#[no_mangle]
pub unsafe extern "C" fn _nss_authtoken_getpwuid_r(
    uid: uid_t,
    result: *mut libc::passwd,
    buffer: *mut c_char,
    buflen: size_t,
    errnop: *mut c_int,
) -> c_int {
    look_up(
        errnop,
        |reader| reader.user_by_uid(uid),
        // SAFETY: glibc's `result`, `buffer` and `buflen`.
        |line| unsafe { fill_passwd(line, result, buffer, buflen) },
    )
}

/// # Safety
/// glibc's contract for `getgrnam_r` in an NSS module.
#[no_mangle]
pub unsafe extern "C" fn _nss_authtoken_getgrnam_r(
    name: *const c_char,
    result: *mut libc::group,
    buffer: *mut c_char,
    buflen: size_t,
    errnop: *mut c_int,
) -> c_int {
    // SAFETY: glibc passes a NUL-terminated name.
    let name = unsafe { name_arg(name) };
    look_up(
        errnop,
        |reader| reader.group_by_name(name?),
        // SAFETY: glibc's `result`, `buffer` and `buflen`.
        |line| unsafe { fill_group(line, result, buffer, buflen) },
    )
}

/// # Safety
/// glibc's contract for `getgrgid_r` in an NSS module.
#[no_mangle]
pub unsafe extern "C" fn _nss_authtoken_getgrgid_r(
    gid: gid_t,
    result: *mut libc::group,
    buffer: *mut c_char,
    buflen: size_t,
    errnop: *mut c_int,
) -> c_int {
    look_up(
        errnop,
        |reader| reader.group_by_gid(gid),
        // SAFETY: glibc's `result`, `buffer` and `buflen`.
        |line| unsafe { fill_group(line, result, buffer, buflen) },
    )
}

/// One enumeration (`setpwent` … `endpwent`): the cache as it was when it
/// began (its descriptor), and how far it has got.
struct Enumeration {
    fd: AtomicI32,
    cursor: AtomicU64,
}

static USERS: Enumeration = Enumeration::new();
static GROUPS: Enumeration = Enumeration::new();

impl Enumeration {
    const fn new() -> Enumeration {
        Enumeration {
            fd: AtomicI32::new(-1),
            cursor: AtomicU64::new(0),
        }
    }

    fn start(&self) -> Answer {
        self.end();
        match File::open(crate::CACHE) {
            Ok(file) => {
                self.fd.store(file.into_raw_fd(), Ordering::SeqCst);
                Answer::Found
            }
            Err(_) => Answer::Unavailable,
        }
    }

    fn end(&self) {
        let fd: RawFd = self.fd.swap(-1, Ordering::SeqCst);
        if fd >= 0 {
            // SAFETY: the descriptor was ours (`start`), and the swap
            // made sure nothing else holds it any more.
            drop(unsafe { File::from_raw_fd(fd) });
        }
        self.cursor.store(0, Ordering::SeqCst);
    }

    /// Lays out the next line of `section` with `fill`, and moves past it
    /// only once the caller's buffer held it (after `ERANGE`, glibc calls
    /// again with a larger one for the same entry).
    /// Records that are never answered are passed over.
    fn step(&self, section: Section, mut fill: impl FnMut(&[u8]) -> Answer) -> Answer {
        // Bounded: every pass moves the cursor forward through the file.
        loop {
            let (line, next) = match self.next(section) {
                Err(answer) => return answer,
                Ok(None) => return Answer::NotFound,
                Ok(Some(found)) => found,
            };
            let answer = fill(&line);
            if let Answer::Found | Answer::Skipped = answer {
                self.cursor.store(next, Ordering::SeqCst);
            }
            if !matches!(answer, Answer::Skipped) {
                return answer;
            }
        }
    }

    /// The line at the cursor of `section`, and where the next starts.
    fn next(&self, section: Section) -> Result<Option<(Vec<u8>, u64)>, Answer> {
        if self.fd.load(Ordering::SeqCst) < 0 {
            if let Answer::Unavailable = self.start() {
                return Err(Answer::Unavailable);
            }
        }
        let fd = self.fd.load(Ordering::SeqCst);
        // A duplicate, so the Reader owns (and closes) its own descriptor.
        // SAFETY: fcntl on a descriptor this module opened.
        let copy = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
        if copy < 0 {
            return Err(Answer::Unavailable);
        }
        // SAFETY: `copy` is a new descriptor nothing else owns.
        let file = unsafe { File::from_raw_fd(copy) };
        let reader = Reader::from_file(file, nss_cache::OWNER).ok_or(Answer::Unavailable)?;
        Ok(reader.entry(section, self.cursor.load(Ordering::SeqCst)))
    }
}

/// # Safety
/// glibc's contract for `setpwent`.
#[no_mangle]
pub unsafe extern "C" fn _nss_authtoken_setpwent(_stayopen: c_int) -> c_int {
    answer(std::ptr::null_mut(), || USERS.start())
}

/// # Safety
/// glibc's contract for `endpwent`.
#[no_mangle]
pub unsafe extern "C" fn _nss_authtoken_endpwent() -> c_int {
    answer(std::ptr::null_mut(), || {
        USERS.end();
        Answer::Found
    })
}

/// # Safety
/// glibc's contract for `getpwent_r` in an NSS module.
#[no_mangle]
pub unsafe extern "C" fn _nss_authtoken_getpwent_r(
    result: *mut libc::passwd,
    buffer: *mut c_char,
    buflen: size_t,
    errnop: *mut c_int,
) -> c_int {
    answer(errnop, || {
        // SAFETY: glibc's `result`, `buffer` and `buflen`.
        USERS.step(Section::Passwd, |line| unsafe {
            fill_passwd(line, result, buffer, buflen)
        })
    })
}

/// # Safety
/// glibc's contract for `setgrent`.
#[no_mangle]
pub unsafe extern "C" fn _nss_authtoken_setgrent(_stayopen: c_int) -> c_int {
    answer(std::ptr::null_mut(), || GROUPS.start())
}

/// # Safety
/// glibc's contract for `endgrent`.
#[no_mangle]
pub unsafe extern "C" fn _nss_authtoken_endgrent() -> c_int {
    answer(std::ptr::null_mut(), || {
        GROUPS.end();
        Answer::Found
    })
}

/// # Safety
/// glibc's contract for `getgrent_r` in an NSS module.
#[no_mangle]
pub unsafe extern "C" fn _nss_authtoken_getgrent_r(
    result: *mut libc::group,
    buffer: *mut c_char,
    buflen: size_t,
    errnop: *mut c_int,
) -> c_int {
    answer(errnop, || {
        // SAFETY: glibc's `result`, `buffer` and `buflen`.
        GROUPS.step(Section::Group, |line| unsafe {
            fill_group(line, result, buffer, buflen)
        })
    })
}

/// Adds `user`'s supplementary groups from the cache to glibc's list
/// (`initgroups`, `getgrouplist`), growing it with `realloc` as glibc does,
/// never past `limit` when that is positive.
///
/// # Safety
/// glibc's contract for `initgroups_dyn`: `start` and `size` describe the
/// `malloc`ed array `*groupsp`.
#[no_mangle]
pub unsafe extern "C" fn _nss_authtoken_initgroups_dyn(
    user: *const c_char,
    group: gid_t,
    start: *mut c_long,
    size: *mut c_long,
    groupsp: *mut *mut gid_t,
    limit: c_long,
    errnop: *mut c_int,
) -> c_int {
    answer(errnop, || {
        if start.is_null() || size.is_null() || groupsp.is_null() {
            return Answer::Unavailable;
        }
        // SAFETY: glibc passes a NUL-terminated name.
        let Some(user) = (unsafe { name_arg(user) }) else {
            return Answer::NotFound;
        };
        let Some(reader) = open() else {
            return Answer::Unavailable;
        };
        // SAFETY: glibc's list: `*start` entries of `*size` at `*groupsp`.
        let held: Vec<gid_t> = unsafe {
            let (count, list) = (*start, *groupsp);
            if count <= 0 || list.is_null() {
                Vec::new()
            } else {
                std::slice::from_raw_parts(list, count as usize).to_vec()
            }
        };
        let add = entry::groups_to_add(&reader, user, group, &held);
        if add.is_empty() {
            return Answer::NotFound;
        }
        for gid in add {
            // SAFETY: as above; the array is only grown with realloc,
            // which is what glibc frees it with.
            unsafe {
                if *start == *size {
                    if limit > 0 && *size >= limit {
                        break;
                    }
                    let mut grown = (*size).max(1).saturating_mul(2);
                    if limit > 0 {
                        grown = grown.min(limit);
                    }
                    let bytes = (grown as usize).saturating_mul(std::mem::size_of::<gid_t>());
                    let new = libc::realloc((*groupsp).cast(), bytes).cast::<gid_t>();
                    if new.is_null() {
                        return Answer::NoMemory;
                    }
                    *groupsp = new;
                    *size = grown;
                }
                *(*groupsp).add(*start as usize) = gid;
                *start += 1;
            }
        }
        Answer::Found
    })
}
