//! The local disk tier, in go's own GOCACHE layout: `<xx>/<actionID hex>-a` holds an entry
//! line, `<xx>/<outputID hex>-d` the output bytes.
//!
//! Several cache programs and plain `go` processes may share the directory at once, so
//! every file appears under its final name only by `rename` of a complete temporary file,
//! and output files are content-addressed: an existing one is reused, never rewritten.

pub mod entry;
pub mod trim;

use crate::id::Id;
use entry::Entry;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

/// go bumps mtimes at most this often; so do we (cache.go `mtimeInterval`).
const MTIME_INTERVAL: Duration = Duration::from_secs(3600);

/// Files and folders this program creates are its user's alone (go itself creates its own
/// with the umask's permissions; a cache shared between users is not a case go supports).
/// On Windows they inherit the ACL of the folder they are in (the user's profile).
const FILE_MODE: u32 = 0o600;
#[cfg(unix)]
const DIR_MODE: u32 = 0o700;

/// Outputs also carry their owner's execute bit, as go's own cache gives its cached
/// executables theirs (0777 less the umask): a toolchain may run a linked binary from its
/// `DiskPath` (`go test -cachelink`), and the protocol does not say which output is one.
/// Given at creation, so the umask still has the last word.
const OUTPUT_MODE: u32 = 0o700;

/// `fs::create_dir_all` with [`DIR_MODE`] for what it creates.
fn make_dirs(path: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, DIR_MODE);
    builder.create(path)
}

/// Creates `path`, which must not exist yet, for writing; with `mode` less the umask on
/// Unix (on Windows the folder's ACL decides).
fn create_new(path: &Path, mode: u32) -> io::Result<File> {
    let mut options = File::options();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    options.open(path)
}

/// Sets a file's modification time. Windows needs a handle with the right to write
/// attributes (a reader's handle may not change times); Unix only ownership.
fn set_mtime(path: &Path, time: SystemTime) -> io::Result<()> {
    let mut options = File::options();
    #[cfg(windows)]
    std::os::windows::fs::OpenOptionsExt::access_mode(&mut options, 0x100); // FILE_WRITE_ATTRIBUTES
    #[cfg(not(windows))]
    options.read(true);
    options.open(path)?.set_modified(time)
}

/// How long a rename over a file waits, in all, for the file to be free: on Windows a
/// file that another process holds open cannot be replaced (go reads entries and outputs
/// through handles that do not share deletion) until that process closes it.
const REPLACE_PATIENCE: Duration = Duration::from_millis(250);

/// Name of the folder, inside the cache directory, for files being written that belong
/// to no `<xx>` folder (compressed uploads).
const TMP_DIR: &str = "gocacheprog-tmp";

/// How temporary files in the `<xx>` folders start (see [`LocalTier::temp_file_near`]).
pub(crate) const TEMP_PREFIX: &str = ".tmp-";

/// How the temporary files of downloads start (a `TEMP_PREFIX` too): what a store sent,
/// told apart on disk from what go put.
pub const DOWNLOAD_PREFIX: &str = ".tmp-get-";

/// Temporary files older than this were left by a killed process.
const STALE_TEMP: Duration = Duration::from_secs(86_400);

/// A failure of the local disk, naming the file involved.
#[derive(Debug)]
pub(crate) struct LocalError {
    pub(crate) action: &'static str,
    pub(crate) path: PathBuf,
    pub(crate) source: io::Error,
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
pub(crate) struct Hit {
    pub(crate) entry: Entry,
    /// Absolute path of the output file.
    pub(crate) path: PathBuf,
}

/// The local tier rooted at one directory.
#[derive(Debug)]
pub(crate) struct LocalTier {
    dir: PathBuf,
    tmp: PathBuf,
    /// Distinguishes this process's temporary names from those of a dead process that had
    /// the same PID (containers start at PID 1 every run).
    nonce: u64,
    counter: AtomicU64,
}

impl LocalTier {
    /// Opens (creating if needed) the cache directory. `dir` must be absolute.
    pub(crate) fn open(dir: &Path) -> Result<LocalTier, LocalError> {
        let tmp = dir.join(TMP_DIR);
        make_dirs(&tmp).map_err(fail("create the cache directory", &tmp))?;
        Ok(LocalTier { dir: dir.to_path_buf(), tmp, nonce: crate::random::nonce(), counter: AtomicU64::new(0) })
    }

