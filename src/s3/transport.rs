//! The TCP layer under ureq, with delayed acknowledgements off.
//!
//! Some S3 servers (Garage 2.5, other hyper-based stores) leave Nagle's algorithm on: a
//! response body written after its headers is then held back until the client
//! acknowledges the headers, and Linux delays that acknowledgement by about 40 ms. Cache
//! objects of 4–64 KB hit this on every GET (measured: `go build std` from a Garage
//! bucket on loopback took 5.3 s, 1.5 s without the stall). Setting `TCP_QUICKACK` before
//! each read makes the kernel acknowledge at once, whatever the server does. Linux clears
//! the flag as it goes, hence before every read. Elsewhere this is a plain TCP transport.
//!
//! It replaces ureq's own `TcpConnector` in an otherwise default chain (CONNECT proxies,
//! then TCP, then rustls for https).

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{
    Buffers, ConnectProxyConnector, ConnectionDetails, Connector, Either, LazyBuffers, NextTimeout, RustlsConnector,
    Transport,
};
use ureq::Error;

/// The connector chain for the agent.
pub(crate) fn connector() -> impl Connector<(), Out = impl Transport> {
    ().chain(ConnectProxyConnector::default()).chain(QuickAckTcpConnector).chain(RustlsConnector::default())
}

/// Opens TCP connections whose reads acknowledge at once.
#[derive(Debug, Default)]
pub(crate) struct QuickAckTcpConnector;

impl<In: Transport> Connector<In> for QuickAckTcpConnector {
    type Out = Either<In, QuickAckTransport>;

    fn connect(&self, details: &ConnectionDetails, chained: Option<In>) -> Result<Option<Self::Out>, Error> {
        // A connection from earlier in the chain (a CONNECT proxy) is used as it is.
        if chained.is_some() {
            return Ok(chained.map(Either::A));
        }
        let timeout = details.timeout.not_zero().map(|t| *t);
        let mut last_error = None;
        for addr in details.addrs.iter() {
            let attempt = match timeout {
                Some(t) => TcpStream::connect_timeout(addr, t),
                None => TcpStream::connect(addr),
            };
            match attempt {
                Ok(stream) => {
                    stream.set_nodelay(true)?;
                    let config = details.config;
                    let buffers = LazyBuffers::new(config.input_buffer_size(), config.output_buffer_size());
                    let transport = QuickAckTransport { stream, buffers, read_timeout: None, write_timeout: None };
                    return Ok(Some(Either::B(transport)));
                }
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                    last_error = Some(Error::Timeout(details.timeout.reason))
                }
                Err(e) => last_error = Some(Error::Io(e)),
            }
        }
        Err(last_error.unwrap_or(Error::HostNotFound))
    }
}

/// One TCP connection.
#[derive(Debug)]
pub(crate) struct QuickAckTransport {
    stream: TcpStream,
    buffers: LazyBuffers,
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
}

impl QuickAckTransport {
    #[cfg(target_os = "linux")]
    fn quick_ack(&self) {
        // Only a latency optimisation: a failure changes nothing else.
        let _ = socket2::SockRef::from(&self.stream).set_tcp_quickack(true);
    }

    #[cfg(not(target_os = "linux"))]
    fn quick_ack(&self) {}
}

/// The socket timeout for the next I/O (`None`: no limit), or the timeout error when the
/// budget is already spent. Socket options are only changed when the value changes.
fn remaining(timeout: NextTimeout) -> Result<Option<Duration>, Error> {
    if timeout.after.is_zero() {
        return Err(Error::Timeout(timeout.reason));
    }
    Ok(timeout.not_zero().map(|t| *t))
}

/// Maps a timed-out or would-block I/O error to ureq's timeout error.
fn io_error(e: io::Error, timeout: NextTimeout) -> Error {
    match e.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => Error::Timeout(timeout.reason),
        _ => Error::Io(e),
    }
}

