//! Lab stage: the private network + mount + UTS namespace everything runs in.
//!
//! [`enter`] moves the calling process (which must still be single-threaded)
//! into fresh namespaces: only a loopback interface, a private `/etc/resolv.conf`
//! naming the fake DNS, and the target's host name. Nothing is left behind on
//! the host: the namespaces, the bind mount and every address vanish with the
//! last process inside them, and no `ip netns` name or file under /etc is made.
//!
//! With docker ([`Net::Docker`]) the network namespace is not made by
//! unshare: docker cannot join one by path, so the lab starts a holder
//! container with `--network none` first and moves this process into that
//! container's network namespace; mounts and host name stay private as always.

pub mod engine;
pub mod sniff;

use nix::mount::{mount, MsFlags};
use nix::sched::{unshare, CloneFlags};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// Where the fake DNS listens inside the lab (glibc's resolver takes no port: 53).
pub const DNS_ADDR: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 53);
/// Where the target listens inside the lab.
pub const TARGET_ADDR: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
/// The target's host name (UTS namespace) and `myhostname`.
pub const TARGET_HOSTNAME: &str = "mta.target.test";

/// Why the lab could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error(
        "mtaspec run needs root: it creates a private network, mount and UTS namespace, \
         binds ports 25 and 53 inside it and starts the target there; run it as root \
         (e.g. `sudo mtaspec run`)"
    )]
    NotRoot,
    #[error("the lab must be set up before any thread is started (this is a bug in mtaspec)")]
    Threaded,
    #[error("cannot create the lab namespaces (unshare): {0}; is this a container without CAP_SYS_ADMIN? run with --privileged or on the host")]
    Unshare(#[source] nix::Error),
    #[error("cannot start the lab's network holder container: {0}")]
    Container(#[source] Box<engine::EngineError>),
    #[error(
        "cannot open {path}: the docker daemon runs in another host or PID namespace \
         (a remote DOCKER_HOST, docker-in-docker); run mtaspec where the daemon runs, e.g. \
         in a container with `--pid host` and the daemon's socket (README: \"Test your Postfix image in CI\")"
    )]
    DockerElsewhere {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot set up the lab: {what}: {source}")]
    Setup {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl LabError {
    fn setup(what: impl Into<String>, source: impl Into<std::io::Error>) -> Self {
        LabError::Setup {
            what: what.into(),
            source: source.into(),
        }
    }
}

/// Where the lab's network namespace comes from.
#[derive(Debug)]
pub enum Net<'a> {
    /// A fresh one (unshare).
    Own,
    /// A podman container will join the lab's own namespace by path: the
    /// lab itself is made as with [`Net::Own`].
    Podman(&'a engine::Engine),
    /// The namespace of a holder container started from `image` with
    /// `--network none`; the MTA containers join it with `container:NAME`.
    Docker {
        engine: &'a engine::Engine,
        image: &'a str,
    },
}

/// The lab's private files; the namespaces themselves belong to the process
/// (and, with docker, to the holder container, removed on drop).
#[derive(Debug)]
pub struct Lab {
    // Dropped first: the holder container goes before the folder.
    holder: Option<engine::Container>,
    dir: tempfile::TempDir,
    nonce: String,
    containers: bool,
}

impl Lab {
    /// The lab's private folder (target config and queues live below it).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The lab's private resolv.conf (only the fake DNS).
    pub fn resolv_conf(&self) -> PathBuf {
        self.dir.path().join("resolv.conf")
    }

    /// A random label for this run: container names carry it, and with
    /// containers so do scenario names ([`Lab::scope_nonce`]).
    pub fn nonce(&self) -> &str {
        &self.nonce
    }

    /// The nonce scenario names carry, when the target runs in containers: an
    /// MTA whose queue outlives a run can never deliver an old run's mail
    /// into this run's verdicts (its names no longer resolve).
    pub fn scope_nonce(&self) -> Option<&str> {
        self.containers.then_some(self.nonce.as_str())
    }

    /// The `--network` value that puts a container into the lab's network namespace.
    pub fn container_network(&self) -> String {
        match &self.holder {
            Some(h) => format!("container:{}", h.name),
            None => format!("ns:/proc/{}/ns/net", std::process::id()),
        }
    }
}

/// A random hex label (8 characters).
fn nonce() -> String {
    use std::io::Read;
    let mut b = [0u8; 4];
    let ok = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b));
    if ok.is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        b = (t.subsec_nanos() ^ std::process::id()).to_be_bytes();
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Check what the lab needs before anything else is done.
pub fn preflight() -> Result<(), LabError> {
    if !nix::unistd::geteuid().is_root() {
        return Err(LabError::NotRoot);
    }
    Ok(())
}

/// Move this process into a fresh lab. Call before starting any thread.
pub fn enter() -> Result<Lab, LabError> {
    enter_with(Net::Own)
}

/// Move this process into a fresh lab whose network namespace comes from
/// `net`. Call before starting any thread.
pub fn enter_with(net: Net) -> Result<Lab, LabError> {
    preflight()?;
    if thread_count() > 1 {
        return Err(LabError::Threaded);
    }
    let nonce = nonce();
    let dir = tempfile::Builder::new()
        .prefix("mtaspec-lab-")
        .tempdir()
        .map_err(|e| LabError::setup("create the lab folder", e))?;
    let resolv = dir.path().join("resolv.conf");
    std::fs::write(
        &resolv,
        format!("# mtaspec lab: only the fake DNS\nnameserver {DNS_ADDR}\noptions timeout:2 attempts:2\n"),
    )
    .map_err(|e| LabError::setup("write the lab's resolv.conf", e))?;
    let mut holder = None;
    let containers = !matches!(net, Net::Own);
    if containers {
        engine::remember_host_namespaces()
            .map_err(|e| LabError::setup("open this process's namespaces", e))?;
    }
    match net {
        Net::Own | Net::Podman(_) => {
            unshare(CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWUTS)
                .map_err(LabError::Unshare)?;
        }
        Net::Docker { engine, image } => {
            let name = format!("mtaspec-{nonce}-net");
            let extra = [
                "--network".to_string(),
                "none".into(),
                "--dns".into(),
                DNS_ADDR.to_string(),
                "--hostname".into(),
                TARGET_HOSTNAME.into(),
            ];
            let c = engine
                .start(image, &name, &extra)
                .map_err(|e| LabError::Container(Box::new(e)))?;
            let pid = c.pid().map_err(|e| LabError::Container(Box::new(e)))?;
            let path = format!("/proc/{pid}/ns/net");
            let ns = std::fs::File::open(&path).map_err(|e| LabError::DockerElsewhere {
                path: path.clone(),
                source: e,
            })?;
            holder = Some(c);
            nix::sched::setns(ns, CloneFlags::CLONE_NEWNET)
                .map_err(|e| LabError::setup(format!("join the network namespace {path}"), e))?;
            unshare(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWUTS)
                .map_err(LabError::Unshare)?;
        }
    }
    // Keep every mount made from now on inside this namespace.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| LabError::setup("make mounts private", e))?;
    loopback_up().map_err(|e| LabError::setup("bring up the loopback interface", e))?;
    nix::unistd::sethostname(TARGET_HOSTNAME)
        .map_err(|e| LabError::setup("set the lab's host name", e))?;

    let etc = resolv_target();
    mount(
        Some(resolv.as_path()),
        etc.as_path(),
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| {
        LabError::setup(
            format!("bind-mount the lab's resolv.conf over {}", etc.display()),
            e,
        )
    })?;
    Ok(Lab {
        holder,
        dir,
        nonce,
        containers,
    })
}

/// `/etc/resolv.conf`, or the file it links to (a bind mount follows links).
fn resolv_target() -> PathBuf {
    std::fs::canonicalize("/etc/resolv.conf").unwrap_or_else(|_| PathBuf::from("/etc/resolv.conf"))
}

fn thread_count() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or(1)
}

