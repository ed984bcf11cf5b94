//! A client machine in a private mount namespace (`unshare -m`): the
//! workspace's own `nsswitch.conf` (`passwd: files authtoken`), `passwd`
//! and `group` and a `var-lib` directory bind-mounted over the machine's,
//! so the host's files are never touched; `LD_LIBRARY_PATH` lets glibc
//! find the module as `libnss_authtoken.so.2`.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use super::*;

/// A machine in a mount namespace: its NSS config, accounts and /var/lib.
pub(crate) struct Machine<'a> {
    pub ws: &'a Workspace,
    pub config: PathBuf,
}

impl Machine<'_> {
    pub(crate) fn new(ws: &Workspace, config: PathBuf) -> Machine<'_> {
        let lib = ws.path("nsslib");
        std::fs::create_dir_all(&lib).unwrap();
        let module = module_path().with_file_name("libnss_authtoken.so");
        std::fs::copy(&module, lib.join("libnss_authtoken.so.2")).unwrap();
        std::fs::write(
            ws.path("nsswitch.conf"),
            "passwd: files authtoken\ngroup: files authtoken\nshadow: files\n",
        )
        .unwrap();
        // The machine's own accounts, plus a local one whose uid the
        // authority also hands out.
        let mut passwd = std::fs::read_to_string("/etc/passwd").unwrap();
        passwd.push_str("localdup:x:10050:10050::/nonexistent:/usr/sbin/nologin\n");
        std::fs::write(ws.path("passwd"), passwd).unwrap();
        std::fs::copy("/etc/group", ws.path("group")).unwrap();
        std::fs::create_dir_all(ws.path("var-lib")).unwrap();
        Machine { ws, config }
    }

    pub(crate) fn cache(&self) -> PathBuf {
        self.ws.path("var-lib/authtoken/nss/directory")
    }

    /// Runs `script` (bash) in the namespace; `$HELPER` (what the timer
    /// runs), `$CLI` (the administrator's `authtoken`) and `$CONFIG` set.
    pub(crate) fn run(&self, script: &str) -> Output {
        self.run_with(&self.config, script)
    }

    pub(crate) fn run_with(&self, config: &Path, script: &str) -> Output {
        let ws = self.ws;
        let setup = format!(
            "set -u\nmount --bind {nss} /etc/nsswitch.conf\nmount --bind {passwd} /etc/passwd\n\
             mount --bind {group} /etc/group\nmount --bind {varlib} /var/lib\n\
             export LD_LIBRARY_PATH={lib}\nHELPER={HELPER}\nCLI={CLI}\nCONFIG={config}\n{script}\n",
            nss = ws.path("nsswitch.conf").display(),
            passwd = ws.path("passwd").display(),
            group = ws.path("group").display(),
            varlib = ws.path("var-lib").display(),
            lib = ws.path("nsslib").display(),
            config = config.display(),
        );
        in_mount_namespace(120, &setup)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// A script line that makes `login` the console stack: the module
    /// with `config`, then pam_unix's account check, which a `*` password
    /// field passes without a shadow entry (an `x` would not).
    pub(crate) fn console_stack(&self, config: &Path) -> String {
        let pam = self.ws.pam_service(
            "login",
            &[
                format!(
                    "auth required {} config={}",
                    module_path().display(),
                    config.display()
                ),
                "account required pam_unix.so".into(),
            ],
        );
        format!("mount --bind {} /etc/pam.d\n", pam.display())
    }

    /// A script line that puts the module where glibc looks by default
    /// (an overlay on the system library directory, in this namespace
    /// only), for programs that run with an empty environment and so
    /// without `LD_LIBRARY_PATH`: `mkhomedir_helper`, run by
    /// `pam_mkhomedir`.
    pub(crate) fn system_nss(&self) -> String {
        let (upper, work) = (self.ws.path("nss-upper"), self.ws.path("nss-work"));
        std::fs::create_dir_all(&upper).unwrap();
        std::fs::create_dir_all(&work).unwrap();
        std::fs::copy(
            self.ws.path("nsslib/libnss_authtoken.so.2"),
            upper.join("libnss_authtoken.so.2"),
        )
        .unwrap();
        format!(
            "files=$(ldconfig -p | awk '/libnss_files.so.2/ {{print $NF; exit}}')\n\
             libdir=$(dirname \"$(readlink -f \"$files\")\")\n\
             mount -t overlay overlay -o \"lowerdir=$libdir,upperdir={},workdir={}\" \"$libdir\" || exit 1\n",
            upper.display(),
            work.display()
        )
    }

    pub(crate) fn sync(&self, config: &Path) -> Output {
        self.run_with(config, "\"$HELPER\" sync --config \"$CONFIG\"")
    }
}

pub(crate) fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A script line: `user` signs in on the console with `password`; prints
/// `TAG-ok` or `TAG-refused`.
pub(crate) fn console_login(user: &str, password: &str, tag: &str) -> String {
    format!(
        "echo '{password}' | timeout 60 pamtester login {user} authenticate acct_mgmt \
         >/dev/null 2>&1 && echo {tag}-ok || echo {tag}-refused\n"
    )
}
