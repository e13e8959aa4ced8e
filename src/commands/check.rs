//! `check`: what the cache would use (every setting and where it came from, which
//! credentials), then a probe of the bucket with timings, each failure with its cause and
//! the change that fixes it. Exit status 0 when the cache can use the bucket, 1 when not.
//! Each `--read-prefix` scope is probed for reads only (listed, one object read): one that
//! cannot be read is a warning, since the cache works without it.

use crate::cli::{Config, RemoteConfig, Setting};
use crate::random::{self, Rng};
use crate::remote::layout::Layout;
use crate::s3::client::{Bounds, Client, Upload};
use crate::s3::credentials::chain::{self, Source};
use crate::s3::credentials::{self, CredentialSource, Issued};
use crate::s3::error::{Refusal, S3Error};
use serde_json::json;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

/// One step of the check.
#[derive(Debug)]
struct Step {
    name: &'static str,
    ok: bool,
    /// A failure that stops the cache from working (others are warnings).
    fatal: bool,
    ms: Option<f64>,
    detail: String,
    cause: Option<String>,
    fix: Option<String>,
}

impl Step {
    fn ok(name: &'static str, start: Instant, detail: impl Into<String>) -> Step {
        Step { name, ok: true, fatal: false, ms: Some(ms(start)), detail: detail.into(), cause: None, fix: None }
    }

    fn failed(name: &'static str, fatal: bool, detail: impl Into<String>, cause: String, fix: String) -> Step {
        Step { name, ok: false, fatal, ms: None, detail: detail.into(), cause: Some(cause), fix: Some(fix) }
    }
}

/// The credentials the chain found (or not).
#[derive(Debug, Default)]
struct Found {
    source: Option<String>,
    access_key_id: Option<String>,
    expires: Option<SystemTime>,
    /// The SSO login behind the credentials: its token's expiry and whether it refreshes.
    login: Option<String>,
    tried: Vec<String>,
}

struct Report<'a> {
    remote: &'a RemoteConfig,
    settings: &'a [Setting],
    credentials: Found,
    probe_key: String,
    steps: Vec<Step>,
    warnings: Vec<String>,
}

impl Report<'_> {
    fn ok(&self) -> bool {
        !self.steps.iter().any(|s| !s.ok && s.fatal)
    }
}

/// Runs the check and prints the report (text, or JSON with `--json`).
pub fn run(config: &Config<RemoteConfig>) -> ExitCode {
    let report = check(config);
    let text = if config.json { to_json(&report) } else { to_text(&report) };
    super::print(&text);
    if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn ms(start: Instant) -> f64 {
    (start.elapsed().as_secs_f64() * 10_000.0).round() / 10.0
}

fn check(config: &Config<RemoteConfig>) -> Report<'_> {
    let remote = &config.remote;
    let layout = Layout::new(&remote.prefix);
    let probe_key = layout.under(&format!("_check/{:016x}", random::nonce()));
    let mut report = Report {
        remote,
        settings: &config.settings,
        credentials: Found::default(),
        probe_key,
        steps: Vec::new(),
        warnings: Vec::new(),
    };
    let signing = if remote.no_sign_request {
        report.credentials.source = Some("none: unsigned requests (--no-sign-request)".into());
        None
    } else {
        match find_credentials(remote, &mut report) {
            Some(issued) => Some(CredentialSource::fixed(issued.credentials)),
            None => return report,
        }
    };
    let client = Client::new(remote.client_config(signing, 2));
    if remote.read_only || remote.no_sign_request {
        let probe_key = report.probe_key.clone();
        probe_reads(&client, remote, &layout, &probe_key, OWN, &mut report);
    } else {
        probe_round_trip(&client, remote, &mut report);
    }
    probe_read_scopes(&client, remote, &mut report);
    if let Some(region) = client.learned_region() {
        report.warnings.push(format!(
            "the bucket is in region {region}, not {}: the cache finds out on every start at the cost of a \
             round trip; set --region {region} (or AWS_REGION={region})",
            remote.region
        ));
    }
    let offset = client.clock_offset_ms();
    if offset.unsigned_abs() > 60_000 {
        report.warnings.push(format!(
            "this machine's clock is {:.0} s off the store's: requests are signed with the store's time, but fix the \
             clock (NTP) so that other tools work too",
            offset as f64 / 1000.0
        ));
    }
    report
}

