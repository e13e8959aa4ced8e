//! Real S3-compatible servers on 127.0.0.1 for the integration tests.
//!
//! `S3Server::garage()`, `S3Server::s3s_fs()` and `S3Server::moto()` each start a
//! fresh server process on free ports with its own temp dir and an existing,
//! empty bucket, and wait until it really answers S3. Dropping the value kills
//! the process and removes the temp dir, so many servers can run in parallel
//! tests. Install the servers with `scripts/install-test-deps.sh`.
//!
//! Process lifetime: `Drop` kills (SIGKILL) and reaps the child, which covers
//! normal exit and panics (unwinding). For the cases where no destructor runs
//! (the test binary is SIGKILLed, `std::process::exit`, an abort) each child is
//! started, on Linux, with `PR_SET_PDEATHSIG = SIGKILL`, so the kernel kills it
//! when the thread that spawned it exits. Note the *thread*: a server must be
//! owned by the test (thread) that started it — do not start one lazily from
//! one test and share it through a `static` with others. The children stay in
//! the test's process group, so Ctrl-C in a terminal reaches them too.
//!
//! Set `S3_TEST_KEEP_DIRS=1` to keep the temp dirs (config, data, log) for
//! post-mortem debugging.

use gocacheprog_s3::s3::client::Bounds;
use gocacheprog_s3::s3::sigv4::EMPTY_SHA256;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long a server may take to answer after spawn (garage on a loaded 2-core
/// CI machine is the slowest: ~0.1-1 s normally).
const START_TIMEOUT: Duration = Duration::from_secs(20);
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// Attempts when a freshly picked port was taken by someone else before the
/// server could bind it (the `free_port` race).
const BIND_ATTEMPTS: u32 = 3;
const BUCKET: &str = "cache";

pub struct S3Server {
    /// "garage" | "s3s-fs" | "moto"
    pub kind: &'static str,
    /// "http://127.0.0.1:PORT"
    pub endpoint: String,
    /// garage: "garage" (must match `s3_region` exactly); s3s-fs, moto: "us-east-1"
    pub region: String,
    pub access_key: String,
    pub secret_key: String,
    /// An existing bucket, empty at start.
    pub bucket: String,
    /// moto: a role anyone may assume (AssumeRole, web identity) that may use S3.
    pub role_arn: String,
    port: u16,
    dir: PathBuf,
    log_path: PathBuf,
    child: Option<Child>,
}

impl S3Server {
    /// Garage 2.5, single node, sqlite metadata, replication factor 1. The key
    /// and the bucket are created by `server --single-node --default-bucket`
    /// from the `GARAGE_DEFAULT_*` environment variables.
    pub fn garage() -> S3Server {
        let bin = find_bin("garage");
        let access_key = format!("GK{}", random_hex(12));
        let secret_key = random_hex(32);
        for attempt in 1..=BIND_ATTEMPTS {
            let mut s = S3Server::prepare("garage", "garage", &access_key, &secret_key, BUCKET);
            let (rpc_port, admin_port) = (free_port(), free_port());
            let config = garage_config(&s.dir, 1, rpc_port, s.port, admin_port, &random_hex(32));
            let config_path = s.dir.join("garage.toml");
            fs::write(&config_path, config).expect("write garage.toml");
            let mut cmd = Command::new(&bin);
            cmd.arg("-c")
                .arg(&config_path)
                .args(["server", "--single-node", "--default-bucket"])
                .env("GARAGE_DEFAULT_ACCESS_KEY", &s.access_key)
                .env("GARAGE_DEFAULT_SECRET_KEY", &s.secret_key)
                .env("GARAGE_DEFAULT_BUCKET", &s.bucket)
                .env("RUST_LOG", "garage=info");
            s.spawn(cmd);
            // Readiness: garage runs the --single-node/--default-bucket setup
            // (layout, key, bucket, bucket permissions) to completion *before*
            // it spawns the S3 API listener (garage 2.5 src/garage/server.rs:
            // `initial_config` precedes `S3ApiServer::run`), so the first HTTP
            // answer on the S3 port (an unsigned `GET /cache` gets 403
            // AccessDenied) proves the bucket and key exist. No signed request
            // needed.
            match s.wait_http(&format!("/{BUCKET}")) {
                Ok(()) => return s,
                Err(e) => s.retry_or_panic(attempt, &e),
            }
        }
        unreachable!()
    }

    /// s3s-fs 0.14 serving a temp dir; every top-level directory is a bucket,
    /// so the bucket is a pre-created subdirectory. It checks SigV4 strictly
    /// (payload hash, Content-MD5, clock skew) and accepts any region.
    pub fn s3s_fs() -> S3Server {
        let bin = find_bin("s3s-fs");
        let access_key = format!("AKS3SFS{}", random_hex(6).to_uppercase());
        let secret_key = random_hex(20);
        for attempt in 1..=BIND_ATTEMPTS {
            let mut s = S3Server::prepare("s3s-fs", "us-east-1", &access_key, &secret_key, BUCKET);
            let root = s.dir.join("root");
            fs::create_dir_all(root.join(&s.bucket)).expect("create s3s-fs bucket dir");
            let mut cmd = Command::new(&bin);
            cmd.args(["--host", "127.0.0.1", "--port", &s.port.to_string()])
                .args(["--access-key", &s.access_key, "--secret-key", &s.secret_key])
                .arg(&root)
                .env("RUST_LOG", "s3s_fs=info,s3s=info");
            s.spawn(cmd);
            // Readiness: s3s-fs binds its listener after everything else is
            // set up and the bucket is just a directory that already exists, so
            // any HTTP answer (unsigned `GET /cache` → 403) means ready.
            match s.wait_http(&format!("/{BUCKET}")) {
                Ok(()) => return s,
                Err(e) => s.retry_or_panic(attempt, &e),
            }
        }
        unreachable!()
    }

    /// SeaweedFS 4.53 (`weed server`: master, volume, filer and S3 gateway in one
    /// process), every port chosen here and its telemetry off; the key comes from an
    /// identities file, the bucket is created through S3 once the gateway can store.
    pub fn seaweedfs() -> S3Server {
        let bin = find_bin("weed");
        let access_key = format!("AKWEED{}", random_hex(6).to_uppercase());
        let secret_key = random_hex(20);
        for attempt in 1..=BIND_ATTEMPTS {
            let mut s = S3Server::prepare("seaweedfs", "us-east-1", &access_key, &secret_key, BUCKET);
            let identities = serde_json::json!({"identities": [{
                "name": "tests",
                "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }]});
            let config = s.dir.join("s3.json");
            fs::write(&config, identities.to_string()).expect("write s3.json");
            fs::create_dir_all(s.dir.join("data")).expect("create the seaweedfs data dir");
            let port = |name: &str| format!("-{name}={}", free_port());
            let mut cmd = Command::new(&bin);
            cmd.args(["server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1"])
                .arg(format!("-dir={}", s.dir.join("data").display()))
                .args([port("master.port"), port("master.port.grpc"), port("volume.port"), port("volume.port.grpc")])
                .args(["-filer".to_string(), port("filer.port"), port("filer.port.grpc")])
                .args(["-s3".to_string(), format!("-s3.port={}", s.port), port("s3.port.grpc")])
                .args(["-s3.port.iceberg=0", "-s3.port.lance=0"])
                .arg(format!("-s3.config={}", config.display()))
                // Never report to telemetry.seaweedfs.com (and never try: loopback only).
                .args(["-master.telemetry=false", "-master.telemetry.url=http://127.0.0.1:9/"])
                .args(["-volume.max=20", "-master.volumeSizeLimitMB=64"]);
            s.spawn(cmd);
            if let Err(e) = s.wait_http(&format!("/{BUCKET}")) {
                s.retry_or_panic(attempt, &e);
                continue;
            }
            // The gateway answers before it can store (the filer's lock ring comes up some
            // seconds later, and a PUT before that hangs): ready once the bucket exists and
            // a small PUT succeeds within a short bound.
            let deadline = Instant::now() + START_TIMEOUT;
            let mut bucket_made = false;
            loop {
                let why = if bucket_made {
                    match s.client().put_object(
                        "_ready",
                        gocacheprog_s3::s3::client::Upload::Bytes(b""),
                        EMPTY_SHA256,
                        &[],
                        Bounds::within(Duration::from_secs(2)),
                    ) {
                        Ok(()) => return s,
                        Err(e) => e.to_string(),
                    }
                } else {
                    let out = s.s3check(&["create-bucket"]);
                    bucket_made = out.status.success();
                    String::from_utf8_lossy(&out.stderr).into_owned()
                };
                if Instant::now() >= deadline {
                    panic!("seaweedfs never became ready to store: {why}\n--- seaweedfs log ---\n{}", s.log());
                }
                std::thread::sleep(Duration::from_millis(300));
            }
        }
        unreachable!()
    }

    /// moto server (via tests/tools/moto_server.py) with real signature checking: started with
    /// `INITIAL_NO_AUTH_ACTION_COUNT=3`, the 3 unauthenticated actions create
    /// an IAM user, an allow-s3:* inline policy and an access key
    /// (tests/tools/moto_init.py); the bucket is then created signed with that
    /// key, and a request signed with a wrong secret must come back 403, or we
    /// panic.
    pub fn moto() -> S3Server {
        let python = python();
        for attempt in 1..=BIND_ATTEMPTS {
            let mut s = S3Server::prepare("moto", "us-east-1", "", "", BUCKET);
            // tests/tools/moto_server.py = `python3 -m moto.server` plus a fix
            // for moto's signature check on URLs with `+`, `%` in the key or
            // `/` in a query value (getmoto/moto#5948); see that file.
            let mut cmd = Command::new(&python);
            cmd.arg(tools_dir().join("moto_server.py"))
                .args(["-H", "127.0.0.1", "-p", &s.port.to_string()])
                .env("INITIAL_NO_AUTH_ACTION_COUNT", "3")
                .env("PYTHONUNBUFFERED", "1")
                // moto must not pick up the caller's AWS settings
                .env_remove("AWS_ENDPOINT_URL")
                .env_remove("AWS_ENDPOINT_URL_S3");
            s.spawn(cmd);
            // Readiness: `/moto-api/` is moto's own dashboard route; it is not
            // an AWS action, so polling it does not use up one of the 3
            // unauthenticated actions (any S3/IAM request, even a failing one,
            // would).
            if let Err(e) = s.wait_http("/moto-api/") {
                s.retry_or_panic(attempt, &e);
                continue;
            }
            let out = Command::new(&python)
                .arg(tools_dir().join("moto_init.py"))
                .args(["--endpoint", &s.endpoint, "--bucket", &s.bucket, "--region", &s.region])
                .env_remove("AWS_ENDPOINT_URL")
                .env_remove("AWS_ENDPOINT_URL_S3")
                .env_remove("AWS_PROFILE")
                .stdin(Stdio::null())
                .output()
                .expect("run tests/tools/moto_init.py");
            let stderr = String::from_utf8_lossy(&out.stderr);
            if out.status.code() == Some(3) {
                panic!(
                    "moto does not verify SigV4 signatures (a wrong secret was not rejected), \
                     so tests against it would prove nothing: {stderr}\n--- moto log ---\n{}",
                    s.log()
                );
            }
            if !out.status.success() {
                panic!("moto_init.py failed ({}): {stderr}\n--- moto log ---\n{}", out.status, s.log());
            }
            let v: serde_json::Value = serde_json::from_slice(&out.stdout)
                .unwrap_or_else(|e| panic!("moto_init.py printed no JSON ({e}): {stderr}"));
            s.access_key = v["access_key"].as_str().expect("access_key").to_string();
            s.secret_key = super::secret(v["secret_key"].as_str().expect("secret_key"));
            s.role_arn = v["role_arn"].as_str().expect("role_arn").to_string();
            return s;
        }
        unreachable!()
    }

    /// Environment for the program under test.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID".into(), self.access_key.clone()),
            ("AWS_SECRET_ACCESS_KEY".into(), self.secret_key.clone()),
            ("AWS_REGION".into(), self.region.clone()),
            ("AWS_ENDPOINT_URL_S3".into(), self.endpoint.clone()),
        ]
    }

    /// This project's S3 client for the server's bucket, signing with its key.
    pub fn client(&self) -> gocacheprog_s3::s3::client::Client {
        self.client_with(&self.region, &self.secret_key)
    }

    /// The client with another region or secret (to provoke the store's refusals).
    pub fn client_with(&self, region: &str, secret: &str) -> gocacheprog_s3::s3::client::Client {
        use gocacheprog_s3::s3::client::{Client, ClientConfig};
        use gocacheprog_s3::s3::credentials::{CredentialSource, Credentials};
        use gocacheprog_s3::s3::endpoint::{Addressing, Endpoint};
        Client::new(ClientConfig {
            endpoint: Endpoint::parse(&self.endpoint).expect("harness endpoint parses"),
            addressing: Addressing::Path,
            bucket: self.bucket.clone(),
            region: region.to_string(),
            credentials: Some(CredentialSource::fixed(Credentials {
                access_key_id: self.access_key.clone(),
                secret_access_key: secret.to_string(),
                session_token: None,
            })),
            timeout: Duration::from_secs(20),
            connect_timeout: Duration::from_secs(3),
            stall_timeout: Duration::from_secs(10),
            pool_size: 4,
            ca_certificates: None,
            proxy: None,
            upload_headers: Vec::new(),
        })
    }

    /// Kill the server now (SIGKILL, no graceful shutdown) and reap it. The
    /// port refuses connections once this returns. Idempotent.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The server's captured stdout + stderr so far.
    pub fn log(&self) -> String {
        fs::read(&self.log_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_else(|e| format!("<no log at {}: {e}>", self.log_path.display()))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's private temp dir (for s3s-fs, `root/<bucket>/<key>` are
    /// the object files).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Is the process still running?
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Run tests/tools/s3check.py against this server's bucket with its keys;
    /// `args` is the command and its options, e.g. `["list", "--prefix", "p/"]`.
    pub fn s3check(&self, args: &[&str]) -> Output {
        Command::new(python())
            .arg(tools_dir().join("s3check.py"))
            .args(["--endpoint", &self.endpoint, "--region", &self.region])
            .args(["--bucket", &self.bucket])
            .args(["--access-key", &self.access_key, "--secret-key", &self.secret_key])
            .args(args)
            .env_remove("AWS_ENDPOINT_URL")
            .env_remove("AWS_ENDPOINT_URL_S3")
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_SESSION_TOKEN")
            .stdin(Stdio::null())
            .output()
            .expect("run tests/tools/s3check.py")
    }

    /// Like `s3check` but panics (with the server log) on failure; returns stdout.
    pub fn s3check_ok(&self, args: &[&str]) -> String {
        let out = self.s3check(args);
        if !out.status.success() {
            panic!(
                "s3check.py {args:?} against {} failed ({}): {}\n--- {} log ---\n{}",
                self.kind,
                out.status,
                String::from_utf8_lossy(&out.stderr),
                self.kind,
                self.log()
            );
        }
        String::from_utf8(out.stdout).expect("s3check output is UTF-8")
    }

    /// `s3check list`, parsed: one JSON object per object.
    pub fn list(&self, prefix: &str) -> Vec<serde_json::Value> {
        self.s3check_ok(&["list", "--prefix", prefix])
            .lines()
            .map(|l| serde_json::from_str(l).expect("s3check list prints JSON lines"))
            .collect()
    }

    // ---- internals ----

    fn prepare(kind: &'static str, region: &str, ak: &str, sk: &str, bucket: &str) -> S3Server {
        super::secret(sk);
        let dir = unique_temp_dir(kind);
        let port = free_port();
        S3Server {
            kind,
            endpoint: format!("http://127.0.0.1:{port}"),
            region: region.into(),
            access_key: ak.into(),
            secret_key: sk.into(),
            bucket: bucket.into(),
            role_arn: String::new(),
            port,
            log_path: dir.join("server.log"),
            dir,
            child: None,
        }
    }

    fn spawn(&mut self, mut cmd: Command) {
        let log = File::create(&self.log_path).expect("create server log");
        let log2 = log.try_clone().expect("dup server log");
        cmd.current_dir(&self.dir).stdin(Stdio::null()).stdout(Stdio::from(log)).stderr(Stdio::from(log2));
        die_with_parent(&mut cmd);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {} ({:?}): {e}", self.kind, cmd.get_program()));
        self.child = Some(child);
    }

    /// Poll until `GET path` on the S3 port gets any HTTP response. Bounded in
    /// time (START_TIMEOUT) and in count; fails early if the process exits.
    fn wait_http(&mut self, path: &str) -> Result<(), StartError> {
        let start = Instant::now();
        let max_polls = START_TIMEOUT.as_millis() / POLL_INTERVAL.as_millis() + 1;
        for _ in 0..max_polls {
            // The answer must come from *our* child: `free_port` is racy, and
            // another server (e.g. one of a parallel test) may have bound the
            // port first; ours then dies with "address in use" and we retry.
            if http_status(self.port, path).is_some() && self.owns_port() {
                return Ok(());
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                return Err(StartError::Exited(format!("{status}")));
            }
            if start.elapsed() > START_TIMEOUT {
                break;
            }
            std::thread::sleep(POLL_INTERVAL);
        }
        Err(StartError::Timeout(start.elapsed()))
    }

    /// Linux: is the LISTEN socket on our port held by our child? (Elsewhere,
    /// or if /proc can't be read: assume yes.)
    fn owns_port(&self) -> bool {
        let Some(child) = &self.child else {
            return false;
        };
        listener_owned_by(child.id(), self.port).unwrap_or(true)
    }

    fn retry_or_panic(&mut self, attempt: u32, e: &StartError) {
        let log = self.log();
        let port_taken = matches!(e, StartError::Exited(_)) && (log.contains("in use") || log.contains("AddrInUse"));
        self.stop();
        if port_taken && attempt < BIND_ATTEMPTS {
            eprintln!("{}: port taken, retrying: {}", self.kind, log.trim_end());
            return;
        }
        panic!(
            "{} did not start on {} ({e}, attempt {attempt})\n--- {} log ---\n{log}",
            self.kind, self.endpoint, self.kind
        );
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
        if std::env::var_os("S3_TEST_KEEP_DIRS").is_none() {
            let _ = fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("{}: kept {}", self.kind, self.dir.display());
        }
    }
}

#[derive(Debug)]
enum StartError {
    Exited(String),
    Timeout(Duration),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Exited(status) => write!(f, "it exited: {status}"),
            StartError::Timeout(waited) => write!(f, "not ready after {waited:?}"),
        }
    }
}

/// A Garage configuration from the template the demo and benchmark scripts use too.
fn garage_config(dir: &Path, replication: u32, rpc_port: u16, s3_port: u16, admin_port: u16, secret: &str) -> String {
    include_str!("../../scripts/lib/garage.toml.in")
        .replace("@DIR@", &dir.display().to_string())
        .replace("@REPLICATION@", &replication.to_string())
        .replace("@RPC_PORT@", &rpc_port.to_string())
        .replace("@S3_PORT@", &s3_port.to_string())
        .replace("@ADMIN_PORT@", &admin_port.to_string())
        .replace("@RPC_SECRET@", secret)
}

/// A port that was free a moment ago (bind 127.0.0.1:0). Racy by nature; the
/// constructors retry when the server then fails to bind it.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("bind 127.0.0.1:0").port()
}

/// Does anything accept TCP connections on 127.0.0.1:port?
pub fn port_accepts(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
}

/// Status code of a plain `GET path` on 127.0.0.1:port, or None if nothing
/// answers with an HTTP status line (refused, reset, timeout).
pub fn http_status(port: u16, path: &str) -> Option<u16> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(250)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.set_write_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n").ok()?;
    let mut buf = [0u8; 64];
    let mut n = 0;
    while n < 12 {
        match s.read(&mut buf[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    let head = std::str::from_utf8(&buf[..n]).ok()?;
    let code = head.strip_prefix("HTTP/1.")?.get(2..5)?;
    code.parse().ok()
}

/// Some(true) if process `pid` holds the TCP LISTEN socket on `port` (looked
/// up in /proc/net/tcp{,6} by inode, then among /proc/PID/fd), Some(false) if
/// not, None if /proc is unavailable.
pub fn listener_owned_by(pid: u32, port: u16) -> Option<bool> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st ... inode (field 9)
            let (Some(local), Some(state), Some(inode)) = (f.get(1), f.get(3), f.get(9)) else {
                continue;
            };
            let p = local.rsplit(':').next().and_then(|h| u16::from_str_radix(h, 16).ok());
            if p == Some(port) && *state == "0A" {
                inodes.push(format!("socket:[{inode}]"));
            }
        }
    }
    let fds = fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    Some(
        fds.flatten().any(|e| {
            fs::read_link(e.path()).map(|t| inodes.iter().any(|i| t.as_os_str() == i.as_str())).unwrap_or(false)
        }),
    )
}

/// `name` from $PATH, else from $CARGO_HOME/bin or ~/.cargo/bin (CI may run
/// as root with cargo's bin dir not on PATH).
fn find_bin(name: &str) -> PathBuf {
    let mut dirs: Vec<PathBuf> =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect()).unwrap_or_default();
    if let Some(h) = std::env::var_os("CARGO_HOME") {
        dirs.push(PathBuf::from(h).join("bin"));
    }
    if let Some(h) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(&h).join(".cargo/bin"));
        // Where scripts/install-test-deps.sh builds SeaweedFS's `weed`.
        let cache = std::env::var_os("XDG_CACHE_HOME").map_or(PathBuf::from(&h).join(".cache"), PathBuf::from);
        dirs.push(cache.join("gocacheprog-s3/weed-bin"));
    }
    dirs.into_iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("`{name}` not found on PATH or in ~/.cargo/bin: run scripts/install-test-deps.sh"))
}

