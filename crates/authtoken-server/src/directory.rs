//! The directory the authority publishes to enrolled devices: the POSIX
//! account of every user who has one, and the groups, so that a client's
//! NSS module can make users who exist only here known to the machine
//! (issue 23; the wire format is to go into docs/PROTOCOL.md).
//!
//! The store keeps the attributes (`[users.NAME]` `uid`, `gid`, `gecos`,
//! `home`, `shell`, `groups`; `[groups.NAME]` `gid`); this module checks
//! them, picks defaults for new users, and renders the JSON document with
//! its serial (the SHA-256 of the document's content, so an unchanged
//! directory keeps its serial across reloads and restarts).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// Where new uids and gids start unless the administrator says otherwise.
pub const DEFAULT_FIRST_ID: u32 = 10_000;
/// The highest id handed out by default (below `nobody`'s 65534).
pub const DEFAULT_LAST_ID: u32 = 60_000;

/// A user's POSIX account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub uid: u32,
    pub gid: u32,
    pub gecos: String,
    pub home: String,
    pub shell: String,
    /// Supplementary groups, by name.
    pub groups: Vec<String>,
}

/// Why an account or group cannot be published.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DirectoryError {
    #[error("{0}: uid and gid 0 are never published")]
    Root(String),
    #[error("{0}: {1} may not contain ':', '/', ',', blanks or a newline (passwd/group field)")]
    Field(String, &'static str),
    #[error("{0}: home and shell must be absolute paths")]
    Relative(String),
    #[error("{0}: uid {1} is already {2}'s")]
    UidTaken(String, u32, String),
    #[error("{0}: gid {1} is already group {2}'s")]
    GidTaken(String, u32, String),
    #[error("{0}: no group named {1}")]
    NoGroup(String, String),
    #[error("no free id between {0} and {1}")]
    Exhausted(u32, u32),
}

/// A passwd/group field must not break the line format a client writes.
fn plain(name: &str, what: &'static str, value: &str) -> Result<(), DirectoryError> {
    if value.contains([':', '\n', '\r', '\0']) {
        Err(DirectoryError::Field(name.to_owned(), what))
    } else {
        Ok(())
    }
}

impl Account {
    /// The default account for a new user `name` with `uid`: a primary
    /// group of the same name and id, `/home/NAME`, `/bin/bash`.
    pub fn default_for(name: &str, uid: u32) -> Account {
        Account {
            uid,
            gid: uid,
            gecos: String::new(),
            home: format!("/home/{name}"),
            shell: "/bin/bash".to_owned(),
            groups: Vec::new(),
        }
    }

    pub fn check(&self, name: &str) -> Result<(), DirectoryError> {
        if !authtoken_directory::name_ok(name) {
            return Err(DirectoryError::Field(name.to_owned(), "the name"));
        }
        if self.uid == 0 || self.gid == 0 {
            return Err(DirectoryError::Root(name.to_owned()));
        }
        plain(name, "gecos", &self.gecos)?;
        plain(name, "home", &self.home)?;
        plain(name, "shell", &self.shell)?;
        if !self.home.starts_with('/') || !self.shell.starts_with('/') {
            return Err(DirectoryError::Relative(name.to_owned()));
        }
        Ok(())
    }
}

pub use authtoken_directory::{Directory, GroupEntry, UserEntry};

/// Builds the directory of `accounts` (user name -> account) and `groups`
/// (group name -> gid), checking that ids are unique and named groups
/// exist. A user's primary group need not be a named group (the default
/// primary group of the same name is published as a group of its own).
pub fn build(
    accounts: &BTreeMap<String, Account>,
    groups: &BTreeMap<String, u32>,
) -> Result<Directory, DirectoryError> {
    let mut uids: BTreeMap<u32, &str> = BTreeMap::new();
    let mut gids: BTreeMap<u32, String> = BTreeMap::new();
    let mut published: BTreeMap<String, (u32, BTreeSet<String>)> = BTreeMap::new();
    for (name, gid) in groups {
        if !authtoken_directory::name_ok(name) {
            return Err(DirectoryError::Field(name.clone(), "the name"));
        }
        if *gid == 0 {
            return Err(DirectoryError::Root(name.clone()));
        }
        if let Some(other) = gids.insert(*gid, name.clone()) {
            return Err(DirectoryError::GidTaken(name.clone(), *gid, other));
        }
        published.insert(name.clone(), (*gid, BTreeSet::new()));
    }
    let mut users = Vec::new();
    for (name, account) in accounts {
        account.check(name)?;
        if let Some(other) = uids.insert(account.uid, name) {
            return Err(DirectoryError::UidTaken(
                name.clone(),
                account.uid,
                other.to_owned(),
            ));
        }
        // The primary group: a named group with that gid, or else a group
        // of the user's own name.
        if let std::collections::btree_map::Entry::Vacant(primary) = gids.entry(account.gid) {
            if published.contains_key(name) {
                return Err(DirectoryError::GidTaken(
                    name.clone(),
                    account.gid,
                    name.clone(),
                ));
            }
            primary.insert(name.clone());
            published.insert(name.clone(), (account.gid, BTreeSet::new()));
        }
        for group in &account.groups {
            match published.get_mut(group) {
                Some((_, members)) => {
                    members.insert(name.clone());
                }
                None => return Err(DirectoryError::NoGroup(name.clone(), group.clone())),
            }
        }
        users.push(UserEntry {
            name: name.clone(),
            uid: account.uid,
            gid: account.gid,
            gecos: account.gecos.clone(),
            home: account.home.clone(),
            shell: account.shell.clone(),
        });
    }
    let groups: Vec<GroupEntry> = published
        .into_iter()
        .map(|(name, (gid, members))| GroupEntry {
            name,
            gid,
            members: members.into_iter().collect(),
        })
        .collect();
    let content = serde_json::to_vec(&(&users, &groups)).unwrap_or_default();
    let serial = ring::digest::digest(&ring::digest::SHA256, &content);
    Ok(Directory {
        serial: crate::files::hex(&serial.as_ref()[..16]),
        users,
        groups,
    })
}

