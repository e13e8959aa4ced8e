//! The working-set manifest: which outputs a build used, stored as one small object per
//! build key at `<prefix>/manifests/v1/<build key>` (a key the original Go program never
//! takes: its outputs are `<prefix>/<64 hex digits>`). At the start of a session the
//! manifest says what to prefetch; at its end the session merges what it used into it.
//!
//! It is only a list of what to fetch: every body is still verified against its output
//! ID, so a stale, foreign or damaged manifest costs bandwidth, never correctness.
//!
//! Format (little endian): the magic line `gocacheprog-s3 manifest v1\n`, a `u32` entry
//! count, then per entry the action ID (32 bytes), the output ID (32), the size (`u64`)
//! and the last time a session used it (`u64` unix seconds). Entries are in the order
//! the most recent sessions first used them, so a prefetch fetches first what go asks
//! for first.

use crate::id::Id;
use std::collections::HashSet;

const MAGIC: &[u8] = b"gocacheprog-s3 manifest v1\n";
const ENTRY_LEN: usize = 32 + 32 + 8 + 8;

/// At most this many entries are kept (4 MB): a module's build uses a few thousand.
pub(crate) const MAX_ENTRIES: usize = 50_000;

/// Entries not used for this long before the most recent use are dropped.
pub(crate) const KEEP_SECS: u64 = 7 * 86_400;

/// Only entries used within this long of the most recent use are prefetched: older
/// ones belong to code that has changed since.
pub(crate) const PREFETCH_WINDOW_SECS: u64 = 86_400;

/// A manifest is rewritten when it gained entries, or its newest use is older than this.
pub(crate) const REFRESH_SECS: u64 = 3600;

/// One output a build used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ManifestEntry {
    /// The action ID go asked for.
    pub action: Id,
    /// The output ID it mapped to.
    pub output: Id,
    /// The output's length in bytes.
    pub size: u64,
    /// Unix seconds of the last session that used it.
    pub used: u64,
}

/// A working set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifest {
    /// In the order the most recent sessions first used them: a prefetch follows it.
    pub entries: Vec<ManifestEntry>,
}

/// The object key of a build key's manifest. Characters outside `[A-Za-z0-9._~/-]` and
/// `..` path steps become `_`, so the key is safe for every store.
pub fn key_name(build_key: &str) -> String {
    let clean: String =
        build_key.chars().map(|c| if c.is_ascii_alphanumeric() || "._~/-".contains(c) { c } else { '_' }).collect();
    let steps: Vec<&str> =
        clean.split('/').filter(|s| !s.is_empty()).map(|s| if s == "." || s == ".." { "_" } else { s }).collect();
    format!("manifests/v1/{}", steps.join("/"))
}

