//! Encodings the tests need to build made-up credentials.

/// Encodes `bytes` as base64url without padding, as JWTs use it.
pub fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut text = String::new();
    for chunk in bytes.chunks(3) {
        let word = chunk
            .iter()
            .enumerate()
            .fold(0_u32, |word, (index, &byte)| {
                word | u32::from(byte) << (16 - 8 * index)
            });
        for index in 0..=chunk.len() {
            text.push(char::from(
                ALPHABET[(word >> (18 - 6 * index) & 63) as usize],
            ));
        }
    }
    text
}

/// Encodes `bytes` as standard base64 with padding, as Docker stores `user:password`.
pub fn base64(bytes: &[u8]) -> String {
    let mut text = base64url(bytes).replace('-', "+").replace('_', "/");
    while !text.len().is_multiple_of(4) {
        text.push('=');
    }
    text
}

/// Builds a JWT from a header and claims (JSON texts) and a made-up signature.
pub fn jwt(header: &str, claims: &str, signature: &str) -> String {
    format!(
        "{}.{}.{signature}",
        base64url(header.as_bytes()),
        base64url(claims.as_bytes())
    )
}
