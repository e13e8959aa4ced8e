//! Modules and compiles for an air-gapped network from one bucket (docs/air-gapped.md).
//!
//! Athens (gomods/athens, a Go module proxy; scripts/install-test-deps.sh builds the pinned
//! version) keeps module sources at the bucket's root (`<module>/@v/<version>.{info,mod,zip}`),
//! this program keeps compiles under `go-cache/`. An Athens with a read-write key fills the
//! bucket once; then an Athens in offline mode with a read-only key serves runners whose
//! module caches and local tiers start empty. The filling Athens' upstream is a module cache
//! on disk (GOPROXY=file://) that the installer downloaded through the Go module proxy, so
//! the test reaches nothing outside 127.0.0.1, and a tripwire proxy shows that the offline
//! Athens did not try to.

use crate::common;

use common::go::{go_tool, stat, GoRun, Prog, Sandbox};
use common::remote::{refs, store_env};
use common::servers::{die_with_parent, free_port, http_status, listener_owned_by, python, S3Server};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// The Athens release scripts/install-test-deps.sh builds.
const ATHENS_VERSION: &str = "v0.18.0";
/// The build cache's prefix in the shared bucket.
const PREFIX: &str = "go-cache";
/// A small module of ours with real dependencies (cobra, pflag, uuid), pinned by its go.sum.
const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/athens-module");
/// How long Athens may take to answer /readyz (it lists the bucket) after it starts.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
const START_ATTEMPTS: u32 = 3;

/// `~/.cache/gocacheprog-s3/<name>`, where the installer puts what it builds.
fn installed(name: &str) -> PathBuf {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .expect("HOME or XDG_CACHE_HOME is set");
    cache.join("gocacheprog-s3").join(name)
}

fn athens_bin() -> PathBuf {
    let bin = installed(&format!("athens-{ATHENS_VERSION}")).join("athens");
    let out = Command::new(&bin).arg("-version").stdin(Stdio::null()).output();
    match out {
        Ok(out) if String::from_utf8_lossy(&out.stdout).contains(ATHENS_VERSION) => bin,
        _ => panic!("no Athens {ATHENS_VERSION} at {}: run scripts/install-test-deps.sh --only athens", bin.display()),
    }
}

/// The filling Athens' upstream: the module cache the installer downloaded for the
/// fixture's go.sum, served as GOPROXY=file://.
fn upstream() -> String {
    let dir = installed("athens-upstream");
    let want =
        hex::encode(Sha256::digest(fs::read(Path::new(FIXTURE).join("go.sum")).expect("read the fixture go.sum")));
    let have = fs::read_to_string(dir.join("go.sum.sha256")).unwrap_or_default();
    assert_eq!(
        have.trim(),
        want,
        "{} was not made for tests/fixtures/athens-module/go.sum: run scripts/install-test-deps.sh --only athens",
        dir.display()
    );
    format!("file://{}", dir.join("cache/download").display())
}

/// Every module@version the fixture's go.sum names.
fn modules_in_go_sum() -> BTreeSet<(String, String)> {
    let text = fs::read_to_string(Path::new(FIXTURE).join("go.sum")).expect("read the fixture go.sum");
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (path, version) = (f.next()?, f.next()?);
            Some((path.to_string(), version.trim_end_matches("/go.mod").to_string()))
        })
        .collect()
}

/// The fixture module in `dir`, its files dated two hours back (as `Sandbox` does), with
/// go.sum's lines passed through `edit_sum`.
fn write_fixture(dir: &Path, edit_sum: impl Fn(&str) -> String) {
    let _ = fs::remove_dir_all(dir);
    fs::create_dir_all(dir).unwrap();
    let old = SystemTime::now() - Duration::from_secs(2 * 3600);
    for name in ["go.mod", "go.sum", "main.go"] {
        let text = fs::read_to_string(Path::new(FIXTURE).join(name)).unwrap();
        let text = if name == "go.sum" { text.lines().map(|l| edit_sum(l) + "\n").collect() } else { text };
        let file = dir.join(name);
        fs::write(&file, text).unwrap();
        File::options().write(true).open(&file).unwrap().set_modified(old).unwrap();
    }
}

/// What Athens stored: the bucket's keys outside the cache's prefix.
fn athens_objects(garage: &S3Server) -> BTreeSet<String> {
    garage
        .list("")
        .iter()
        .filter_map(|o| o["key"].as_str().map(str::to_string))
        .filter(|k| !k.starts_with(&format!("{PREFIX}/")))
        .collect()
}

