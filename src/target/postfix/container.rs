//! Target stage: the user's Postfix image in a container inside the lab — the same layering, run through `ENGINE exec`.
//!
//! The container starts with a long `sleep` instead of the image's own
//! command, so Postfix never listens before the lab's settings are in place
//! (on the wildcard address it would take port 25 from the fake hosts).
//! mtaspec then reads the image's main.cf (`postconf -n`), layers it exactly
//! as for `--postfix-config` but replaces (and reports) the settings the lab
//! owns instead of refusing them, writes the result with `postconf -e`, and
//! runs `postfix start`. The queue, the flush and the log go through the
//! engine too.

use super::{add_listen_address, layer, parse_postconf_n, Layers, Log, Owned, Postfix, LAB_OWNED};
use crate::lab::{self, engine::Kind};
use crate::target::runner::InContainer;
use crate::target::{ContainerSpec, Spec, TargetError};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// Where Postfix logs inside the container (`maillog_file`; postlogd writes it).
pub const MAILLOG: &str = "/var/log/mtaspec-mail.log";

/// What the image must provide, for errors.
pub const IMAGE_NEEDS: &str = "the image must provide Postfix's postconf, postfix and postqueue \
in its PATH, and sh, sleep, touch, mkdir, cp and tail (coreutils or busybox)";

/// How long Postfix may take to greet after `postfix start`.
const READY_LIMIT: Duration = Duration::from_secs(30);

/// The settings the lab needs in the container (the image keeps its own
/// queue, data folder and host name).
pub(super) fn lab_settings(listen: Ipv4Addr) -> Vec<(String, String)> {
    [
        ("inet_interfaces", listen.to_string()),
        ("inet_protocols", "ipv4".into()),
        ("relayhost", String::new()),
        ("smtp_host_lookup", "dns".into()),
        ("maillog_file", MAILLOG.into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// The reason the lab owns `key`.
fn why(key: &str) -> &'static str {
    LAB_OWNED
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, w)| *w)
        .unwrap_or("the lab needs it")
}