/// The lowest id in `first..=last` that neither `taken` holds.
pub fn next_free_id(
    taken: impl IntoIterator<Item = u32>,
    first: u32,
    last: u32,
) -> Result<u32, DirectoryError> {
    let taken: BTreeSet<u32> = taken.into_iter().collect();
    (first..=last)
        .find(|id| !taken.contains(id))
        .ok_or(DirectoryError::Exhausted(first, last))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accounts(list: &[(&str, Account)]) -> BTreeMap<String, Account> {
        list.iter()
            .map(|(name, account)| ((*name).to_owned(), account.clone()))
            .collect()
    }

    #[test]
    fn users_get_their_own_group_and_named_groups_their_members() {
        let mut carol = Account::default_for("carol", 10_001);
        carol.groups = vec!["staff".into()];
        let dave = Account::default_for("dave", 10_002);
        let groups = BTreeMap::from([("staff".to_owned(), 10_100)]);
        let directory = build(&accounts(&[("carol", carol), ("dave", dave)]), &groups).unwrap();
        assert_eq!(directory.users.len(), 2);
        assert_eq!(directory.users[0].home, "/home/carol");
        let names: Vec<_> = directory.groups.iter().map(|g| g.name.as_str()).collect();
        assert_eq!(names, ["carol", "dave", "staff"]);
        assert_eq!(directory.groups[2].members, ["carol"]);
        assert_eq!(directory.serial.len(), 32);
        let again = build(
            &accounts(&[
                ("carol", {
                    let mut c = Account::default_for("carol", 10_001);
                    c.groups = vec!["staff".into()];
                    c
                }),
                ("dave", Account::default_for("dave", 10_002)),
            ]),
            &groups,
        )
        .unwrap();
        assert_eq!(again.serial, directory.serial, "same content, same serial");
        let changed = build(
            &accounts(&[("carol", Account::default_for("carol", 10_001))]),
            &groups,
        )
        .unwrap();
        assert_ne!(changed.serial, directory.serial);
    }

    #[test]
    fn root_ids_duplicates_and_broken_fields_are_refused() {
        let root = Account::default_for("toor", 0);
        assert_eq!(
            build(&accounts(&[("toor", root)]), &BTreeMap::new()),
            Err(DirectoryError::Root("toor".into()))
        );
        let twice = accounts(&[
            ("a", Account::default_for("a", 10_001)),
            ("b", Account::default_for("b", 10_001)),
        ]);
        assert!(matches!(
            build(&twice, &BTreeMap::new()),
            Err(DirectoryError::UidTaken(..))
        ));
        let mut colon = Account::default_for("eve", 10_003);
        colon.gecos = "Eve:0:0".into();
        assert!(matches!(
            build(&accounts(&[("eve", colon)]), &BTreeMap::new()),
            Err(DirectoryError::Field(..))
        ));
        let mut relative = Account::default_for("eve", 10_003);
        relative.shell = "bash".into();
        assert!(matches!(
            build(&accounts(&[("eve", relative)]), &BTreeMap::new()),
            Err(DirectoryError::Relative(..))
        ));
        let mut stray = Account::default_for("eve", 10_003);
        stray.groups = vec!["wheel".into()];
        assert!(matches!(
            build(&accounts(&[("eve", stray)]), &BTreeMap::new()),
            Err(DirectoryError::NoGroup(..))
        ));
    }

    #[test]
    fn new_ids_are_the_lowest_free_ones_in_range() {
        assert_eq!(next_free_id([], 10_000, 60_000), Ok(10_000));
        assert_eq!(
            next_free_id([10_000, 10_001, 10_003], 10_000, 60_000),
            Ok(10_002)
        );
        assert_eq!(
            next_free_id([5, 6], 5, 6),
            Err(DirectoryError::Exhausted(5, 6))
        );
    }
}