/// A listener that every outside address Athens tries reaches (it is Athens' HTTP(S)
/// proxy; go and Athens send loopback addresses past a proxy): it records the request line
/// and refuses.
struct Tripwire {
    port: u16,
    seen: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl Tripwire {
    fn start() -> Tripwire {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the tripwire");
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let (seen, stop) = (Arc::new(Mutex::new(Vec::new())), Arc::new(AtomicBool::new(false)));
        let (seen2, stop2) = (Arc::clone(&seen), Arc::clone(&stop));
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(900);
            while !stop2.load(Ordering::Relaxed) && Instant::now() < deadline {
                let Ok((mut conn, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let _ = conn.set_nonblocking(false);
                let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                let mut line = String::new();
                if let Ok(read) = conn.try_clone() {
                    let _ = BufReader::new(read).read_line(&mut line);
                }
                seen2.lock().unwrap().push(line.trim_end().to_string());
                let _ = conn.write_all(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            }
        });
        Tripwire { port, seen, stop }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Tripwire {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A running Athens on 127.0.0.1, configured by environment variables only (as the recipe
/// shows); killed on drop.
struct Athens {
    port: u16,
    child: Child,
    log_path: PathBuf,
}

impl Athens {
    /// Starts Athens with its home, temp dir and log in `dir/name` and waits until it
    /// answers /readyz (which lists the bucket).
    fn start(dir: &Path, name: &str, env: &[(String, String)]) -> Athens {
        let bin = athens_bin();
        let home = dir.join(name);
        fs::create_dir_all(home.join("tmp")).unwrap();
        for attempt in 1..=START_ATTEMPTS {
            let port = free_port();
            let log_path = home.join(format!("athens-{attempt}.log"));
            let log = File::create(&log_path).unwrap();
            let mut cmd = Command::new(&bin);
            cmd.current_dir(&home)
                .env_clear()
                .envs(env.iter().map(|(k, v)| (k, v)))
                .env("ATHENS_PORT", format!("127.0.0.1:{port}"))
                .env("HOME", &home)
                .env("TMPDIR", home.join("tmp"))
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log);
            if let Some(path) = std::env::var_os("PATH") {
                cmd.env("PATH", path);
            }
            die_with_parent(&mut cmd);
            let child = cmd.spawn().unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
            let mut athens = Athens { port, child, log_path };
            match athens.wait_ready() {
                Ok(()) => return athens,
                Err(why) if attempt < START_ATTEMPTS && athens.log().contains("address already in use") => {
                    eprintln!("athens {name}: port {port} taken ({why}), retrying");
                }
                Err(why) => panic!("athens {name} did not start: {why}\n--- athens log ---\n{}", athens.log()),
            }
        }
        unreachable!()
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("it exited: {status}"));
            }
            if http_status(self.port, "/readyz") == Some(200)
                && listener_owned_by(self.child.id(), self.port).unwrap_or(true)
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!("/readyz not 200 after {READY_TIMEOUT:?}"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for Athens {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Athens' environment for Garage with `key`, its HTTP(S) proxy the tripwire, plus `extra`.
fn athens_env(
    garage: &S3Server,
    key: &(String, String),
    tripwire: &Tripwire,
    extra: &[(&str, &str)],
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = [
        ("ATHENS_STORAGE_TYPE", "s3"),
        ("ATHENS_S3_BUCKET_NAME", &garage.bucket),
        ("AWS_REGION", &garage.region),
        ("AWS_ENDPOINT", &garage.endpoint),
        ("AWS_FORCE_PATH_STYLE", "true"),
        ("AWS_ACCESS_KEY_ID", &key.0),
        ("AWS_SECRET_ACCESS_KEY", &key.1),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("ATHENS_LOG_LEVEL", "info"),
        ("GO_BINARY_PATH", &go_tool().to_string_lossy()),
    ]
    .iter()
    .chain(extra)
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for proxy in ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"] {
        env.push((proxy.into(), tripwire.url()));
    }
    env
}

/// A runner's module settings: every module from Athens (no direct fallback, nothing
/// private), checked against the committed go.sum and never added to it.
fn runner_env(athens: &Athens, modcache: &Path) -> Vec<(String, String)> {
    [
        ("GOPROXY", athens.url()),
        ("GOSUMDB", "off".into()),
        ("GONOSUMDB", String::new()),
        ("GOPRIVATE", String::new()),
        ("GONOPROXY", String::new()),
        ("GOFLAGS", "-modcacherw -mod=readonly".into()),
        ("GOMODCACHE", modcache.to_string_lossy().into_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// A fresh runner: an empty module cache (at the same path each time, as on CI machines:
/// the path is part of a dependency's action IDs) and an empty local tier `tier`; builds
/// the fixture into `out` with the cache program on `PREFIX`.
fn runner_build(sb: &Sandbox, garage: &S3Server, athens: &Athens, tier: &str, out: &Path) -> GoRun {
    let modcache = sb.root.join("modcache");
    let _ = fs::remove_dir_all(&modcache);
    let mut env = store_env(sb, garage, &garage.endpoint, tier);
    env.extend(runner_env(athens, &modcache));
    let out = out.to_string_lossy();
    let run = sb
        .spawn(&["build", "-x", "-o", &out, "."], &refs(&env), Prog::Ours(&["--prefix", PREFIX, &garage.bucket]))
        .wait();
    assert!(run.status.success(), "{tier}: go build failed:\n{}\n--- athens log ---\n{}", run.stderr, athens.log());
    run
}

/// The built program's output must be what Python's uuid5 computes for the same names.
fn assert_program_works(program: &Path) {
    let names = ["alpha", "beta"];
    let out = Command::new(program).args(names).stdin(Stdio::null()).output().expect("run the built program");
    let want = Command::new(python())
        .args(["-c", "import sys, uuid\nfor n in sys.argv[1:]: print(n, uuid.uuid5(uuid.NAMESPACE_URL, n))"])
        .args(names)
        .output()
        .expect("run python3");
    assert!(out.status.success() && want.status.success(), "{out:?}\n{want:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&want.stdout));
}

#[test]
fn athens_offline_serves_modules_and_the_cache_serves_compiles_from_one_bucket() {
    let upstream = upstream();
    let garage = S3Server::garage();
    let tripwire = Tripwire::start();
    let fill_key = garage.garage_key("athens-fill", &["--read", "--write"]);
    let serve_key = garage.garage_key("athens-serve", &["--read"]);
    let sb = Sandbox::new("athens");
    write_fixture(&sb.module, str::to_string);
    let expected: BTreeSet<String> = modules_in_go_sum()
        .iter()
        .flat_map(|(path, version)| ["info", "mod", "zip"].map(|ext| format!("{path}/@v/{version}.{ext}")))
        .collect();

    // Once, where the upstream is reachable: Athens stashes every module go asks for.
    {
        let fill = Athens::start(
            &sb.root,
            "athens-fill",
            &athens_env(
                &garage,
                &fill_key,
                &tripwire,
                &[
                    ("ATHENS_DOWNLOAD_MODE", "sync"),
                    ("ATHENS_GO_BINARY_ENV_VARS", &format!("GOPROXY={upstream}; GOSUMDB=off; GOTOOLCHAIN=local")),
                ],
            ),
        );
        let modcache = sb.root.join("modcache");
        let dl = sb.spawn(&["mod", "download", "-x"], &refs(&runner_env(&fill, &modcache)), Prog::Off).wait();
        assert!(
            dl.status.success(),
            "go mod download through Athens:\n{}\n--- athens log ---\n{}",
            dl.stderr,
            fill.log()
        );
        assert_eq!(athens_objects(&garage), expected, "Athens stores each module of go.sum");
        assert_eq!(tripwire.seen(), Vec::<String>::new(), "the fill reaches only its file:// upstream");
        // The tripwire sees what Athens sends outside: its checksum-database proxy (on by
        // default) forwards to sum.golang.org.
        let status = http_status(fill.port, "/sumdb/sum.golang.org/latest");
        assert!(status.is_some_and(|s| s >= 500), "{status:?}");
        assert!(
            tripwire.seen().iter().any(|l| l.starts_with("CONNECT sum.golang.org:443")),
            "the tripwire saw {:?}",
            tripwire.seen()
        );
    }
    let seen_at_fill = tripwire.seen().len();

    // The air-gapped side: offline, nothing downloaded on a miss, no checksum-database
    // proxy, a read-only key.
    let serve = Athens::start(
        &sb.root,
        "athens-serve",
        &athens_env(
            &garage,
            &serve_key,
            &tripwire,
            &[
                ("ATHENS_NETWORK_MODE", "offline"),
                ("ATHENS_DOWNLOAD_MODE", "none"),
                ("ATHENS_GO_BINARY_ENV_VARS", "GOPROXY=off"),
                ("ATHENS_SUM_DBS", ""),
            ],
        ),
    );
    let program = sb.root.join("airgap");
    let cobra_zip = format!("# get {}/github.com/spf13/cobra/@v/v1.9.1.zip: 200 OK", serve.url());

    let first = runner_build(&sb, &garage, &serve, "runner-1", &program);
    assert!(first.stderr.contains(&cobra_zip), "no {cobra_zip:?} in:\n{}", first.stderr);
    assert!(
        first.compile_lines().iter().any(|l| l.contains(" -p github.com/spf13/cobra ")),
        "the first runner compiles the dependencies:\n{:?}",
        first.compile_lines()
    );
    let stats = sb.last_stats();
    assert!(stat(&stats, "puts") > 0 && stat(&stats, "upload_errors") == 0, "{stats}");
    assert!(!garage.list(&format!("{PREFIX}/")).is_empty(), "the compiles are in the bucket under {PREFIX}/");
    assert_program_works(&program);
    fs::remove_file(&program).unwrap();

    let second = runner_build(&sb, &garage, &serve, "runner-2", &program);
    assert!(second.stderr.contains(&cobra_zip), "the second runner's modules come from Athens:\n{}", second.stderr);
    assert_eq!(second.compile_lines(), Vec::<&str>::new(), "the second runner compiles nothing");
    let stats = sb.last_stats();
    assert!(stat(&stats, "remote_hits") > 0, "{stats}");
    assert_program_works(&program);
    eprintln!("runner builds: first {:?}, second {:?}", first.elapsed, second.elapsed);

    // Offline: go's version list is what the bucket holds (in the default strict mode,
    // Athens would also ask its go child, which cannot fetch: GOPROXY=off).
    let env = runner_env(&serve, &sb.root.join("modcache"));
    let versions = sb.spawn(&["list", "-m", "-versions", "github.com/spf13/cobra"], &refs(&env), Prog::Off).wait();
    versions.assert_ok();
    assert_eq!(versions.stdout.trim(), "github.com/spf13/cobra v1.9.1");
    // A version Athens lacks is a 404, not a download; there is no /sumdb/ to forward.
    assert_eq!(http_status(serve.port, "/github.com/spf13/cobra/@v/v1.8.0.info"), Some(404));
    assert_eq!(http_status(serve.port, "/sumdb/sum.golang.org/supported"), Some(404));
    let seen = tripwire.seen();
    assert_eq!(seen.len(), seen_at_fill, "the offline Athens tried to reach out: {:?}", &seen[seen_at_fill..]);
    assert_eq!(athens_objects(&garage), expected, "the offline Athens changed nothing");

    // GOSUMDB=off is safe here because go checks every zip Athens serves against go.sum.
    // pflag's zip is given uuid's hash (a well-formed line that does not match).
    let tampered = Sandbox::new("athens-tampered");
    let go_sum = fs::read_to_string(Path::new(FIXTURE).join("go.sum")).unwrap();
    let zip_hash = |module: &str| {
        let line = go_sum.lines().find(|l| l.starts_with(module) && !l.contains("/go.mod ")).expect("in go.sum");
        line.rsplit(' ').next().unwrap_or_default().to_string()
    };
    let (pflag, uuid) = ("github.com/spf13/pflag v1.0.6 ", "github.com/google/uuid v1.6.0 ");
    let (pflag_hash, uuid_hash) = (zip_hash(pflag), zip_hash(uuid));
    write_fixture(&tampered.module, |line| line.replace(&pflag_hash, &uuid_hash));
    let env = runner_env(&serve, &tampered.root.join("modcache"));
    let bad = tampered.spawn(&["build", "./..."], &refs(&env), Prog::Off).wait();
    assert!(!bad.status.success(), "a go.sum that does not match was accepted");
    assert!(
        bad.stderr.contains("github.com/spf13/pflag@v1.0.6: checksum mismatch"),
        "go did not check the zip against go.sum:\n{}",
        bad.stderr
    );
}
