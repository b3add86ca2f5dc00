//! What mlwf knows of git: which code a run trained (branch, commit, dirty), the root of a work
//! tree, and git's rules for branch names. Git runs with argument vectors, never through a shell.

mod branch;
mod facts;
mod repo;

use std::path::{Path, PathBuf};

pub use branch::valid_branch;
pub use facts::GitFacts;
pub use repo::{remote_host, RemoteForm, Repo};

/// The root of the git work tree containing `start`, if any.
pub fn root(start: &Path) -> Option<PathBuf> {
    start
        .ancestors()
        .find(|dir| dir.join(".git").exists())
        .map(Path::to_path_buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_is_the_nearest_folder_with_a_git_directory() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a/b");
        std::fs::create_dir_all(&nested).unwrap();
        assert_eq!(root(&nested), None);
        std::fs::create_dir(dir.path().join(".git")).unwrap();
        assert_eq!(root(&nested).as_deref(), Some(dir.path()));
    }
}
