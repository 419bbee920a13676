# The `hello` worker as an Amazon Bedrock AgentCore Runtime container (docs/agentcore.md):
# arm64 (AgentCore runs arm64 only), serving AgentCore's HTTP contract on 8080. The binary is
# the one `cargo lambda build --release --arm64 --example hello --lambda-dir
# target/lambda/arm64` writes (linked for glibc, so the base image has one); the CA
# certificates are for TLS to Temporal Cloud.
FROM --platform=linux/arm64 public.ecr.aws/amazonlinux/amazonlinux:2023-minimal
RUN microdnf install -y ca-certificates && microdnf clean all
COPY target/lambda/arm64/hello/bootstrap /usr/local/bin/worker
ENV HELLO_HOST=agentcore PORT=8080
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/worker"]
