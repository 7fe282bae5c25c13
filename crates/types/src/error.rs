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

/// An error with a category and a message in Docker's wording (lowercase, no trailing period),
/// and the error it came from (logged by the API edge, never sent to clients).
#[derive(Debug, Clone)]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
    /// A failed process's exit status (a build's RUN step), reported beside the message.
    pub code: Option<i64>,
    /// The underlying failure (an I/O error, say).
    pub source: Option<std::sync::Arc<dyn std::error::Error + Send + Sync>>,
}

/// Two errors are equal when they say the same thing; their sources are not compared.
impl PartialEq for Error {
    fn eq(&self, o: &Self) -> bool {
        (self.kind, &self.message, self.code) == (o.kind, &o.message, o.code)
    }
}

impl Eq for Error {}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error { kind, message: message.into(), code: None, source: None }
    }
    /// A command that exited non-zero: the message plus its exit status.
    pub fn exited(message: impl Into<String>, code: i64) -> Self {
        Error { kind: ErrorKind::InvalidArgument, message: message.into(), code: Some(code), source: None }
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

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl Error {
    /// A failed file operation on `path`: the path in the message, the I/O error kept. A missing
    /// file is an internal failure like any other unless the caller says it is a not-found.
    pub fn file(e: std::io::Error, path: &std::path::Path) -> Self {
        let mut err = Error::from(e);
        err.message = format!("{}: {}", path.display(), err.message);
        err
    }

    /// Attaches the error this one came from.
    pub fn with_source(mut self, e: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(std::sync::Arc::new(e));
        self
    }

    /// Whether an I/O failure underneath was "no such file or directory".
    pub fn is_io_not_found(&self) -> bool {
        self.source
            .as_deref()
            .and_then(|s| s.downcast_ref::<std::io::Error>())
            .is_some_and(|e| e.kind() == std::io::ErrorKind::NotFound)
    }
}

/// I/O failures are the host failing us (500), with two exceptions that come from what a client
/// sent: malformed data (a tar or JSON stream) is a 400. A missing file is *not* a 404 here:
/// "no such container" is said explicitly by the code that looked one up.
impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        let kind = match e.kind() {
            std::io::ErrorKind::InvalidData | std::io::ErrorKind::InvalidInput => ErrorKind::InvalidArgument,
            _ => ErrorKind::Internal,
        };
        Error::new(kind, e.to_string()).with_source(e)
    }
}

impl From<rustix::io::Errno> for Error {
    fn from(e: rustix::io::Errno) -> Self {
        std::io::Error::from(e).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_keep_their_source_and_are_no_404() {
        let e = Error::from(std::io::Error::from(std::io::ErrorKind::NotFound));
        assert_eq!(e.kind, ErrorKind::Internal, "a missing file is not a missing object");
        assert!(e.is_io_not_found());
        assert!(std::error::Error::source(&e).is_some());
        let e = Error::file(std::io::Error::from(std::io::ErrorKind::PermissionDenied), std::path::Path::new("/x"));
        assert!(e.message.starts_with("/x: "), "{}", e.message);
        assert_eq!(Error::from(std::io::Error::from(std::io::ErrorKind::InvalidData)).kind, ErrorKind::InvalidArgument);
        // Equality is by what the error says.
        assert_eq!(Error::not_found("x").with_source(std::fmt::Error), Error::not_found("x"));
    }
}
