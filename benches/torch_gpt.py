"""The reference for `mlwf bench train`: the same GPT and training step in PyTorch.

Same architecture as src/train/model.rs (token + position embedding, pre-LayerNorm blocks with
causal multi-head attention and a tanh-GELU MLP, final LayerNorm, tied LM head, biases on every
linear layer), GPT-2 initialisation, AdamW with weight decay on matrices only, global-norm
clipping at 1.0, on random tokens of the preset's shapes. Prints one JSON line per mode.

    python benches/torch_gpt.py --preset tiny --device cpu --steps 20
    python benches/torch_gpt.py --preset shakespeare-char --device cuda --compile
"""

import argparse
import json
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

# (n_layer, n_head, n_embd, block_size, batch_size, dropout, lr, beta2): the presets of
# src/train/config.rs.
PRESETS = {
    "tiny": (2, 2, 64, 32, 32, 0.0, 3e-3, 0.99),
    "shakespeare-char": (6, 6, 384, 256, 64, 0.2, 1e-3, 0.99),
    "gpt2-124m": (12, 12, 768, 1024, 8, 0.0, 6e-4, 0.95),
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


def bench(args, compiled):
    n_layer, n_head, n_embd, block, batch, dropout, lr, beta2 = PRESETS[args.preset]
    batch = args.batch_size or batch
    device = torch.device(args.device)
    torch.manual_seed(1337)
    model = Gpt(args.vocab, n_layer, n_head, n_embd, block, dropout).to(device)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
        lr=lr, betas=(0.9, beta2), eps=1e-8, fused=device.type == "cuda")
    step_fn = torch.compile(model) if compiled else model

    def step():
        idx = torch.randint(args.vocab, (batch, block), device=device)
        targets = torch.randint(args.vocab, (batch, block), device=device)
        opt.zero_grad(set_to_none=True)
        loss = step_fn(idx, targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(args.warmup):
        step()
    times = []
    for _ in range(args.steps):
        sync()
        begun = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - begun)
    times.sort()
    median = times[len(times) // 2]
    return {
        "impl": "pytorch-compile" if compiled else "pytorch-eager",
        "torch": torch.__version__,
        "preset": args.preset,
        "device": args.device,
        "threads": torch.get_num_threads(),
        "parameters": sum(p.numel() for p in model.parameters()),
        "batch_size": batch,
        "seq_len": block,
        "steps": args.steps,
        "ms_per_step_median": 1e3 * median,
        "ms_per_step_min": 1e3 * times[0],
        "tokens_per_sec": batch * block / median,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--vocab", type=int, default=65)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile")
    args = parser.parse_args()
    print(json.dumps(bench(args, compiled=False)))
    if args.compile:
        print(json.dumps(bench(args, compiled=True)))


if __name__ == "__main__":
    main()
