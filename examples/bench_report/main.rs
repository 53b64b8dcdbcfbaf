//! One command, one report: secure against plaintext training, the FE core against the
//! CryptoNN paper's figures, and what the server could reconstruct.
//!
//! ```sh
//! cargo run --release --example bench_report -- --quick --out report/quick/   # <= 5 min; CI runs it (dev profile)
//! cargo run --release --example bench_report -- --full --out report/full/     # 60,000 images, 2 epochs
//! cargo run --release --example bench_report -- --check report/report.json
//! # the privacy section alone, merged into an existing report (its JSON, REPORT.md, plots):
//! cargo run --release --example bench_report -- --full --sections privacy --out report/full/
//! ```
//!
//! Everything runs in one process, so that ratios are measured side by side. Outputs:
//! `REPORT.md` (tables), `report.json` (every figure; the contract keys are listed in
//! `cryptonn::report_schema`; a figure not measured is `null` with its reason in `missing`)
//! and SVG plots. After writing, the program checks that the files exist and parse. It asserts no timings.
//!
//! Secure training writes its encrypted training subset and its audit log to
//! `target/cryptonn-cache/bench_report/` (about 1.5 GB + 2 GB in `--full`) and removes both
//! at the end; discrete-log tables are cached in `target/cryptonn-cache/`.
//!
//! Sections: FE microbenchmarks (`fe_bench`), training (`training`), leakage (`leakage`), the
//! networked key service (`network`, with the library's `coordinator::net::load`, as
//! `examples/key_service_load`), images/s per thread count (`scaling`); the
//! paper's figures are in `paper`, the report's shape in `report`, rendering in `markdown` and
//! `plots`, machine facts in `machine`, medians and progress bars in `stats`.

mod architectures;
mod cross_domain;
mod fe_bench;
mod leakage;
mod machine;
mod markdown;
mod network;
mod paper;
mod plots;
mod privacy;
mod profile;
mod report;
mod scaling;
mod secure;
mod stats;
mod training;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use clap::Parser;
use cryptonn::fe::dlog::BabyStepTable;
use cryptonn::fe::group::modp::ModpGroup;
use cryptonn::fe::group::ristretto::Ristretto255;
use cryptonn::nn::data::{default_data_dir, Mnist};
use cryptonn::nn::lenet::LeNet5;
use cryptonn::nn::train::{BatchSchedule, TrainConfig};
use cryptonn::report_schema as schema;

use crate::machine::MachineInfo;
use crate::profile::{profile, SECURE_DLOG_HALF_WIDTH};
use crate::report::{Comparison, Fe, Report, Training};
use crate::secure::Extras;
use crate::training::{run_mode, RunSpec, SecureOptions, TrainMode};

/// Benchmark report: secure vs plaintext training, FE vs the CryptoNN paper, leakage.
#[derive(Debug, Parser)]
#[command(about)]
struct Args {
    /// Small sizes, <= 5 min on a 2-core machine (the default).
    #[arg(long, conflicts_with = "full")]
    quick: bool,
    /// Full MNIST (60,000 training / 10,000 test images), 2 epochs, more repetitions.
    #[arg(long)]
    full: bool,
    /// Output directory.
    #[arg(long, default_value = "report")]
    out: PathBuf,
    /// Only validate an existing report.json (and its directory's files) and exit.
    #[arg(long, value_name = "PATH")]
    check: Option<PathBuf>,
    /// Override the profile's training-set size.
    #[arg(long)]
    train_size: Option<usize>,
    /// Override the profile's test-set size.
    #[arg(long)]
    test_size: Option<usize>,
    /// Override the profile's epochs.
    #[arg(long)]
    epochs: Option<usize>,
    /// rayon threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Directory holding the MNIST IDX files.
    #[arg(long, default_value_os_t = default_data_dir())]
    data: PathBuf,
    /// What to run: the whole report, or the privacy section alone (with the profile's privacy
    /// plan), merged into the report.json and REPORT.md already in --out: its curve and the
    /// noise-on/off throughput (`privacy`), or one of the two (`privacy-curve`,
    /// `privacy-throughput`; the other part is kept from the existing report).
    #[arg(long, value_enum, default_value_t = Sections::All)]
    sections: Sections,
}

