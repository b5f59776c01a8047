//! `healthcheck` subcommand of the binaries, for container health checks in
//! images that have no shell or curl: asks the process's own `/ready`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// GETs `/ready` on the address the service binds (0.0.0.0 becomes
/// loopback) and succeeds on HTTP 200.
pub fn probe(bind: SocketAddr) -> anyhow::Result<()> {
    let mut addr = bind;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let timeout = Duration::from_secs(2);
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(b"GET /ready HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head)?;
    if head.starts_with(b"HTTP/1.") && &head[9..12] == b"200" {
        Ok(())
    } else {
        anyhow::bail!("not ready: {}", String::from_utf8_lossy(&head))
    }
}
