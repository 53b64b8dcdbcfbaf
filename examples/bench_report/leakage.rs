//! The leakage section: what a server reconstructs from the first-layer keys and outputs a
//! secure run gives it, measured with [`cryptonn::coordinator::leakage::reconstruct`].
//!
//! The server's view of one training image in secure training is the set of conv1 + 2x2
//! average-pool outputs `z[f, i, j] = Σ_{a,b} wq[f, a·5+b] · B[2i+a, 2j+b]` (B the 2x2 box sums
//! of the zero-padded 32x32 image), for the weights of every step the image was trained at.
//! Each output is `<y, xq>` for a pixel-space key vector `y` (784 entries) plus a public
//! padding term. This section builds those key vectors for the initial and the trained conv1
//! weights, has them issued by a real authority (under the permissive and under the default
//! policy), decrypts the outputs from the client's ciphertexts through the server, and runs the
//! reconstruction against the true encoded pixels.

use std::sync::{Arc, Mutex};

use anyhow::{ensure, Context, Result};
use cryptonn::coordinator::leakage::reconstruct;
use cryptonn::coordinator::{
    Authority, Client, CoordinatorError, DomainConfig, InProcessKeyService, KeyVectorData,
    PolicyConfig, RequesterId, Server,
};
use cryptonn::fe::dlog::BabyStepTable;
use cryptonn::fe::feip::FeipParams;
use cryptonn::fe::group::ristretto::Ristretto255;
use cryptonn::nn::data::Dataset;
use cryptonn::nn::data::PixelNormalization;
use cryptonn::nn::first_layer::{pooled_conv, PixelEncoding, QuantConfig};
use ndarray::{concatenate, Array2, Axis};
use serde::Serialize;

use crate::stats::bar;

const SIDE: usize = 28;
const PAD: usize = 2;
const POOLED: usize = 14;
const FILTERS: usize = 6;
const KERNEL: usize = 5;
const N: usize = SIDE * SIDE;

/// One scenario's outcome, averaged over the images.
#[derive(Debug, Clone, Serialize)]
pub struct LeakageCase {
    /// Mean `||x̂ − x|| / ||x||` of the reconstruction against the true encoded pixels.
    pub relative_error: Option<f64>,
    /// Mean share of pixels determined exactly.
    pub recovered_fraction: Option<f64>,
    /// Rank of the issued key vectors.
    pub rank: Option<usize>,
    /// Key vectors the server asked for.
    pub keys_requested: usize,
    /// Key vectors the authority issued.
    pub keys_issued: usize,
    /// What the scenario is.
    pub description: String,
}

/// The section's figures, serialised as `leakage`.
#[derive(Debug, Clone, Serialize)]
pub struct LeakageResults {
    /// Training images analysed.
    pub images: usize,
    /// Pixels per image (the FEIP vector length).
    pub n: usize,
    /// conv1 weight versions whose forward keys the server holds (initial, trained).
    pub weight_versions: usize,
    /// The permissive policy: every key the training asks for is issued.
    pub unrestricted: LeakageCase,
    /// The keys of one forward pass only (the first weight version), permissive policy.
    pub one_forward_pass: LeakageCase,
    /// The default policy (weight filter, rank cap n/2): keys requested one at a time, the
    /// refused ones skipped.
    pub policy: LeakageCase,
    /// Keys collected in the secure training run, tried on other mini-batch shards.
    pub cross_domain: Option<crate::cross_domain::CrossDomain>,
    /// Every built-in model: what the server could rebuild of the first shard of its secure
    /// run from the keys it received (model → dataset).
    pub models: crate::architectures::ModelLeakage,
}

