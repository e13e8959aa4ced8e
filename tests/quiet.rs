//! Quiet when asked: a default session that succeeds prints nothing, and with
//! `--log-file` nothing of ours reaches stderr, failures and configuration errors
//! included (gotestsum and other wrappers treat any stderr as trouble).

use crate::common;

use common::go::{bin, quote_field, run_cacheprog, scratch_dir, stat, Prog, Sandbox};
use common::remote::{go_remote, refs, unreachable_store_env};
use common::servers::{free_port, S3Server};
use std::fs;
use std::path::Path;
use std::time::Duration;

/// Lines of ours in an output (go's own lines do not start with our name).
fn our_lines(text: &str) -> Vec<&str> {
    text.lines().filter(|l| l.contains("gocacheprog-s3")).collect()
}

#[test]
fn a_default_session_that_succeeds_prints_nothing() {
    let server = S3Server::garage();
    let sb = Sandbox::new("quiet-default");
    // Local only, then a bucket: cold (fills it), from the bucket onto an empty tier, and a
    // test run; every command's stderr (go's and ours: go hands us its stderr) is empty.
    let local = sb.go(&["build", "./..."], &[]);
    local.assert_ok();
    assert_eq!(local.stderr, "", "local-only build");
    for (tier, args) in
        [("cold", &["build", "./..."][..]), ("warm", &["build", "./..."][..]), ("test", &["test", "./..."][..])]
    {
        let run = go_remote(&sb, &server, tier, args, &[]);
        run.assert_ok();
        assert_eq!(run.stderr, "", "go {args:?} on tier {tier}");
    }
    let stats = sb.last_stats();
    assert!(stat(&stats, "remote_hits") > 0, "the last run used the bucket: {stats}");
}

#[test]
fn with_a_log_file_a_failing_store_leaves_stderr_empty() {
    let sb = Sandbox::new("quiet-log-file");
    let log = sb.root.join("cache.log");
    let env = unreachable_store_env(free_port());
    let log_arg = log.to_string_lossy().into_owned();

    // Without it, the failure is said on stderr (what the log file must take over).
    let loud = sb.spawn(&["build", "./..."], &refs(&env), Prog::Ours(&["cache"])).wait();
    loud.assert_ok();
    assert!(loud.stderr.contains("bucket switched off"), "{}", loud.stderr);

    let tier = sb.root.join("tier-quiet").to_string_lossy().into_owned();
    let mut quiet_env = env.clone();
    quiet_env.push(("GOCACHE".into(), tier));
    let quiet = sb.spawn(&["build", "./..."], &refs(&quiet_env), Prog::Ours(&["--log-file", &log_arg, "cache"])).wait();
    quiet.assert_ok();
    assert_eq!(quiet.stderr, "", "stderr with --log-file");
    let text = fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| l.contains("bucket switched off")).collect();
    assert_eq!(lines.len(), 1, "{text}");
    // Each line says when and which process: sessions share one file.
    assert!(lines[0].starts_with("20") && lines[0].contains("Z gocacheprog-s3["), "{}", lines[0]);
    assert_eq!(stat(&sb.last_stats(), "remote_disabled"), 1);

    // The variable does the same, and -v's summary goes there too.
    let log2 = sb.root.join("env.log");
    let mut env2 = quiet_env.clone();
    env2.push(("GOCACHEPROG_S3_LOG_FILE".into(), log2.to_string_lossy().into_owned()));
    let run = sb.spawn(&["build", "./..."], &refs(&env2), Prog::Ours(&["-v", "cache"])).wait();
    run.assert_ok();
    assert_eq!(run.stderr, "");
    assert!(fs::read_to_string(&log2).unwrap().contains("session summary"));
}

#[test]
fn with_a_log_file_configuration_errors_go_there_too() {
    let sb = Sandbox::new("quiet-config");
    let log = sb.root.join("cache.log");
    let log_arg = log.to_string_lossy().into_owned();
    // A bad value (found while building the configuration), and an unknown option (found
    // by the parser, before the option table knows --log-file's value).
    for (n, bad) in [["--local-max-age", "soon"], ["--frobnicate", "x"]].iter().enumerate() {
        let prog = format!(
            "{} --log-file {} {} {}",
            quote_field(&bin().to_string_lossy()),
            quote_field(&log_arg),
            bad[0],
            bad[1]
        );
        let run = sb.spawn(&["build", "./..."], &[], Prog::Raw(prog)).wait();
        assert!(!run.status.success(), "a configuration error fails the go command");
        assert_eq!(our_lines(&run.stderr), Vec::<&str>::new(), "case {n}: {}", run.stderr);
        let text = fs::read_to_string(&log).unwrap();
        assert_eq!(text.lines().filter(|l| l.contains("configuration error")).count(), n + 1, "{text}");
        assert!(text.contains(bad[0]), "{text}");
    }

    // Driven directly: exit status 2, and not one byte on stderr.
    let dir = scratch_dir("quiet-direct");
    let direct_log = dir.join("direct.log");
    let run = run_cacheprog(
        &["--log-file", &direct_log.to_string_lossy(), "--local-max-age", "soon"],
        &[("GOCACHE", &dir.to_string_lossy())],
        Vec::new(),
        Duration::from_secs(30),
    );
    assert_eq!(run.status.code(), Some(2));
    assert_eq!(run.stderr, "");
    assert!(fs::read_to_string(&direct_log).unwrap().contains("--local-max-age: expected a duration"));
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn a_log_file_that_cannot_be_opened_is_said_on_stderr() {
    let dir = scratch_dir("quiet-unopenable");
    let missing = dir.join("no/such/dir/cache.log");
    let run = run_cacheprog(
        &["--log-file", &missing.to_string_lossy(), "-v"],
        &[("GOCACHE", &dir.join("cache").to_string_lossy())],
        b"{\"ID\":1,\"Command\":\"close\"}\n\n".to_vec(),
        Duration::from_secs(30),
    );
    assert_eq!(run.status.code(), Some(0), "{}", run.stderr);
    assert!(
        run.stderr.contains("cannot open --log-file") && run.stderr.contains("logging to stderr"),
        "{}",
        run.stderr
    );
    // And the messages then come to stderr as without the option.
    assert!(run.stderr.contains("session summary"), "{}", run.stderr);
    assert!(!Path::new(&missing).exists());
    let _ = fs::remove_dir_all(dir);
}
