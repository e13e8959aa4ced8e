#!/usr/bin/env python3
"""Bootstrap a moto server started with INITIAL_NO_AUTH_ACTION_COUNT=3.

The first 3 actions moto receives are not authenticated; every later request has
its SigV4 signature rebuilt and checked, and is authorised against IAM policies.
We spend the 3 free actions on IAM: CreateUser, PutUserPolicy (allow s3:*, iam:*,
sts:*), CreateAccessKey. Then, signed with the new key: CreateBucket, and a role
"cache-role" (anyone may assume it, by AssumeRole or with a web identity; allowed
s3:*) for the credential-chain tests. Finally we check that a request signed with a
WRONG secret is rejected; if not, exit 3.

Prints one JSON line {"access_key": ..., "secret_key": ..., "role_arn": ...} on success.
Usage: moto_init.py --endpoint URL --bucket NAME
"""
import argparse
import json
import sys

import boto3
import botocore.config
from botocore.exceptions import ClientError

p = argparse.ArgumentParser()
p.add_argument("--endpoint", required=True)
p.add_argument("--bucket", required=True)
p.add_argument("--region", default="us-east-1")
a = p.parse_args()

cfg = botocore.config.Config(
    s3={"addressing_style": "path"},
    retries={"max_attempts": 1, "mode": "standard"},
    request_checksum_calculation="when_required",
    response_checksum_validation="when_required",
)
bootstrap = dict(
    endpoint_url=a.endpoint,
    region_name=a.region,
    aws_access_key_id="bootstrap",
    aws_secret_access_key="bootstrap",
    config=cfg,
)

iam = boto3.client("iam", **bootstrap)
iam.create_user(UserName="cachetest")  # free action 1
iam.put_user_policy(  # free action 2
    UserName="cachetest",
    PolicyName="s3all",
    PolicyDocument=json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": ["s3:*", "iam:*", "sts:*"], "Resource": "*"}],
        }
    ),
)
key = iam.create_access_key(UserName="cachetest")["AccessKey"]  # free action 3
ak, sk = key["AccessKeyId"], key["SecretAccessKey"]

s3 = boto3.client(
    "s3",
    endpoint_url=a.endpoint,
    region_name=a.region,
    aws_access_key_id=ak,
    aws_secret_access_key=sk,
    config=cfg,
)
s3.create_bucket(Bucket=a.bucket)  # signed, checked
s3.head_bucket(Bucket=a.bucket)

signed_iam = boto3.client(
    "iam", endpoint_url=a.endpoint, region_name=a.region, aws_access_key_id=ak, aws_secret_access_key=sk, config=cfg
)
trust = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"},
        {"Effect": "Allow", "Principal": {"Federated": "*"}, "Action": "sts:AssumeRoleWithWebIdentity"},
    ],
}
role_arn = signed_iam.create_role(RoleName="cache-role", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
signed_iam.put_role_policy(
    RoleName="cache-role",
    PolicyName="s3all",
    PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
    ),
)

bad = boto3.client(
    "s3",
    endpoint_url=a.endpoint,
    region_name=a.region,
    aws_access_key_id=ak,
    aws_secret_access_key=sk[:-1] + ("A" if sk[-1] != "A" else "B"),
    config=cfg,
)
try:
    bad.list_objects_v2(Bucket=a.bucket)
except ClientError as e:
    code = e.response.get("Error", {}).get("Code", "")
    status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if status != 403:
        print(f"moto_init: wrong secret gave {status} {code}, expected 403", file=sys.stderr)
        sys.exit(3)
else:
    print("moto_init: moto ACCEPTED a request signed with a wrong secret: "
          "signature checking is off", file=sys.stderr)
    sys.exit(3)

print(json.dumps({"access_key": ak, "secret_key": sk, "role_arn": role_arn, "wrong_secret_code": code}))
