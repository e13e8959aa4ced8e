//! How outputs are laid out in the bucket. The original Go program's layout: key
//! `<prefix>/<actionID hex>`, body = the output bytes, metadata
//! `x-amz-meta-outputid: <outputID hex>`; plus `puttime` (unix nanoseconds, so go's
//! test-cache expiry survives the round trip) and `actionid` (so an object copied under
//! another action's key is refused; plain objects without it, written by the original
//! program, stay readable).
//!
//! Compressed outputs live at `<prefix>/<actionID hex>.lz4` (an LZ4 frame of the output
//! bytes, same metadata): a key the original program never reads, so it can never take
//! a compressed body for an output. Both forms are read. Only this program writes `.lz4`
//! keys and it always names the action, so a `.lz4` object without `actionid` is foreign
//! and refused: otherwise another action's consistent (body, output ID) pair placed under
//! an action's key would be served to go as that action's output.

use crate::id::Id;
use crate::local::entry::Entry;
use crate::local::TempFile;
use crate::s3::client::ObjectInfo;
use std::time::SystemTime;

/// The two ways an output can be stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// The output bytes as they are (the original program's form).
    Plain,
    /// An LZ4 frame of the output bytes.
    Lz4,
}

impl Form {
    /// The suffix of the form's keys.
    pub(crate) fn suffix(self) -> &'static str {
        match self {
            Form::Plain => "",
            Form::Lz4 => ".lz4",
        }
    }

    /// The other form.
    pub(crate) fn other(self) -> Form {
        match self {
            Form::Plain => Form::Lz4,
            Form::Lz4 => Form::Plain,
        }
    }
}

/// Where the bucket has an output: the scope (the index of its prefix among the session's,
/// 0 its own, then `--read-prefix` ones in order) and the form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Place {
    pub(crate) scope: usize,
    pub(crate) form: Form,
}

impl Place {
    /// Whether the output is in the session's own scope (the one it writes).
    pub(crate) fn is_own(&self) -> bool {
        self.scope == 0
    }
}

/// Key names under one prefix.
#[derive(Debug, Clone)]
pub struct Layout {
    prefix: String,
}

impl Layout {
    /// `prefix` without slashes at either end (may be empty).
    pub fn new(prefix: &str) -> Layout {
        Layout { prefix: prefix.trim_matches('/').to_string() }
    }

    /// The object key of an action's output in its plain form.
    pub fn key(&self, action: &Id) -> String {
        self.under(&action.hex())
    }

    /// The object key of an action's output in `form`.
    pub fn key_in(&self, action: &Id, form: Form) -> String {
        self.under(&format!("{}{}", action.hex(), form.suffix()))
    }

    /// The action and form of an output key, if `key` is one.
    pub fn parse_key(&self, key: &str) -> Option<(Id, Form)> {
        let name = key.strip_prefix(&self.under(""))?;
        let (hex, form) = match name.strip_suffix(Form::Lz4.suffix()) {
            Some(hex) => (hex, Form::Lz4),
            None => (name, Form::Plain),
        };
        (hex.len() == 64).then(|| Id::from_hex(hex)).flatten().map(|id| (id, form))
    }

    /// `name` under the prefix.
    pub fn under(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}/{name}", self.prefix)
        }
    }
}

