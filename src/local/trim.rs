//! Trimming the local tier the way go trims its own GOCACHE: files unused for a while are
//! removed, at most once a day, with the same `trim.txt` so go and this program, sharing a
//! directory, agree on when the last trim was. Optionally the least recently used files
//! beyond a size go too. Use is the file's mtime, which every hit bumps (at most hourly).

use super::MTIME_INTERVAL;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// go trims at most this often (cache.go `trimInterval`).
pub(crate) const TRIM_INTERVAL: Duration = Duration::from_secs(86_400);

/// A file used within the last hour may carry an mtime up to an hour older than that use
/// (mtimes are bumped at most hourly): anything newer than this is never removed.
pub(crate) const PROTECTED: Duration = Duration::from_secs(2 * MTIME_INTERVAL.as_secs());

/// The file recording the last trim: decimal unix seconds, as go writes it.
const TRIM_FILE: &str = "trim.txt";

/// What to remove.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Policy {
    /// Files unused for longer than this go (at least [`PROTECTED`]).
    pub(crate) max_age: Duration,
    /// Then, the least recently used files until the tier is no larger than this.
    pub(crate) max_size: Option<u64>,
}

/// What a trim found and did (or, dry, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Report {
    pub(crate) removed_files: u64,
    pub(crate) removed_bytes: u64,
    pub(crate) kept_files: u64,
    pub(crate) kept_bytes: u64,
    /// Files that could not be removed (another user's, a read-only disk), with the first error.
    pub(crate) failed: u64,
    pub(crate) first_error: Option<String>,
}

/// Whether a trim is due: `trim.txt` is missing, unreadable, or a day old (or from the
/// future beyond go's tolerance, as go reads it).
pub(crate) fn due(dir: &Path, now: SystemTime) -> bool {
    let Some(last) = last_trim(dir) else { return true };
    match now.duration_since(last) {
        Ok(age) => age >= TRIM_INTERVAL,
        Err(ahead) => ahead.duration() >= MTIME_INTERVAL,
    }
}

fn last_trim(dir: &Path) -> Option<SystemTime> {
    let text = fs::read_to_string(dir.join(TRIM_FILE)).ok()?;
    let secs: u64 = text.trim().parse().ok()?;
    UNIX_EPOCH.checked_add(Duration::from_secs(secs))
}

/// Records `now` as the last trim (written whole, then renamed into place, so a reader
/// never sees a partial number). Done before trimming, so concurrent sessions do not all
/// trim the same day.
pub(crate) fn mark(dir: &Path, now: SystemTime) -> io::Result<()> {
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let tmp = dir.join(super::TMP_DIR).join(format!("trim-{}-{:x}", std::process::id(), crate::random::nonce()));
    let mut file = fs::File::create(&tmp)?;
    file.write_all(secs.to_string().as_bytes())?;
    drop(file);
    fs::rename(&tmp, dir.join(TRIM_FILE)).inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })
}

/// One entry or output file.
struct CacheFile {
    path: PathBuf,
    size: u64,
    mtime: SystemTime,
}

/// Every `<xx>/<hex>-a` and `<xx>/<hex>-d` file of the tier (go's names; anything else
/// in the directory, such as go's fuzz cache or `testexpire.txt`, is left alone), and
/// the temporary files in those folders.
fn walk(dir: &Path) -> Vec<CacheFile> {
    walk_with_temps(dir).0
}

fn walk_with_temps(dir: &Path) -> (Vec<CacheFile>, Vec<PathBuf>) {
    let mut files = Vec::new();
    let mut stale_temps = Vec::new();
    for i in 0..=255u8 {
        let Ok(entries) = fs::read_dir(dir.join(format!("{i:02x}"))) else { continue };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(super::TEMP_PREFIX) {
                stale_temps.push(entry.path());
                continue;
            }
            if !(name.ends_with("-a") || name.ends_with("-d")) {
                continue;
            }
            let Ok(meta) = entry.metadata() else { continue };
            if !meta.is_file() {
                continue;
            }
            let mtime = meta.modified().unwrap_or(UNIX_EPOCH);
            files.push(CacheFile { path: entry.path(), size: meta.len(), mtime });
        }
    }
    (files, stale_temps)
}

