//! The hand-written S3 client against real stores: every operation the cache uses, with
//! keys of every character class, checked by the stores' own signature verification
//! (s3s-fs strictest, moto with botocore's code, Garage as the default store) and read
//! back with an independent client (boto3).

mod common;

use common::servers::S3Server;
use gocacheprog_s3::s3::client::{Client, ClientConfig};
use gocacheprog_s3::s3::credentials::Credentials;
use gocacheprog_s3::s3::endpoint::{Addressing, Endpoint};
use gocacheprog_s3::s3::error::S3Error;
use sha2::{Digest, Sha256};
use std::time::Duration;

fn client(server: &S3Server, region: &str, secret: &str) -> Client {
    Client::new(ClientConfig {
        endpoint: Endpoint::parse(&server.endpoint).expect("harness endpoint parses"),
        addressing: Addressing::Path,
        bucket: server.bucket.clone(),
        region: region.to_string(),
        credentials: Some(Credentials {
            access_key_id: server.access_key.clone(),
            secret_access_key: secret.to_string(),
            session_token: None,
        }),
        timeout: Duration::from_secs(20),
        connect_timeout: Duration::from_secs(3),
        pool_size: 4,
    })
}

/// Keys that break naive encoders. (moto verifies signatures against the decoded URL;
/// tests/tools/moto_server.py works around that, so every store gets the full set.)
const AWKWARD_KEYS: &[&str] = &[
    "plain/0a1b2c",
    "with space/and more  spaces",
    "plus+sign=equals&amp",
    "sub-delims!'()*",
    "utf8/ü/日本語",
    "double//slash",
    "dots/../and/./more",
    "percent%20literal~tilde",
    "colon:semi;at@comma,dollar$",
];

/// Keys a file-system-backed store cannot keep as they are (its paths collapse `//`
/// and `..`); the signature of such a request is still checked.
const PATH_NORMALISING_KEYS: &[&str] = &["double//slash", "dots/../and/./more"];

fn exercise(server: &S3Server) {
    let c = client(server, &server.region, &server.secret_key);
    let prefix = "client-test/";
    let keys: Vec<&str> = AWKWARD_KEYS
        .iter()
        .copied()
        .filter(|k| server.kind != "s3s-fs" || !PATH_NORMALISING_KEYS.contains(k))
        .collect();
    for (i, key_tail) in keys.iter().enumerate() {
        let key = format!("{prefix}{key_tail}");
        let body: Vec<u8> = (0..(i * 5000 + 1)).map(|n| (n * 31 % 251) as u8).collect();
        let sha = hex::encode(Sha256::digest(&body));
        c.put_object(&key, &mut body.as_slice(), body.len() as u64, &sha, &[("outputid", &sha), ("puttime", "17")])
            .unwrap_or_else(|e| panic!("{}: put {key:?}: {e}\n{}", server.kind, server.log()));

        let head = c.head_object(&key).unwrap_or_else(|e| panic!("{}: head {key:?}: {e}", server.kind));
        let head = head.unwrap_or_else(|| panic!("{}: head {key:?} found nothing", server.kind));
        assert_eq!(head.size, body.len() as u64, "{}: {key:?}", server.kind);
        assert_eq!(head.meta("outputid"), Some(sha.as_str()), "{}: {key:?}", server.kind);

        let mut got = Vec::new();
        let info = c.get_object(&key, &mut got).unwrap_or_else(|e| panic!("{}: get {key:?}: {e}", server.kind));
        let info = info.unwrap_or_else(|| panic!("{}: get {key:?} found nothing", server.kind));
        assert_eq!(got, body, "{}: {key:?}", server.kind);
        assert_eq!(info.meta("puttime"), Some("17"), "{}: {key:?}", server.kind);
        assert!(info.last_modified.is_some(), "{}: no Last-Modified", server.kind);
    }

    // The independent client sees the same objects under the same names.
    let listed = server.list(prefix);
    let mut names: Vec<String> = listed.iter().map(|o| o["key"].as_str().unwrap_or_default().to_string()).collect();
    names.sort();
    let mut expected: Vec<String> = keys.iter().map(|k| format!("{prefix}{k}")).collect();
    expected.sort();
    assert_eq!(names, expected, "{}: boto3 listing", server.kind);

    // Our listing, one key per page, so continuation tokens (with '/' and '=') are used.
    let mut ours = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..=keys.len() + 1 {
        let page =
            c.list_objects(prefix, token.as_deref(), Some(1)).unwrap_or_else(|e| panic!("{}: list: {e}", server.kind));
        ours.extend(page.objects.into_iter().map(|o| o.key));
        token = page.next_token;
        if token.is_none() {
            break;
        }
    }
    ours.sort();
    assert_eq!(ours, expected, "{}: our listing", server.kind);

    // Missing keys are None, not errors; delete works and is idempotent.
    assert!(c.get_object(&format!("{prefix}absent"), &mut Vec::new()).unwrap().is_none());
    assert!(c.head_object(&format!("{prefix}absent")).unwrap().is_none());
    for key_tail in &keys {
        c.delete_object(&format!("{prefix}{key_tail}")).unwrap_or_else(|e| panic!("{}: delete: {e}", server.kind));
    }
    assert!(server.list(prefix).is_empty(), "{}: objects left after delete", server.kind);

    // A wrong secret is refused with the store's code, never taken for a miss.
    let wrong = client(server, &server.region, "wrong-secret-0000000000000000000000000000");
    let err = wrong.get_object("client-test/plain/0a1b2c", &mut Vec::new()).unwrap_err();
    assert_eq!(err.status(), Some(403), "{}: {err}", server.kind);
    assert!(!err.is_access_denied() || server.kind == "garage", "{}: {err}", server.kind);
    assert!(err.hint().is_some(), "{}: no hint for {err}", server.kind);
}

