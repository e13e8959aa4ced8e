//! `gocacheprog-s3 stamp` under the real go: fresh checkouts of a module whose tests read a
//! file, list a folder and stat a file, run on fresh runners that share a bucket (Garage).
//! With stamp, a second checkout's `go test ./...` is all "(cached)"; without it, every
//! test that touches a file reruns; and after a same-size change, a file added to the
//! listed folder or a rename, exactly the affected test reruns (and, where the change
//! makes it fail, fails: a reused result would have said ok).

use crate::common;

use common::go::{bin, GoRun, Sandbox};
use common::remote::go_remote;
use common::servers::S3Server;
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

const MODULE: &[(&str, &str)] = &[
    ("go.mod", "module example.com/stamped\n\ngo 1.24\n"),
    ("notes.txt", "read by no test\n"),
    ("reads/reads.go", "// Package reads reads a file in its test.\npackage reads\n"),
    (
        "reads/reads_test.go",
        "package reads\n\nimport (\n\t\"os\"\n\t\"testing\"\n)\n\nfunc TestInput(t *testing.T) {\n\
         \tb, err := os.ReadFile(\"testdata/input.txt\")\n\tif err != nil {\n\t\tt.Fatal(err)\n\t}\n\
         \tif string(b) != \"pass\\n\" {\n\t\tt.Fatalf(\"testdata/input.txt holds %q\", b)\n\t}\n}\n",
    ),
    ("reads/testdata/input.txt", "pass\n"),
    ("lists/lists.go", "// Package lists lists a folder in its test.\npackage lists\n"),
    (
        "lists/lists_test.go",
        "package lists\n\nimport (\n\t\"os\"\n\t\"strings\"\n\t\"testing\"\n)\n\nfunc TestItems(t *testing.T) {\n\
         \tentries, err := os.ReadDir(\"testdata/items\")\n\tif err != nil || len(entries) == 0 {\n\
         \t\tt.Fatalf(\"%d items, %v\", len(entries), err)\n\t}\n\tfor _, e := range entries {\n\
         \t\tif !strings.HasSuffix(e.Name(), \".txt\") {\n\t\t\tt.Errorf(\"%s is not a .txt\", e.Name())\n\
         \t\t}\n\t}\n}\n",
    ),
    ("lists/testdata/items/a.txt", "a\n"),
    ("lists/testdata/items/b.txt", "b\n"),
    ("stats/stats.go", "// Package stats stats a file in its test.\npackage stats\n"),
    (
        "stats/stats_test.go",
        "package stats\n\nimport (\n\t\"os\"\n\t\"testing\"\n)\n\nfunc TestSize(t *testing.T) {\n\
         \tfi, err := os.Stat(\"testdata/size.txt\")\n\tif err != nil || fi.Size() != 7 {\n\
         \t\tt.Fatalf(\"%v %v\", fi, err)\n\t}\n}\n",
    ),
    ("stats/testdata/size.txt", "123456\n"),
    ("plain/plain.go", "// Package plain has a test that reads nothing.\npackage plain\n"),
    ("plain/plain_test.go", "package plain\n\nimport \"testing\"\n\nfunc TestNothing(t *testing.T) {}\n"),
];

/// A fresh checkout of the module at the sandbox's module path (the same path every time,
/// as on CI runners: go's keys include it), every file written anew.
fn checkout(sb: &Sandbox, change: impl FnOnce(&Path)) {
    let _ = fs::remove_dir_all(&sb.module);
    for (path, text) in MODULE {
        let file = sb.module.join(path);
        fs::create_dir_all(file.parent().unwrap()).unwrap();
        fs::write(&file, text).unwrap();
    }
    change(&sb.module);
}

