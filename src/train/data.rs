//! Training text: where it comes from, its character vocabulary, the train/validation split,
//! seeded batches, and evaluation prompts.
//!
//! Sources: synthetic addition (generated), a local file, Tiny Shakespeare (downloaded once,
//! pinned by SHA-256, cached), or a W&B dataset artifact (downloaded and MD5-verified by the
//! client). Every dataset is identified by the SHA-256 of its text, which runs record.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, ensure, Context};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::config::DatasetSpec;
use super::rng::SplitMix64;
use crate::experiment::keys;
use crate::train::backend::IGNORE_INDEX;
use crate::wandb::{ArtifactRef, Client, Row};

pub const SHAKESPEARE_URL: &str =
    "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt";
pub const SHAKESPEARE_SHA256: &str =
    "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed";
/// The cached copy's name inside the data cache.
pub const SHAKESPEARE_FILE: &str = "tinyshakespeare.txt";

/// Fixed, so that `synthetic-addition` names the same text (and digest) in every run; the
/// training seed varies the model and the batches, not the data.
pub const ADDITION_SEED: u64 = 0x6d6c_7766_6164_6421;
/// Problems generated, fewer when the operands allow fewer distinct ones.
pub const ADDITION_PROBLEMS: u64 = 20_000;

/// The data cache: `$MLWF_DATA_CACHE`, else `$XDG_CACHE_HOME/mlwf/data`, else
/// `$HOME/.cache/mlwf/data`, else `.mlwf/data` in the current directory.
pub fn default_cache_dir(env: impl Fn(&str) -> Option<String>) -> PathBuf {
    let set = |name: &str| env(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = set("MLWF_DATA_CACHE") {
        return dir;
    }
    set("XDG_CACHE_HOME")
        .or_else(|| set("HOME").map(|home| home.join(".cache")))
        .map(|cache| cache.join("mlwf").join("data"))
        .unwrap_or_else(|| PathBuf::from(".mlwf/data"))
}

/// Hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A character-level vocabulary: the text's distinct characters, sorted; a token is an index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "StoredTokenizer", into = "StoredTokenizer")]
pub struct CharTokenizer {
    chars: Vec<char>,
}

/// How checkpoints store a tokenizer: the vocabulary as one string.
#[derive(Serialize, Deserialize)]
struct StoredTokenizer {
    kind: String,
    vocab: String,
}

impl From<CharTokenizer> for StoredTokenizer {
    fn from(tokenizer: CharTokenizer) -> Self {
        Self {
            kind: "char".into(),
            vocab: tokenizer.chars.into_iter().collect(),
        }
    }
}

impl TryFrom<StoredTokenizer> for CharTokenizer {
    type Error = String;

    fn try_from(stored: StoredTokenizer) -> Result<Self, String> {
        if stored.kind != "char" {
            return Err(format!(
                "tokenizer kind {:?} is not supported (expected \"char\")",
                stored.kind
            ));
        }
        let chars: Vec<char> = stored.vocab.chars().collect();
        if chars.is_empty() || chars.windows(2).any(|w| w[0] >= w[1]) {
            return Err("the tokenizer vocabulary must be non-empty, sorted and unique".into());
        }
        Ok(Self { chars })
    }
}

impl CharTokenizer {
    pub fn from_text(text: &str) -> Self {
        let mut chars: Vec<char> = text.chars().collect::<HashSet<_>>().into_iter().collect();
        chars.sort_unstable();
        Self { chars }
    }

    pub fn vocab_size(&self) -> usize {
        self.chars.len()
    }

    pub fn encode(&self, text: &str) -> anyhow::Result<Vec<u32>> {
        text.chars()
            .map(|c| {
                self.id(c)
                    .ok_or_else(|| anyhow!("character {c:?} is not in the vocabulary"))
            })
            .collect()
    }

    /// Ids outside the vocabulary decode to U+FFFD.
    pub fn decode(&self, ids: &[u32]) -> String {
        ids.iter()
            .map(|&id| {
                self.chars
                    .get(id as usize)
                    .copied()
                    .unwrap_or(char::REPLACEMENT_CHARACTER)
            })
            .collect()
    }

    pub fn id(&self, c: char) -> Option<u32> {
        self.chars.binary_search(&c).ok().map(|i| i as u32)
    }
}

/// Synthetic addition: lines `a+b=s\n` where `a` and `b` are zero-padded to `digits` digits and
/// `s` is the sum zero-padded to `digits + 1` digits and written **least significant digit
/// first** (`47+85=231` since 47 + 85 = 132; `07+05=210`). Reversed answers let a small model
/// produce each digit from the operand digits and the carry it has just written, and fixed-width
/// operands keep every digit at a fixed distance from the `=`, which together a small model
/// learns far faster than the usual unpadded, most-significant-first form. Prompts with shorter
/// operands (`7+5=`) are still understood. Problems are distinct, so held-out lines are unseen
/// problems.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addition {
    pub digits: u32,
}

