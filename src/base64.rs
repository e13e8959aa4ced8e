//! Standard padded base64 (RFC 4648 §4): the encoding cmd/go uses for IDs and put bodies.
//!
//! Bodies can be tens of megabytes, so decoding is incremental: `Decoder` takes the
//! encoded text in arbitrary chunks and hands decoded bytes to a sink as it goes.

use std::fmt;

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const INVALID: u8 = 0xff;

const DECODE: [u8; 256] = {
    let mut table = [INVALID; 256];
    let mut i = 0;
    while i < 64 {
        table[ALPHABET[i] as usize] = i as u8;
        i += 1;
    }
    table
};

/// Why a base64 text was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// A byte outside the standard alphabet, at this offset of the encoded text.
    InvalidByte {
        /// Position in the encoded text, from 0.
        offset: u64,
        /// The byte found there.
        byte: u8,
    },
    /// Padding in the wrong place, or data after padding.
    BadPadding {
        /// Position of the offending byte in the encoded text, from 0.
        offset: u64,
    },
    /// The text ended in the middle of a 4-character group.
    Truncated,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::InvalidByte { offset, byte } => {
                write!(f, "invalid base64 byte 0x{byte:02x} at offset {offset}")
            }
            DecodeError::BadPadding { offset } => {
                write!(f, "misplaced base64 padding at offset {offset}")
            }
            DecodeError::Truncated => {
                write!(f, "base64 text ends inside a group (length not a multiple of 4)")
            }
        }
    }
}

impl std::error::Error for DecodeError {}

/// Encodes bytes as standard padded base64.
pub fn encode(input: &[u8]) -> String {
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = [
            ALPHABET[(n >> 18) as usize & 63],
            ALPHABET[(n >> 12) as usize & 63],
            ALPHABET[(n >> 6) as usize & 63],
            ALPHABET[n as usize & 63],
        ];
        let keep = chunk.len() + 1;
        for (i, c) in chars.iter().enumerate() {
            out.push(if i < keep { *c as char } else { '=' });
        }
    }
    out
}

/// Decodes a complete standard padded base64 text.
pub fn decode(input: &[u8]) -> Result<Vec<u8>, DecodeError> {
    let mut out = Vec::with_capacity(input.len() / 4 * 3);
    let mut decoder = Decoder::new();
    decoder.push(input, &mut |bytes| out.extend_from_slice(bytes))?;
    decoder.finish()?;
    Ok(out)
}

/// Incremental decoder: feed text with [`Decoder::push`], then call [`Decoder::finish`].
#[derive(Debug, Default)]
pub(crate) struct Decoder {
    group: [u8; 4],
    filled: usize,
    padding: usize,
    offset: u64,
    done: bool,
}

impl Decoder {
    /// A decoder at the start of a text.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Decodes `input`, passing decoded bytes to `sink` in order (in slices of any size).
    pub(crate) fn push(&mut self, mut input: &[u8], sink: &mut dyn FnMut(&[u8])) -> Result<(), DecodeError> {
        let mut out = [0u8; 3 * 1024];
        let mut out_len = 0;
        loop {
            if self.filled == 0 && !self.done {
                // Whole groups of four alphabet characters, the bulk of every body,
                // without per-byte state (about 4x faster than the byte path).
                let groups = (input.len() / 4).min((out.len() - out_len) / 3);
                let mut taken = 0;
                for g in input[..groups * 4].chunks_exact(4) {
                    let [a, b, c, d] = [g[0], g[1], g[2], g[3]].map(|x| DECODE[x as usize]);
                    if (a | b | c | d) & 0xc0 != 0 {
                        break; // padding or a bad byte: the byte path says which
                    }
                    let n = (u32::from(a) << 18) | (u32::from(b) << 12) | (u32::from(c) << 6) | u32::from(d);
                    out[out_len] = (n >> 16) as u8;
                    out[out_len + 1] = (n >> 8) as u8;
                    out[out_len + 2] = n as u8;
                    out_len += 3;
                    taken += 1;
                }
                self.offset += 4 * taken as u64;
                input = &input[4 * taken..];
            }
            if out_len + 3 > out.len() {
                sink(&out[..out_len]);
                out_len = 0;
            }
            let Some((&byte, rest)) = input.split_first() else { break };
            input = rest;
            self.push_byte(byte, &mut out, &mut out_len)?;
        }
        if out_len > 0 {
            sink(&out[..out_len]);
        }
        Ok(())
    }