fn stamp(sb: &Sandbox) {
    let out = Command::new(bin())
        .args(["stamp", &sb.module.to_string_lossy()])
        .env_clear()
        .env("GOCACHE", &sb.gocache)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && out.stderr.is_empty(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let (files, folders) = count(&sb.module);
    assert!(stdout.starts_with(&format!("stamped {files} files and {folders} folders under ")), "{stdout}");
}

/// Files and folders under `dir`, itself included.
fn count(dir: &Path) -> (usize, usize) {
    let (mut files, mut folders) = (0, 1);
    for entry in fs::read_dir(dir).unwrap().flatten() {
        if entry.file_type().unwrap().is_dir() {
            let (f, d) = count(&entry.path());
            files += f;
            folders += d;
        } else {
            files += 1;
        }
    }
    (files, folders)
}

/// Every file and folder dated `age` ago: a checkout made that long before the tests run
/// (so that go's 2-second cut-off is not what makes the tests rerun).
fn age(dir: &Path, age: Duration) {
    let when = SystemTime::now() - age;
    for entry in fs::read_dir(dir).unwrap().flatten() {
        if entry.file_type().unwrap().is_dir() {
            self::age(&entry.path(), age);
        }
        File::open(entry.path()).unwrap().set_modified(when).unwrap();
    }
    File::open(dir).unwrap().set_modified(when).unwrap();
}

/// Each package's outcome in `go test ./...`'s output: cached, ran or failed.
fn outcomes(run: &GoRun) -> BTreeMap<String, &'static str> {
    let mut map = BTreeMap::new();
    for line in run.stdout.lines() {
        let fields: Vec<&str> = line.split('\t').map(str::trim).collect();
        let outcome = match fields.as_slice() {
            ["ok", _, "(cached)", ..] => "cached",
            ["ok", ..] => "ran",
            ["FAIL", pkg, ..] if pkg.starts_with("example.com/") => "failed",
            _ => continue,
        };
        map.insert(fields[1].trim_start_matches("example.com/stamped/").to_string(), outcome);
    }
    map
}

fn expect(run: &GoRun, what: &str, expected: &[(&str, &str)]) {
    let got = outcomes(run);
    let expected: BTreeMap<String, &str> = expected.iter().map(|(k, v)| (k.to_string(), *v)).collect();
    assert_eq!(got, expected, "{what}:\n{}\n{}", run.stdout, run.stderr);
    let failed = expected.values().any(|v| *v == "failed");
    assert_eq!(run.status.success(), !failed, "{what}: go test's exit status\n{}", run.stdout);
}

/// A change to a checkout, and each package's expected outcome after it.
type Case = (&'static str, fn(&Path), [(&'static str, &'static str); 4]);

#[test]
fn stamped_checkouts_reuse_test_results_and_every_change_reruns_its_test() {
    let server = S3Server::garage();
    let sb = Sandbox::new("stamp");
    let test = |tier: &str| go_remote(&sb, &server, tier, &["test", "./..."], &[]);
    let all = |outcome| [("lists", outcome), ("plain", outcome), ("reads", outcome), ("stats", outcome)];

    // The first runner runs every test and fills the bucket.
    checkout(&sb, |_| {});
    stamp(&sb);
    expect(&test("runner-1"), "first runner", &all("ran"));

    // A second runner, a fresh checkout: every result comes from the bucket.
    checkout(&sb, |_| {});
    stamp(&sb);
    expect(&test("runner-2"), "stamped fresh checkout", &all("cached"));

    // Without stamp, a checkout made a minute ago: every test that touched a file reruns.
    checkout(&sb, |m| age(m, Duration::from_secs(60)));
    let unstamped = [("lists", "ran"), ("plain", "cached"), ("reads", "ran"), ("stats", "ran")];
    expect(&test("runner-3"), "unstamped fresh checkout", &unstamped);

    // Changes, each on a fresh checkout and a fresh runner: only the affected test reruns.
    let cases: [Case; 5] = [
        (
            "same-size change of a file a test reads",
            |m| fs::write(m.join("reads/testdata/input.txt"), "FAIL\n").unwrap(),
            [("lists", "cached"), ("plain", "cached"), ("reads", "failed"), ("stats", "cached")],
        ),
        (
            "same-size change of a file a test stats",
            |m| fs::write(m.join("stats/testdata/size.txt"), "654321\n").unwrap(),
            [("lists", "cached"), ("plain", "cached"), ("reads", "cached"), ("stats", "ran")],
        ),
        (
            "a file added to a folder a test lists",
            |m| fs::write(m.join("lists/testdata/items/c.txt"), "c\n").unwrap(),
            [("lists", "ran"), ("plain", "cached"), ("reads", "cached"), ("stats", "cached")],
        ),
        (
            "a file renamed in a folder a test lists",
            |m| fs::rename(m.join("lists/testdata/items/a.txt"), m.join("lists/testdata/items/a.bad")).unwrap(),
            [("lists", "failed"), ("plain", "cached"), ("reads", "cached"), ("stats", "cached")],
        ),
        (
            "a file no test reads",
            |m| fs::write(m.join("notes.txt"), "read by no one!\n").unwrap(),
            [("lists", "cached"), ("plain", "cached"), ("reads", "cached"), ("stats", "cached")],
        ),
    ];
    for (n, (what, change, expected)) in cases.into_iter().enumerate() {
        checkout(&sb, change);
        stamp(&sb);
        expect(&test(&format!("runner-change-{n}")), what, &expected);
    }
}
