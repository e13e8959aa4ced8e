//! `credential_process`: a profile's command that prints credentials as JSON
//! (`{"Version": 1, "AccessKeyId", "SecretAccessKey", "SessionToken"?, "Expiration"?}`),
//! as the AWS CLI runs it (split into words, no shell), within [`PROCESS_TIMEOUT`].

use super::{Context, Credentials, Issued};
use serde_json::Value;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Bound on one run of the command (an SSO helper may open a browser: not here).
pub(super) const PROCESS_TIMEOUT: Duration = Duration::from_secs(30);

/// Splits a command line into words: whitespace separates, `'...'` and `"..."` group,
/// `\\` escapes the next character outside single quotes.
pub(super) fn split(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err(format!("unterminated ' in {line:?}")),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => word.extend(chars.next()),
                        Some(c) => word.push(c),
                        None => return Err(format!("unterminated \" in {line:?}")),
                    }
                }
            }
            '\\' => {
                in_word = true;
                word.extend(chars.next());
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    if words.is_empty() {
        return Err("credential_process is empty".into());
    }
    Ok(words)
}

/// Runs the command and reads its credentials.
pub(super) fn fetch(ctx: &Context, command: &str) -> Result<Issued, String> {
    let words = split(command)?;
    let out =
        (ctx.run_process)(&words, PROCESS_TIMEOUT).map_err(|e| format!("credential_process {:?}: {e}", words[0]))?;
    parse(&out).map_err(|e| format!("credential_process {:?}: {e}", words[0]))
}

/// Parses the command's output.
pub(super) fn parse(out: &[u8]) -> Result<Issued, String> {
    let v: Value = serde_json::from_slice(out).map_err(|e| format!("its output is not JSON ({e})"))?;
    if v.get("Version").and_then(Value::as_u64) != Some(1) {
        return Err("its output has no \"Version\": 1".into());
    }
    let field = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    let (Some(access_key_id), Some(secret_access_key)) = (field("AccessKeyId"), field("SecretAccessKey")) else {
        return Err("its output lacks AccessKeyId or SecretAccessKey".into());
    };
    let expires = match field("Expiration") {
        Some(e) => {
            Some(crate::calendar::parse_rfc3339(&e).ok_or_else(|| format!("its Expiration {e:?} is not a date"))?)
        }
        None => None,
    };
    Ok(Issued {
        credentials: Credentials { access_key_id, secret_access_key, session_token: field("SessionToken") },
        expires,
    })
}

/// Runs `words` with no shell and no input, its standard error passed through, killed
/// after `limit`; its standard output.
pub(super) fn run(words: &[String], limit: Duration) -> Result<Vec<u8>, String> {
    let (program, args) = words.split_first().ok_or("no command")?;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot run it: {e}"))?;
    let mut stdout = child.stdout.take().ok_or("no output pipe")?;
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = stdout.by_ref().take(1 << 20).read_to_end(&mut out);
        out
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("did not finish within {}s", limit.as_secs()));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(e.to_string()),
        }
    };
    let out = reader.join().map_err(|_| "reading its output failed".to_string())?;
    if !status.success() {
        return Err(format!("exited with {status}"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_as_the_cli_splits_them() {
        assert_eq!(split("aws-vault exec prod --json").unwrap(), ["aws-vault", "exec", "prod", "--json"]);
        assert_eq!(
            split(r#"/opt/my tool/bin "a b" 'c d' e\ f"#).unwrap(),
            ["/opt/my", "tool/bin", "a b", "c d", "e f"]
        );
        assert_eq!(split(r#"x "" y"#).unwrap(), ["x", "", "y"]);
        assert!(split("'open").is_err());
        assert!(split("   ").is_err());
    }

    #[test]
    fn outputs() {
        let ok = br#"{"Version":1,"AccessKeyId":"AK","SecretAccessKey":"SK","SessionToken":"T","Expiration":"2030-01-01T00:00:00Z"}"#;
        let issued = parse(ok).unwrap();
        assert_eq!(issued.credentials.session_token.as_deref(), Some("T"));
        assert!(issued.expires.is_some());
        assert!(parse(br#"{"Version":1,"AccessKeyId":"AK","SecretAccessKey":"SK"}"#).unwrap().expires.is_none());
        for bad in [&b"not json"[..], br#"{"Version":2,"AccessKeyId":"A","SecretAccessKey":"S"}"#, br#"{"Version":1}"#]
        {
            assert!(parse(bad).is_err());
        }
    }

    // Runs Unix tools (echo, sleep, false).
    #[cfg(unix)]
    #[test]
    fn runs_bounded() {
        let out = run(&["echo".into(), "hi".into()], Duration::from_secs(5)).unwrap();
        assert_eq!(out, b"hi\n");
        let started = Instant::now();
        let err = run(&["sleep".into(), "10".into()], Duration::from_millis(200)).unwrap_err();
        assert!(err.contains("did not finish"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(run(&["false".into()], Duration::from_secs(5)).unwrap_err().contains("exited"));
        assert!(run(&["/no/such/thing".into()], Duration::from_secs(5)).is_err());
    }
}
