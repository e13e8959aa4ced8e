//! The XML documents the program reads: S3's `<Error>` body, ListObjectsV2's
//! `<ListBucketResult>`, STS answers and DeleteObjects' `<DeleteResult>`, parsed with
//! quick-xml into plain values; and the one it writes, DeleteObjects' `<Delete>`.

use quick_xml::events::Event;
use quick_xml::Reader;
use std::fmt;

/// A document that is not the XML we expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XmlError(pub String);

impl fmt::Display for XmlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed XML: {}", self.0)
    }
}

impl std::error::Error for XmlError {}

/// What [`walk`] reports, with the element path from the root
/// (e.g. `["ListBucketResult", "Contents", "Key"]`).
enum Node<'a> {
    /// An element starts (so callers can see repeated groups).
    Open(&'a [String]),
    /// An element's text, entities resolved.
    Leaf(&'a [String], String),
}

fn walk(xml: &str, visit: &mut dyn FnMut(Node)) -> Result<(), XmlError> {
    let mut reader = Reader::from_str(xml);
    let mut path: Vec<String> = Vec::new();
    let mut text = String::new();
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) => {
                path.push(String::from_utf8_lossy(e.local_name().as_ref()).into_owned());
                visit(Node::Open(&path));
                text.clear();
            }
            Ok(Event::Empty(e)) => {
                path.push(String::from_utf8_lossy(e.local_name().as_ref()).into_owned());
                visit(Node::Open(&path));
                visit(Node::Leaf(&path, String::new()));
                path.pop();
            }
            Ok(Event::Text(t)) => {
                text.push_str(&t.decode().map_err(|e| XmlError(e.to_string()))?);
            }
            Ok(Event::CData(t)) => {
                // CDATA is literal: escape it so the final unescape restores it.
                let raw = t.decode().map_err(|e| XmlError(e.to_string()))?;
                text.push_str(&quick_xml::escape::escape(raw.as_ref()));
            }
            Ok(Event::GeneralRef(r)) => {
                text.push('&');
                text.push_str(&r.decode().map_err(|e| XmlError(e.to_string()))?);
                text.push(';');
            }
            Ok(Event::End(_)) => {
                if !text.is_empty() {
                    let value = quick_xml::escape::unescape(&text).map_err(|e| XmlError(e.to_string()))?;
                    visit(Node::Leaf(&path, value.into_owned()));
                    text.clear();
                }
                path.pop();
            }
            Ok(Event::Eof) => break,
            Ok(_) => {}
            Err(e) => return Err(XmlError(format!("at byte {}: {e}", reader.error_position()))),
        }
    }
    if !path.is_empty() {
        return Err(XmlError(format!("document ends inside <{}>", path.join("><"))));
    }
    Ok(())
}

/// The fields of an S3 `<Error>` document that matter to us.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorDoc {
    /// `<Code>`, such as `NoSuchBucket`: what `Refusal` classifies.
    pub code: Option<String>,
    /// `<Message>`: the store's explanation.
    pub message: Option<String>,
    pub(crate) request_id: Option<String>,
    /// The bucket's real region (wrong-region errors).
    pub(crate) region: Option<String>,
    /// The server's view of what should have been signed (SignatureDoesNotMatch).
    pub string_to_sign: Option<String>,
    pub(crate) canonical_request: Option<String>,
    /// Set by the client when it has fixed what this answer refused (it learned the
    /// store's clock, or fetched fresh credentials after `ExpiredToken`): the request is
    /// worth signing again, once.
    pub(crate) resign: bool,
}

impl ErrorDoc {
    /// Passes every field through `clean` (removing secrets a store may have echoed).
    pub(crate) fn redact(&mut self, clean: &dyn Fn(&str) -> String) {
        let fields = [
            &mut self.code,
            &mut self.message,
            &mut self.request_id,
            &mut self.region,
            &mut self.string_to_sign,
            &mut self.canonical_request,
        ];
        for text in fields.into_iter().flatten() {
            *text = clean(text);
        }
    }
}