impl Manifest {
    /// Serialises the manifest.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(MAGIC.len() + 4 + self.entries.len() * ENTRY_LEN);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(self.entries.len() as u32).to_le_bytes());
        for e in &self.entries {
            out.extend_from_slice(&e.action.0);
            out.extend_from_slice(&e.output.0);
            out.extend_from_slice(&e.size.to_le_bytes());
            out.extend_from_slice(&e.used.to_le_bytes());
        }
        out
    }

    /// Parses a manifest; anything that is not exactly one is an error (and is then
    /// ignored: it only costs a prefetch).
    pub fn parse(bytes: &[u8]) -> Result<Manifest, String> {
        let rest = bytes.strip_prefix(MAGIC).ok_or("not a gocacheprog-s3 manifest (v1)")?;
        let (count, body) = rest.split_first_chunk::<4>().ok_or("manifest cut short")?;
        let count = u32::from_le_bytes(*count) as usize;
        if count > MAX_ENTRIES || body.len() != count * ENTRY_LEN {
            return Err(format!("manifest of {} bytes does not hold {count} entries", bytes.len()));
        }
        let entries = body
            .chunks_exact(ENTRY_LEN)
            .map(|c| {
                let (action, c) = c.split_at(32);
                let (output, c) = c.split_at(32);
                let (size, used) = c.split_at(8);
                ManifestEntry {
                    action: Id::from_slice(action).unwrap_or(Id([0; 32])),
                    output: Id::from_slice(output).unwrap_or(Id([0; 32])),
                    size: u64::from_le_bytes(size.try_into().unwrap_or_default()),
                    used: u64::from_le_bytes(used.try_into().unwrap_or_default()),
                }
            })
            .collect();
        Ok(Manifest { entries })
    }

    /// The most recent use of any entry.
    pub fn newest(&self) -> u64 {
        self.entries.iter().map(|e| e.used).max().unwrap_or(0)
    }

    /// The entries worth prefetching: used within [`PREFETCH_WINDOW_SECS`] of the newest
    /// use, in manifest order.
    pub(crate) fn current(&self) -> impl Iterator<Item = &ManifestEntry> {
        let since = self.newest().saturating_sub(PREFETCH_WINDOW_SECS);
        self.entries.iter().filter(move |e| e.used >= since)
    }

    /// This manifest with a session's entries (in their first-use order, all stamped
    /// `now`) in front, each action once, without `gone` (actions the bucket did not
    /// have), entries past [`KEEP_SECS`] dropped, at most [`MAX_ENTRIES`].
    pub(crate) fn merged(&self, session: &[(Id, Id, u64)], gone: &HashSet<Id>, now: u64) -> Manifest {
        let mut seen = HashSet::with_capacity(session.len() + self.entries.len());
        let fresh = session.iter().map(|&(action, output, size)| ManifestEntry { action, output, size, used: now });
        let keep_since = now.saturating_sub(KEEP_SECS);
        let entries = fresh
            .chain(self.entries.iter().copied().filter(|e| e.used >= keep_since))
            .filter(|e| !gone.contains(&e.action) && seen.insert(e.action))
            .take(MAX_ENTRIES)
            .collect();
        Manifest { entries }
    }

    /// Whether `merged` (from this manifest) is worth writing at `now`: it gained or lost
    /// entries, or this one has not been refreshed for [`REFRESH_SECS`].
    pub(crate) fn needs_write(&self, merged: &Manifest, now: u64) -> bool {
        let old: HashSet<Id> = self.entries.iter().map(|e| e.action).collect();
        merged.entries.len() != self.entries.len()
            || merged.entries.iter().any(|e| !old.contains(&e.action))
            || now.saturating_sub(self.newest()) >= REFRESH_SECS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u8, used: u64) -> ManifestEntry {
        ManifestEntry { action: Id([n; 32]), output: Id([n ^ 0xff; 32]), size: u64::from(n) * 100, used }
    }

    #[test]
    fn round_trip_and_damage() {
        let m = Manifest { entries: vec![entry(1, 10), entry(2, 20)] };
        let bytes = m.to_bytes();
        assert_eq!(bytes.len(), MAGIC.len() + 4 + 2 * ENTRY_LEN);
        assert_eq!(Manifest::parse(&bytes).unwrap(), m);
        assert!(Manifest::parse(&bytes[..bytes.len() - 1]).is_err());
        assert!(Manifest::parse(b"").is_err());
        assert!(Manifest::parse(b"<Error>").is_err());
        let mut huge = MAGIC.to_vec();
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(Manifest::parse(&huge).is_err());
        for cut in 0..bytes.len() {
            let _ = Manifest::parse(&bytes[..cut]);
        }
    }

    #[test]
    fn merge_puts_the_session_first_and_bounds_the_rest() {
        let now = 1_000_000;
        let old = Manifest { entries: vec![entry(1, now - 100), entry(2, now - KEEP_SECS - 1), entry(3, now - 50)] };
        let session = [(Id([3; 32]), Id([33; 32]), 5), (Id([4; 32]), Id([44; 32]), 6), (Id([4; 32]), Id([44; 32]), 6)];
        let gone: HashSet<Id> = [Id([1; 32])].into();
        let merged = old.merged(&session, &gone, now);
        let actions: Vec<u8> = merged.entries.iter().map(|e| e.action.0[0]).collect();
        // 3 and 4 from the session (3 with its new output), 1 gone, 2 too old.
        assert_eq!(actions, vec![3, 4]);
        assert_eq!(merged.entries[0].output, Id([33; 32]));
        assert!(merged.entries.iter().all(|e| e.used == now));
        assert!(old.needs_write(&merged, now));
        assert!(!merged.needs_write(&merged.clone(), now + 10), "nothing new, recently refreshed");
        assert!(merged.needs_write(&merged.clone(), now + REFRESH_SECS), "refresh");

        let many: Vec<(Id, Id, u64)> =
            (0..MAX_ENTRIES + 10).map(|i| (Id([(i % 251) as u8; 32]), Id([0; 32]), i as u64)).collect();
        let mut distinct = many.clone();
        for (i, e) in distinct.iter_mut().enumerate() {
            e.0 .0[..8].copy_from_slice(&(i as u64).to_le_bytes());
        }
        assert_eq!(Manifest::default().merged(&distinct, &HashSet::new(), now).entries.len(), MAX_ENTRIES);
    }

    #[test]
    fn only_current_entries_are_prefetched() {
        let m = Manifest {
            entries: vec![entry(1, 100_000), entry(2, 100_000 - PREFETCH_WINDOW_SECS - 1), entry(3, 90_000)],
        };
        let current: Vec<u8> = m.current().map(|e| e.action.0[0]).collect();
        assert_eq!(current, vec![1, 3]);
    }

    #[test]
    fn keys_are_safe_names() {
        assert_eq!(
            key_name("github.com/a/b/v2/go1.26.8/linux-amd64"),
            "manifests/v1/github.com/a/b/v2/go1.26.8/linux-amd64"
        );
        assert_eq!(key_name("(no module)/go1.26.8/linux-amd64"), "manifests/v1/_no_module_/go1.26.8/linux-amd64");
        assert_eq!(key_name("../../x//y ü"), "manifests/v1/_/_/x/y__");
    }
}
