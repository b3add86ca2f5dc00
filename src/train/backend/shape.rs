//! The shape checks every backend runs before an op, so that the CPU and the GPU reject the same
//! calls with the same words. Each takes tensor lengths, not tensors, since only the backend
//! can read its own memory.

use anyhow::{ensure, Result};

use super::{Btc, Linear};

/// Fails unless tensor `what` holds exactly `expected` elements.
pub fn len(what: &str, len: usize, expected: usize) -> Result<()> {
    ensure!(
        len == expected,
        "{what} has {len} elements where {expected} were expected"
    );
    Ok(())
}

/// An embedding call's `[B,T]` ids, `[V,C]` token and `[P,C]` position tables and `[B,T,C]`
/// activation (or its gradient); returns the vocabulary size `V`.
pub fn embedding(ids: usize, wte: usize, wpe: usize, activation: usize, d: Btc) -> Result<usize> {
    ensure!(
        d.c > 0 && wte.is_multiple_of(d.c),
        "token embedding of {wte} elements is not a whole number of {}-wide rows",
        d.c
    );
    ensure!(
        wpe >= d.t * d.c,
        "position embedding of {wpe} elements has fewer than {} positions",
        d.t
    );
    len("token ids", ids, d.rows())?;
    len("embedding activation", activation, d.numel())?;
    Ok(wte / d.c)
}

/// A LayerNorm forward call, given the lengths of `[out, mean, rstd]` and `[inp, weight, bias]`.
pub fn layernorm_forward(
    rows: usize,
    c: usize,
    [out, mean, rstd]: [usize; 3],
    [inp, weight, bias]: [usize; 3],
) -> Result<()> {
    layernorm(
        rows,
        c,
        &[("layernorm output", out), ("layernorm input", inp)],
        &[("layernorm weight", weight), ("layernorm bias", bias)],
        (mean, rstd),
    )
}

/// A LayerNorm backward call, given the lengths of `[dinp, dweight, dbias]` and
/// `[dout, inp, weight, mean, rstd]`.
pub fn layernorm_backward(
    rows: usize,
    c: usize,
    [dinp, dweight, dbias]: [usize; 3],
    [dout, inp, weight, mean, rstd]: [usize; 5],
) -> Result<()> {
    layernorm(
        rows,
        c,
        &[
            ("layernorm input gradient", dinp),
            ("layernorm output gradient", dout),
            ("layernorm input", inp),
        ],
        &[
            ("layernorm weight gradient", dweight),
            ("layernorm bias gradient", dbias),
            ("layernorm weight", weight),
        ],
        (mean, rstd),
    )
}

/// `[rows, C]` tensors, `[C]` tensors, and the `[rows]` statistics.
fn layernorm(
    rows: usize,
    c: usize,
    row_tensors: &[(&str, usize)],
    channel_tensors: &[(&str, usize)],
    (mean, rstd): (usize, usize),
) -> Result<()> {
    for &(what, n) in row_tensors {
        len(what, n, rows * c)?;
    }
    for &(what, n) in channel_tensors {
        len(what, n, c)?;
    }
    len("layernorm mean", mean, rows)?;
    len("layernorm rstd", rstd, rows)
}

/// A linear layer's input, weight and output (or output gradient).
pub fn linear(d: Linear, inp: usize, weight: usize, out: usize) -> Result<()> {
    ensure!(
        d.in_features > 0 && d.out_features > 0,
        "a linear layer needs at least one input and one output feature"
    );
    len("linear input", inp, d.rows * d.in_features)?;
    len("linear weight", weight, d.out_features * d.in_features)?;
    len("linear output", out, d.rows * d.out_features)
}

/// Channels per head: `C / n_head`, which must divide evenly.
pub fn head_size(d: Btc, n_head: usize) -> Result<usize> {
    ensure!(
        n_head > 0 && d.c.is_multiple_of(n_head),
        "{} channels do not split into {n_head} heads",
        d.c
    );
    Ok(d.c / n_head)
}

/// An attention call's `[B,T,3C]` qkv, `[B,T,C]` output (or its gradient) and
/// `[B,n_head,T,T]` probabilities.
pub fn attention(d: Btc, n_head: usize, qkv: usize, out: usize, att: usize) -> Result<()> {
    head_size(d, n_head)?;
    len("attention qkv", qkv, 3 * d.numel())?;
    len("attention output", out, d.numel())?;
    len("attention probabilities", att, d.b * n_head * d.t * d.t)
}

/// A cross-entropy call's `(losses, dlogits, logits, targets)` lengths.
pub fn cross_entropy(
    (losses, dlogits, logits, targets): (usize, usize, usize, usize),
    rows: usize,
    vocab: usize,
) -> Result<()> {
    ensure!(vocab > 0, "cross-entropy over an empty vocabulary");
    len("logits", logits, rows * vocab)?;
    len("logit gradient", dlogits, rows * vocab)?;
    len("losses", losses, rows)?;
    len("targets", targets, rows)
}
