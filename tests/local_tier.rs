//! The local tier under the real go: each test runs the real binary as GOCACHEPROG in its
//! own sandbox (see `common::go`), or drives the binary's stdin directly.

use crate::common;

use common::go::{
    b64, cache_entries, get_req, go_tool, output_path, processes_mentioning, put_req, random_bytes, read_stats,
    run_cacheprog, scratch_dir, sha256, sha256_file, stat, wait_until_gone, Prog, Sandbox,
};
use serde_json::Value;
use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

/// go commands that must not hang finish far below this.
const PROMPT: Duration = Duration::from_secs(60);

fn lib_test_line(stdout: &str) -> &str {
    stdout
        .lines()
        .find(|l| l.contains("example.com/tiny/lib"))
        .unwrap_or_else(|| panic!("no result line for example.com/tiny/lib in:\n{stdout}"))
}

#[test]
fn second_identical_build_compiles_nothing_and_hits_locally() {
    let sb = Sandbox::new("build-twice");
    let args = ["build", "-x", "-o", "bin/tiny", "."];
    let first = sb.go(&args, &[]);
    first.assert_ok();
    let s1 = sb.last_stats();
    assert!(
        !first.compile_lines().is_empty(),
        "a cold build must compile (else the check below proves nothing):\n{}",
        first.stderr
    );
    assert!(stat(&s1, "misses") > 0 && stat(&s1, "puts") > 0, "{s1}");
    assert_eq!(stat(&s1, "put_errors"), 0, "{s1}");

    let second = sb.go(&args, &[]);
    second.assert_ok();
    let s2 = sb.last_stats();
    assert!(second.compile_lines().is_empty(), "second build compiled:\n{}", second.compile_lines().join("\n"));
    assert!(stat(&s2, "gets") > 0, "{s2}");
    assert_eq!(stat(&s2, "gets"), stat(&s2, "local_hits"), "{s2}");
    assert_eq!(stat(&s2, "misses"), 0, "{s2}");
    assert_eq!(stat(&s2, "get_errors"), 0, "{s2}");

    // The binary linked from cached objects works.
    let out = std::process::Command::new(sb.module.join("bin/tiny")).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello, world\n");
}

#[test]
fn test_results_are_cached_until_clean_testcache() {
    let sb = Sandbox::new("testcache");
    let first = sb.go(&["test", "./..."], &[]);
    first.assert_ok();
    let line = lib_test_line(&first.stdout);
    assert!(line.starts_with("ok") && !line.contains("(cached)"), "{line}");

    let second = sb.go(&["test", "./..."], &[]);
    second.assert_ok();
    let line = lib_test_line(&second.stdout);
    assert!(line.starts_with("ok") && line.contains("(cached)"), "second go test should be cached: {line}");

    sb.go(&["clean", "-testcache"], &[]).assert_ok();
    // go expires results whose Time is before the clean; the resolution is the clock's.
    std::thread::sleep(Duration::from_millis(20));
    let third = sb.go(&["test", "./..."], &[]);
    third.assert_ok();
    let line = lib_test_line(&third.stdout);
    assert!(
        line.starts_with("ok") && !line.contains("(cached)"),
        "after go clean -testcache the test must run again: {line}"
    );
}

#[test]
fn list_export_paths_are_content_addressed_files_that_outlive_go() {
    let sb = Sandbox::new("list-export");
    let run = sb.go(&["list", "-export", "-f", "{{.Export}}", "./...", "fmt"], &[]);
    run.assert_ok();
    let paths: Vec<PathBuf> = run.stdout.lines().filter(|l| !l.is_empty()).map(PathBuf::from).collect();
    assert_eq!(paths.len(), 3, "one export file per package:\n{}", run.stdout);
    // go has exited; its cache program too, soon after.
    let left = wait_until_gone(&run.stats_file.as_ref().unwrap().to_string_lossy(), Duration::from_secs(10));
    assert!(left.is_empty(), "{left:?}");
    let entries = sb.entries();
    for path in &paths {
        assert!(path.is_absolute(), "{}", path.display());
        assert!(path.is_file(), "{} gone after go exited", path.display());
        assert_eq!(path.extension(), None, "{}", path.display());
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let hex = name.strip_suffix("-d").unwrap_or(&name);
        let digest = sha256_file(path);
        assert_eq!(hex, digest, "file name of {} is not its SHA-256", path.display());
        let len = fs::metadata(path).unwrap().len();
        let entry = entries
            .iter()
            .find(|e| e.output_hex == digest)
            .unwrap_or_else(|| panic!("no -a entry records output {digest}"));
        assert_eq!(entry.size, len, "{entry:?}");
    }
}