/// Removes temporary files a killed process left in the `<xx>` folders (a live writer
/// never keeps one for a day).
fn remove_stale_temps(temps: &[PathBuf], now: SystemTime) {
    let cut = now.checked_sub(Duration::from_secs(86_400)).unwrap_or(UNIX_EPOCH);
    for path in temps {
        if fs::metadata(path).and_then(|m| m.modified()).is_ok_and(|m| m < cut) {
            let _ = fs::remove_file(path);
        }
    }
}

/// Trims the tier at `dir` as of `now`; `dry_run` reports what it would remove and
/// removes nothing.
pub(crate) fn trim(dir: &Path, policy: Policy, now: SystemTime, dry_run: bool) -> Report {
    let (mut files, temps) = walk_with_temps(dir);
    if !dry_run {
        remove_stale_temps(&temps, now);
    }
    // Oldest first: the age pass takes a prefix, the size pass goes on from there.
    files.sort_by_key(|f| f.mtime);
    let age_cut = now.checked_sub(policy.max_age.max(PROTECTED)).unwrap_or(UNIX_EPOCH);
    let protect_cut = now.checked_sub(PROTECTED).unwrap_or(UNIX_EPOCH);
    let total: u64 = files.iter().map(|f| f.size).sum();
    let mut report = Report::default();
    let mut remaining = total;
    for file in &files {
        let too_old = file.mtime < age_cut;
        let too_big = policy.max_size.is_some_and(|max| remaining > max) && file.mtime < protect_cut;
        if !(too_old || too_big) {
            report.kept_files += 1;
            report.kept_bytes += file.size;
            continue;
        }
        match remove_if_unused(file, if too_old { age_cut } else { protect_cut }, dry_run) {
            Ok(true) => {
                report.removed_files += 1;
                report.removed_bytes += file.size;
                remaining -= file.size;
            }
            Ok(false) => {
                report.kept_files += 1;
                report.kept_bytes += file.size;
            }
            Err(e) => {
                report.failed += 1;
                report.kept_files += 1;
                report.kept_bytes += file.size;
                report.first_error.get_or_insert_with(|| format!("cannot remove {}: {e}", file.path.display()));
            }
        }
    }
    report
}

