"""Offline deploy rehearsal: the SAM template, transformed as `sam deploy` transforms it, created as one
CloudFormation stack on moto. Run by `cargo xtask test` with the SAM CLI's Python (samtranslator, boto3).

usage: python cfn_on_moto.py TEMPLATE MOTO_URL

Fails (exit 1) if the transform fails, the stack does not reach CREATE_COMPLETE, or a resource the
functions depend on (tables, queues, config bucket, functions and their config settings, the event
source mapping, the schedule) is missing. Prints the resource types moto accepted without creating
anything, so the report says what this rehearsal does not cover.
"""

import io
import json
import sys
import time
import zipfile

import boto3
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

CODE_BUCKET = "fluxo-rehearsal-code"
STACK = "fluxo-rehearsal"
STAGE = "rehearsal"


class ManagedPolicies:
    """The AWS managed policies the transform attaches (no IAM call offline)."""

    def load(self):
        return {
            "AWSXrayWriteOnlyAccess": "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",
            "AWSLambdaBasicExecutionRole": "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
            "AWSLambdaSQSQueueExecutionRole": "arn:aws:iam::aws:policy/service-role/AWSLambdaSQSQueueExecutionRole",
        }


def fail(message):
    print(f"  ✗ {message}")
    sys.exit(1)


def main():
    template_path, endpoint = sys.argv[1], sys.argv[2]
    kw = dict(endpoint_url=endpoint, region_name="us-east-1",
              aws_access_key_id="test", aws_secret_access_key="test")
    template = yaml_parse(open(template_path).read())
    binaries = {}
    for logical_id, r in template["Resources"].items():
        if r["Type"] == "AWS::Serverless::Function":
            binary = r["Metadata"]["BuildProperties"]["Binary"]
            binaries[logical_id] = binary
            # What `sam deploy` does after `sam build`: the code is an uploaded zip.
            r["Properties"]["CodeUri"] = f"s3://{CODE_BUCKET}/{binary}.zip"
    transformed = transform(template, {}, ManagedPolicies())
    types = sorted({r["Type"] for r in transformed["Resources"].values()})
    print(f"  ✓ transformed: {len(transformed['Resources'])} resources of {len(types)} types")

    s3 = boto3.client("s3", **kw)
    s3.create_bucket(Bucket=CODE_BUCKET)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("bootstrap", "#!/bin/sh\n")
    for binary in binaries.values():
        s3.put_object(Bucket=CODE_BUCKET, Key=f"{binary}.zip", Body=buf.getvalue())

    cfn = boto3.client("cloudformation", **kw)
    cfn.create_stack(StackName=STACK, TemplateBody=json.dumps(transformed),
                     Capabilities=["CAPABILITY_IAM"],
                     Parameters=[{"ParameterKey": "Stage", "ParameterValue": STAGE}])
    for _ in range(120):
        stack = cfn.describe_stacks(StackName=STACK)["Stacks"][0]
        if not stack["StackStatus"].endswith("IN_PROGRESS"):
            break
        time.sleep(1)
    if stack["StackStatus"] != "CREATE_COMPLETE":
        for e in cfn.describe_stack_events(StackName=STACK)["StackEvents"]:
            if "FAILED" in e["ResourceStatus"]:
                print(f"    {e['LogicalResourceId']} ({e['ResourceType']}): {e.get('ResourceStatusReason')}")
        fail(f"stack {STACK} is {stack['StackStatus']}")
    print(f"  ✓ stack {STACK} CREATE_COMPLETE on moto")

    created = {r["LogicalResourceId"]: r for r in
               cfn.list_stack_resources(StackName=STACK)["StackResourceSummaries"]
               if r.get("ResourceType")}
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    for logical_id, r in transformed["Resources"].items():
        if r["Type"] in ("AWS::DynamoDB::Table", "AWS::SQS::Queue", "AWS::S3::Bucket",
                         "AWS::Lambda::Function", "AWS::IAM::Role", "AWS::Lambda::EventSourceMapping",
                         "AWS::Events::Rule") and logical_id not in created:
            fail(f"{logical_id} ({r['Type']}) was not created")

    bucket = f"fluxo-config-{STAGE}-123456789012-us-east-1"
    if outputs.get("ConfigBucketName") != bucket:
        fail(f"output ConfigBucketName is {outputs.get('ConfigBucketName')!r}, expected {bucket}")
    s3.head_bucket(Bucket=bucket)
    lam = boto3.client("lambda", **kw)
    for logical_id, binary in binaries.items():
        name = created[logical_id]["PhysicalResourceId"]
        env = lam.get_function_configuration(FunctionName=name).get("Environment", {}).get("Variables", {})
        reads_config = "FLUXO_CONFIG_BUCKET" in template["Resources"][logical_id]["Properties"] \
            .get("Environment", {}).get("Variables", {})
        if reads_config and (env.get("FLUXO_CONFIG_BUCKET") != bucket or env.get("FLUXO_CONFIG_KEY") != "fluxo.toml"):
            fail(f"{binary} does not name the config bucket: {env}")
        print(f"  ✓ function {binary}: {name}" + (f" reads s3://{bucket}/fluxo.toml" if reads_config else ""))
    for logical_id in ("LeadsTable", "OptimizerTable", "ConfigBucket"):
        policy = transformed["Resources"][logical_id].get("DeletionPolicy")
        if policy not in ("Retain", "Snapshot"):
            fail(f"{logical_id} has DeletionPolicy {policy!r}: data would be lost on delete")
    print("  ✓ tables and the config bucket keep DeletionPolicy Retain")

    # Resources under a false condition (e.g. no AlarmEmail) are rightly absent.
    skipped = sorted({r["Type"] for lid, r in transformed["Resources"].items()
                      if lid not in created and "Condition" not in r})
    print("  · moto accepted without creating: " + (", ".join(skipped) or "nothing"))
    unresolved = sorted(k for k, v in outputs.items() if "${" in v)
    if unresolved:
        print("  · outputs moto could not resolve: " + ", ".join(unresolved))


if __name__ == "__main__":
    main()
