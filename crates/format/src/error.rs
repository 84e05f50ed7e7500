use thiserror::Error;

/// Why a .wcz file (or a part of one) is not valid. Every variant names what is wrong, so the
/// CLI can print one line a user can act on.
#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum FormatError {
    #[error("not a .wcz file (bad magic)")]
    BadMagic,
    #[error("unsupported format version {found} (this build reads version {supported})")]
    UnsupportedVersion { found: u16, supported: u16 },
    #[error("file is truncated: {what} needs {needed} bytes, {available} available")]
    Truncated { what: &'static str, needed: u64, available: u64 },
    #[error("checksum mismatch in {what}: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum { what: String, stored: u32, computed: u32 },
    #[error("invalid {what}: {detail}")]
    Invalid { what: &'static str, detail: String },
}

impl FormatError {
    pub fn invalid(what: &'static str, detail: impl Into<String>) -> Self {
        FormatError::Invalid { what, detail: detail.into() }
    }
}

pub type Result<T, E = FormatError> = std::result::Result<T, E>;