/// Start `c.image` in the lab and Postfix in it with the lab's settings.
pub(super) fn start(spec: &Spec, c: &ContainerSpec) -> Result<Postfix, TargetError> {
    let begin = Instant::now();
    for (k, _) in spec.sets.iter().chain(&spec.set) {
        super::forbid(k)?;
    }
    let listen = spec.listen;
    add_listen_address(listen)?;
    let name = format!("{}-{}", c.name_prefix, spec.instance);
    let mut extra = vec!["--network".to_string(), c.network.clone()];
    if c.engine.kind == Kind::Podman {
        // docker shares the holder container's resolv.conf and host name.
        extra.push("-v".into());
        extra.push(format!("{}:/etc/resolv.conf:ro", c.resolv_conf.display()));
        extra.push("--hostname".into());
        extra.push(lab::TARGET_HOSTNAME.into());
    }
    let container = c.engine.start(&c.image, &name, &extra)?;
    let mut pf = Postfix {
        runner: Box::new(InContainer { container }),
        sbin: "",
        conf: None,
        log: Log::Inside(MAILLOG.into()),
        listen,
        hostname: lab::TARGET_HOSTNAME.to_string(),
        settings: BTreeMap::new(),
        overrides: Vec::new(),
        knobs: Default::default(),
        started: Duration::ZERO,
    };
    // Every command runs in the container; an exec costs more than the
    // commands, so they go in two batches: read the image, then write and start.
    let read = [
        argv(&["postconf", "-n"]),
        argv(&["postconf", "-M", "postlog/unix-dgram"]),
        argv(&["postconf", "-F", "*/*/chroot"]),
        argv(&[
            "postconf",
            "-x",
            "-h",
            "queue_directory",
            "config_directory",
        ]),
    ];
    let ran = pf.runner.batch(&read).map_err(|e| missing(c, "sh", e))?;
    let out = |i: usize| ran[i].ok(&read[i]).map_err(|e| missing(c, &read[i][0], e));
    let user = parse_postconf_n(out(0)?);
    let has_postlog = !out(1)?.trim().is_empty();
    let chrooted = out(2)?.lines().any(|l| l.trim_end().ends_with("= y"));
    let dirs: Vec<String> = out(3)?.lines().map(|l| l.trim().to_string()).collect();
    let (queue, config) = match &dirs[..] {
        [q, c, ..] => (q.clone(), c.clone()),
        _ => ("/var/spool/postfix".into(), "/etc/postfix".into()),
    };

    let lab = lab_settings(listen);
    let layered = layer(&Layers {
        user: &user,
        private_defaults: false,
        spec,
        lab: &lab,
        owned: Owned::Override,
    })?;
    let mut overrides = layered.overrides.clone();
    if let Some(cmd) = c.image_command.as_deref().filter(|c| !c.is_empty()) {
        overrides.push((
            "command".into(),
            format!(
                "`{cmd}` -> `postfix start`: mtaspec starts Postfix itself, after the lab's settings are in place"
            ),
        ));
    }
    let mut write = Batch::default();
    write.push(
        ["postconf", "-e"]
            .into_iter()
            .map(String::from)
            .chain(layered.settings.iter().map(|(k, v)| format!("{k}={v}")))
            .collect(),
    );
    // maillog_file is written by postlogd (in master.cf since Postfix 3.4).
    if !has_postlog {
        write.push(argv(&[
            "postconf",
            "-M",
            "postlog/unix-dgram=postlog unix-dgram n - n - 1 postlogd",
        ]));
        overrides.push((
            "master.cf postlog".into(),
            format!("added: {}", why("maillog_file")),
        ));
    }
    // Postfix waits until its configuration files are a second old before it
    // trusts them (they may still be being written); these are complete.
    write.push(argv(&[
        "touch",
        "-d",
        "2000-01-01 00:00:00",
        &format!("{config}/main.cf"),
        &format!("{config}/master.cf"),
    ]));
    // Chrooted services resolve through the chroot's copy of resolv.conf:
    // Debian's init script makes it, `postfix start` does not.
    if chrooted {
        let etc = format!("{queue}/etc");
        write.push(argv(&["mkdir", "-p", &etc]));
        write.push(argv(&["cp", "/etc/resolv.conf", "/etc/hosts", &etc]));
    }
    let prepared = write.0.len();
    let check = write.push(argv(&["postconf", "-n"]));
    let hostname = write.push(argv(&["postconf", "-x", "-h", "myhostname"]));
    let queue = write.push(argv(&["postqueue", "-j"]));
    // Started in the same exec: if a check above fails, the container goes.
    let start = write.push(argv(&["postfix", "start"]));
    let write = write.0;
    let ran = pf.runner.batch(&write)?;
    for (i, r) in ran.iter().enumerate().take(prepared) {
        r.ok(&write[i]).map_err(|e| missing(c, &write[i][0], e))?;
    }
    super::unknown_parameter(&ran[check].stderr)?;
    pf.hostname = ran[hostname].ok(&write[hostname])?.trim().to_string();
    // With Postfix not yet started postqueue only warns; 127 means it is not there.
    if ran[queue].status == 127 {
        return Err(missing(
            c,
            "postqueue",
            TargetError::Command {
                command: "postqueue -j".into(),
                output: format!("{} (not found)", ran[queue].stderr.trim()),
            },
        ));
    }
    pf.settings = layered.settings;
    pf.knobs = layered.knobs;
    pf.overrides = overrides;
    if let Err(e) = ran[start].ok(&write[start]) {
        return Err(TargetError::NotReady {
            addr: crate::target::Instance::smtp_addr(&pf).to_string(),
            secs: 0,
            log: format!("{e}\n{}", crate::target::Instance::log_tail(&pf, 30)),
        });
    }
    pf.wait_ready(READY_LIMIT)?;
    pf.started = begin.elapsed();
    Ok(pf)
}

/// Commands for one [`Runner::batch`](crate::target::runner::Runner::batch).
#[derive(Default)]
struct Batch(Vec<Vec<String>>);

impl Batch {
    /// Add a command; its index in the batch's results.
    fn push(&mut self, argv: Vec<String>) -> usize {
        self.0.push(argv);
        self.0.len() - 1
    }
}

fn argv(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

/// A program the image lacks: say what an image must provide.
fn missing(c: &ContainerSpec, program: &str, e: TargetError) -> TargetError {
    let text = e.to_string();
    if text.contains("not found") || text.contains("no such file") {
        TargetError::Image {
            image: c.image.clone(),
            what: format!("`{program}` cannot be run in it ({IMAGE_NEEDS})"),
        }
    } else {
        e
    }
}
