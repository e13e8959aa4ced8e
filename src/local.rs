//! The local disk tier, in go's own GOCACHE layout: `<xx>/<actionID hex>-a` holds an entry
//! line, `<xx>/<outputID hex>-d` the output bytes.
//!
//! Several cache programs and plain `go` processes may share the directory at once, so
//! every file appears under its final name only by `rename` of a complete temporary file,
//! and output files are content-addressed: an existing one is reused, never rewritten.

use crate::entry::{self, Entry};
use crate::id::Id;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

/// go bumps mtimes at most this often; so do we (cache.go `mtimeInterval`).
const MTIME_INTERVAL: Duration = Duration::from_secs(3600);

/// Name of the folder, inside the cache directory, for files being written.
const TMP_DIR: &str = "gocacheprog-tmp";

/// Temporary files older than this were left by a killed process.
const STALE_TEMP: Duration = Duration::from_secs(86_400);

/// A failure of the local disk, naming the file involved.
#[derive(Debug)]
pub struct LocalError {
    pub action: &'static str,
    pub path: PathBuf,
    pub source: io::Error,
}

impl fmt::Display for LocalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot {} {}: {}", self.action, self.path.display(), self.source)
    }
}

impl std::error::Error for LocalError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

fn fail<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> LocalError + 'a {
    move |source| LocalError { action, path: path.to_path_buf(), source }
}

/// A found entry: what go needs for a hit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    pub entry: Entry,
    /// Absolute path of the output file.
    pub path: PathBuf,
}

/// The local tier rooted at one directory.
#[derive(Debug)]
pub struct LocalTier {
    dir: PathBuf,
    tmp: PathBuf,
    counter: AtomicU64,
}

impl LocalTier {
    /// Opens (creating if needed) the cache directory. `dir` must be absolute.
    pub fn open(dir: &Path) -> Result<LocalTier, LocalError> {
        let tmp = dir.join(TMP_DIR);
        fs::create_dir_all(&tmp).map_err(fail("create the cache directory", &tmp))?;
        Ok(LocalTier { dir: dir.to_path_buf(), tmp, counter: AtomicU64::new(0) })
    }

    /// Removes temporary files older than a day: what killed processes left behind
    /// (a live writer never takes that long). Meant for a background thread.
    pub fn sweep_stale_temp_files(&self) -> usize {
        let Ok(entries) = fs::read_dir(&self.tmp) else { return 0 };
        let now = SystemTime::now();
        let mut removed = 0;
        for entry in entries.flatten() {
            let old = entry
                .metadata()
                .ok()
                .and_then(|m| m.modified().ok())
                .is_some_and(|m| now.duration_since(m).is_ok_and(|age| age > STALE_TEMP));
            if old && fs::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
        }
        removed
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn action_path(&self, action: &Id) -> PathBuf {
        let hex = action.hex();
        self.dir.join(&hex[..2]).join(format!("{hex}-a"))
    }

    /// Where the bytes of an output live.
    pub fn output_path(&self, output: &Id) -> PathBuf {
        let hex = output.hex();
        self.dir.join(&hex[..2]).join(format!("{hex}-d"))
    }

    /// Looks an action up. A missing, damaged or inconsistent entry is a miss; only an
    /// I/O failure other than "not found" is an error.
    pub fn get(&self, action: &Id) -> Result<Option<Hit>, LocalError> {
        let action_path = self.action_path(action);
        let mut file = match File::open(&action_path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(fail("open", &action_path)(e)),
        };
        let mut line = [0u8; entry::LINE_LEN + 1];
        let n = read_up_to(&mut file, &mut line).map_err(fail("read", &action_path))?;
        let Ok(entry) = entry::parse(action, &line[..n]) else {
            return Ok(None);
        };
        let path = self.output_path(&entry.output_id);
        let meta = match fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(fail("inspect", &path)(e)),
        };
        if !meta.is_file() || meta.len() != entry.size {
            return Ok(None);
        }
        // Mark both files used, as go does, so go's own trim (and ours) keeps them.
        let now = SystemTime::now();
        if is_stale(file.metadata().ok().and_then(|m| m.modified().ok()), now) {
            let _ = file.set_modified(now);
        }
        if is_stale(meta.modified().ok(), now) {
            let _ = File::open(&path).and_then(|f| f.set_modified(now));
        }
        Ok(Some(Hit { entry, path }))
    }

