//! Liveness and readiness probes (Kubernetes' semantics): `http` (a GET answered 2xx or
//! 3xx), `tcp` (a connection), `exec` (exit code 0), each within its timeout.
//!
//! The HTTP probe is a hand-written HTTP/1.0 GET over a tokio TcpStream: it needs the
//! status line only, and the workspace has no HTTP client crate (hyper's connection API would
//! need a body type and an executor for one request).
use super::config::{ProbeKind, ProbeSpec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Runs one probe; `Err` says why it failed.
pub async fn run(p: &ProbeSpec, uid: Option<u32>, gid: Option<u32>) -> Result<(), String> {
    match tokio::time::timeout(p.timeout, once(&p.kind, uid, gid)).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {:?}", p.timeout)),
    }
}

async fn once(kind: &ProbeKind, uid: Option<u32>, gid: Option<u32>) -> Result<(), String> {
    match kind {
        ProbeKind::Tcp(addr) => tokio::net::TcpStream::connect(addr.as_str())
            .await
            .map(|_| ())
            .map_err(|e| format!("connecting to {addr}: {e}")),
        ProbeKind::Http { host, port, path } => {
            let mut s = tokio::net::TcpStream::connect((host.as_str(), *port))
                .await
                .map_err(|e| format!("connecting to {host}:{port}: {e}"))?;
            let req = format!(
                "GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\nUser-Agent: procman-probe\r\nConnection: close\r\n\r\n"
            );
            s.write_all(req.as_bytes())
                .await
                .map_err(|e| format!("sending the request: {e}"))?;
            let mut head = Vec::with_capacity(256);
            let mut buf = [0u8; 256];
            while !head.contains(&b'\n') && head.len() < 4096 {
                let n = s
                    .read(&mut buf)
                    .await
                    .map_err(|e| format!("reading the answer: {e}"))?;
                if n == 0 {
                    break;
                }
                head.extend_from_slice(&buf[..n]);
            }
            let line = String::from_utf8_lossy(&head);
            let line = line.lines().next().unwrap_or("");
            let code: u16 = line
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.parse().ok())
                .ok_or_else(|| format!("not an HTTP answer: {:?}", truncate(line)))?;
            if (200..400).contains(&code) {
                Ok(())
            } else {
                Err(format!("HTTP {code}"))
            }
        }
        ProbeKind::Exec(argv) => {
            let mut cmd = tokio::process::Command::new(&argv[0]);
            cmd.args(&argv[1..])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .kill_on_drop(true);
            if let Some(g) = gid {
                cmd.gid(g);
            }
            if let Some(u) = uid {
                cmd.uid(u);
            }
            let st = cmd
                .status()
                .await
                .map_err(|e| format!("running {}: {e}", argv[0]))?;
            if st.success() {
                Ok(())
            } else {
                Err(format!("{} {st}", argv[0]))
            }
        }
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(80).collect()
}
