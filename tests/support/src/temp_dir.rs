//! A directory for one test or benchmark, removed when dropped.

use std::path::{Path, PathBuf};

/// A fresh directory under the system's temp dir, named after a tag and this process, removed
/// (with everything in it) when dropped.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// `tlw-{tag}-{pid}`, emptied if it exists. `tag` must be unique in this process: tests
    /// run in parallel, and one's drop would remove the other's files (a second use of a
    /// tag panics saying so).
    pub fn new(tag: &str) -> Self {
        static TAGS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
        let mut tags = TAGS.lock().unwrap_or_else(|p| p.into_inner());
        assert!(
            !tags.iter().any(|t| t == tag),
            "TempDir tag {tag:?} is used twice in this process"
        );
        tags.push(tag.to_owned());
        drop(tags);
        let path = std::env::temp_dir().join(format!("tlw-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        Self(path)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Writes `text` to the file `name` in the directory.
    pub fn write(&self, name: &str, text: &str) {
        let path = self.0.join(name);
        std::fs::write(&path, text)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_created_empty_and_removed_on_drop() {
        let dir = TempDir::new("temp-dir-test");
        let path = dir.path().to_owned();
        assert!(path.is_dir());
        assert_eq!(std::fs::read_dir(&path).unwrap().count(), 0);
        std::fs::write(path.join("f"), "x").unwrap();
        drop(dir);
        assert!(!path.exists());
    }

    #[test]
    #[should_panic(expected = "used twice")]
    fn a_tag_used_twice_panics() {
        let _a = TempDir::new("temp-dir-twice");
        let _b = TempDir::new("temp-dir-twice");
    }
}
