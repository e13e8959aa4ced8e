//! `stamp [DIR]`: gives every file and folder under DIR a modification time made from its
//! contents, so that go's test cache, which keys a test's result on the size, mode and
//! mtime of every file it opened or stat'ed (and on the names and the same facts of every
//! entry of a folder it listed), finds the same key on every fresh checkout of the same
//! code, and a different key whenever something a test looked at changed.
//!
//! - A file's mtime comes from a hash of its bytes: a changed file, whatever its size,
//!   gets another mtime (two contents share one with probability 2^-59).
//! - A folder's comes from its sorted entry names and their kinds (file, folder, link):
//!   adding, removing or renaming an entry changes it, as it changes a real folder's
//!   mtime; a file changing inside does not (nor does it on a real file system).
//! - Every mtime lies between 2000-01-01 and 2017-01-08 UTC, with nanoseconds: far older
//!   than go's 2-second cut-off (cmd/go's `hashOpen` and module index refuse files
//!   modified in the last 2 s), and never in the future.
//! - `.git` (a folder, or a worktree's file) is left alone and not entered. Symbolic links
//!   are not followed, and keep their own times: std cannot set a link's own times
//!   (`lutimes`), and following one could stamp a file outside DIR. go follows a link it
//!   opens, so a link to a file under DIR reads the target's stamped time; a folder that
//!   holds links changes its key on each checkout (a test rerun, never a wrong reuse).

use crate::cli::Config;
use sha2::{Digest, Sha256};
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The earliest stamp: 2000-01-01T00:00:00Z.
const BASE: Duration = Duration::from_secs(946_684_800);

/// Stamps spread over 2^29 seconds (17 years) in nanoseconds: about 2^59 values.
const SPAN_NANOS: u64 = (1 << 29) * 1_000_000_000;

/// Bumped if the mapping from contents to times ever changes (all checkouts must agree).
const DOMAIN: &[u8] = b"gocacheprog-s3 stamp v1\n";

/// The name go's tools and this command never touch.
const SKIPPED: &str = ".git";

/// How many errors are spelled out; the rest are counted.
const ERRORS_SHOWN: usize = 5;

/// Stamps DIR (the current directory by default) and says what it did.
pub fn run(config: &Config) -> ExitCode {
    let dir = config.paths.first().cloned().unwrap_or_else(|| PathBuf::from("."));
    if !fs::metadata(&dir).is_ok_and(|m| m.is_dir()) {
        log!(
            0,
            "stamp: {} is not a directory; give the checkout's directory (default: the current one)",
            dir.display()
        );
        return ExitCode::from(2);
    }
    let started = Instant::now();
    let report = stamp(&dir);
    let mut line = format!(
        "stamped {} files and {} folders under {} in {:.2}s",
        report.files,
        report.folders,
        dir.display(),
        started.elapsed().as_secs_f64()
    );
    if report.left_alone > 0 {
        line.push_str(&format!("; {} symbolic links and special files left as they are", report.left_alone));
    }
    super::print(&format!("{line}\n"));
    if report.errors.is_empty() {
        return ExitCode::SUCCESS;
    }
    for (path, e) in report.errors.iter().take(ERRORS_SHOWN) {
        log!(0, "stamp: {}: {e}", path.display());
    }
    if report.errors.len() > ERRORS_SHOWN {
        log!(0, "stamp: and {} more errors", report.errors.len() - ERRORS_SHOWN);
    }
    log!(
        0,
        "stamp: {} paths keep their old times; tests reading them rerun (never a wrong reuse)",
        report.errors.len()
    );
    ExitCode::FAILURE
}

/// What [`stamp`] did.
#[derive(Debug, Default)]
pub(crate) struct Report {
    pub(crate) files: usize,
    pub(crate) folders: usize,
    /// Symbolic links, sockets, pipes, devices.
    pub(crate) left_alone: usize,
    /// Paths that could not be read or stamped, and why.
    pub(crate) errors: Vec<(PathBuf, io::Error)>,
}

/// The time a file or folder whose hash is `digest` gets.
pub(crate) fn time_for(digest: &[u8; 32]) -> SystemTime {
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    UNIX_EPOCH + BASE + Duration::from_nanos(u64::from_be_bytes(first) % SPAN_NANOS)
}