/// Resolves the credential chain as the cache would; `None` (and a failed step) when it
/// finds nothing usable.
fn find_credentials(remote: &RemoteConfig, report: &mut Report) -> Option<Issued> {
    let start = Instant::now();
    let ctx = credentials::system(remote.profile.clone());
    let resolved = match chain::resolve(&ctx) {
        Ok(resolved) => resolved,
        Err(e) => {
            report.steps.push(Step::failed(
                "credentials",
                true,
                "",
                format!("a configured credential source cannot work: {e}"),
                "fix that source, or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY".into(),
            ));
            return None;
        }
    };
    report.credentials.tried = resolved.tried.clone();
    let Some(source) = resolved.source else {
        report.steps.push(Step::failed(
            "credentials",
            true,
            format!("tried: {}", resolved.tried.join("; ")),
            "no AWS credentials found: the cache would read the bucket anonymously and upload nothing".into(),
            "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or GOCACHEPROG_S3_*), AWS_PROFILE, or give the job a \
             web identity, container or instance role; --no-sign-request for a public-read bucket"
                .into(),
        ));
        return None;
    };
    report.credentials.source = Some(source.describe());
    let fetched = source.fetch(&ctx);
    report.credentials.login = source.sso().map(|role| sso_login(role, &ctx));
    match fetched {
        Ok(issued) => {
            report.credentials.access_key_id = Some(issued.credentials.access_key_id.clone());
            report.credentials.expires = issued.expires;
            let detail = format!("{} (access key {})", source.describe(), issued.credentials.access_key_id);
            report.steps.push(Step::ok("credentials", start, detail));
            Some(issued)
        }
        Err(e) => {
            let fix = match (&source, source.sso()) {
                (Source::Instance(_), _) => {
                    "no instance role answered: attach an instance profile, or set credentials".into()
                }
                (_, Some(role)) if e.contains("aws sso login") => format!("{}, then check again", role.login.advice()),
                (Source::Login(session), _) if e.contains("aws login") => {
                    format!("{}, then check again", session.advice())
                }
                _ => "fix that source (the message says what it answered), or set other credentials".into(),
            };
            report.steps.push(Step::failed(
                "credentials",
                true,
                source.describe(),
                format!("{}: {e}", source.describe()),
                fix,
            ));
            None
        }
    }
}

/// One line on an SSO login: which, when its token expires, whether it is refreshed.
fn sso_login(role: &credentials::sso::Sso, ctx: &credentials::Context) -> String {
    let login = &role.login;
    match login.status(ctx) {
        Ok(status) => {
            let refresh = match status.refreshable {
                Ok(until) => format!(
                    "refreshed through SSO OIDC ({}) until its registration expires {}",
                    login.oidc,
                    httpdate::fmt_http_date(until)
                ),
                Err(why) => format!("not refreshable ({why}): {} when it expires", login.advice()),
            };
            let token = if status.expires > SystemTime::now() {
                format!("token expires {}", expiry(status.expires))
            } else {
                format!("token expired {}", httpdate::fmt_http_date(status.expires))
            };
            format!("SSO login: {} at {}, {token}; {refresh}", login.label(), role.portal)
        }
        Err(e) => format!("SSO login: {}: {e}", login.label()),
    }
}

fn bounds(remote: &RemoteConfig) -> Bounds {
    Bounds::within(remote.timeout)
}

