//! The job report: a CI job's go commands (build, vet, test) each write a session file
//! into one `--stats-dir` (and a `--metrics-csv` row), and `gocacheprog-s3 report` sums
//! them, on stdout and into a real `$GITHUB_STEP_SUMMARY` file; checked against each
//! session's own `--stats-file`.

use crate::common;

use common::go::{bin, read_stats, stat, GoRun, Prog, Sandbox};
use common::remote::{refs, store_env};
use common::servers::{free_port, S3Server};
use serde_json::Value;
use std::fs;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// Runs `gocacheprog-s3 report` with `args` and `env` (nothing else from ours).
fn report(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(bin())
        .arg("report")
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    assert!(out.status.success(), "report failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr));
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Counters that are amounts (summed), as every session's `--stats-file` has them.
fn summed_counters(first: &Value) -> Vec<String> {
    let peaks = ["temp_bytes_peak", "manifest_entries", "duration_ms"];
    first.as_object().unwrap().keys().filter(|k| !peaks.contains(&k.as_str())).cloned().collect()
}

#[test]
fn a_jobs_go_commands_are_summed_into_one_report() {
    let server = S3Server::garage();
    let sb = Sandbox::new("job-report");
    let job_dir = sb.root.join("job-stats");
    let csv = sb.root.join("job.csv");
    let (dir_arg, csv_arg) = (job_dir.to_string_lossy().into_owned(), csv.to_string_lossy().into_owned());

    // An earlier job fills the bucket (its sessions go elsewhere).
    for args in [&["build", "./..."][..], &["vet", "./..."], &["test", "./..."]] {
        common::remote::go_remote(&sb, &server, "runner-1", args, &[]).assert_ok();
    }

    // This job: a fresh runner's build, vet and test from the bucket, then a build whose
    // store is down (its session switches the bucket off and says so).
    let job_args = ["--stats-dir", dir_arg.as_str(), "--metrics-csv", csv_arg.as_str()];
    let mut runs: Vec<GoRun> = Vec::new();
    for args in [&["build", "./..."][..], &["vet", "./..."], &["test", "./..."]] {
        let env = store_env(&sb, &server, &server.endpoint, "runner-2");
        let prog: Vec<&str> = job_args.iter().copied().chain([server.bucket.as_str()]).collect();
        runs.push(sb.spawn(args, &refs(&env), Prog::Ours(&prog)).wait());
    }
    let down = store_env(&sb, &server, &format!("http://127.0.0.1:{}", free_port()), "runner-3");
    let prog: Vec<&str> = job_args.iter().copied().chain([server.bucket.as_str()]).collect();
    runs.push(sb.spawn(&["build", "./..."], &refs(&down), Prog::Ours(&prog)).wait());
    let mut each = Vec::new();
    for run in &runs {
        run.assert_ok();
        each.push(read_stats(run.stats_file.as_deref().unwrap()));
    }
    assert!(each.iter().map(|s| stat(s, "remote_hits")).sum::<u64>() > 0, "the job used the bucket: {each:?}");
    assert_eq!(stat(&each[3], "remote_disabled"), 1, "{}", each[3]);
    let files: Vec<_> = fs::read_dir(&job_dir).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(files.len(), 4, "one file per go command: {files:?}");

    // The report, with a step summary that already holds an earlier step's text.
    let summary = sb.root.join("step-summary.md");
    fs::write(&summary, "## earlier step\n\nfine\n").unwrap();
    let summary_arg = summary.to_string_lossy().into_owned();
    let out = report(&["--stats-dir", &dir_arg], &[("GITHUB_STEP_SUMMARY", &summary_arg), ("HOME", "/nonexistent")]);
    let text = stdout(&out);
    eprintln!("{text}");
    let sum = |name: &str| each.iter().map(|s| stat(s, name)).sum::<u64>();
    assert!(text.starts_with("gocacheprog-s3 job report: 4 go commands (build x2, vet, test), "), "{text}");
    let gets_line = format!(
        "  gets      {} ({:.1}% answered by the cache): {} local, {} from the bucket ({} prefetched); {} misses",
        sum("gets"),
        (sum("local_hits") + sum("remote_hits")) as f64 * 100.0 / sum("gets") as f64,
        sum("local_hits"),
        sum("remote_hits"),
        sum("prefetch_hits"),
        sum("misses"),
    );
    assert!(text.contains(&gets_line), "expected {gets_line:?} in\n{text}");
    assert!(text.contains("the bucket switched off in 1 of 4 sessions"), "{text}");
    assert!(text.lines().any(|l| l.starts_with("    go build: bucket switched off")), "{text}");

    let md = fs::read_to_string(&summary).unwrap();
    assert!(md.starts_with("## earlier step\n\nfine\n### Go build cache (gocacheprog-s3)\n"), "appended:\n{md}");
    assert!(md.contains("| go commands | 4 (build x2, vet, test), "), "{md}");
    assert!(md.contains(&format!("| gets | {} (", sum("gets"))), "{md}");

    // --json: every counter is the sum of the sessions' own stats files, and the CSV rows
    // of the same sessions give the same sums.
    let json: Value =
        serde_json::from_str(&stdout(&report(&["--json", "--stats-dir", &dir_arg], &[("HOME", "/nonexistent")])))
            .unwrap();
    let from_csv: Value =
        serde_json::from_str(&stdout(&report(&["--json", &csv_arg], &[("HOME", "/nonexistent")]))).unwrap();
    assert_eq!(json["sessions"], 4);
    for name in summed_counters(&each[0]) {
        assert_eq!(json["totals"][&name].as_u64(), Some(sum(&name)), "{name}: {json}");
        assert_eq!(from_csv["totals"][&name], json["totals"][&name], "{name} from the CSV");
    }
    let commands: Vec<&str> = json["commands"].as_array().unwrap().iter().map(|c| c["go"].as_str().unwrap()).collect();
    assert_eq!(commands, ["build", "vet", "test"]);
    assert_eq!(json["switched_off_sessions"], 1);
    assert!(json["notices"][0]["text"].as_str().unwrap().contains("connection refused"), "{json}");
}

#[test]
fn report_without_stats_says_what_it_needs() {
    let out = report(&[], &[("HOME", "/nonexistent")]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--stats-dir DIR (or GOCACHEPROG_S3_STATS_DIR"), "{err}");
    // An empty directory is a job that ran no go command through the cache: said, not failed.
    let dir = common::go::scratch_dir("empty-job");
    let out = report(&["--stats-dir", &dir.to_string_lossy()], &[("HOME", "/nonexistent")]);
    assert!(stdout(&out).contains("no sessions recorded"));
    let bad = dir.join("bad.json");
    fs::write(&bad, "{\"gets\": ").unwrap();
    let out = report(&[&bad.to_string_lossy()], &[("HOME", "/nonexistent")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a stats file"));
    assert!(!Path::new(&dir).join("step-summary.md").exists());
    let _ = fs::remove_dir_all(dir);
}
