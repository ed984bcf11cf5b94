//! `authtoken join URL --token SECRET --ca-fingerprint sha256:HEX`: the
//! root side of a join (docs/PROTOCOL.md, "Enrollment"). Every check comes
//! before anything is written, so a wrong fingerprint, a refused token, a
//! clock far off or an authority that is not the one named leave the
//! machine's config exactly as it was.

use std::path::{Path, PathBuf};

use authtoken_config::{Authority, Config};
use authtoken_core::paths;
use authtoken_core::platform;
use authtoken_core::trust::{self, Rules};
use authtoken_helper::commands;
use authtoken_helper::enroll::{self, ChildAnswer, EnrollRequest, JoinJob};

/// Largest config read.
const MAX_CONFIG_BYTES: u64 = authtoken_core::settings::MAX_CONFIG_BYTES;

/// Why a join did not happen.
#[derive(Debug, thiserror::Error)]
pub(crate) enum JoinError {
    #[error("authtoken join writes root's config and key: run it as root")]
    NotRoot,
    #[error("--ca-fingerprint {0}: give sha256: and the 64 hex digits the join line shows")]
    Pin(String),
    #[error("--token: give the ID.SECRET the join line shows")]
    Token,
    #[error("{0}: {1}")]
    Url(String, String),
    #[error("{0}: the authority is reached over https only")]
    PlainUrl(String),
    #[error("--name {0}: letters, digits, '-', '.' and '_' only")]
    Name(String),
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Enroll(#[from] enroll::EnrollError),
    #[error("the helper: {0}")]
    Helper(String),
    /// What the exchange came to, in the helper's words (a refused token,
    /// a wrong fingerprint, an authority that cannot be reached).
    #[error("{0}")]
    Exchange(String),
    #[error("{}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Largest answer read from the join child.
const MAX_CHILD_ANSWER_BYTES: usize = 256 * 1024;

/// What the administrator gave `authtoken join`.
pub(crate) struct JoinArgs<'a> {
    pub url: &'a str,
    pub token: &'a str,
    pub ca_fingerprint: &'a str,
    pub name: Option<&'a str>,
    /// Turn `[directory]` on as well.
    pub network_users: bool,
}

pub(crate) fn join(args: &JoinArgs, config_path: &Path) -> Result<(), JoinError> {
    let JoinArgs {
        url,
        token,
        ca_fingerprint,
        name,
        network_users,
    } = *args;
    if !nix::unistd::Uid::effective().is_root() {
        return Err(JoinError::NotRoot);
    }
    let pin = enroll::parse_pin(ca_fingerprint)
        .ok_or_else(|| JoinError::Pin(ca_fingerprint.to_owned()))?;
    let (id, secret) = token.split_once('.').ok_or(JoinError::Token)?;
    if id.is_empty() || secret.is_empty() {
        return Err(JoinError::Token);
    }
    let authority =
        Authority::parse(url).map_err(|e| JoinError::Url(url.to_owned(), e.to_string()))?;
    if !authority.is_https() {
        return Err(JoinError::PlainUrl(url.to_owned()));
    }
    let config_path = trust::absolute(config_path);
    // The config as it is (root's, or none yet): the text the edit keeps.
    let before = match trust::read_text(&config_path, Rules::ROOT, MAX_CONFIG_BYTES) {
        Ok(text) => Some(text),
        Err(trust::TrustError::Missing { .. }) => None,
        Err(e) => return Err(JoinError::Config(e.to_string())),
    };
    let current = before.as_deref().and_then(|text| Config::parse(text).ok());
    let helper = current
        .as_ref()
        .map_or_else(|| PathBuf::from(platform::HELPER), |c| c.helper.clone());
    let helper_user = current.as_ref().map_or_else(
        || platform::HELPER_USER.to_owned(),
        |c| c.helper_user.as_str().to_owned(),
    );
    let udid = match current.as_ref().and_then(|c| c.udid.clone()) {
        Some(udid) => udid,
        None => platform::host_id()
            .map_err(|e| e.to_string())
            .and_then(|text| {
                authtoken_protocol::mdm::udid_from_host_id(&text).map_err(|e| e.to_string())
            })
            .map_err(|e| JoinError::Config(format!("this machine's UDID: {e}")))?,
    };
    let name = match name {
        Some(name) => name.to_owned(),
        None => nix::unistd::gethostname()
            .map(|n| n.to_string_lossy().into_owned())
            .map_err(|e| JoinError::Config(format!("this machine's name: {e}")))?,
    };
    if !authtoken_protocol::enroll::name_ok(&name) {
        return Err(JoinError::Name(name));
    }

    // The key is made here and stays here; a CSR travels.
    let (key_pem, csr) = enroll::make_key(&name)?;
    let job = JoinJob {
        url: authority.to_string(),
        fingerprint: pin.clone(),
        helper_user,
        now: authtoken_core::clock::unix_secs(),
        request: EnrollRequest {
            v: 1,
            token: Some(token.to_owned()),
            csr,
            udid: udid.clone(),
            name: name.clone(),
        },
    };
    let stdin = zeroize::Zeroizing::new(
        serde_json::to_vec(&job).map_err(|e| JoinError::Helper(e.to_string()))?,
    );
    let output = authtoken_spawn::run_for_output(
        &helper,
        Rules::ROOT,
        &["enroll"],
        &stdin,
        MAX_CHILD_ANSWER_BYTES,
        enroll::EXCHANGE_TIMEOUT + std::time::Duration::from_secs(10),
    )
    .map_err(|e| JoinError::Helper(e.to_string()))?;
    let (ca_pem, answer) = match serde_json::from_slice::<ChildAnswer>(&output) {
        Ok(ChildAnswer::Issued { ca_pem, answer }) => (ca_pem, answer),
        Ok(ChildAnswer::Failed(why)) => return Err(JoinError::Exchange(why)),
        Err(e) => return Err(JoinError::Helper(e.to_string())),
    };
    // Root keeps the pinned certificate alone, whatever the child says.
    let (_, ca_pem) = enroll::pinned_ca(&ca_pem, &pin, "the join child's answer")?;
    let now = authtoken_core::clock::unix_secs();
    let identity = enroll::check_issued(&answer, &ca_pem, &key_pem, &udid, now)?;

    // Everything checked: the config's new text, checked too.
    let (ca_file, client_cert, client_key) = paths::joined_files(&config_path);
    let text = edited_config(
        before.as_ref().map(|text| text.as_str()),
        network_users,
        &[
            ("url", authority.as_str()),
            ("ca_file", &ca_file.display().to_string()),
            ("client_cert", &client_cert.display().to_string()),
            ("client_key", &client_key.display().to_string()),
            ("udid", &udid),
        ],
    )?;
    let config = Config::parse(&text).map_err(|e| {
        JoinError::Config(format!(
            "{}: after the join it would not check: {e}",
            config_path.display()
        ))
    })?;

    let write = |path: &Path| {
        let path = path.to_owned();
        move |source| JoinError::Write { path, source }
    };
    trust::write_atomic(&ca_file, ca_pem.as_bytes(), 0o644, Some((0, 0)))
        .map_err(write(&ca_file))?;
    enroll::write_identity(&client_cert, &client_key, &answer.certificate, &key_pem)?;
    let mode = std::fs::metadata(&config_path)
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o7777)
        .unwrap_or(0o644);
    trust::write_atomic(&config_path, text.as_bytes(), mode, Some((0, 0)))
        .map_err(write(&config_path))?;
    commands::write_module_settings(&config_path, &config.module_settings(&text));