#[test]
fn plain_go_reads_what_the_cache_program_stored() {
    let sb = Sandbox::new("plain-reads");
    sb.go(&["build", "-o", "bin/tiny", "."], &[]).assert_ok();
    let stored = sb.last_stats();
    assert!(stat(&stored, "puts") > 0, "{stored}");
    // A different output path: go must produce the binary again, from the cache alone.
    let plain = sb.go_plain(&["build", "-x", "-o", "bin/plain", "."], &[]);
    plain.assert_ok();
    assert!(
        plain.compile_lines().is_empty(),
        "plain go did not find our entries and compiled:\n{}",
        plain.compile_lines().join("\n")
    );
    let out = std::process::Command::new(sb.module.join("bin/plain")).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello, world\n");
}

#[test]
fn sessions_without_close_end_promptly_and_leave_no_process() {
    let sb = Sandbox::new("no-close");
    for args in [&["list", "./..."][..], &["env"][..], &["mod", "tidy"][..]] {
        let run = sb.go(args, &[]);
        run.assert_ok();
        assert!(run.elapsed < PROMPT, "go {args:?} took {:?}: hang?", run.elapsed);
        let stats_file = run.stats_file.clone().unwrap();
        let needle = stats_file.to_string_lossy().into_owned();
        let left = wait_until_gone(&needle, Duration::from_secs(5));
        assert!(left.is_empty(), "go {args:?} left cache program processes behind: {left:?}");
        // The program did run for this command (else the checks above prove nothing) and
        // ended through its normal exit path.
        let stats = read_stats(&stats_file);
        assert!(stat(&stats, "gets") > 0, "go {args:?}: {stats}");
        assert_eq!(stat(&stats, "put_errors"), 0, "go {args:?}: {stats}");
    }
}

#[test]
fn std_build_shared_with_a_concurrent_go_leaves_a_consistent_cache() {
    let sb = Sandbox::new("std");
    let args = ["build", "-x", "-p", "8", "std"];
    let mut std_build = sb.spawn(&args, &[], Prog::Ours(&[]));
    std::thread::sleep(Duration::from_millis(500));
    assert!(std_build.is_running(), "go build std ended before the second go started: no concurrency tested");
    let vet = sb.go(&["vet", "./..."], &[]);
    vet.assert_ok();
    let vet_stats = sb.last_stats();
    assert!(stat(&vet_stats, "puts") > 0, "{vet_stats}");
    assert_eq!(stat(&vet_stats, "put_errors"), 0, "{vet_stats}");
    let first = std_build.wait();
    first.assert_ok();
    let s1 = read_stats(first.stats_file.as_ref().unwrap());
    assert!(stat(&s1, "puts") > 0, "{s1}");
    assert_eq!(stat(&s1, "put_errors"), 0, "{s1}");
    assert_eq!(stat(&s1, "get_errors"), 0, "{s1}");

    let second = sb.go(&args, &[]);
    second.assert_ok();
    let s2 = sb.last_stats();
    assert!(
        second.compile_lines().is_empty(),
        "second go build std compiled {} packages, e.g.:\n{}",
        second.compile_lines().len(),
        second.compile_lines().iter().take(5).cloned().collect::<Vec<_>>().join("\n")
    );
    assert!(stat(&s2, "gets") > 0, "{s2}");
    assert_eq!(stat(&s2, "gets"), stat(&s2, "local_hits"), "{s2}");
    assert_eq!(stat(&s2, "misses"), 0, "{s2}");

    // Every entry points to an output of the recorded size whose SHA-256 is its name.
    let entries = sb.entries();
    assert!(entries.len() > 300, "only {} entries", entries.len());
    for e in &entries {
        let out = output_path(&sb.gocache, &e.output_hex);
        let meta = fs::metadata(&out)
            .unwrap_or_else(|err| panic!("{}: output {} missing: {err}", e.path.display(), out.display()));
        assert_eq!(meta.len(), e.size, "{e:?}");
        assert_eq!(sha256_file(&out), e.output_hex, "{} is corrupt", out.display());
    }
    // No temporary file left behind by any of the sessions.
    assert_eq!(leftover_temp_files(&sb.gocache), Vec::<PathBuf>::new());
}

