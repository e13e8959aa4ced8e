//! go through the binary under test against a bucket: the environment for a store
//! (directly, or through a proxy in front of it) and a local tier per run.

use super::go::{GoRun, Prog, Sandbox};
use super::servers::S3Server;

/// go's environment for `server` reached at `endpoint` (the server's own, or a proxy's),
/// with the local tier `tier` (a directory name inside the sandbox, so each run can start
/// from an empty one). The credential chain's real defaults are never reachable from here.
pub fn store_env(sb: &Sandbox, server: &S3Server, endpoint: &str, tier: &str) -> Vec<(String, String)> {
    let gocache = sb.root.join(tier);
    std::fs::create_dir_all(&gocache).unwrap();
    let mut env: Vec<(String, String)> = server.env();
    env.retain(|(k, _)| k != "AWS_ENDPOINT_URL_S3");
    env.push(("AWS_ENDPOINT_URL_S3".into(), endpoint.to_string()));
    env.push(("GOCACHE".into(), gocache.to_string_lossy().into_owned()));
    env.push(("AWS_EC2_METADATA_DISABLED".into(), "true".into()));
    env
}

/// `(name, value)` pairs as the `&str` pairs `Sandbox::spawn` takes.
pub fn refs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// Runs go through the cache program backed by `server` (at `endpoint`), on the local
/// tier `tier`, with `prog_args` before the bucket name.
pub fn go_via(sb: &Sandbox, server: &S3Server, endpoint: &str, tier: &str, args: &[&str], prog_args: &[&str]) -> GoRun {
    let env = store_env(sb, server, endpoint, tier);
    let mut all_args: Vec<&str> = prog_args.to_vec();
    all_args.push(&server.bucket);
    sb.spawn(args, &refs(&env), Prog::Ours(&all_args)).wait()
}

/// Runs go against `server` directly.
pub fn go_remote(sb: &Sandbox, server: &S3Server, tier: &str, args: &[&str], prog_args: &[&str]) -> GoRun {
    go_via(sb, server, &server.endpoint, tier, args, prog_args)
}

/// go's environment for a store on 127.0.0.1:`port` where nothing listens.
pub fn unreachable_store_env(port: u16) -> Vec<(String, String)> {
    [
        ("AWS_ACCESS_KEY_ID", "GK0000".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "secret".to_string()),
        ("AWS_REGION", "garage".to_string()),
        ("AWS_ENDPOINT_URL_S3", format!("http://127.0.0.1:{port}")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}