/// Removes `file` unless it was used since it was listed (its mtime is no longer before
/// `cut`): a hit in another process between the walk and now keeps it.
fn remove_if_unused(file: &CacheFile, cut: SystemTime, dry_run: bool) -> io::Result<bool> {
    let mtime = match fs::metadata(&file.path) {
        Ok(meta) => meta.modified().unwrap_or(UNIX_EPOCH),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    if mtime >= cut {
        return Ok(false);
    }
    if !dry_run {
        match fs::remove_file(&file.path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// The tier's entry and output files: how many, how many bytes.
pub(crate) fn size(dir: &Path) -> (u64, u64) {
    let files = walk(dir);
    (
        files.iter().filter(|f| f.path.to_string_lossy().ends_with("-a")).count() as u64,
        files.iter().map(|f| f.size).sum(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;

    const DAY: Duration = Duration::from_secs(86_400);

    fn dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("gocacheprog-trim-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join(super::super::TMP_DIR)).unwrap();
        dir
    }

    fn file(dir: &Path, name: &str, size: usize, age: Duration, now: SystemTime) -> PathBuf {
        let sub = dir.join(&name[..2]);
        fs::create_dir_all(&sub).unwrap();
        let path = sub.join(name);
        fs::write(&path, vec![b'x'; size]).unwrap();
        File::options().write(true).open(&path).unwrap().set_modified(now - age).unwrap();
        path
    }

    #[test]
    fn old_files_go_recent_ones_and_foreign_files_stay() {
        let d = dir("age");
        let now = SystemTime::now();
        let old_a = file(&d, "aa01-a", 10, 6 * DAY, now);
        let old_d = file(&d, "bb02-d", 100, 6 * DAY, now);
        let fresh = file(&d, "cc03-d", 1000, 4 * DAY, now);
        let foreign = file(&d, "dd04.txt", 5, 30 * DAY, now);
        let dead_temp = file(&d, "ee.tmp-1-2-3", 5, 2 * DAY, now);
        fs::rename(&dead_temp, d.join("ee").join(".tmp-1-2-3")).unwrap();
        let dead_temp = d.join("ee").join(".tmp-1-2-3");
        let live_temp = d.join("ee").join(".tmp-4-5-6");
        fs::write(&live_temp, "being written").unwrap();
        let policy = Policy { max_age: 5 * DAY, max_size: None };

        let dry = trim(&d, policy, now, true);
        assert_eq!((dry.removed_files, dry.removed_bytes, dry.kept_files, dry.kept_bytes), (2, 110, 1, 1000));
        assert!(old_a.exists() && old_d.exists(), "a dry run removes nothing");

        let report = trim(&d, policy, now, false);
        assert_eq!(report, dry);
        assert!(!old_a.exists() && !old_d.exists());
        assert!(fresh.exists() && foreign.exists());
        assert!(!dead_temp.exists() && live_temp.exists(), "a day-old temporary file goes, a live one stays");
        assert_eq!(size(&d), (0, 1000));
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn beyond_the_size_the_least_recently_used_go_but_never_the_last_hours() {
        let d = dir("size");
        let now = SystemTime::now();
        let oldest = file(&d, "aa01-d", 100, 3 * DAY, now);
        let older = file(&d, "aa02-d", 100, 2 * DAY, now);
        let newer = file(&d, "aa03-d", 100, DAY, now);
        let hot = file(&d, "aa04-d", 500, Duration::from_secs(1800), now);
        let report = trim(&d, Policy { max_age: 5 * DAY, max_size: Some(250) }, now, false);
        // 800 bytes: the three old files go (oldest first), the hot one stays though the
        // tier is still over its size.
        assert_eq!((report.removed_files, report.kept_bytes), (3, 500));
        assert!(!oldest.exists() && !older.exists() && !newer.exists() && hot.exists());

        let d2 = dir("size2");
        let a = file(&d2, "aa01-d", 100, 3 * DAY, now);
        let b = file(&d2, "aa02-d", 100, 2 * DAY, now);
        let report = trim(&d2, Policy { max_age: 5 * DAY, max_size: Some(150) }, now, false);
        assert_eq!(report.removed_files, 1);
        assert!(!a.exists() && b.exists(), "stops once under the size");
        fs::remove_dir_all(d).unwrap();
        fs::remove_dir_all(d2).unwrap();
    }

    #[test]
    fn a_file_used_after_the_walk_is_kept_and_a_short_age_still_spares_the_last_hours() {
        let d = dir("race");
        let now = SystemTime::now();
        let path = file(&d, "aa01-a", 1, 10 * DAY, now);
        let listed = CacheFile { path: path.clone(), size: 1, mtime: now - 10 * DAY };
        File::options().write(true).open(&path).unwrap().set_modified(now).unwrap();
        assert!(!remove_if_unused(&listed, now - DAY, false).unwrap());
        assert!(path.exists());
        let recent = file(&d, "aa02-a", 1, Duration::from_secs(3000), now);
        let report = trim(&d, Policy { max_age: Duration::from_secs(60), max_size: None }, now, false);
        assert_eq!(report.removed_files, 0);
        assert!(recent.exists());
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn trim_txt_is_go_s_and_says_when_the_next_is_due() {
        let d = dir("due");
        let now = SystemTime::now();
        assert!(due(&d, now), "never trimmed");
        mark(&d, now).unwrap();
        let text = fs::read_to_string(d.join(TRIM_FILE)).unwrap();
        assert_eq!(text, now.duration_since(UNIX_EPOCH).unwrap().as_secs().to_string());
        assert!(!due(&d, now + Duration::from_secs(3600)));
        assert!(due(&d, now + DAY + Duration::from_secs(1)));
        assert!(due(&d, now - 2 * MTIME_INTERVAL), "a trim.txt from the future is not trusted");
        fs::write(d.join(TRIM_FILE), "garbage").unwrap();
        assert!(due(&d, now));
        fs::remove_dir_all(d).unwrap();
    }
}