/// Whether `note` describes an earlier separate privacy run whose figures a `sections` run
/// replaces (a throughput run keeps the curve's note, and the other way round).
fn superseded(note: &str, sections: Sections) -> bool {
    note.starts_with("privacy: measured apart")
        && match sections {
            Sections::PrivacyThroughput => note.contains("--sections privacy-throughput"),
            Sections::PrivacyCurve => note.contains("--sections privacy-curve"),
            Sections::All | Sections::Privacy => true,
        }
}

/// The `--sections` choices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Sections {
    /// Every section.
    All,
    /// The privacy section: curve and throughput.
    Privacy,
    /// The privacy curve (accuracy, attack, epsilon, noisy prediction) only.
    PrivacyCurve,
    /// The noise-on/off throughput only.
    PrivacyThroughput,
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<ExitCode> {
    let args = Args::parse();
    if let Some(path) = &args.check {
        return Ok(check(path));
    }
    let start = Instant::now();
    // Read now: the working tree may move on during an hour-long --full run.
    let git_commit = machine::git_commit();
    let started_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    rayon::ThreadPoolBuilder::new()
        .num_threads(args.threads)
        .build_global()
        .context("building the rayon thread pool")?;
    let mut p = profile(args.full);
    p.train_size = args.train_size.unwrap_or(p.train_size);
    p.test_size = args.test_size.unwrap_or(p.test_size);
    p.epochs = args.epochs.unwrap_or(p.epochs);
    // The command as it was run: a build without `--release` (CI's contract check) says so.
    let cargo_run = if cfg!(debug_assertions) {
        "cargo run --example bench_report --"
    } else {
        "cargo run --release --example bench_report --"
    };
    let command = std::iter::once(cargo_run.to_string())
        .chain(std::env::args().skip(1))
        .collect::<Vec<_>>()
        .join(" ");
    if args.sections != Sections::All {
        return privacy_only(&args, command, git_commit, started_unix);
    }
    let mut machine = MachineInfo::collect(rayon::current_num_threads());
    println!(
        "bench_report ({} profile): {} cores, {} threads, CPU {}, load average {:?}",
        p.name,
        machine.cores,
        machine.threads,
        machine.cpu_model.as_deref().unwrap_or("unknown"),
        machine.load_average_start
    );
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let cache = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/cryptonn-cache");
    let mut missing = BTreeMap::new();
    let mut notes = Vec::new();

    // FE microbenchmarks.
    stats::section(
        "FE microbenchmarks",
        "FEIP Setup / Encrypt / KeyDer / Decrypt at n = 25 and 785 (one thread, medians), one \
         ciphertext meeting 6 keys, the discrete-log table (build, load), and the paper's \
         100x10 · 10x100 secure product (all threads), for Ristretto255 and modp2048.",
    );
    let ristretto = fe_bench::run("ristretto", Ristretto255, &p.ristretto, &cache)?;
    let modp2048 = fe_bench::run("modp2048", ModpGroup::rfc3526_2048(), &p.modp2048, &cache)?;
    for r in [&ristretto, &modp2048] {
        if r.paper_product_s.is_none() {
            let why = format!(
                "the {} profile measures a reduced product on {} group: {} x 10 · 10 x 100 \
                 ({} inner products) took {:.2} s (fe.{}.paper_product); run --full for the \
                 paper's 10,000",
                p.name,
                r.group,
                r.paper_product.samples,
                r.paper_product.inner_products,
                r.paper_product.total_s,
                r.group
            );
            missing.insert(format!("fe.{}.paper_product_s", r.group), why);
        }
    }
    if p.modp2048.table_half_width < p.ristretto.table_half_width {
        notes.push(format!(
            "modp2048's discrete-log table is measured at m = 2^{} (Ristretto255: 2^{}); build \
             time grows linearly in m",
            p.modp2048.table_half_width.trailing_zeros(),
            p.ristretto.table_half_width.trailing_zeros()
        ));
    }

    // Training.
    let mnist = Mnist::load(&args.data)?;
    let train_set = mnist.train.take(p.train_size, "training")?;
    let test_set = mnist.test.take(p.test_size, "test")?;
    // Fixed mini-batch shards in every mode: secure training needs them (one key domain per
    // shard), and the same batches make the modes comparable step for step.
    let cfg = TrainConfig {
        epochs: p.epochs,
        schedule: BatchSchedule::FixedShards,
        ..TrainConfig::default()
    };
    let secure_opts = SecureOptions {
        table: Arc::new(BabyStepTable::load_or_build(
            Ristretto255,
            SECURE_DLOG_HALF_WIDTH,
            &cache,
        )?),
        work_dir: cache.join("bench_report"),
        dlog_half_width: SECURE_DLOG_HALF_WIDTH,
    };
    let lenet_spec = cryptonn::nn::model::ModelSpec::lenet5(cfg.lenet);
    let mut lenet_run = RunSpec {
        spec: &lenet_spec,
        name: "lenet5-mnist",
        extras: Extras {
            cross_domain: false,
            leakage: false,
        },
    };
    stats::section(
        "Training",
        &format!(
            "LeNet-5 on the first {} training images, {} epochs, seed {}, batch {}, evaluated on \
             {} test images after every epoch: plain, quantized and secure, in this process.",
            train_set.len(),
            cfg.epochs,
            cfg.seed,
            cfg.batch_size,
            test_set.len()
        ),
    );
    let plain = run_mode(
        TrainMode::Plain,
        &cfg,
        &lenet_run,
        &train_set,
        &test_set,
        &secure_opts,
    )?;
    let quantized = run_mode(
        TrainMode::Quantized,
        &cfg,
        &lenet_run,
        &train_set,
        &test_set,
        &secure_opts,
    )?;
    lenet_run.extras = Extras {
        cross_domain: true,
        leakage: true,
    };
    let secure = run_mode(
        TrainMode::Secure,
        &cfg,
        &lenet_run,
        &train_set,
        &test_set,
        &secure_opts,
    )?;
    let mut training = Training {
        train_size: train_set.len(),
        test_size: test_set.len(),
        epochs: cfg.epochs,
        seed: cfg.seed,
        batch_size: cfg.batch_size,
        plain: plain.figures,
        quantized: quantized.figures,
        secure: secure.figures,
        ratio_secure_to_plain: None,
        ratio_quantized_to_plain: None,
        weights_identical: None,
    };
    training.derive();
    if let Some(note) = training.secure.note.clone() {
        for key in [
            "training.secure.epoch_seconds",
            "training.secure.test_accuracy",
            "training.secure.images_per_second",
            "training.ratio_secure_to_plain",
            "training.weights_identical",
        ] {
            missing.insert(key.into(), note.clone());
        }
    }

    // Every built-in model on its dataset.
    let lenet_row = architectures::Row::from_runs(
        &training.plain,
        &training.quantized,
        &training.secure,
        (train_set.len(), test_set.len(), cfg.epochs, cfg.batch_size),
        architectures::first_layer_words(&lenet_spec),
        "the training section's runs",
    );
    let (mut arch_rows, mut model_leakage) =
        architectures::run(&architectures::plans(args.full), &args.data, &secure_opts)?;
    arch_rows
        .entry("lenet5".into())
        .or_default()
        .insert("mnist".into(), lenet_row);
    if let Some(l) = secure.leakage.clone() {
        model_leakage
            .entry("lenet5".into())
            .or_default()
            .insert("mnist".into(), l);
    }

    // Leakage.
    stats::section(
        "Leakage",
        &format!(
            "What the server reconstructs of {} training images from the conv1 + pool keys of \
             the initial and the trained weights and the outputs it decrypts, with the \
             permissive and with the default policy.",
            p.leakage_images
        ),
    );
    let trained = quantized
        .conv1_weight
        .context("the quantized run left no model")?;
    let initial = LeNet5::lenet5(cfg.lenet, cfg.seed)
        .first_weight()
        .to_owned();
    let table = Arc::new(BabyStepTable::load_or_build(
        Ristretto255,
        p.ristretto.table_half_width,
        &cache,
    )?);
    let mut leakage = leakage::run(
        &train_set,
        p.leakage_images.min(train_set.len()),
        &[initial, trained],
        &cfg.quant,
        &cfg.normalization,
        table,
    )?;
    leakage.cross_domain = secure.cross_domain;
    leakage.models = model_leakage;

    // Privacy: noisy first-layer values (examples/bench_report/privacy.rs).
    let privacy_plan = privacy::plan(args.full);
    stats::section(
        "Privacy",
        &format!(
            "Noisy first-layer values: sigma in {:?}, {} images, {} epochs; attack on {} images.",
            privacy_plan.sigmas,
            privacy_plan.train_size,
            privacy_plan.epochs,
            privacy_plan.attack_images
        ),
    );
    let privacy_table = Arc::new(BabyStepTable::load_or_build(
        Ristretto255,
        SECURE_DLOG_HALF_WIDTH,
        &cache,
    )?);
    let privacy_dir = secure_opts.work_dir.clone();
    let privacy = privacy::run(
        &train_set,
        &test_set,
        &cfg,
        &privacy_plan,
        Some((&privacy_table, &privacy_dir)),
    )?;

    // The networked parties.
    stats::section(
        "Network (loopback)",
        &format!(
            "Secure training on {} images, 1 epoch, with the key service in-process and over \
             gRPC + TLS on 127.0.0.1 ({} alternating rounds); then {} requesters asking for \
             batches of {} length-{} key vectors for {} s.",
            p.network.train_size.min(train_set.len()),
            p.network.rounds,
            p.network.load.requesters,
            p.network.load.batch,
            p.network.load.dim,
            p.network.load.seconds
        ),
    );
    let network = network::run(
        &cfg,
        &p.network,
        &train_set,
        &test_set,
        &secure_opts.table,
        &secure_opts.work_dir,
    )?;

    // Scaling: images/s per thread count, the same weights at each.
    let threads = scaling::thread_counts(machine.cores);
    let scaling_set = mnist.train.take(p.scaling_train_size, "training")?;
    let scaling_test = mnist.test.take(p.test_size.min(1_000), "test")?;
    stats::section(
        "Scaling",
        &format!(
            "LeNet-5 on {} images, 1 epoch, secure and plain, in rayon pools of {threads:?} \
             threads; the weights must be identical at each.",
            scaling_set.len()
        ),
    );
    let scaling_cfg = TrainConfig { epochs: 1, ..cfg };
    let scaling = scaling::run(
        &scaling_cfg,
        &lenet_spec,
        &scaling_set,
        &scaling_test,
        &secure_opts,
        &threads,
    )?;
    for key in ["scaling.secure_speedup", "scaling.plain_speedup"] {
        if scaling.secure_speedup.is_none() {
            missing.insert(
                key.into(),
                "one thread count only (the machine reports a single core)".into(),
            );
        }
    }

    machine.load_average_end = machine::load_average();
    let fe = Fe {
        ristretto,
        modp2048,
    };
    let comparison = Comparison::derive(&training, &fe);
    let report = Report {
        profile: p.name.into(),
        command,
        git_commit,
        started_unix,
        total_seconds: start.elapsed().as_secs_f64(),
        process_peak_rss_mb: None,
        machine,
        training,
        architectures: arch_rows,
        fe,
        leakage,
        network,
        privacy,
        scaling,
        paper: paper::figures(),
        paper_setup: paper::PAPER_SETUP,
        comparison,
        missing,
        notes,
    };
    write_outputs(&args.out, report)?;
    println!(
        "\nwrote {}/REPORT.md, report.json and plots in {:.0} s",
        args.out.display(),
        start.elapsed().as_secs_f64()
    );
    Ok(check(&args.out.join("report.json")))
}