/// The Python interpreter for the tools: $PYTHON, else `python3` from PATH.
pub fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".into())
}

fn tools_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tools")
}

/// A new directory `gocacheprog-s3-test-<kind>-<pid>-<n>-<nanos>` under the temp dir; the
/// first call sweeps those of test processes that are gone. Every test directory comes
/// from here.
pub fn unique_temp_dir(kind: &str) -> PathBuf {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    static SWEEP: std::sync::Once = std::sync::Once::new();
    SWEEP.call_once(sweep_stale_temp_dirs);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    for _ in 0..100 {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("gocacheprog-s3-test-{kind}-{}-{n}-{nanos:x}", std::process::id()));
        match fs::create_dir(&dir) {
            Ok(()) => return dir,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => panic!("create {}: {e}", dir.display()),
        }
    }
    panic!("could not create a unique temp dir under {}", std::env::temp_dir().display())
}

/// Remove temp dirs left by test processes that died without running
/// destructors (SIGKILL, abort): `gocacheprog-s3-test-<kind>-<pid>-...` whose
/// pid is gone. Linux only (uses /proc to tell whether the pid is alive).
fn sweep_stale_temp_dirs() {
    if !Path::new("/proc/self").exists() {
        return;
    }
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix("gocacheprog-s3-test-")) else {
            continue;
        };
        // <kind>-<pid>-<n>-<nanos>; kind may contain '-' (s3s-fs)
        let pid = rest.rsplit('-').nth(2).and_then(|p| p.parse::<u32>().ok());
        if let Some(pid) = pid {
            if !Path::new(&format!("/proc/{pid}")).exists() {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }
}

