//! The module's options from its pam.d line: a pure parse, so that it can
//! be fuzzed without loading the module.

use std::ffi::CStr;
use std::path::{Path, PathBuf};

use crate::platform::CONFIG as DEFAULT_CONFIG_PATH;

/// Options from the pam.d line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleOptions {
    pub debug: bool,
    pub use_first_pass: bool,
    pub try_first_pass: bool,
    /// Leave a successful login's token for this process session's
    /// `open_session` although this handle may never end: the service
    /// authenticates in a forked child (implied for `sshd`).
    pub handoff: bool,
    /// Absolute: checked here, once, for every hook.
    pub config_path: PathBuf,
    /// Options we do not know, quoted for the log; logged and ignored, as
    /// pam_unix does.
    pub unknown: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionsError {
    #[error("config=PATH must be absolute")]
    RelativeConfigPath,
}

impl ModuleOptions {
    pub fn parse(args: &[&CStr]) -> Result<ModuleOptions, OptionsError> {
        let mut options = ModuleOptions {
            debug: false,
            use_first_pass: false,
            try_first_pass: false,
            handoff: false,
            config_path: PathBuf::from(DEFAULT_CONFIG_PATH),
            unknown: Vec::new(),
        };
        for arg in args {
            let arg = arg.to_string_lossy();
            match arg.as_ref() {
                "debug" => options.debug = true,
                "use_first_pass" => options.use_first_pass = true,
                "try_first_pass" => options.try_first_pass = true,
                "handoff" => options.handoff = true,
                other => match other.strip_prefix("config=") {
                    Some(path) if Path::new(path).is_absolute() => {
                        options.config_path = PathBuf::from(path)
                    }
                    Some(_) => return Err(OptionsError::RelativeConfigPath),
                    None => options.unknown.push(crate::log::quote(other)),
                },
            }
        }
        Ok(options)
    }
}
