#!/usr/bin/env bash
# Checks docs/template.yaml: cfn-lint (PyPI cfn-lint, installed by scripts/setup.sh), then
# that it gives `temporal worker deployment create-version` what it needs: a published
# version's ARN (an AWS::Lambda::Version, kept when the next build replaces it), the
# invoker role's ARN with a trust policy that enforces the external id, an invoke policy
# covering every version, and a create-version command whose flags the installed
# `temporal` CLI accepts.
set -euo pipefail
cd "$(dirname "$0")/.."
cfn-lint docs/template.yaml
flags=$(temporal worker deployment create-version --help)
python3 - "$flags" <<'PY'
import sys, yaml

class Loader(yaml.SafeLoader):
    pass

def tag(loader, suffix, node):
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {suffix: value}

Loader.add_multi_constructor("!", tag)
t = yaml.load(open("docs/template.yaml"), Loader=Loader)
help_text = sys.argv[1]
r, out, params = t["Resources"], t["Outputs"], t["Parameters"]
problems = []

def check(ok, what):
    if not ok:
        problems.append(what)

version = r.get("FunctionVersion", {})
check(version.get("Type") == "AWS::Lambda::Version", "FunctionVersion is an AWS::Lambda::Version")
check(version.get("DeletionPolicy") == "Retain" and version.get("UpdateReplacePolicy") == "Retain",
      "the published version is kept when the next build replaces it")
check(out["FunctionVersionArn"]["Value"] == {"Ref": "FunctionVersion"},
      "FunctionVersionArn is the published version (qualified ARN)")
check(out["InvokerRoleArn"]["Value"] == {"GetAtt": "InvokerRole.Arn"}, "InvokerRoleArn output")
trust = r["InvokerRole"]["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]
check(trust["Condition"]["StringEquals"].get("sts:ExternalId") == {"Ref": "ExternalId"},
      "the invoker role's trust policy enforces the external id")
check(params["ExternalId"].get("NoEcho") is True, "the external id is NoEcho")
statement = r["InvokerRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"][0]
check(set(statement["Action"]) == {"lambda:InvokeFunction", "lambda:GetFunction"},
      "the invoker may InvokeFunction and GetFunction")
check({"Sub": "${Function.Arn}:*"} in statement["Resource"], "the invoke policy covers every version")
command = out["CreateVersionCommand"]["Value"]["Sub"]
for flag in ["--deployment-name", "--build-id", "--aws-lambda-function-arn",
             "--aws-lambda-assume-role-arn"]:
    check(flag in command, f"the create-version command passes {flag}")
for flag in ["--aws-lambda-function-arn", "--aws-lambda-assume-role-arn",
             "--aws-lambda-assume-role-external-id", "--deployment-name", "--build-id"]:
    check(flag in help_text, f"the temporal CLI's create-version takes {flag}")
for p in ["DeploymentName", "BuildId", "ExternalId", "TemporalPrincipal", "CodeBucket", "CodeKey"]:
    check(p in params, f"the template takes {p}")
if problems:
    print("docs/template.yaml:", *problems, sep="\n  ", file=sys.stderr)
    sys.exit(1)
print("docs/template.yaml: cfn-lint clean; gives create-version what it needs")
PY
