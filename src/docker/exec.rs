//! Exec calls: create, start (attached), inspect.

use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::models::ExecInspectResponse;
use futures::StreamExt;

use super::call::{from_client, request};
use super::client::client;
use super::{Attached, Frame, policy};
use crate::error::{Error, Result};

/// What to run in a container.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Command<'a> {
    pub(crate) cmd: &'a [String],
    pub(crate) env: &'a [String],
    pub(crate) user: Option<&'a str>,
    pub(crate) working_dir: Option<&'a str>,
    /// Whether the command's stdin is attached.
    pub(crate) stdin: bool,
}

/// Creates an exec instance in container `id`; returns its id.
pub(crate) async fn create(id: &str, name: &str, command: Command<'_>) -> Result<String> {
    let options = CreateExecOptions {
        attach_stdin: Some(command.stdin),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        env: (!command.env.is_empty()).then(|| command.env.to_vec()),
        cmd: Some(command.cmd.to_vec()),
        user: command.user.map(str::to_owned),
        working_dir: command.working_dir.map(str::to_owned),
        ..Default::default()
    };
    let d = client().await?;
    let created = request(&policy::EXEC_CREATE, name, || {
        d.create_exec(id, options.clone())
    })
    .await?;
    Ok(created.id)
}

/// Starts exec `exec_id`, attached: its output as frames, its stdin as a
/// writer.
pub(crate) async fn start(exec_id: &str, name: &str) -> Result<Attached> {
    let d = client().await?;
    let started = request(&policy::EXEC_START, name, || d.start_exec(exec_id, None)).await?;
    match started {
        StartExecResults::Attached { output, input } => {
            let name = name.to_owned();
            Ok(Attached {
                output: output
                    .map(move |f| {
                        f.map(Frame::from)
                            .map_err(|e| from_client("exec", &name, e))
                    })
                    .boxed(),
                input,
            })
        }
        StartExecResults::Detached => Err(Error::docker(
            "exec start",
            name,
            "the daemon did not attach the exec's streams",
        )),
    }
}

/// Inspects exec `exec_id`: whether it runs, its exit code, its host pid.
pub(crate) async fn inspect(exec_id: &str, name: &str) -> Result<ExecInspectResponse> {
    let d = client().await?;
    request(&policy::EXEC_INSPECT, name, || d.inspect_exec(exec_id)).await
}
