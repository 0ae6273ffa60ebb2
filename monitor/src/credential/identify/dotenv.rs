//! Environment files (`.env`): one credential per variable whose value is a token of a known
//! format or whose name promises a secret.
//!
//! The material is the value. `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` together form
//! one AWS access key, described as in the AWS credentials file.

use super::{Identified, IdentifyError, aws, scan, text::utf8};
use crate::credential::{
    fingerprint::SecretBytes,
    patterns::{is_plausible_secret_value, is_secret_name, token_kind},
};

const EXPECTED: &str = ".env file";

/// Type of a variable that is a secret by its name only.
pub(super) const SECRET_TYPE: &str = "dotenv_secret";

const AWS_KEY_ID: &str = "AWS_ACCESS_KEY_ID";
pub(super) const AWS_SECRET: &str = "AWS_SECRET_ACCESS_KEY";
const AWS_SESSION_TOKEN: &str = "AWS_SESSION_TOKEN";

/// A `NAME=value` assignment.
struct Variable<'a> {
    name: &'a str,
    value: SecretBytes,
    line: usize,
}

/// Identifies the secrets of an environment file.
pub(super) fn identify(contents: &[u8]) -> Result<Vec<Identified>, IdentifyError> {
    let text = utf8(contents, EXPECTED)?;
    let variables = parse(text);
    Ok(describe_variables(&variables))
}

/// Identifies the secrets of a process environment, in the form of `/proc/PID/environ`:
/// `NAME=value` strings separated by NUL bytes, with values taken literally. The `line` detail
/// is the position of the variable, counting from 1. Entries whose name is not UTF-8 or that
/// have no `=` are skipped.
pub(super) fn identify_environment(environ: &[u8]) -> Vec<Identified> {
    let variables: Vec<Variable<'_>> = environ
        .split(|&byte| byte == 0)
        .enumerate()
        .filter_map(|(index, entry)| {
            let equals = entry.iter().position(|&byte| byte == b'=')?;
            let name = std::str::from_utf8(&entry[..equals]).ok()?;
            (!name.is_empty()).then(|| Variable {
                name,
                value: SecretBytes::from_slice(&entry[equals + 1..]),
                line: index + 1,
            })
        })
        .collect();
    describe_variables(&variables)
}