impl Addition {
    /// The answer as written in the data for `a + b`.
    pub fn answer(&self, a: u64, b: u64) -> String {
        let width = self.digits as usize + 1;
        format!("{:0width$}", a + b).chars().rev().collect()
    }

    /// The answer to a prompt `a+b=`; `None` when the prompt is not a problem of this kind.
    pub fn answer_to(&self, prompt: &str) -> Option<String> {
        let (a, b) = prompt.strip_suffix('=')?.split_once('+')?;
        let operand = |s: &str| {
            let plain = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
            (plain && s.len() <= self.digits as usize)
                .then(|| s.parse::<u64>().ok())
                .flatten()
        };
        Some(self.answer(operand(a)?, operand(b)?))
    }

    /// Exact match: the completion (up to an optional line end) is the true answer.
    pub fn is_correct(&self, prompt: &str, completion: &str) -> bool {
        let completion = completion.strip_suffix('\n').unwrap_or(completion);
        self.answer_to(prompt)
            .is_some_and(|answer| answer == completion)
    }

    /// Up to `count` distinct problems in a seeded random order, as text.
    pub fn generate(&self, seed: u64, count: u64) -> String {
        let range = 10u64.pow(self.digits);
        let count = count.min(range * range);
        let mut rng = SplitMix64::new(seed);
        let mut seen = HashSet::new();
        let mut text = String::new();
        while (seen.len() as u64) < count {
            let (a, b) = (rng.below(range), rng.below(range));
            if seen.insert((a, b)) {
                let width = self.digits as usize;
                let answer = self.answer(a, b);
                text.push_str(&format!("{a:0width$}+{b:0width$}={answer}\n"));
            }
        }
        text
    }
}

/// What kind of text a dataset holds, which decides how predictions are judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Addition(Addition),
    Text,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Train,
    Val,
}

impl Split {
    /// Its place in the per-split `[train, val]` arrays.
    fn index(self) -> usize {
        match self {
            Split::Train => 0,
            Split::Val => 1,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Split::Train => "training",
            Split::Val => "validation",
        }
    }
}

/// A prompt and the text that truly follows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvalPair {
    pub prompt: String,
    pub target: String,
}

/// The loaded text, encoded and split.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// As configured (`shakespeare`, `file:...`).
    pub name: String,
    pub kind: Kind,
    /// Hex SHA-256 of the text's UTF-8 bytes.
    pub sha256: String,
    pub tokenizer: CharTokenizer,
    pub train: Vec<u32>,
    pub val: Vec<u32>,
    /// Which tokens the loss counts, per split (`[train, val]`); `None`: every one. For addition,
    /// the answers (after each `=`, through the line's end): the operands are given, not
    /// predicted, and a loss on them, two thirds of every line, drowns the answer's signal.
    pub scored: Option<[Vec<bool>; 2]>,
    /// Where each line starts, per split, for addition (see [`Dataset::source`]).
    pub line_starts: Option<[Vec<usize>; 2]>,
}

impl Dataset {
    /// Encodes `text` and holds out its last `val_fraction` (for addition, from a line start,
    /// so validation holds whole problems).
    pub fn from_text(
        name: &str,
        kind: Kind,
        text: &str,
        val_fraction: f64,
    ) -> anyhow::Result<Self> {
        ensure!(!text.is_empty(), "dataset {name} is empty");
        ensure!(
            val_fraction > 0.0 && val_fraction < 1.0,
            "the validation fraction must be between 0 and 1, got {val_fraction}"
        );
        let tokenizer = CharTokenizer::from_text(text);
        let mut tokens = tokenizer.encode(text)?;
        let held_out = ((tokens.len() as f64) * val_fraction).ceil() as usize;
        let mut split = tokens.len().saturating_sub(held_out).max(1);
        if let (Kind::Addition(_), Some(newline)) = (kind, tokenizer.id('\n')) {
            split += tokens[split - 1..]
                .iter()
                .position(|&t| t == newline)
                .unwrap_or(tokens.len() - split);
        }
        let scored = match kind {
            Kind::Addition(_) => answers(&tokenizer, &tokens).map(|mut train| {
                let val = train.split_off(split);
                [train, val]
            }),
            Kind::Text => None,
        };
        let val = tokens.split_off(split);
        ensure!(
            !val.is_empty(),
            "dataset {name} is too small to hold out {val_fraction} of it for validation"
        );
        let line_starts = match (kind, tokenizer.id('\n')) {
            (Kind::Addition(_), Some(newline)) => {
                let starts = |tokens: &[u32]| -> Vec<usize> {
                    std::iter::once(0)
                        .chain((1..tokens.len()).filter(|&i| tokens[i - 1] == newline))
                        .collect()
                };
                Some([starts(&tokens), starts(&val)])
            }
            _ => None,
        };
        Ok(Self {
            name: name.to_owned(),
            kind,
            sha256: sha256_hex(text.as_bytes()),
            tokenizer,
            train: tokens,
            val,
            scored,
            line_starts,
        })
    }

