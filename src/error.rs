//! Typed errors. Every variant says what went wrong, with which file, and how to fix it;
//! the binary prints the message as one paragraph and exits non-zero, never with a panic trace.

use std::path::{Path, PathBuf};

/// The library's error type.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration value is missing, malformed or out of range.
    #[error("invalid configuration{}: {message}{}", at(.source_file), fix(.hint))]
    Config { source_file: Option<PathBuf>, message: String, hint: String },

    /// A file could not be read or written.
    #[error("cannot {action} '{}': {source}{}", .path.display(), fix(.hint))]
    Io { action: &'static str, path: PathBuf, source: std::io::Error, hint: String },

    /// A file named on the command line or in a config (config, weights) cannot be read.
    #[error("cannot read {what} '{}': {problem}{}", .path.display(), fix(.hint))]
    Input { what: &'static str, path: PathBuf, problem: String, hint: String },

    /// A checkpoint file is missing, truncated, corrupt or from another run.
    #[error("checkpoint '{}' is unusable: {problem}{}", .path.display(), fix(.hint))]
    Checkpoint { path: PathBuf, problem: String, hint: String },

    /// A dataset file is missing, has the wrong shape or an unsupported format.
    #[error("dataset '{}': {problem}{}", .path.display(), fix(.hint))]
    Data { path: PathBuf, problem: String, hint: String },

    /// A run directory is in a state the command cannot work with.
    #[error("run directory '{}': {problem}{}", .path.display(), fix(.hint))]
    RunDir { path: PathBuf, problem: String, hint: String },

    /// The requested compute device is not compiled in or not available.
    #[error("device '{device}': {problem}{}", fix(.hint))]
    Device { device: String, problem: String, hint: String },

    /// Another process holds the run directory's lock.
    #[error("run directory '{}' is in use by another specdyn process ({holder}){}", .path.display(), fix(.hint))]
    Busy { path: PathBuf, holder: String, hint: String },

    /// The job needs more memory than the machine has.
    #[error("{what} needs about {} of memory ({breakdown}) but {}{}", gib(*.needed), memory_text(*.available), fix(.hint))]
    Memory { what: String, needed: f64, breakdown: String, available: Option<f64>, hint: String },
}

/// Bytes as GiB text.
pub fn gib(bytes: f64) -> String {
    if bytes >= 1024.0 * 1024.0 * 1024.0 * 1024.0 * 1024.0 {
        format!("{:.1e} GiB", bytes / (1024.0 * 1024.0 * 1024.0))
    } else if bytes >= 0.1 * 1024.0 * 1024.0 * 1024.0 {
        format!("{:.1} GiB", bytes / (1024.0 * 1024.0 * 1024.0))
    } else {
        format!("{:.0} MiB", bytes / (1024.0 * 1024.0))
    }
}

fn memory_text(bytes: Option<f64>) -> String {
    match bytes {
        Some(b) => format!("this machine has {} available", gib(b)),
        None => "the available memory is unknown".to_string(),
    }
}

fn at(file: &Option<PathBuf>) -> String {
    match file {
        Some(p) => format!(" in '{}'", p.display()),
        None => String::new(),
    }
}

fn fix(hint: &str) -> String {
    if hint.is_empty() { String::new() } else { format!(". Fix: {hint}") }
}

/// Exit code when the run directory is locked by another process (sysexits' EX_TEMPFAIL).
pub const EXIT_BUSY: i32 = 75;

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A configuration error not tied to one file.
    pub fn config(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Error::Config { source_file: None, message: message.into(), hint: hint.into() }
    }

    /// An I/O error with the path and the action that failed.
    pub fn io(action: &'static str, path: &Path, source: std::io::Error) -> Self {
        use std::io::ErrorKind as K;
        let hint = match source.kind() {
            K::NotFound => "check the path (relative paths are taken from the current directory)",
            K::PermissionDenied | K::ReadOnlyFilesystem => {
                "choose a location you can write to (e.g. --out runs/NAME) or fix its permissions"
            }
            K::NotADirectory => "a component of the path is a file, not a directory: choose another path",
            K::IsADirectory => "the path names a directory; give a file path",
            K::StorageFull | K::QuotaExceeded => "free disk space or write elsewhere",
            _ => "check the path, its permissions and the free disk space",
        };
        Error::Io { action, path: path.to_path_buf(), source, hint: hint.to_string() }
    }

    /// An input file (config, weights) that cannot be read.
    pub fn input(what: &'static str, path: &Path, source: std::io::Error, hint: impl Into<String>) -> Self {
        use std::io::ErrorKind as K;
        let problem = match source.kind() {
            K::NotFound => "no such file".to_string(),
            K::PermissionDenied => "permission denied".to_string(),
            K::IsADirectory => "it is a directory, not a file".to_string(),
            _ => source.to_string(),
        };
        Error::Input { what, path: path.to_path_buf(), problem, hint: hint.into() }
    }

    /// A checkpoint problem.
    pub fn checkpoint(path: &Path, problem: impl Into<String>, hint: impl Into<String>) -> Self {
        Error::Checkpoint { path: path.to_path_buf(), problem: problem.into(), hint: hint.into() }
    }

    /// A dataset problem.
    pub fn data(path: &Path, problem: impl Into<String>, hint: impl Into<String>) -> Self {
        Error::Data { path: path.to_path_buf(), problem: problem.into(), hint: hint.into() }
    }

    /// A run-directory problem.
    pub fn run_dir(path: &Path, problem: impl Into<String>, hint: impl Into<String>) -> Self {
        Error::RunDir { path: path.to_path_buf(), problem: problem.into(), hint: hint.into() }
    }

    /// Attach the config file a configuration error came from.
    pub fn in_file(self, file: &Path) -> Self {
        match self {
            Error::Config { source_file: None, message, hint } => {
                Error::Config { source_file: Some(file.to_path_buf()), message, hint }
            }
            other => other,
        }
    }

    /// Process exit code (README, "Exit status"): 2 for input the user can fix (command line,
    /// config, data files, the state of a run directory, a job too large for the machine),
    /// 75 when another process holds the run directory (try again later), 1 for a failure
    /// while working (I/O error while writing).
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Busy { .. } => EXIT_BUSY,
            Error::Io { .. } => 1,
            Error::Config { .. }
            | Error::Input { .. }
            | Error::Checkpoint { .. }
            | Error::Data { .. }
            | Error::RunDir { .. }
            | Error::Device { .. }
            | Error::Memory { .. } => 2,
        }
    }
}
