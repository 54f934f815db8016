//! The CLI's side of the control socket: a tiny HTTP/1.1 client over a Unix
//! stream. The CLI uses it when a daemon is running and falls back to the
//! store otherwise.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// Why a request to the daemon failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no daemon is listening on {0}")]
    NotRunning(String),
    #[error("talking to the daemon on {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("the daemon answered {status}: {message}")]
    Status { status: u16, message: String },
    #[error("the daemon's answer is not valid: {0}")]
    Protocol(String),
}

/// Sends one request and returns the body of a 2xx answer.
pub fn request(
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
) -> Result<serde_json::Value, ClientError> {
    let sp = socket.display().to_string();
    let mut s = UnixStream::connect(socket).map_err(|_| ClientError::NotRunning(sp.clone()))?;
    let io = |source| ClientError::Io {
        path: sp.clone(),
        source,
    };
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(io)?;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: shield\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).map_err(io)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(io)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, rest) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| ClientError::Protocol("no header end".into()))?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| ClientError::Protocol(head.lines().next().unwrap_or("").into()))?;
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    let v: serde_json::Value = if body.trim().is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(&body).map_err(|e| ClientError::Protocol(e.to_string()))?
    };
    if !(200..300).contains(&status) {
        let message = v
            .get("message")
            .and_then(|m| m.as_str())
            .unwrap_or(&body)
            .to_string();
        return Err(ClientError::Status { status, message });
    }
    Ok(v)
}

fn dechunk(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some((len, tail)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(len.trim(), 16).unwrap_or(0);
        if n == 0 || tail.len() < n {
            break;
        }
        out.push_str(&tail[..n]);
        rest = tail[n..].trim_start_matches("\r\n");
    }
    out
}
