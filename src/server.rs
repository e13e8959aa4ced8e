//! The request loop: reads go's requests in order, answers local hits inline (no thread
//! hand-off), streams put bodies into the local tier, and hands local misses and new
//! outputs to the remote tier, which answers or uploads on its own threads.

use crate::entry::Entry;
use crate::id::Id;
use crate::local::{LocalTier, TempFile};
use crate::protocol::{BodyError, Command, RequestReader, Responder, Response, StreamError};
use crate::stats::{self, Stats};
use sha2::{Digest, Sha256};
use std::io::{self, BufRead, BufWriter, Write};
use std::path::PathBuf;

/// What the bucket side offers the request loop.
pub trait RemoteTier {
    /// Looks `action` up remotely and answers request `request_id` (hit or miss) itself,
    /// possibly later and from another thread.
    fn fetch(&self, request_id: i64, action: Id);
    /// Queues a stored output for upload; never blocks on the network.
    fn upload(&self, action: Id, entry: Entry, path: PathBuf);
}

/// How the session ended.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// go sent close with this request ID; it is answered once the caller has finished.
    Close(i64),
    /// Input ended without close.
    Eof,
}

/// Everything the loop needs.
pub struct Server<'a> {
    pub local: &'a LocalTier,
    pub remote: Option<&'a dyn RemoteTier>,
    pub stats: &'a Stats,
    pub responder: &'a Responder,
}

impl Server<'_> {
    /// Serves requests until close or end of input. An error means the stream could not
    /// be followed any more.
    pub fn run<R: BufRead>(&self, reader: &mut RequestReader<R>) -> Result<End, StreamError> {
        while let Some(incoming) = reader.next_request()? {
            let id = incoming.id;
            match incoming.command {
                Ok(Command::Get { action }) => self.get(id, action),
                Ok(Command::Put { action, output, body_size }) => self.put(reader, id, action, output, body_size)?,
                Ok(Command::Close) => return Ok(End::Close(id)),
                Err(problem) => {
                    if incoming.body_size > 0 {
                        reader.read_body(id, &mut io::sink())?.ok();
                    }
                    log!(0, "request {id} rejected: {problem}");
                    self.responder.send(&Response::error(id, problem));
                }
            }
        }
        Ok(End::Eof)
    }

    fn get(&self, id: i64, action: Id) {
        stats::inc(&self.stats.gets);
        match self.local.get(&action) {
            Ok(Some(hit)) => {
                stats::inc(&self.stats.local_hits);
                stats::add(&self.stats.bytes_read_local, hit.entry.size);
                let e = hit.entry;
                self.responder.send(&Response::hit(id, e.output_id, e.size, e.time_nanos, &hit.path));
                return;
            }
            Ok(None) => {}
            Err(e) => {
                stats::inc(&self.stats.get_errors);
                log!(0, "local cache lookup of action {action} failed, treating it as a miss: {e}");
            }
        }
        match self.remote {
            Some(remote) => remote.fetch(id, action),
            None => {
                log!(3, "get {id}: action {action} missed");
                stats::inc(&self.stats.misses);
                self.responder.send(&Response::miss(id));
            }
        }
    }

    fn put<R: BufRead>(
        &self,
        reader: &mut RequestReader<R>,
        id: i64,
        action: Id,
        output: Id,
        body_size: u64,
    ) -> Result<(), StreamError> {
        stats::inc(&self.stats.puts);
        let stored = match self.receive(reader, id, action, output, body_size)? {
            Ok(temp) => {
                let now = crate::clock::unix_nanos(std::time::SystemTime::now());
                let entry = Entry { output_id: output, size: body_size, time_nanos: now };
                self.local
                    .store(&action, &entry, temp)
                    .map(|path| (entry, path))
                    .map_err(|e| format!("local disk failure: {e}"))
            }
            Err(message) => Err(message),
        };
        match stored {
            Ok((entry, path)) => {
                stats::add(&self.stats.bytes_written_local, body_size);
                self.responder.send(&Response::stored(id, &path));
                if let Some(remote) = self.remote {
                    remote.upload(action, entry, path);
                }
            }
            Err(message) => {
                stats::inc(&self.stats.put_errors);
                log!(0, "put request {id}: {message}");
                self.responder.send(&Response::error(id, message));
            }
        }
        Ok(())
    }

    /// Streams the body into a temporary file and checks it against the request; the
    /// inner error says why the body must not be stored.
    fn receive<R: BufRead>(
        &self,
        reader: &mut RequestReader<R>,
        id: i64,
        action: Id,
        output: Id,
        body_size: u64,
    ) -> Result<Result<TempFile, String>, StreamError> {
        let temp = match self.local.temp_file() {
            Ok(t) => t,
            Err(e) => {
                if body_size > 0 {
                    reader.read_body(id, &mut io::sink())?.ok();
                }
                return Ok(Err(format!("local disk failure: {e}")));
            }
        };
        let mut writer = HashingWriter { inner: BufWriter::with_capacity(256 * 1024, temp), hasher: Sha256::new() };
        let decoded = if body_size > 0 {
            match reader.read_body(id, &mut writer)? {
                Ok(n) => n,
                Err(BodyError::Write(e)) => return Ok(Err(format!("local disk failure: {e}"))),
                Err(e @ BodyError::Base64(_)) => return Ok(Err(format!("{e}; not stored"))),
            }
        } else {
            0
        };
        let HashingWriter { inner, hasher } = writer;
        let temp = match inner.into_inner() {
            Ok(t) => t,
            Err(e) => return Ok(Err(format!("local disk failure: {}", e.error()))),
        };
        if decoded != body_size {
            return Ok(Err(format!(
                "body of action {action} is {decoded} bytes but BodySize said {body_size}; not stored"
            )));
        }
        let digest = Id(hasher.finalize().into());
        if digest != output {
            return Ok(Err(format!(
                "body of action {action} hashes to {digest}, not its OutputID {output}; not stored"
            )));
        }
        Ok(Ok(temp))
    }
}

/// Writes through to the temporary file while hashing, so the body is read exactly once.
struct HashingWriter {
    inner: BufWriter<TempFile>,
    hasher: Sha256,
}

impl Write for HashingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
