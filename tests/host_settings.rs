//! Settings inherited from a host never fail a build: a CI image or chroot inherits
//! variables that name files it lacks. Each remote-tier setting that cannot be used (a CA
//! bundle, the shared credential and config files, an endpoint) switches the bucket off
//! with one line naming the setting and the file; go's build succeeds on the local tier.
//! Real go builds through the binary, with Garage on 127.0.0.1 as the bucket that a good
//! setting reaches.

use crate::common;

use common::go::{stat, Prog, Sandbox};
use common::remote::{refs, store_env};
use common::servers::S3Server;
use std::fs;

#[test]
fn unusable_host_settings_switch_the_bucket_off_and_the_build_goes_on() {
    let server = S3Server::garage();
    let sb = Sandbox::new("host-settings");
    let host = sb.root.join("host");
    fs::create_dir_all(host.join("a-directory")).unwrap();
    fs::write(host.join("not-a-bundle.pem"), "no certificates here\n").unwrap();
    fs::write(host.join("not-ini"), "this is not an ini file\n").unwrap();
    fs::write(host.join("binary"), [0x7f, b'E', b'L', b'F', 0xff, 0xfe, 0]).unwrap();
    let path = |name: &str| host.join(name).to_string_lossy().into_owned();

    let cases: Vec<(&str, String)> = vec![
        ("AWS_CA_BUNDLE", path("missing.pem")),
        ("AWS_CA_BUNDLE", path("not-a-bundle.pem")),
        ("AWS_SHARED_CREDENTIALS_FILE", path("missing-credentials")),
        ("AWS_SHARED_CREDENTIALS_FILE", path("a-directory")),
        ("AWS_CONFIG_FILE", path("missing-config")),
        ("AWS_CONFIG_FILE", path("not-ini")),
        ("AWS_CONFIG_FILE", path("binary")),
        ("AWS_ENDPOINT_URL", "localhost:3900".to_string()),
    ];
    let build = |tier: &str, setting: Option<(&str, &str)>, args: &[&str]| {
        let mut env = store_env(&sb, &server, &server.endpoint, tier);
        if let Some((name, value)) = setting {
            if name == "AWS_ENDPOINT_URL" {
                // The S3-specific variable would win over it.
                env.retain(|(k, _)| k != "AWS_ENDPOINT_URL_S3");
            }
            env.push((name.to_string(), value.to_string()));
        }
        let run = sb.spawn(args, &refs(&env), Prog::Ours(&[&server.bucket])).wait();
        run.assert_ok();
        (run, sb.last_stats())
    };

    // With good settings the build fills the bucket, and the program says nothing.
    let (run, stats) = build("warm", None, &["build", "./..."]);
    assert!(stat(&stats, "puts") > 0, "{stats}");
    assert_eq!(stat(&stats, "uploads"), stat(&stats, "puts"), "{stats}\n{}", run.stderr);
    assert!(!run.stderr.contains("gocacheprog-s3:"), "{}", run.stderr);

    // A fresh tier would get everything from the bucket; with the setting unusable it gets
    // nothing from it, and the build compiles and stores locally.
    let (run, stats) = build("cold", Some(cases[0].0).zip(Some(cases[0].1.as_str())), &["build", "./..."]);
    assert_eq!(stat(&stats, "remote_disabled"), 1, "{stats}\n{}", run.stderr);
    assert_eq!(stat(&stats, "remote_hits") + stat(&stats, "uploads"), 0, "{stats}");
    assert!(stat(&stats, "puts") > 0, "{stats}");

    // Every unusable setting: one line naming it and its file, the bucket off, the build
    // served by the local tier (nothing compiled).
    for (name, value) in &cases {
        let (run, stats) = build("warm", Some((name, value)), &["build", "-x", "./..."]);
        let ours: Vec<&str> = run.stderr.lines().filter(|l| l.starts_with("gocacheprog-s3:")).collect();
        assert_eq!(ours.len(), 1, "{name}={value}: not exactly one line from the cache program:\n{}", run.stderr);
        assert!(ours[0].contains(name) && ours[0].contains(value.as_str()), "{name}={value}: {}", ours[0]);
        assert_eq!(stat(&stats, "remote_disabled"), 1, "{name}={value}: {stats}");
        assert!(stat(&stats, "local_hits") > 0, "{name}={value}: {stats}");
        assert!(run.compile_lines().is_empty(), "{name}={value}: compiled:\n{}", run.compile_lines().join("\n"));
    }
}