/// Write, read back, verify, delete the probe object; then list the prefix.
fn probe_round_trip(client: &Client, remote: &RemoteConfig, report: &mut Report) {
    let key = report.probe_key.clone();
    let mut rng = Rng::fresh();
    let body: Vec<u8> = (0..1024).map(|_| (rng.next_u64() & 0xff) as u8).collect();
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&body));

    let start = Instant::now();
    // Each request is tried as the cache tries it (retries, re-signing after a region or
    // clock lesson), within --timeout.
    let put = client.put_object(&key, Upload::Bytes(&body), &sha, &[], bounds(remote));
    if let Err(e) = put {
        report.steps.push(failure("write", true, &e, "s3:PutObject", &object_arn(remote), report));
        return;
    }
    let sse = if remote.upload_headers.is_empty() { String::new() } else { ", server-side encrypted".into() };
    report.steps.push(Step::ok("write", start, format!("{key}: {} bytes{sse}", body.len())));

    let start = Instant::now();
    let mut sink = Vec::new();
    let got = client.get_object(&key, &mut sink, bounds(remote)).map(|info| info.map(|_| sink));
    match got {
        Err(e) => {
            report.steps.push(failure("read", true, &e, "s3:GetObject", &object_arn(remote), report));
            delete_probe(client, remote, report);
            return;
        }
        Ok(None) => {
            report.steps.push(Step::failed(
                "read",
                true,
                key.clone(),
                "the object just written is not there: the store lost it or serves another bucket".into(),
                "check --endpoint and --bucket (a load balancer in front of several stores?)".into(),
            ));
            return;
        }
        Ok(Some(data)) => {
            report.steps.push(Step::ok("read", start, format!("{} bytes", data.len())));
            if data == body {
                report.steps.push(Step::ok("verify", Instant::now(), "the bytes read are the bytes written"));
            } else {
                report.steps.push(Step::failed(
                    "verify",
                    true,
                    format!("{} bytes read, {} written", data.len(), body.len()),
                    "the store returned other bytes than were written".into(),
                    "check what sits between this machine and the store (a proxy that rewrites bodies?)".into(),
                ));
            }
        }
    }
    delete_probe(client, remote, report);
    list_prefix(client, remote, &Layout::new(&remote.prefix), OWN, report);
}

/// The probe object goes again; the cache itself never deletes, so a refusal is a warning.
fn delete_probe(client: &Client, remote: &RemoteConfig, report: &mut Report) {
    let key = report.probe_key.clone();
    let start = Instant::now();
    match client.delete_object(&key, bounds(remote)) {
        Ok(()) => report.steps.push(Step::ok("delete", start, key)),
        Err(e) => {
            let mut step = failure("delete", false, &e, "s3:DeleteObject", &object_arn(remote), report);
            step.fix = Some(format!(
                "the cache never deletes, so it does not need this; remove {key} by hand, or {}",
                step.fix.unwrap_or_default()
            ));
            report.steps.push(step);
        }
    }
}

/// The steps of one scope's read probe: their names, and whether a failure to read
/// stops the cache (the own scope) or not (a `--read-prefix` scope).
#[derive(Clone, Copy)]
struct ScopeSteps {
    list: &'static str,
    read: &'static str,
    fatal: bool,
}

const OWN: ScopeSteps = ScopeSteps { list: "list", read: "read", fatal: true };
const READ_SCOPE: ScopeSteps = ScopeSteps { list: "scope list", read: "scope read", fatal: false };

/// Lists the scope's prefix (what fast misses need); a refusal is a warning.
fn list_prefix(
    client: &Client,
    remote: &RemoteConfig,
    layout: &Layout,
    steps: ScopeSteps,
    report: &mut Report,
) -> Option<Vec<String>> {
    let prefix = layout.under("");
    let start = Instant::now();
    match client.list_objects(&prefix, None, Some(5), bounds(remote)) {
        Ok(page) => {
            let keys: Vec<String> = page.objects.iter().map(|o| o.key.clone()).collect();
            let detail = if keys.is_empty() { format!("{prefix}: empty") } else { format!("{prefix}: has objects") };
            report.steps.push(Step::ok(steps.list, start, detail));
            Some(keys)
        }
        Err(e) => {
            let mut step =
                failure(steps.list, false, &e, "s3:ListBucket", &format!("arn:aws:s3:::{}", remote.bucket), report);
            step.fix = Some(format!(
                "{} (without it the cache works, but answers no miss without a round trip)",
                step.fix.unwrap_or_default()
            ));
            step.detail = format!("{prefix}: {}", step.detail);
            report.steps.push(step);
            None
        }
    }
}