    /// A new temporary file in the cache directory, removed unless stored.
    pub fn temp_file(&self) -> Result<TempFile, LocalError> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let path = self.tmp.join(format!("{}-{n}", std::process::id()));
        let file =
            File::options().write(true).create_new(true).open(&path).map_err(fail("create temporary file", &path))?;
        Ok(TempFile { path, file: Some(file), stored: false })
    }

    /// Stores a complete output (already verified against `entry`) and its entry; returns
    /// the final output path.
    pub fn store(&self, action: &Id, entry: &Entry, mut body: TempFile) -> Result<PathBuf, LocalError> {
        let out_path = self.output_path(&entry.output_id);
        body.file.take(); // closed before the rename
        let reuse = fs::metadata(&out_path).is_ok_and(|m| m.is_file() && m.len() == entry.size);
        if !reuse {
            rename_into_place(&body.path, &out_path)?;
            body.stored = true;
        }
        drop(body);

        let mut entry_file = self.temp_file()?;
        let line = entry::format(action, entry);
        entry_file.write_all(line.as_bytes()).map_err(fail("write", &entry_file.path))?;
        let action_path = self.action_path(action);
        let tmp_path = entry_file.path.clone();
        entry_file.file.take();
        rename_into_place(&tmp_path, &action_path)?;
        entry_file.stored = true;
        Ok(out_path)
    }
}

fn rename_into_place(from: &Path, to: &Path) -> Result<(), LocalError> {
    match fs::rename(from, to) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            // The <xx> folder does not exist yet (the temp file itself does).
            if let Some(parent) = to.parent() {
                fs::create_dir_all(parent).map_err(fail("create", parent))?;
            }
            fs::rename(from, to).map_err(fail("rename into", to))
        }
        Err(e) => Err(fail("rename into", to)(e)),
    }
}

fn is_stale(mtime: Option<SystemTime>, now: SystemTime) -> bool {
    mtime.is_some_and(|m| now.duration_since(m).is_ok_and(|age| age > MTIME_INTERVAL))
}

