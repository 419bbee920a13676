"""The pattern Temporal documents for AgentCore Runtime, as the bench's anchor: a
`bedrock-agentcore` handler that starts an ordinary `temporalio` worker for each invocation
and stops it when a simple idle timer says so (no task for IDLE_SECS, 2 by default). It
serves the same `HelloWorkflow` (one activity) as `examples/hello`, on the version the
Worker Controller invokes it for. Variables: PORT, TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE,
TEMPORAL_TASK_QUEUE, HELLO_DEPLOYMENT_NAME, HELLO_BUILD_ID, IDLE_SECS."""

import asyncio
import os
import time
from datetime import timedelta

from temporalio import activity, workflow

with workflow.unsafe.imports_passed_through():
    from bedrock_agentcore import BedrockAgentCoreApp
from temporalio.client import Client
from temporalio.common import VersioningBehavior, WorkerDeploymentVersion
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
    Worker,
    WorkerDeploymentConfig,
)

app = BedrockAgentCoreApp()
IDLE_SECS = float(os.environ.get("IDLE_SECS", "2"))
last_task = time.monotonic()


@activity.defn(name="say_hello")
async def say_hello(name: str) -> str:
    return f"Hello, {name}!"


@workflow.defn(name="HelloWorkflow")
class HelloWorkflow:
    @workflow.run
    async def run(self, name: str) -> str:
        return await workflow.execute_activity(
            say_hello, name, start_to_close_timeout=timedelta(seconds=10)
        )


class _Activity(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput):
        global last_task
        last_task = time.monotonic()
        try:
            return await super().execute_activity(input)
        finally:
            last_task = time.monotonic()


class IdleTimer(Interceptor):
    """Each activity resets the idle timer."""

    def intercept_activity(self, next):
        return _Activity(next)



async def run_worker(task_id: int) -> None:
    global last_task
    try:
        client = await Client.connect(
            os.environ["TEMPORAL_ADDRESS"],
            namespace=os.environ.get("TEMPORAL_NAMESPACE", "default"),
        )
        version = WorkerDeploymentVersion(
            deployment_name=os.environ["HELLO_DEPLOYMENT_NAME"],
            build_id=os.environ.get("HELLO_BUILD_ID", "build-1"),
        )
        worker = Worker(
            client,
            task_queue=os.environ["TEMPORAL_TASK_QUEUE"],
            workflows=[HelloWorkflow],
            activities=[say_hello],
            interceptors=[IdleTimer()],
            deployment_config=WorkerDeploymentConfig(
                version=version,
                use_worker_versioning=True,
                default_versioning_behavior=VersioningBehavior.AUTO_UPGRADE,
            ),
        )
        last_task = time.monotonic()
        async with worker:
            while time.monotonic() - last_task < IDLE_SECS:
                await asyncio.sleep(0.1)
    finally:
        app.complete_async_task(task_id)


@app.entrypoint
async def invoke(payload):
    task_id = app.add_async_task("temporal-worker")
    asyncio.get_running_loop().create_task(run_worker(task_id))
    return {"status": "started"}


if __name__ == "__main__":
    app.run(port=int(os.environ.get("PORT", "8080")))
