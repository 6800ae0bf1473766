//! CLI stage: flags → validated options → the pipeline; exit status 0 (all passed), 1 (a scenario failed), 2 (the harness could not run).

use crate::report::{console, junit, Event, Status};
use crate::run::{self, Services};
use crate::suite;
use crate::target::TargetOptions;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

#[derive(Debug, Parser)]
#[command(
    name = "mtaspec",
    version,
    about = "Black-box conformance harness for SMTP servers (MTAs)",
    long_about = "mtaspec checks how a real, unmodified MTA delivers mail: MX fallback, 4xx retry, \
5xx bounce origin, loop detection and queue timeouts. It starts the MTA (Postfix by default) \
in a private network namespace (the lab) with a fake DNS and scripted fake remote hosts, \
injects messages, and judges what the MTA does against the RFCs.\n\n\
Exit status: 0 when no scenario failed, 1 when any failed, 2 when the harness could not run."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Run scenarios against the target in the lab (needs root).
    Run(RunArgs),
    /// List the scenarios found under PATHs, with their rule and strength.
    List {
        /// Suite folders or scenario files.
        #[arg(default_value = "suites")]
        paths: Vec<PathBuf>,
    },
    /// Parse bounce messages (DSNs) and judge their RFC 3464 conformance.
    Dsn {
        /// Print one JSON object per message instead of text.
        #[arg(long)]
        json: bool,
        /// Message files (whole messages, as received).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Suite folders or scenario files.
    #[arg(default_value = "suites")]
    pub paths: Vec<PathBuf>,
    /// The MTA under test.
    #[arg(long, value_enum, default_value_t = TargetKind::Postfix)]
    pub target: TargetKind,
    /// Write JUnit XML here (one testsuite per suite folder, one testcase per scenario).
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Lay a main.cf setting on the target, e.g. --set maximal_queue_lifetime=10s (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// Use the main.cf and master.cf in DIR (mtaspec adds only what the lab needs).
    #[arg(long, value_name = "DIR")]
    pub postfix_config: Option<PathBuf>,
    /// Count SHOULD / practice deviations (and known deviations no longer seen) as failures.
    #[arg(long)]
    pub strict: bool,
    /// Known deviations of the target: scenario id patterns → reason (default:
    /// known-deviations/postfix.toml in the suite folder).
    #[arg(long, value_name = "FILE", conflicts_with = "no_known")]
    pub known: Option<PathBuf>,
    /// Ignore the known-deviations file: report every deviation as such.
    #[arg(long)]
    pub no_known: bool,
    /// Print each scenario's start and full observations of failures.
    #[arg(long, short)]
    pub verbose: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum TargetKind {
    /// Debian's postfix package, started privately in the lab.
    Postfix,
}

/// Parse the command line and run it.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Cmd::List { paths } => list(&paths),
        Cmd::Dsn { json, files } => dsn(json, &files),
        Cmd::Run(args) => run(args),
    }
}

fn load(paths: &[PathBuf]) -> Result<Vec<suite::Scenario>, ExitCode> {
    let files = suite::discover(paths).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(2)
    })?;
    let (ok, errs) = suite::load_all(&files);
    if !errs.is_empty() {
        for e in &errs {
            eprintln!("error: {e}");
        }
        eprintln!(
            "{} of {} scenario files could not be loaded; nothing was run",
            errs.len(),
            files.len()
        );
        return Err(ExitCode::from(2));
    }
    Ok(ok)
}

fn list(paths: &[PathBuf]) -> ExitCode {
    match load(paths) {
        Err(code) => code,
        Ok(scenarios) => {
            for s in &scenarios {
                println!(
                    "{:<45} {:<8} {:<18} {}",
                    s.id,
                    s.strength.to_string(),
                    s.rfc,
                    s.title
                );
            }
            eprintln!("{} scenarios", scenarios.len());
            ExitCode::SUCCESS
        }
    }
}

fn dsn(json: bool, files: &[PathBuf]) -> ExitCode {
    let mut bad = 0;
    for f in files {
        let bytes = match std::fs::read(f) {
            Ok(b) => b,
            Err(e) => {
                bad += 1;
                eprintln!("error: cannot read {}: {e}", f.display());
                continue;
            }
        };
        // An mbox file holds several messages; each is reported on its own.
        let messages = crate::dsn::split_mbox(&bytes);
        for (n, msg) in messages.iter().enumerate() {
            let name = if messages.len() > 1 {
                format!("{} (message {})", f.display(), n + 1)
            } else {
                f.display().to_string()
            };
            match crate::dsn::parse(msg) {
                Err(e) => {
                    bad += 1;
                    eprintln!("error: {name}: {e}");
                }
                Ok(d) => {
                    let findings = crate::dsn::check(&d);
                    if json {
                        let v = serde_json::json!({
                            "file": name,
                            "dsn": d,
                            "reasons": crate::dsn::classify(&d),
                            "findings": findings,
                        });
                        println!("{v}");
                    } else {
                        println!("== {name}");
                        print!("{}", crate::dsn::render_text(&d));
                    }
                }
            }
        }
    }
    if bad > 0 {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    }
}

