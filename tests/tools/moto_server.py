#!/usr/bin/env python3
"""Start `moto.server` with two fixes to its SigV4 check (same arguments as
`python3 -m moto.server`).

1. STS `AssumeRoleWithWebIdentity` (and `AssumeRoleWithSAML`) are unsigned in AWS: the
   token is the proof. With authentication on, moto still looks for an Authorization
   header and fails with a 500 (KeyError HTTP_AUTHORIZATION), for boto3 as for anyone.
   The fix lets those two actions through unauthenticated, as AWS does.

2. The URL the signature is checked against:

With INITIAL_NO_AUTH_ACTION_COUNT set, moto re-signs each request with
botocore, but from the URL werkzeug reconstructs from the *decoded* WSGI
PATH_INFO/QUERY_STRING rather than from what the client sent (known issue,
getmoto/moto#5948). So correctly signed requests are rejected with
SignatureDoesNotMatch whenever the key contains `+` or `%`, or a query value
contains `/` (ListObjectsV2 `prefix=a%2Fb`, `start-after`, continuation tokens).

The fix: take the raw request target werkzeug's server records
(environ["RAW_URI"]), decode every path segment / query key / value once and
re-encode it the way S3 canonicalises (RFC 3986 unreserved kept, `/` kept in the
path only), and let moto's unchanged botocore-based check run on that URL. This is
what real S3 does, so a client that signs something other than the canonical
form is still rejected.
"""
import sys
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from moto.core import authorization


def _canonical_target(raw: str) -> str:
    path, _, query = raw.partition("?")
    path = quote(unquote(path), safe="/")
    pairs = []
    for part in query.split("&") if query else []:
        k, eq, v = part.partition("=")
        pairs.append(quote(unquote(k), safe="") + "=" + quote(unquote(v), safe=""))
    return path + ("?" + "&".join(pairs) if pairs else "")


_orig = authorization.ActionAuthenticatorMixin._authenticate_and_authorize_action


_UNSIGNED_ACTIONS = ("AssumeRoleWithWebIdentity", "AssumeRoleWithSAML")


def _patched(self, iam_request_cls, resource="*"):
    try:
        if self._get_action() in _UNSIGNED_ACTIONS:
            return None
    except Exception:  # not a query-protocol request: go on as usual
        pass
    raw = None
    try:
        import flask

        raw = flask.request.environ.get("RAW_URI") or flask.request.environ.get("REQUEST_URI")
    except Exception:  # no request context: leave moto alone
        pass
    if not raw or not isinstance(getattr(self, "uri", None), str):
        return _orig(self, iam_request_cls, resource)
    saved = self.uri
    u = urlsplit(saved)
    target = urlsplit(_canonical_target(raw))
    self.uri = urlunsplit((u.scheme, u.netloc, target.path, target.query, ""))
    try:
        return _orig(self, iam_request_cls, resource)
    finally:
        self.uri = saved


authorization.ActionAuthenticatorMixin._authenticate_and_authorize_action = _patched

if __name__ == "__main__":
    from moto.server import main

    main(sys.argv[1:])