    /// Removes temporary files older than a day: what killed processes left behind
    /// (a live writer never takes that long). Meant for a background thread.
    pub(crate) fn sweep_stale_temp_files(&self) -> usize {
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

    /// Trims the tier if no trim (ours or go's) ran in the last day; the day's trim is
    /// claimed in `trim.txt` first, so concurrent sessions do not repeat it.
    pub(crate) fn trim_if_due(&self, policy: trim::Policy) -> Option<trim::Report> {
        let now = SystemTime::now();
        if !trim::due(&self.dir, now) {
            return None;
        }
        if let Err(e) = trim::mark(&self.dir, now) {
            log!(1, "not trimming the local tier: cannot write {}: {e}", self.dir.join("trim.txt").display());
            return None;
        }
        let report = trim::trim(&self.dir, policy, now, false);
        log!(
            2,
            "trimmed the local tier: removed {} files ({} bytes), kept {} ({} bytes)",
            report.removed_files,
            report.removed_bytes,
            report.kept_files,
            report.kept_bytes
        );
        if let Some(e) = &report.first_error {
            log!(1, "trimming the local tier: {} files could not be removed; the first: {e}", report.failed);
        }
        Some(report)
    }

    /// The cache directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    fn action_path(&self, action: &Id) -> PathBuf {
        let hex = action.hex();
        self.dir.join(&hex[..2]).join(format!("{hex}-a"))
    }

    /// Where the bytes of an output live.
    pub(crate) fn output_path(&self, output: &Id) -> PathBuf {
        let hex = output.hex();
        self.dir.join(&hex[..2]).join(format!("{hex}-d"))
    }

