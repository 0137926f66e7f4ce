//! Which function made an AWS request: every function under `cargo lambda watch` shares one
//! `AWS_ENDPOINT_URL`, so the counting proxy finds the caller from the connection instead. Linux only:
//! the client's port gives the socket's inode (`/proc/net/tcp`), and the function process holding
//! that socket (`/proc/<pid>/fd`) gives the binary's name. Anything else is `unattributed`.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Mutex;

/// Finds the calling function of a connection to the proxy.
pub struct Callers {
    /// The function binaries to look for.
    names: Vec<String>,
    proxy_port: u16,
    /// Known function processes: `(pid, binary)`.
    pids: Mutex<Vec<(u32, String)>>,
}

impl Callers {
    pub fn new(names: Vec<String>, proxy_port: u16) -> Callers {
        Callers {
            names,
            proxy_port,
            pids: Mutex::new(Vec::new()),
        }
    }

    /// The binary of the function whose socket is `peer`, if found.
    pub fn resolve(&self, peer: SocketAddr) -> Option<String> {
        let inode = socket_inode(peer.port(), self.proxy_port)?;
        let mut pids = self.pids.lock().ok()?;
        for refreshed in [false, true] {
            if refreshed {
                *pids = function_processes(&self.names);
            }
            for (pid, name) in pids.iter() {
                if holds_socket(*pid, inode) {
                    return Some(name.clone());
                }
            }
        }
        None
    }
}

/// The inode of the established TCP socket from `client_port` to `server_port` (IPv4 or IPv6).
fn socket_inode(client_port: u16, server_port: u16) -> Option<u64> {
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .find_map(|table| {
            let text = std::fs::read_to_string(table).ok()?;
            find_inode(&text, client_port, server_port)
        })
}

/// Looks up a `/proc/net/tcp` table: the line whose local port is `client_port` and remote port
/// `server_port`; its inode (0 means none: a socket in TIME_WAIT).
pub fn find_inode(table: &str, client_port: u16, server_port: u16) -> Option<u64> {
    let port = |addr: &str| {
        addr.rsplit(':')
            .next()
            .and_then(|p| u16::from_str_radix(p, 16).ok())
    };
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (local, remote, inode) = (fields.get(1)?, fields.get(2)?, fields.get(9)?);
        if port(local)? != client_port || port(remote)? != server_port {
            return None;
        }
        inode.parse::<u64>().ok().filter(|i| *i != 0)
    })
}

/// Processes whose executable is one of `names` (the functions' debug binaries).
fn function_processes(names: &[String]) -> Vec<(u32, String)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let exe = std::fs::read_link(e.path().join("exe")).ok()?;
            let name = exe.file_name()?.to_str()?;
            let name = name.trim_end_matches(" (deleted)");
            names
                .iter()
                .find(|n| n.as_str() == name)
                .map(|n| (pid, n.clone()))
        })
        .collect()
}

fn holds_socket(pid: u32, inode: u64) -> bool {
    let wanted = format!("socket:[{inode}]");
    let dir = Path::new("/proc").join(pid.to_string()).join("fd");
    let Ok(fds) = std::fs::read_dir(dir) else {
        return false;
    };
    fds.flatten().any(|fd| {
        std::fs::read_link(fd.path()).is_ok_and(|target| target.as_os_str() == wanted.as_str())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_socket_of_a_client_port_is_found_in_the_tcp_table() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:C350 0100007F:1F90 01 00000000:00000000 00:00000000 00000000  1000        0 424242 1 0000000000000000 20 4 30 10 -1\n   1: 0100007F:1F90 0100007F:C351 06 00000000:00000000 03:00000A2B 00000000     0        0 0 3 0000000000000000\n";
        assert_eq!(find_inode(table, 0xC350, 0x1F90), Some(424_242));
        // TIME_WAIT (inode 0) and unknown ports find nothing.
        assert_eq!(find_inode(table, 0x1F90, 0xC351), None);
        assert_eq!(find_inode(table, 1, 2), None);
    }

    #[test]
    fn this_process_is_found_as_the_holder_of_its_own_connection() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let server_port = listener.local_addr().unwrap().port();
        let client = std::net::TcpStream::connect(("127.0.0.1", server_port)).unwrap();
        let (_accepted, peer) = listener.accept().unwrap();
        assert_eq!(peer.port(), client.local_addr().unwrap().port());
        let inode = socket_inode(peer.port(), server_port).unwrap();
        assert!(holds_socket(std::process::id(), inode));
    }
}
