//! The user store: one TOML file of verifiers, never passwords.
//!
//! ```toml
//! secret = "…"                 # base64; keys the decoy salts of unknown users
//! [users.alice]
//! policy = "managed"           # managed | no-token | unmanaged
//! scheme = "scram-sha-256"     # or "digest"
//! salt = "…"                   # base64
//! iterations = 600000
//! stored_key = "…"             # base64
//! server_key = "…"             # base64
//! [users.dave]                 # HTTP Digest compatibility: HA1 is password-equivalent
//! scheme = "digest"
//! realm = "authtoken"
//! algorithm = "SHA-256"
//! qop = true
//! ha1 = "…"                    # hex
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use crate::directory::{self, Account, Directory, DirectoryError};
use crate::enrollment::{DeviceRecord, JoinToken};
use crate::files::{key32, lock_beside, random, read_private, write_private, FileError};
use crate::proto::scram::Verifier;
use authtoken_protocol::http_digest::{self, Algorithm};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// Challenge with the user's scheme and issue a token on a good digest.
    #[default]
    Managed,
    /// Answer an empty `DigestChallenge`: no token needed.
    NoToken,
    /// Answer `410 Gone`: not this authority's user.
    Unmanaged,
}

impl Policy {
    pub fn name(self) -> &'static str {
        match self {
            Policy::Managed => "managed",
            Policy::NoToken => "no-token",
            Policy::Unmanaged => "unmanaged",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    Scram(Verifier),
    Digest {
        realm: String,
        algorithm: Algorithm,
        qop: bool,
        ha1: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub policy: Policy,
    pub credential: Option<Credential>,
    /// The POSIX account published in the directory, if the user has one.
    pub account: Option<Account>,
}

#[derive(Debug, Clone)]
pub struct Store {
    pub secret: Vec<u8>,
    pub users: BTreeMap<String, User>,
    /// Named groups (name -> gid) of the directory.
    pub groups: BTreeMap<String, u32>,
    /// The device certificates the device CA issued, by serial (hex).
    pub devices: BTreeMap<String, DeviceRecord>,
    /// Join tokens, by ID: only a hash of each secret.
    pub join_tokens: BTreeMap<String, JoinToken>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoreFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
    #[serde(default)]
    users: BTreeMap<String, UserRecord>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    groups: BTreeMap<String, GroupRecord>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    devices: BTreeMap<String, DeviceRecord>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    join_tokens: BTreeMap<String, JoinToken>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupRecord {
    gid: u32,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserRecord {
    #[serde(default)]
    policy: Policy,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scheme: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    salt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iterations: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    stored_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    server_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    realm: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    algorithm: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    qop: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ha1: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    uid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gecos: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    home: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    shell: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    groups: Vec<String>,
}

/// What an administrator's edit changed, so a database is written one
/// row, not whole.
pub enum Change {
    User(String),
    RemovedUser(String),
    Group(String),
    /// Device certificates added or revoked (by serial).
    Devices(Vec<String>),
    /// A join token added (by ID).
    JoinToken(String),
}

/// What is wrong with a store, or with writing one.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    File(#[from] FileError),
    #[error("{}: {problem}", path.display())]
    Format {
        path: std::path::PathBuf,
        problem: String,
    },
    #[error("{0}")]
    Toml(String),
    #[error("secret missing or not base64 (recreate the store with add-user)")]
    Secret,
    #[error("users.{user}: {problem}")]
    User { user: String, problem: String },
    #[error("directory: {0}")]
    Directory(String),
}

/// Why one user's record is not a user.
#[derive(Debug, thiserror::Error)]
enum RecordError {
    #[error("{0} missing")]
    Missing(&'static str),
    #[error("{0}")]
    Key(#[from] FileError),
    #[error("algorithm must be MD5 or SHA-256")]
    Algorithm,
    #[error("unknown scheme {0}")]
    Scheme(String),
    #[error("a managed user needs a scheme and its verifier")]
    NoCredential,
}

/// Why an administrator's edit was refused.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    #[error("{0} is not in the store")]
    NoSuchUser(String),
    #[error("no device {0} in the store")]
    NoSuchDevice(String),
    /// A value every client would refuse (said in the message).
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Directory(#[from] DirectoryError),
    #[error("{0}")]
    Store(#[from] StoreError),
}

fn record_to_user(name: &str, record: &UserRecord) -> Result<User, StoreError> {
    record.to_user().map_err(|e| StoreError::User {
        user: name.to_owned(),
        problem: e.to_string(),
    })
}

/// A required field of a user record.
fn field<'a, T>(value: &'a Option<T>, name: &'static str) -> Result<&'a T, RecordError> {
    value.as_ref().ok_or(RecordError::Missing(name))
}

impl UserRecord {
    fn to_user(&self) -> Result<User, RecordError> {
        let credential = match self.scheme.as_deref() {
            None => None,
            Some("scram-sha-256") => {
                let salt = B64
                    .decode(field(&self.salt, "salt")?)
                    .ok()
                    .filter(|s| !s.is_empty())
                    .ok_or(FileError::BadKey("salt"))?;
                Some(Credential::Scram(Verifier {
                    salt,
                    iterations: *field(&self.iterations, "iterations")?,
                    stored_key: key32(field(&self.stored_key, "stored_key")?, "stored_key")?,
                    server_key: key32(field(&self.server_key, "server_key")?, "server_key")?,
                }))
            }
            Some("digest") => Some(Credential::Digest {
                realm: field(&self.realm, "realm")?.clone(),
                algorithm: Algorithm::parse(self.algorithm.as_deref().unwrap_or("MD5"))
                    .ok_or(RecordError::Algorithm)?,
                qop: self.qop.unwrap_or(true),
                ha1: field(&self.ha1, "ha1")?.to_ascii_lowercase(),
            }),
            Some(other) => return Err(RecordError::Scheme(other.to_owned())),
        };
        if self.policy == Policy::Managed && credential.is_none() {
            return Err(RecordError::NoCredential);
        }
        let account = match self.uid {
            None => None,
            Some(uid) => Some(Account {
                uid,
                gid: self.gid.unwrap_or(uid),
                gecos: self.gecos.clone().unwrap_or_default(),
                home: field(&self.home, "home")?.clone(),
                shell: field(&self.shell, "shell")?.clone(),
                groups: self.groups.clone(),
            }),
        };
        Ok(User {
            policy: self.policy,
            credential,
            account,
        })
    }

    fn from_user(user: &User) -> UserRecord {
        let mut record = UserRecord {
            policy: user.policy,
            ..UserRecord::default()
        };
        if let Some(account) = &user.account {
            record.uid = Some(account.uid);
            record.gid = Some(account.gid);
            record.gecos = Some(account.gecos.clone());
            record.home = Some(account.home.clone());
            record.shell = Some(account.shell.clone());
            record.groups = account.groups.clone();
        }
        match &user.credential {
            None => {}
            Some(Credential::Scram(v)) => {
                record.scheme = Some("scram-sha-256".into());
                record.salt = Some(B64.encode(&v.salt));
                record.iterations = Some(v.iterations);
                record.stored_key = Some(B64.encode(v.stored_key));
                record.server_key = Some(B64.encode(v.server_key));
            }
            Some(Credential::Digest {
                realm,
                algorithm,
                qop,
                ha1,
            }) => {
                record.scheme = Some("digest".into());
                record.realm = Some(realm.clone());
                record.algorithm = Some(algorithm.name().into());
                record.qop = Some(*qop);
                record.ha1 = Some(ha1.clone());
            }
        }
        record
    }
}

impl Store {
    /// An empty store with a fresh secret.
    pub fn new() -> Result<Store, StoreError> {
        Ok(Store {
            secret: random(32)?,
            users: BTreeMap::new(),
            groups: BTreeMap::new(),
            devices: BTreeMap::new(),
            join_tokens: BTreeMap::new(),
        })
    }

    pub fn load(path: &Path) -> Result<Store, StoreError> {
        Store::load_with_text(path).map(|(store, _)| store)
    }

    /// The store and the text it was read from (what an append extends).
    pub fn load_with_text(path: &Path) -> Result<(Store, Zeroizing<String>), StoreError> {
        let text = read_private(path)?;
        let store = Store::parse(&text).map_err(|e| StoreError::Format {
            path: path.to_owned(),
            problem: e.to_string(),
        })?;
        Ok((store, text))
    }

    /// Writes `text` (the file as loaded) with one new user's table added
    /// at the end: adding a user costs a copy of the file, not a new
    /// serialization of every user in it. Still atomic (a new file renamed
    /// into place, mode 0600).
    pub fn save_appending(
        path: &Path,
        text: &str,
        name: &str,
        user: &User,
    ) -> Result<(), StoreError> {
        let mut users = BTreeMap::new();
        users.insert(name.to_owned(), UserRecord::from_user(user));
        let table = toml::to_string(&StoreFile {
            secret: None,
            users,
            ..StoreFile::default()
        })
        .map_err(|e| StoreError::Toml(e.to_string()))?;
        let separator = if text.ends_with('\n') { "" } else { "\n" };
        Ok(write_private(path, &format!("{text}{separator}{table}"))?)
    }

    pub fn parse(text: &str) -> Result<Store, StoreError> {
        let file: StoreFile =
            toml::from_str(text).map_err(|e| StoreError::Toml(e.message().to_owned()))?;
        let secret = file
            .secret
            .as_ref()
            .and_then(|s| B64.decode(s).ok())
            .ok_or(StoreError::Secret)?;
        let mut users = BTreeMap::new();
        for (name, record) in &file.users {
            users.insert(name.clone(), record_to_user(name, record)?);
        }
        let groups = file
            .groups
            .iter()
            .map(|(name, group)| (name.clone(), group.gid))
            .collect();
        Ok(Store {
            devices: file.devices,
            join_tokens: file.join_tokens,
            ..Store::assemble(secret, users, groups)?
        })
    }

    /// A store from its parts, refused whole when its directory cannot be
    /// published (both stores load through here).
    pub fn assemble(
        secret: Vec<u8>,
        users: BTreeMap<String, User>,
        groups: BTreeMap<String, u32>,
    ) -> Result<Store, StoreError> {
        if secret.is_empty() {
            return Err(StoreError::Secret);
        }
        let store = Store {
            secret,
            users,
            groups,
            devices: BTreeMap::new(),
            join_tokens: BTreeMap::new(),
        };
        store
            .directory()
            .map_err(|e| StoreError::Directory(e.to_string()))?;
        Ok(store)
    }

    /// A user as one JSON object: the fields of a `[users.NAME]` table of
    /// the TOML store (what the PostgreSQL store keeps per row).
    pub fn user_to_json(user: &User) -> String {
        serde_json::to_string(&UserRecord::from_user(user)).unwrap_or_default()
    }

    /// The inverse of [`Store::user_to_json`], checked as a TOML record is.
    pub fn user_from_json(name: &str, json: &str) -> Result<User, StoreError> {
        let record: UserRecord = serde_json::from_str(json).map_err(|e| StoreError::User {
            user: name.to_owned(),
            problem: e.to_string(),
        })?;
        record_to_user(name, &record)
    }

    pub fn to_toml(&self) -> Result<String, StoreError> {
        let file = StoreFile {
            secret: Some(B64.encode(&self.secret)),
            users: self
                .users
                .iter()
                .map(|(name, user)| (name.clone(), UserRecord::from_user(user)))
                .collect(),
            groups: self
                .groups
                .iter()
                .map(|(name, gid)| (name.clone(), GroupRecord { gid: *gid }))
                .collect(),
            devices: self.devices.clone(),
            join_tokens: self.join_tokens.clone(),
        };
        let body = toml::to_string(&file).map_err(|e| StoreError::Toml(e.to_string()))?;
        Ok(format!(
            "# authtoken-server user store: verifiers only, no passwords.\n# Edit with `authtoken-server add-user`.\n{body}"
        ))
    }

    /// The directory of the users with a POSIX account.
    pub fn directory(&self) -> Result<Directory, DirectoryError> {
        // An unmanaged user is "not my user" (410): not published either.
        let accounts = self
            .users
            .iter()
            .filter(|(_, user)| user.policy != Policy::Unmanaged)
            .filter_map(|(name, user)| Some((name.clone(), user.account.clone()?)))
            .collect();
        directory::build(&accounts, &self.groups)
    }

    /// The lowest uid in `first..=last` no user and no group id holds.
    pub fn next_uid(&self, first: u32, last: u32) -> Result<u32, DirectoryError> {
        let taken = self
            .users
            .values()
            .filter_map(|user| user.account.as_ref())
            .flat_map(|account| [account.uid, account.gid])
            .chain(self.groups.values().copied());
        directory::next_free_id(taken, first, last)
    }

    /// Edits the store file at `path` under its lock ([`lock_beside`]):
    /// read it (a missing file is a new store), apply `edit`, check the
    /// directory can still be published, write back. A new user is
    /// appended to the file as it was read rather than the whole store
    /// serialized again. Returns what `edit` says, and the store written.
    pub fn edit_file<T>(
        path: &Path,
        edit: impl FnOnce(&mut Store) -> Result<(Change, T), EditError>,
    ) -> Result<(T, Store), EditError> {
        let _lock = lock_beside(path).map_err(StoreError::from)?;
        let (mut store, text) = if path.exists() {
            let (store, text) = Store::load_with_text(path)?;
            (store, Some(text))
        } else {
            (Store::new()?, None)
        };
        let before = store.users.len();
        let (change, said) = edit(&mut store)?;
        store.directory()?;
        match (&change, text) {
            // A new user: the file as it was, and its table after.
            (Change::User(name), Some(text)) if store.users.len() == before + 1 => {
                match store.users.get(name) {
                    Some(user) => Store::save_appending(path, &text, name, user)?,
                    None => store.save(path)?,
                }
            }
            _ => store.save(path)?,
        }
        Ok((said, store))
    }

    /// Writes the store next to `path` and renames it into place, mode 0600.
    pub fn save(&self, path: &Path) -> Result<(), StoreError> {
        Ok(write_private(path, &self.to_toml()?)?)
    }

    /// A SCRAM user's credential, from the password.
    pub fn scram_credential(password: &[u8], iterations: u32) -> Result<Credential, FileError> {
        let salt = random(16)?;
        Ok(Credential::Scram(Verifier::from_password(
            password, salt, iterations,
        )))
    }

    /// An HTTP Digest user's credential (password-equivalent HA1).
    pub fn digest_credential(
        user: &str,
        password: &[u8],
        realm: &str,
        algorithm: Algorithm,
        qop: bool,
    ) -> Credential {
        Credential::Digest {
            realm: realm.to_owned(),
            algorithm,
            qop,
            ha1: http_digest::ha1(algorithm, user, realm, password).to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_round_trips_and_holds_no_password() {
        let mut store = Store::new().unwrap();
        store.users.insert(
            "alice".into(),
            User {
                policy: Policy::Managed,
                credential: Some(Store::scram_credential(b"hunter2-secret", 4096).unwrap()),
                account: Some(Account::default_for("alice", 10_000)),
            },
        );
        store.users.insert(
            "dave".into(),
            User {
                policy: Policy::Managed,
                credential: Some(Store::digest_credential(
                    "dave",
                    b"hunter2-secret",
                    "r",
                    Algorithm::Sha256,
                    false,
                )),
                account: None,
            },
        );
        store.users.insert(
            "bob".into(),
            User {
                policy: Policy::Unmanaged,
                credential: None,
                account: Some(Account::default_for("bob", 10_002)),
            },
        );
        store.groups.insert("staff".into(), 10_100);
        store
            .users
            .get_mut("alice")
            .and_then(|alice| alice.account.as_mut())
            .unwrap()
            .groups
            .push("staff".into());
        let text = store.to_toml().unwrap();
        assert!(!text.contains("hunter2"));
        let back = Store::parse(&text).unwrap();
        assert_eq!(back.users, store.users);
        assert_eq!(back.secret, store.secret);
        assert_eq!(back.groups, store.groups);
        assert_eq!(back.directory().unwrap(), store.directory().unwrap());
        assert_eq!(store.next_uid(10_000, 60_000), Ok(10_001));
        let names: Vec<_> = store
            .directory()
            .unwrap()
            .users
            .into_iter()
            .map(|u| u.name)
            .collect();
        assert_eq!(
            names,
            ["alice"],
            "dave has no account; bob is not ours (410)"
        );
    }

    #[test]
    fn an_appended_user_reads_back_with_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.toml");
        let mut store = Store::new().unwrap();
        store.groups.insert("staff".into(), 10_100);
        store.users.insert(
            "alice".into(),
            User {
                policy: Policy::Managed,
                credential: Some(Store::scram_credential(b"pw", 4096).unwrap()),
                account: Some(Account::default_for("alice", 10_000)),
            },
        );
        store.save(&path).unwrap();
        let (mut loaded, text) = Store::load_with_text(&path).unwrap();
        let carol = User {
            policy: Policy::Managed,
            credential: Some(Store::scram_credential(b"pw2", 4096).unwrap()),
            account: Some(Account::default_for("car\"ol", 10_001)),
        };
        Store::save_appending(&path, &text, "car\"ol", &carol).unwrap();
        loaded.users.insert("car\"ol".into(), carol);
        let back = Store::load(&path).unwrap();
        assert_eq!(back.users, loaded.users);
        assert_eq!(back.groups, loaded.groups);
        assert_eq!(back.secret, loaded.secret);
    }

    #[test]
    fn managed_user_needs_credential() {
        let err = Store::parse("secret = \"AAAA\"\n[users.x]\npolicy = \"managed\"\n").unwrap_err();
        assert!(err.to_string().contains("users.x"), "{err}");
        assert!(Store::parse("secret = \"AAAA\"\n[users.x]\nfoo = 1\n").is_err());
    }

    #[test]
    fn a_store_with_an_unpublishable_directory_is_refused() {
        let text = "secret = \"AAAA\"\n[users.x]\npolicy = \"no-token\"\nuid = 0\nhome = \"/root\"\nshell = \"/bin/sh\"\n";
        let err = Store::parse(text).unwrap_err();
        assert!(err.to_string().contains("directory"), "{err}");
    }
}
