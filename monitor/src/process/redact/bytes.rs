//! Byte classes and scanning helpers shared by the text rules.

pub(super) fn scan_while(bytes: &[u8], from: usize, accept: impl Fn(u8) -> bool) -> usize {
    let mut index = from;
    while index < bytes.len() && accept(bytes[index]) {
        index += 1;
    }
    index
}

/// Tells whether a token may start at `index`, which is when no ASCII letter or digit
/// precedes it.
pub(super) fn starts_word(bytes: &[u8], index: usize) -> bool {
    index == 0 || !bytes[index - 1].is_ascii_alphanumeric()
}

pub(super) fn is_key_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'-' | b'.')
}

pub(super) fn is_scheme_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'+' | b'-' | b'.')
}

pub(super) fn is_url_end(byte: u8) -> bool {
    byte.is_ascii_whitespace() || matches!(byte, b'"' | b'\'' | b'<' | b'>' | b'`')
}

pub(super) fn is_quote(byte: u8) -> bool {
    byte == b'"' || byte == b'\''
}

pub(super) fn is_shell_blank(byte: u8) -> bool {
    byte == b' ' || byte == b'\t'
}

pub(super) fn is_shell_blank_or_newline(byte: u8) -> bool {
    is_shell_blank(byte) || byte == b'\n' || byte == b'\r'
}

/// Ends an unquoted `name=value` value inside a longer text, as in `a=1&token=x&b=2`,
/// `user=u,password=x` or `TOKEN=x cmd`.
pub(super) fn is_value_stop(byte: u8) -> bool {
    is_shell_blank_or_newline(byte) || matches!(byte, b'&' | b';' | b',')
}
