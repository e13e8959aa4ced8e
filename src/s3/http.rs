//! A small HTTP seam: send one request with a small body, get status, headers and a small
//! body back. The credential providers (instance metadata, containers, STS) use it, so
//! the recorded exchanges of `tests/data/credentials/` replay in unit tests; the
//! real implementation is a ureq agent of its own, with short timeouts and no redirects.

use std::io::Read;
use std::time::Duration;

/// One request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HttpRequest {
    pub(crate) method: String,
    pub(crate) url: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
    /// Bound on the whole exchange.
    pub(crate) timeout: Duration,
}

impl HttpRequest {
    /// A request without headers or body.
    pub(crate) fn new(method: &str, url: &str, timeout: Duration) -> HttpRequest {
        HttpRequest { method: method.into(), url: url.into(), headers: Vec::new(), body: Vec::new(), timeout }
    }

    /// With one more header.
    pub(crate) fn header(mut self, name: &str, value: &str) -> HttpRequest {
        self.headers.push((name.to_ascii_lowercase(), value.to_string()));
        self
    }

    /// With a body.
    pub(crate) fn body(mut self, body: Vec<u8>) -> HttpRequest {
        self.body = body;
        self
    }
}

/// One answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct HttpResponse {
    pub(crate) status: u16,
    /// Names lower-cased.
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl HttpResponse {
    /// A header's value by (lower-case) name.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The body as text (lossy).
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends requests. `Err` is a transport failure (no answer); any status is an `Ok`.
pub(crate) trait Http: Send + Sync {
    fn send(&self, request: &HttpRequest) -> Result<HttpResponse, String>;
}

/// The largest answer a credential endpoint may send.
const MAX_BODY: u64 = 1024 * 1024;

/// The real thing: a ureq agent (with this program's TLS and proxy settings).
pub(crate) struct UreqHttp {
    agent: ureq::Agent,
}

impl UreqHttp {
    /// An agent for small exchanges with credential endpoints.
    pub(crate) fn new(agent: ureq::Agent) -> UreqHttp {
        UreqHttp { agent }
    }
}

impl Http for UreqHttp {
    fn send(&self, request: &HttpRequest) -> Result<HttpResponse, String> {
        let mut builder = ureq::http::Request::builder().method(request.method.as_str()).uri(&request.url);
        for (name, value) in &request.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        let built = builder.body(request.body.clone()).map_err(|e| e.to_string())?;
        let configured = self.agent.configure_request(built).timeout_global(Some(request.timeout)).build();
        let response = self.agent.run(configured).map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_ascii_lowercase(), v.to_str().ok()?.to_string())))
            .collect();
        let mut body = Vec::new();
        response.into_body().into_reader().take(MAX_BODY).read_to_end(&mut body).map_err(|e| e.to_string())?;
        Ok(HttpResponse { status, headers, body })
    }
}
