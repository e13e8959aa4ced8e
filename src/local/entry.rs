//! The action entry line of go's own cache format (`<xx>/<actionID hex>-a`):
//! `v1 <actionID hex> <outputID hex> <size %20d> <unix nanos %20d>\n`, as written by
//! `src/cmd/go/internal/cache/cache.go`, so plain `go` can read what we store and back.

use crate::id::Id;
use std::fmt;

/// What an action ID maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// The output (file `<hex>-d`) the action produced.
    pub output_id: Id,
    /// The output's length in bytes.
    pub size: u64,
    /// Time of the original put, nanoseconds since the Unix epoch.
    pub time_nanos: i64,
}

/// Length of every valid entry line, newline included.
pub const LINE_LEN: usize = 2 + 1 + 64 + 1 + 64 + 1 + 20 + 1 + 20 + 1;

/// Why an entry file was not usable (it is then treated as a miss).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryError {
    /// The file has this many bytes instead of [`LINE_LEN`].
    Length(usize),
    /// The line is not `v1 <action> <output> <size> <time>`: which part is wrong.
    Format(&'static str),
    /// A valid line for another action ID (a misplaced or copied file).
    OtherAction,
}

impl fmt::Display for EntryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EntryError::Length(n) => write!(f, "entry is {n} bytes, expected {LINE_LEN}"),
            EntryError::Format(what) => write!(f, "malformed entry: {what}"),
            EntryError::OtherAction => f.write_str("entry names a different action ID"),
        }
    }
}

impl std::error::Error for EntryError {}

/// Formats the entry line for `action`.
pub fn format(action: &Id, entry: &Entry) -> String {
    format!("v1 {} {} {:20} {:20}\n", action.hex(), entry.output_id.hex(), entry.size, entry.time_nanos)
}

/// Parses an entry line and checks it is for `action`.
pub fn parse(action: &Id, line: &[u8]) -> Result<Entry, EntryError> {
    if line.len() != LINE_LEN {
        return Err(EntryError::Length(line.len()));
    }
    // Every valid line is ASCII; checking that first makes every fixed offset below a
    // character boundary (a stray UTF-8 byte from a damaged file must be a miss, not a panic).
    if !line.is_ascii() {
        return Err(EntryError::Format("not ASCII"));
    }
    let text = std::str::from_utf8(line).map_err(|_| EntryError::Format("not ASCII"))?;
    let text = text
        .strip_prefix("v1 ")
        .and_then(|t| t.strip_suffix('\n'))
        .ok_or(EntryError::Format("missing v1 prefix or newline"))?;
    let (action_hex, rest) = text.split_at(64);
    let got = Id::from_hex(action_hex).ok_or(EntryError::Format("bad action ID"))?;
    if got != *action {
        return Err(EntryError::OtherAction);
    }
    let rest = rest.strip_prefix(' ').ok_or(EntryError::Format("separator"))?;
    let (output_hex, rest) = rest.split_at(64);
    let output_id = Id::from_hex(output_hex).ok_or(EntryError::Format("bad output ID"))?;
    let rest = rest.strip_prefix(' ').ok_or(EntryError::Format("separator"))?;
    let (size, time) = rest.split_at(20);
    let size = size.trim_start().parse::<u64>().map_err(|_| EntryError::Format("bad size"))?;
    let time_nanos = time
        .strip_prefix(' ')
        .ok_or(EntryError::Format("separator"))?
        .trim_start()
        .parse::<i64>()
        .map_err(|_| EntryError::Format("bad time"))?;
    Ok(Entry { output_id, size, time_nanos })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(byte: u8) -> Id {
        Id([byte; 32])
    }

    #[test]
    fn round_trip_has_go_layout() {
        let entry = Entry { output_id: id(0xcd), size: 199, time_nanos: 1_764_076_525_848_531_745 };
        let line = format(&id(0xab), &entry);
        assert_eq!(line.len(), LINE_LEN);
        let expected = format!(
            "v1 {} {} {} {}\n",
            "ab".repeat(32),
            "cd".repeat(32),
            "                 199",
            " 1764076525848531745"
        );
        assert_eq!(line, expected);
        assert_eq!(parse(&id(0xab), line.as_bytes()), Ok(entry));
    }

    #[test]
    fn a_line_in_gos_layout_parses() {
        // Written out by hand from go's `fmt.Sprintf("v1 %x %x %20d %20d\n", ...)`.
        let line = b"v1 1a7b329c7d50cf4aac0535e3cdc3c33e3ae955b3abc6e5c32af733795fd75ff6 54b78ec39fd38ef3592992d19d68834a444f06410ea637279ecb7b6e4deb4117                  199  1764076525848531745\n";
        let action = Id::from_hex("1a7b329c7d50cf4aac0535e3cdc3c33e3ae955b3abc6e5c32af733795fd75ff6").unwrap();
        let entry = parse(&action, line).unwrap();
        assert_eq!(entry.size, 199);
        assert_eq!(entry.time_nanos, 1_764_076_525_848_531_745);
        assert_eq!(entry.output_id.hex(), "54b78ec39fd38ef3592992d19d68834a444f06410ea637279ecb7b6e4deb4117");
    }

    #[test]
    fn rejects_damaged_lines() {
        let entry = Entry { output_id: id(1), size: 5, time_nanos: 7 };
        let line = format(&id(2), &entry);
        assert_eq!(parse(&id(3), line.as_bytes()), Err(EntryError::OtherAction));
        assert_eq!(parse(&id(2), &line.as_bytes()[..100]), Err(EntryError::Length(100)));
        let bad = line.replacen("v1", "v2", 1);
        assert!(parse(&id(2), bad.as_bytes()).is_err());
        let bad = line.replace("                   5", "                  -5");
        assert!(parse(&id(2), bad.as_bytes()).is_err());
    }

    #[test]
    fn any_byte_anywhere_is_a_miss_never_a_panic() {
        let entry = Entry { output_id: id(1), size: 5, time_nanos: 7 };
        let line = format(&id(2), &entry).into_bytes();
        // A multi-byte UTF-8 character (é) or a lone high byte at every offset: the fixed
        // offsets of the parser then fall inside a character.
        for at in 0..line.len() {
            for patch in [&[0xc3u8, 0xa9][..], &[0xff][..], &[b' '][..], &[b'x'][..]] {
                let mut bad = line.clone();
                let end = (at + patch.len()).min(bad.len());
                bad[at..end].copy_from_slice(&patch[..end - at]);
                let _ = parse(&id(2), &bad);
                let mut longer = line.clone();
                longer.splice(at..at, patch.iter().copied());
                longer.truncate(LINE_LEN);
                let _ = parse(&id(2), &longer);
            }
        }
        // Truncated, empty, oversized, binary garbage.
        for bad in [&line[..LINE_LEN - 1], &[][..], &[0u8; LINE_LEN][..], &[0xffu8; LINE_LEN][..]] {
            assert!(parse(&id(2), bad).is_err());
        }
    }
}
