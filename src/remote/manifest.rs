//! The working-set manifest: which outputs the builds of one build key used, kept per kind
//! of go command, stored as one small object per build key at
//! `<prefix>/manifests/v2/<build key>` (a key the original Go program never takes: its
//! outputs are `<prefix>/<64 hex digits>`). At the start of a session the manifest says
//! what to prefetch; at its end the session replaces its kind's working set with what it
//! used.
//!
//! A kind is what a go command builds (its subcommand, directory and packages: see
//! `invocation`), so `go build ./...` and `go test ./...` of one build key keep their sets
//! apart, and each new session of a kind replaces that kind's set: what a newer session of
//! the kind stopped using (the older commit's outputs of a package that changed) leaves
//! the manifest at once, so what a prefetch fetches does not grow with the number of
//! commits built. Concurrent sessions write whole manifests, the last writer winning: a
//! kind whose latest session lost that race keeps the set of the session before, one
//! session behind, never a growing pile.
//!
//! It is only a list of what to fetch: every body is still verified against its output
//! ID, so a stale, foreign or damaged manifest costs bandwidth, never correctness.
//!
//! Format (little endian): the magic line `gocacheprog-s3 manifest v2\n`; a `u32` kind
//! count (at most `MAX_KINDS`), then per kind its ID (`u64`) and the last time a session
//! of it ended (`u64` unix seconds), most recent first; a `u32` entry count, then per entry
//! the action ID (32 bytes), the output ID (32), the size (`u64`) and the kinds that used
//! it (a `u32` bit set, bit `i` for the `i`th kind). Entries are in the order the most
//! recent sessions first used them, so a prefetch fetches first what go asks for first.

use crate::id::Id;
use std::collections::{HashMap, HashSet};

const MAGIC: &[u8] = b"gocacheprog-s3 manifest v2\n";
const KIND_LEN: usize = 8 + 8;
const ENTRY_LEN: usize = 32 + 32 + 8 + 4;

/// At most this many entries are kept (3.8 MB): a module's build uses a few thousand.
pub(crate) const MAX_ENTRIES: usize = 50_000;

/// At most this many kinds are kept (the bits of an entry's set); the least recently
/// used goes first.
pub(crate) const MAX_KINDS: usize = 32;

/// Kinds without a session for this long before the most recent session are dropped.
pub(crate) const KEEP_SECS: u64 = 7 * 86_400;

/// A kind's set is prefetched only when its last session ended within this long of the
/// most recent session of any kind: an older one belongs to code that has changed since.
pub(crate) const PREFETCH_WINDOW_SECS: u64 = 86_400;

/// A manifest is rewritten when a kind's set changed, or its newest session is older
/// than this.
pub(crate) const REFRESH_SECS: u64 = 3600;

/// One kind of go command, and when its last session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kind {
    /// The first 8 bytes of the SHA-256 of the kind's description (`kind_id`).
    pub id: u64,
    /// Unix seconds.
    pub used: u64,
}

/// One output a build used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ManifestEntry {
    /// The action ID go asked for.
    pub action: Id,
    /// The output ID it mapped to.
    pub output: Id,
    /// The output's length in bytes.
    pub size: u64,
    /// The kinds (bit `i`: `Manifest::kinds[i]`) whose last session used it.
    pub kinds: u32,
}

/// The working sets of one build key's kinds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifest {
    /// Most recent first.
    pub kinds: Vec<Kind>,
    /// The outputs of every kept kind's set, each once, in the order the most recent
    /// sessions first used them: a prefetch follows it.
    pub entries: Vec<ManifestEntry>,
}

/// The ID of a kind of go command from its description.
pub(crate) fn kind_id(description: &str) -> u64 {
    let hash = crate::s3::sigv4::sha256_hex(description.as_bytes());
    u64::from_str_radix(&hash[..16], 16).unwrap_or(0)
}

