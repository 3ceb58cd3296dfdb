//! Readiness probes run from this machine against published ports.
//! (Command checks run inside the container; see `docker.rs`.)

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

const CONNECT: Duration = Duration::from_secs(2);

/// A TCP connection that the service keeps open. Docker's userland proxy
/// accepts every connection on a published port and closes it at once when
/// nothing listens inside the container, so "connected" alone proves
/// nothing: the connection must survive a short read without EOF (servers
/// such as Postgres and Redis wait for the client to speak first), or the
/// server must greet us.
pub async fn tcp(host: &str, port: u16) -> Result<(), String> {
    let mut stream = connect(host, port).await?;
    let mut buf = [0u8; 64];
    match timeout(Duration::from_millis(150), stream.read(&mut buf)).await {
        Err(_) => Ok(()), // still open and quiet: a server is waiting for us
        Ok(Ok(0)) => Err(format!("{host}:{port} closed the connection (nothing listening in the container yet)")),
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("{host}:{port}: {e}")),
    }
}

/// `GET path` answered with a 2xx or 3xx status.
pub async fn http(host: &str, port: u16, path: &str) -> Result<(), String> {
    let mut stream = connect(host, port).await?;
    let path = if path.starts_with('/') { path.to_string() } else { format!("/{path}") };
    let req = format!("GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\nUser-Agent: iso\r\nConnection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).await.map_err(|e| format!("{host}:{port}: {e}"))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 256];
    let read = async {
        loop {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
            if head.contains(&b'\n') {
                break;
            }
        }
        Ok::<_, std::io::Error>(())
    };
    match timeout(Duration::from_secs(3), read).await {
        Err(_) => return Err(format!("GET {path} on {host}:{port}: no answer within 3 s")),
        Ok(Err(e)) => return Err(format!("GET {path} on {host}:{port}: {e}")),
        Ok(Ok(())) => {}
    }
    let line = String::from_utf8_lossy(&head);
    let line = line.lines().next().unwrap_or("").trim().to_string();
    if line.is_empty() {
        return Err(format!("GET {path} on {host}:{port}: connection closed without an answer"));
    }
    let code: u16 = line.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    if (200..400).contains(&code) {
        Ok(())
    } else {
        Err(format!("GET {path} on {host}:{port} answered `{line}`"))
    }
}

async fn connect(host: &str, port: u16) -> Result<TcpStream, String> {
    match timeout(CONNECT, TcpStream::connect((host, port))).await {
        Err(_) => Err(format!("{host}:{port}: connect timed out")),
        Ok(Err(e)) => Err(format!("{host}:{port}: {e}")),
        Ok(Ok(s)) => Ok(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
    }

    #[test]
    fn http_status_decides() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            for answer in ["HTTP/1.0 200 OK\r\n\r\nhi", "HTTP/1.1 503 Service Unavailable\r\n\r\n"] {
                let (mut s, _) = l.accept().unwrap();
                let mut buf = [0u8; 512];
                let _ = s.read(&mut buf);
                s.write_all(answer.as_bytes()).unwrap();
            }
        });
        let rt = rt();
        assert_eq!(rt.block_on(http("127.0.0.1", port, "/")), Ok(()));
        let err = rt.block_on(http("127.0.0.1", port, "health")).unwrap_err();
        assert!(err.contains("503"), "{err}");
        server.join().unwrap();
    }

    #[test]
    fn tcp_needs_a_listener_that_keeps_the_connection() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (quiet, _) = l.accept().unwrap();
            let (closing, _) = l.accept().unwrap();
            drop(closing);
            std::thread::sleep(Duration::from_millis(400));
            drop(quiet);
        });
        let rt = rt();
        assert_eq!(rt.block_on(tcp("127.0.0.1", port)), Ok(()));
        assert!(rt.block_on(tcp("127.0.0.1", port)).unwrap_err().contains("closed"));
        server.join().unwrap();
        assert!(rt.block_on(tcp("127.0.0.1", port)).is_err(), "nothing listens any more");
    }
}
