//! Secret `name=value` and `name: value` pairs and authorization schemes.

use super::{
    REDACTED, TextMode,
    bytes::{
        is_key_byte, is_quote, is_shell_blank, is_shell_blank_or_newline, is_value_stop,
        scan_while, starts_word,
    },
    names::is_secret_name,
    urls::{find_url_spans, redact_url},
};

/// Authorization schemes whose following word is a credential.
const AUTH_SCHEMES: &[&str] = &["bearer", "basic"];

/// The separator after a key and where its value starts.
struct Separator {
    byte: u8,
    value_start: usize,
    /// Quote that opened before the key and was not closed after it, as in `'TOKEN=x y'`.
    /// The value runs to its closing quote.
    enclosing_quote: Option<u8>,
}

/// Redacts the values of secret `name=value` and `name: value` pairs and the secret parts
/// of URLs. Both are found in one pass, so that a URL inside a secret value is hidden
/// with it.
pub(super) fn redact_pairs_and_urls(text: &str, mode: TextMode) -> String {
    let bytes = text.as_bytes();
    let urls = find_url_spans(text);
    let whole_value_starts = whole_value_key_starts(text, mode);

    let mut output = String::with_capacity(text.len());
    let mut copied = 0;
    let mut next_url = 0;
    let mut position = 0;

    while position < bytes.len() {
        while next_url < urls.len() && urls[next_url].0 < position {
            next_url += 1;
        }
        let url_start = urls.get(next_url).map_or(bytes.len(), |&(start, _)| start);

        if position == url_start {
            let (start, end) = urls[next_url];
            output.push_str(&text[copied..start]);
            output.push_str(&redact_url(&text[start..end]));
            copied = end;
            position = end;
            continue;
        }
        if !is_key_byte(bytes[position]) {
            position += 1;
            continue;
        }

        // A key never runs into a URL, so that `-https://...` still gets its URL rule.
        let key_end = scan_while(bytes, position, is_key_byte).min(url_start);
        let secret_pair = parse_separator(bytes, position, key_end).filter(|separator| {
            has_key_boundary(bytes, position, separator) && is_secret_name(&text[position..key_end])
        });
        let Some(separator) = secret_pair else {
            position = key_end;
            continue;
        };

        let whole = whole_value_starts.contains(&position);
        let (value_start, value_end) = value_span(bytes, &separator, whole);
        if value_end > value_start {
            output.push_str(&text[copied..value_start]);
            output.push_str(REDACTED);
            copied = value_end;
        }
        position = value_end.max(key_end);
    }

    output.push_str(&text[copied..]);
    output
}

/// Returns the key positions whose value is the whole rest of the argument. These are the
/// start of the argument and the key after `--flag=`, as in `--header=Authorization: x`.
fn whole_value_key_starts(text: &str, mode: TextMode) -> Vec<usize> {
    if mode == TextMode::Script {
        return Vec::new();
    }

    let mut starts = vec![0];
    let bytes = text.as_bytes();
    let flag_end = scan_while(bytes, 0, is_key_byte);
    if text.starts_with('-') && bytes.get(flag_end) == Some(&b'=') {
        starts.push(flag_end + 1);
    }
    starts
}

/// Rejects a `name:` that continues a path, as in the volume `/run/secrets:/secrets`.
/// A `name=` always counts, so that `app/password=x` is still redacted.
fn has_key_boundary(bytes: &[u8], key_start: usize, separator: &Separator) -> bool {
    let continues_path = key_start
        .checked_sub(1)
        .is_some_and(|before| matches!(bytes[before], b'/' | b'\\'));
    separator.byte == b'=' || !continues_path
}