/// Parses an `<Error>` body; anything else yields an empty document.
pub fn parse_error(xml: &str) -> ErrorDoc {
    let mut doc = ErrorDoc::default();
    let _ = walk(xml, &mut |node| {
        let Node::Leaf(path, text) = node else { return };
        if path.len() != 2 || path[0] != "Error" {
            return;
        }
        let slot = match path[1].as_str() {
            "Code" => &mut doc.code,
            "Message" => &mut doc.message,
            "RequestId" => &mut doc.request_id,
            "Region" => &mut doc.region,
            "StringToSign" => &mut doc.string_to_sign,
            "CanonicalRequest" => &mut doc.canonical_request,
            _ => return,
        };
        *slot = Some(text);
    });
    doc
}

/// The credentials of an STS answer (`AssumeRole`, `AssumeRoleWithWebIdentity`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct StsCredentials {
    pub(crate) access_key_id: String,
    pub(crate) secret_access_key: String,
    pub(crate) session_token: String,
    /// As sent (ISO 8601).
    pub(crate) expiration: String,
}

/// Parses an STS answer: its `Credentials`, or the `Error` it holds as `code: message`.
pub(crate) fn parse_sts(xml: &str) -> Result<StsCredentials, String> {
    let mut found = StsCredentials::default();
    let (mut code, mut message) = (None, None);
    walk(xml, &mut |node| {
        let Node::Leaf(path, text) = node else { return };
        let n = path.len();
        if n >= 2 && path[n - 2] == "Credentials" {
            match path[n - 1].as_str() {
                "AccessKeyId" => found.access_key_id = text,
                "SecretAccessKey" => found.secret_access_key = text,
                "SessionToken" => found.session_token = text,
                "Expiration" => found.expiration = text,
                _ => {}
            }
        } else if n >= 2 && path[n - 2] == "Error" {
            match path[n - 1].as_str() {
                "Code" => code = Some(text),
                "Message" => message = Some(text),
                _ => {}
            }
        }
    })
    .map_err(|e| e.to_string())?;
    if let Some(code) = code {
        return Err(format!("{code}: {}", message.unwrap_or_default()));
    }
    if found.access_key_id.is_empty() || found.secret_access_key.is_empty() {
        return Err("the answer holds no credentials".into());
    }
    Ok(found)
}

/// One object of a listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListedObject {
    /// The full object key.
    pub key: String,
    /// The object's length in bytes (as stored, compressed or not).
    pub size: u64,
    pub(crate) last_modified: String,
}

impl ListedObject {
    /// The object's date (its upload, or its last refresh), if the store gave one that
    /// parses.
    pub(crate) fn dated(&self) -> Option<std::time::SystemTime> {
        crate::calendar::parse_rfc3339(&self.last_modified)
    }
}

/// One page of ListObjectsV2.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListPage {
    /// The objects of this page, in key order.
    pub objects: Vec<ListedObject>,
    /// Present when more pages follow.
    pub next_token: Option<String>,
}

/// Parses a `<ListBucketResult>` page.
pub fn parse_list(xml: &str) -> Result<ListPage, XmlError> {
    let mut page = ListPage::default();
    let mut truncated = false;
    let mut bad_size: Option<String> = None;
    let mut root: Option<String> = None;
    walk(xml, &mut |node| match node {
        Node::Open(path) => {
            if path.len() == 1 {
                root = Some(path[0].clone());
            }
            if path.len() == 2 && path[1] == "Contents" {
                page.objects.push(ListedObject::default());
            }
        }
        Node::Leaf(path, text) => match (path.len(), path.get(1).map(String::as_str)) {
            (2, Some("IsTruncated")) => truncated = text.trim() == "true",
            (2, Some("NextContinuationToken")) => page.next_token = Some(text),
            (3, Some("Contents")) => {
                if let Some(obj) = page.objects.last_mut() {
                    match path[2].as_str() {
                        "Key" => obj.key = text,
                        "Size" => match text.trim().parse() {
                            Ok(n) => obj.size = n,
                            Err(_) => bad_size = Some(text),
                        },
                        "LastModified" => obj.last_modified = text,
                        _ => {}
                    }
                }
            }
            _ => {}
        },
    })?;
    if root.as_deref() != Some("ListBucketResult") {
        return Err(XmlError(format!("expected <ListBucketResult>, found {root:?}")));
    }
    if let Some(size) = bad_size {
        return Err(XmlError(format!("object size {size:?} is not a number")));
    }
    if truncated && page.next_token.is_none() {
        return Err(XmlError("truncated listing without NextContinuationToken".into()));
    }
    if !truncated {
        page.next_token = None;
    }
    Ok(page)
}