    /// The tokens the loss counts in `split`; `None`: all.
    pub fn scored(&self, split: Split) -> Option<&[bool]> {
        self.scored.as_ref().map(|s| s[split.index()].as_slice())
    }

    /// What batches of `split` are cut from. Problems are cut at line starts, so each sits at
    /// the same positions of every window (as the prompts of the evaluation do): the model
    /// finds an operand's digits at fixed places instead of learning every shift of them.
    pub fn source(&self, split: Split) -> Source<'_> {
        Source {
            tokens: self.tokens(split),
            scored: self.scored(split),
            line_starts: self
                .line_starts
                .as_ref()
                .map(|s| s[split.index()].as_slice()),
        }
    }

    pub fn tokens(&self, split: Split) -> &[u32] {
        match split {
            Split::Train => &self.train,
            Split::Val => &self.val,
        }
    }

    /// Fails, saying what to change, when a split is too short for one `block_size` window.
    pub fn check_fits(&self, block_size: usize) -> anyhow::Result<()> {
        for split in [Split::Train, Split::Val] {
            let have = self.tokens(split).len();
            ensure!(
                have > block_size,
                "dataset {}: the {} split has {have} tokens, but a sequence needs \
                 model.block_size + 1 = {}; lower model.block_size or change data.val_fraction",
                self.name,
                split.name(),
                block_size + 1
            );
        }
        Ok(())
    }

    /// What runs record about the data (its `dataset.*` config keys).
    pub fn facts(&self) -> Row {
        let mut row = Row::new();
        row.insert(keys::config::DATASET_NAME.into(), json!(self.name));
        row.insert(keys::config::DATASET_SHA256.into(), json!(self.sha256));
        row.insert(
            keys::config::DATASET_VOCAB_SIZE.into(),
            json!(self.tokenizer.vocab_size()),
        );
        row.insert(
            keys::config::DATASET_TRAIN_TOKENS.into(),
            json!(self.train.len()),
        );
        row.insert(
            keys::config::DATASET_VAL_TOKENS.into(),
            json!(self.val.len()),
        );
        row
    }

    /// Up to `count` evaluation prompts from the validation split, the same ones every time:
    /// for addition the first held-out problems (`a+b=` → answer); for other text, windows
    /// spread evenly over the split, the first three quarters of a `block_size` window as
    /// prompt and the rest as target.
    pub fn eval_pairs(&self, count: usize, block_size: usize) -> Vec<EvalPair> {
        let text = self.tokenizer.decode(&self.val);
        match self.kind {
            Kind::Addition(_) => text
                .lines()
                .filter_map(|line| line.split_once('='))
                .map(|(problem, answer)| EvalPair {
                    prompt: format!("{problem}="),
                    target: answer.to_owned(),
                })
                .take(count)
                .collect(),
            Kind::Text => {
                let chars: Vec<char> = text.chars().collect();
                let target_len = (block_size / 4).max(1);
                let window = block_size.max(target_len + 1);
                let Some(room) = chars.len().checked_sub(window) else {
                    return Vec::new();
                };
                let count = count.min(room + 1);
                (0..count)
                    .map(|i| {
                        let start = room * i / count;
                        let middle = start + window - target_len;
                        EvalPair {
                            prompt: chars[start..middle].iter().collect(),
                            target: chars[middle..start + window].iter().collect(),
                        }
                    })
                    .collect()
            }
        }
    }

    /// Whether a generated completion of `pair.prompt` counts as correct: the exact answer
    /// for addition, the exact continuation for other text.
    pub fn is_correct(&self, pair: &EvalPair, completion: &str) -> bool {
        match self.kind {
            Kind::Addition(addition) => addition.is_correct(&pair.prompt, completion),
            Kind::Text => completion == pair.target,
        }
    }
}