fn read_up_to(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// A file being written in the cache's temporary folder; deleted on drop unless stored.
#[derive(Debug)]
pub struct TempFile {
    path: PathBuf,
    file: Option<File>,
    stored: bool,
}

impl TempFile {
    /// The temporary path (for error messages).
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Write for TempFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.file {
            Some(f) => f.write(buf),
            None => Err(io::Error::other("temporary file already closed")),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.file {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        self.file.take();
        if !self.stored {
            let _ = fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    fn tier() -> (LocalTier, PathBuf) {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("gocacheprog-local-test-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        (LocalTier::open(&dir).unwrap(), dir)
    }
    static COUNTER: AtomicU64 = AtomicU64::new(0);

    fn put(tier: &LocalTier, action: &Id, body: &[u8], time_nanos: i64) -> (Entry, PathBuf) {
        let entry = Entry { output_id: Id(Sha256::digest(body).into()), size: body.len() as u64, time_nanos };
        let mut tmp = tier.temp_file().unwrap();
        tmp.write_all(body).unwrap();
        let path = tier.store(action, &entry, tmp).unwrap();
        (entry, path)
    }

    #[test]
    fn put_then_get_returns_the_bytes() {
        let (tier, dir) = tier();
        let action = Id([7; 32]);
        assert_eq!(tier.get(&action).unwrap(), None);
        let (entry, path) = put(&tier, &action, b"hello", 42);
        assert!(path.is_absolute());
        assert!(path.extension().is_none());
        assert_eq!(fs::read(&path).unwrap(), b"hello");
        let hit = tier.get(&action).unwrap().unwrap();
        assert_eq!(hit, Hit { entry, path });
        // Nothing left behind in the temporary folder.
        assert_eq!(fs::read_dir(dir.join(TMP_DIR)).unwrap().count(), 0);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn empty_outputs_are_stored() {
        let (tier, dir) = tier();
        let action = Id([1; 32]);
        let (entry, path) = put(&tier, &action, b"", 1);
        assert_eq!(entry.size, 0);
        assert_eq!(fs::metadata(&path).unwrap().len(), 0);
        assert!(tier.get(&action).unwrap().is_some());
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn existing_outputs_are_reused_not_rewritten() {
        let (tier, dir) = tier();
        let (_, path) = put(&tier, &Id([2; 32]), b"same bytes", 1);
        let inode_before = std::os::unix::fs::MetadataExt::ino(&fs::metadata(&path).unwrap());
        let (_, path2) = put(&tier, &Id([3; 32]), b"same bytes", 2);
        assert_eq!(path, path2);
        let inode_after = std::os::unix::fs::MetadataExt::ino(&fs::metadata(&path).unwrap());
        assert_eq!(inode_before, inode_after);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn damaged_or_inconsistent_entries_are_misses() {
        let (tier, dir) = tier();
        let action = Id([4; 32]);
        let (_, path) = put(&tier, &action, b"12345", 1);
        // Body truncated by someone else: size no longer matches.
        fs::write(&path, b"123").unwrap();
        assert_eq!(tier.get(&action).unwrap(), None);
        // Entry file garbage.
        let action2 = Id([5; 32]);
        put(&tier, &action2, b"abc", 1);
        fs::write(tier.action_path(&action2), b"v1 nonsense\n").unwrap();
        assert_eq!(tier.get(&action2).unwrap(), None);
        // Body missing.
        let action3 = Id([6; 32]);
        let (_, p3) = put(&tier, &action3, b"xyz", 1);
        fs::remove_file(p3).unwrap();
        assert_eq!(tier.get(&action3).unwrap(), None);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn stale_mtimes_are_bumped_fresh_ones_left() {
        let (tier, dir) = tier();
        let action = Id([8; 32]);
        let (_, path) = put(&tier, &action, b"old", 1);
        let old = SystemTime::now() - Duration::from_secs(3 * 86_400);
        for p in [&path, &tier.action_path(&action)] {
            File::options().write(true).open(p).unwrap().set_modified(old).unwrap();
        }
        tier.get(&action).unwrap().unwrap();
        for p in [&path, &tier.action_path(&action)] {
            let m = fs::metadata(p).unwrap().modified().unwrap();
            assert!(m > old + Duration::from_secs(86_400), "{} not bumped", p.display());
        }
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn sweep_removes_only_stale_temp_files() {
        let (tier, dir) = tier();
        let fresh = dir.join(TMP_DIR).join("fresh");
        let stale = dir.join(TMP_DIR).join("stale");
        fs::write(&fresh, b"x").unwrap();
        fs::write(&stale, b"x").unwrap();
        let old = SystemTime::now() - Duration::from_secs(2 * 86_400);
        File::options().write(true).open(&stale).unwrap().set_modified(old).unwrap();
        assert_eq!(tier.sweep_stale_temp_files(), 1);
        assert!(fresh.exists() && !stale.exists());
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn dropped_temp_files_are_removed() {
        let (tier, dir) = tier();
        let mut tmp = tier.temp_file().unwrap();
        tmp.write_all(b"partial").unwrap();
        let p = tmp.path().to_path_buf();
        assert!(p.exists());
        drop(tmp);
        assert!(!p.exists());
        fs::remove_dir_all(dir).unwrap();
    }
}
