//! `.netrc` files: one credential per `machine` or `default` entry with a password.
//!
//! The material is the password, and the native id `login@host`.

use super::{Identified, IdentifyError, text::utf8};
use crate::credential::fingerprint::SecretBytes;

const EXPECTED: &str = ".netrc file";

/// One `machine` or `default` entry.
#[derive(Default)]
struct Entry<'a> {
    /// `None` for the `default` entry.
    host: Option<&'a str>,
    login: Option<&'a str>,
    password: Option<&'a str>,
    has_account: bool,
    line: usize,
}

/// Identifies the passwords of a `.netrc` file.
pub(super) fn identify(contents: &[u8]) -> Result<Vec<Identified>, IdentifyError> {
    let text = utf8(contents, EXPECTED)?;
    Ok(parse(text)
        .into_iter()
        .filter_map(|entry| {
            let password = entry.password?;
            Some(describe(&entry, password))
        })
        .collect())
}

fn describe(entry: &Entry<'_>, password: &str) -> Identified {
    let mut item = Identified::new(
        "netrc_password",
        SecretBytes::from_slice(password.as_bytes()),
    );
    let host = entry.host.unwrap_or("default");
    item.label = Some(host.to_string());
    item.native_id = entry.login.map(|login| format!("{login}@{host}"));
    item.detail("host", host);
    item.detail_opt("login", entry.login);
    item.detail("has_account", entry.has_account);
    item.detail("line", entry.line);
    item
}

fn parse(text: &str) -> Vec<Entry<'_>> {
    let mut entries: Vec<Entry<'_>> = Vec::new();
    let mut tokens = Tokens::new(text);
    while let Some((keyword, line)) = tokens.next_token() {
        match keyword {
            "machine" => entries.push(Entry {
                host: tokens.next_token().map(|(host, _)| host),
                line,
                ..Entry::default()
            }),
            "default" => entries.push(Entry {
                line,
                ..Entry::default()
            }),
            "login" | "password" | "account" => {
                let value = tokens.next_token().map(|(value, _)| value);
                let Some(entry) = entries.last_mut() else {
                    continue;
                };
                match keyword {
                    "login" => entry.login = value,
                    "password" => entry.password = value,
                    _ => entry.has_account = value.is_some(),
                }
            }
            "macdef" => tokens.skip_macro(),
            _ => {}
        }
    }
    entries
}

/// Splits a `.netrc` text into whitespace-separated tokens. A token may be quoted with `"`,
/// as curl allows, and then ends at the next `"`.
struct Tokens<'a> {
    text: &'a str,
    position: usize,
    /// Line number at `counted`, kept incrementally so that scanning stays linear.
    line: usize,
    counted: usize,
}

impl<'a> Tokens<'a> {
    fn new(text: &'a str) -> Self {
        Self {
            text,
            position: 0,
            line: 1,
            counted: 0,
        }
    }

    fn line_at(&mut self, offset: usize) -> usize {
        self.line += self.text.as_bytes()[self.counted..offset]
            .iter()
            .filter(|&&byte| byte == b'\n')
            .count();
        self.counted = offset;
        self.line
    }

    /// Returns the next token and its line number.
    fn next_token(&mut self) -> Option<(&'a str, usize)> {
        let rest = &self.text[self.position..];
        let start = self.position + rest.find(|c: char| !c.is_whitespace())?;
        let line = self.line_at(start);
        let rest = &self.text[start..];

        if let Some(quoted) = rest.strip_prefix('"') {
            let len = quoted.find('"').unwrap_or(quoted.len());
            self.position = (start + 1 + len + 1).min(self.text.len());
            return Some((&quoted[..len], line));
        }
        let len = rest.find(char::is_whitespace).unwrap_or(rest.len());
        self.position = start + len;
        Some((&rest[..len], line))
    }

    /// Skips a macro definition: its name and the lines up to the next empty line.
    fn skip_macro(&mut self) {
        let rest = &self.text[self.position..];
        self.position = match rest.find("\n\n") {
            Some(end) => self.position + end + 2,
            None => self.text.len(),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machines_and_default() {
        let text = "machine api.example.test login builder password made-up-1\n\
                    machine ftp.example.test\n  login anonymous\n\
                    macdef init\ncd /pub\nmachine fake password inside-macro\n\n\
                    machine git.example.test login \"some one\" password \"made up 2\" account x\n\
                    default login guest password made-up-3\n";

        let found = identify(text.as_bytes()).unwrap();

        assert_eq!(found.len(), 3);
        assert_eq!(
            found[0].native_id.as_deref(),
            Some("builder@api.example.test")
        );
        assert_eq!(found[0].label.as_deref(), Some("api.example.test"));
        assert_eq!(found[0].details["line"], 1);
        assert_eq!(found[0].material.expose(), b"made-up-1");
        assert_eq!(
            found[1].native_id.as_deref(),
            Some("some one@git.example.test")
        );
        assert_eq!(found[1].details["has_account"], true);
        assert_eq!(found[1].material.expose(), b"made up 2");
        assert_eq!(found[2].label.as_deref(), Some("default"));
        assert_eq!(found[2].material.expose(), b"made-up-3");
    }

    #[test]
    fn dangling_keywords() {
        let found = identify(b"password lonely\nmachine h password").unwrap();

        assert!(found.is_empty());
    }
}