/// For each token of addition text, whether it belongs to an answer: the characters after an
/// `=` through the end of its line. `None` when the text has no `=` or no line ends.
fn answers(tokenizer: &CharTokenizer, tokens: &[u32]) -> Option<Vec<bool>> {
    let (equals, newline) = (tokenizer.id('=')?, tokenizer.id('\n')?);
    let mut in_answer = false;
    Some(
        tokens
            .iter()
            .map(|&t| {
                let scored = in_answer;
                if t == equals {
                    in_answer = true;
                } else if t == newline {
                    in_answer = false;
                }
                scored
            })
            .collect(),
    )
}

/// What a [`BatchSampler`] cuts windows from.
#[derive(Debug, Clone)]
pub struct Source<'a> {
    pub tokens: &'a [u32],
    /// Which targets count (as long as `tokens`); the others are [`IGNORE_INDEX`]. `None`: all.
    pub scored: Option<&'a [bool]>,
    /// Where windows may start, ascending; `None`: anywhere.
    pub line_starts: Option<&'a [usize]>,
}

impl<'a> Source<'a> {
    /// Every token counts; windows start anywhere.
    pub fn plain(tokens: &'a [u32]) -> Source<'a> {
        Source {
            tokens,
            scored: None,
            line_starts: None,
        }
    }
}

/// One batch: `inputs` and `targets` are `batch × seq` token ids, row-major; each target is the
/// token after its input, or [`IGNORE_INDEX`] where the loss does not count it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub inputs: Vec<u32>,
    pub targets: Vec<u32>,
}

/// Seeded random windows. The position in the random stream is a draw count, so a checkpoint
/// resumes the exact batch sequence by storing [`BatchSampler::draws`].
#[derive(Debug, Clone)]
pub struct BatchSampler {
    seed: u64,
    draws: u64,
}

impl BatchSampler {
    pub fn new(seed: u64) -> Self {
        Self::resume(seed, 0)
    }

    pub fn resume(seed: u64, draws: u64) -> Self {
        Self { seed, draws }
    }

    pub fn draws(&self) -> u64 {
        self.draws
    }

    pub fn sample(
        &mut self,
        source: &Source<'_>,
        batch: usize,
        seq: usize,
    ) -> anyhow::Result<Batch> {
        let tokens = source.tokens;
        let Some(last) = tokens.len().checked_sub(seq).filter(|&n| n > 0) else {
            bail!(
                "{} tokens cannot fill a sequence of {seq} plus its next-token target",
                tokens.len()
            );
        };
        // Windows need `seq + 1` tokens: the starts before `last` have them.
        let fitting: Option<&[usize]> = source.line_starts.map(|starts| {
            let n = starts.partition_point(|&s| s < last);
            &starts[..n]
        });
        if fitting.is_some_and(<[usize]>::is_empty) {
            bail!("no line starts a window of {seq} tokens plus its next-token target");
        }
        let mut rng = SplitMix64::at(self.seed, self.draws);
        let mut inputs = Vec::with_capacity(batch * seq);
        let mut targets = Vec::with_capacity(batch * seq);
        for _ in 0..batch {
            let start = match fitting {
                Some(starts) => starts[rng.below(starts.len() as u64) as usize],
                None => rng.below(last as u64) as usize,
            };
            inputs.extend_from_slice(&tokens[start..start + seq]);
            let next = start + 1..start + seq + 1;
            match source.scored {
                Some(scored) => targets.extend(
                    tokens[next.clone()]
                        .iter()
                        .zip(&scored[next])
                        .map(|(&t, &counts)| if counts { t } else { IGNORE_INDEX }),
                ),
                None => targets.extend_from_slice(&tokens[next]),
            }
        }
        self.draws += batch as u64;
        Ok(Batch { inputs, targets })
    }
}