    /// Looks an action up. A missing, damaged or inconsistent entry is a miss (as in go's
    /// own cache: garbage, a directory in place of a file, a truncated line); only an I/O
    /// failure other than "not found" is an error, and the caller treats it as a miss too.
    pub(crate) fn get(&self, action: &Id) -> Result<Option<Hit>, LocalError> {
        let action_path = self.action_path(action);
        let mut file = match File::open(&action_path) {
            Ok(f) => f,
            // NotADirectory: a file stands where the <xx> folder should be (damage).
            Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory) => return Ok(None),
            // A directory where the entry file should be (damage): Windows refuses to open it.
            Err(_) if fs::metadata(&action_path).is_ok_and(|m| m.is_dir()) => return Ok(None),
            Err(e) => return Err(fail("open", &action_path)(e)),
        };
        let mut line = [0u8; entry::LINE_LEN + 1];
        let n = match read_up_to(&mut file, &mut line) {
            Ok(n) => n,
            // A directory where the entry file should be: damaged, so a miss.
            Err(_) if file.metadata().is_ok_and(|m| !m.is_file()) => return Ok(None),
            Err(e) => return Err(fail("read", &action_path)(e)),
        };
        let Ok(entry) = entry::parse(action, &line[..n]) else {
            return Ok(None);
        };
        let path = self.output_path(&entry.output_id);
        let meta = match fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory) => return Ok(None),
            Err(e) => return Err(fail("inspect", &path)(e)),
        };
        if !meta.is_file() || meta.len() != entry.size {
            return Ok(None);
        }
        // Mark both files used, as go does, so go's own trim (and ours) keeps them.
        let now = SystemTime::now();
        if is_stale(file.metadata().ok().and_then(|m| m.modified().ok()), now) {
            let _ = set_mtime(&action_path, now);
        }
        if is_stale(meta.modified().ok(), now) {
            let _ = set_mtime(&path, now);
        }
        Ok(Some(Hit { entry, path }))
    }

    /// A new temporary file in the cache directory, removed unless stored. Names are created
    /// exclusively: a name left behind by a dead process is skipped, never reused.
    pub(crate) fn temp_file(&self) -> Result<TempFile, LocalError> {
        self.create_temp(&self.tmp, "", FILE_MODE)
    }

    /// A new temporary file in the `<xx>` folder of `id` (`.tmp-<pid>-<nonce>-<n>`, a name
    /// neither go nor the trim takes for an entry), for a file that ends up in that folder
    /// or near it. Spreading temporary files over the 256 folders keeps parallel writers
    /// off one directory's lock, and a rename within a folder off the file system's
    /// cross-directory rename lock: with one temporary folder, 64 downloads spent most of
    /// their time waiting on those locks.
    pub(crate) fn temp_file_near(&self, id: &Id) -> Result<TempFile, LocalError> {
        self.create_temp(&self.dir.join(&id.hex()[..2]), TEMP_PREFIX, FILE_MODE)
    }

    /// [`LocalTier::temp_file_near`] for the body of an output go puts (executable by its owner).
    pub(crate) fn output_file_near(&self, id: &Id) -> Result<TempFile, LocalError> {
        self.create_temp(&self.dir.join(&id.hex()[..2]), TEMP_PREFIX, OUTPUT_MODE)
    }

    /// [`LocalTier::output_file_near`] for a download (named [`DOWNLOAD_PREFIX`]...).
    pub(crate) fn download_file_near(&self, id: &Id) -> Result<TempFile, LocalError> {
        self.create_temp(&self.dir.join(&id.hex()[..2]), DOWNLOAD_PREFIX, OUTPUT_MODE)
    }

    /// `<folder>/<prefix><pid>-<nonce>-<n>`, created exclusively; a missing folder (go
    /// clean -cache removed it) or a file in its place (damage) is made right first.
    fn create_temp(&self, folder: &Path, prefix: &str, mode: u32) -> Result<TempFile, LocalError> {
        let mut attempt = 0;
        loop {
            let n = self.counter.fetch_add(1, Ordering::Relaxed);
            let path = folder.join(format!("{prefix}{}-{:x}-{n}", std::process::id(), self.nonce));
            match create_new(&path, mode) {
                Ok(file) => return Ok(TempFile { path, file: Some(file), stored: false }),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 100 => attempt += 1,
                Err(e)
                    if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory) && attempt < 100 =>
                {
                    attempt += 1;
                    make_folder(folder)?;
                }
                Err(e) => return Err(fail("create temporary file", &path)(e)),
            }
        }
    }

    /// Stores a complete output (already verified against `entry`) and its entry; returns
    /// the final output path.
    ///
    /// Where a file cannot be replaced (on Windows, while another process holds it open),
    /// what is already there is kept if it will do: an output of the right size (outputs
    /// are content-addressed, so another writer put the same bytes there), and any entry
    /// of the action (an earlier put's: go's answer names the output stored here, so the
    /// put still succeeds, and a later put replaces the entry).
    pub(crate) fn store(&self, action: &Id, entry: &Entry, mut body: TempFile) -> Result<PathBuf, LocalError> {
        let out_path = self.output_path(&entry.output_id);
        body.file.take(); // closed before the rename
        let in_place = |path: &Path| fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() == entry.size);
        if !in_place(&out_path) {
            let placed = if body.path.parent() == out_path.parent() {
                rename_patiently(&body.path, &out_path).inspect(|()| body.stored = true)
            } else {
                // Another folder: a hard link takes only the target folder's lock (a rename
                // across folders takes the file system's); the temporary name goes on drop.
                link_into_place(&body.path, &out_path)
            };
            match placed {
                Err(e) if !in_place(&out_path) => return Err(e),
                _ => {}
            }
        }
        drop(body);

        let mut entry_file = self.temp_file_near(action)?;
        let line = entry::format(action, entry);
        entry_file.write_all(line.as_bytes()).map_err(fail("write", &entry_file.path))?;
        let action_path = self.action_path(action);
        let tmp_path = entry_file.path.clone();
        entry_file.file.take();
        match rename_patiently(&tmp_path, &action_path) {
            Ok(()) => entry_file.stored = true,
            Err(e) if fs::metadata(&action_path).is_ok_and(|m| m.is_file()) => {
                log!(1, "{e}; the entry there is kept");
            }
            Err(e) => return Err(e),
        }
        Ok(out_path)
    }
}

