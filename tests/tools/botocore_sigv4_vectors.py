#!/usr/bin/env python3
"""Generate S3 SigV4 cross-check vectors with botocore for src/s3/sigv4.rs.

The Rust tests embed this script's output as fixed fixtures (they never run
Python). Re-run it by hand after changing the cases:

    python3 tests/tools/botocore_sigv4_vectors.py

It signs path-style requests against a Garage-like endpoint with botocore's own
S3 signer S3SigV4Auth (Authorization header, PUT with a body; the program does
not presign, so S3SigV4QueryAuth is not used). Object keys are encoded the way botocore's
REST serializer encodes a `{Key+}` label (percent_encode(key, safe='/~')), and
that encoding is checked against S3's rule (every byte except A-Za-z0-9-._~
and '/' as %XX) so a divergence between botocore and S3 would be reported.
"""
import datetime
import hashlib

import botocore.auth
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.utils import percent_encode

ACCESS_KEY = "GK31c2f218a2e44f485b94239e"
SECRET_KEY = "b892c0665f0ada8a4755dae98baa3b133590e11dae3bcc1f9d769d67f16c3835"
TOKEN = "FQoGZXIvYXdzE//////////+session/token="
REGION = "garage"
HOST = "127.0.0.1:3900"
BUCKET = "bucket"
# 2024-02-29T23:59:59Z: a leap day, one second before the date rolls over.
FIXED_TIME = datetime.datetime(2024, 2, 29, 23, 59, 59)
BODY = b"hello, cache\n"
META_OUTPUTID = "  out   id  "
# Raw query pairs for the "everything" key: a value needing encoding, an empty value.
QUERY = [("response-content-disposition", 'attachment; filename="a b+c.txt"'), ("versionId", "")]

KEYS = [
    ("space", "dir/with space.txt"),
    ("plus", "a+b"),
    ("equals_amp", "k=v&x=y"),
    ("sub_delims", "!'()*"),
    ("utf8", "\u00fc/\u65e5\u672c"),
    ("double_slash", "a//b"),
    ("dot_segments", "a/../b"),
    ("percent", "100%"),
    ("tilde", "~user"),
    ("everything", " +=&!'()*\u00fc/\u65e5\u672c//./../%~-._:@,;$#?[]"),
]

UNRESERVED = set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def s3_encode(key):
    """S3's rule, written independently of botocore."""
    out = []
    for b in key.encode("utf-8"):
        if b in UNRESERVED or b == ord("/"):
            out.append(chr(b))
        else:
            out.append("%%%02X" % b)
    return "".join(out)


def rust_str(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\t", "\\t") + '"'


def main():
    # botocore reads the clock through this module-level name.
    botocore.auth.get_current_datetime = lambda *a, **k: FIXED_TIME
    print("// botocore", botocore.__version__, "time", FIXED_TIME.isoformat() + "Z")
    mismatches = 0
    for name, key in KEYS:
        boto_path = percent_encode(key, safe="/~")
        if boto_path != s3_encode(key):
            mismatches += 1
            print(f"// MISMATCH {name}: botocore {boto_path} vs S3 {s3_encode(key)}")
        path = f"/{BUCKET}/{s3_encode(key)}"
        url = f"http://{HOST}{path}"
        for with_token in (False, True):
            creds = Credentials(ACCESS_KEY, SECRET_KEY, TOKEN if with_token else None)

            query_pairs = QUERY if name == "everything" else []
            put = AWSRequest(method="PUT", url=url, data=BODY, params=dict(query_pairs),
                             headers={"x-amz-meta-outputid": META_OUTPUTID})
            S3SigV4Auth(creds, "s3", REGION).add_auth(put)
            assert put.headers["X-Amz-Content-SHA256"] == hashlib.sha256(BODY).hexdigest()

            print("BotoCase {")
            print(f"    name: {rust_str(name + ('_token' if with_token else ''))},")
            print(f"    key: {rust_str(key)},")
            print(f"    token: {'true' if with_token else 'false'},")
            print(f"    path: {rust_str(path)},")
            pairs = ", ".join(f"({rust_str(k)}, {rust_str(v)})" for k, v in query_pairs)
            print(f"    query: &[{pairs}],")
            print(f"    authorization: {rust_str(put.headers['Authorization'])},")
            print("},")
    print(f"// key encoding mismatches between botocore and S3 rule: {mismatches}")


if __name__ == "__main__":
    main()
