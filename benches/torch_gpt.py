"""PyTorch reference for the CUDA backend's benchmark: the same GPT as src/train/model.rs
(pre-LayerNorm blocks, GELU with the tanh approximation, biases in every linear layer but the
tied LM head, fused AdamW with nanoGPT's settings) at the shapes of an mlwf preset, timed in eager
mode and under torch.compile. Also times cuBLAS (torch.matmul) on the linear layers' shapes, the
yardstick for mlwf's hand-written matmul. Prints one line per figure, like examples/cuda_bench.rs.

    python benches/torch_gpt.py [shakespeare-char|gpt2-124m] [fp32|tf32|bf16]

Run on the device machine by scripts/gpu-check.sh.
"""

import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

# Batch, sequence, layers, heads, channels, vocabulary: the presets of src/train/config.rs.
PRESETS = {
    "shakespeare-char": dict(b=64, t=256, n_layer=6, n_head=6, c=384, vocab=65),
    "gpt2-124m": dict(b=8, t=1024, n_layer=12, n_head=12, c=768, vocab=50257),
}
WARMUP, ITERS = 5, 20


class Block(nn.Module):
    def __init__(self, c, n_head):
        super().__init__()
        self.n_head = n_head
        self.ln_1 = nn.LayerNorm(c)
        self.c_attn = nn.Linear(c, 3 * c)
        self.c_proj = nn.Linear(c, c)
        self.ln_2 = nn.LayerNorm(c)
        self.c_fc = nn.Linear(c, 4 * c)
        self.mlp_proj = nn.Linear(4 * c, c)

    def forward(self, x):
        b, t, c = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(c, dim=2)
        q, k, v = (z.view(b, t, self.n_head, c // self.n_head).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.c_proj(y.transpose(1, 2).contiguous().view(b, t, c))
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class Gpt(nn.Module):
    def __init__(self, vocab, t, n_layer, n_head, c):
        super().__init__()
        self.wte = nn.Embedding(vocab, c)
        self.wpe = nn.Embedding(t, c)
        self.h = nn.ModuleList(Block(c, n_head) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(c)

    def forward(self, idx, targets):
        pos = torch.arange(idx.shape[1], device=idx.device)
        x = self.wte(idx) + self.wpe(pos)
        for block in self.h:
            x = block(x)
        logits = self.ln_f(x) @ self.wte.weight.t()  # the tied head
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1))


def sync_time(fn, iters):
    for _ in range(WARMUP):
        fn()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) * 1e3 / iters


def train_speed(p, precision, compiled):
    model = Gpt(p["vocab"], p["t"], p["n_layer"], p["n_head"], p["c"]).cuda()
    decay = [w for w in model.parameters() if w.dim() >= 2]
    rest = [w for w in model.parameters() if w.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}],
        lr=1e-4, betas=(0.9, 0.95), eps=1e-8, fused=True,
    )
    step_model = torch.compile(model) if compiled else model
    idx = torch.randint(p["vocab"], (p["b"], p["t"]), device="cuda")
    targets = torch.randint(p["vocab"], (p["b"], p["t"]), device="cuda")

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = step_model(idx, targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    ms = sync_time(step, ITERS)
    tokens = p["b"] * p["t"]
    mode = "torch.compile" if compiled else "eager"
    print(f"torch {mode:<13} {precision}: {ms:9.2f} ms/step, {tokens / ms * 1e3:10.0f} tokens/s")


def matmul_speed(p, precision):
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    rows, c = p["b"] * p["t"], p["c"]
    for name, inf, outf in [("qkv", c, 3 * c), ("attn proj", c, c), ("fc", c, 4 * c),
                            ("fc proj", 4 * c, c), ("lm head", c, p["vocab"])]:
        x = torch.randn(rows, inf, device="cuda", dtype=dtype)
        w = torch.randn(outf, inf, device="cuda", dtype=dtype)
        bias = torch.randn(outf, device="cuda", dtype=dtype)
        ms = sync_time(lambda: torch.addmm(bias, x, w.t()), ITERS)
        tflops = 2 * rows * inf * outf / ms / 1e9
        print(f"cuBLAS fwd {name} {rows}x{inf}x{outf}: {ms:9.3f} ms  {tflops:7.1f} TFLOP/s")


def main():
    preset = sys.argv[1] if len(sys.argv) > 1 else "shakespeare-char"
    precision = sys.argv[2] if len(sys.argv) > 2 else "bf16"
    p = PRESETS[preset]
    torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
    torch.backends.cudnn.allow_tf32 = precision == "tf32"
    print(f"# {preset}, {precision}, torch {torch.__version__} on {torch.cuda.get_device_name()}")
    matmul_speed(p, precision)
    for compiled in (False, True):
        train_speed(p, precision, compiled)


if __name__ == "__main__":
    main()