/// `ip link set lo up`, through the ioctl the `ip` tool uses.
fn loopback_up() -> std::io::Result<()> {
    use nix::libc;
    // SAFETY: plain socket + ioctl calls on a zeroed, correctly sized ifreq.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut ifr: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo".iter().enumerate() {
            ifr.ifr_name[i] = *b as libc::c_char;
        }
        let mut r = libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut ifr);
        if r == 0 {
            ifr.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
            r = libc::ioctl(fd, libc::SIOCSIFFLAGS, &ifr);
        }
        let err = std::io::Error::last_os_error();
        libc::close(fd);
        if r != 0 {
            return Err(err);
        }
    }
    Ok(())
}

/// The alias label for a loopback address: unique per address, so that
/// instances of different MTAs never replace each other's address
/// (`127.0.3.2` → `lo:3x2`).
pub fn loopback_label(addr: Ipv4Addr) -> String {
    let o = addr.octets();
    format!("lo:{}x{}", o[2], o[3])
}

/// `ip addr add ADDR/32 dev lo label LABEL`, through the ioctls `ifconfig` uses.
/// An address already present is fine.
pub fn add_loopback_addr(label: &str, addr: Ipv4Addr) -> std::io::Result<()> {
    use nix::libc;
    if label.len() >= libc::IFNAMSIZ {
        return Err(std::io::Error::other("interface label too long"));
    }
    let sockaddr = |a: Ipv4Addr| {
        // SAFETY: sockaddr_in is plain data; all-zero is a valid value.
        let mut sin: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        sin.sin_family = libc::AF_INET as libc::sa_family_t;
        sin.sin_addr.s_addr = u32::from(a).to_be();
        // SAFETY: sockaddr_in and sockaddr have the same size on Linux and
        // the kernel reads the family first.
        unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin) }
    };
    // SAFETY: a socket and two ioctls on a zeroed, correctly sized ifreq
    // whose name is NUL-terminated (checked length above).
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut ifr: libc::ifreq = std::mem::zeroed();
        for (i, b) in label.bytes().enumerate() {
            ifr.ifr_name[i] = b as libc::c_char;
        }
        ifr.ifr_ifru.ifru_addr = sockaddr(addr);
        let mut r = libc::ioctl(fd, libc::SIOCSIFADDR, &ifr);
        if r == 0 {
            ifr.ifr_ifru.ifru_netmask = sockaddr(Ipv4Addr::BROADCAST);
            r = libc::ioctl(fd, libc::SIOCSIFNETMASK, &ifr);
        }
        let err = std::io::Error::last_os_error();
        libc::close(fd);
        if r != 0 && err.raw_os_error() != Some(libc::EEXIST) {
            return Err(err);
        }
    }
    Ok(())
}