/// Whether a key can travel in an XML body: XML 1.0 has no way to write most control
/// characters, so such keys are deleted one request each.
pub(crate) fn fits_xml(key: &str) -> bool {
    !key.chars().any(|c| c < ' ' && !matches!(c, '\t' | '\n' | '\r'))
}

/// DeleteObjects' request body, quiet (the answer lists only what failed). Every key must
/// pass [`fits_xml`].
pub(crate) fn delete_request<'a>(keys: impl IntoIterator<Item = &'a str>) -> String {
    let mut xml = String::from(r#"<?xml version="1.0" encoding="UTF-8"?><Delete><Quiet>true</Quiet>"#);
    for key in keys {
        // Carriage returns and tabs would be normalised away by the store's parser.
        let escaped = quick_xml::escape::escape(key).replace('\r', "&#13;").replace('\t', "&#9;");
        xml.push_str(&format!("<Object><Key>{escaped}</Key></Object>"));
    }
    xml.push_str("</Delete>");
    xml
}

/// One key a DeleteObjects answer says it could not delete.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeleteFailure {
    pub(crate) key: String,
    pub(crate) code: String,
    pub(crate) message: String,
}

/// Parses a `<DeleteResult>`: the keys it names under `<Error>` (a quiet request's answer
/// names nothing else).
pub(crate) fn parse_delete_result(xml: &str) -> Result<Vec<DeleteFailure>, XmlError> {
    let mut failures: Vec<DeleteFailure> = Vec::new();
    let mut root: Option<String> = None;
    walk(xml, &mut |node| match node {
        Node::Open(path) => {
            if path.len() == 1 {
                root = Some(path[0].clone());
            }
            if path.len() == 2 && path[1] == "Error" {
                failures.push(DeleteFailure::default());
            }
        }
        Node::Leaf(path, text) => {
            if path.len() == 3 && path[1] == "Error" {
                if let Some(failure) = failures.last_mut() {
                    match path[2].as_str() {
                        "Key" => failure.key = text,
                        "Code" => failure.code = text,
                        "Message" => failure.message = text,
                        _ => {}
                    }
                }
            }
        }
    })?;
    if root.as_deref() != Some("DeleteResult") {
        return Err(XmlError(format!("expected <DeleteResult>, found {root:?}")));
    }
    Ok(failures)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_error_document() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<Error><Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated does not match the signature you provided.</Message><AWSAccessKeyId>AKID</AWSAccessKeyId><StringToSign>AWS4-HMAC-SHA256
20240229T235959Z
20240229/garage/s3/aws4_request
abc</StringToSign><CanonicalRequest>GET
/cache/a%20b
list-type=2&amp;prefix=
host:127.0.0.1</CanonicalRequest><RequestId>4442587FB7D0A2F9</RequestId></Error>"#;
        let doc = parse_error(xml);
        assert_eq!(doc.code.as_deref(), Some("SignatureDoesNotMatch"));
        assert_eq!(doc.request_id.as_deref(), Some("4442587FB7D0A2F9"));
        assert!(doc.string_to_sign.unwrap().starts_with("AWS4-HMAC-SHA256\n20240229T235959Z"));
        assert!(doc.canonical_request.unwrap().contains("list-type=2&prefix="));
    }

    #[test]
    fn wrong_region_and_non_xml() {
        let doc = parse_error("<Error><Code>AuthorizationHeaderMalformed</Code><Region>eu-west-1</Region></Error>");
        assert_eq!(doc.region.as_deref(), Some("eu-west-1"));
        assert_eq!(parse_error("<html>Bad Gateway</html>"), ErrorDoc::default());
        assert_eq!(parse_error(""), ErrorDoc::default());
    }

    #[test]
    fn list_pages() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>cache</Name><Prefix>go-cache/</Prefix><KeyCount>2</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>true</IsTruncated>
