//! CLI stage: flags → validated options → the pipeline; exit status 0 (all passed), 1 (a scenario failed), 2 (the harness could not run).

use crate::lab::engine::{Engine, Kind};
use crate::report::{console, junit, Event, Status};
use crate::run::{self, Services};
use crate::suite;
use crate::target::TargetOptions;
use clap::{Parser, Subcommand};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

/// Print a line to standard output. `Err` once the reader has gone (a
/// closed pipe, as in `mtaspec list | head -1`): stop printing, quietly.
macro_rules! outln {
    ($($t:tt)*) => {{
        let mut o = std::io::stdout().lock();
        writeln!(o, $($t)*).and_then(|()| o.flush())
    }};
}

/// Print a line to standard error; a closed standard error is ignored.
macro_rules! errln {
    ($($t:tt)*) => {{
        let _ = writeln!(std::io::stderr().lock(), $($t)*);
    }};
}

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
    /// Load every scenario file and apply the rules that refuse scenarios that
    /// cannot fail (a positive expectation, negatives that can be observed).
    Check {
        /// Suite folders or scenario files.
        #[arg(default_value = "suites")]
        paths: Vec<PathBuf>,
    },
    /// Run the suites against several MTAs at once and write the side-by-side
    /// table (Markdown) and one JUnit file per target (needs root).
    Matrix(MatrixArgs),
    /// List the MTAs mtaspec can test: installed or not, version, knobs each can set.
    Targets,
    /// Fuzz the running target with mutated SMTP sessions (as its client) and
    /// mutated fake-host replies (to its deliveries), judged by protocol
    /// invariants; findings are shrunk and written as scenario files that
    /// `mtaspec run FILE` replays (needs root). Exit status 1 when anything was found.
    Fuzz(FuzzArgs),
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
pub struct MatrixArgs {
    /// Suite folders or scenario files.
    #[arg(default_value = "suites")]
    pub paths: Vec<PathBuf>,
    /// Comma-separated targets (default: every installed one; see `mtaspec targets`).
    #[arg(long, value_delimiter = ',', value_name = "NAME,...")]
    pub targets: Vec<String>,
    /// Write the Markdown table here.
    #[arg(long, value_name = "FILE", default_value = "mtaspec-matrix.md")]
    pub out: PathBuf,
    /// Write one JUnit file per target into DIR (`DIR/<target>.junit.xml`).
    #[arg(long, value_name = "DIR")]
    pub junit_dir: Option<PathBuf>,
    /// Print each scenario's start and full observations of failures.
    #[arg(long, short)]
    pub verbose: bool,
}

