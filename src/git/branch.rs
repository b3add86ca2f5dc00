//! Branch names from payloads and run configs are data, never code: they are checked against
//! git's rules for ref names before use, and only ever passed as URL parameters and markdown.

use anyhow::bail;

/// Longest branch name accepted (GitHub's ref limit is far above any real branch).
const MAX_LEN: usize = 255;

/// Checks `name` as `git check-ref-format --branch` would, and rejects control characters.
pub fn valid_branch(name: &str) -> anyhow::Result<&str> {
    let problem = if name.is_empty() {
        Some("it is empty")
    } else if name.len() > MAX_LEN {
        Some("it is too long")
    } else if name.chars().any(|c| c.is_control() || c == ' ') {
        Some("it contains spaces or control characters")
    } else if name.contains(['~', '^', ':', '?', '*', '[', '\\']) {
        Some("it contains one of ~ ^ : ? * [ \\")
    } else if name.contains("..") || name.contains("@{") || name.contains("//") {
        Some("it contains `..`, `@{` or `//`")
    } else if name.starts_with(['-', '/', '.']) || name.ends_with(['/', '.']) {
        Some("it starts with - / . or ends with / .")
    } else if name == "@" || name.ends_with(".lock") || name.split('/').any(|p| p.starts_with('.'))
    {
        Some("git does not allow it")
    } else {
        None
    };
    match problem {
        Some(why) => bail!("{:?} is not a valid branch name: {why}", truncated(name)),
        None => Ok(name),
    }
}

fn truncated(name: &str) -> String {
    name.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_branch_names_pass() {
        for name in ["main", "feat/lr-warmup", "exp_12.3", "user/x#1", "a\"b;c"] {
            assert_eq!(valid_branch(name).unwrap(), name);
        }
    }

    #[test]
    fn hostile_and_malformed_names_are_refused() {
        for name in [
            "x\"; curl evil #",
            "",
            "-rf",
            "a..b",
            "a b",
            "a\nb",
            "refs/../x",
            "x.lock",
            "a:b",
            "$(id)\u{7}",
            ".hidden",
        ] {
            let error = valid_branch(name).unwrap_err().to_string();
            assert!(error.contains("not a valid branch name"), "{name}: {error}");
        }
    }
}
