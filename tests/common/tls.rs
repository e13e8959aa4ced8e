//! TLS in front of a plain-HTTP store, on 127.0.0.1, with a private CA made for the test by
//! the `openssl` command: what a self-hosted store behind a company CA looks like.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A CA and a server certificate for 127.0.0.1 signed by it, as PEM files in `dir`.
pub struct Pki {
    pub ca_pem: PathBuf,
    pub cert_pem: PathBuf,
    pub key_pem: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("run openssl");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

impl Pki {
    /// Makes the CA and the server certificate (EC P-256, valid a day).
    pub fn new(dir: &Path) -> Pki {
        std::fs::create_dir_all(dir).unwrap();
        openssl(dir, &["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ca.key"]);
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-new",
                "-key",
                "ca.key",
                "-sha256",
                "-days",
                "1",
                "-subj",
                "/CN=gocacheprog-s3 test CA",
                "-out",
                "ca.pem",
            ],
        );
        openssl(dir, &["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "server.key"]);
        openssl(dir, &["req", "-new", "-key", "server.key", "-subj", "/CN=127.0.0.1", "-out", "server.csr"]);
        std::fs::write(dir.join("ext.cnf"), "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n")
            .unwrap();
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "1",
                "-sha256",
                "-extfile",
                "ext.cnf",
                "-out",
                "server.pem",
            ],
        );
        Pki { ca_pem: dir.join("ca.pem"), cert_pem: dir.join("server.pem"), key_pem: dir.join("server.key") }
    }
}

/// Accepts TLS on a free port and forwards the plain bytes to `upstream`.
pub struct TlsFront {
    pub port: u16,
    stop: Arc<AtomicBool>,
}

impl TlsFront {
    pub fn start(pki: &Pki, upstream: u16) -> TlsFront {
        let certs: Vec<rustls::pki_types::CertificateDer<'static>> =
            ureq::tls::parse_pem(&std::fs::read(&pki.cert_pem).unwrap())
                .filter_map(|i| match i {
                    Ok(ureq::tls::PemItem::Certificate(c)) => {
                        Some(rustls::pki_types::CertificateDer::from(c.der().to_vec()))
                    }
                    _ => None,
                })
                .collect();
        let key_der = ureq::tls::parse_pem(&std::fs::read(&pki.key_pem).unwrap())
            .find_map(|i| match i {
                Ok(ureq::tls::PemItem::PrivateKey(k)) => Some(k.der().to_vec()),
                _ => None,
            })
            .expect("a private key");
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(key_der.into());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("server certificate");
        let config = Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        std::thread::spawn(move || {
            let deadline = std::time::Instant::now() + Duration::from_secs(300);
            while !flag.load(Ordering::Relaxed) && std::time::Instant::now() < deadline {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let config = Arc::clone(&config);
                        let flag = Arc::clone(&flag);
                        std::thread::spawn(move || relay(conn, config, upstream, &flag));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        TlsFront { port, stop }
    }

    pub fn endpoint(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// One TLS connection: decrypted bytes to the upstream, its answers encrypted back; gives
/// up after about a minute with nothing moving.
fn relay(conn: TcpStream, config: Arc<rustls::ServerConfig>, upstream: u16, stop: &AtomicBool) {
    let Ok(server) = rustls::ServerConnection::new(config) else { return };
    let _ = conn.set_nonblocking(false);
    // Short read timeouts: one thread serves both directions, taking turns.
    let _ = conn.set_read_timeout(Some(Duration::from_millis(1)));
    let mut tls = rustls::StreamOwned::new(server, conn);
    let Ok(mut plain) = TcpStream::connect(("127.0.0.1", upstream)) else { return };
    let _ = plain.set_read_timeout(Some(Duration::from_millis(1)));
    let _ = plain.set_nodelay(true);
    let mut buf = vec![0u8; 64 * 1024];
    let mut idle = 0;
    while !stop.load(Ordering::Relaxed) && idle < 30_000 {
        let mut moved = false;
        match tls.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if plain.write_all(&buf[..n]).is_err() {
                    return;
                }
                moved = true;
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => return,
        }
        match plain.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if tls.write_all(&buf[..n]).and_then(|()| tls.flush()).is_err() {
                    return;
                }
                moved = true;
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => return,
        }
        idle = if moved { 0 } else { idle + 1 };
    }
}