/// [`rename_into_place`], tried again for up to [`REPLACE_PATIENCE`] while a file stands
/// at `to` that could not be replaced (see there).
fn rename_patiently(from: &Path, to: &Path) -> Result<(), LocalError> {
    let mut waited = Duration::ZERO;
    let mut pause = Duration::from_millis(1);
    loop {
        match rename_into_place(from, to) {
            Err(_) if waited < REPLACE_PATIENCE && fs::symlink_metadata(to).is_ok_and(|m| m.is_file()) => {
                std::thread::sleep(pause);
                waited += pause;
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            done => return done,
        }
    }
}

/// Puts `from` at `to` as a second name (the caller removes `from`); anything unusual (a
/// name already there, a missing or damaged folder, a file system without hard links) is
/// left to [`rename_into_place`], which replaces and repairs.
fn link_into_place(from: &Path, to: &Path) -> Result<(), LocalError> {
    match fs::hard_link(from, to) {
        Ok(()) => Ok(()),
        Err(_) => rename_patiently(from, to),
    }
}

fn rename_into_place(from: &Path, to: &Path) -> Result<(), LocalError> {
    match fs::rename(from, to) {
        Ok(()) => Ok(()),
        Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory) => {
            // The <xx> folder does not exist yet (the temp file itself does), or something
            // that is not a folder stands in its place (a damaged tier).
            if let Some(parent) = to.parent() {
                make_folder(parent)?;
            }
            fs::rename(from, to).map_err(fail("rename into", to))
        }
        Err(e) if fs::symlink_metadata(to).is_ok_and(|m| m.is_dir()) => {
            // go never makes folders named like entries or outputs: one there is damage.
            fs::remove_dir_all(to).map_err(|_| fail("rename into", to)(e))?;
            fs::rename(from, to).map_err(fail("rename into", to))
        }
        Err(e) => Err(fail("rename into", to)(e)),
    }
}

