//! The INI dialect of the AWS CLI, `.pypirc` and `.npmrc`: `[section]` headers, `key = value`
//! or `key: value` lines, and `#` or `;` comment lines.
//!
//! Indented lines that follow a key are continuation lines. The AWS CLI uses them for nested
//! settings (`s3 =` followed by indented keys) and Python's configparser for multi-line
//! values. Neither contains a credential in the files read here, so they are skipped.

/// A `key = value` line.
pub(super) struct Entry<'a> {
    pub(super) key: &'a str,
    pub(super) value: &'a str,
    pub(super) line: usize,
}

/// A section and its entries. Lines before the first header form a section with an empty
/// name.
pub(super) struct Section<'a> {
    pub(super) name: &'a str,
    pub(super) line: usize,
    pub(super) entries: Vec<Entry<'a>>,
}

impl<'a> Section<'a> {
    /// Returns the value of the last entry named `key`, compared without regard to ASCII case,
    /// or `None` when it is missing or empty.
    pub(super) fn get(&self, key: &str) -> Option<&'a str> {
        self.entries
            .iter()
            .rev()
            .find(|entry| entry.key.eq_ignore_ascii_case(key))
            .map(|entry| entry.value)
            .filter(|value| !value.is_empty())
    }
}

/// Separators of configparser files such as `.pypirc` and the AWS CLI files.
pub(super) const EQUALS_OR_COLON: &[char] = &['=', ':'];

/// Separator of `.npmrc`, whose keys contain `:` as in `//registry.npmjs.org/:_authToken`.
pub(super) const EQUALS: &[char] = &['='];

/// Splits `text` into sections, splitting entries at the first of `separators`. Lines that
/// are neither a header, an entry nor a comment are skipped, as the programs that read these
/// files skip or reject them.
pub(super) fn parse<'a>(text: &'a str, separators: &[char]) -> Vec<Section<'a>> {
    let mut sections = vec![Section {
        name: "",
        line: 0,
        entries: Vec::new(),
    }];

    for (index, raw_line) in text.lines().enumerate() {
        let line_number = index + 1;
        let is_continuation = raw_line.starts_with([' ', '\t']);
        let line = raw_line.trim();
        if line.is_empty() || line.starts_with(['#', ';']) || is_continuation {
            continue;
        }

        if let Some(header) = line.strip_prefix('[') {
            if let Some(name) = header.strip_suffix(']') {
                sections.push(Section {
                    name: name.trim(),
                    line: line_number,
                    entries: Vec::new(),
                });
            }
            continue;
        }

        if let Some(entry) = parse_entry(line, line_number, separators)
            && let Some(section) = sections.last_mut()
        {
            section.entries.push(entry);
        }
    }
    sections
}

fn parse_entry<'a>(line: &'a str, line_number: usize, separators: &[char]) -> Option<Entry<'a>> {
    let separator = line.find(separators)?;
    let key = line[..separator].trim();
    if key.is_empty() {
        return None;
    }
    Some(Entry {
        key,
        value: line[separator + 1..].trim(),
        line: line_number,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_entries_and_comments() {
        let text = "top = 1\n[default]\n# comment\nkey = value\n; other\n[profile dev]\nname: x\n  nested = y\nbroken line\n";

        let sections = parse(text, EQUALS_OR_COLON);

        assert_eq!(sections.len(), 3);
        assert_eq!(sections[0].get("top"), Some("1"));
        assert_eq!(sections[1].name, "default");
        assert_eq!(sections[1].line, 2);
        assert_eq!(sections[1].get("KEY"), Some("value"));
        assert_eq!(sections[2].name, "profile dev");
        assert_eq!(sections[2].get("name"), Some("x"));
        assert_eq!(sections[2].get("nested"), None);
        assert_eq!(sections[2].entries.len(), 1);
    }

    #[test]
    fn equals_only_keeps_colons_in_keys() {
        let sections = parse("//registry.example.test/:_authToken=made-up\n", EQUALS);

        assert_eq!(
            sections[0].entries[0].key,
            "//registry.example.test/:_authToken"
        );
        assert_eq!(sections[0].entries[0].value, "made-up");
    }

    #[test]
    fn last_duplicate_key_wins() {
        let sections = parse("[a]\nk = 1\nk = 2\nempty =\n", EQUALS);

        assert_eq!(sections[1].get("k"), Some("2"));
        assert_eq!(sections[1].get("empty"), None);
    }
}