/// Loads the dataset `name` (parsed as `spec`). `cache` holds downloads; `client` is needed
/// only for artifact datasets.
pub async fn load(
    spec: &DatasetSpec,
    val_fraction: f64,
    cache: &Path,
    client: Option<&Client>,
) -> anyhow::Result<Dataset> {
    let name = &spec.to_string();
    let (kind, text) = match spec {
        DatasetSpec::Addition { digits } => {
            let addition = Addition { digits: *digits };
            let text = addition.generate(ADDITION_SEED, ADDITION_PROBLEMS);
            (Kind::Addition(addition), text)
        }
        DatasetSpec::Shakespeare => {
            let dest = cache.join(SHAKESPEARE_FILE);
            let bytes = cached_download(SHAKESPEARE_URL, SHAKESPEARE_SHA256, &dest)
                .await
                .context("getting Tiny Shakespeare")?;
            (Kind::Text, utf8(bytes, &dest)?)
        }
        DatasetSpec::File(path) => {
            let bytes = tokio::fs::read(path)
                .await
                .with_context(|| format!("reading the dataset file {}", path.display()))?;
            (Kind::Text, utf8(bytes, path)?)
        }
        DatasetSpec::Artifact(reference) => {
            let client = client.ok_or_else(|| {
                anyhow!("dataset {name} is a W&B artifact, which needs a W&B connection")
            })?;
            let (path, bytes) = artifact_text(client, reference, cache).await?;
            (Kind::Text, utf8(bytes, &path)?)
        }
    };
    Dataset::from_text(name, kind, &text, val_fraction)
}

fn utf8(bytes: Vec<u8>, path: &Path) -> anyhow::Result<String> {
    String::from_utf8(bytes).map_err(|err| anyhow!("{} is not UTF-8 text: {err}", path.display()))
}