/// The user metadata of an uploaded output (names without `x-amz-meta-`).
pub(crate) fn metadata(action: &Id, entry: &Entry) -> [(&'static str, String); 3] {
    [("outputid", entry.output_id.hex()), ("puttime", entry.time_nanos.to_string()), ("actionid", action.hex())]
}

/// What one object of the bucket turned out to be.
#[derive(Debug)]
pub(crate) enum Fetched {
    /// A verified output, in a temporary file of the local tier.
    Hit {
        entry: Entry,
        temp: TempFile,
        /// The object's date (`Last-Modified`): its upload, or its last refresh.
        dated: Option<SystemTime>,
        /// The object's `ETag`: a refresh copies only this version.
        etag: Option<String>,
        /// The object's own user metadata: all a refresh may write back.
        metadata: Vec<(String, String)>,
    },
    /// No such object.
    NotFound,
    /// An object that must not be used, why, and how many bytes of it were downloaded.
    Bad { why: String, bytes: u64 },
}

/// Checks an object's metadata before its body is read: the output ID it names, or why it
/// must not be used. The action it names must be `action`; a `.lz4` object must name one.
pub(crate) fn check_metadata(action: &Id, form: Form, info: &ObjectInfo) -> Result<Id, String> {
    let Some(output_id) = info.meta("outputid").and_then(Id::from_hex) else {
        return Err("no valid x-amz-meta-outputid".into());
    };
    match info.meta("actionid") {
        Some(named) if Id::from_hex(named) != Some(*action) => {
            Err(format!("its x-amz-meta-actionid {named:?} is another action's"))
        }
        None if form == Form::Lz4 => {
            Err("a .lz4 object without x-amz-meta-actionid, which this program always writes: not one of ours".into())
        }
        _ => Ok(output_id),
    }
}

/// Checks a downloaded body against its metadata: only a body whose SHA-256 is its
/// `outputid`, under the key of the action its metadata allows (see [`check_metadata`]),
/// is a hit. `len` is the output's length (decoded, for the compressed form).
pub(crate) fn verify(action: &Id, form: Form, info: &ObjectInfo, digest: Id, len: u64, temp: TempFile) -> Fetched {
    let output_id = match check_metadata(action, form, info) {
        Ok(id) => id,
        Err(why) => return Fetched::Bad { why, bytes: len },
    };
    if let Some(size) = info.size.filter(|&size| size != len) {
        return Fetched::Bad { why: format!("body is {len} bytes, Content-Length said {size}"), bytes: len };
    }
    if digest != output_id {
        return Fetched::Bad { why: format!("body hashes to {digest}, not its outputid {output_id}"), bytes: len };
    }
    let time_nanos = info
        .meta("puttime")
        .and_then(|t| t.trim().parse::<i64>().ok())
        .or_else(|| info.last_modified.map(crate::calendar::unix_nanos))
        .unwrap_or_else(|| crate::calendar::unix_nanos(SystemTime::now()));
    Fetched::Hit {
        entry: Entry { output_id, size: len, time_nanos },
        temp,
        dated: info.last_modified,
        etag: info.etag.clone(),
        metadata: info.metadata.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local::LocalTier;
    use sha2::{Digest, Sha256};

    fn info(meta: &[(&str, String)], size: Option<u64>) -> ObjectInfo {
        ObjectInfo {
            size,
            metadata: meta.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
            last_modified: None,
            etag: None,
        }
    }

    #[test]
    fn keys_and_metadata() {
        let layout = Layout::new("/go-cache/");
        let hex = "ab".repeat(32);
        assert_eq!(layout.key(&Id([0xab; 32])), format!("go-cache/{hex}"));
        assert_eq!(layout.key_in(&Id([0xab; 32]), Form::Lz4), format!("go-cache/{hex}.lz4"));
        assert_eq!(layout.parse_key(&format!("go-cache/{hex}")), Some((Id([0xab; 32]), Form::Plain)));
        assert_eq!(layout.parse_key(&format!("go-cache/{hex}.lz4")), Some((Id([0xab; 32]), Form::Lz4)));
        for other in ["go-cache/manifests/v1/x", "other/{hex}", "go-cache/{hex}0", "go-cache/{hex}.gz"] {
            assert_eq!(layout.parse_key(&other.replace("{hex}", &hex)), None, "{other}");
        }
        assert_eq!(Layout::new("").parse_key(&hex), Some((Id([0xab; 32]), Form::Plain)));
        assert_eq!(Layout::new("").key(&Id([1; 32])), "01".repeat(32));
        let entry = Entry { output_id: Id([2; 32]), size: 3, time_nanos: 44 };
        let meta = metadata(&Id([1; 32]), &entry);
        assert_eq!(meta[0], ("outputid", "02".repeat(32)));
        assert_eq!(meta[1], ("puttime", "44".to_string()));
        assert_eq!(meta[2], ("actionid", "01".repeat(32)));
    }

    #[test]
    fn only_a_body_matching_its_own_action_and_output_is_a_hit() {
        let dir = std::env::temp_dir().join(format!("gocacheprog-layout-test-{}", std::process::id()));
        let local = LocalTier::open(&dir).unwrap();
        let body = b"output bytes";
        let digest = Id(Sha256::digest(body).into());
        let action = Id([7; 32]);
        let good = [("outputid", digest.hex()), ("actionid", action.hex()), ("puttime", "5".into())];
        let len = body.len() as u64;
        let temp = || local.temp_file().unwrap();
        let verify = |form, info: &ObjectInfo, digest, temp| verify(&action, form, info, digest, len, temp);
        match verify(Form::Lz4, &info(&good, Some(len)), digest, temp()) {
            Fetched::Hit { entry, metadata, .. } => {
                assert_eq!((entry.output_id, entry.size, entry.time_nanos), (digest, len, 5));
                assert_eq!(metadata.len(), 3, "the object's own metadata, for a refresh");
            }
            other => panic!("{other:?}"),
        }
        // Written by the original program: plain, no actionid, no puttime, no Content-Length (chunked).
        assert!(matches!(verify(Form::Plain, &info(&good[..1], None), digest, temp()), Fetched::Hit { .. }));
        // The same under a .lz4 key, which only this program writes (always with actionid): foreign.
        match verify(Form::Lz4, &info(&good[..1], None), digest, temp()) {
            Fetched::Bad { why, .. } => assert!(why.contains("without x-amz-meta-actionid"), "{why}"),
            other => panic!("{other:?}"),
        }
        // Another action's consistent (body, outputid) pair, in either form.
        let other = [("outputid", digest.hex()), ("actionid", Id([8; 32]).hex())];
        for form in [Form::Plain, Form::Lz4] {
            assert!(matches!(verify(form, &info(&other, Some(len)), digest, temp()), Fetched::Bad { .. }));
        }
        assert!(matches!(verify(Form::Lz4, &info(&good, Some(len + 1)), digest, temp()), Fetched::Bad { .. }));
        assert!(matches!(verify(Form::Lz4, &info(&good, Some(len)), Id([0; 32]), temp()), Fetched::Bad { .. }));
        assert!(matches!(verify(Form::Plain, &info(&[], Some(len)), digest, temp()), Fetched::Bad { .. }));
        let garbage = [("outputid", "zz".into())];
        assert!(matches!(verify(Form::Plain, &info(&garbage, Some(len)), digest, temp()), Fetched::Bad { .. }));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