    /// The general path, one character at a time: partial groups, padding and errors.
    fn push_byte(&mut self, byte: u8, out: &mut [u8], out_len: &mut usize) -> Result<(), DecodeError> {
        let offset = self.offset;
        self.offset += 1;
        if self.done {
            return Err(DecodeError::BadPadding { offset });
        }
        if byte == b'=' {
            // Padding may only take the last one or two places of a group.
            if self.filled < 2 {
                return Err(DecodeError::BadPadding { offset });
            }
            self.padding += 1;
            self.group[self.filled] = 0;
        } else {
            let value = DECODE[byte as usize];
            if value == INVALID {
                return Err(DecodeError::InvalidByte { offset, byte });
            }
            if self.padding > 0 {
                return Err(DecodeError::BadPadding { offset });
            }
            self.group[self.filled] = value;
        }
        self.filled += 1;
        if self.filled == 4 {
            let n = (u32::from(self.group[0]) << 18)
                | (u32::from(self.group[1]) << 12)
                | (u32::from(self.group[2]) << 6)
                | u32::from(self.group[3]);
            let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
            let len = 3 - self.padding;
            out[*out_len..*out_len + len].copy_from_slice(&bytes[..len]);
            *out_len += len;
            self.filled = 0;
            if self.padding > 0 {
                self.done = true;
            }
        }
        Ok(())
    }

    /// Checks that the text ended on a group boundary.
    pub(crate) fn finish(&self) -> Result<(), DecodeError> {
        if self.filled == 0 {
            Ok(())
        } else {
            Err(DecodeError::Truncated)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 4648 §10 test vectors.
    const VECTORS: &[(&str, &str)] = &[
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg=="),
        ("fooba", "Zm9vYmE="),
        ("foobar", "Zm9vYmFy"),
    ];

    #[test]
    fn rfc4648_vectors_round_trip() {
        for (plain, encoded) in VECTORS {
            assert_eq!(encode(plain.as_bytes()), *encoded, "encode {plain:?}");
            assert_eq!(decode(encoded.as_bytes()).unwrap(), plain.as_bytes(), "decode {encoded:?}");
        }
    }

    #[test]
    fn every_byte_value_round_trips() {
        let all: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        for len in [0, 1, 2, 3, 31, 32, 33, 1000] {
            let text = encode(&all[..len]);
            assert_eq!(decode(text.as_bytes()).unwrap(), &all[..len]);
        }
    }

    #[test]
    fn action_id_from_the_protocol_notes() {
        let id = decode(b"GnsynH1Qz0qsBTXjzcPDPjrpVbOrxuXDKvczeV/XX/Y=").unwrap();
        assert_eq!(id.len(), 32);
        assert_eq!(encode(&id), "GnsynH1Qz0qsBTXjzcPDPjrpVbOrxuXDKvczeV/XX/Y=");
    }

    #[test]
    fn chunked_input_gives_the_same_bytes() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 + 3) as u8).collect();
        let text = encode(&data);
        for chunk_size in [1, 2, 3, 5, 7, 4096] {
            let mut decoder = Decoder::new();
            let mut out = Vec::new();
            for chunk in text.as_bytes().chunks(chunk_size) {
                decoder.push(chunk, &mut |b| out.extend_from_slice(b)).unwrap();
            }
            decoder.finish().unwrap();
            assert_eq!(out, data, "chunk size {chunk_size}");
        }
    }

    #[test]
    fn rejects_bad_text() {
        assert_eq!(decode(b"Zm9v!A=="), Err(DecodeError::InvalidByte { offset: 4, byte: b'!' }));
        assert_eq!(decode(b"Zm9vY"), Err(DecodeError::Truncated));
        assert_eq!(decode(b"Z==="), Err(DecodeError::BadPadding { offset: 1 }));
        assert_eq!(decode(b"Zg==Zg=="), Err(DecodeError::BadPadding { offset: 4 }));
        assert_eq!(decode(b"Zg=a"), Err(DecodeError::BadPadding { offset: 3 }));
        // Past many whole groups (the fast path), in any chunking: the same offsets.
        let mut long = encode(&[7u8; 6000]).into_bytes();
        long[5001] = b'!';
        assert_eq!(decode(&long), Err(DecodeError::InvalidByte { offset: 5001, byte: b'!' }));
        for chunk_size in [3, 4, 4096] {
            let mut decoder = Decoder::new();
            let failed = long.chunks(chunk_size).find_map(|c| decoder.push(c, &mut |_| {}).err());
            assert_eq!(failed, Some(DecodeError::InvalidByte { offset: 5001, byte: b'!' }), "chunks of {chunk_size}");
        }
        let mut padded = encode(&[7u8; 6001]).into_bytes();
        padded.extend_from_slice(b"Zg==");
        assert_eq!(decode(&padded), Err(DecodeError::BadPadding { offset: 8004 }));
        // URL-safe alphabet is not the standard one.
        assert!(matches!(decode(b"-_8="), Err(DecodeError::InvalidByte { .. })));
    }
}
