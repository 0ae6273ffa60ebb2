//! User names from `/etc/passwd`, cached by uid.
//!
//! NOTE: names come from the host's `/etc/passwd`; a process in a container with its own user
//! database is reported with the host's name for its uid, or with none.

use std::{
    collections::HashMap,
    fs,
    path::PathBuf,
    time::{Duration, Instant},
};

/// How long an unknown uid waits before the file is read again.
const RELOAD_AFTER: Duration = Duration::from_secs(30);

/// Cache of uid to user name.
#[derive(Debug)]
pub struct UserNames {
    path: PathBuf,
    names: HashMap<u32, String>,
    loaded_at: Option<Instant>,
}

impl UserNames {
    /// A cache that reads the given passwd file on first use.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            names: HashMap::new(),
            loaded_at: None,
        }
    }

    /// Returns the name of `uid`, reading the file again at most every 30 seconds when the uid
    /// is unknown.
    pub fn name(&mut self, uid: u32) -> Option<&str> {
        let stale = self
            .loaded_at
            .is_none_or(|loaded_at| loaded_at.elapsed() >= RELOAD_AFTER);
        if !self.names.contains_key(&uid) && stale {
            self.reload();
        }
        self.names.get(&uid).map(String::as_str)
    }

    fn reload(&mut self) {
        self.loaded_at = Some(Instant::now());
        match fs::read_to_string(&self.path) {
            Ok(text) => self.names = parse_passwd(&text),
            Err(error) => {
                tracing::debug!(path = %self.path.display(), %error, "cannot read the user database")
            }
        }
    }
}

/// Parses `name:password:uid:...` lines; malformed lines are skipped.
pub fn parse_passwd(text: &str) -> HashMap<u32, String> {
    let mut names = HashMap::new();
    for line in text.lines() {
        let mut fields = line.split(':');
        let (Some(name), Some(_), Some(uid)) = (fields.next(), fields.next(), fields.next()) else {
            continue;
        };
        if let Ok(uid) = uid.parse() {
            names.entry(uid).or_insert_with(|| name.to_owned());
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwd_lines_parse() {
        let names = parse_passwd(
            "root:x:0:0:root:/root:/bin/bash\nbroken\nnobody:x:65534:65534::/:/bin/false\n",
        );
        assert_eq!(names.get(&0).map(String::as_str), Some("root"));
        assert_eq!(names.get(&65534).map(String::as_str), Some("nobody"));
        assert_eq!(names.len(), 2);
    }

    #[test]
    fn missing_file_gives_no_name() {
        let mut users = UserNames::new("/nonexistent/passwd");
        assert_eq!(users.name(0), None);
    }
}