/// Makes `folder` (a file standing in its place is damage, and goes first).
fn make_folder(folder: &Path) -> Result<(), LocalError> {
    if fs::symlink_metadata(folder).is_ok_and(|m| !m.is_dir()) {
        fs::remove_file(folder).map_err(fail("remove the damaged", folder))?;
    }
    make_dirs(folder).map_err(fail("create", folder))
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

/// Writes through to `inner` while hashing and counting, so a body is read exactly once
/// and its output ID is known when it ends.
pub(crate) struct Hashing<W> {
    inner: W,
    hasher: sha2::Sha256,
    len: u64,
}

impl<W: Write> Hashing<W> {
    /// Wraps `inner`.
    pub(crate) fn new(inner: W) -> Self {
        Hashing { inner, hasher: sha2::Digest::new(), len: 0 }
    }

    /// The writer, the SHA-256 of everything written (an output ID) and its length.
    pub(crate) fn finish(self) -> (W, Id, u64) {
        (self.inner, Id(sha2::Digest::finalize(self.hasher).into()), self.len)
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        sha2::Digest::update(&mut self.hasher, &buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A file being written in the cache's temporary folder; deleted on drop unless stored.
#[derive(Debug)]
pub(crate) struct TempFile {
    path: PathBuf,
    file: Option<File>,
    stored: bool,
}

impl TempFile {
    /// The temporary path (for error messages).
    pub(crate) fn path(&self) -> &Path {
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

    #[cfg(unix)]
    #[test]
    fn what_we_create_is_our_users_alone() {
        use std::os::unix::fs::PermissionsExt;
        let (tier, dir) = tier();
        let body = b"private";
        let entry = Entry { output_id: Id(Sha256::digest(body).into()), size: body.len() as u64, time_nanos: 1 };
        let mut tmp = tier.output_file_near(&entry.output_id).unwrap();
        tmp.write_all(body).unwrap();
        let path = tier.store(&Id([13; 32]), &entry, tmp).unwrap();
        // Outputs carry the owner's execute bit too (a umask that took the owner's bits
        // away would show here; test runners do not have one).
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, OUTPUT_MODE);
        assert_eq!(fs::metadata(tier.action_path(&Id([13; 32]))).unwrap().permissions().mode() & 0o777, FILE_MODE);
        assert_eq!(fs::metadata(path.parent().unwrap()).unwrap().permissions().mode() & 0o777, DIR_MODE);
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
        // A rewrite would give the file a new modification time.
        let marked = SystemTime::now() - Duration::from_secs(60);
        set_mtime(&path, marked).unwrap();
        let (_, path2) = put(&tier, &Id([3; 32]), b"same bytes", 2);
        assert_eq!(path, path2);
        assert_eq!(fs::metadata(&path).unwrap().modified().unwrap(), marked);
        fs::remove_dir_all(dir).unwrap();
    }

    /// Opens a file for reading as go does: on Windows without sharing deletion, so that
    /// while it is open the file cannot be replaced or removed.
    fn open_like_go(path: &Path) -> File {
        let mut options = File::options();
        options.read(true);
        #[cfg(windows)]
        std::os::windows::fs::OpenOptionsExt::share_mode(&mut options, 1 | 2); // FILE_SHARE_READ | FILE_SHARE_WRITE
        options.open(path).unwrap()
    }

    #[test]
    fn files_held_open_by_readers_do_not_fail_puts() {
        let (tier, dir) = tier();
        let action = Id([14; 32]);
        let (first, path) = put(&tier, &action, b"held", 1);
        let held = [open_like_go(&path), open_like_go(&tier.action_path(&action))];
        // The same output again, for another action and for this one.
        assert_eq!(put(&tier, &Id([15; 32]), b"held", 2).1, path);
        put(&tier, &action, b"held", 3);
        // Another output for this action: stored, while its entry stays held.
        let (other, other_path) = put(&tier, &action, b"other", 4);
        assert_eq!(fs::read(&other_path).unwrap(), b"other");
        let hit = tier.get(&action).unwrap().unwrap();
        if cfg!(windows) {
            assert_eq!(hit.entry, first, "the held entry is kept");
        } else {
            assert_eq!(hit.entry, other, "the entry is replaced");
        }
        assert_eq!(fs::read(&hit.path).unwrap(), fs::read(tier.output_path(&hit.entry.output_id)).unwrap());
        // A damaged output (wrong size) held open: on Windows it cannot be replaced, and
        // the put fails after a bounded wait rather than answering with a wrong file.
        let damaged = Id([16; 32]);
        let (_, bad_path) = put(&tier, &damaged, b"to be damaged", 1);
        fs::write(&bad_path, b"short").unwrap();
        let bad_reader = open_like_go(&bad_path);
        let body = b"to be damaged";
        let entry = Entry { output_id: Id(Sha256::digest(body).into()), size: body.len() as u64, time_nanos: 2 };
        let mut tmp = tier.temp_file().unwrap();
        tmp.write_all(body).unwrap();
        let stored = tier.store(&damaged, &entry, tmp);
        assert_eq!(stored.is_err(), cfg!(windows), "{stored:?}");
        drop(bad_reader);
        // Once the readers are gone, puts replace as everywhere.
        drop(held);
        let (newest, _) = put(&tier, &action, b"held", 5);
        assert_eq!(tier.get(&action).unwrap().unwrap().entry, newest);
        assert_eq!(fs::read(&put(&tier, &damaged, body, 3).1).unwrap(), body);
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
    fn temporary_names_left_by_a_dead_process_with_our_pid_are_skipped() {
        let (tier, dir) = tier();
        // What a crashed process with the same PID and the same nonce would have left.
        for n in 0..5 {
            fs::write(dir.join(TMP_DIR).join(format!("{}-{:x}-{n}", std::process::id(), tier.nonce)), b"old").unwrap();
        }
        let (entry, path) = put(&tier, &Id([9; 32]), b"fresh", 1);
        assert_eq!(fs::read(&path).unwrap(), b"fresh");
        assert_eq!(tier.get(&Id([9; 32])).unwrap().unwrap().entry, entry);
        // The temporary folder removed under us (go clean -cache) is made again.
        fs::remove_dir_all(dir.join(TMP_DIR)).unwrap();
        put(&tier, &Id([10; 32]), b"again", 1);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_damaged_tier_gives_misses_and_puts_repair_it() {
        let (tier, dir) = tier();
        let action = Id([11; 32]);
        let body = b"the output";
        // A directory where the entry file should be: a miss, and a put replaces it.
        fs::create_dir_all(tier.action_path(&action).join("inner")).unwrap();
        assert_eq!(tier.get(&action).unwrap(), None);
        put(&tier, &action, body, 1);
        assert!(tier.get(&action).unwrap().is_some());
        // A directory where the output file should be.
        let action2 = Id([12; 32]);
        let body2 = b"second output";
        let out2 = tier.output_path(&Id(Sha256::digest(body2).into()));
        fs::create_dir_all(&out2).unwrap();
        let (_, path) = put(&tier, &action2, body2, 1);
        assert_eq!(fs::read(path).unwrap(), body2);
        // A file where the <xx> folder should be.
        let action3 = Id([0xee; 32]);
        fs::write(dir.join("ee"), b"not a folder").unwrap();
        assert_eq!(tier.get(&action3).unwrap(), None);
        put(&tier, &action3, b"third", 1);
        assert!(tier.get(&action3).unwrap().is_some());
        // Entry files of every damaged shape are misses.
        for bad in [&b""[..], b"v1", &[0xffu8; entry::LINE_LEN], &[b'v'; 4 * entry::LINE_LEN]] {
            fs::write(tier.action_path(&action), bad).unwrap();
            assert_eq!(tier.get(&action).unwrap(), None);
        }
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
