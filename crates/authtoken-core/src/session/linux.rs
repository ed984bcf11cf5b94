//! Linux: the session facts come from `/proc` (no `unsafe` here).

const AUDIT_UNSET: u32 = u32::MAX;

/// The kernel audit session id (`/proc/self/sessionid`), set by
/// `pam_loginuid` at login; unset reads as `u32::MAX`.
pub(super) fn audit_session_id() -> Option<u32> {
    let text = std::fs::read_to_string("/proc/self/sessionid").ok()?;
    let id: u32 = text.trim().parse().ok()?;
    (id != AUDIT_UNSET).then_some(id)
}

/// The logind session whose scope holds this process.
pub(super) fn logind_session() -> Option<String> {
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    super::logind_session_of(&cgroup)
}

/// The start time (field 22 of `/proc/PID/stat`, clock ticks since boot) of
/// `pid` if it is alive and leads its own session. The session check also
/// refuses a `/proc` mounted from another pid namespace, where `pid` would
/// name some unrelated process.
pub(super) fn leader_start_time(pid: i32) -> Option<u64> {
    if pid <= 0 {
        return None;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_comm = stat.rsplit_once(')')?.1;
    // after_comm starts at field 3 (state): session (field 6) is index 3,
    // start time (field 22) index 19.
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    let session: i32 = fields.get(3)?.parse().ok()?;
    (session == pid).then_some(())?;
    fields.get(19)?.parse().ok()
}

pub(super) fn live_audit_session_ids() -> Option<Vec<u32>> {
    let mut ids = Vec::new();
    let entries = std::fs::read_dir("/proc").ok()?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Ok(text) = std::fs::read_to_string(entry.path().join("sessionid")) {
            if let Ok(id) = text.trim().parse::<u32>() {
                if id != AUDIT_UNSET && !ids.contains(&id) {
                    ids.push(id);
                }
            }
        }
    }
    Some(ids)
}