fn run(args: RunArgs) -> ExitCode {
    let scenarios = match load(&args.paths) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let known_path = if args.no_known {
        None
    } else {
        args.known
            .clone()
            .or_else(|| suite::known::Known::find(&args.paths, "postfix"))
    };
    let known = match known_path.as_deref().map(suite::known::Known::load) {
        None => suite::known::Known::default(),
        Some(Ok(k)) => k,
        Some(Err(e)) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let opts = match TargetOptions::parse_sets(&args.sets) {
        Ok(sets) => TargetOptions {
            sets,
            config_dir: args.postfix_config.clone(),
        },
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    // The lab must exist before any thread does (unshare of the mount namespace).
    let lab = match crate::lab::enter() {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let code = rt.block_on(async move {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: cannot watch SIGTERM: {e}");
                return ExitCode::from(2);
            }
        };
        tokio::select! {
            code = run_in_lab(&lab, &args, &opts, &known, scenarios) => code,
            _ = tokio::signal::ctrl_c() => { eprintln!("interrupted: lab torn down"); ExitCode::from(130) }
            _ = term.recv() => { eprintln!("terminated: lab torn down"); ExitCode::from(143) }
        }
    });
    // Dropping the runtime ends every task; the lab folder goes with `lab`.
    drop(rt);
    code
}

async fn run_in_lab(
    lab: &crate::lab::Lab,
    args: &RunArgs,
    opts: &TargetOptions,
    known: &suite::known::Known,
    scenarios: Vec<suite::Scenario>,
) -> ExitCode {
    let begin = Instant::now();
    let groups = run::setting_groups(&scenarios).len();
    eprintln!("starting the lab: fake DNS, connection watcher, {groups} postfix instance(s) ...");
    for (k, v) in &opts.sets {
        let over: Vec<&str> = scenarios
            .iter()
            .filter(|s| s.target_set.get(k).is_some_and(|x| x != v))
            .map(|s| s.id.as_str())
            .collect();
        if !over.is_empty() {
            eprintln!(
                "note: --set {k}={v} is overridden by the [target] settings of {} scenario(s) that need their own value: {}",
                over.len(),
                over.join(", ")
            );
        }
    }
    if let Some(p) = &known.path {
        let ids: Vec<&str> = scenarios.iter().map(|s| s.id.as_str()).collect();
        eprintln!(
            "known deviations: {} pattern(s) from {}",
            known.len(),
            p.display()
        );
        for pat in known.unmatched(&ids).into_iter().filter(|_| args.verbose) {
            eprintln!("warning: known deviation `{pat}` matches no scenario of this run");
        }
    }
    let services = match Services::start(lab, opts, &scenarios).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let startup = services.startup;
    eprintln!(
        "lab ready in {:.1} s (postfix {:.1} s); running {} scenarios",
        startup.as_secs_f64(),
        services.target().startup_time().as_secs_f64(),
        scenarios.len()
    );
    for (set, e) in &services.failed {
        eprintln!("error: the instance for settings {set:?} did not start: {e}");
    }
    let progress = console::Progress::new(scenarios.len(), args.verbose);
    let results = run::run_all(&services, scenarios, known, &|e: Event| progress.on(e)).await;
    let target_log = services
        .instances
        .iter()
        .map(|i| format!("[{}]\n{}", i.target.smtp_addr().ip(), i.target.log_tail(40)))
        .collect::<Vec<_>>()
        .join("\n");
    services.stop().await;
    let wall = begin.elapsed();

    if args.verbose {
        for r in results.iter().filter(|r| Status::of(r) != Status::Pass) {
            eprintln!(
                "\n--- {} observations\n{}",
                r.id,
                crate::report::observations_text(r)
            );
        }
        eprintln!("--- target log (last lines)\n{target_log}");
    }
    print!("{}", console::summary(&results, wall, startup));
    if let Some(path) = &args.junit {
        let report = junit::report(&results, "postfix", wall);
        if let Err(e) = junit::write(&report, path) {
            eprintln!("error: cannot write JUnit to {}: {e}", path.display());
            return ExitCode::from(2);
        }
        eprintln!("JUnit written to {}", path.display());
    }
    let statuses: Vec<Status> = results.iter().map(Status::of).collect();
    if statuses.contains(&Status::Error) {
        ExitCode::from(2)
    } else if statuses.contains(&Status::Fail)
        || (args.strict
            && (statuses.contains(&Status::Deviation) || statuses.contains(&Status::NoLongerSeen)))
    {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