/// The bytes of `dest` when its SHA-256 is `sha256`; when it is missing, downloads `url`,
/// checks the digest and only then stores it at `dest`. A cached copy with another digest is an
/// error, never silently replaced.
pub async fn cached_download(url: &str, sha256: &str, dest: &Path) -> anyhow::Result<Vec<u8>> {
    match tokio::fs::read(dest).await {
        Ok(bytes) => {
            let actual = sha256_hex(&bytes);
            ensure!(
                actual == sha256,
                "the cached copy {} has SHA-256 {actual}, not the expected {sha256}; \
                 delete it to download it again",
                dest.display()
            );
            return Ok(bytes);
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(err).with_context(|| format!("reading {}", dest.display())),
    }
    let offline_hint = || {
        format!(
            "downloading {url} (offline? put a copy with SHA-256 {sha256} at {})",
            dest.display()
        )
    };
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(20))
        .timeout(Duration::from_secs(300))
        .build()
        .context("configuring the HTTP client")?;
    let bytes = http
        .get(url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .with_context(offline_hint)?
        .bytes()
        .await
        .with_context(offline_hint)?;
    let actual = sha256_hex(&bytes);
    ensure!(
        actual == sha256,
        "{url} served data with SHA-256 {actual}, not the expected {sha256}; nothing was cached"
    );
    let dir = dest
        .parent()
        .ok_or_else(|| anyhow!("{} has no parent directory", dest.display()))?;
    tokio::fs::create_dir_all(dir)
        .await
        .with_context(|| format!("creating the data cache {}", dir.display()))?;
    // Write beside, then rename: an interrupted write never leaves a truncated cached copy.
    let partial = dest.with_extension("partial");
    tokio::fs::write(&partial, &bytes)
        .await
        .with_context(|| format!("writing {}", partial.display()))?;
    tokio::fs::rename(&partial, dest)
        .await
        .with_context(|| format!("storing {}", dest.display()))?;
    Ok(bytes.to_vec())
}

/// Downloads a dataset artifact (each file checked against its manifest MD5) and returns its
/// text file: the only file, or the only `.txt` file.
async fn artifact_text(
    client: &Client,
    reference: &ArtifactRef,
    cache: &Path,
) -> anyhow::Result<(PathBuf, Vec<u8>)> {
    let mut dir = cache.join("artifacts");
    for part in [&reference.entity, &reference.project]
        .into_iter()
        .flatten()
        .chain([&reference.name, &reference.alias])
    {
        dir.push(part);
    }
    let downloaded = client
        .download_artifact(reference, &dir)
        .await
        .with_context(|| format!("downloading the dataset artifact {reference}"))?;
    let texts: Vec<&PathBuf> = downloaded
        .files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    let path = match (downloaded.files.as_slice(), texts.as_slice()) {
        ([only], _) => only.clone(),
        (_, [only]) => (*only).clone(),
        (files, _) => bail!(
            "dataset artifact {reference} holds {} files ({}); it needs exactly one file, or \
             exactly one .txt file",
            files.len(),
            files
                .iter()
                .map(|p| p.strip_prefix(&dir).unwrap_or(p).display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let bytes = tokio::fs::read(&path)
        .await
        .with_context(|| format!("reading {}", path.display()))?;
    Ok((path, bytes))
}

#[cfg(test)]
mod tests {
    use axum::routing::get;

    use super::*;

    #[test]
    fn the_tokenizer_is_the_sorted_characters_and_round_trips() {
        let tok = CharTokenizer::from_text("hello, world\n");
        assert_eq!(
            tok.decode(&(0..tok.vocab_size() as u32).collect::<Vec<_>>()),
            "\n ,dehlorw"
        );
        let ids = tok.encode("low\n").unwrap();
        assert_eq!(ids, vec![6, 7, 9, 0]);
        assert_eq!(tok.decode(&ids), "low\n");
        assert_eq!(tok.decode(&[99]), "\u{fffd}");
        let err = tok.encode("hex").unwrap_err().to_string();
        assert!(err.contains("'x'"), "{err}");

        let stored = serde_json::to_value(&tok).unwrap();
        assert_eq!(stored, json!({"kind": "char", "vocab": "\n ,dehlorw"}));
        assert_eq!(
            serde_json::from_value::<CharTokenizer>(stored).unwrap(),
            tok
        );
        for bad in [
            json!({"kind": "char", "vocab": "ba"}),
            json!({"kind": "char", "vocab": "aa"}),
            json!({"kind": "char", "vocab": ""}),
            json!({"kind": "bpe", "vocab": "ab"}),
        ] {
            assert!(
                serde_json::from_value::<CharTokenizer>(bad.clone()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn addition_answers_are_reversed_padded_sums() {
        let add = Addition { digits: 2 };
        assert_eq!(add.answer(47, 85), "231");
        assert_eq!(add.answer(1, 2), "300");
        assert_eq!(add.answer_to("99+99=").as_deref(), Some("891"));
        assert!(add.is_correct("47+85=", "231"));
        assert!(add.is_correct("47+85=", "231\n"));
        for wrong in ["132", "23", "2310", "231\n\n", ""] {
            assert!(!add.is_correct("47+85=", wrong), "{wrong:?}");
        }
        for bad in [
            "47+85", "+85=", "123+4=", "4 7+8=", "a+b=", "-1+2=", "47-85=",
        ] {
            assert_eq!(add.answer_to(bad), None, "{bad:?}");
            assert!(!add.is_correct(bad, "231"));
        }
        assert_eq!(Addition { digits: 3 }.answer(999, 999), "8991");
    }

    #[test]
    fn addition_text_is_seeded_distinct_and_well_formed() {
        let add = Addition { digits: 2 };
        let text = add.generate(1, 500);
        assert_eq!(text, add.generate(1, 500));
        assert_ne!(text, add.generate(2, 500));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 500);
        assert_eq!(lines.iter().collect::<HashSet<_>>().len(), 500);
        for line in &lines {
            let (prompt, answer) = line.split_once('=').unwrap();
            assert!(add.is_correct(&format!("{prompt}="), answer), "{line}");
        }
        // One-digit operands allow only 100 distinct problems.
        assert_eq!(
            Addition { digits: 1 }.generate(3, 1000).lines().count(),
            100
        );
    }

    fn addition_dataset() -> Dataset {
        let add = Addition { digits: 2 };
        let text = add.generate(ADDITION_SEED, 2000);
        Dataset::from_text("synthetic-addition", Kind::Addition(add), &text, 0.1).unwrap()
    }

    #[test]
    fn splits_cover_the_text_and_addition_holds_out_whole_problems() {
        let text = Addition { digits: 2 }.generate(ADDITION_SEED, 2000);
        let data = addition_dataset();
        assert_eq!(data.train.len() + data.val.len(), text.chars().count());
        assert_eq!(data.sha256, sha256_hex(text.as_bytes()));
        let newline = data.tokenizer.id('\n').unwrap();
        assert_eq!(*data.train.last().unwrap(), newline);
        let held = data.val.len() as f64 / text.len() as f64;
        assert!((0.099..=0.1).contains(&held), "{held}");

        let plain = Dataset::from_text("t", Kind::Text, "abcdefghij", 0.25).unwrap();
        assert_eq!((plain.train.len(), plain.val.len()), (7, 3));
        assert!(Dataset::from_text("t", Kind::Text, "", 0.1).is_err());

        let err = plain.check_fits(3).unwrap_err().to_string();
        assert!(
            err.contains("validation split has 3 tokens") && err.contains("block_size + 1 = 4"),
            "{err}"
        );
        plain.check_fits(2).unwrap();
        let facts = data.facts();
        assert_eq!(facts["dataset.sha256"], json!(data.sha256));
        assert_eq!(facts["dataset.val_tokens"], json!(data.val.len()));
    }

    #[test]
    fn only_the_answers_of_problems_are_scored() {
        let text = "12+34=640\n05+05=010\n";
        let kind = Kind::Addition(Addition { digits: 2 });
        let data = Dataset::from_text("a", kind, text, 0.5).unwrap();
        let scored: Vec<bool> = [Split::Train, Split::Val]
            .iter()
            .flat_map(|&s| data.scored(s).unwrap().to_vec())
            .collect();
        let marks: String = scored.iter().map(|&s| if s { 'x' } else { '.' }).collect();
        assert_eq!(marks, "......xxxx......xxxx");
        assert_eq!(data.scored(Split::Train).unwrap().len(), data.train.len());
        assert!(Dataset::from_text("t", Kind::Text, text, 0.5)
            .unwrap()
            .scored
            .is_none());

        // Windows start at problems and keep their inputs whole; targets outside the answers
        // are ignored.
        let tokens: Vec<u32> = data.train.clone();
        let mask = data.scored(Split::Train).unwrap();
        let source = data.source(Split::Train);
        assert_eq!(
            source.line_starts,
            Some(&[0][..]),
            "the second line starts the validation split"
        );
        let batch = BatchSampler::new(3).sample(&source, 2, 6).unwrap();
        for row in 0..2 {
            let inputs = &batch.inputs[row * 6..(row + 1) * 6];
            assert_eq!(
                data.tokenizer.decode(&inputs[..3]).chars().nth(2),
                Some('+')
            );
            let start = (0..tokens.len())
                .find(|&s| tokens[s..].starts_with(inputs))
                .unwrap();
            for (j, &t) in batch.targets[row * 6..(row + 1) * 6].iter().enumerate() {
                let want = if mask[start + 1 + j] {
                    tokens[start + 1 + j]
                } else {
                    IGNORE_INDEX
                };
                assert_eq!(t, want);
            }
        }
    }

    #[test]
    fn eval_pairs_are_held_out_problems_or_text_windows() {
        let data = addition_dataset();
        let pairs = data.eval_pairs(16, 32);
        assert_eq!(pairs.len(), 16);
        let val_text = data.tokenizer.decode(&data.val);
        for pair in &pairs {
            assert!(val_text.contains(&format!("{}{}\n", pair.prompt, pair.target)));
            assert!(data.is_correct(pair, &pair.target));
            assert!(!data.is_correct(pair, "0"));
        }

        let text: String = (0..200)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        let data = Dataset::from_text("t", Kind::Text, &text, 0.5).unwrap();
        let pairs = data.eval_pairs(4, 16);
        assert_eq!(pairs.len(), 4);
        for pair in &pairs {
            assert_eq!((pair.prompt.len(), pair.target.len()), (12, 4));
            let whole = format!("{}{}", pair.prompt, pair.target);
            assert!(text[100..].contains(&whole), "{whole}");
            assert!(data.is_correct(pair, &pair.target));
        }
        assert_ne!(pairs[0], pairs[3]);
        assert!(data.eval_pairs(4, 500).is_empty());
    }

    #[test]
    fn batches_are_seeded_shifted_windows_that_resume_exactly() {
        let tokens: Vec<u32> = (0..1000).collect();
        let mut sampler = BatchSampler::new(5);
        let first = sampler.sample(&Source::plain(&tokens), 4, 8).unwrap();
        assert_eq!((first.inputs.len(), first.targets.len()), (32, 32));
        for row in 0..4 {
            let inputs = &first.inputs[row * 8..row * 8 + 8];
            let targets = &first.targets[row * 8..row * 8 + 8];
            assert!(inputs.windows(2).all(|w| w[1] == w[0] + 1));
            assert!(inputs.iter().zip(targets).all(|(i, t)| *t == i + 1));
        }
        let second = sampler.sample(&Source::plain(&tokens), 4, 8).unwrap();
        assert_ne!(first, second);
        assert_eq!(sampler.draws(), 8);
        assert_eq!(
            BatchSampler::new(5)
                .sample(&Source::plain(&tokens), 4, 8)
                .unwrap(),
            first
        );
        assert_eq!(
            BatchSampler::resume(5, 4)
                .sample(&Source::plain(&tokens), 4, 8)
                .unwrap(),
            second
        );
        assert_ne!(
            BatchSampler::new(6)
                .sample(&Source::plain(&tokens), 4, 8)
                .unwrap(),
            first
        );
        // The last window still has a target after it.
        let exact = BatchSampler::new(1)
            .sample(&Source::plain(&tokens[..9]), 3, 8)
            .unwrap();
        assert_eq!(exact.targets[..8], tokens[1..9]);
        assert!(BatchSampler::new(1)
            .sample(&Source::plain(&tokens[..8]), 1, 8)
            .is_err());
    }

    #[test]
    fn the_cache_dir_follows_the_environment() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                vars.iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let dir = |vars| default_cache_dir(env(vars));
        assert_eq!(
            dir(&[("MLWF_DATA_CACHE", "/d"), ("HOME", "/h")]),
            Path::new("/d")
        );
        assert_eq!(
            dir(&[("XDG_CACHE_HOME", "/x"), ("HOME", "/h")]),
            Path::new("/x/mlwf/data")
        );
        assert_eq!(dir(&[("HOME", "/h")]), Path::new("/h/.cache/mlwf/data"));
        assert_eq!(dir(&[("MLWF_DATA_CACHE", "")]), Path::new(".mlwf/data"));
    }

    /// A loopback server answering `GET /data` with `body`.
    async fn serve(body: &'static [u8]) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = axum::Router::new().route("/data", get(move || async move { body }));
        tokio::spawn(async move { axum::serve(listener, router).await });
        format!("http://{addr}/data")
    }

    #[tokio::test]
    async fn downloads_are_verified_before_caching_and_cached_copies_are_checked() {
        let cache = tempfile::tempdir().unwrap();
        let dest = cache.path().join("sub/text.txt");
        let good = sha256_hex(b"good data");

        let url = serve(b"tampered").await;
        let err = cached_download(&url, &good, &dest)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("nothing was cached"), "{err}");
        assert!(!dest.exists());

        let url = serve(b"good data").await;
        assert_eq!(
            cached_download(&url, &good, &dest).await.unwrap(),
            b"good data"
        );
        assert_eq!(std::fs::read(&dest).unwrap(), b"good data");

        // From now on the cache answers; nothing listens at this URL.
        let unreachable = "http://127.0.0.1:9/data";
        assert_eq!(
            cached_download(unreachable, &good, &dest).await.unwrap(),
            b"good data"
        );
        std::fs::write(&dest, b"good dat").unwrap();
        let err = cached_download(unreachable, &good, &dest)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("delete it to download it again"), "{err}");

        let elsewhere = cache.path().join("missing.txt");
        let err = format!(
            "{:#}",
            cached_download(unreachable, &good, &elsewhere)
                .await
                .unwrap_err()
        );
        assert!(err.contains("offline? put a copy with SHA-256"), "{err}");
    }

    #[tokio::test]
    async fn local_files_and_generated_addition_load_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("in.txt");
        std::fs::write(&file, "to be or not to be\n".repeat(20)).unwrap();
        let text_spec = DatasetSpec::File(file.clone());
        let data = load(&text_spec, 0.1, dir.path(), None).await.unwrap();
        assert_eq!(data.kind, Kind::Text);
        assert_eq!(data.tokenizer.vocab_size(), 8);

        let spec = DatasetSpec::Addition { digits: 2 };
        let a = load(&spec, 0.1, dir.path(), None).await.unwrap();
        assert_eq!(a.kind, Kind::Addition(Addition { digits: 2 }));
        assert_eq!(
            a.train.len() + a.val.len(),
            a.tokenizer
                .encode(&Addition { digits: 2 }.generate(ADDITION_SEED, ADDITION_PROBLEMS))
                .unwrap()
                .len()
        );

        let missing = DatasetSpec::File(dir.path().join("nope.txt"));
        let err = format!(
            "{:#}",
            load(&missing, 0.1, dir.path(), None).await.unwrap_err()
        );
        assert!(
            err.contains("reading the dataset file") && err.contains("nope.txt"),
            "{err}"
        );
        std::fs::write(&file, [0xff, 0xfe]).unwrap();
        let err = load(&text_spec, 0.1, dir.path(), None).await.unwrap_err();
        assert!(err.to_string().contains("not UTF-8"), "{err}");
        let artifact = DatasetSpec::Artifact("p/text:v0".parse().unwrap());
        let err = load(&artifact, 0.1, dir.path(), None).await.unwrap_err();
        assert!(err.to_string().contains("needs a W&B connection"), "{err}");
    }
}