#[derive(Debug, clap::Args)]
pub struct FuzzArgs {
    /// The MTA under test (see `mtaspec targets`).
    #[arg(long, default_value = "postfix", value_name = "NAME")]
    pub target: String,
    /// Which side: the target as server (inbound), as client (outbound), or both.
    #[arg(long, value_enum, default_value = "inbound")]
    pub side: crate::sessfuzz::drive::Side,
    /// How long to fuzz (`60s`, `10m`).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub time: std::time::Duration,
    /// Seed of every random choice (default: from the clock; printed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Concurrent sessions.
    #[arg(long, default_value_t = 16)]
    pub jobs: usize,
    /// Write findings (scenario files) into DIR.
    #[arg(long, value_name = "DIR", default_value = "fuzz-findings")]
    pub out: PathBuf,
    /// Stop after N sessions (also when the time is not up).
    #[arg(long, value_name = "N")]
    pub max_sessions: Option<u64>,
    /// How long to wait for each reply before calling it missing.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub reply_wait: std::time::Duration,
    /// Lay a setting of the target's own configuration on it (repeatable);
    /// wins over the fuzzer's relaxed defences.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// Use the main.cf and master.cf in DIR (mtaspec adds only what the lab needs).
    #[arg(long, value_name = "DIR")]
    pub postfix_config: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Suite folders or scenario files.
    #[arg(default_value = "suites")]
    pub paths: Vec<PathBuf>,
    /// The MTA under test (see `mtaspec targets`).
    #[arg(long, default_value = "postfix", value_name = "NAME")]
    pub target: String,
    /// Write JUnit XML here (one testsuite per suite folder, one testcase per scenario).
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Lay a setting of the target's own configuration on it, e.g. for Postfix
    /// --set maximal_queue_lifetime=10s (repeatable). Scenario knobs win over it.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// Use the main.cf and master.cf in DIR (mtaspec adds only what the lab needs).
    #[arg(long, value_name = "DIR", conflicts_with = "image")]
    pub postfix_config: Option<PathBuf>,
    /// Test your own image of the target MTA instead of the one installed
    /// here: mtaspec starts it with --engine inside the lab (the fake DNS as
    /// its resolver, no route out), replaces only the settings the lab needs
    /// (each replacement is printed and written to the JUnit properties), and
    /// removes the container after the run. The image needs the MTA's own
    /// tools (Postfix: postconf, postfix, postqueue) and sh, sleep, touch, mkdir, cp, tail.
    /// Example: sudo mtaspec run --target postfix --image my-postfix:ci --engine docker
    #[arg(long, value_name = "IMAGE", verbatim_doc_comment)]
    pub image: Option<String>,
    /// The container engine that runs --image (docker: a daemon must be
    /// running; DOCKER_HOST is honoured).
    #[arg(
        long,
        value_enum,
        default_value = "podman",
        value_name = "ENGINE",
        requires = "image"
    )]
    pub engine: crate::lab::engine::Kind,
    /// Count SHOULD / practice deviations (and known deviations no longer seen) as failures.
    #[arg(long)]
    pub strict: bool,
    /// Known deviations of the target: scenario id patterns → reason (default:
    /// known-deviations/<target>.toml in the suite folder).
    #[arg(long, value_name = "FILE", conflicts_with = "no_known")]
    pub known: Option<PathBuf>,
    /// Ignore the known-deviations file: report every deviation as such.
    #[arg(long)]
    pub no_known: bool,
    /// Print each scenario's start and full observations of failures.
    #[arg(long, short)]
    pub verbose: bool,
    /// Run each scenario under each of its negative controls ([[control]] for
    /// this target) instead of as written: every control must make its
    /// scenario fail. Reports "controls caught N/M" and exits 1 if any was not
    /// caught. Known deviations are ignored.
    #[arg(long, conflicts_with_all = ["known", "no_known", "strict"])]
    pub controls: bool,
}

/// Parse the command line and run it.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Cmd::List { paths } => list(&paths),
        Cmd::Dsn { json, files } => dsn(json, &files),
        Cmd::Targets => targets(),
        Cmd::Fuzz(args) => fuzz(args),
        Cmd::Matrix(args) => matrix(args),
        Cmd::Check { paths } => check(&paths),
        Cmd::Run(args) => run(args),
    }
}

fn load(paths: &[PathBuf]) -> Result<Vec<suite::Scenario>, ExitCode> {
    let files = suite::discover(paths).map_err(|e| {
        errln!("error: {e}");
        ExitCode::from(2)
    })?;
    let (ok, errs) = suite::load_all(&files);
    let lints = lint_all(&ok);
    if !errs.is_empty() || !lints.is_empty() {
        for e in &errs {
            errln!("error: {e}");
        }
        for l in &lints {
            errln!("error: {l}");
        }
        errln!(
            "{} of {} scenario files could not be loaded or cannot fail; nothing was run",
            errs.len() + lints.len(),
            files.len()
        );
        return Err(ExitCode::from(2));
    }
    Ok(ok)
}

/// The rules that refuse scenarios that cannot fail, as `file:line: why` lines.
fn lint_all(scenarios: &[suite::Scenario]) -> Vec<String> {
    scenarios
        .iter()
        .flat_map(|sc| {
            crate::run::judge::lint(sc)
                .into_iter()
                .map(move |(line, why)| format!("{}:{line}: {why}", sc.path.display()))
        })
        .collect()
}

