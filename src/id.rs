//! The 32-byte identifiers of the cache: action IDs (keys) and output IDs (SHA-256 of a body).

use std::fmt;

/// A 32-byte action or output ID.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id(pub [u8; 32]);

impl Id {
    /// Lower-case hex, the form used in file names and object keys.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hex digits (either case).
    pub(crate) fn from_hex(text: &str) -> Option<Id> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut out).ok()?;
        Some(Id(out))
    }

    /// Takes exactly 32 bytes.
    pub(crate) fn from_slice(bytes: &[u8]) -> Option<Id> {
        Some(Id(bytes.try_into().ok()?))
    }

    /// Padded standard base64, the form cmd/go reads.
    pub(crate) fn base64(&self) -> String {
        crate::base64::encode(&self.0)
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}
