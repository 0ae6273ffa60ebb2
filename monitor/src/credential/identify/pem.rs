//! PEM blocks (RFC 7468), including the `Proc-Type` and `DEK-Info` headers of keys that
//! OpenSSL encrypted in its traditional format (RFC 1421).

use zeroize::Zeroizing;

use super::{IdentifyError, text::decode_base64};
use crate::credential::fingerprint::SecretBytes;

/// A decoded PEM block. `Debug` shows the contents as `[REDACTED]`.
#[derive(Debug)]
pub(super) struct Block {
    /// The label between `-----BEGIN ` and `-----`, such as `CERTIFICATE`.
    pub(super) label: String,
    /// Header lines before the base64 text, such as `Proc-Type: 4,ENCRYPTED`.
    pub(super) headers: Vec<(String, String)>,
    /// The decoded contents.
    pub(super) der: SecretBytes,
    /// Line number of the BEGIN line.
    pub(super) line: usize,
}

impl Block {
    /// Tells whether OpenSSL encrypted the block in its traditional format.
    pub(super) fn is_encrypted(&self) -> bool {
        self.headers.iter().any(|(name, value)| {
            name.eq_ignore_ascii_case("Proc-Type") && value.contains("ENCRYPTED")
        })
    }
}

const BEGIN: &str = "-----BEGIN ";
const DASHES: &str = "-----";

/// Labels longer than this are not quoted in error messages.
const MAX_QUOTED_LABEL: usize = 64;

/// Tells whether `text` contains a PEM BEGIN line.
pub(super) fn contains_pem(text: &str) -> bool {
    text.contains(BEGIN)
}

/// Decodes every PEM block in `text`. Text between blocks is ignored, as OpenSSL does with
/// the `Bag Attributes` and `subject=` lines it writes there. A block without its END line or
/// with invalid base64 is an error that names its label and line.
pub(super) fn parse_blocks(
    text: &str,
    expected: &'static str,
) -> Result<Vec<Block>, IdentifyError> {
    let mut blocks = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((index, line)) = lines.next() {
        let Some(label) = begin_label(line) else {
            continue;
        };
        let line_number = index + 1;
        let end_line = format!("-----END {label}-----");
        let mut headers = Vec::new();
        let mut body = Zeroizing::new(String::new());
        let mut closed = false;
        for (_, inner) in lines.by_ref() {
            let inner = inner.trim();
            if inner == end_line {
                closed = true;
                break;
            }
            match inner.split_once(':') {
                Some((name, value)) if body.is_empty() => {
                    headers.push((name.trim().to_string(), value.trim().to_string()));
                }
                _ => body.push_str(inner),
            }
        }

        let quoted = quote_label(label);
        if !closed {
            return Err(IdentifyError::invalid(
                expected,
                format!("the PEM block {quoted} on line {line_number} has no END line"),
            ));
        }
        let der = decode_base64(&body).ok_or_else(|| {
            IdentifyError::invalid(
                expected,
                format!("the PEM block {quoted} on line {line_number} is not valid base64"),
            )
        })?;
        blocks.push(Block {
            label: label.to_string(),
            headers,
            der,
            line: line_number,
        });
    }
    Ok(blocks)
}

fn begin_label(line: &str) -> Option<&str> {
    let label = line.trim().strip_prefix(BEGIN)?.strip_suffix(DASHES)?;
    (!label.is_empty()).then_some(label)
}

/// Quotes a label for an error message. Labels come from the file, so only short printable
/// ASCII ones are quoted.
fn quote_label(label: &str) -> String {
    let printable = label
        .bytes()
        .all(|byte| byte.is_ascii_graphic() || byte == b' ');
    if printable && label.len() <= MAX_QUOTED_LABEL {
        format!("`{label}`")
    } else {
        "with an unusual label".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_headers_and_surrounding_text() {
        let text = "Bag Attributes\n    localKeyID: 01\n-----BEGIN RSA PRIVATE KEY-----\n\
                    Proc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00FF\n\nbWFkZS11cA==\n\
                    -----END RSA PRIVATE KEY-----\nsubject=CN = x\n-----BEGIN CERTIFICATE-----\n\
                    bWFk\nZS11cA\n-----END CERTIFICATE-----\n";

        let blocks = parse_blocks(text, "PEM").unwrap();

        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[0].label, "RSA PRIVATE KEY");
        assert_eq!(blocks[0].line, 3);
        assert!(blocks[0].is_encrypted());
        assert_eq!(blocks[0].headers[1].0, "DEK-Info");
        assert_eq!(blocks[0].der.expose(), b"made-up");
        assert_eq!(blocks[1].label, "CERTIFICATE");
        assert!(!blocks[1].is_encrypted());
        assert_eq!(blocks[1].der.expose(), b"made-up");
    }

    #[test]
    fn missing_end_line() {
        let error = parse_blocks("-----BEGIN CERTIFICATE-----\nbWFk\n", "PEM").unwrap_err();

        assert!(
            error
                .to_string()
                .contains("`CERTIFICATE` on line 1 has no END line"),
            "{error}"
        );
    }

    #[test]
    fn invalid_base64() {
        let text = "x\n-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";

        let error = parse_blocks(text, "PEM").unwrap_err();

        assert!(
            error.to_string().contains("on line 2 is not valid base64"),
            "{error}"
        );
    }
}
