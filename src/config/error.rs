//! [`ConfigError`]: every configuration error names the file, the line and column where the
//! parser gives them, the field, and what is allowed (docs/configuration.md). It imports nothing
//! of the config sources, so every provider's parameter parsing uses it.

use std::fmt;
use std::path::{Path, PathBuf};

/// A configuration error: which file, where, which field, and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub field: Option<String>,
    pub message: String,
}

impl ConfigError {
    pub fn new(file: &Path, message: impl Into<String>) -> Self {
        ConfigError {
            file: file.to_path_buf(),
            line: None,
            column: None,
            field: None,
            message: message.into(),
        }
    }

    pub fn field(file: &Path, field: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            field: Some(field.into()),
            ..ConfigError::new(file, message)
        }
    }

    pub fn at(mut self, line: usize, column: usize) -> Self {
        self.line = Some(line);
        self.column = Some(column);
        self
    }

    /// Converts a YAML parse error, keeping its line and column.
    pub fn yaml(file: &Path, err: &serde_yaml::Error) -> Self {
        let mut e = ConfigError::new(file, yaml_message(err));
        if let Some(loc) = err.location() {
            e = e.at(loc.line(), loc.column());
        }
        e
    }
}

/// serde_yaml appends " at line L column C" to its messages; we print the location ourselves.
fn yaml_message(err: &serde_yaml::Error) -> String {
    let text = err.to_string();
    match text.rfind(" at line ") {
        Some(i) if err.location().is_some() => text[..i].to_string(),
        _ => text,
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(col) = self.column {
                write!(f, ":{col}")?;
            }
        }
        write!(f, ": ")?;
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        write!(f, "{}", self.message)
    }
}

/// A config error is the user's to fix: exit 2.
impl From<ConfigError> for crate::error::Error {
    fn from(e: ConfigError) -> Self {
        crate::error::Error::failed(true, e)
    }
}

impl std::error::Error for ConfigError {}