#[test]
fn s3s_fs_strict_signatures() {
    exercise(&S3Server::s3s_fs());
}

#[test]
fn moto_checks_signatures_with_botocore() {
    exercise(&S3Server::moto());
}

#[test]
fn garage_default_store() {
    exercise(&S3Server::garage());
}

#[test]
fn wrong_region_names_the_right_one() {
    let server = S3Server::garage();
    let c = client(&server, "us-east-1", &server.secret_key);
    let err = c.get_object("go-cache/anything", &mut Vec::new()).unwrap_err();
    let hint = err.hint().unwrap_or_default();
    assert!(hint.contains("garage"), "error {err} hint {hint:?}");
}

#[test]
fn short_upload_body_is_an_error_not_a_hang() {
    let server = S3Server::s3s_fs();
    let c = client(&server, &server.region, &server.secret_key);
    let body = b"only ten b";
    let sha = hex::encode(Sha256::digest(body));
    let started = std::time::Instant::now();
    let err = c.put_object("short", &mut body.as_slice(), 20, &sha, &[]).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(15), "took {:?}", started.elapsed());
    assert!(matches!(err, S3Error::Transport { .. } | S3Error::Body { .. }), "{err}");
    assert!(c.head_object("short").unwrap().is_none());
}

#[test]
fn corrupted_upload_is_rejected_by_payload_hash() {
    let server = S3Server::s3s_fs();
    let c = client(&server, &server.region, &server.secret_key);
    let body = b"the real bytes";
    let wrong_sha = hex::encode(Sha256::digest(b"other bytes"));
    let err = c.put_object("corrupt", &mut body.as_slice(), body.len() as u64, &wrong_sha, &[]).unwrap_err();
    // s3s-fs 0.14 answers 500 InternalError here, AWS 400 XAmzContentSHA256Mismatch.
    assert!(err.status().is_some_and(|s| s >= 400), "{err}");
    assert!(c.head_object("corrupt").unwrap().is_none());
}

/// https goes through rustls on top of our TCP transport: against a plain-HTTP port the
/// handshake fails quickly with a transport error (no hang, no panic, no silent plain HTTP).
#[test]
fn https_endpoint_uses_tls() {
    let server = S3Server::garage();
    let mut c = client(&server, &server.region, &server.secret_key);
    let https = server.endpoint.replacen("http://", "https://", 1);
    c = Client::new(ClientConfig { endpoint: Endpoint::parse(&https).unwrap(), ..c.config().clone() });
    let started = std::time::Instant::now();
    let err = c.get_object("go-cache/x", &mut Vec::new()).unwrap_err();
    assert!(matches!(err, S3Error::Transport { timeout: false, .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(15), "took {:?}", started.elapsed());
    // rustls's own words for a server that answered in plain HTTP.
    assert!(err.to_string().contains("InvalidContentType"), "{err}");
}
