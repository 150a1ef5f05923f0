//! Error types: every problem is reported as `file:line:column: message`.

use std::fmt;
use std::path::{Path, PathBuf};

use serde_saphyr::{Localizer, Location, SnippetMode, UserMessageFormatter};

/// One problem in a configuration file.
///
/// Displays as `file:line:column: message`, or `file: message` when the
/// position is unknown (`line == 0`), e.g. when the file cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", Position { file, line: *line, column: *column })]
pub struct ConfigError {
    /// The configuration file, as given to [`crate::load`] / [`crate::load_str`].
    pub file: PathBuf,
    /// 1-based line, or 0 if unknown.
    pub line: u32,
    /// 1-based column (in characters), or 0 if unknown.
    pub column: u32,
    /// What is wrong, without the position. Never contains a secret.
    pub message: String,
}

impl ConfigError {
    /// An error at a known position.
    pub fn new(file: &Path, line: u32, column: u32, message: impl Into<String>) -> Self {
        Self {
            file: file.to_path_buf(),
            line,
            column,
            message: message.into(),
        }
    }

    /// An error about the file as a whole (no position).
    pub fn whole_file(file: &Path, message: impl Into<String>) -> Self {
        Self::new(file, 0, 0, message)
    }

    /// Turns a serde-saphyr error (syntax, unknown key, wrong type) into a
    /// positioned error. The message is rendered without serde-saphyr's own
    /// location suffix and source snippet: the position is carried in our own
    /// fields, and a snippet would echo file contents.
    pub(crate) fn from_yaml(file: &Path, err: &serde_saphyr::Error) -> Self {
        let formatter = UserMessageFormatter.with_localizer(&NoLocationSuffix);
        let mut options = serde_saphyr::RenderOptions::new(&formatter);
        options.snippets = SnippetMode::Off;
        let message = err.render_with_options(options);
        let (line, column) = err.location().map_or((0, 0), |loc| line_column(&loc));
        Self::new(file, line, column, message)
    }
}

/// `file:line:column` (or just `file` when the line is unknown).
struct Position<'a> {
    file: &'a Path,
    line: u32,
    column: u32,
}

impl fmt::Display for Position<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        Ok(())
    }
}

/// Every problem found in a configuration file, sorted by position.
///
/// Displays one error per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// The errors, in file order.
    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.0.iter()
    }

    /// Number of errors.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True if there are no errors (never the case for a returned `Err`).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, err) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{err}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl From<ConfigError> for ConfigErrors {
    fn from(err: ConfigError) -> Self {
        Self(vec![err])
    }
}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a ConfigError;
    type IntoIter = std::slice::Iter<'a, ConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl IntoIterator for ConfigErrors {
    type Item = ConfigError;
    type IntoIter = std::vec::IntoIter<ConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

/// serde-saphyr's 1-based line and column, clamped into `u32`.
pub(crate) fn line_column(loc: &Location) -> (u32, u32) {
    let clamp = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
    (clamp(loc.line()), clamp(loc.column()))
}

/// Keeps serde-saphyr's messages free of "at line X, column Y".
struct NoLocationSuffix;

impl Localizer for NoLocationSuffix {
    fn attach_location<'a>(
        &self,
        base: std::borrow::Cow<'a, str>,
        _loc: Location,
    ) -> std::borrow::Cow<'a, str> {
        base
    }
}