    let days = identity.not_after.saturating_sub(now) / 86_400;
    println!(
        "joined {} as {} (UDID {}): device certificate serial {}, valid until {} ({days} days; \
         renewed by the sync timer after two thirds)",
        authority,
        authtoken_core::log::quote(&identity.name),
        identity.udid,
        identity.serial,
        authtoken_protocol::enroll::utc_text(identity.not_after)
    );
    println!(
        "wrote {}, {}, {} (0600) and {}",
        ca_file.display(),
        client_cert.display(),
        client_key.display(),
        config_path.display()
    );
    if config.directory.enabled {
        let _ = commands::sync(&config_path, false);
    }
    println!("next: authtoken check-config, then pam-auth-update --enable authtoken");
    Ok(())
}

/// The config's text with `keys` set at its top level (and, with
/// `network_users`, `[directory] enabled = true`), every comment and every
/// other key kept where it was (a new config names `backend = "mdm"`
/// first).
fn edited_config(
    before: Option<&str>,
    network_users: bool,
    keys: &[(&str, &str)],
) -> Result<String, JoinError> {
    let mut document: toml_edit::DocumentMut = before
        .unwrap_or("backend = \"mdm\"\n")
        .parse()
        .map_err(|e: toml_edit::TomlError| JoinError::Config(e.to_string()))?;
    if !document.contains_key("backend") {
        document["backend"] = toml_edit::value("mdm");
    }
    for (key, value) in keys {
        set_keeping_comments(document.as_table_mut(), key, toml_edit::Value::from(*value));
    }
    if network_users {
        let directory = document
            .entry("directory")
            .or_insert_with(toml_edit::table)
            .as_table_mut()
            .ok_or_else(|| JoinError::Config("directory is not a table".into()))?;
        set_keeping_comments(directory, "enabled", toml_edit::Value::from(true));
    }
    Ok(document.to_string())
}

/// Sets `key` in `table`; an existing line keeps its comments and place,
/// only its value changes.
fn set_keeping_comments(table: &mut toml_edit::Table, key: &str, value: toml_edit::Value) {
    match table.get_mut(key) {
        Some(toml_edit::Item::Value(existing)) => {
            let decor = existing.decor().clone();
            *existing = value;
            *existing.decor_mut() = decor;
        }
        _ => table[key] = toml_edit::Item::Value(value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_edit_keeps_comments_order_and_other_keys() {
        let before = "# the site's config\nbackend = \"mdm\"\nurl = \"https://old/checkin\" # old one\ntimeout_ms = 9000\n\n[directory]\n# network users\nenabled = true\n";
        let after = edited_config(
            Some(before),
            false,
            &[
                ("url", "https://new/checkin"),
                ("udid", "U"),
                ("ca_file", "/etc/authtoken/ca.pem"),
            ],
        )
        .unwrap();
        assert!(after.starts_with("# the site's config\nbackend = \"mdm\"\nurl = \"https://new/checkin\" # old one\ntimeout_ms = 9000\n"), "{after}");
        assert!(
            after.contains("[directory]\n# network users\nenabled = true\n"),
            "{after}"
        );
        let top = after.split("[directory]").next().unwrap();
        assert!(
            top.contains("udid = \"U\"") && top.contains("ca_file = \"/etc/authtoken/ca.pem\""),
            "{after}"
        );
        let fresh = edited_config(None, false, &[("url", "https://a/checkin")]).unwrap();
        assert_eq!(fresh, "backend = \"mdm\"\nurl = \"https://a/checkin\"\n");
        let off = "backend = \"mdm\"\n\n[directory]\n# network users\nenabled = false # for now\nrefresh_minutes = 5\n";
        let on = edited_config(Some(off), true, &[]).unwrap();
        assert_eq!(on, off.replace("false", "true"));
        let fresh = edited_config(None, true, &[]).unwrap();
        assert_eq!(fresh, "backend = \"mdm\"\n\n[directory]\nenabled = true\n");
    }
}
