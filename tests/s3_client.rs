//! The hand-written S3 client against real stores: every operation the cache uses, with
//! keys of every character class, checked by the stores' own signature verification
//! (s3s-fs strictest, moto with botocore's code, Garage as the default store) and read
//! back with an independent client (boto3).

use crate::common;

use common::servers::S3Server;
use gocacheprog_s3::s3::client::{Bounds, Client, ClientConfig, Upload};
use gocacheprog_s3::s3::endpoint::Endpoint;
use gocacheprog_s3::s3::error::S3Error;
use sha2::{Digest, Sha256};
use std::time::Duration;

const B: Bounds = Bounds::DEFAULT;

fn client(server: &S3Server, region: &str, secret: &str) -> Client {
    server.client_with(region, secret)
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
        c.put_object(&key, Upload::Bytes(&body), &sha, &[("outputid", &sha), ("puttime", "17")], B)
            .unwrap_or_else(|e| panic!("{}: put {key:?}: {e}\n{}", server.kind, server.log()));

        let head = c.head_object(&key, B).unwrap_or_else(|e| panic!("{}: head {key:?}: {e}", server.kind));
        let head = head.unwrap_or_else(|| panic!("{}: head {key:?} found nothing", server.kind));
        assert_eq!(head.size, Some(body.len() as u64), "{}: {key:?}", server.kind);
        assert_eq!(head.meta("outputid"), Some(sha.as_str()), "{}: {key:?}", server.kind);

        let mut got = Vec::new();
        let info = c.get_object(&key, &mut got, B).unwrap_or_else(|e| panic!("{}: get {key:?}: {e}", server.kind));
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
        let page = c
            .list_objects(prefix, token.as_deref(), Some(1), B)
            .unwrap_or_else(|e| panic!("{}: list: {e}", server.kind));
        ours.extend(page.objects.into_iter().map(|o| o.key));
        token = page.next_token;
        if token.is_none() {
            break;
        }
    }
    ours.sort();
    assert_eq!(ours, expected, "{}: our listing", server.kind);

    // list_all pages through the same keys.
    let mut all: Vec<String> =
        c.list_all(prefix, Duration::from_secs(30), &mut |_| {}).unwrap().into_iter().map(|o| o.key).collect();
    all.sort();
    assert_eq!(all, expected, "{}: list_all", server.kind);

    // A refresh (self-copy) replaces the metadata and keeps the body, for every key.
    for (i, key_tail) in keys.iter().enumerate() {
        let key = format!("{prefix}{key_tail}");
        let before = c.head_object(&key, B).unwrap().unwrap();
        let sha = before.meta("outputid").unwrap().to_string();
        // Conditional on an ETag the object does not have: a store that honours the
        // condition (Garage does) writes nothing; one that ignores it copies.
        let stale = c
            .refresh_object(&key, &[("outputid", "stale"), ("puttime", "1")], Some("\"0123456789abcdef\""), B)
            .unwrap_or_else(|e| panic!("{}: refresh {key:?} if-match a stale ETag: {e}", server.kind));
        let after = c.head_object(&key, B).unwrap().unwrap();
        if server.kind == "garage" {
            assert!(!stale, "garage: a copy conditional on a stale ETag was made: {key:?}");
        }
        if !stale {
            assert_eq!(
                after.meta("outputid"),
                Some(sha.as_str()),
                "{}: {key:?} changed by a refused copy",
                server.kind
            );
        }
        // Conditional on the ETag read with the metadata: copied everywhere.
        assert!(after.etag.is_some(), "{}: no ETag on {key:?}", server.kind);
        let copied = c
            .refresh_object(
                &key,
                &[("outputid", &sha), ("puttime", "17"), ("refreshed", "99")],
                after.etag.as_deref(),
                B,
            )
            .unwrap_or_else(|e| panic!("{}: refresh {key:?}: {e}\n{}", server.kind, server.log()));
        assert!(copied, "{}: a copy conditional on the current ETag was refused: {key:?}", server.kind);
        let mut got = Vec::new();
        let info = c.get_object(&key, &mut got, B).unwrap().unwrap();
        assert_eq!(
            (info.meta("refreshed"), info.meta("outputid")),
            (Some("99"), Some(sha.as_str())),
            "{}: {key:?}",
            server.kind
        );
        assert_eq!(got.len(), i * 5000 + 1, "{}: {key:?} body changed", server.kind);
        assert_eq!(hex::encode(Sha256::digest(&got)), sha, "{}: {key:?}", server.kind);
        assert!(info.last_modified >= before.last_modified, "{}: {key:?}", server.kind);
    }

    // Missing keys are None, not errors; delete works and is idempotent.
    assert!(c.get_object(&format!("{prefix}absent"), &mut Vec::new(), B).unwrap().is_none());
    assert!(c.head_object(&format!("{prefix}absent"), B).unwrap().is_none());
    let (first, rest) = keys.split_first().unwrap();
    for _ in 0..2 {
        c.delete_object(&format!("{prefix}{first}"), B).unwrap_or_else(|e| panic!("{}: delete: {e}", server.kind));
    }
    // DeleteObjects takes the rest, awkward names and an absent key included.
    let mut batch: Vec<String> = rest.iter().map(|k| format!("{prefix}{k}")).collect();
    batch.push(format!("{prefix}absent"));
    let batch: Vec<&str> = batch.iter().map(String::as_str).collect();
    let failures =
        c.delete_objects(&batch, B).unwrap_or_else(|e| panic!("{}: DeleteObjects: {e}\n{}", server.kind, server.log()));
    assert_eq!(failures, [], "{}: DeleteObjects", server.kind);
    assert!(server.list(prefix).is_empty(), "{}: objects left after delete", server.kind);

    // A wrong secret is refused with the store's code, never taken for a miss.
    let wrong = client(server, &server.region, "wrong-secret-0000000000000000000000000000");
    let err = wrong.get_object("client-test/plain/0a1b2c", &mut Vec::new(), B).unwrap_err();
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

