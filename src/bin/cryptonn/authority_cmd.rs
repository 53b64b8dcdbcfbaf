//! `cryptonn authority …` and `cryptonn certs`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use clap::{Args, Subcommand};
use cryptonn::cli::BudgetGranularity;
use cryptonn::coordinator::accountant::{PrivacyBudget, DEFAULT_DELTA};
use cryptonn::coordinator::net::auth::{random_token, Role};
use cryptonn::coordinator::net::service::Listener;
use cryptonn::coordinator::net::{
    generate_pki, serve, ServeConfig, ServerTls, TokenTable, DEFAULT_MAX_MESSAGE_BYTES,
};
use cryptonn::coordinator::{AuditConfig, PersistentAuthority, StateOptions};
use cryptonn::fe::group::ristretto::Ristretto255;

#[derive(Debug, Subcommand)]
pub enum AuthorityCommand {
    /// Serve public keys, function keys and the audit log over gRPC, with state kept in
    /// --state (restarting on the same directory restores every domain).
    Serve(ServeArgs),
    /// Provision a bearer token: append `ROLE NAME TOKEN` to the tokens file and print the
    /// token (give it to that party only).
    Token(TokenArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0: any free port; the bound address is printed).
    #[arg(long, default_value = "127.0.0.1:7443")]
    listen: SocketAddr,
    /// State directory: master seed (0600), domain journal, audit log.
    #[arg(long)]
    state: PathBuf,
    /// Tokens file (`ROLE NAME TOKEN` per line; see `cryptonn authority token`).
    #[arg(long)]
    tokens: PathBuf,
    /// The authority's TLS certificate chain (PEM).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The authority's TLS private key (PEM).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Require client certificates signed by this CA (mutual TLS), on top of tokens.
    #[arg(long, requires = "tls_cert")]
    client_ca: Option<PathBuf>,
    /// Serve without TLS. Tokens then travel in the clear, so --listen must be a loopback
    /// address (127.0.0.0/8, ::1): loopback experiments only.
    #[arg(long, conflicts_with = "tls_cert")]
    plaintext: bool,
    /// Largest gRPC message accepted or sent, in bytes.
    #[arg(long, default_value_t = DEFAULT_MAX_MESSAGE_BYTES)]
    max_message_bytes: usize,
    /// Keep every FEIP key vector in the audit log (not only its hash), when the log is created.
    #[arg(long)]
    audit_vectors: bool,
    /// Do not fsync the journal, the state head and the audit log (faster; after a machine
    /// crash the files may end before the head's record, and the authority then refuses to
    /// start rather than guess; no key is ever derived twice either way).
    #[arg(long)]
    no_fsync: bool,
    /// A privacy budget for noisy domains (those a data owner created with `client encrypt
    /// --noise-sigma`): the largest ε, at δ = 1e-5, that any registered sample may reach (per
    /// image, or per pixel with --noise-budget-granularity pixel; docs/noisy-keys.md). A key
    /// request that would go beyond it is refused (`PrivacyBudgetExceeded`, nothing issued).
    /// The budget and the ledger it is checked against are journaled in --state: a budget
    /// stays in force across restarts until a new one is given. Unset at the first start: no
    /// budget.
    #[arg(long, value_parser = cryptonn::cli::epsilon_budget)]
    noise_epsilon_budget: Option<f64>,
    /// What --noise-epsilon-budget protects: the whole image, or one pixel.
    #[arg(long, value_enum, default_value_t = BudgetGranularity::Image, requires = "noise_epsilon_budget")]
    noise_budget_granularity: BudgetGranularity,
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    /// Tokens file to append to (created with mode 0600).
    #[arg(long)]
    tokens: PathBuf,
    /// The party's role.
    #[arg(long, value_parser = ["client", "server", "operator"])]
    role: String,
    /// The party's name (its requester id in the audit log).
    #[arg(long)]
    name: String,
}

#[derive(Debug, Args)]
pub struct CertsArgs {
    /// Directory to write ca.pem, ca.key, authority.pem, authority.key, <client>.pem/.key.
    #[arg(long)]
    out: PathBuf,
    /// Host names or IP addresses of the authority (repeatable).
    #[arg(long = "host", required = true)]
    hosts: Vec<String>,
    /// Client certificate to make, by name (repeatable), for mutual TLS: 1-64 characters from
    /// A-Z a-z 0-9 . _ - (it becomes a file name). Certificates are valid for one year;
    /// renew by running `certs` again and restarting the authority (docs/deploy.md).
    #[arg(long = "client")]
    clients: Vec<String>,
}

pub fn run(c: AuthorityCommand) -> anyhow::Result<()> {
    match c {
        AuthorityCommand::Serve(a) => serve_cmd(a),
        AuthorityCommand::Token(a) => token(a),
    }
}

fn read(path: &PathBuf) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