#[test]
fn unknown_option_fails_the_go_command_with_our_message() {
    let sb = Sandbox::new("bad-config");
    let prog = format!("{} --frobnicate", common::go::quote_field(&common::go::bin().to_string_lossy()));
    let run = sb.spawn(&["build", "-o", "bin/tiny", "."], &[], Prog::Raw(prog)).wait();
    assert!(!run.status.success(), "go must fail with a broken GOCACHEPROG:\n{}", run.stderr);
    assert!(run.elapsed < PROMPT, "took {:?}", run.elapsed);
    let ours: Vec<&str> = run.stderr.lines().filter(|l| l.starts_with("gocacheprog-s3: ")).collect();
    assert!(
        ours.iter().any(|l| l.contains("configuration error") && l.contains("--frobnicate")),
        "no line of ours names --frobnicate; go's stderr:\n{}",
        run.stderr
    );
    assert!(!sb.module.join("bin/tiny").exists());
}

// ---------------------------------------------------------------------------------------
// The binary driven directly through stdin.

const LIMIT: Duration = Duration::from_secs(60);

fn action(n: u8) -> [u8; 32] {
    sha256(format!("test action {n}").as_bytes())
}

fn by_id(responses: Vec<Value>) -> HashMap<i64, Value> {
    let mut map = HashMap::new();
    for r in responses {
        let id = r["ID"].as_i64().unwrap_or_else(|| panic!("no ID in {r}"));
        assert!(map.insert(id, r.clone()).is_none(), "ID {id} answered twice");
    }
    map
}

fn disk_path(r: &Value) -> PathBuf {
    let p = PathBuf::from(r["DiskPath"].as_str().unwrap_or_else(|| panic!("no DiskPath in {r}")));
    assert!(p.is_absolute(), "{r}");
    assert_eq!(p.extension(), None, "{r}");
    p
}

fn assert_hit(r: &Value, body: &[u8]) {
    assert!(r.get("Miss").is_none() && r.get("Err").is_none(), "{r}");
    assert_eq!(r["OutputID"].as_str(), Some(b64(&sha256(body)).as_str()), "{r}");
    assert_eq!(r.get("Size").map_or(Some(0), Value::as_u64), Some(body.len() as u64), "{r}");
    let time = r["Time"].as_str().unwrap_or_else(|| panic!("no Time in {r}"));
    assert!(
        time.len() >= 20 && time.as_bytes()[4] == b'-' && time.as_bytes()[10] == b'T',
        "Time {time:?} is not RFC 3339"
    );
    assert!(time[..4].parse::<u32>().unwrap() >= 2024, "{time}");
    assert_eq!(fs::read(disk_path(r)).unwrap(), body, "{r}");
}

fn assert_miss(r: &Value) {
    assert_eq!(r["Miss"], Value::Bool(true), "{r}");
    assert!(r.get("DiskPath").is_none() && r.get("OutputID").is_none(), "{r}");
}

fn leftover_temp_files(cache: &Path) -> Vec<PathBuf> {
    let mut left = Vec::new();
    for dir in fs::read_dir(cache).unwrap().flatten() {
        // go's own folders are <xx> (two hex digits) and fuzz; anything else is ours.
        if dir.path().is_dir() && dir.file_name().len() != 2 && dir.file_name() != "fuzz" {
            left.extend(fs::read_dir(dir.path()).unwrap().flatten().map(|f| f.path()));
        }
    }
    left
}