/// Read probe of a scope: list the prefix, then read one output, or ask for the absent
/// `probe_key` when the prefix has none.
fn probe_reads(
    client: &Client,
    remote: &RemoteConfig,
    layout: &Layout,
    probe_key: &str,
    steps: ScopeSteps,
    report: &mut Report,
) {
    let keys = list_prefix(client, remote, layout, steps, report).unwrap_or_default();
    let key = keys.iter().find(|k| layout.parse_key(k).is_some()).cloned().unwrap_or_else(|| probe_key.to_string());
    let start = Instant::now();
    let limited = Bounds { max_body: remote.max_object_size, ..bounds(remote) };
    let got = client.get_object(&key, &mut Vec::new(), limited);
    match got {
        Ok(Some(info)) => {
            report.steps.push(Step::ok(steps.read, start, format!("{key}: {} bytes", info.size.unwrap_or(0))))
        }
        Ok(None) => report.steps.push(Step::ok(steps.read, start, format!("{key}: absent, as expected"))),
        Err(e) => {
            let arn = format!("arn:aws:s3:::{}/{}*", remote.bucket, layout.under(""));
            let mut step = failure(steps.read, steps.fatal, &e, "s3:GetObject", &arn, report);
            if e.is_access_denied() && key == probe_key {
                step.cause = Some(format!(
                    "{} (S3 also answers 403 for a missing key when s3:ListBucket is not granted)",
                    step.cause.unwrap_or_default()
                ));
            }
            if !steps.fatal && e.is_access_denied() {
                step.fix = Some(format!(
                    "grant s3:GetObject on {arn} (reads only: this session never writes there), and s3:ListBucket \
                     on arn:aws:s3:::{} with the condition s3:prefix = {}; without it, this session reads only \
                     its own scope",
                    remote.bucket,
                    layout.under("")
                ));
            }
            step.detail = format!("{key}: {}", step.detail);
            report.steps.push(step);
        }
    }
}

/// Probes each `--read-prefix` scope for reads (never a write): a scope that cannot be
/// read is a warning.
fn probe_read_scopes(client: &Client, remote: &RemoteConfig, report: &mut Report) {
    for prefix in &remote.read_prefixes {
        let layout = Layout::new(prefix);
        let probe_key = layout.under(&format!("_check/{:016x}", random::nonce()));
        probe_reads(client, remote, &layout, &probe_key, READ_SCOPE, report);
    }
}

fn object_arn(remote: &RemoteConfig) -> String {
    let layout = Layout::new(&remote.prefix);
    format!("arn:aws:s3:::{}/{}*", remote.bucket, layout.under(""))
}

/// A failed step from the store's error: its cause in a few words and what to change.
fn failure(name: &'static str, fatal: bool, e: &S3Error, action: &str, resource: &str, report: &Report) -> Step {
    let who = match (&report.credentials.source, &report.credentials.access_key_id) {
        (Some(source), Some(key)) => format!("access key {key}, from {source}"),
        (Some(source), None) => source.clone(),
        _ => "these credentials".into(),
    };
    let (cause, fix) = diagnose(e, action, resource, &who, report.remote);
    Step::failed(name, fatal, e.to_string(), cause, fix)
}

