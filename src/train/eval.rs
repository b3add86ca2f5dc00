//! Evaluation: the validation loss on fixed batches, and greedy completions of held-out prompts
//! (the predictions table, and exact-match accuracy where the task has one).

use anyhow::{ensure, Result};

use crate::train::backend::Backend;
use crate::train::data::{BatchSampler, Dataset, EvalPair, Kind, Split};
use crate::train::model::Gpt;
use crate::train::rng::counter_hash;
use crate::train::tracking::table::Prediction;

/// The random stream of validation batches, apart from the training batches'.
const VAL_STREAM: u64 = 0x7661_6c69_6461_7465;

/// Held-out problems scored for accuracy on tasks that have an exact answer.
pub const ACCURACY_PROBLEMS: usize = 128;

/// What one evaluation measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub val_loss: f32,
    /// Exact-match accuracy over the scored prompts, for tasks with exact answers.
    pub accuracy: Option<f32>,
    /// The first `sample_count` completions, for the predictions table.
    pub predictions: Vec<Prediction>,
}

/// Evaluates on the same batches and prompts every time, so evaluations of one run (and of runs
/// with the same data and seed) compare like with like.
pub struct Evaluator {
    seed: u64,
    batches: usize,
    batch_size: usize,
    seq: usize,
    pairs: Vec<EvalPair>,
    samples: usize,
    scored: bool,
}

impl Evaluator {
    /// `batches` validation batches of `batch_size × seq` tokens; `samples` completions kept for
    /// the table.
    pub fn new(
        data: &Dataset,
        seed: u64,
        batches: usize,
        batch_size: usize,
        seq: usize,
        samples: usize,
    ) -> Self {
        let scored = matches!(data.kind, Kind::Addition(_));
        let wanted = if scored {
            samples.max(ACCURACY_PROBLEMS)
        } else {
            samples
        };
        Self {
            seed: counter_hash(seed, VAL_STREAM),
            batches,
            batch_size,
            seq,
            pairs: data.eval_pairs(wanted, seq),
            samples,
            scored,
        }
    }

    pub fn run<B: Backend>(&self, model: &mut Gpt<B>, data: &Dataset) -> Result<Evaluation> {
        let val_loss = self.val_loss(model, data)?;
        let completions = self.complete_all(model, data)?;
        let judged: Vec<Prediction> = self
            .pairs
            .iter()
            .zip(completions)
            .map(|(pair, completion)| Prediction {
                correct: data.is_correct(pair, &completion),
                prompt: pair.prompt.clone(),
                prediction: completion,
                target: pair.target.clone(),
            })
            .collect();
        let accuracy = (self.scored && !judged.is_empty())
            .then(|| judged.iter().filter(|p| p.correct).count() as f32 / judged.len() as f32);
        Ok(Evaluation {
            val_loss,
            accuracy,
            predictions: judged.into_iter().take(self.samples).collect(),
        })
    }

    fn val_loss<B: Backend>(&self, model: &mut Gpt<B>, data: &Dataset) -> Result<f32> {
        let mut sampler = BatchSampler::new(self.seed);
        let source = data.source(Split::Val);
        let mut total = 0.0f64;
        for _ in 0..self.batches {
            let batch = sampler.sample(&source, self.batch_size, self.seq)?;
            let loss = model.forward(
                &batch.inputs,
                Some(&batch.targets),
                self.batch_size,
                self.seq,
                false,
            )?;
            total += f64::from(loss.unwrap_or(f32::NAN));
        }
        Ok((total / self.batches as f64) as f32)
    }

    /// Greedy completions of every prompt, in batches no larger than training's.
    fn complete_all<B: Backend>(&self, model: &mut Gpt<B>, data: &Dataset) -> Result<Vec<String>> {
        let tokenizer = &data.tokenizer;
        // Addition answers end at the line end; other text continues for the target's length.
        let stop = match data.kind {
            Kind::Addition(_) => tokenizer.id('\n'),
            Kind::Text => None,
        };
        let mut out = Vec::with_capacity(self.pairs.len());
        for chunk in self.pairs.chunks(self.batch_size.max(1)) {
            let prompts = chunk
                .iter()
                .map(|pair| tokenizer.encode(&pair.prompt))
                .collect::<Result<Vec<_>>>()?;
            let longest = chunk
                .iter()
                .map(|p| p.target.chars().count())
                .max()
                .unwrap_or(0);
            let max_new = longest + usize::from(stop.is_some());
            for generated in complete(model, &prompts, max_new, stop)? {
                out.push(tokenizer.decode(&generated));
            }
        }
        Ok(out)
    }
}

/// Greedy decoding of up to `max_new` tokens after each prompt, all prompts in one batch; a
/// completion ends early at `stop` (which is not included).
///
/// Every sequence is laid out from the start of a full `block_size` window and padded after
/// its end: attention is causal, so the padding never reaches the position that is read, and
/// the batch keeps one shape for the whole decode.
pub fn complete<B: Backend>(
    model: &mut Gpt<B>,
    prompts: &[Vec<u32>],
    max_new: usize,
    stop: Option<u32>,
) -> Result<Vec<Vec<u32>>> {
    ensure!(
        prompts.iter().all(|p| !p.is_empty()),
        "cannot complete an empty prompt"
    );
    let (t, vocab) = (model.config().block_size, model.config().vocab_size);
    let n = prompts.len();
    let mut seqs = prompts.to_vec();
    let mut generated = vec![Vec::new(); n];
    let mut done = vec![false; n];
    let mut inputs = vec![0u32; n * t];
    for _ in 0..max_new {
        if n == 0 || done.iter().all(|&d| d) {
            break;
        }
        inputs.fill(0);
        let mut last = Vec::with_capacity(n);
        for (i, seq) in seqs.iter().enumerate() {
            let window = &seq[seq.len().saturating_sub(t)..];
            inputs[i * t..i * t + window.len()].copy_from_slice(window);
            last.push(i * t + window.len() - 1);
        }
        model.forward(&inputs, None, n, t, false)?;
        let logits = model.logits()?;
        for i in 0..n {
            if done[i] {
                continue;
            }
            let row = &logits[last[i] * vocab..(last[i] + 1) * vocab];
            let next = argmax(row);
            if Some(next) == stop {
                done[i] = true;
            } else {
                seqs[i].push(next);
                generated[i].push(next);
            }
        }
    }
    Ok(generated)
}

/// The index of the largest value; the first one on ties, so decoding is deterministic.
fn argmax(row: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &value) in row.iter().enumerate() {
        if value > row[best] {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_takes_the_first_of_equal_maxima() {
        assert_eq!(argmax(&[0.0, 2.0, 2.0, -1.0]), 1);
        assert_eq!(argmax(&[5.0]), 0);
    }
}
