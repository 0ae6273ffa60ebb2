//! The SSH wire encoding (RFC 4251 section 5) of public key blobs: reading, building, and the
//! fingerprint that `ssh-keygen -l` prints.

use base64::Engine as _;
use sha2::{Digest as _, Sha256};

/// Reads `uint32` and `string` values from an SSH-encoded buffer. Every read checks bounds.
pub(super) struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Self {
        Self { bytes }
    }

    pub(super) fn read_u32(&mut self) -> Option<u32> {
        let (head, rest) = self.bytes.split_first_chunk::<4>()?;
        self.bytes = rest;
        Some(u32::from_be_bytes(*head))
    }

    pub(super) fn read_u8(&mut self) -> Option<u8> {
        let (&byte, rest) = self.bytes.split_first()?;
        self.bytes = rest;
        Some(byte)
    }

    /// Reads a length-prefixed `string`, which is also the layout of an `mpint`.
    pub(super) fn read_string(&mut self) -> Option<&'a [u8]> {
        let len = usize::try_from(self.read_u32()?).ok()?;
        if len > self.bytes.len() {
            return None;
        }
        let (value, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        Some(value)
    }

    pub(super) fn skip_strings(&mut self, count: usize) -> Option<()> {
        for _ in 0..count {
            self.read_string()?;
        }
        Some(())
    }
}

/// Appends a length-prefixed `string`.
pub(super) fn write_string(output: &mut Vec<u8>, value: &[u8]) {
    // Public key parts are far below 4 GiB; a longer value cannot come from a 1 MiB input.
    let len = u32::try_from(value.len()).unwrap_or(u32::MAX);
    output.extend_from_slice(&len.to_be_bytes());
    output.extend_from_slice(value);
}

/// Appends an `mpint` of the unsigned big-endian number `magnitude`: no leading zero bytes,
/// and one zero byte in front when the high bit is set, so the number stays positive.
pub(super) fn write_mpint(output: &mut Vec<u8>, magnitude: &[u8]) {
    let start = magnitude
        .iter()
        .position(|&byte| byte != 0)
        .unwrap_or(magnitude.len());
    let digits = &magnitude[start..];
    if digits.first().is_some_and(|&byte| byte & 0x80 != 0) {
        let mut padded = Vec::with_capacity(digits.len() + 1);
        padded.push(0);
        padded.extend_from_slice(digits);
        write_string(output, &padded);
    } else {
        write_string(output, digits);
    }
}

/// Returns the fingerprint as `ssh-keygen -l` prints it: `SHA256:` and the unpadded base64
/// of the SHA-256 of the public key blob.
pub(super) fn fingerprint(blob: &[u8]) -> String {
    let digest = Sha256::digest(blob);
    format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest)
    )
}

/// Returns the key type name and size in bits of a public key blob, as `ssh-keygen -l`
/// reports them. The size is `None` for key types it does not know.
pub(super) fn describe_blob(blob: &[u8]) -> Option<(String, Option<usize>)> {
    let mut reader = Reader::new(blob);
    let key_type = String::from_utf8_lossy(reader.read_string()?).into_owned();
    let bits = match key_type.as_str() {
        "ssh-rsa" => {
            reader.read_string()?;
            Some(bit_length(reader.read_string()?))
        }
        "ssh-dss" => Some(bit_length(reader.read_string()?)),
        "ecdsa-sha2-nistp256" | "sk-ecdsa-sha2-nistp256@openssh.com" => Some(256),
        "ecdsa-sha2-nistp384" => Some(384),
        "ecdsa-sha2-nistp521" => Some(521),
        "ssh-ed25519" | "sk-ssh-ed25519@openssh.com" => Some(256),
        "ssh-ed448" => Some(456),
        _ => None,
    };
    Some((key_type, bits))
}

/// Returns the number of significant bits of an unsigned big-endian number.
pub(super) fn bit_length(magnitude: &[u8]) -> usize {
    match magnitude.iter().position(|&byte| byte != 0) {
        Some(first) => {
            let leading = magnitude[first].leading_zeros() as usize;
            (magnitude.len() - first) * 8 - leading
        }
        None => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mpint_encoding() {
        let mut output = Vec::new();
        write_mpint(&mut output, &[0x00, 0x80, 0x01]);
        write_mpint(&mut output, &[0x01, 0x00, 0x01]);
        write_mpint(&mut output, &[0x00]);

        assert_eq!(
            output,
            [
                0, 0, 0, 3, 0x00, 0x80, 0x01, //
                0, 0, 0, 3, 0x01, 0x00, 0x01, //
                0, 0, 0, 0,
            ]
        );
    }

    #[test]
    fn reader_bounds() {
        let mut reader = Reader::new(&[0, 0, 0, 9, 1, 2]);

        assert_eq!(reader.read_string(), None);
        assert_eq!(Reader::new(&[0, 0]).read_u32(), None);
    }

    #[test]
    fn bit_lengths() {
        assert_eq!(bit_length(&[0x00, 0x80, 0x00]), 16);
        assert_eq!(bit_length(&[0x01]), 1);
        assert_eq!(bit_length(&[]), 0);
    }
}
