//! The real `curl` and `openssl` command-line clients.

use std::process::Command;

use anyhow::{bail, Context};

/// Separates the body from curl's `-w` status line on stdout.
const STATUS_MARKER: &str = "\n--portcullis-status:";

/// What one `curl` run produced.
#[derive(Clone, Debug)]
pub struct CurlOutput {
    /// The HTTP status; 0 when there was no HTTP response (handshake refused, ...).
    pub status: u16,
    pub body: String,
    pub stderr: String,
    pub exit_code: i32,
}

/// Runs `curl ARGS -s -S` (never through a proxy, 15 s at most) and returns
/// the status code (from `-w '%{http_code}'`, so a `-w` in `args` has no
/// effect), the body and stderr.
pub fn curl(args: &[&str]) -> crate::Result<CurlOutput> {
    let mut cmd = Command::new("curl");
    cmd.args(args)
        .args(["-s", "-S", "--noproxy", "*"])
        .arg("-w")
        .arg(format!("{STATUS_MARKER}%{{http_code}}"));
    if !args.iter().any(|a| *a == "-m" || *a == "--max-time") {
        cmd.args(["--max-time", "15"]);
    }
    let output = cmd
        .output()
        .context("cannot run curl (run ./scripts/deps to install it)")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let (body, status) = stdout
        .rsplit_once(STATUS_MARKER)
        .with_context(|| format!("curl {args:?} printed no status line: {stdout:?}"))?;
    Ok(CurlOutput {
        status: status.trim().parse().unwrap_or(0),
        body: body.to_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        // Killed by a signal: no code; report it as a failure.
        exit_code: output.status.code().unwrap_or(-1),
    })
}

/// What one `openssl` run produced.
#[derive(Clone, Debug)]
pub struct CommandOutput {
    pub exit_code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `openssl ARGS` with `stdin` on its standard input; returns stdout, or
/// an error with stderr when it exits non-zero.
pub fn openssl(args: &[&str], stdin: &str) -> crate::Result<String> {
    let output = openssl_output(args, stdin)?;
    if output.exit_code != 0 {
        bail!(
            "openssl {} failed ({}): {}",
            args.join(" "),
            output.exit_code,
            output.stderr.trim()
        );
    }
    Ok(output.stdout)
}

/// Runs `openssl ARGS` with `stdin` on its standard input (killed after 15 s,
/// so that an `s_client` waiting on a silent server cannot hang a test).
pub fn openssl_output(args: &[&str], stdin: &str) -> crate::Result<CommandOutput> {
    let mut cmd = Command::new("timeout");
    cmd.args(["15", "openssl"]).args(args);
    let output = run_with_stdin(&mut cmd, stdin)
        .context("cannot run openssl (run ./scripts/deps to install it)")?;
    Ok(CommandOutput {
        exit_code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}

fn run_with_stdin(cmd: &mut Command, stdin: &str) -> std::io::Result<std::process::Output> {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    if let Some(mut input) = child.stdin.take() {
        // openssl may exit before reading everything (s_client); that is not an error here.
        let _ = input.write_all(stdin.as_bytes());
    }
    child.wait_with_output()
}
