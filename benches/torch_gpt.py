"""The reference for `mlwf bench train`: the same GPT and training step in PyTorch.

Same architecture as src/train/model.rs (token + position embedding, pre-LayerNorm blocks with
causal multi-head attention and a tanh-GELU MLP, final LayerNorm, tied LM head, biases on every
linear layer), GPT-2 initialisation, AdamW with weight decay on matrices only, global-norm
clipping at 1.0, on random tokens of the preset's shapes. Prints one JSON line per figure: the
training step in eager mode (and under torch.compile with --compile), and with --matmul cuBLAS
(`addmm`) on the linear layers' shapes, the yardstick for mlwf's hand-written matmul.

    python benches/torch_gpt.py --preset tiny --device cpu --steps 20
    python benches/torch_gpt.py --preset shakespeare-char --device cuda --precision bf16 --compile --matmul

scripts/gpu-check.sh runs it on the GPU machine.
"""

import argparse
import json
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

# (n_layer, n_head, n_embd, block_size, batch_size, dropout, lr, beta2, vocab): the presets of
# src/train/config.rs, with the vocabulary `mlwf bench train` uses for them.
PRESETS = {
    "tiny": (2, 2, 64, 32, 32, 0.0, 3e-3, 0.99, 65),
    "shakespeare-char": (6, 6, 384, 256, 64, 0.2, 1e-3, 0.99, 65),
    "gpt2-124m": (12, 12, 768, 1024, 8, 0.0, 6e-4, 0.95, 50257),
}


class Block(nn.Module):
    def __init__(self, n_head, n_embd, dropout):
        super().__init__()
        self.n_head, self.dropout = n_head, dropout
        self.ln_1 = nn.LayerNorm(n_embd)
        self.c_attn = nn.Linear(n_embd, 3 * n_embd)
        self.c_proj = nn.Linear(n_embd, n_embd)
        self.ln_2 = nn.LayerNorm(n_embd)
        self.c_fc = nn.Linear(n_embd, 4 * n_embd)
        self.mlp_proj = nn.Linear(4 * n_embd, n_embd)
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        b, t, c = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(c, dim=2)
        heads = lambda y: y.view(b, t, self.n_head, c // self.n_head).transpose(1, 2)
        y = F.scaled_dot_product_attention(
            heads(q), heads(k), heads(v), is_causal=True,
            dropout_p=self.dropout if self.training else 0.0)
        y = y.transpose(1, 2).contiguous().view(b, t, c)
        x = x + self.drop(self.c_proj(y))
        h = F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh")
        return x + self.drop(self.mlp_proj(h))


class Gpt(nn.Module):
    def __init__(self, vocab, n_layer, n_head, n_embd, block_size, dropout):
        super().__init__()
        self.wte = nn.Embedding(vocab, n_embd)
        self.wpe = nn.Embedding(block_size, n_embd)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(n_head, n_embd, dropout) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(n_embd)
        for name, p in self.named_parameters():
            if p.dim() == 2:
                std = 0.02 / math.sqrt(2 * n_layer) if name.endswith("proj.weight") else 0.02
                nn.init.normal_(p, std=std)
            elif name.endswith("bias"):
                nn.init.zeros_(p)

    def forward(self, idx, targets):
        t = idx.shape[1]
        pos = torch.arange(t, device=idx.device)
        x = self.drop(self.wte(idx) + self.wpe(pos))
        for block in self.blocks:
            x = block(x)
        logits = self.ln_f(x) @ self.wte.weight.T  # tied head
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))


def timed(args, fn):
    """Median and minimum seconds of `fn` over `args.steps` calls, after `args.warmup`."""
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    for _ in range(args.warmup):
        fn()
    times = []
    for _ in range(args.steps):
        sync()
        begun = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - begun)
    times.sort()
    return times[len(times) // 2], times[0]


def bench(args, compiled):
    n_layer, n_head, n_embd, block, batch, dropout, lr, beta2, vocab = PRESETS[args.preset]
    vocab = args.vocab or vocab
    batch = args.batch_size or batch
    device = torch.device(args.device)
    torch.manual_seed(1337)
    model = Gpt(vocab, n_layer, n_head, n_embd, block, dropout).to(device)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
        lr=lr, betas=(0.9, beta2), eps=1e-8, fused=device.type == "cuda")
    step_fn = torch.compile(model) if compiled else model

    def step():
        idx = torch.randint(vocab, (batch, block), device=device)
        targets = torch.randint(vocab, (batch, block), device=device)
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16"):
            loss = step_fn(idx, targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    median, fastest = timed(args, step)
    return {
        "impl": "pytorch-compile" if compiled else "pytorch-eager",
        "torch": torch.__version__,
        "preset": args.preset,
        "device": args.device,
        "precision": args.precision,
        "threads": torch.get_num_threads(),
        "parameters": sum(p.numel() for p in model.parameters()),
        "batch_size": batch,
        "seq_len": block,
        "steps": args.steps,
        "ms_per_step_median": 1e3 * median,
        "ms_per_step_min": 1e3 * fastest,
        "tokens_per_sec": batch * block / median,
    }


def matmul_speeds(args):
    """cuBLAS (or the CPU's BLAS) `addmm` on each linear layer's forward shape."""
    _, _, c, block, batch, _, _, _, vocab = PRESETS[args.preset]
    rows = (args.batch_size or batch) * block
    vocab = args.vocab or vocab
    dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
    for name, inf, outf in [("qkv", c, 3 * c), ("attn proj", c, c), ("fc", c, 4 * c),
                            ("fc proj", 4 * c, c), ("lm head", c, vocab)]:
        x = torch.randn(rows, inf, device=args.device, dtype=dtype)
        w = torch.randn(outf, inf, device=args.device, dtype=dtype)
        bias = torch.randn(outf, device=args.device, dtype=dtype)
        median, _ = timed(args, lambda: torch.addmm(bias, x, w.t()))
        yield {"impl": "addmm", "layer": name, "shape": [rows, inf, outf],
               "precision": args.precision, "ms": 1e3 * median,
               "tflops": 2 * rows * inf * outf / median / 1e12}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--vocab", type=int, help="default: 65, or 50257 for gpt2-124m")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "tf32", "bf16"])
    parser.add_argument("--compile", action="store_true", help="also time torch.compile")
    parser.add_argument("--matmul", action="store_true", help="also time addmm per layer")
    args = parser.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = args.precision == "tf32"
    torch.backends.cudnn.allow_tf32 = args.precision == "tf32"
    if args.matmul:
        for figure in matmul_speeds(args):
            print(json.dumps(figure))
    print(json.dumps(bench(args, compiled=False)))
    if args.compile:
        print(json.dumps(bench(args, compiled=True)))


if __name__ == "__main__":
    main()