/// Finds the `=` or `:` after a key. A key in quotes (`"password": ...`) may close its
/// quote, and a subscript its `]`, first. Blanks are allowed around `:`, and after `=`
/// only when they also precede it.
fn parse_separator(bytes: &[u8], key_start: usize, key_end: usize) -> Option<Separator> {
    let opening_quote = key_start
        .checked_sub(1)
        .map(|before| bytes[before])
        .filter(|&byte| is_quote(byte));

    let mut cursor = key_end;
    let mut enclosing_quote = opening_quote;
    if let Some(quote) = opening_quote
        && bytes.get(cursor) == Some(&quote)
    {
        cursor += 1;
        enclosing_quote = None;
        // A subscript such as `environ['API_KEY'] = value` assigns to the quoted key.
        if bytes.get(cursor) == Some(&b']') {
            cursor += 1;
        }
    }

    let after_key = cursor;
    cursor = scan_while(bytes, cursor, is_shell_blank);
    let blank_before_separator = cursor > after_key;

    let byte = *bytes.get(cursor)?;
    if byte != b'=' && byte != b':' {
        return None;
    }
    cursor += 1;
    if byte == b':' || blank_before_separator {
        cursor = scan_while(bytes, cursor, is_shell_blank);
    }

    Some(Separator {
        byte,
        value_start: cursor,
        enclosing_quote,
    })
}

/// Returns the byte range of a pair's value, without the quotes around it.
fn value_span(bytes: &[u8], separator: &Separator, whole: bool) -> (usize, usize) {
    let start = separator.value_start;
    if whole {
        return (start, bytes.len());
    }

    if let Some(&quote) = bytes.get(start)
        && is_quote(quote)
    {
        let inner = start + 1;
        return (inner, find_closing_quote(bytes, inner, quote));
    }

    let end = if let Some(quote) = separator.enclosing_quote {
        find_closing_quote(bytes, start, quote)
    } else if separator.byte == b':' {
        // `Name: value` is a header or YAML line, so the value runs to the end of the line.
        scan_while(bytes, start, |byte| byte != b'\n')
    } else {
        let end = scan_while(bytes, start, |byte| !is_value_stop(byte));
        extend_over_auth_scheme(bytes, start, end)
    };
    (start, end)
}

/// Extends a value that is only an authorization scheme, as in `Authorization=Bearer x`,
/// over the credential after it.
fn extend_over_auth_scheme(bytes: &[u8], start: usize, end: usize) -> usize {
    let value = &bytes[start..end];
    let is_scheme = AUTH_SCHEMES
        .iter()
        .any(|scheme| value.eq_ignore_ascii_case(scheme.as_bytes()));
    if !is_scheme || !bytes.get(end).copied().is_some_and(is_shell_blank) {
        return end;
    }

    let credential_start = scan_while(bytes, end, is_shell_blank);
    scan_while(bytes, credential_start, |byte| !is_value_stop(byte))
}

/// Returns the index of the quote that closes a string starting at `from`, or the text
/// length. Inside `"`, a backslash escapes the next byte.
fn find_closing_quote(bytes: &[u8], from: usize, quote: u8) -> usize {
    let mut index = from;
    while index < bytes.len() {
        let byte = bytes[index];
        if byte == quote {
            return index;
        }
        if byte == b'\\' && quote == b'"' {
            index += 1;
        }
        index += 1;
    }
    bytes.len()
}

/// Redacts the text after a `Bearer` or `Basic` authorization scheme.
pub(super) fn redact_auth_schemes(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut output = String::with_capacity(text.len());
    let mut copied = 0;
    let mut position = 0;

    while position < bytes.len() {
        let scheme_end = AUTH_SCHEMES.iter().find_map(|scheme| {
            let end = position + scheme.len();
            let matches = starts_word(bytes, position)
                && bytes
                    .get(position..end)
                    .is_some_and(|word| word.eq_ignore_ascii_case(scheme.as_bytes()))
                && bytes.get(end).copied().is_some_and(is_shell_blank);
            matches.then_some(end)
        });
        let Some(scheme_end) = scheme_end else {
            position += 1;
            continue;
        };

        let credential_start = scan_while(bytes, scheme_end, is_shell_blank);
        let credential_end = scan_while(bytes, credential_start, |byte| {
            !is_shell_blank_or_newline(byte) && !is_quote(byte)
        });
        if credential_end > credential_start {
            output.push_str(&text[copied..credential_start]);
            output.push_str(REDACTED);
            copied = credential_end;
        }
        position = credential_end.max(scheme_end);
    }

    output.push_str(&text[copied..]);
    output
}