<Contents><Key>go-cache/00ab</Key><LastModified>2026-11-25T13:15:25.000Z</LastModified><ETag>&quot;9b2cf535f27731c974343645a3985328&quot;</ETag><Size>199</Size><StorageClass>STANDARD</StorageClass></Contents>
<Contents><Key>go-cache/a&amp;b &lt;c&gt;</Key><LastModified>2026-11-25T13:15:26.000Z</LastModified><Size>0</Size></Contents>
<NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken></ListBucketResult>"#;
        let page = parse_list(xml).unwrap();
        assert_eq!(page.objects.len(), 2);
        assert_eq!(page.objects[0].key, "go-cache/00ab");
        assert_eq!(page.objects[0].size, 199);
        assert_eq!(page.objects[1].key, "go-cache/a&b <c>");
        assert_eq!(page.objects[1].size, 0);
        assert_eq!(page.next_token.as_deref(), Some("1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM="));
        let last = parse_list("<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>").unwrap();
        assert_eq!(last, ListPage::default());
    }

    #[test]
    fn sts_answers() {
        let ok = r#"<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult><Credentials><AccessKeyId>AKIDTEST</AccessKeyId>
  <SecretAccessKey>SECRETKEYTEST</SecretAccessKey><SessionToken>SESSIONTOKEN_TEST</SessionToken>
  <Expiration>2021-08-16T21:52:53Z</Expiration></Credentials></AssumeRoleWithWebIdentityResult>
</AssumeRoleWithWebIdentityResponse>"#;
        let c = parse_sts(ok).unwrap();
        assert_eq!((c.access_key_id.as_str(), c.session_token.as_str()), ("AKIDTEST", "SESSIONTOKEN_TEST"));
        assert_eq!(c.expiration, "2021-08-16T21:52:53Z");
        let err = r#"<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>Not authorized to perform sts:AssumeRoleWithWebIdentity</Message></Error></ErrorResponse>"#;
        assert_eq!(
            parse_sts(err).unwrap_err(),
            "AccessDenied: Not authorized to perform sts:AssumeRoleWithWebIdentity"
        );
        assert!(parse_sts("<html>").is_err());
        assert!(parse_sts("<AssumeRoleResponse/>").is_err());
    }

    #[test]
    fn bad_listings_are_errors() {
        assert!(parse_list("<Error><Code>AccessDenied</Code></Error>").is_err());
        assert!(parse_list("<ListBucketResult><Contents><Size>x</Size></Contents></ListBucketResult>").is_err());
        assert!(parse_list("<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>").is_err());
        assert!(parse_list("<ListBucketResult><Contents>").is_err());
    }

    #[test]
    fn delete_requests_escape_keys_and_answers_name_failures() {
        let body = delete_request(["p/00ab", "p/a&b <c>\r"]);
        assert_eq!(
            body,
            r#"<?xml version="1.0" encoding="UTF-8"?><Delete><Quiet>true</Quiet><Object><Key>p/00ab</Key></Object><Object><Key>p/a&amp;b &lt;c&gt;&#13;</Key></Object></Delete>"#
        );
        assert!(fits_xml("p/a&b <c>\r") && !fits_xml("p/\u{1}"));
        let answer = r#"<?xml version="1.0" encoding="UTF-8"?>
<DeleteResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Deleted><Key>p/ok</Key></Deleted>
<Error><Key>p/a&amp;b</Key><Code>AccessDenied</Code><Message>Access Denied</Message></Error>
<Error><Key>p/x</Key><Code>InternalError</Code><Message>try again</Message></Error></DeleteResult>"#;
        let failures = parse_delete_result(answer).unwrap();
        let keys: Vec<(&str, &str)> = failures.iter().map(|f| (f.key.as_str(), f.code.as_str())).collect();
        assert_eq!(keys, [("p/a&b", "AccessDenied"), ("p/x", "InternalError")]);
        assert_eq!(failures[1].message, "try again");
        assert_eq!(parse_delete_result("<DeleteResult/>").unwrap(), []);
        assert!(parse_delete_result("<Error><Code>NotImplemented</Code></Error>").is_err());
        assert!(parse_delete_result("<DeleteResult><Error>").is_err());
    }
}
