//! `authtoken sync`: the authority's directory (JSON), judged record by
//! record as root before anything reaches the NSS cache.
#![no_main]
use authtoken_directory::{
    accept, name_ok, Local, MachineRules, Ranges, PRIVILEGED_NAMES,
};
use authtoken_directory::nss_cache::{render, Passwd, Reader};
use libfuzzer_sys::fuzz_target;

const RANGES: Ranges = Ranges {
    min_uid: 1_000,
    max_uid: 60_000,
    min_gid: 1_000,
    max_gid: 60_000,
};

fuzz_target!(|data: &[u8]| {
    let local = Local::from_files(
        "root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/sh\n",
        "root:x:0:\nalice:x:1000:\n",
    )
    .with_shells("/bin/sh\n/bin/bash\n")
    .with_sysusers("u systemd-timesync -\ng kvm2 -\n");
    let rules = MachineRules {
        ranges: RANGES,
        reserved_names: vec!["payroll".into()],
        ..MachineRules::default()
    };
    let Ok(accepted) = accept(data, &rules, &local) else {
        return;
    };
    let directory = &accepted.directory;
    // What the machine decides holds for every record that got through.
    let allowed = |name: &str| {
        name_ok(name)
            && !name.bytes().all(|b| b.is_ascii_digit())
            && !PRIVILEGED_NAMES.contains(&name)
            && !rules.reserved_names.iter().any(|r| r == name)
            && !local.declared.contains(name)
    };
    let mut homes = std::collections::HashSet::new();
    for user in &directory.users {
        assert!(allowed(&user.name));
        assert!(user.uid != 0 && (RANGES.min_uid..=RANGES.max_uid).contains(&user.uid));
        assert!(!local.users.contains(&user.name) && !local.uids.contains(&user.uid));
        let component = user.home.strip_prefix("/home/").expect("a home below /home");
        assert!(!component.is_empty() && !component.contains('/'));
        assert!(component != "." && component != "..");
        assert!(homes.insert(user.home.clone()) && !local.homes.contains(&user.home));
        assert!(local.shells.contains(&user.shell) || user.shell == rules.default_shell);
        assert!(!user.gecos.chars().any(char::is_control));
    }
    for group in &directory.groups {
        assert!(allowed(&group.name) && group.gid != 0);
        for member in &group.members {
            assert!(directory.users.iter().any(|u| &u.name == member));
        }
    }
    // What is accepted is what the NSS module finds, field for field.
    let path = std::env::temp_dir().join(format!("directory-fuzz-{}", std::process::id()));
    std::fs::write(&path, render(directory, 1)).expect("scratch file");
    let owner = {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("mode");
        std::fs::metadata(&path).expect("scratch file").uid()
    };
    let reader = Reader::open_owned_by(&path, owner).expect("a rendered cache opens");
    for user in &directory.users {
        let line = reader.user_by_name(user.name.as_bytes()).expect("found by name");
        let found = Passwd::parse(&line).expect("a passwd line");
        assert_eq!(
            (found.name, found.uid, found.gid, found.home, found.shell),
            (
                user.name.as_bytes(),
                user.uid,
                user.gid,
                user.home.as_bytes(),
                user.shell.as_bytes()
            )
        );
        assert!(reader.user_by_uid(user.uid).is_some(), "found by uid");
    }
    for group in &directory.groups {
        assert!(reader.group_by_name(group.name.as_bytes()).is_some());
        assert!(reader.group_by_gid(group.gid).is_some());
    }
});