/// The object key of a build key's manifest. Characters outside `[A-Za-z0-9._~/-]` and
/// `..` path steps become `_`, so the key is safe for every store.
pub fn key_name(build_key: &str) -> String {
    let clean: String =
        build_key.chars().map(|c| if c.is_ascii_alphanumeric() || "._~/-".contains(c) { c } else { '_' }).collect();
    let steps: Vec<&str> =
        clean.split('/').filter(|s| !s.is_empty()).map(|s| if s == "." || s == ".." { "_" } else { s }).collect();
    format!("manifests/v2/{}", steps.join("/"))
}

impl Manifest {
    /// Serialises the manifest.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(MAGIC.len() + 8 + self.kinds.len() * KIND_LEN + self.entries.len() * ENTRY_LEN);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(self.kinds.len() as u32).to_le_bytes());
        for k in &self.kinds {
            out.extend_from_slice(&k.id.to_le_bytes());
            out.extend_from_slice(&k.used.to_le_bytes());
        }
        out.extend_from_slice(&(self.entries.len() as u32).to_le_bytes());
        for e in &self.entries {
            out.extend_from_slice(&e.action.0);
            out.extend_from_slice(&e.output.0);
            out.extend_from_slice(&e.size.to_le_bytes());
            out.extend_from_slice(&e.kinds.to_le_bytes());
        }
        out
    }

    /// Parses a manifest; anything that is not exactly one is an error (and is then
    /// ignored: it only costs a prefetch).
    pub fn parse(bytes: &[u8]) -> Result<Manifest, String> {
        let rest = bytes.strip_prefix(MAGIC).ok_or("not a gocacheprog-s3 manifest (v2)")?;
        let (count, rest) = rest.split_first_chunk::<4>().ok_or("manifest cut short")?;
        let kind_count = u32::from_le_bytes(*count) as usize;
        if kind_count > MAX_KINDS || rest.len() < kind_count * KIND_LEN {
            return Err(format!("manifest of {} bytes does not hold {kind_count} kinds", bytes.len()));
        }
        let (kinds, rest) = rest.split_at(kind_count * KIND_LEN);
        let u64_at = |c: &[u8], at: usize| u64::from_le_bytes(c[at..at + 8].try_into().unwrap_or_default());
        let kinds = kinds.chunks_exact(KIND_LEN).map(|c| Kind { id: u64_at(c, 0), used: u64_at(c, 8) }).collect();
        let (count, body) = rest.split_first_chunk::<4>().ok_or("manifest cut short")?;
        let count = u32::from_le_bytes(*count) as usize;
        if count > MAX_ENTRIES || body.len() != count * ENTRY_LEN {
            return Err(format!("manifest of {} bytes does not hold {count} entries", bytes.len()));
        }
        let entries = body
            .chunks_exact(ENTRY_LEN)
            .map(|c| ManifestEntry {
                action: Id::from_slice(&c[..32]).unwrap_or(Id([0; 32])),
                output: Id::from_slice(&c[32..64]).unwrap_or(Id([0; 32])),
                size: u64_at(c, 64),
                kinds: u32::from_le_bytes(c[72..76].try_into().unwrap_or_default()),
            })
            .collect();
        Ok(Manifest { kinds, entries })
    }

    /// The end of the most recent session of any kind.
    pub(crate) fn newest(&self) -> u64 {
        self.kinds.iter().map(|k| k.used).max().unwrap_or(0)
    }

    /// The entries worth prefetching for a session of `kind`, in manifest order: its
    /// kind's set, when its last session ended within [`PREFETCH_WINDOW_SECS`] of the
    /// newest; for a kind the manifest does not know (or only an older set of), the set
    /// of the most recent kind, as the best guess of what a build of this key uses.
    pub(crate) fn for_kind(&self, kind: u64) -> impl Iterator<Item = &ManifestEntry> {
        let since = self.newest().saturating_sub(PREFETCH_WINDOW_SECS);
        let own = self.kinds.iter().position(|k| k.id == kind && k.used >= since);
        // Kinds are kept most recent first: the first is the most recent.
        let bit = match (own, self.kinds.is_empty()) {
            (Some(i), _) => 1u32 << i,
            (None, false) => 1,
            (None, true) => 0,
        };
        self.entries.iter().filter(move |e| e.kinds & bit != 0)
    }

    /// The entries the most recent session used (for tests and tools).
    pub fn latest_session(&self) -> impl Iterator<Item = &ManifestEntry> {
        self.entries.iter().filter(|e| e.kinds & 1 != 0)
    }

    /// This manifest with `kind`'s set replaced by what a session of it used (in its
    /// first-use order, in front), ended `now`: without `gone` (actions the bucket did not
    /// have), without kinds past [`KEEP_SECS`] or beyond [`MAX_KINDS`], without entries no
    /// kind uses any more, at most [`MAX_ENTRIES`].
    pub(crate) fn merged(&self, kind: u64, session: &[(Id, Id, u64)], gone: &HashSet<Id>, now: u64) -> Manifest {
        // The session's kind first, then the others still kept, most recent first.
        let keep_since = now.saturating_sub(KEEP_SECS);
        let mut others: Vec<(usize, Kind)> =
            self.kinds.iter().copied().enumerate().filter(|(_, k)| k.id != kind && k.used >= keep_since).collect();
        others.sort_by_key(|(_, k)| std::cmp::Reverse(k.used));
        others.truncate(MAX_KINDS - 1);
        let mut kinds = vec![Kind { id: kind, used: now }];
        // Old bit → new bit; the session's own old bit maps to nothing (its set is replaced).
        let mut remap = [0u32; 32];
        for (new, (old, k)) in others.into_iter().enumerate() {
            remap[old] = 1 << (new + 1);
            kinds.push(k);
        }
        let remapped = |mask: u32| (0..32).filter(|b| mask & (1 << b) != 0).fold(0, |m, b| m | remap[b]);
        let old: HashMap<Id, &ManifestEntry> = self.entries.iter().map(|e| (e.action, e)).collect();
        let mut seen = HashSet::with_capacity(session.len() + self.entries.len());
        let fresh = session.iter().map(|&(action, output, size)| {
            let others = old.get(&action).map_or(0, |e| remapped(e.kinds));
            ManifestEntry { action, output, size, kinds: 1 | others }
        });
        let rest = self.entries.iter().map(|e| ManifestEntry { kinds: remapped(e.kinds), ..*e });
        let entries = fresh
            .chain(rest)
            .filter(|e| e.kinds != 0 && !gone.contains(&e.action) && seen.insert(e.action))
            .take(MAX_ENTRIES)
            .collect();
        Manifest { kinds, entries }
    }

    /// Whether `merged` (from this manifest) is worth writing at `now`: a kind's set
    /// changed, or this one has not been refreshed for [`REFRESH_SECS`].
    pub(crate) fn needs_write(&self, merged: &Manifest, now: u64) -> bool {
        self.sets() != merged.sets() || now.saturating_sub(self.newest()) >= REFRESH_SECS
    }

    /// Each kind's set, as its size and an order-independent digest of its entries.
    fn sets(&self) -> HashMap<u64, (usize, u64)> {
        let mut sets: HashMap<u64, (usize, u64)> = self.kinds.iter().map(|k| (k.id, (0, 0))).collect();
        for e in &self.entries {
            let digest = e
                .action
                .0
                .iter()
                .chain(&e.output.0)
                .fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
            for (i, k) in self.kinds.iter().enumerate() {
                if e.kinds & (1 << i) != 0 {
                    if let Some((n, sum)) = sets.get_mut(&k.id) {
                        *n += 1;
                        *sum = sum.wrapping_add(digest);
                    }
                }
            }
        }
        sets
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u8, kinds: u32) -> ManifestEntry {
        ManifestEntry { action: Id([n; 32]), output: Id([n ^ 0xff; 32]), size: u64::from(n) * 100, kinds }
    }

    fn used(ns: &[u8]) -> Vec<(Id, Id, u64)> {
        ns.iter().map(|&n| (Id([n; 32]), Id([n ^ 0xff; 32]), u64::from(n) * 100)).collect()
    }

    fn actions<'a>(entries: impl Iterator<Item = &'a ManifestEntry>) -> Vec<u8> {
        entries.map(|e| e.action.0[0]).collect()
    }

    #[test]
    fn round_trip_and_damage() {
        let m = Manifest {
            kinds: vec![Kind { id: 7, used: 20 }, Kind { id: 9, used: 10 }],
            entries: vec![entry(1, 1), entry(2, 3)],
        };
        let bytes = m.to_bytes();
        assert_eq!(bytes.len(), MAGIC.len() + 4 + 2 * KIND_LEN + 4 + 2 * ENTRY_LEN);
        assert_eq!(Manifest::parse(&bytes).unwrap(), m);
        assert!(Manifest::parse(&bytes[..bytes.len() - 1]).is_err());
        assert!(Manifest::parse(b"").is_err());
        assert!(Manifest::parse(b"<Error>").is_err());
        assert!(Manifest::parse(b"gocacheprog-s3 manifest v1\n\0\0\0\0").is_err(), "the old format");
        let mut huge = MAGIC.to_vec();
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(Manifest::parse(&huge).is_err());
        for cut in 0..bytes.len() {
            let _ = Manifest::parse(&bytes[..cut]);
        }
    }

    #[test]
    fn a_newer_session_of_a_kind_replaces_its_set() {
        let (build, test) = (kind_id("build . ./..."), kind_id("test . ./..."));
        let now = 1_000_000;
        // Commit 1: a build uses 1 2 3, a test 1 2 3 4.
        let m = Manifest::default().merged(build, &used(&[1, 2, 3]), &HashSet::new(), now);
        let m = m.merged(test, &used(&[1, 2, 3, 4]), &HashSet::new(), now + 10);
        assert_eq!(m.kinds.iter().map(|k| k.id).collect::<Vec<_>>(), vec![test, build]);
        assert_eq!(actions(m.for_kind(build)), vec![1, 2, 3]);
        assert_eq!(actions(m.for_kind(test)), vec![1, 2, 3, 4]);
        // Commit 2 changed 3 (now 5): the build's set follows, the test's stays until it runs.
        let m = m.merged(build, &used(&[1, 2, 5]), &HashSet::new(), now + 100);
        assert_eq!(actions(m.for_kind(build)), vec![1, 2, 5]);
        assert_eq!(actions(m.for_kind(test)), vec![1, 2, 3, 4]);
        let m = m.merged(test, &used(&[1, 2, 5, 6]), &HashSet::new(), now + 110);
        assert_eq!(actions(m.for_kind(test)), vec![1, 2, 5, 6]);
        // 3 and 4 are used by no kind any more: gone from the manifest.
        assert_eq!(actions(m.entries.iter()), vec![1, 2, 5, 6]);
        // Fifty commits later the manifest still holds one commit's sets.
        let mut m = m;
        for c in 0..50u8 {
            m = m.merged(build, &used(&[1, 100 + c]), &HashSet::new(), now + 200 + u64::from(c));
            m = m.merged(test, &used(&[1, 100 + c, 200]), &HashSet::new(), now + 200 + u64::from(c));
        }
        assert_eq!(actions(m.entries.iter()), vec![1, 149, 200]);
        // A kind the manifest does not know gets the most recent kind's set.
        assert_eq!(actions(m.for_kind(kind_id("vet . ./..."))), vec![1, 149, 200]);
        assert_eq!(Manifest::default().for_kind(build).count(), 0);
    }

    #[test]
    fn merge_drops_what_the_bucket_lacks_and_old_kinds() {
        let now = 1_000_000;
        let old = Manifest {
            kinds: vec![Kind { id: 1, used: now - 100 }, Kind { id: 2, used: now - KEEP_SECS - 1 }],
            entries: vec![entry(1, 1), entry(2, 2), entry(3, 3)],
        };
        let session = [(Id([3; 32]), Id([33; 32]), 5), (Id([4; 32]), Id([44; 32]), 6), (Id([4; 32]), Id([44; 32]), 6)];
        let gone: HashSet<Id> = [Id([1; 32])].into();
        let merged = old.merged(9, &session, &gone, now);
        // 3 (with its new output, still kind 1's) and 4 from the session; 1 gone, 2 only of
        // a kind unused for too long.
        assert_eq!(actions(merged.entries.iter()), vec![3, 4]);
        assert_eq!(merged.kinds, vec![Kind { id: 9, used: now }, Kind { id: 1, used: now - 100 }]);
        assert_eq!(merged.entries[0], ManifestEntry { action: Id([3; 32]), output: Id([33; 32]), size: 5, kinds: 3 });
        assert_eq!(merged.entries[1].kinds, 1);
        assert!(old.needs_write(&merged, now));
        assert!(!merged.needs_write(&merged.clone(), now + 10), "nothing new, recently refreshed");
        assert!(merged.needs_write(&merged.clone(), now + REFRESH_SECS), "refresh");
        // The same set in another order, by the same kind: nothing to write.
        let again = merged.merged(9, &[session[1], session[0]], &HashSet::new(), now + 20);
        assert!(!merged.needs_write(&again, now + 20));
        // The same set by another kind: a kind's set changed.
        assert!(merged.needs_write(&merged.merged(5, &session, &HashSet::new(), now + 20), now + 20));

        let distinct: Vec<(Id, Id, u64)> = (0..MAX_ENTRIES + 10)
            .map(|i| {
                let mut a = [0u8; 32];
                a[..8].copy_from_slice(&(i as u64).to_le_bytes());
                (Id(a), Id([0; 32]), i as u64)
            })
            .collect();
        assert_eq!(Manifest::default().merged(1, &distinct, &HashSet::new(), now).entries.len(), MAX_ENTRIES);
    }

    #[test]
    fn kinds_are_bounded_least_recent_first_out() {
        let mut m = Manifest::default();
        for k in 0..(MAX_KINDS as u64 + 5) {
            m = m.merged(k, &used(&[k as u8]), &HashSet::new(), 1_000 + k);
        }
        assert_eq!(m.kinds.len(), MAX_KINDS);
        assert_eq!(m.kinds[0].id, MAX_KINDS as u64 + 4);
        assert_eq!(m.kinds.last().map(|k| k.id), Some(5), "0 to 4 went first");
        assert_eq!(actions(m.for_kind(5)), vec![5]);
        assert_eq!(m.entries.len(), MAX_KINDS, "the evicted kinds' entries went with them");
        assert!(m.entries.iter().all(|e| e.kinds.count_ones() == 1));
        assert_eq!(Manifest::parse(&m.to_bytes()).unwrap(), m);
    }

    #[test]
    fn only_current_sets_are_prefetched() {
        let m = Manifest {
            kinds: vec![Kind { id: 1, used: 100_000 }, Kind { id: 2, used: 100_000 - PREFETCH_WINDOW_SECS - 1 }],
            entries: vec![entry(1, 1), entry(2, 2), entry(3, 3)],
        };
        assert_eq!(actions(m.for_kind(1)), vec![1, 3]);
        // Kind 2's own set is a day older than the newest: the newest kind's set instead.
        assert_eq!(actions(m.for_kind(2)), vec![1, 3]);
    }

    #[test]
    fn keys_are_safe_names() {
        assert_eq!(
            key_name("github.com/a/b/v2/go1.26.8/linux-amd64"),
            "manifests/v2/github.com/a/b/v2/go1.26.8/linux-amd64"
        );
        assert_eq!(key_name("(no module)/go1.26.8/linux-amd64"), "manifests/v2/_no_module_/go1.26.8/linux-amd64");
        assert_eq!(key_name("../../x//y ü"), "manifests/v2/_/_/x/y__");
    }
}
