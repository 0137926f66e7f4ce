//! Which function made an AWS request: every function under `cargo lambda watch` shares one
//! `AWS_ENDPOINT_URL`, so the counting proxy finds the caller from the connection instead. Linux only:
//! the connection's ports give the client socket's inode (one `sock_diag` netlink query; the
//! `/proc/net/tcp` table if netlink is refused), and the function process holding that socket
//! (`/proc/<pid>/fd`) gives the binary's name. Anything else is `unattributed`.

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
        let inode = match peer {
            SocketAddr::V4(v4) => netlink_inode(*v4.ip(), peer.port(), self.proxy_port),
            SocketAddr::V6(_) => None,
        }
        .or_else(|| socket_inode(peer.port(), self.proxy_port))?;
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

/// The inode of the TCP socket `ip:client_port` -> `ip:server_port`, asked of the kernel with one
/// `SOCK_DIAG_BY_FAMILY` request (an exact lookup: no table to read).
fn netlink_inode(ip: std::net::Ipv4Addr, client_port: u16, server_port: u16) -> Option<u64> {
    use nix::sys::socket::{
        AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, recv, sendto,
        socket,
    };
    use std::os::fd::AsRawFd;
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkSockDiag,
    )
    .ok()?;
    let request = diag_request(ip, client_port, server_port);
    sendto(
        fd.as_raw_fd(),
        &request,
        &NetlinkAddr::new(0, 0),
        MsgFlags::empty(),
    )
    .ok()?;
    let mut answer = [0u8; 1024];
    let n = recv(fd.as_raw_fd(), &mut answer, MsgFlags::empty()).ok()?;
    diag_inode(&answer[..n])
}

/// `SOCK_DIAG_BY_FAMILY`, `NLM_F_REQUEST`: an `nlmsghdr` and an `inet_diag_req_v2` for one socket.
fn diag_request(ip: std::net::Ipv4Addr, client_port: u16, server_port: u16) -> Vec<u8> {
    let mut m = Vec::with_capacity(72);
    m.extend_from_slice(&72u32.to_ne_bytes()); // nlmsg_len
    m.extend_from_slice(&20u16.to_ne_bytes()); // SOCK_DIAG_BY_FAMILY
    m.extend_from_slice(&1u16.to_ne_bytes()); // NLM_F_REQUEST
    m.extend_from_slice(&1u32.to_ne_bytes()); // seq
    m.extend_from_slice(&0u32.to_ne_bytes()); // pid
    m.extend_from_slice(&[2, 6, 0, 0]); // AF_INET, IPPROTO_TCP, ext, pad
    m.extend_from_slice(&u32::MAX.to_ne_bytes()); // every state
    m.extend_from_slice(&client_port.to_be_bytes()); // sport
    m.extend_from_slice(&server_port.to_be_bytes()); // dport
    for _ in 0..2 {
        let mut addr = [0u8; 16];
        addr[..4].copy_from_slice(&ip.octets());
        m.extend_from_slice(&addr); // src, then dst
    }
    m.extend_from_slice(&0u32.to_ne_bytes()); // interface
    m.extend_from_slice(&[0xff; 8]); // INET_DIAG_NOCOOKIE
    m
}

/// The inode of an `inet_diag_msg` answer (none for an error answer).
fn diag_inode(answer: &[u8]) -> Option<u64> {
    let kind = u16::from_ne_bytes(answer.get(4..6)?.try_into().ok()?);
    if kind != 20 {
        return None;
    }
    // nlmsghdr (16) + family, state, timer, retrans (4) + id (48) + expires, rqueue, wqueue, uid (16).
    let inode = u32::from_ne_bytes(answer.get(84..88)?.try_into().ok()?);
    Some(u64::from(inode)).filter(|i| *i != 0)
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
        // The kernel's exact lookup finds the same socket.
        let ip = std::net::Ipv4Addr::LOCALHOST;
        assert_eq!(netlink_inode(ip, peer.port(), server_port), Some(inode));
        assert_eq!(netlink_inode(ip, peer.port(), 1), None);
    }
}