/// The hash of a file's bytes, read from `file`.
fn file_digest(file: &mut File, buf: &mut [u8]) -> io::Result<[u8; 32]> {
    let mut h = Sha256::new();
    h.update(DOMAIN);
    h.update(b"file\n");
    loop {
        match file.read(buf) {
            Ok(0) => break,
            Ok(n) => h.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(h.finalize().into())
}

/// The kind of an entry, as a folder's hash records it.
fn kind(t: &fs::FileType) -> u8 {
    if t.is_dir() {
        b'd'
    } else if t.is_file() {
        b'f'
    } else if t.is_symlink() {
        b'l'
    } else {
        b'o'
    }
}

/// The hash of a folder: its entries' kinds and names, sorted by name.
pub(crate) fn folder_digest(entries: &mut [(Vec<u8>, u8)]) -> [u8; 32] {
    entries.sort();
    let mut h = Sha256::new();
    h.update(DOMAIN);
    h.update(b"folder\n");
    for (name, kind) in entries.iter() {
        h.update([*kind]);
        h.update((name.len() as u64).to_le_bytes());
        h.update(name);
    }
    h.finalize().into()
}

/// Stamps every file and folder under `root` (and `root`), files on several threads.
pub(crate) fn stamp(root: &Path) -> Report {
    let mut report = Report::default();
    let mut files: Vec<PathBuf> = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) => {
                report.errors.push((dir, e));
                continue;
            }
        };
        let mut names = Vec::new();
        let mut complete = true;
        for entry in entries {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    report.errors.push((dir.clone(), e));
                    complete = false;
                    continue;
                }
            };
            let Ok(file_type) = entry.file_type() else {
                complete = false;
                continue;
            };
            let name = entry.file_name();
            names.push((name.as_encoded_bytes().to_vec(), kind(&file_type)));
            if name == SKIPPED {
                continue;
            }
            if file_type.is_dir() {
                stack.push(entry.path());
            } else if file_type.is_file() {
                files.push(entry.path());
            } else {
                report.left_alone += 1;
            }
        }
        // A folder whose listing failed part way keeps its time: a wrong stamp could name a
        // listing it does not have.
        if complete {
            match set_time(&dir, true, time_for(&folder_digest(&mut names))) {
                Ok(()) => report.folders += 1,
                Err(e) => report.errors.push((dir, e)),
            }
        }
    }
    let next = AtomicUsize::new(0);
    let stamped = AtomicUsize::new(0);
    let errors = Mutex::new(Vec::new());
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, 8).min(files.len().max(1));
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                let mut buf = vec![0u8; 256 * 1024];
                while let Some(path) = files.get(next.fetch_add(1, Ordering::Relaxed)) {
                    match stamp_file(path, &mut buf) {
                        Ok(()) => {
                            stamped.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => errors.lock().unwrap_or_else(|p| p.into_inner()).push((path.clone(), e)),
                    }
                }
            });
        }
    });
    report.files = stamped.into_inner();
    report.errors.extend(errors.into_inner().unwrap_or_else(|p| p.into_inner()));
    report
}

/// Hashes a file and sets its mtime, through one handle.
fn stamp_file(path: &Path, buf: &mut [u8]) -> io::Result<()> {
    let mut file = open(path, false)?;
    let digest = file_digest(&mut file, buf)?;
    file.set_modified(time_for(&digest))
}

fn set_time(path: &Path, folder: bool, time: SystemTime) -> io::Result<()> {
    open(path, folder)?.set_modified(time)
}

/// Opens a file or folder to read it and set its times: a read-only handle is enough on
/// Unix (the owner may set times); Windows needs the right to write attributes, and the
/// backup-semantics flag to open a folder.
#[cfg(not(windows))]
fn open(path: &Path, _folder: bool) -> io::Result<File> {
    File::open(path)
}

