//! `omnistitch healthcheck`: asks a running instance's `/healthz`, for container health checks
//! in images that carry no HTTP client.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{bail, Context};

/// Most bytes of a reply read: the status line and a short body are all that matter.
const MAX_REPLY_BYTES: u64 = 64 * 1024;

/// GETs `path` from `addr`: `Ok` when it answers 200 within `timeout`, else why not.
pub fn check(addr: SocketAddr, path: &str, timeout: Duration) -> anyhow::Result<()> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout).with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).with_context(|| format!("asking {addr} for {path}"))?;
    let mut reply = Vec::new();
    stream.take(MAX_REPLY_BYTES).read_to_end(&mut reply).with_context(|| format!("reading {path} from {addr}"))?;
    let reply = String::from_utf8_lossy(&reply);
    let status = reply.lines().next().unwrap_or_default();
    if status.split_whitespace().nth(1) == Some("200") {
        return Ok(());
    }
    let body = reply.split_once("\r\n\r\n").map_or("", |(_, b)| b.trim());
    bail!("{path} on {addr} answered `{status}`: {body}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A server answering one request with `reply`.
    fn answering(reply: &'static str) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            read_request(&mut s);
            s.write_all(reply.as_bytes()).unwrap();
        });
        addr
    }

    /// Reads a request up to the blank line ending its head.
    fn read_request(s: &mut TcpStream) -> String {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && s.read(&mut byte).unwrap() == 1 {
            head.push(byte[0]);
        }
        String::from_utf8(head).unwrap()
    }

    #[test]
    fn healthy_only_on_200() {
        let t = Duration::from_secs(5);
        let ok = answering("HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nok\n");
        check(ok, "/healthz", t).unwrap();
        let stalled =
            answering("HTTP/1.1 503 Service Unavailable\r\n\r\nstalled: the processing loop has not moved for 130 s\n");
        let e = check(stalled, "/healthz", t).unwrap_err().to_string();
        assert!(e.contains("503") && e.contains("has not moved for 130 s"), "{e}");
        // Nobody listening.
        let gone = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        assert!(check(gone, "/healthz", t).is_err());
    }
}