/// Describes the variables of a file, pairing the AWS key id with its secret.
fn describe_variables(variables: &[Variable<'_>]) -> Vec<Identified> {
    let mut found = Vec::new();
    let aws_key = aws_access_key(variables);
    if let Some(item) = &aws_key {
        found.push(item.clone());
    }

    for variable in variables {
        let paired = [AWS_KEY_ID, AWS_SECRET, AWS_SESSION_TOKEN].contains(&variable.name);
        if aws_key.is_some() && paired {
            continue;
        }
        if let Some(mut item) = describe_variable(variable) {
            item.label = Some(variable.name.to_string());
            item.detail("variable", variable.name);
            item.detail("line", variable.line);
            found.push(item);
        }
    }
    found
}

fn describe_variable(variable: &Variable<'_>) -> Option<Identified> {
    let value = variable.value.expose();
    if let Some(kind) = token_kind(value) {
        return Some(scan::token_item(kind, value.trim_ascii()));
    }
    if is_secret_name(variable.name) && is_plausible_secret_value(value) {
        return Some(Identified::new(SECRET_TYPE, variable.value.clone()));
    }
    None
}

fn aws_access_key(variables: &[Variable<'_>]) -> Option<Identified> {
    let value_of = |name: &str| {
        variables
            .iter()
            .rev()
            .find(|variable| variable.name == name)
            .and_then(|variable| std::str::from_utf8(variable.value.expose()).ok())
            .filter(|value| !value.is_empty())
    };
    let key_id = value_of(AWS_KEY_ID)?;
    let secret = value_of(AWS_SECRET)?;
    let mut item =
        aws::describe_access_key(key_id, Some(secret), value_of(AWS_SESSION_TOKEN).is_some());
    item.label = Some(AWS_KEY_ID.to_string());
    item.detail("variable", AWS_KEY_ID);
    Some(item)
}

/// Parses assignments: `NAME=value`, optionally after `export`, with values unquoted (up to
/// a ` #` comment), in single quotes (literal) or in double quotes (with `\` escapes). Quoted
/// values may span lines. Lines that are no assignment are skipped.
fn parse(text: &str) -> Vec<Variable<'_>> {
    let mut variables = Vec::new();
    let mut position = 0;
    let mut line = 1;
    while position < text.len() {
        let (consumed, assignment) = parse_statement(&text[position..]);
        if let Some((name, value)) = assignment {
            variables.push(Variable { name, value, line });
        }
        line += text[position..position + consumed].matches('\n').count();
        position += consumed;
    }
    variables
}

/// Parses the statement at the start of `text`. Returns the number of bytes it takes,
/// including its line end, and the assignment if it is one.
fn parse_statement(text: &str) -> (usize, Option<(&str, SecretBytes)>) {
    let line_end = text.find('\n').map_or(text.len(), |end| end + 1);
    let mut position = skip_blanks(text, 0);
    if text[position..].starts_with("export ") {
        position = skip_blanks(text, position + "export ".len());
    }
    let name_len = text[position..]
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
        .unwrap_or(text.len() - position);
    let name = &text[position..position + name_len];
    let equals = skip_blanks(text, position + name_len);
    if name.is_empty() || !text[equals..].starts_with('=') {
        return (line_end, None);
    }

    let value_start = skip_blanks(text, equals + 1);
    let (value, value_len) = parse_value(&text[value_start..]);
    let value_end = value_start + value_len;
    let consumed = match text[value_end..].find('\n') {
        Some(end) => value_end + end + 1,
        None => text.len(),
    };
    (consumed, Some((name, value)))
}

fn skip_blanks(text: &str, from: usize) -> usize {
    let rest = &text[from..];
    from + rest.len() - rest.trim_start_matches([' ', '\t']).len()
}

/// Parses a value and returns it with the number of bytes it takes.
fn parse_value(text: &str) -> (SecretBytes, usize) {
    if let Some(quoted) = text.strip_prefix('\'') {
        let len = quoted.find('\'').unwrap_or(quoted.len());
        let consumed = (len + 2).min(text.len());
        return (SecretBytes::from_slice(&quoted.as_bytes()[..len]), consumed);
    }
    if let Some(quoted) = text.strip_prefix('"') {
        return parse_double_quoted(quoted);
    }
    let line = text.split('\n').next().unwrap_or_default();
    let end = comment_start(line).unwrap_or(line.len());
    let value = line[..end].trim_end_matches(['\r', ' ', '\t']);
    (SecretBytes::from_slice(value.as_bytes()), line.len())
}

fn parse_double_quoted(quoted: &str) -> (SecretBytes, usize) {
    let mut value = Vec::new();
    let mut chars = quoted.char_indices();
    let mut consumed = quoted.len() + 1;
    while let Some((index, c)) = chars.next() {
        match c {
            '"' => {
                consumed = index + 2;
                break;
            }
            '\\' => match chars.next().map(|(_, escaped)| escaped) {
                Some('n') => value.push(b'\n'),
                Some('t') => value.push(b'\t'),
                Some(other) => value.extend_from_slice(other.encode_utf8(&mut [0; 4]).as_bytes()),
                None => {}
            },
            _ => value.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
        }
    }
    (SecretBytes::new(value), consumed)
}

/// Returns where a ` #` comment starts in an unquoted value.
fn comment_start(value: &str) -> Option<usize> {
    let bytes = value.as_bytes();
    (1..bytes.len()).find(|&index| bytes[index] == b'#' && matches!(bytes[index - 1], b' ' | b'\t'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credential::identify::fixtures::aws_key_id_for_account;

    fn variables(text: &str) -> Vec<(String, Vec<u8>, usize)> {
        parse(text)
            .into_iter()
            .map(|variable| {
                (
                    variable.name.to_string(),
                    variable.value.expose().to_vec(),
                    variable.line,
                )
            })
            .collect()
    }

    #[test]
    fn parse_forms() {
        let text = "# comment\nA=plain value # note\nexport B = 'single # kept'\n\
                    C=\"multi\nline \\\"q\\\" \\n\"\nnot an assignment\nD=\nE=x#y\n";

        assert_eq!(
            variables(text),
            [
                ("A".to_string(), b"plain value".to_vec(), 2),
                ("B".to_string(), b"single # kept".to_vec(), 3),
                ("C".to_string(), b"multi\nline \"q\" \n".to_vec(), 4),
                ("D".to_string(), b"".to_vec(), 7),
                ("E".to_string(), b"x#y".to_vec(), 8),
            ]
        );
    }

    #[test]
    fn secrets_by_name_and_format() {
        let text = format!(
            "DEBUG=true\nDATABASE_PASSWORD=made-up-db-password\nAPI_TIMEOUT=30\n\
             GITHUB_TOKEN=ghp_{}\nSESSION_SECRET=short\nUNRELATED=AKIAMADEUPEXAMPLE234\n\
             TOKEN_FILE=/run/secrets/token\n",
            "MadeUp0".repeat(6).chars().take(36).collect::<String>()
        );

        let found = identify(text.as_bytes()).unwrap();

        let summary: Vec<(&str, &str)> = found
            .iter()
            .map(|item| {
                (
                    item.credential_type.as_str(),
                    item.details["variable"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("dotenv_secret", "DATABASE_PASSWORD"),
                ("github_personal_access_token", "GITHUB_TOKEN"),
                ("aws_access_key_id", "UNRELATED"),
            ]
        );
        assert_eq!(found[0].material.expose(), b"made-up-db-password");
        assert_eq!(found[0].details["line"], 2);
        assert_eq!(found[2].native_id.as_deref(), Some("AKIAMADEUPEXAMPLE234"));
    }

    #[test]
    fn environment_values_are_literal() {
        let environ =
            b"PATH=/usr/bin\0DB_PASSWORD='made up pass' # kept\0=no-name\0\xff\xfe=x\0junk\0\
                        API_TOKEN=made-up-api-token-value\0";

        let found = identify_environment(environ);

        let summary: Vec<(&str, &[u8], &serde_json::Value)> = found
            .iter()
            .map(|item| {
                (
                    item.label.as_deref().unwrap(),
                    item.material.expose(),
                    &item.details["line"],
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (
                    "DB_PASSWORD",
                    b"'made up pass' # kept".as_slice(),
                    &serde_json::json!(2)
                ),
                (
                    "API_TOKEN",
                    b"made-up-api-token-value".as_slice(),
                    &serde_json::json!(6)
                ),
            ]
        );
    }

    #[test]
    fn aws_pair_becomes_one_key() {
        let key_id = aws_key_id_for_account("ASIA", "123456789012");
        let text = format!(
            "AWS_ACCESS_KEY_ID={key_id}\nAWS_SECRET_ACCESS_KEY=made/up+secret0000000000000000000000000\n\
             AWS_SESSION_TOKEN=made-up-session-token-value\n"
        );

        let found = identify(text.as_bytes()).unwrap();

        assert_eq!(found.len(), 1);
        assert_eq!(found[0].credential_type, "aws_access_key");
        assert_eq!(found[0].native_id.as_deref(), Some(key_id.as_str()));
        assert_eq!(found[0].details["has_session_token"], true);
        assert_eq!(found[0].details["account_id"], "123456789012");
        assert_eq!(
            found[0].material.expose(),
            b"made/up+secret0000000000000000000000000"
        );
    }
}