#[cfg(windows)]
fn open(path: &Path, folder: bool) -> io::Result<File> {
    use std::os::windows::fs::OpenOptionsExt;
    const GENERIC_READ: u32 = 0x8000_0000;
    const FILE_WRITE_ATTRIBUTES: u32 = 0x0100;
    const FILE_FLAG_BACKUP_SEMANTICS: u32 = 0x0200_0000;
    let mut options = File::options();
    options.access_mode(GENERIC_READ | FILE_WRITE_ATTRIBUTES);
    if folder {
        options.custom_flags(FILE_FLAG_BACKUP_SEMANTICS);
    }
    options.open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(label: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("gocacheprog-stamp-{label}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn mtime(path: &Path) -> SystemTime {
        fs::symlink_metadata(path).unwrap().modified().unwrap()
    }

    #[test]
    fn times_lie_in_the_past_and_spread_over_the_whole_range() {
        let earliest = UNIX_EPOCH + BASE;
        let latest = earliest + Duration::from_secs(1 << 29);
        assert!(latest < UNIX_EPOCH + Duration::from_secs(1_500_000_000), "before 2018");
        assert_eq!(time_for(&[0; 32]), earliest);
        assert!(time_for(&[0xff; 32]) < latest);
        let mut seen = std::collections::HashSet::new();
        for n in 0..1000u32 {
            let t = time_for(&Sha256::digest(n.to_le_bytes()).into());
            assert!(t >= earliest && t < latest);
            assert!(seen.insert(t));
        }
    }

    #[test]
    fn the_same_tree_gets_the_same_times_and_each_change_another() {
        let a = temp_dir("a");
        let b = temp_dir("b");
        for root in [&a, &b] {
            fs::create_dir_all(root.join("pkg/testdata/items")).unwrap();
            fs::write(root.join("pkg/testdata/input.txt"), "pass\n").unwrap();
            fs::write(root.join("pkg/testdata/items/one"), "1").unwrap();
            fs::write(root.join("pkg/testdata/items/two"), "2").unwrap();
            fs::create_dir_all(root.join(".git/objects")).unwrap();
            fs::write(root.join(".git/HEAD"), "ref").unwrap();
        }
        let before_git = mtime(&a.join(".git/HEAD"));
        let report = stamp(&a);
        assert_eq!((report.files, report.folders, report.errors.len()), (3, 4, 0), "{report:?}");
        stamp(&b);
        for p in ["", "pkg", "pkg/testdata", "pkg/testdata/input.txt", "pkg/testdata/items", "pkg/testdata/items/one"] {
            assert_eq!(mtime(&a.join(p)), mtime(&b.join(p)), "{p}");
            assert!(mtime(&a.join(p)) < UNIX_EPOCH + Duration::from_secs(1_500_000_000), "{p}");
        }
        assert_eq!(mtime(&a.join(".git/HEAD")), before_git, ".git is left alone");
        // Same size, other bytes: another time.
        fs::write(b.join("pkg/testdata/input.txt"), "FAIL\n").unwrap();
        // An entry added to a folder, and one renamed in another.
        fs::write(b.join("pkg/testdata/items/three"), "3").unwrap();
        stamp(&b);
        assert_ne!(mtime(&a.join("pkg/testdata/input.txt")), mtime(&b.join("pkg/testdata/input.txt")));
        assert_ne!(mtime(&a.join("pkg/testdata/items")), mtime(&b.join("pkg/testdata/items")));
        assert_eq!(mtime(&a.join("pkg/testdata")), mtime(&b.join("pkg/testdata")), "its names did not change");
        fs::remove_file(b.join("pkg/testdata/items/three")).unwrap();
        fs::rename(b.join("pkg/testdata/items/two"), b.join("pkg/testdata/items/deux")).unwrap();
        stamp(&b);
        assert_ne!(mtime(&a.join("pkg/testdata/items")), mtime(&b.join("pkg/testdata/items")));
        fs::rename(b.join("pkg/testdata/items/deux"), b.join("pkg/testdata/items/two")).unwrap();
        stamp(&b);
        assert_eq!(mtime(&a.join("pkg/testdata/items")), mtime(&b.join("pkg/testdata/items")), "back as it was");
        fs::remove_dir_all(a).unwrap();
        fs::remove_dir_all(b).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn links_are_not_followed_and_keep_their_own_times() {
        let root = temp_dir("links");
        let outside = temp_dir("outside");
        fs::write(outside.join("target"), "x").unwrap();
        let before = mtime(&outside.join("target"));
        std::os::unix::fs::symlink(outside.join("target"), root.join("link")).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("dirlink")).unwrap();
        let report = stamp(&root);
        assert_eq!((report.files, report.folders, report.left_alone), (0, 1, 2), "{report:?}");
        assert_eq!(mtime(&outside.join("target")), before, "nothing outside the tree changes");
        fs::remove_dir_all(root).unwrap();
        fs::remove_dir_all(outside).unwrap();
    }
}