fn serve_cmd(a: ServeArgs) -> anyhow::Result<()> {
    let tls = match (&a.tls_cert, &a.tls_key) {
        (Some(c), Some(k)) => Some(ServerTls {
            cert_pem: read(c)?,
            key_pem: read(k)?,
            client_ca_pem: a.client_ca.as_ref().map(read).transpose()?,
        }),
        _ if a.plaintext => {
            if !a.listen.ip().is_loopback() {
                anyhow::bail!(
                    "--plaintext on {}: without TLS the authority only listens on loopback \
                     addresses (127.0.0.1, ::1); give --tls-cert and --tls-key to serve {}",
                    a.listen,
                    a.listen.ip()
                );
            }
            None
        }
        _ => anyhow::bail!("pass --tls-cert and --tls-key (or --plaintext for loopback tests)"),
    };
    refuse_data_in_state(&a.state)?;
    let tokens = TokenTable::from_file(&a.tokens)?;
    if tokens.is_empty() {
        anyhow::bail!(
            "{}: no token provisioned; every request would be refused",
            a.tokens.display()
        );
    }
    let options = StateOptions {
        audit: AuditConfig {
            store_vectors: a.audit_vectors,
        },
        fsync: !a.no_fsync,
    };
    let mut state = PersistentAuthority::open(Ristretto255, &a.state, options)
        .with_context(|| format!("opening the authority state in {}", a.state.display()))?;
    if let Some(epsilon) = a.noise_epsilon_budget {
        state
            .set_privacy_budget(Some(PrivacyBudget {
                epsilon,
                delta: DEFAULT_DELTA,
                granularity: a.noise_budget_granularity.into(),
            }))
            .context("recording the privacy budget")?;
    }
    if let Some(b) = state.authority().accountant().budget() {
        println!(
            "privacy budget of noisy domains: epsilon {} at delta {:e} ({})",
            b.epsilon, b.delta, b.granularity
        );
    }
    let domains = state.authority().domain_ids().len();
    let records = state.authority().audit_log().len();
    let config = ServeConfig {
        tls,
        max_message_bytes: a.max_message_bytes,
    };
    // Bad TLS material fails here, before "listening on" is printed.
    config.check().map_err(|e| {
        anyhow::anyhow!(
            "--tls-cert {} / --tls-key {}{}: {e}",
            a.tls_cert
                .as_ref()
                .map_or_else(String::new, |p| p.display().to_string()),
            a.tls_key
                .as_ref()
                .map_or_else(String::new, |p| p.display().to_string()),
            a.client_ca
                .as_ref()
                .map_or_else(String::new, |p| format!(" / --client-ca {}", p.display())),
        )
    })?;
    if let (Some(pem), Some(path)) = (
        config.tls.as_ref().and_then(|t| t.client_ca_pem.as_ref()),
        &a.client_ca,
    ) {
        cryptonn::coordinator::net::check_ca_pem(pem)
            .map_err(|e| anyhow::anyhow!("--client-ca {}: {e}", path.display()))?;
    }
    let tls = &config.tls;
    let listener = Listener::bind(a.listen)?;
    let addr = listener.local_addr()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    println!(
        "authority: {} domains and {} audit records restored from {} ({}); {} tokens; {}",
        domains,
        records,
        a.state.display(),
        state.restore_report(),
        tokens.len(),
        if tls.as_ref().is_some_and(|t| t.client_ca_pem.is_some()) {
            "mutual TLS"
        } else if tls.is_some() {
            "TLS"
        } else {
            "PLAINTEXT (loopback only)"
        }
    );
    // Tests and scripts read the bound address from this line.
    println!("listening on {addr}");
    runtime.block_on(async move {
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
            eprintln!("authority: shutting down");
        };
        serve(
            Arc::new(Mutex::new(state)),
            Arc::new(tokens),
            listener,
            config,
            shutdown,
        )
        .await
    })?;
    Ok(())
}

/// The authority's state (master seed, journal, audit) must live in its own directory, never
/// with data that is handed to servers: refuses a `--state` that holds an encrypted dataset.
fn refuse_data_in_state(state: &std::path::Path) -> anyhow::Result<()> {
    let Ok(entries) = std::fs::read_dir(state) else {
        return Ok(());
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "cnnenc") {
            anyhow::bail!(
                "{}: the state directory holds an encrypted dataset ({}); keep the authority's \
                 state (master seed, journal, audit log) in a directory of its own, apart from \
                 any data handed to a server",
                state.display(),
                p.display()
            );
        }
    }
    Ok(())
}

fn token(a: TokenArgs) -> anyhow::Result<()> {
    use std::io::Write;
    let role = Role::from_name(&a.role).context("unknown role")?;
    if a.name.split_whitespace().count() != 1 || a.name.contains('#') {
        anyhow::bail!("the name must be one word without '#', got {:?}", a.name);
    }
    let token = random_token();
    #[cfg(unix)]
    if let Ok(meta) = std::fs::metadata(&a.tokens) {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            anyhow::bail!(
                "{}: mode {mode:o} lets others read the tokens; chmod 600 it first",
                a.tokens.display()
            );
        }
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.append(true).create(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts
        .open(&a.tokens)
        .with_context(|| format!("opening {}", a.tokens.display()))?;
    writeln!(f, "{role} {} {token}", a.name)
        .with_context(|| format!("writing {}", a.tokens.display()))?;
    println!("{token}");
    Ok(())
}

pub fn certs(a: CertsArgs) -> anyhow::Result<()> {
    let pki = generate_pki(&a.hosts, &a.clients)?;
    let written = pki.write(&a.out)?;
    for p in &written {
        println!("wrote {}", p.display());
    }
    Ok(())
}