/// What went wrong and what to change, for the failures users meet setting up.
fn diagnose(e: &S3Error, action: &str, resource: &str, who: &str, remote: &RemoteConfig) -> (String, String) {
    let hint = || e.hint().unwrap_or_else(|| "see the error above".into());
    let message = e.to_string();
    if matches!(e, S3Error::Status { .. }) {
        return match e.refusal() {
            _ if e.is_access_denied() => (
                format!("access denied: the store refused {action} to {who}"),
                format!(
                    "grant {action} on {resource} (the cache uses s3:GetObject and s3:PutObject on {}, and \
                     s3:ListBucket on arn:aws:s3:::{})",
                    object_arn(remote),
                    remote.bucket
                ),
            ),
            Some(Refusal::Signature) => (
                "signature mismatch: the store computed another signature for this request".into(),
                format!(
                    "check the secret key that goes with {who}; the clock was corrected already, so it is not skew; \
                     if something rewrites requests on the way (a proxy, a path prefix), fix that, or try {}",
                    if remote.addressing == crate::s3::endpoint::Addressing::Path {
                        "--virtual-hosted"
                    } else {
                        "--path-style"
                    }
                ),
            ),
            Some(Refusal::UnknownKey) => (format!("the store does not know the access key ({who})"), hint()),
            Some(Refusal::NoBucket) => (
                format!("bucket {:?} does not exist at {}", remote.bucket, remote.endpoint),
                "create the bucket, or fix --bucket / --endpoint".into(),
            ),
            Some(Refusal::WrongRegion) => ("wrong region".into(), hint()),
            Some(Refusal::ClockSkew) => ("this machine's clock is too far from the store's".into(), hint()),
            Some(Refusal::Token) => ("the session token was refused".into(), hint()),
            _ if e.status().is_some_and(|s| s >= 500) => {
                ("the store failed (a server error)".into(), "try again; if it lasts, look at the store's logs".into())
            }
            _ => ("the store refused the request".into(), hint()),
        };
    }
    match e {
        S3Error::Transport { message: m, .. } if m.contains("UnknownIssuer") || m.contains("certificate") => (
            "TLS: the store's certificate is not signed by a CA this program trusts".into(),
            "give the CA's PEM file with --ca-bundle FILE (or AWS_CA_BUNDLE)".into(),
        ),
        S3Error::Transport { message: m, .. } if remote.proxy.is_some() || m.to_ascii_lowercase().contains("proxy") => {
            (
                format!(
                    "the proxy {} refused or failed the connection",
                    remote.proxy.as_deref().map(crate::log::without_userinfo).unwrap_or_default()
                ),
                "check HTTPS_PROXY / HTTP_PROXY, or add the store's host to NO_PROXY".into(),
            )
        }
        _ if e.is_timeout() => (
            "the store did not answer in time".into(),
            format!(
                "check that {} is reachable from here and healthy (firewall, VPN, its logs), or raise --timeout \
                 ({:?}) / --stall-timeout ({:?})",
                remote.endpoint, remote.timeout, remote.stall_timeout
            ),
        ),
        S3Error::Transport { .. } => (format!("the endpoint {} is unreachable", remote.endpoint), hint()),
        S3Error::Malformed { message: m, .. } => (format!("the store's answer is not valid HTTP ({m})"), hint()),
        _ => (message, hint()),
    }
}

fn expiry(t: SystemTime) -> String {
    let left = t.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO);
    format!("{} (in {} min)", httpdate::fmt_http_date(t), left.as_secs() / 60)
}

fn to_text(r: &Report) -> String {
    let reads = if r.remote.read_prefixes.is_empty() {
        String::new()
    } else {
        format!(", read-only scopes after it {:?}", r.remote.read_prefixes)
    };
    let mut out = format!(
        "gocacheprog-s3 check: bucket {:?} at {} (prefix {:?}{reads})\n\nsettings:\n",
        r.remote.bucket, r.remote.endpoint, r.remote.prefix
    );
    let width = r.settings.iter().map(|s| s.name.len()).max().unwrap_or(0);
    for s in r.settings {
        out.push_str(&format!("  {:width$} = {}  ({})\n", s.name, s.value, s.source));
    }
    out.push_str(&format!("\ncredentials: {}\n", r.credentials.source.as_deref().unwrap_or("none found")));
    if let Some(t) = r.credentials.expires {
        out.push_str(&format!("  expires {}\n", expiry(t)));
    }
    if let Some(login) = &r.credentials.login {
        out.push_str(&format!("  {login}\n"));
    }
    if !r.credentials.tried.is_empty() {
        out.push_str(&format!("  looked at first: {}\n", r.credentials.tried.join("; ")));
    }
    out.push_str("\nprobe:\n");
    for s in &r.steps {
        let state = if s.ok {
            "ok"
        } else if s.fatal {
            "FAIL"
        } else {
            "warn"
        };
        let time = s.ms.map_or(String::new(), |m| format!("{m:>8.1} ms  "));
        out.push_str(&format!("  {state:<5} {:<12} {time}{}\n", s.name, s.detail));
        if let Some(cause) = &s.cause {
            out.push_str(&format!("        cause: {cause}\n"));
        }
        if let Some(fix) = &s.fix {
            out.push_str(&format!("        fix:   {fix}\n"));
        }
    }
    for w in &r.warnings {
        out.push_str(&format!("  warn  {w}\n"));
    }
    let verdict = match r.steps.iter().find(|s| !s.ok && s.fatal) {
        None if r.remote.read_only || r.remote.no_sign_request => "ok: builds can read this bucket".to_string(),
        None => "ok: builds can read and write this bucket".to_string(),
        Some(s) => format!("FAILED at {}: {}", s.name, s.cause.as_deref().unwrap_or("")),
    };
    out.push_str(&format!("\nresult: {verdict}\n"));
    out
}

