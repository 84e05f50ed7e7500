use thiserror::Error;
use wcodec_format::Dtype;

/// Why a model container (safetensors or GGUF) could not be read or written. Each variant is
/// one failure and its message says what is wrong and where, so a user can act on it.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ContainerError {
    /// The first bytes are neither the GGUF magic nor a safetensors header.
    #[error(
        "not a safetensors or GGUF file: it starts neither with \"GGUF\" nor with an 8-byte \
         header length followed by '{{'"
    )]
    UnknownFormat,

    /// The file ends before a structure that it declares.
    #[error(
        "file is truncated: {what} needs {needed} bytes at offset {offset}, but the file is \
         {file_len} bytes long"
    )]
    Truncated { what: &'static str, offset: u64, needed: u64, file_len: u64 },

    /// The safetensors header length is above the reader's limit.
    #[error(
        "safetensors header length {len} exceeds the limit of {max} bytes (corrupt file, or not \
         safetensors)"
    )]
    HeaderTooLarge { len: u64, max: u64 },

    /// The safetensors header is not UTF-8.
    #[error("safetensors header is not valid UTF-8 (at byte {valid_up_to} of the header)")]
    HeaderNotUtf8 { valid_up_to: u64 },

    /// The safetensors header does not start with `{`.
    #[error("safetensors header does not start with '{{' (corrupt file, or not safetensors)")]
    HeaderStart,

    /// The safetensors header is not a JSON object.
    #[error("safetensors header is not a valid JSON object: {detail}")]
    HeaderJson { detail: String },

    /// `__metadata__` is not an object of strings.
    #[error("safetensors __metadata__ must be an object of string values: {detail}")]
    Metadata { detail: String },

    /// A safetensors tensor entry lacks a field or has one of the wrong type.
    #[error(
        "safetensors tensor '{name}': bad header entry ({detail}); expected \
         {{\"dtype\": str, \"shape\": [int], \"data_offsets\": [begin, end]}}"
    )]
    TensorEntry { name: String, detail: String },

    /// A safetensors tensor has `data_offsets` with begin > end.
    #[error("tensor '{name}': data_offsets [{begin}, {end}] has begin after end")]
    ReversedOffsets { name: String, begin: u64, end: u64 },

    /// Two tensors have the same name.
    #[error("tensor name '{name}' appears more than once")]
    DuplicateTensor { name: String },

    /// The element count times the element size is not the byte length.
    #[error(
        "tensor '{name}': shape {dims:?} of {dtype} needs {expected} bytes, but its data is \
         {actual} bytes"
    )]
    ShapeMismatch { name: String, dtype: Dtype, dims: Vec<u64>, expected: u64, actual: u64 },

    /// A size computed from a shape or an offset does not fit in 64 bits.
    #[error("tensor '{name}': the size of its {what} overflows 64 bits")]
    SizeOverflow { name: String, what: &'static str },

    /// A tensor's bytes are not all inside the file.
    #[error(
        "tensor '{name}': its {len} bytes at offset {offset} run past the end of the file \
         ({file_len} bytes; is it truncated?)"
    )]
    TensorOutOfBounds { name: String, offset: u64, len: u64, file_len: u64 },

    /// Two tensors share bytes.
    #[error(
        "tensors '{first}' and '{second}' overlap: '{second}' starts at byte {second_offset}, \
         before '{first}' ends at byte {first_end}"
    )]
    Overlap { first: String, second: String, first_end: u64, second_offset: u64 },

    /// The GGUF version is not 2 or 3.
    #[error("GGUF version {version} is not supported (this reader reads versions 2 and 3)")]
    GgufVersion { version: u32 },

    /// A GGUF metadata value has a type code the specification does not define.
    #[error("GGUF metadata key '{key}': unknown value type {value_type}")]
    GgufValueType { key: String, value_type: u32 },

    /// GGUF arrays nested deeper than the reader allows.
    #[error("GGUF metadata key '{key}': arrays nested more than {max} deep")]
    GgufNesting { key: String, max: u32 },

    /// A GGUF metadata key appears twice.
    #[error("GGUF metadata key '{key}' appears more than once")]
    GgufDuplicateKey { key: String },

    /// A GGUF string (key or tensor name) is not UTF-8.
    #[error("GGUF {what} at offset {offset} is not valid UTF-8")]
    GgufNotUtf8 { what: &'static str, offset: u64 },

    /// `general.alignment` has the wrong type or is not a power of two.
    #[error("GGUF general.alignment must be a non-zero power of two stored as u32, found {found}")]
    GgufAlignment { found: String },

    /// A GGUF tensor declares more dimensions than the reader allows.
    #[error("GGUF tensor '{name}': {n_dims} dimensions (at most {max} are supported)")]
    GgufDims { name: String, n_dims: u32, max: u32 },

    /// A GGUF tensor has a ggml type this reader does not know the size of.
    #[error("GGUF tensor '{name}': unknown ggml type {ggml_type} (cannot compute its size)")]
    GgmlType { name: String, ggml_type: u32 },

    /// A block-quantized GGUF tensor's rows are not whole blocks.
    #[error(
        "GGUF tensor '{name}': rows of {row} elements are not a whole number of {block}-element \
         {type_name} blocks"
    )]
    PartialBlock { name: String, type_name: &'static str, row: u64, block: u64 },

    /// A tensor cannot be written to safetensors as given.
    #[error("cannot write tensor '{name}': {detail}")]
    WriteTensor { name: String, detail: String },
}

pub type Result<T, E = ContainerError> = std::result::Result<T, E>;
