#!/usr/bin/env python3
"""Independent S3 client (boto3) used by the integration tests to check what
gocacheprog-s3 wrote, and to plant objects.

usage: s3check.py --endpoint URL --region R --bucket B
                  [--access-key AK --secret-key SK]   (default: $AWS_ACCESS_KEY_ID / $AWS_SECRET_ACCESS_KEY)
                  list [--prefix P]                   one JSON object per line:
                                                      {"key","size","sha256","metadata"}, and for
                                                      keys ending in .lz4 "decoded_sha256": the
                                                      SHA-256 of the body decoded as an LZ4 frame
                                                      (python's lz4 package, not our decoder)
                | put --key K --file F [--meta k=v ...]
                | get --key K --out F
                | delete --key K
                | create-bucket                       create the bucket (for stores without a CLI for it)
                | head --key K                        one JSON object {"key","size","metadata","sse","sse_kms_key_id"}

Path-style addressing; the 2025 "flexible checksum" behaviour of botocore is
switched off (request/response checksums only when required) because
s3s-fs/garage/other stores may not support it. No retries: a failure is reported
at once. Exit status 0 on success, 1 on an S3/network error (message on stderr),
2 on bad usage.
"""
import argparse
import hashlib
import json
import os
import sys

try:
    import boto3
    import botocore.config
    from botocore import handlers
    from botocore.exceptions import BotoCoreError, ClientError
except ImportError as e:  # pragma: no cover
    print(f"s3check: {e}; run scripts/install-test-deps.sh", file=sys.stderr)
    sys.exit(2)


def parse_args():
    p = argparse.ArgumentParser(prog="s3check.py")
    p.add_argument("--endpoint", required=True)
    p.add_argument("--region", required=True)
    p.add_argument("--bucket", required=True)
    p.add_argument("--access-key", default=os.environ.get("AWS_ACCESS_KEY_ID"))
    p.add_argument("--secret-key", default=os.environ.get("AWS_SECRET_ACCESS_KEY"))
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("list")
    s.add_argument("--prefix", default="")

    s = sub.add_parser("put")
    s.add_argument("--key", required=True)
    s.add_argument("--file", required=True)
    s.add_argument("--meta", action="append", default=[], metavar="K=V")

    s = sub.add_parser("get")
    s.add_argument("--key", required=True)
    s.add_argument("--out", required=True)

    s = sub.add_parser("delete")
    s.add_argument("--key", required=True)

    sub.add_parser("create-bucket")

    s = sub.add_parser("head")
    s.add_argument("--key", required=True)

    a = p.parse_args()
    if not a.access_key or not a.secret_key:
        p.error("credentials missing: pass --access-key/--secret-key or set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY")
    return a


def client(a):
    cfg = botocore.config.Config(
        s3={"addressing_style": "path"},
        retries={"max_attempts": 1, "mode": "standard"},
        connect_timeout=5,
        read_timeout=30,
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    s3 = boto3.session.Session().client(
        "s3",
        endpoint_url=a.endpoint,
        region_name=a.region,
        aws_access_key_id=a.access_key,
        aws_secret_access_key=a.secret_key,
        aws_session_token=os.environ.get("AWS_SESSION_TOKEN") or None,
        config=cfg,
    )
    # botocore adds `encoding-type=url` to ListObjects(V2) and then URL-decodes
    # the keys it gets back. s3s-fs 0.14 echoes <EncodingType>url</EncodingType>
    # but returns the keys raw, so a key with `+` came back with a space. List
    # without encoding-type instead: keys come back XML-escaped only, which is
    # exact for any key that is valid XML text.
    s3.meta.events.unregister(
        "before-parameter-build.s3.ListObjectsV2", handlers.set_list_objects_encoding_type_url
    )
    s3.meta.events.unregister(
        "before-parameter-build.s3.ListObjects", handlers.set_list_objects_encoding_type_url
    )
    return s3


def cmd_list(s3, a):
    kwargs = {"Bucket": a.bucket, "Prefix": a.prefix}
    while True:
        resp = s3.list_objects_v2(**kwargs)
        for obj in resp.get("Contents", []):
            got = s3.get_object(Bucket=a.bucket, Key=obj["Key"])
            body = got["Body"].read()
            found = {
                "key": obj["Key"],
                "size": obj["Size"],
                "sha256": hashlib.sha256(body).hexdigest(),
                "metadata": got.get("Metadata", {}),
                "last_modified": obj["LastModified"].timestamp(),
            }
            if obj["Key"].endswith(".lz4"):
                import lz4.frame

                found["decoded_sha256"] = hashlib.sha256(lz4.frame.decompress(body)).hexdigest()
            print(json.dumps(found, sort_keys=True), flush=True)
        if not resp.get("IsTruncated"):
            break
        kwargs["ContinuationToken"] = resp["NextContinuationToken"]


def cmd_put(s3, a):
    meta = {}
    for kv in a.meta:
        if "=" not in kv:
            print(f"s3check: --meta wants K=V, got {kv!r}", file=sys.stderr)
            sys.exit(2)
        k, v = kv.split("=", 1)
        meta[k] = v
    with open(a.file, "rb") as f:
        body = f.read()
    s3.put_object(Bucket=a.bucket, Key=a.key, Body=body, Metadata=meta)


def cmd_get(s3, a):
    got = s3.get_object(Bucket=a.bucket, Key=a.key)
    with open(a.out, "wb") as f:
        f.write(got["Body"].read())


def cmd_delete(s3, a):
    s3.delete_object(Bucket=a.bucket, Key=a.key)


def cmd_create_bucket(s3, a):
    s3.create_bucket(Bucket=a.bucket)


def cmd_head(s3, a):
    got = s3.head_object(Bucket=a.bucket, Key=a.key)
    print(json.dumps({"key": a.key, "size": got["ContentLength"], "metadata": got.get("Metadata", {}),
                      "sse": got.get("ServerSideEncryption"), "sse_kms_key_id": got.get("SSEKMSKeyId")},
                     sort_keys=True))


def main():
    a = parse_args()
    s3 = client(a)
    try:
        {"list": cmd_list, "put": cmd_put, "get": cmd_get, "delete": cmd_delete, "head": cmd_head,
         "create-bucket": cmd_create_bucket}[a.cmd](s3, a)
    except ClientError as e:
        err = e.response.get("Error", {})
        status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        print(
            f"s3check {a.cmd}: HTTP {status} {err.get('Code', '?')}: {err.get('Message', '')}",
            file=sys.stderr,
        )
        sys.exit(1)
    except (BotoCoreError, OSError) as e:
        print(f"s3check {a.cmd}: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
