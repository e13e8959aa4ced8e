//! The static binary where users put it: alone in an otherwise empty root (no libc, no
//! loader, no shell, no CA files), with only a go toolchain copied in, it serves a
//! `go build` through Garage on 127.0.0.1 over HTTP, and over HTTPS trusting nothing but
//! a CA bundle file. The root is entered with chroot(8), so this needs root (CI has it).
//! go itself needs `/dev/null` there; the cache program needs nothing but its file.

use crate::common;

use common::go::{go_tool, read_stats, stat, Sandbox};
use common::servers::{which, S3Server};
use common::tls::{Pki, TlsFront};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// `scripts/build-static.sh`: builds (or finds up to date) and checks the musl binary.
fn static_binary() -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/build-static.sh");
    let out = Command::new("bash").arg(&script).stdin(Stdio::null()).output().expect("run build-static.sh");
    assert!(out.status.success(), "build-static.sh failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    PathBuf::from(stdout.lines().last().expect("build-static.sh printed no path").trim())
}

/// An empty root holding the binary, a hard-linked copy of go's GOROOT, the test module
/// and empty directories for go's caches: nothing else.
fn empty_root(sb: &Sandbox, binary: &Path) -> PathBuf {
    let root = sb.root.join("root");
    for dir in ["tmp", "home", "gopath", "cache-http", "cache-https"] {
        fs::create_dir_all(root.join(dir)).unwrap();
    }
    fs::copy(binary, root.join("gocacheprog-s3")).unwrap();
    let goroot = go_tool().canonicalize().unwrap().parent().unwrap().parent().unwrap().to_path_buf();
    let copied = Command::new("cp").arg("-al").arg(&goroot).arg(root.join("go")).status().unwrap();
    if !copied.success() {
        // Another filesystem: a real copy.
        assert!(Command::new("cp").arg("-a").arg(&goroot).arg(root.join("go")).status().unwrap().success());
    }
    assert!(Command::new("cp").arg("-a").arg(&sb.module).arg(root.join("src")).status().unwrap().success());
    for absent in ["lib", "lib64", "usr", "bin/sh", "etc", "dev", "proc"] {
        assert!(!root.join(absent).exists(), "{absent} in the empty root");
    }
    // go itself (not the cache program) opens /dev/null to read its tools' build IDs.
    fs::create_dir(root.join("dev")).unwrap();
    let made = Command::new("mknod").args(["-m", "666"]).arg(root.join("dev/null")).args(["c", "1", "3"]).status();
    assert!(made.is_ok_and(|s| s.success()), "mknod /dev/null in the root failed");
    root
}

/// `go build ./...` in the root's /src, with GOCACHEPROG set to the static binary.
fn build_in_root(root: &Path, server: &S3Server, endpoint: &str, cache: &str, prog: &[&str]) -> Output {
    let gocacheprog = format!("/gocacheprog-s3 --stats-file /{cache}.json {} {}", prog.join(" "), server.bucket);
    // Found on the host's PATH: the child's is the root's.
    let chroot = which("chroot").expect("chroot(8) is needed (coreutils)");
    let mut cmd = Command::new(chroot);
    cmd.arg(root).args(["/go/bin/go", "-C", "/src", "build", "./..."]).env_clear().stdin(Stdio::null());
    for (k, v) in [
        ("PATH", "/go/bin"),
        ("GOROOT", "/go"),
        ("GOCACHE", &format!("/{cache}")),
        ("GOPATH", "/gopath"),
        ("GOMODCACHE", "/gopath/pkg/mod"),
        ("HOME", "/home"),
        ("TMPDIR", "/tmp"),
        ("GOTOOLCHAIN", "local"),
        ("GOPROXY", "off"),
        ("GOFLAGS", "-mod=mod"),
        ("CGO_ENABLED", "0"),
        ("GOTELEMETRY", "off"),
        ("GOCACHEPROG", &gocacheprog),
        ("AWS_ENDPOINT_URL_S3", endpoint),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ] {
        cmd.env(k, v);
    }
    for (k, v) in server.env().into_iter().filter(|(k, _)| k != "AWS_ENDPOINT_URL_S3") {
        cmd.env(k, v);
    }
    cmd.output().expect("run chroot")
}

#[test]
fn the_static_binary_serves_a_build_from_an_empty_root() {
    let binary = static_binary();
    let server = S3Server::garage();
    let sb = Sandbox::new("empty-root");
    let root = empty_root(&sb, &binary);

    // Over HTTP: the build fills the bucket.
    let out = build_in_root(&root, &server, &server.endpoint, "cache-http", &[]);
    assert!(out.status.success(), "go build in the empty root failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let stats = read_stats(&root.join("cache-http.json"));
    assert!(stat(&stats, "puts") > 0, "{stats}");
    assert_eq!(stat(&stats, "uploads"), stat(&stats, "puts"), "{stats}");

    // Over HTTPS with only a CA bundle file to trust: a fresh tier gets it all from the bucket.
    let pki = Pki::new(&sb.root.join("pki"));
    let front = TlsFront::start(&pki, server.port());
    fs::copy(&pki.ca_pem, root.join("ca.pem")).unwrap();
    let out = build_in_root(&root, &server, &front.endpoint(), "cache-https", &["--ca-bundle", "/ca.pem"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "go build over HTTPS in the empty root failed:\n{stderr}");
    let stats = read_stats(&root.join("cache-https.json"));
    assert!(stat(&stats, "remote_hits") > 0, "{stats}\n{stderr}");
    assert_eq!(stat(&stats, "get_errors"), 0, "{stats}\n{stderr}");
    // All but go's one never-stored action; a local hit is only ever of what go put again.
    let hits = stat(&stats, "remote_hits") + stat(&stats, "local_hits");
    assert!(hits >= stat(&stats, "gets") - 1, "{stats}\n{stderr}");
    assert!(stat(&stats, "local_hits") <= stat(&stats, "puts"), "{stats}\n{stderr}");
}

/// The Dockerfile stays a thin wrapper: each RUN step is a script of this repository that
/// this suite runs too (Docker itself cannot run here).
#[test]
fn the_dockerfile_runs_only_scripts_the_tests_run() {
    let dockerfile = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Dockerfile")).unwrap();
    let runs: Vec<&str> = dockerfile.lines().filter_map(|l| l.trim().strip_prefix("RUN ")).collect();
    assert!(!runs.is_empty(), "no RUN step in the Dockerfile");
    for run in runs {
        assert!(run.starts_with("scripts/build-static.sh"), "a Dockerfile step that is not a tested script: {run}");
    }
    assert!(dockerfile.contains("FROM scratch"), "no scratch image");
    assert!(dockerfile.contains("ENV GOCACHEPROG="), "no golang image with GOCACHEPROG preset");
}
