//! Test support for temporal-lambda-worker: the real parts, on one machine.
//!
//! - [`RuntimeApi`]: a small Lambda Runtime API server on 127.0.0.1 speaking the
//!   documented protocol (long-poll `next` with the `Lambda-Runtime-*` headers,
//!   `response`, `error`, `init/error`), with real deadlines.
//! - [`ControlPlane`]: a local AWS endpoint (STS `AssumeRole`, Lambda `GetFunction` and
//!   `Invoke`, AgentCore `GetAgentRuntimeEndpoint` and `InvokeAgentRuntime`) for
//!   Temporal's Worker Controller, which runs bootstrap processes the way Lambda does and
//!   container processes the way AgentCore Runtime does (one per runtime session).
//! - [`ServerlessLoop`]: both together, with versions backed by the function.
//! - [`upgrade`]: a second build shipped through the loop, with published Lambda versions
//!   and (stranding a PINNED workflow) without.
//! - [`DevServer`]: `temporal server start-dev` on a free loopback port, stopped by PID.
//! - [`WireRecorder`]: a plain TCP listener recording what a client sends over the wire.
//! - [`SlowRpc`]: a gRPC proxy in front of the dev server that holds one RPC a while (a
//!   server slow to answer it).
//! - [`Bootstrap`]: a Lambda bootstrap binary run as its own process with the
//!   `AWS_LAMBDA_*` environment, as AWS runs it.
#![warn(missing_docs)]

pub mod bench;
pub mod bootstrap;
pub mod control_plane;
pub mod dev_server;
mod error;
mod http;
pub mod otlp;
pub mod runtime_api;
pub mod serverless_loop;
pub mod slow_rpc;
mod temp_dir;
pub mod upgrade;
pub mod wire;

pub use bootstrap::Bootstrap;
pub use control_plane::{
    AgentRuntimeSpec, AgentRuntimeStats, ControlPlane, ControlPlaneOptions, FunctionSpec,
    FunctionStats,
};
pub use dev_server::{DevServer, temporal_cli};
pub use error::{Error, Result};
pub use otlp::{OtlpReceiver, ReceivedMetric, ReceivedSpan};
pub use runtime_api::{Answer, Outcome, Pending, RuntimeApi};
pub use serverless_loop::ServerlessLoop;
pub use slow_rpc::SlowRpc;
pub use temp_dir::TempDir;
pub use wire::WireRecorder;
