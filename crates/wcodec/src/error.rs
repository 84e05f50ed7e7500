use std::path::PathBuf;

/// Every way wcodec can fail, grouped by what the user should do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("{0}")]
    Usage(String),
    #[error("{path}: already exists (use --force to overwrite)")]
    OutputExists { path: PathBuf },
    #[error("{0}")]
    Container(#[from] wcodec_container::ContainerError),
    #[error("{0}")]
    Encode(#[from] wcodec_encode::EncodeError),
    #[error("{0}")]
    Decode(#[from] wcodec_decode::DecodeError),
    #[error("{0}")]
    Format(#[from] wcodec_format::FormatError),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("no tensor named {0:?}")]
    NoSuchTensor(String),
    #[error("GPU unavailable: {0}")]
    GpuUnavailable(String),
    /// Damaged data found while decoding on a GPU.
    #[error("{0}")]
    Corrupt(String),
}

impl Error {
    /// The process exit code the CLI uses for this error (documented in the README).
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) | Error::OutputExists { .. } | Error::NoSuchTensor(_) => 2,
            Error::Container(_) | Error::Format(_) => 3,
            Error::Decode(wcodec_decode::DecodeError::Io(_)) => 4,
            Error::Decode(_) => 3,
            Error::Encode(wcodec_encode::EncodeError::Io(_)) => 4,
            Error::Encode(wcodec_encode::EncodeError::Options(_)) => 2,
            Error::Encode(_) => 3,
            Error::Io { .. } => 4,
            Error::GpuUnavailable(_) => 5,
            Error::Corrupt(_) => 3,
        }
    }
}