/// `--sections privacy…`: runs the privacy section alone and merges it into `--out`'s
/// report.json (key `privacy`, a line in `notes`) and REPORT.md (its section replaced, a line
/// under the title saying which run each section comes from), writing `privacy.svg` and the
/// reconstruction picture when the curve ran. Every other key and section stays as it was.
fn privacy_only(
    args: &Args,
    command: String,
    git_commit: Option<String>,
    started_unix: u64,
) -> Result<ExitCode> {
    let start = Instant::now();
    let load_start = machine::load_average();
    let json_path = args.out.join("report.json");
    let mut report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json_path).with_context(|| {
            format!(
                "--sections merges into {}: run the whole report first",
                json_path.display()
            )
        })?)
        .with_context(|| format!("parsing {}", json_path.display()))?;
    let old: Option<privacy::PrivacyResults> = report
        .get("privacy")
        .cloned()
        .and_then(|v| serde_json::from_value(v).ok());
    let cache = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/cryptonn-cache");
    let mut plan = privacy::plan(args.full);
    if args.sections == Sections::PrivacyThroughput {
        plan.sigmas.clear();
        plan.prediction_images = 0;
    }
    stats::section(
        "Privacy (alone)",
        &format!(
            "Noisy first-layer values ({:?}): sigma in {:?}, {} images, {} epochs; attack on {} \
             images; noisy prediction on {} test images; throughput {:?}.",
            args.sections,
            plan.sigmas,
            plan.train_size,
            plan.epochs,
            plan.attack_images,
            plan.prediction_images,
            plan.throughput
        ),
    );
    let mnist = Mnist::load(&args.data)?;
    let cfg = TrainConfig {
        schedule: BatchSchedule::FixedShards,
        ..TrainConfig::default()
    };
    let table = if args.sections == Sections::PrivacyCurve {
        None
    } else {
        Some(Arc::new(BabyStepTable::load_or_build(
            Ristretto255,
            SECURE_DLOG_HALF_WIDTH,
            &cache,
        )?))
    };
    let work = cache.join("bench_report");
    let mut results = privacy::run(
        &mnist.train,
        &mnist.test,
        &cfg,
        &plan,
        table.as_ref().map(|t| (t, work.as_path())),
    )?;
    let this_run = privacy::PrivacyRun {
        command,
        git_commit,
        started_unix,
        started_utc: machine::utc_date_time(started_unix),
        seconds: start.elapsed().as_secs_f64(),
        load_average: (load_start, machine::load_average()),
    };
    let curve_ran = !plan.sigmas.is_empty();
    if let Some(t) = &mut results.throughput {
        t.measured = Some(this_run.clone());
    }
    match (args.sections, old) {
        (Sections::PrivacyThroughput, Some(mut old)) => {
            old.throughput = results.throughput.take();
            results = old;
        }
        (Sections::PrivacyCurve, Some(old)) => {
            results.throughput = old.throughput;
            results.run = Some(this_run.clone());
        }
        _ => results.run = Some(this_run.clone()),
    }
    let obj = report
        .as_object_mut()
        .context("report.json is not a JSON object")?;
    obj.insert("privacy".into(), serde_json::to_value(&results)?);
    let note = format!(
        "privacy: measured apart from the rest of this report by `{}` (commit {}, started {} \
         UTC, {:.0} s)",
        this_run.command,
        this_run.git_commit.as_deref().unwrap_or("unknown"),
        this_run.started_utc,
        this_run.seconds
    );
    if let Some(notes) = obj
        .get_mut("notes")
        .and_then(serde_json::Value::as_array_mut)
    {
        // The notes of earlier runs whose figures this run replaces go.
        notes.retain(|n| !n.as_str().is_some_and(|n| superseded(n, args.sections)));
        notes.push(note.into());
    } else {
        obj.insert("notes".into(), serde_json::json!([note]));
    }
    let report_started = obj
        .get("started_unix")
        .and_then(serde_json::Value::as_u64)
        .map(machine::utc_date_time);
    std::fs::write(&json_path, serde_json::to_string_pretty(&report)? + "\n")?;
    if curve_ran {
        privacy::plot(&args.out.join("privacy.svg"), &results)?;
    }
    let md_path = args.out.join("REPORT.md");
    let md = std::fs::read_to_string(&md_path).unwrap_or_default();
    let md = markdown::merge_privacy(
        &md,
        &privacy::markdown(&results),
        report_started.as_deref(),
        &results,
    );
    std::fs::write(&md_path, md)?;
    println!(
        "\nmerged the privacy section into {} and REPORT.md in {:.0} s",
        json_path.display(),
        start.elapsed().as_secs_f64()
    );
    match schema::check_privacy(&report) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(problems) => {
            for p in problems {
                eprintln!("  - {p}");
            }
            Ok(ExitCode::FAILURE)
        }
    }
}