/// The pixel-space key vectors of the 6 x 14 x 14 pooled conv1 outputs for `wq: [6, 25]`,
/// one row each, and the public padding coefficient sum of each row.
pub fn conv1_pool_keys(wq: &Array2<i64>) -> (Array2<i64>, Vec<i64>) {
    let mut rows = Array2::<i64>::zeros((FILTERS * POOLED * POOLED, N));
    let mut pad = vec![0i64; FILTERS * POOLED * POOLED];
    for f in 0..FILTERS {
        for i in 0..POOLED {
            for j in 0..POOLED {
                let r = f * POOLED * POOLED + i * POOLED + j;
                for a in 0..KERNEL {
                    for b in 0..KERNEL {
                        let w = wq[[f, a * KERNEL + b]];
                        for (du, dv) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                            let (pr, pc) = (2 * i + a + du, 2 * j + b + dv);
                            let real =
                                (PAD..PAD + SIDE).contains(&pr) && (PAD..PAD + SIDE).contains(&pc);
                            if real {
                                rows[[r, (pr - PAD) * SIDE + pc - PAD]] += w;
                            } else {
                                pad[r] += w;
                            }
                        }
                    }
                }
            }
        }
    }
    (rows, pad)
}

/// Runs the section on the first `images` training images, for the conv1 weight versions
/// `weights` (each `[6, 25]` in float), encoded with `quant` and `norm`.
pub fn run(
    data: &Dataset,
    images: usize,
    weights: &[Array2<f32>],
    quant: &QuantConfig,
    norm: &PixelNormalization,
    table: Arc<BabyStepTable<Ristretto255>>,
) -> Result<LeakageResults> {
    let enc = PixelEncoding::new(quant.scale_x, norm)?;
    let x = Array2::from_shape_fn((N, images), |(p, c)| enc.encode(data.image(c)[p]));
    let mut all_rows = Vec::new();
    for w in weights {
        let wq = quant.encode_weights(w.view())?;
        let (rows, pad) = conv1_pool_keys(&wq);
        // The geometry must match the nn module's integer first layer exactly.
        let mut z = vec![0i64; FILTERS * POOLED * POOLED];
        pooled_conv(
            &enc.box_sum(data.image(0)),
            wq.as_slice().context("wq layout")?,
            &mut z,
        );
        let mine = rows.dot(&x.column(0));
        for ((zi, mi), pi) in z.iter().zip(&mine).zip(&pad) {
            ensure!(
                *zi == mi + enc.encode(0) * pi,
                "leakage key geometry differs from conv1"
            );
        }
        all_rows.push(rows);
    }
    let views: Vec<_> = all_rows.iter().map(|r| r.view()).collect();
    let keys = concatenate(Axis(0), &views)?;
    let x_bound = enc.max_abs().unsigned_abs();
    let y_bound = keys
        .iter()
        .map(|v| v.unsigned_abs())
        .max()
        .unwrap_or(1)
        .max(1);
    let params = FeipParams::new(N, x_bound, y_bound)?;
    let dlog_bound = quant.forward_bound;

    let pb = bar("leakage", 2 * keys.nrows() as u64 + 2);
    pb.set_message("permissive policy: all keys in one request");
    let (server, ct, domain) = world(params, PolicyConfig::permissive(), &x, &table, dlog_bound)?;
    let batch = server.request_keys(domain, &keys)?;
    let values = server.secure_matmul_with_keys(&batch, &ct)?;
    ensure!(
        values == keys.dot(&x),
        "decrypted outputs differ from the plaintext ones"
    );
    pb.inc(keys.nrows() as u64);
    pb.set_message("reconstructing (permissive)");
    let unrestricted = measure(
        &keys,
        &values,
        &x,
        keys.nrows(),
        "permissive policy (no limit)",
    )?;
    let one = all_rows[0].nrows();
    let one_forward_pass = measure(
        &keys.slice_axis(Axis(0), (0..one).into()).to_owned(),
        &values.slice_axis(Axis(0), (0..one).into()).to_owned(),
        &x,
        one,
        "permissive policy, the keys of a single forward pass (initial weights)",
    )?;
    pb.inc(1);

    pb.set_message("default policy: one key per request");
    let (server, ct, domain) = world(params, PolicyConfig::default(), &x, &table, dlog_bound)?;
    let mut issued_rows = Vec::new();
    let mut issued_values = Vec::new();
    for r in 0..keys.nrows() {
        let row = keys.row(r).insert_axis(Axis(0));
        match server.request_keys(domain, row) {
            Ok(batch) => {
                issued_values.push(server.secure_matmul_with_keys(&batch, &ct)?);
                issued_rows.push(row.to_owned());
            }
            Err(CoordinatorError::Refused { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        pb.inc(1);
    }
    pb.set_message("reconstructing (default policy)");
    let policy = if issued_rows.is_empty() {
        LeakageCase {
            relative_error: Some(1.0),
            recovered_fraction: Some(0.0),
            rank: Some(0),
            keys_requested: keys.nrows(),
            keys_issued: 0,
            description: "default policy: every key refused".into(),
        }
    } else {
        let rv: Vec<_> = issued_rows.iter().map(|r| r.view()).collect();
        let vv: Vec<_> = issued_values.iter().map(|r| r.view()).collect();
        measure(
            &concatenate(Axis(0), &rv)?,
            &concatenate(Axis(0), &vv)?,
            &x,
            keys.nrows(),
            "default policy (min 4 non-zeros, rank cap n/2), refused keys skipped",
        )?
    };
    pb.finish_and_clear();
    let f = |c: &LeakageCase| {
        format!(
            "{} of {} keys issued, rank {}, {:.1} % of pixels exact, relative error {:.4}",
            c.keys_issued,
            c.keys_requested,
            c.rank.unwrap_or(0),
            100.0 * c.recovered_fraction.unwrap_or(0.0),
            c.relative_error.unwrap_or(f64::NAN)
        )
    };
    println!("leakage, permissive: {}", f(&unrestricted));
    println!("leakage, one forward pass: {}", f(&one_forward_pass));
    println!("leakage, default policy: {}", f(&policy));
    Ok(LeakageResults {
        images,
        n: N,
        weight_versions: weights.len(),
        unrestricted,
        one_forward_pass,
        policy,
        cross_domain: None,
        models: Default::default(),
    })
}

type World = (
    Server<Ristretto255, InProcessKeyService<Ristretto255>>,
    cryptonn::coordinator::EncryptedMatrix<Ristretto255>,
    cryptonn::coordinator::DomainId,
);

/// An authority with one domain under `policy`, the images encrypted by a client, a server.
fn world(
    params: FeipParams,
    policy: PolicyConfig,
    x: &Array2<i64>,
    table: &Arc<BabyStepTable<Ristretto255>>,
    dlog_bound: u64,
) -> Result<World> {
    let auth = Arc::new(Mutex::new(Authority::new(Ristretto255)));
    let lock = || {
        auth.lock()
            .map_err(|_| anyhow::anyhow!("authority lock poisoned"))
    };
    let domain = lock()?.create_domain(DomainConfig::new(params).with_policy(policy))?;
    let pk = lock()?.public_key(domain)?;
    let ct = Client::new(Ristretto255, pk)?.encrypt_matrix(x)?;
    let keys = InProcessKeyService::new(Arc::clone(&auth), RequesterId::new("server"));
    let server = Server::new(keys, Arc::clone(table)).with_dlog_bound(dlog_bound);
    Ok((server, ct, domain))
}

fn measure(
    keys: &Array2<i64>,
    values: &Array2<i64>,
    x: &Array2<i64>,
    requested: usize,
    description: &str,
) -> Result<LeakageCase> {
    let vectors: Vec<KeyVectorData> = keys
        .rows()
        .into_iter()
        .map(|r| KeyVectorData::from_dense_compact(&r.to_vec()))
        .collect();
    let recs = reconstruct(N, &vectors, values.view())?;
    let m = recs.len() as f64;
    let mut err = 0.0;
    let mut frac = 0.0;
    for (rec, truth) in recs.iter().zip(x.columns()) {
        let truth = truth.to_vec();
        for (e, t) in rec.exact().iter().zip(&truth) {
            ensure!(
                !matches!(e, Some(v) if v != t),
                "reconstruction claimed a wrong exact pixel"
            );
        }
        err += rec.relative_error(&truth);
        frac += rec.recovered_fraction();
    }
    Ok(LeakageCase {
        relative_error: Some(err / m),
        recovered_fraction: Some(frac / m),
        rank: recs.first().map(|r| r.rank()),
        keys_requested: requested,
        keys_issued: keys.nrows(),
        description: description.to_string(),
    })
}
