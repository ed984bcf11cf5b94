//! Every PAM stack the documentation shows is run: the ```pam blocks of the
//! README and of the administrator's guide (docs/guide/), the EXAMPLES of
//! pam_authtoken(8), and the Linux files in pam.d/.
//! Only the module's path and `config=` are rewritten; the rest of each
//! stack (pam_unix, pam_deny, @include of the host's common-* files) is as
//! written. pamtester under bwrap, against the real authority:
//! * a managed user with the right password signs in;
//! * the same user with a wrong password is refused;
//! * a user the authority does not manage (410) reaches the rest of the
//!   stack, which, as the docs say, decides (here: refuses, since the user
//!   has no local account), after exactly one request.

mod common;

use std::path::{Path, PathBuf};

use common::*;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// (where it is documented, its lines)
fn documented_stacks() -> Vec<(String, Vec<String>)> {
    let mut stacks = Vec::new();
    let mut pages = vec![repo().join("README.md")];
    let mut guide: Vec<PathBuf> = std::fs::read_dir(repo().join("docs/guide"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .collect();
    guide.sort();
    pages.extend(guide);
    for page in pages {
        let text = std::fs::read_to_string(&page).unwrap();
        let name = page
            .strip_prefix(repo())
            .unwrap_or(&page)
            .display()
            .to_string();
        let mut block: Option<Vec<String>> = None;
        let mut count = 0;
        for line in text.lines() {
            match (&mut block, line.trim()) {
                (None, "```pam") => block = Some(Vec::new()),
                (Some(lines), "```") => {
                    count += 1;
                    stacks.push((format!("{name} block {count}"), lines.clone()));
                    block = None;
                }
                (Some(lines), _) => lines.push(line.to_owned()),
                (None, _) => {}
            }
        }
    }
    let man = std::fs::read_to_string(repo().join("packaging/man/pam_authtoken.8")).unwrap();
    let mut in_example = false;
    let mut example = Vec::new();
    for line in man.lines() {
        match line {
            ".EX" => in_example = true,
            ".EE" => {
                stacks.push((
                    "pam_authtoken(8) EXAMPLES".into(),
                    std::mem::take(&mut example),
                ));
                in_example = false;
            }
            _ if in_example => example.push(line.to_owned()),
            _ => {}
        }
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("pam.d"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            !p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("macos-")
        })
        .collect();
    files.sort();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        stacks.push((
            format!("pam.d/{}", file.file_name().unwrap().to_string_lossy()),
            text.lines().map(str::to_owned).collect(),
        ));
    }
    stacks
}

/// The stack with the module's path and our config put in.
fn rewrite(lines: &[String], config: &Path) -> Vec<String> {
    let module = format!("{} config={}", module_path().display(), config.display());
    lines
        .iter()
        .map(|line| line.replace("pam_authtoken.so", &module))
        .collect()
}

#[test]
fn every_documented_stack_works_as_documented() {
    let ws = Workspace::new();
    ws.add_user("alice", Some("alice's token pw"), &[]);
    ws.add_user("bob", None, &["--policy=unmanaged"]);
    let server = Server::start(&ws, &[]);
    let config = ws.config_for(&server.url(), "");
    let stacks = documented_stacks();
    assert!(stacks.len() >= 8, "found {} stacks", stacks.len());
    let confdir = ws.path("pam.d");
    std::fs::create_dir_all(&confdir).unwrap();
    // The host's own stacks, for the @include lines.
    for entry in std::fs::read_dir("/etc/pam.d").unwrap().flatten() {
        if entry.path().is_file() {
            std::fs::copy(entry.path(), confdir.join(entry.file_name())).unwrap();
        }
    }
    for (origin, lines) in &stacks {
        assert!(
            lines.iter().any(|l| l.contains("pam_authtoken.so")),
            "{origin} has no pam_authtoken.so line"
        );
        std::fs::write(
            confdir.join("authtoken-test"),
            rewrite(lines, &config).join("\n") + "\n",
        )
        .unwrap();
        let run = |user: &str, password: &str| {
            pamtester_with(&confdir, None, user, password, SessionOf::New)
        };
        let (code, out) = run("alice", "alice's token pw");
        assert_eq!(code, 0, "{origin}: the right password signs in\n{out}");
        let (code, out) = run("alice", "wrong");
        assert_ne!(code, 0, "{origin}: a wrong password is refused\n{out}");
        let before = server.requests_for("bob");
        let (code, out) = run("bob", "anything");
        assert_ne!(
            code, 0,
            "{origin}: an unmanaged user without a local account is refused by the rest of the stack\n{out}"
        );
        assert_eq!(
            server.requests_for("bob"),
            before + 1,
            "{origin}: one request, then the module stepped aside"
        );
    }
}