/// `mtaspec check`: load and lint every file, report every problem.
fn check(paths: &[PathBuf]) -> ExitCode {
    let files = match suite::discover(paths) {
        Ok(f) => f,
        Err(e) => {
            errln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let (ok, errs) = suite::load_all(&files);
    let lints = lint_all(&ok);
    for e in &errs {
        errln!("error: {e}");
    }
    for l in &lints {
        errln!("error: {l}");
    }
    let bad = errs.len() + lints.len();
    errln!(
        "{} scenario files checked: {} loaded, {} problem(s)",
        files.len(),
        ok.len(),
        bad
    );
    if bad > 0 {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    }
}

fn list(paths: &[PathBuf]) -> ExitCode {
    match load(paths) {
        Err(code) => code,
        Ok(scenarios) => {
            for s in &scenarios {
                let line = outln!(
                    "{:<45} {:<8} {:<18} {}",
                    s.id,
                    s.strength.to_string(),
                    s.rfc,
                    s.title
                );
                if line.is_err() {
                    return ExitCode::SUCCESS; // the reader has all it wanted
                }
            }
            errln!("{} scenarios", scenarios.len());
            ExitCode::SUCCESS
        }
    }
}

fn targets() -> ExitCode {
    use crate::target::{knobs::Knob, Support};
    use std::fmt::Write as _;
    let mut text = String::new();
    for m in crate::target::all() {
        let state = match m.version() {
            Ok(v) => format!("installed, version {v}"),
            Err(e) => format!("not installed: {e}"),
        };
        let _ = writeln!(text, "{}: {state}", m.name());
        if m.runs_in_containers() {
            let _ = writeln!(
                text,
                "  your own image: --image IMAGE [--engine podman|docker]"
            );
        }
        let (yes, no): (Vec<Knob>, Vec<Knob>) = Knob::ALL
            .into_iter()
            .partition(|k| m.support(*k) == Support::Yes);
        let _ = writeln!(
            text,
            "  knobs: {}",
            yes.iter().map(|k| k.name()).collect::<Vec<_>>().join(", ")
        );
        for k in no {
            if let Support::No(why) = m.support(k) {
                let _ = writeln!(text, "  cannot set {k}: {why}");
            }
        }
    }
    let _ = outln!("{}", text.trim_end());
    ExitCode::SUCCESS
}

fn dsn(json: bool, files: &[PathBuf]) -> ExitCode {
    let mut bad = 0;
    for f in files {
        let bytes = match std::fs::read(f) {
            Ok(b) => b,
            Err(e) => {
                bad += 1;
                errln!("error: cannot read {}: {e}", f.display());
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
                    errln!("error: {name}: {e}");
                }
                Ok(d) => {
                    let findings = crate::dsn::check(&d);
                    let printed = if json {
                        let v = serde_json::json!({
                            "file": name,
                            "dsn": d,
                            "reasons": crate::dsn::classify(&d),
                            "findings": findings,
                        });
                        outln!("{v}")
                    } else {
                        outln!(
                            "== {name}\n{}",
                            crate::dsn::render_text(&d).trim_end_matches('\n')
                        )
                    };
                    if printed.is_err() {
                        return ExitCode::SUCCESS; // the reader has gone
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

/// Check what `--image` needs before the lab is made: root, the engine, the image.
fn image_options(
    mta: &dyn crate::target::Mta,
    kind: Kind,
    image: &str,
) -> Result<crate::target::ImageOptions, ExitCode> {
    let fail = |e: &dyn std::fmt::Display| {
        eprintln!("error: {e}");
        ExitCode::from(2)
    };
    if !mta.runs_in_containers() {
        let can: Vec<&str> = crate::target::all()
            .iter()
            .filter(|m| m.runs_in_containers())
            .map(|m| m.name())
            .collect();
        return Err(fail(&format!(
            "--image: mtaspec cannot run a {} image yet; images work for: {}",
            mta.name(),
            can.join(", ")
        )));
    }
    crate::lab::preflight().map_err(|e| fail(&e))?;
    let engine = Engine::detect(kind).map_err(|e| fail(&e))?;
    engine.has_image(image).map_err(|e| fail(&e))?;
    for name in crate::lab::engine::remove_orphans(&engine) {
        eprintln!("note: removed container {name} left by an mtaspec run that was killed");
    }
    Ok(crate::target::ImageOptions {
        command: engine.image_command(image).ok(),
        engine,
        image: image.to_string(),
    })
}

fn run(args: RunArgs) -> ExitCode {
    let scenarios = match load(&args.paths) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let mta = match crate::target::by_name(&args.target) {
        Ok(m) => m,
        Err(e) => {
            errln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if args.image.is_none() {
        if let Err(e) = mta.version() {
            errln!("error: target {}: {e}", mta.name());
            return ExitCode::from(2);
        }
    }
    let known_path = if args.no_known || args.controls {
        None
    } else {
        args.known
            .clone()
            .or_else(|| suite::known::Known::find(&args.paths, mta.name()))
    };
    let known = match known_path.as_deref().map(suite::known::Known::load) {
        None => suite::known::Known::default(),
        Some(Ok(k)) => k,
        Some(Err(e)) => {
            errln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let image = match args
        .image
        .as_deref()
        .map(|i| image_options(mta, args.engine, i))
    {
        None => None,
        Some(Ok(i)) => Some(i),
        Some(Err(code)) => return code,
    };
    let opts = match TargetOptions::parse_sets(&args.sets) {
        Ok(sets) => TargetOptions {
            sets,
            config_dir: args.postfix_config.clone(),
            tls: None,
            image,
        },
        Err(e) => {
            errln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    // With --controls the run is of every scenario under each of its controls.
    let (scenarios, controls) = if args.controls {
        let mut cplan = run::controls::plan(&scenarios, mta.name());
        let variants = std::mem::take(&mut cplan.variants);
        errln!(
            "controls: {} for {} from {} scenario(s); {} scenario(s) declare none",
            variants.len(),
            mta.name(),
            scenarios.len(),
            cplan.none.len()
        );
        (variants, Some(cplan))
    } else {
        (scenarios, None)
    };
    let plan = Plan {
        targets: vec![(mta, known)],
        opts,
        verbose: args.verbose,
        controls: controls.is_some(),
    };
    let image = plan.opts.image.clone();
    in_lab(image.as_ref(), |lab| {
        Box::pin(async move {
            let Some((begin, startup, mut outcomes)) = run_plan(lab, &plan, scenarios).await else {
                return ExitCode::from(2);
            };
            let Outcome {
                mta,
                results,
                overrides,
            } = outcomes.remove(0);
            let wall = begin.elapsed();
            if let Some(cplan) = &controls {
                return controls_report(cplan, &results, mta.name(), &args, wall, startup);
            }
            // A reader that has gone (closed pipe) does not change the outcome.
            let _ = outln!(
                "{}",
                console::summary(&results, wall, startup).trim_end_matches('\n')
            );
            if let Some(path) = &args.junit {
                let mut report = junit::report(&results, mta.name(), wall);
                let mut props: Vec<(String, String)> = Vec::new();
                if let Some(i) = &plan.opts.image {
                    props.push(("image".into(), i.image.clone()));
                    props.push(("engine".into(), i.engine.name().to_string()));
                }
                props.extend(
                    overrides
                        .iter()
                        .map(|(k, v)| (format!("override.{k}"), v.clone())),
                );
                junit::add_suite_properties(&mut report, &props);
                if let Err(e) = junit::write(&report, path) {
                    errln!("error: cannot write JUnit to {}: {e}", path.display());
                    return ExitCode::from(2);
                }
                errln!("JUnit written to {}", path.display());
            }
            exit_status(&results, args.strict)
        })
    })
}

fn fuzz(args: FuzzArgs) -> ExitCode {
    use crate::sessfuzz::{drive, lab::LabWorld};
    let mta = match crate::target::by_name(&args.target) {
        Ok(m) => m,
        Err(e) => {
            errln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = mta.version() {
        errln!("error: target {}: {e}", mta.name());
        return ExitCode::from(2);
    }
    let user = match TargetOptions::parse_sets(&args.sets) {
        Ok(s) => s,
        Err(e) => {
            errln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let relaxed = crate::sessfuzz::lab::relaxed_settings(mta.name());
    if !relaxed.is_empty() {
        let list: Vec<String> = relaxed.iter().map(|(k, v)| format!("{k}={v}")).collect();
        errln!(
            "fuzz: the target's defences against misbehaving clients are relaxed (--set wins): {}",
            list.join(" ")
        );
    }
    let opts = TargetOptions {
        sets: relaxed.into_iter().chain(user).collect(),
        config_dir: args.postfix_config.clone(),
        tls: None,
        image: None,
    };
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(1)
    });
    let fopts = drive::Options {
        seed,
        time: args.time,
        jobs: args.jobs.max(1),
        side: args.side,
        out: args.out.clone(),
        waits: crate::sessfuzz::client::Waits {
            reply: args.reply_wait,
            ..Default::default()
        },
        max_sessions: args.max_sessions,
        ..Default::default()
    };
    in_lab(None, |lab| {
        Box::pin(async move {
            errln!("starting {} in the lab ...", mta.name());
            let services = match Services::start(lab, &[mta], &opts, &[]).await {
                Ok(s) => s,
                Err(e) => {
                    errln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            let target = services.fleets[0].target();
            let world = match LabWorld::new(&services, target).await {
                Ok(w) => w,
                Err(e) => {
                    errln!("error: cannot start the fuzzer's fake host: {e}");
                    services.stop().await;
                    return ExitCode::from(2);
                }
            };
            errln!(
                "fuzz: {} at {} ({:?} side), seed {seed}, {} jobs, for {}; findings go to {}",
                mta.name(),
                target.smtp_addr(),
                fopts.side,
                fopts.jobs,
                humantime::format_duration(fopts.time),
                fopts.out.display()
            );
            let fuzzer = drive::Fuzzer::new(&world, fopts);
            let report = fuzzer
                .run(&|p: &drive::Progress| {
                    errln!(
                        "fuzz: {:>5.0} s  {} sessions  {:.1}/s  {} reply-code sequences  {} findings  {} messages watched{}",
                        p.elapsed.as_secs_f64(),
                        p.sessions,
                        p.per_sec,
                        p.signatures,
                        p.findings,
                        p.pending,
                        if p.outbound_cases > 0 { format!("  {} outbound cases", p.outbound_cases) } else { String::new() }
                    )
                })
                .await;
            drop(world);
            services.stop().await;
            let p = &report.progress;
            let _ = outln!(
                "fuzz: {} sessions in {:.1} s ({:.1}/s; {:.1} s in all with settling and shrinking), {} distinct reply-code sequences, {} outbound cases, {} findings",
                p.sessions,
                p.fuzzing.as_secs_f64(),
                p.per_sec,
                p.elapsed.as_secs_f64(),
                p.signatures,
                p.outbound_cases,
                report.findings.len()
            );
            if report.undecided > 0 {
                let _ = outln!(
                    "  {} accepted messages not judged: still queued by the target when the run ended, or not kept by a fake host past one of its limits",
                    report.undecided
                );
            }
            if report.unreachable > 0 || report.desync > 0 {
                let _ = outln!(
                    "  {} sessions could not connect; {} lost track after a bare-LF line (not judged further)",
                    report.unreachable, report.desync
                );
            }
            for (f, path) in &report.findings {
                let _ = outln!(
                    "  {} [{} {}] {} -> {}",
                    f.violation.invariant.name(),
                    f.violation.invariant.strength(),
                    f.violation.invariant.rfc(),
                    crate::sessfuzz::unscope(&f.violation.detail),
                    path.as_ref()
                        .map(|p| p.display().to_string())
                        .unwrap_or_else(|| "(not written)".into())
                );
            }
            if report.findings.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        })
    })
}

fn matrix(args: MatrixArgs) -> ExitCode {
    let scenarios = match load(&args.paths) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let mut targets = Vec::new();
    let named = !args.targets.is_empty();
    let chosen: Vec<&'static dyn crate::target::Mta> = if named {
        let mut v = Vec::new();
        for n in &args.targets {
            match crate::target::by_name(n) {
                Ok(m) => v.push(m),
                Err(e) => {
                    errln!("error: {e}");
                    return ExitCode::from(2);
                }
            }
        }
        v
    } else {
        crate::target::all()
    };
    for m in chosen {
        match m.version() {
            Ok(v) => targets.push((m, v)),
            Err(e) if named => {
                errln!("error: target {}: {e}", m.name());
                return ExitCode::from(2);
            }
            Err(e) => errln!("note: skipping {}: {e}", m.name()),
        }
    }
    if targets.is_empty() {
        errln!("error: no target is installed; run `scripts/setup --targets all`");
        return ExitCode::from(2);
    }
    let mut with_known = Vec::new();
    for (m, _) in &targets {
        let known = match suite::known::Known::find(&args.paths, m.name())
            .as_deref()
            .map(suite::known::Known::load)
        {
            None => suite::known::Known::default(),
            Some(Ok(k)) => k,
            Some(Err(e)) => {
                errln!("error: {e}");
                return ExitCode::from(2);
            }
        };
        with_known.push((*m, known));
    }
    let plan = Plan {
        targets: with_known,
        opts: TargetOptions::default(),
        verbose: args.verbose,
        controls: false,
    };
    in_lab(None, |lab| {
        Box::pin(async move {
            let Some((begin, _startup, outcomes)) = run_plan(lab, &plan, scenarios).await else {
                return ExitCode::from(2);
            };
            let wall = begin.elapsed();
            let columns: Vec<crate::report::matrix::Column> = outcomes
                .iter()
                .zip(&targets)
                .map(|(o, (_, version))| crate::report::matrix::Column {
                    target: o.mta.name(),
                    version: version.clone(),
                    results: &o.results,
                    longest: crate::report::matrix::longest(&o.results),
                })
                .collect();
            let table = crate::report::matrix::markdown(&columns, wall);
            if let Err(e) = crate::report::write_file(&args.out, table.as_bytes()) {
                errln!("error: cannot write {}: {e}", args.out.display());
                return ExitCode::from(2);
            }
            for c in &columns {
                let _ = outln!(
                    "{}",
                    console::summary(c.results, c.longest, Default::default())
                        .trim_end_matches('\n')
                        .replace("\ntotal", &format!("\ntotal ({})", c.target))
                );
            }
            errln!(
                "matrix written to {} ({} targets, wall time {:.1} s)",
                args.out.display(),
                columns.len(),
                wall.as_secs_f64()
            );
            if let Some(dir) = &args.junit_dir {
                for c in &columns {
                    let path = dir.join(format!("{}.junit.xml", c.target));
                    let report = junit::report(c.results, c.target, wall);
                    if let Err(e) = junit::write(&report, &path) {
                        errln!("error: cannot write JUnit to {}: {e}", path.display());
                        return ExitCode::from(2);
                    }
                }
                errln!("JUnit written to {}/<target>.junit.xml", dir.display());
            }
            let statuses: Vec<Status> = outcomes
                .iter()
                .flat_map(|o| o.results.iter().map(Status::of))
                .collect();
            if statuses.contains(&Status::Error) {
                ExitCode::from(2)
            } else if statuses.contains(&Status::Fail) {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        })
    })
}

/// 2 when the harness could not decide a scenario, 1 when one failed (or,
/// with `strict`, deviated), else 0.
fn exit_status(results: &[run::ScenarioResult], strict: bool) -> ExitCode {
    let statuses: Vec<Status> = results.iter().map(Status::of).collect();
    if statuses.contains(&Status::Error) {
        ExitCode::from(2)
    } else if statuses.contains(&Status::Fail)
        || (strict
            && (statuses.contains(&Status::Deviation) || statuses.contains(&Status::NoLongerSeen)))
    {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// What a run came to for one MTA.
struct Outcome {
    mta: &'static dyn crate::target::Mta,
    results: Vec<run::ScenarioResult>,
    /// The user's settings the lab replaced (setting, `old -> new: why`).
    overrides: Vec<(String, String)>,
}

/// What to run in the lab: one or more MTAs, each with its known deviations.
struct Plan {
    targets: Vec<(&'static dyn crate::target::Mta, suite::known::Known)>,
    opts: TargetOptions,
    verbose: bool,
    /// The scenarios are control variants: report progress as caught / missed.
    controls: bool,
}

type LabFuture<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = ExitCode> + 'a>>;

/// Enter the lab (before any thread exists), start the async runtime, run
/// `body`, and tear everything down — also on Ctrl-C (130) and SIGTERM (143).
fn in_lab(
    image: Option<&crate::target::ImageOptions>,
    body: impl for<'a> FnOnce(&'a crate::lab::Lab) -> LabFuture<'a>,
) -> ExitCode {
    // A user's image: podman joins the lab's network namespace; docker's
    // namespace is made first and the harness joins it.
    let net = match image {
        None => crate::lab::Net::Own,
        Some(i) if i.engine.kind == Kind::Podman => crate::lab::Net::Podman(&i.engine),
        Some(i) => crate::lab::Net::Docker {
            engine: &i.engine,
            image: &i.image,
        },
    };
    // The lab must exist before any thread does (unshare of the mount namespace).
    let lab = match crate::lab::enter_with(net) {
        Ok(l) => l,
        Err(e) => {
            errln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    // Targets start their daemons from blocking threads with
    // PR_SET_PDEATHSIG, which fires when the forking *thread* ends: keep
    // idle blocking threads (default: 10 s) for as long as a run can last.
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_keep_alive(std::time::Duration::from_secs(7 * 24 * 3600))
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            errln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let code = rt.block_on(async {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                errln!("error: cannot watch SIGTERM: {e}");
                return ExitCode::from(2);
            }
        };
        tokio::select! {
            code = body(&lab) => code,
            _ = tokio::signal::ctrl_c() => { errln!("interrupted: lab torn down"); ExitCode::from(130) }
            _ = term.recv() => { errln!("terminated: lab torn down"); ExitCode::from(143) }
        }
    });
    // Dropping the runtime ends every task; the lab folder goes with `lab`.
    drop(rt);
    code
}

/// Start the services for every MTA of the plan and run every scenario
/// against each, all at once. `None` when the lab could not start (the
/// reason is printed). Returns the start time, the start-up time and the
/// results per MTA.
#[allow(clippy::type_complexity)]
async fn run_plan(
    lab: &crate::lab::Lab,
    plan: &Plan,
    scenarios: Vec<suite::Scenario>,
) -> Option<(Instant, std::time::Duration, Vec<Outcome>)> {
    let begin = Instant::now();
    let mtas: Vec<&'static dyn crate::target::Mta> = plan.targets.iter().map(|(m, _)| *m).collect();
    for mta in &mtas {
        let groups = run::setting_groups(&scenarios, *mta, 0, None).len();
        errln!(
            "starting {groups} {} instance(s) in the lab (with the fake DNS and the connection watcher) ...",
            mta.name()
        );
        if !plan.opts.sets.is_empty() {
            let over: Vec<&str> = scenarios
                .iter()
                .filter(|s| !s.knobs.is_empty() || s.target_sets.contains_key(mta.name()))
                .map(|s| s.id.as_str())
                .collect();
            if !over.is_empty() {
                errln!(
                    "note: the knobs and [target.{}] settings of {} scenario(s) win over --set: {}",
                    mta.name(),
                    over.len(),
                    over.join(", ")
                );
            }
        }
    }
    for (_, known) in &plan.targets {
        if let Some(p) = &known.path {
            let ids: Vec<&str> = scenarios.iter().map(|s| s.id.as_str()).collect();
            errln!(
                "known deviations: {} pattern(s) from {}",
                known.len(),
                p.display()
            );
            for pat in known.unmatched(&ids).into_iter().filter(|_| plan.verbose) {
                errln!("warning: known deviation `{pat}` matches no scenario of this run");
            }
        }
    }
    let services = match Services::start(lab, &mtas, &plan.opts, &scenarios).await {
        Ok(s) => s,
        Err(e) => {
            errln!("error: {e}");
            return None;
        }
    };
    let startup = services.startup;
    let each: Vec<String> = services
        .fleets
        .iter()
        .map(|f| {
            format!(
                "{} {:.1} s",
                f.mta.name(),
                f.target().startup_time().as_secs_f64()
            )
        })
        .collect();
    errln!(
        "lab ready in {:.1} s ({}); running {} scenarios{}",
        startup.as_secs_f64(),
        each.join(", "),
        scenarios.len(),
        if mtas.len() > 1 {
            format!(" against each of {} targets", mtas.len())
        } else {
            String::new()
        }
    );
    let overrides: Vec<Vec<(String, String)>> = services
        .fleets
        .iter()
        .map(|f| f.target().overrides().to_vec())
        .collect();
    for (f, o) in services.fleets.iter().zip(&overrides) {
        if o.is_empty() {
            continue;
        }
        let whose = match &plan.opts.image {
            Some(i) => format!("image {} ({})", i.image, i.engine.name()),
            None => format!("your {} configuration", f.mta.name()),
        };
        errln!("{whose}: the lab replaced {} of its settings", o.len());
        for (k, why) in o {
            errln!("  override {k}: {why}");
        }
    }
    for f in &services.fleets {
        for (g, e) in &f.failed {
            errln!(
                "error: the {} instance for settings {} did not start: {e}",
                f.mta.name(),
                g.describe()
            );
        }
    }
    let total = scenarios.len() * mtas.len();
    let progress = if mtas.len() > 1 {
        console::Progress::new(total, plan.verbose).with_targets()
    } else {
        console::Progress::new(total, plan.verbose)
    };
    let control_progress = crate::report::controls::Progress::new(total, plan.verbose);
    let on_event = |e: Event| {
        if plan.controls {
            control_progress.on(e)
        } else {
            progress.on(e)
        }
    };
    let services_ref = &services;
    let progress_ref = &on_event;
    let runs = plan.targets.iter().enumerate().map(|(f, (_, known))| {
        let scenarios = scenarios.clone();
        async move { run::run_all(services_ref, f, scenarios, known, progress_ref).await }
    });
    let all = futures::future::join_all(runs).await;
    let target_log = services
        .fleets
        .iter()
        .flat_map(|f| &f.instances)
        .map(|i| {
            format!(
                "[{} {}]\n{}",
                i.target.mta(),
                i.target.smtp_addr().ip(),
                i.target.log_tail(40)
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    services.stop().await;
    if plan.verbose {
        for r in all
            .iter()
            .flatten()
            .filter(|r| Status::of(r) != Status::Pass)
        {
            errln!(
                "\n--- {} observations\n{}",
                r.id,
                crate::report::observations_text(r)
            );
        }
        errln!("--- target log (last lines)\n{target_log}");
    }
    let outcomes = mtas
        .into_iter()
        .zip(all)
        .zip(overrides)
        .map(|((mta, results), overrides)| Outcome {
            mta,
            results,
            overrides,
        })
        .collect();
    Some((begin, startup, outcomes))
}

/// The end of a `--controls` run: summary, JUnit, exit status (2 if a
/// control could not run, 1 if one was not caught).
fn controls_report(
    plan: &run::controls::Plan,
    results: &[run::ScenarioResult],
    target: &str,
    args: &RunArgs,
    wall: std::time::Duration,
    startup: std::time::Duration,
) -> ExitCode {
    use run::controls::Outcome;
    let _ = outln!(
        "{}",
        crate::report::controls::summary(plan, results, target, wall, startup)
            .trim_end_matches('\n')
    );
    if let Some(path) = &args.junit {
        let report = crate::report::controls::junit(plan, results, target, wall);
        if let Err(e) = junit::write(&report, path) {
            errln!("error: cannot write JUnit to {}: {e}", path.display());
            return ExitCode::from(2);
        }
        errln!("JUnit written to {}", path.display());
    }
    let outcomes: Vec<Outcome> = results.iter().map(Outcome::of).collect();
    if outcomes.contains(&Outcome::Error) {
        ExitCode::from(2)
    } else if outcomes.contains(&Outcome::Missed) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
