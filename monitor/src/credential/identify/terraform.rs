//! Terraform CLI credentials for remote back ends and module registries: `credentials.tfrc.json`
//! and the `credentials "HOST" { token = "..." }` blocks of `.terraformrc`.
//!
//! The material is the token, and the label the host it is for.

use serde_json::Value;

use super::{
    Identified, IdentifyError,
    text::{parse_json, string_at, utf8},
};
use crate::credential::fingerprint::SecretBytes;

const EXPECTED: &str = "Terraform credentials file";

/// Infix of HCP Terraform (Terraform Cloud) API tokens.
const CLOUD_TOKEN_INFIX: &str = ".atlasv1.";

/// Identifies the tokens of a Terraform CLI configuration or credentials file.
pub(super) fn identify(contents: &[u8]) -> Result<Vec<Identified>, IdentifyError> {
    let text = utf8(contents, EXPECTED)?;
    let hosts = if text.trim_start().starts_with('{') {
        json_credentials(contents)?
    } else {
        hcl_credentials(text)
    };
    Ok(hosts
        .into_iter()
        .map(|(host, token)| describe(&host, &token))
        .collect())
}

fn describe(host: &str, token: &str) -> Identified {
    let is_cloud = token.contains(CLOUD_TOKEN_INFIX);
    let credential_type = if is_cloud {
        "terraform_cloud_token"
    } else {
        "terraform_token"
    };
    let mut item = Identified::new(credential_type, SecretBytes::from_slice(token.as_bytes()));
    item.label = Some(host.to_string());
    item.detail("host", host);
    item
}

fn json_credentials(contents: &[u8]) -> Result<Vec<(String, String)>, IdentifyError> {
    let json = parse_json(contents, EXPECTED)?;
    let Some(Value::Object(hosts)) = json.get("credentials") else {
        return Ok(Vec::new());
    };
    Ok(hosts
        .iter()
        .filter_map(|(host, entry)| Some((host.clone(), string_at(entry, "token")?.to_string())))
        .collect())
}

/// Token of the HCL subset read here.
#[derive(Debug, PartialEq)]
enum Token {
    Word(String),
    Text(String),
    Open,
    Close,
    Equals,
}

/// Finds `credentials "HOST" { ... token = "VALUE" ... }` blocks.
fn hcl_credentials(text: &str) -> Vec<(String, String)> {
    let tokens = hcl_tokens(text);
    let mut found = Vec::new();
    let mut index = 0;
    while index + 2 < tokens.len() {
        let is_block = tokens[index] == Token::Word("credentials".to_string())
            && tokens[index + 2] == Token::Open;
        let (true, Token::Text(host)) = (is_block, &tokens[index + 1]) else {
            index += 1;
            continue;
        };
        let mut depth = 0_usize;
        let mut cursor = index + 2;
        while cursor < tokens.len() {
            match &tokens[cursor] {
                Token::Open => depth += 1,
                Token::Close => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                Token::Word(word) if depth == 1 && word == "token" => {
                    if let (Some(Token::Equals), Some(Token::Text(value))) =
                        (tokens.get(cursor + 1), tokens.get(cursor + 2))
                    {
                        found.push((host.clone(), value.clone()));
                    }
                }
                _ => {}
            }
            cursor += 1;
        }
        index = cursor + 1;
    }
    found
}

fn hcl_tokens(text: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' => tokens.push(Token::Open),
            '}' => tokens.push(Token::Close),
            '=' => tokens.push(Token::Equals),
            '#' => skip_line(&mut chars),
            '/' if chars.peek() == Some(&'/') => skip_line(&mut chars),
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut previous = ' ';
                for c in chars.by_ref() {
                    if previous == '*' && c == '/' {
                        break;
                    }
                    previous = c;
                }
            }
            '"' => {
                let mut value = String::new();
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => value.extend(chars.next()),
                        _ => value.push(c),
                    }
                }
                tokens.push(Token::Text(value));
            }
            c if c.is_alphanumeric() || c == '_' => {
                let mut word = String::from(c);
                while let Some(&next) = chars.peek() {
                    if !(next.is_alphanumeric() || next == '_' || next == '-') {
                        break;
                    }
                    word.push(next);
                    chars.next();
                }
                tokens.push(Token::Word(word));
            }
            _ => {}
        }
    }
    tokens
}

fn skip_line(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    for c in chars.by_ref() {
        if c == '\n' {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLOUD_TOKEN: &str = "MadeUpMadeUp.atlasv1.MadeUpMadeUpMadeUpMadeUp";

    #[test]
    fn json_credentials_file() {
        let text = format!(
            "{{\"credentials\": {{\"app.terraform.io\": {{\"token\": \"{CLOUD_TOKEN}\"}}, \
             \"tf.example.test\": {{\"token\": \"made-up-enterprise\"}}}}}}"
        );

        let found = identify(text.as_bytes()).unwrap();

        assert_eq!(found.len(), 2);
        assert_eq!(found[0].credential_type, "terraform_cloud_token");
        assert_eq!(found[0].label.as_deref(), Some("app.terraform.io"));
        assert_eq!(found[0].material.expose(), CLOUD_TOKEN.as_bytes());
        assert_eq!(found[1].credential_type, "terraform_token");
    }

    #[test]
    fn hcl_configuration() {
        let text = format!(
            "# CLI configuration\nplugin_cache_dir = \"$HOME/.terraform.d/plugin-cache\"\n\
             credentials \"app.terraform.io\" {{\n  token = \"{CLOUD_TOKEN}\"\n}}\n\
             /* credentials \"commented.example.test\" {{ token = \"x\" }} */\n\
             credentials \"tf.example.test\" {{\n  // comment\n  token = \"made-up \\\"quoted\\\"\"\n}}\n\
             credentials_helper \"helper\" {{\n  args = []\n}}\n"
        );

        let found = identify(text.as_bytes()).unwrap();

        assert_eq!(found.len(), 2);
        assert_eq!(found[0].label.as_deref(), Some("app.terraform.io"));
        assert_eq!(found[0].credential_type, "terraform_cloud_token");
        assert_eq!(found[1].label.as_deref(), Some("tf.example.test"));
        assert_eq!(found[1].material.expose(), b"made-up \"quoted\"");
    }

    #[test]
    fn unbalanced_blocks_do_not_panic() {
        for text in [
            "credentials \"h\" { } } }",
            "credentials \"h\" { token = ",
            "}}}{{{",
        ] {
            identify(text.as_bytes()).unwrap();
        }
    }
}