#[test]
fn protocol_edge_cases_over_stdin() {
    let scratch = scratch_dir("edges");
    let cache = scratch.join("cache");
    let stats = scratch.join("stats.json");
    let body1 = b"go index v2\nan ordinary output".to_vec();
    let body3 = random_bytes(100_003, 3);
    let body4 = b"these bytes are not what the OutputID says".to_vec();
    let (a1, a2, a3, a4, a5) = (action(1), action(2), action(3), action(4), action(5));

    let mut stream = String::new();
    stream += &put_req(1, &a1, &sha256(&body1), &body1, "OutputID");
    stream += &put_req(2, &a2, &sha256(b""), b"", "OutputID");
    stream += &put_req(3, &a3, &sha256(&body3), &body3, "ObjectID");
    stream += &put_req(4, &a4, &sha256(b"something else"), &body4, "OutputID");
    stream += &get_req(5, &a1);
    stream += &get_req(6, &a2);
    stream += &get_req(7, &a3);
    stream += &get_req(8, &a4);
    stream += &get_req(9, &a5);
    let garbage_line = stream.matches('\n').count() + 1;
    stream += "{this is not json\n";

    let args = ["--cache-dir", cache.to_str().unwrap(), "--stats-file", stats.to_str().unwrap()];
    let run = run_cacheprog(&args, &[], stream.into_bytes(), LIMIT);
    assert!(!run.status.success(), "garbage input must fail: {}", run.stderr);
    assert!(
        run.stderr.contains(&format!("line {garbage_line}")) && run.stderr.contains("{this is not json"),
        "stderr should name line {garbage_line} and show it:\n{}",
        run.stderr
    );
    let r = by_id(run.responses());
    let mut ids: Vec<i64> = r.keys().copied().collect();
    ids.sort();
    assert_eq!(ids, (1..=9).collect::<Vec<_>>(), "{:?}", run.stdout);

    // Puts.
    assert!(r[&1].get("Err").is_none(), "{}", r[&1]);
    let p1 = disk_path(&r[&1]);
    assert_eq!(fs::read(&p1).unwrap(), body1);
    assert_eq!(p1.file_name().unwrap().to_string_lossy(), format!("{}-d", hex::encode(sha256(&body1))));
    assert!(r[&2].get("Err").is_none(), "{}", r[&2]);
    assert_eq!(fs::metadata(disk_path(&r[&2])).unwrap().len(), 0);
    assert!(r[&3].get("Err").is_none(), "{}", r[&3]);
    assert_eq!(fs::read(disk_path(&r[&3])).unwrap(), body3);
    let err = r[&4]["Err"].as_str().unwrap_or_else(|| panic!("{}", r[&4]));
    // It names the action and both hashes, and says what happens and what to do.
    for part in [hex::encode(a4), hex::encode(sha256(&body4)), hex::encode(sha256(b"something else"))] {
        assert!(err.contains(&part), "the message lacks {part}: {err}");
    }
    assert!(err.contains("not stored") && err.contains("report it as a bug"), "{err}");
    assert!(r[&4].get("DiskPath").is_none(), "{}", r[&4]);
    for output in [sha256(b"something else"), sha256(&body4)] {
        assert!(!output_path(&cache, &hex::encode(output)).exists());
    }
    assert!(!cache.join(&hex::encode(a4)[..2]).join(format!("{}-a", hex::encode(a4))).exists());

    // Gets, in the same session.
    assert_hit(&r[&5], &body1);
    assert_hit(&r[&6], b"");
    assert_hit(&r[&7], &body3);
    assert_miss(&r[&8]);
    assert_miss(&r[&9]);

    let s = read_stats(&stats);
    assert_eq!([stat(&s, "puts"), stat(&s, "put_errors"), stat(&s, "gets")], [4, 1, 5], "{s}");
    assert_eq!([stat(&s, "local_hits"), stat(&s, "misses")], [3, 2], "{s}");
    assert_eq!(leftover_temp_files(&cache), Vec::<PathBuf>::new());
    let entries = cache_entries(&cache);
    assert_eq!(entries.len(), 3, "{entries:?}");

    // What was stored before the fatal line is intact for a new process; close is
    // answered last with exactly {"ID":N}, then a clean exit.
    let mut again = String::new();
    for (id, a) in [(11, &a1), (12, &a2), (13, &a3), (14, &a4)] {
        again += &get_req(id, a);
    }
    again += "{\"ID\":15,\"Command\":\"close\"}\n\n";
    let run2 = run_cacheprog(&args, &[], again.into_bytes(), LIMIT);
    assert!(run2.status.success(), "{}", run2.stderr);
    assert_eq!(run2.stdout.lines().last(), Some(r#"{"ID":15}"#), "{}", run2.stdout);
    let r2 = by_id(run2.responses());
    assert_eq!(r2.len(), 5);
    assert_hit(&r2[&11], &body1);
    assert_hit(&r2[&12], b"");
    assert_hit(&r2[&13], &body3);
    assert_miss(&r2[&14]);
    let _ = fs::remove_dir_all(scratch);
}

#[test]
fn eof_without_close_is_a_clean_exit() {
    let scratch = scratch_dir("eof");
    let cache = scratch.join("cache");
    let stats = scratch.join("stats.json");
    let body = b"stored before EOF".to_vec();
    let a = action(20);
    let stream = put_req(1, &a, &sha256(&body), &body, "OutputID") + &get_req(2, &a);
    let args = ["--cache-dir", cache.to_str().unwrap(), "--stats-file", stats.to_str().unwrap()];
    let run = run_cacheprog(&args, &[], stream.into_bytes(), LIMIT);
    assert!(run.status.success(), "EOF must be a clean exit: {}", run.stderr);
    assert_eq!(run.status.code(), Some(0));
    let r = by_id(run.responses());
    assert_eq!(r.len(), 2, "{}", run.stdout);
    assert_hit(&r[&2], &body);
    let s = read_stats(&stats);
    assert_eq!([stat(&s, "puts"), stat(&s, "local_hits")], [1, 1], "{s}");

    // Nothing at all before EOF: still the handshake, still exit 0.
    let run = run_cacheprog(&args, &[], Vec::new(), LIMIT);
    assert_eq!(run.status.code(), Some(0), "{}", run.stderr);
    assert!(run.responses().is_empty());
    let _ = fs::remove_dir_all(scratch);
}

#[test]
fn close_is_answered_last_then_exit_zero() {
    let scratch = scratch_dir("close");
    let cache = scratch.join("cache");
    let body = random_bytes(4096, 77);
    let a = action(30);
    let stream = get_req(5, &a)
        + &put_req(6, &a, &sha256(&body), &body, "OutputID")
        + &get_req(7, &a)
        + "{\"ID\":8,\"Command\":\"close\"}\n\n";
    let run = run_cacheprog(&["--cache-dir", cache.to_str().unwrap()], &[], stream.into_bytes(), LIMIT);
    assert_eq!(run.status.code(), Some(0), "{}", run.stderr);
    assert_eq!(run.stdout.lines().last(), Some(r#"{"ID":8}"#), "{}", run.stdout);
    let r = by_id(run.responses());
    assert_eq!(r.len(), 4);
    assert_miss(&r[&5]);
    assert_eq!(fs::read(disk_path(&r[&6])).unwrap(), body);
    assert_hit(&r[&7], &body);
    let _ = fs::remove_dir_all(scratch);
}

#[test]
fn twenty_megabyte_put_round_trips() {
    let scratch = scratch_dir("big");
    let cache = scratch.join("cache");
    let seed = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_nanos() as u64;
    let body = random_bytes(20 * 1024 * 1024, seed);
    let digest = sha256(&body);
    let a = action(40);
    let stream = put_req(1, &a, &digest, &body, "OutputID") + &get_req(2, &a) + "{\"ID\":3,\"Command\":\"close\"}\n\n";
    drop(body);
    let started = Instant::now();
    let run =
        run_cacheprog(&["--cache-dir", cache.to_str().unwrap()], &[], stream.into_bytes(), Duration::from_secs(120));
    assert_eq!(run.status.code(), Some(0), "seed {seed}: {}", run.stderr);
    let r = by_id(run.responses());
    assert!(r[&1].get("Err").is_none(), "seed {seed}: {}", r[&1]);
    let stored = disk_path(&r[&1]);
    assert_eq!(fs::metadata(&stored).unwrap().len(), 20 * 1024 * 1024);
    assert_eq!(sha256_file(&stored), hex::encode(digest), "seed {seed}");
    assert_eq!(r[&2]["Size"].as_u64(), Some(20 * 1024 * 1024), "{}", r[&2]);
    assert_eq!(r[&2]["OutputID"].as_str(), Some(b64(&digest).as_str()));
    assert_eq!(disk_path(&r[&2]), stored);
    eprintln!("20 MB put and get took {:?}", started.elapsed());
    let _ = fs::remove_dir_all(scratch);
}

/// The helpers themselves: go is found and the /proc scan sees a live process.
#[test]
fn helpers_find_go_and_see_processes() {
    use std::os::unix::process::CommandExt;
    assert!(go_tool().is_file());
    let marker = format!("gcp-marker-{}", std::process::id());
    let mut child = std::process::Command::new("sleep").arg0(format!("sleep-{marker}")).arg("30").spawn().unwrap();
    // Right after spawn the child may not have exec'd yet: look for a bounded while.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut seen = false;
    while !seen && Instant::now() < deadline {
        seen = !processes_mentioning(&marker).is_empty();
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(seen, "the /proc scan did not see a live process");
    assert!(wait_until_gone(&marker, Duration::from_secs(5)).is_empty());
}

/// A warm local tier damaged in every way an entry can be (non-ASCII bytes at the parser's
/// offsets, truncated, oversized, another action's line, garbage, a directory in place of
/// an entry or an output, an output of the wrong size): the next build treats each as a
/// miss, succeeds, and the program it links works.
#[test]
fn a_damaged_local_tier_never_fails_a_build() {
    let sb = Sandbox::new("damaged");
    let args = ["build", "-o", "bin/tiny", "."];
    sb.go(&args, &[]).assert_ok();
    let entries = cache_entries(&sb.gocache);
    assert!(entries.len() >= 10, "{} entries", entries.len());
    let other = fs::read(&entries[1].path).unwrap();
    for (i, e) in entries.iter().enumerate() {
        let line = fs::read(&e.path).unwrap();
        match i % 9 {
            0 => {
                let mut bad = line.clone();
                bad[3] = 0xc3; // a UTF-8 lead byte where the action ID starts
                bad[4] = 0xa9;
                fs::write(&e.path, bad).unwrap();
            }
            1 => fs::write(&e.path, &line[..line.len() / 2]).unwrap(),
            2 => fs::write(&e.path, [line.clone(), line.clone()].concat()).unwrap(),
            3 => fs::write(&e.path, &other).unwrap(),
            4 => fs::write(&e.path, random_bytes(line.len(), 7)).unwrap(),
            5 => {
                fs::remove_file(&e.path).unwrap();
                fs::create_dir_all(e.path.join("not-an-entry")).unwrap();
            }
            6 => {
                let out = output_path(&sb.gocache, &e.output_hex);
                if fs::remove_file(&out).is_ok() {
                    fs::create_dir_all(&out).unwrap();
                }
            }
            7 => {
                let out = output_path(&sb.gocache, &e.output_hex);
                let _ = fs::write(&out, b"short");
            }
            _ => fs::write(&e.path, b"").unwrap(),
        }
    }
    let run = sb.go(&args, &[]);
    run.assert_ok();
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    let out = std::process::Command::new(sb.module.join("bin/tiny")).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello, world\n");
    // The damage was repaired by the puts of the rebuild: once more, all local hits.
    let again = sb.go(&["build", "-x", "-o", "bin/tiny", "."], &[]);
    again.assert_ok();
    assert!(again.compile_lines().is_empty(), "{:?}", again.compile_lines());
}

/// A local tier that cannot be written any more (made immutable; root ignores mode bits):
/// the failures are reported once, with what to do, and gets keep working from what is
/// there.
#[test]
fn an_unwritable_local_tier_is_reported_once() {
    let sb = Sandbox::new("unwritable");
    sb.go(&["build", "-o", "bin/tiny", "."], &[]).assert_ok();
    // Every folder a file could be created in: the tier itself and each <xx> folder.
    let mut folders = vec![sb.gocache.clone()];
    folders.extend(fs::read_dir(&sb.gocache).unwrap().flatten().map(|e| e.path()).filter(|p| p.is_dir()));
    let chattr =
        |flag: &str| std::process::Command::new("chattr").arg(flag).args(&folders).status().is_ok_and(|s| s.success());
    assert!(chattr("+i"), "chattr +i failed: the test needs an ext4-like /tmp");
    // A change to the library: new compiles, whose puts cannot be stored.
    let lib = sb.module.join("lib/lib.go");
    let text = fs::read_to_string(&lib).unwrap().replace("hello, ", "hi, ");
    fs::write(&lib, text).unwrap();
    let run = sb.go(&["build", "-o", "bin/tiny2", "."], &[]);
    let _ = chattr("-i");
    let stats = sb.last_stats();
    assert!(stat(&stats, "put_errors") >= 2, "{stats}\n{}", run.stderr);
    assert!(stat(&stats, "local_hits") > 0, "gets kept working: {stats}");
    let told: Vec<&str> = run.stderr.lines().filter(|l| l.contains("local disk failure")).collect();
    assert_eq!(told.len(), 1, "reported once:\n{}", run.stderr);
    assert!(told[0].contains("GOCACHE"), "{}", told[0]);
}

// ---------------------------------------------------------------------------------------
// Executable outputs: a toolchain may run a linked binary from its DiskPath.

/// The mode bits of a file.
fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

/// A real linked go binary (the sandbox's tiny program, built by plain go).
fn linked_binary(sb: &Sandbox) -> Vec<u8> {
    sb.go_plain(&["build", "-o", "bin/tiny", "."], &[]).assert_ok();
    fs::read(sb.module.join("bin/tiny")).unwrap()
}

/// Puts `binary` as the output of `action`, then gets it; returns the get's response.
fn put_then_get(wrapper: &[&str], args: &[&str], env: &[(&str, &str)], action: &[u8; 32], binary: &[u8]) -> Value {
    let digest = sha256(binary);
    let stream =
        put_req(1, action, &digest, binary, "OutputID") + &get_req(2, action) + "{\"ID\":3,\"Command\":\"close\"}\n\n";
    let run = common::go::run_cacheprog_under(wrapper, args, env, stream.into_bytes(), LIMIT);
    assert_eq!(run.status.code(), Some(0), "{}", run.stderr);
    let r = by_id(run.responses());
    assert!(r[&1].get("Err").is_none(), "{}", r[&1]);
    assert_hit(&r[&2], binary);
    r[&2].clone()
}

/// What the tiny program prints when run from `path`.
fn run_output(path: &Path) -> String {
    let out =
        std::process::Command::new(path).output().unwrap_or_else(|e| panic!("cannot run {}: {e}", path.display()));
    assert!(out.status.success(), "{} exited {}", path.display(), out.status);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_linked_binary_runs_from_its_disk_path_and_the_umask_has_the_last_word() {
    let sb = Sandbox::new("executable");
    let binary = linked_binary(&sb);
    let cache = sb.root.join("tier-put");
    let r = put_then_get(&[], &["--cache-dir", cache.to_str().unwrap()], &[], &action(60), &binary);
    let path = disk_path(&r);
    // The owner may run it; nobody else gains anything (entries and folders stay private).
    assert_eq!(mode_of(&path) & 0o177, 0o100, "{} is {:o}", path.display(), mode_of(&path));
    assert_eq!(run_output(&path), "hello, world\n");
    for e in cache_entries(&cache) {
        assert_eq!(mode_of(&e.path), 0o600, "entry {}", e.path.display());
        assert_eq!(mode_of(e.path.parent().unwrap()), 0o700);
    }

    // A umask that forbids execution is obeyed: the bit comes from the mode asked for at
    // creation, not from a chmod after it.
    let strict = sb.root.join("tier-strict");
    let umask = ["sh", "-c", "umask 177; exec \"$0\" \"$@\""];
    let r = put_then_get(&umask, &["--cache-dir", strict.to_str().unwrap()], &[], &action(61), &binary);
    assert_eq!(mode_of(&disk_path(&r)), 0o600);
}

#[test]
fn a_linked_binary_downloaded_from_the_bucket_runs_from_its_disk_path() {
    let server = common::servers::S3Server::garage();
    let sb = Sandbox::new("executable-remote");
    let binary = linked_binary(&sb);
    let env = server.env();
    let env = common::remote::refs(&env);
    let a = action(62);
    let first = sb.root.join("tier-first");
    put_then_get(&[], &["--cache-dir", first.to_str().unwrap(), "--prefix", "exe", &server.bucket], &env, &a, &binary);
    // An empty tier: the get downloads it.
    let second = sb.root.join("tier-second");
    let get = get_req(1, &a) + "{\"ID\":2,\"Command\":\"close\"}\n\n";
    let stats = sb.root.join("second.json");
    let run = run_cacheprog(
        &[
            "--cache-dir",
            second.to_str().unwrap(),
            "--prefix",
            "exe",
            "--stats-file",
            stats.to_str().unwrap(),
            &server.bucket,
        ],
        &env,
        get.into_bytes(),
        LIMIT,
    );
    assert_eq!(run.status.code(), Some(0), "{}", run.stderr);
    assert_eq!(stat(&read_stats(&stats), "remote_hits"), 1, "{}", run.stderr);
    let r = by_id(run.responses());
    assert_hit(&r[&1], &binary);
    let path = disk_path(&r[&1]);
    assert!(path.starts_with(&second), "{}", path.display());
    assert_eq!(mode_of(&path) & 0o177, 0o100, "{} is {:o}", path.display(), mode_of(&path));
    assert_eq!(run_output(&path), "hello, world\n");
}
