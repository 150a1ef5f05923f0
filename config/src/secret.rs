//! [`Secret`]: a credential that never prints itself.

use std::fmt;

/// A secret value (password, token) resolved at load time.
///
/// `Debug` and `Display` print `<redacted>`; the only way to the value is
/// [`Secret::expose`], so a secret cannot end up in a log line or an error by
/// accident.
#[derive(Clone)]
pub struct Secret(Option<String>);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(Some(value.into()))
    }

    /// A secret this process's role does not need: it was not read.
    pub fn unloaded() -> Self {
        Self(None)
    }

    /// `self` if loaded, else `other`.
    pub(crate) fn or(self, other: Secret) -> Secret {
        if self.is_loaded() {
            self
        } else {
            other
        }
    }

    /// Whether the value was read (see [`crate::Role`]).
    pub fn is_loaded(&self) -> bool {
        self.0.is_some()
    }

    /// The secret value (empty when it was not loaded for this process's
    /// role). Call it only where the value is actually needed (connecting,
    /// authenticating), never for logging.
    pub fn expose(&self) -> &str {
        self.0.as_deref().unwrap_or("")
    }
}

/// Equal when both hold the same value (or neither was loaded): a reload
/// tells a changed password from an unchanged one without printing either.
impl PartialEq for Secret {
    fn eq(&self, other: &Secret) -> bool {
        self.0 == other.0
    }
}

impl Eq for Secret {}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::Secret;

    #[test]
    fn debug_and_display_are_redacted() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?}"), "<redacted>");
        assert_eq!(format!("{secret}"), "<redacted>");
        assert_eq!(format!("{:?}", Some(secret.clone())), "Some(<redacted>)");
        assert_eq!(secret.expose(), "hunter2");
    }
}