fn to_json(r: &Report) -> String {
    let steps: Vec<serde_json::Value> = r
        .steps
        .iter()
        .map(|s| {
            json!({"step": s.name, "ok": s.ok, "fatal": s.fatal, "ms": s.ms, "detail": s.detail,
                   "cause": s.cause, "fix": s.fix})
        })
        .collect();
    let settings: Vec<serde_json::Value> =
        r.settings.iter().map(|s| json!({"name": s.name, "value": s.value, "source": s.source})).collect();
    let value = json!({
        "ok": r.ok(),
        "bucket": r.remote.bucket,
        "endpoint": r.remote.endpoint.to_string(),
        "prefix": r.remote.prefix,
        "read_prefixes": r.remote.read_prefixes,
        "probe_key": r.probe_key,
        "settings": settings,
        "credentials": {
            "source": r.credentials.source,
            "access_key_id": r.credentials.access_key_id,
            "expires": r.credentials.expires.map(httpdate::fmt_http_date),
            "login": r.credentials.login,
            "tried": r.credentials.tried,
        },
        "steps": steps,
        "warnings": r.warnings,
    });
    format!("{value}\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s3::xml::ErrorDoc;

    fn remote() -> RemoteConfig {
        let env = |k: &str| match k {
            "GOCACHE" => Some(if cfg!(windows) { "C:\\gocache" } else { "/tmp/gocache" }.to_string()),
            _ => None,
        };
        match crate::cli::parse(vec!["check".into(), "team-cache".into()], &env) {
            Ok(crate::cli::Action::Run(run)) => match *run {
                crate::cli::Run::Check(config) => config.remote,
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
    }

    fn status(status: u16, code: &str) -> S3Error {
        S3Error::Status {
            op: "PUT k".into(),
            status,
            doc: Box::new(ErrorDoc { code: Some(code.into()), ..Default::default() }),
        }
    }

    #[test]
    fn each_failure_names_its_cause_and_fix() {
        let r = remote();
        let cases: &[(S3Error, &str, &str)] = &[
            (status(403, "AccessDenied"), "access denied", "grant s3:PutObject on arn:aws:s3:::team-cache/go-cache/*"),
            (status(403, "SignatureDoesNotMatch"), "signature mismatch", "secret key"),
            (status(404, "NoSuchBucket"), "does not exist", "create the bucket"),
            (status(403, "InvalidAccessKeyId"), "does not know the access key", "not known"),
            (status(503, "SlowDown"), "server error", "try again"),
            (
                S3Error::Transport {
                    op: "PUT k".into(),
                    timeout: false,
                    message: "io: invalid peer certificate: UnknownIssuer".into(),
                },
                "TLS",
                "--ca-bundle",
            ),
            (
                S3Error::Transport { op: "PUT k".into(), timeout: false, message: "connection refused".into() },
                "unreachable",
                "--endpoint",
            ),
            (
                S3Error::Transport { op: "PUT k".into(), timeout: true, message: "t".into() },
                "did not answer",
                "--timeout",
            ),
        ];
        for (e, cause, fix) in cases {
            let (c, f) = diagnose(e, "s3:PutObject", &object_arn(&r), "access key AK", &r);
            assert!(c.contains(cause), "{e}: cause {c:?}");
            assert!(f.contains(fix), "{e}: fix {f:?}");
        }
        let mut proxied = remote();
        proxied.proxy = Some("http://user:pw@proxy.corp:3128".into());
        let refused = S3Error::Transport { op: "PUT k".into(), timeout: false, message: "connection refused".into() };
        let (c, f) = diagnose(&refused, "s3:PutObject", "x", "y", &proxied);
        assert!(c.contains("proxy http://…@proxy.corp:3128") && !c.contains("pw"), "{c}");
        assert!(f.contains("NO_PROXY"), "{f}");
    }
}
