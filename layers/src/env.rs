//! The process environment, behind a trait so every rule that reads it is testable.

use std::{collections::HashMap, path::PathBuf};

/// Where the stack reads environment variables and the working directory from.
///
/// [`ProcessEnvironment`] is the real one; [`StaticEnvironment`] is a fixed map for tests
/// (no global state is touched, so tests run in parallel).
pub trait Environment: Send + Sync + 'static {
    /// One variable, `None` when unset.
    fn var(&self, key: &str) -> Option<String>;
    /// All variables (handed to Temporal's envconfig loader).
    fn vars(&self) -> HashMap<String, String>;
    /// The current working directory.
    fn current_dir(&self) -> Option<PathBuf>;
}

/// The real process environment.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcessEnvironment;

impl Environment for ProcessEnvironment {
    fn var(&self, key: &str) -> Option<String> {
        std::env::var(key).ok()
    }
    fn vars(&self) -> HashMap<String, String> {
        std::env::vars().collect()
    }
    fn current_dir(&self) -> Option<PathBuf> {
        std::env::current_dir().ok()
    }
}

/// A fixed environment, for tests and for embedding.
#[derive(Clone, Debug, Default)]
pub struct StaticEnvironment {
    vars: HashMap<String, String>,
    current_dir: Option<PathBuf>,
}

impl StaticEnvironment {
    /// An empty environment with no working directory.
    pub fn new() -> Self {
        Self::default()
    }
    /// Adds a variable.
    pub fn with_var(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.vars.insert(key.into(), value.into());
        self
    }
    /// Sets the working directory.
    pub fn with_current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.current_dir = Some(dir.into());
        self
    }
}

impl Environment for StaticEnvironment {
    fn var(&self, key: &str) -> Option<String> {
        self.vars.get(key).cloned()
    }
    fn vars(&self) -> HashMap<String, String> {
        self.vars.clone()
    }
    fn current_dir(&self) -> Option<PathBuf> {
        self.current_dir.clone()
    }
}
