use std::fmt;

/// The category of a failure. Deep code picks a kind; only the API edge turns it into a status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request itself is wrong (400).
    InvalidArgument,
    /// The object does not exist (404).
    NotFound,
    /// The object exists or is in a state that forbids the operation (409).
    Conflict,
    /// Nothing to do: start of a running container, stop of a stopped one (304).
    NotModified,
    /// The operation is never allowed on this object, such as removing a built-in network (403).
    Forbidden,
    /// A registry refused the credentials (401).
    Unauthorized,
    /// The feature exists in Docker but not here (501).
    NotImplemented,
    /// The feature needs something unavailable, such as swarm (503).
    Unavailable,
    /// Anything else: a bug or the host failing us (500).
    Internal,
}

/// An error with a category and a message in Docker's wording (lowercase, no trailing period).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
    /// A failed process's exit status (a build's RUN step), reported beside the message.
    pub code: Option<i64>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error { kind, message: message.into(), code: None }
    }
    /// A command that exited non-zero: the message plus its exit status.
    pub fn exited(message: impl Into<String>, code: i64) -> Self {
        Error { kind: ErrorKind::InvalidArgument, message: message.into(), code: Some(code) }
    }
    pub fn exit_code(&self) -> Option<i64> {
        self.code
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidArgument, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, message)
    }
    pub fn not_modified() -> Self {
        Self::new(ErrorKind::NotModified, "")
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, message)
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unauthorized, message)
    }
    pub fn not_implemented(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotImplemented, message)
    }
    /// Prefixes the message with context, keeping the kind.
    pub fn context(mut self, what: impl fmt::Display) -> Self {
        self.message = format!("{what}: {}", self.message);
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        let kind = match e.kind() {
            std::io::ErrorKind::NotFound => ErrorKind::NotFound,
            std::io::ErrorKind::InvalidData | std::io::ErrorKind::InvalidInput => ErrorKind::InvalidArgument,
            std::io::ErrorKind::AlreadyExists => ErrorKind::Conflict,
            _ => ErrorKind::Internal,
        };
        Error::new(kind, e.to_string())
    }
}

impl From<rustix::io::Errno> for Error {
    fn from(e: rustix::io::Errno) -> Self {
        std::io::Error::from(e).into()
    }
}
