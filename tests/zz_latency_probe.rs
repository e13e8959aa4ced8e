mod common;
use common::servers::S3Server;
use gocacheprog_s3::s3::client::{Client, ClientConfig};
use gocacheprog_s3::s3::credentials::Credentials;
use gocacheprog_s3::s3::endpoint::{Addressing, Endpoint};
use std::time::{Duration, Instant};

#[test]
#[ignore]
fn probe() {
    for server in [S3Server::garage(), S3Server::s3s_fs()] {
        let c = Client::new(ClientConfig {
            endpoint: Endpoint::parse(&server.endpoint).unwrap(),
            addressing: Addressing::Path,
            bucket: server.bucket.clone(),
            region: server.region.clone(),
            credentials: Some(Credentials { access_key_id: server.access_key.clone(), secret_access_key: server.secret_key.clone(), session_token: None }),
            timeout: Duration::from_secs(20),
            connect_timeout: Duration::from_secs(3),
            pool_size: 4,
        });
        let body = vec![7u8; 1300];
        let sha = "c0c5665bcbf16a5e6df85ec9507250424d4d7eac857db77e61a1ecc5b8cf7523";
        let _ = c.put_object("k", &mut body.as_slice(), 1300, &hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&body)), &[]);
        let _ = sha;
        let n = 300;
        let t = Instant::now();
        for _ in 0..n { let mut v = Vec::new(); c.get_object("k", &mut v).unwrap().unwrap(); }
        let get = t.elapsed() / n;
        let t = Instant::now();
        for _ in 0..n { let mut v = Vec::new(); assert!(c.get_object("missing", &mut v).unwrap().is_none()); }
        let miss = t.elapsed() / n;
        let big = vec![9u8; 10_000_000];
        c.put_object("big", &mut big.as_slice(), big.len() as u64, &hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&big)), &[]).unwrap();
        let t = Instant::now();
        for _ in 0..10 { let mut v = Vec::with_capacity(10_000_000); c.get_object("big", &mut v).unwrap().unwrap(); }
        let bigt = t.elapsed() / 10;
        eprintln!("{}: GET 1.3KB {:?}, GET 404 {:?}, GET 10MB {:?}", server.kind, get, miss, bigt);
    }
}