/// A wrong region is a lesson, not a failure: Garage's answer names its region, the one
/// send signs again for it, and every later request uses it. (The hint that names the
/// region, for a store that keeps refusing, is unit-tested in `s3::error`.)
#[test]
fn wrong_region_is_learned_from_the_answer() {
    let server = S3Server::garage();
    let c = client(&server, "us-east-1", &server.secret_key);
    assert!(c.get_object("go-cache/anything", &mut Vec::new(), B).unwrap().is_none());
    assert_eq!(c.learned_region().as_deref(), Some(server.region.as_str()));
    c.put_object("go-cache/learned", Upload::Bytes(b"x"), &hex::encode(Sha256::digest(b"x")), &[], B).unwrap();
    assert!(c.head_object("go-cache/learned", B).unwrap().is_some());
}

#[test]
fn short_upload_body_is_an_error_not_a_hang() {
    let server = S3Server::s3s_fs();
    let c = client(&server, &server.region, &server.secret_key);
    let body = b"only ten b";
    let sha = hex::encode(Sha256::digest(body));
    let file = common::go::scratch_dir("short-upload").join("body");
    std::fs::write(&file, body).unwrap();
    let started = std::time::Instant::now();
    let err = c.put_object("short", Upload::File { path: &file, size: 20 }, &sha, &[], B).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(15), "took {:?}", started.elapsed());
    assert!(matches!(err, S3Error::Transport { .. } | S3Error::Body { .. }), "{err}");
    assert!(c.head_object("short", B).unwrap().is_none());
}

#[test]
fn corrupted_upload_is_rejected_by_payload_hash() {
    let server = S3Server::s3s_fs();
    let c = client(&server, &server.region, &server.secret_key);
    let body = b"the real bytes";
    let wrong_sha = hex::encode(Sha256::digest(b"other bytes"));
    let err = c.put_object("corrupt", Upload::Bytes(body), &wrong_sha, &[], B).unwrap_err();
    // s3s-fs 0.14 answers 500 InternalError here, AWS 400 XAmzContentSHA256Mismatch.
    assert!(err.status().is_some_and(|s| s >= 400), "{err}");
    assert!(c.head_object("corrupt", B).unwrap().is_none());
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
    let err = c.get_object("go-cache/x", &mut Vec::new(), B).unwrap_err();
    assert!(matches!(err, S3Error::Transport { timeout: false, .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(15), "took {:?}", started.elapsed());
    // rustls's own words for a server that answered in plain HTTP.
    assert!(err.to_string().contains("InvalidContentType"), "{err}");
}

/// A 404 that is not `NoSuchKey` (a mistyped bucket) is an error naming the code, never a
/// plain miss: with `--read-only` nothing else would ever report it.
#[test]
fn missing_bucket_is_an_error_not_a_miss() {
    // (s3s-fs 0.14 answers NoSuchKey for any key of a missing bucket: not usable here.)
    for server in [S3Server::garage(), S3Server::moto()] {
        let good = client(&server, &server.region, &server.secret_key);
        let c = Client::new(ClientConfig { bucket: "no-such-bucket-here".into(), ..good.config().clone() });
        let err = c.get_object("go-cache/x", &mut Vec::new(), B).unwrap_err();
        assert_eq!(err.code(), Some("NoSuchBucket"), "{}: {err}", server.kind);
        assert!(err.hint().unwrap_or_default().contains("bucket"), "{}: {err}", server.kind);
        // The real bucket's missing key is still a plain miss.
        assert!(good.get_object("go-cache/absent", &mut Vec::new(), B).unwrap().is_none(), "{}", server.kind);
    }
}

/// An object larger than the caller's bound is refused from its Content-Length, before
/// anything is written.
#[test]
fn oversized_objects_are_refused_before_their_body() {
    let server = S3Server::garage();
    let c = client(&server, &server.region, &server.secret_key);
    let body = vec![7u8; 100_000];
    let sha = hex::encode(Sha256::digest(&body));
    c.put_object("big", Upload::Bytes(&body), &sha, &[], B).unwrap();
    let mut sink = Vec::new();
    let err = c.get_object("big", &mut sink, Bounds { max_body: 1000, ..B }).unwrap_err();
    assert!(matches!(err, S3Error::Oversized { size: 100_000, limit: 1000, .. }), "{err}");
    assert!(sink.is_empty(), "{} bytes written", sink.len());
    assert!(!err.is_transient());
}