impl Transport for QuickAckTransport {
    fn buffers(&mut self) -> &mut dyn Buffers {
        &mut self.buffers
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), Error> {
        let timeout = timeout.for_write();
        let limit = remaining(timeout)?;
        if limit != self.write_timeout {
            self.stream.set_write_timeout(limit)?;
            self.write_timeout = limit;
        }
        let output = &self.buffers.output()[..amount];
        (&self.stream).write_all(output).map_err(|e| io_error(e, timeout))
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, Error> {
        let timeout = timeout.for_read();
        let limit = remaining(timeout)?;
        if limit != self.read_timeout {
            self.stream.set_read_timeout(limit)?;
            self.read_timeout = limit;
        }
        self.quick_ack();
        let input = self.buffers.input_append_buf();
        let amount = loop {
            match (&self.stream).read(input) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_error(e, timeout)),
            }
        };
        self.buffers.input_appended(amount);
        Ok(amount > 0)
    }

    /// A pooled connection is reusable when a non-blocking read finds nothing waiting;
    /// end of stream or unexpected bytes mean it is not.
    fn is_open(&mut self) -> bool {
        if self.stream.set_nonblocking(true).is_err() {
            return false;
        }
        let mut byte = [0u8; 1];
        let open = matches!((&self.stream).read(&mut byte), Err(e) if e.kind() == io::ErrorKind::WouldBlock);
        self.stream.set_nonblocking(false).is_ok() && open
    }
}

/// Name resolution for the agent, remembered for a while.
///
/// ureq resolves the host for every request, even one that reuses a pooled connection,
/// and with a timeout set it does so on a new thread each time: a cold build's 800
/// uploads started 800 threads, most of the program's system time. The endpoint is one
/// host, so its addresses are kept for `RESOLVED_FOR`; an IP address is never looked up.
#[derive(Debug, Default)]
pub(crate) struct CachingResolver {
    inner: DefaultResolver,
    known: Mutex<HashMap<String, (Instant, ResolvedSocketAddrs)>>,
}

/// How long resolved addresses are reused.
const RESOLVED_FOR: Duration = Duration::from_secs(60);

impl Resolver for CachingResolver {
    fn resolve(&self, uri: &Uri, config: &Config, timeout: NextTimeout) -> Result<ResolvedSocketAddrs, Error> {
        let (Some(scheme), Some(authority)) = (uri.scheme(), uri.authority()) else {
            return self.inner.resolve(uri, config, timeout);
        };
        let Some(host_port) = DefaultResolver::host_and_port(scheme, authority) else {
            return self.inner.resolve(uri, config, timeout);
        };
        if let Ok(addr) = host_port.parse::<SocketAddr>() {
            let mut one = self.empty();
            one.push(addr);
            return Ok(one);
        }
        let now = Instant::now();
        if let Some((at, addrs)) = self.known.lock().unwrap_or_else(|p| p.into_inner()).get(&host_port) {
            if now.duration_since(*at) < RESOLVED_FOR {
                return Ok(addrs.clone());
            }
        }
        let addrs = self.inner.resolve(uri, config, timeout)?;
        self.known.lock().unwrap_or_else(|p| p.into_inner()).insert(host_port, (now, addrs.clone()));
        Ok(addrs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_parsed_or_looked_up_once() {
        let resolver = CachingResolver::default();
        let config = ureq::config::Config::default();
        let timeout = NextTimeout::default();
        let uri: Uri = "http://127.0.0.1:3900/bucket/key".parse().unwrap();
        let addrs = resolver.resolve(&uri, &config, timeout).unwrap();
        assert_eq!(&addrs[..], &["127.0.0.1:3900".parse::<SocketAddr>().unwrap()]);
        let uri: Uri = "http://localhost:3900/bucket/key".parse().unwrap();
        let first = resolver.resolve(&uri, &config, timeout).unwrap();
        assert!(!first.is_empty());
        assert_eq!(resolver.known.lock().unwrap().len(), 1);
        assert_eq!(&resolver.resolve(&uri, &config, timeout).unwrap()[..], &first[..]);
    }
}