/// `n` random bytes as lowercase hex (2n chars), from /dev/urandom.
pub fn random_hex(n: usize) -> String {
    let mut buf = vec![0u8; n];
    File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut buf)).expect("read /dev/urandom");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// Linux: have the kernel SIGKILL the child when the spawning thread dies, so
/// no server outlives a test binary killed without running destructors.
#[cfg(target_os = "linux")]
pub fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    extern "C" {
        fn prctl(option: std::ffi::c_int, ...) -> std::ffi::c_int;
    }
    const PR_SET_PDEATHSIG: std::ffi::c_int = 1;
    const SIGKILL: std::ffi::c_ulong = 9;
    // SAFETY: prctl is async-signal-safe and touches no memory of ours.
    unsafe {
        cmd.pre_exec(|| {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
pub fn die_with_parent(_cmd: &mut Command) {}

/// `name` on $PATH, if it is there.
pub fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| std::env::split_paths(&p).map(|d| d.join(name)).find(|p| p.is_file()))
}

/// A 3-node Garage cluster on 127.0.0.1 with replication factor 3: `node(0)` serves the
/// S3 API the tests use; the others can be stopped while it serves (writes and reads need
/// 2 of the 3 copies). Built with garage's own CLI: connect, layout, key, bucket.
pub struct GarageCluster {
    nodes: Vec<S3Server>,
}

impl GarageCluster {
    /// Starts and configures the cluster; panics with the nodes' logs if it cannot.
    pub fn start() -> GarageCluster {
        let bin = find_bin("garage");
        let access_key = format!("GK{}", random_hex(12));
        let secret_key = random_hex(32);
        let rpc_secret = random_hex(32);
        let mut nodes = Vec::new();
        for n in 0..3 {
            let mut s = S3Server::prepare("garage", "garage", &access_key, &secret_key, BUCKET);
            let (rpc_port, admin_port) = (free_port(), free_port());
            let config = garage_config(&s.dir, 3, rpc_port, s.port, admin_port, &rpc_secret);
            let config_path = s.dir.join("garage.toml");
            fs::write(&config_path, config).expect("write garage.toml");
            let mut cmd = Command::new(&bin);
            cmd.arg("-c").arg(&config_path).arg("server").env("RUST_LOG", "garage=info");
            s.spawn(cmd);
            s.kind = if n == 0 { "garage-cluster" } else { "garage-node" };
            nodes.push(s);
        }
        let cluster = GarageCluster { nodes };
        cluster.configure(&bin);
        cluster
    }

    fn cli(&self, bin: &Path, args: &[&str]) -> String {
        let config = self.nodes[0].dir.join("garage.toml");
        garage_cli(bin, &config, args, &|| self.nodes.iter().map(S3Server::log).collect::<Vec<_>>().join("\n---\n"))
    }

    fn node_id(&self, bin: &Path, n: usize) -> String {
        let config = self.nodes[n].dir.join("garage.toml");
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let out = Command::new(bin).arg("-c").arg(&config).args(["node", "id", "-q"]).stdin(Stdio::null()).output();
            if let Some(out) = out.as_ref().ok().filter(|o| o.status.success()) {
                return String::from_utf8_lossy(&out.stdout).trim().to_string();
            }
            assert!(Instant::now() < deadline, "garage node id of node {n}: {out:?}\n{}", self.nodes[n].log());
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn configure(&self, bin: &Path) {
        let ids: Vec<String> = (0..3).map(|n| self.node_id(bin, n)).collect();
        for id in &ids[1..] {
            self.cli(bin, &["node", "connect", id]);
        }
        for id in &ids {
            let short = id.split('@').next().unwrap_or(id);
            self.cli(bin, &["layout", "assign", "-z", "dc1", "-c", "1G", short]);
        }
        self.cli(bin, &["layout", "apply", "--version", "1"]);
        let s = &self.nodes[0];
        self.cli(bin, &["key", "import", "--yes", "-n", "tests", &s.access_key, &s.secret_key]);
        self.cli(bin, &["bucket", "create", &s.bucket]);
        self.cli(bin, &["bucket", "allow", "--read", "--write", "--owner", &s.bucket, "--key", &s.access_key]);
        // Ready when a signed request would work: the S3 port answers at all.
        let deadline = Instant::now() + START_TIMEOUT;
        while http_status(s.port, &format!("/{}", s.bucket)).is_none() {
            assert!(Instant::now() < deadline, "the cluster's S3 API never answered:\n{}", s.log());
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// The node whose S3 API the tests use.
    pub fn s3(&self) -> &S3Server {
        &self.nodes[0]
    }

    /// Kills node `n` (1 or 2) at once.
    pub fn stop(&mut self, n: usize) {
        assert!(n > 0, "node 0 serves the S3 API");
        self.nodes[n].stop();
    }
}

/// Runs garage's CLI against the node configured in `config`, trying again while the
/// node is still starting; its stdout.
fn garage_cli(bin: &Path, config: &Path, args: &[&str], logs: &dyn Fn() -> String) -> String {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let out = Command::new(bin).arg("-c").arg(config).args(args).stdin(Stdio::null()).output().expect("run garage");
        if out.status.success() {
            return String::from_utf8_lossy(&out.stdout).into_owned();
        }
        if Instant::now() >= deadline {
            panic!("garage {args:?} failed: {}\n--- logs ---\n{}", String::from_utf8_lossy(&out.stderr), logs());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

impl S3Server {
    /// A second key on this Garage server, allowed `permissions` on the bucket
    /// (`"--read"`, `"--write"`; none: it may do nothing): (access key, secret key).
    pub fn garage_key(&self, name: &str, permissions: &[&str]) -> (String, String) {
        assert_eq!(self.kind, "garage", "garage_key needs a Garage server");
        let bin = find_bin("garage");
        let config = self.dir.join("garage.toml");
        let (access_key, secret_key) = (format!("GK{}", random_hex(12)), random_hex(32));
        garage_cli(&bin, &config, &["key", "import", "--yes", "-n", name, &access_key, &secret_key], &|| self.log());
        if !permissions.is_empty() {
            let mut args = vec!["bucket", "allow"];
            args.extend_from_slice(permissions);
            args.extend_from_slice(&[&self.bucket, "--key", &access_key]);
            garage_cli(&bin, &config, &args, &|| self.log());
        }
        super::secret(&secret_key);
        (access_key, secret_key)
    }
}
