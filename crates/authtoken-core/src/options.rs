//! The module's options from its pam.d line: a pure parse, so that it can
//! be fuzzed without loading the module.

use std::ffi::CStr;
use std::path::{Path, PathBuf};

use crate::config::DEFAULT_CONFIG_PATH;

/// Options from the pam.d line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleOptions {
    pub debug: bool,
    pub use_first_pass: bool,
    pub try_first_pass: bool,
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
            config_path: PathBuf::from(DEFAULT_CONFIG_PATH),
            unknown: Vec::new(),
        };
        for arg in args {
            let arg = arg.to_string_lossy();
            match arg.as_ref() {
                "debug" => options.debug = true,
                "use_first_pass" => options.use_first_pass = true,
                "try_first_pass" => options.try_first_pass = true,
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
