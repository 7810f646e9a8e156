use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{ModelsError, Result};

/// Class names in model output order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Labels(pub Vec<String>);

impl Labels {
    /// One label per line; trailing blank lines are ignored, blank lines inside are kept
    /// (as empty names) so indices never shift.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ModelsError::Io { path: path.to_path_buf(), source })?;
        let mut names: Vec<String> = text.lines().map(|l| l.trim_end_matches('\r').to_string()).collect();
        while names.last().is_some_and(|l| l.trim().is_empty()) {
            names.pop();
        }
        if names.is_empty() {
            return Err(ModelsError::NoLabels { path: path.to_path_buf() });
        }
        Ok(Labels(names))
    }

    /// Labels for a model whose output has `offset` extra leading classes (MobileNetV2's
    /// `background` at index 0): those get the given placeholder name.
    pub fn with_offset(self, offset: usize, placeholder: &str) -> Self {
        let mut names = vec![placeholder.to_string(); offset];
        names.extend(self.0);
        Labels(names)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn get(&self, index: usize) -> &str {
        self.0.get(index).map(String::as_str).unwrap_or("?")
    }
}