fn write_outputs(out: &Path, mut report: Report) -> Result<()> {
    report.process_peak_rss_mb = machine::peak_rss_mb();
    let t = &report.training;
    let acc = [
        plots::Series {
            label: "plain",
            values: &t.plain.test_accuracy_per_epoch,
            width: 2,
        },
        plots::Series {
            label: "quantized",
            values: &t.quantized.test_accuracy_per_epoch,
            width: 6,
        },
        plots::Series {
            label: "secure",
            values: &t.secure.test_accuracy_per_epoch,
            width: 2,
        },
    ];
    plots::accuracy_per_epoch(
        &out.join("accuracy_per_epoch.svg"),
        &acc,
        &format!("LeNet-5 test accuracy, {} training images", t.train_size),
    )?;
    plots::bars_log(
        &out.join("epoch_seconds.svg"),
        &format!("Seconds per epoch, {} training images", t.train_size),
        "seconds per epoch (log)",
        &[
            ("plain", t.plain.epoch_seconds),
            ("quantized", t.quantized.epoch_seconds),
            ("secure", t.secure.epoch_seconds),
        ],
    )?;
    let parts = markdown::breakdown_parts(&report);
    plots::breakdown(
        &out.join("secure_breakdown.svg"),
        "Where secure training time goes",
        &parts,
        report
            .training
            .secure
            .note
            .as_deref()
            .unwrap_or("no breakdown recorded"),
    )?;
    privacy::plot(&out.join("privacy.svg"), &report.privacy)?;
    let json = serde_json::to_string_pretty(&report)?;
    std::fs::write(out.join("report.json"), json + "\n")?;
    std::fs::write(out.join("REPORT.md"), markdown::render(&report))?;
    Ok(())
}

/// Validates `path` (a report.json or its directory; the directory must hold the other outputs).
fn check(path: &Path) -> ExitCode {
    match schema::check_files(path) {
        Ok(()) => {
            println!(
                "check: {} and its directory's files meet the report contract ({} keys)",
                path.display(),
                schema::required_keys().len()
            );
            ExitCode::SUCCESS
        }
        Err(problems) => {
            eprintln!(
                "check: {} does not meet the report contract:",
                path.display()
            );
            for p in problems {
                eprintln!("  - {p}");
            }
            ExitCode::FAILURE
        }
    }
}
