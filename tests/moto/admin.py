"""Runs AWS calls as moto's admin user with boto3 (an independent SigV4 implementation).

Usage: python3 admin.py ENDPOINT ACCESS_KEY SECRET_KEY < calls.json
calls.json: [{"service": "ssm", "region": "us-west-2", "op": "put_parameter", "args": {...}}, ...]
An argument {"base64": "..."} is passed as those bytes (e.g. SecretBinary).
Prints a JSON list with each call's result (datetimes as strings).
"""
import base64
import json
import sys

import boto3

endpoint, access_key, secret_key = sys.argv[1:4]
calls = json.load(sys.stdin)
clients = {}
results = []
for call in calls:
    k = (call["service"], call["region"])
    if k not in clients:
        clients[k] = boto3.client(
            call["service"],
            region_name=call["region"],
            endpoint_url=endpoint,
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
        )
    args = {
        name: base64.b64decode(v["base64"]) if isinstance(v, dict) and set(v) == {"base64"} else v
        for name, v in call.get("args", {}).items()
    }
    result = getattr(clients[k], call["op"])(**args)
    result.pop("ResponseMetadata", None)
    results.append(result)
print(json.dumps(results, default=str))
