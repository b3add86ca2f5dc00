"""Cost of one `wandb.log` call in the official SDK, for `mlwf bench log`.

Prints one JSON object: {"steps", "metrics", "log_us_per_call", "finish_s"}. The W&B server,
key and directories come from the environment (WANDB_BASE_URL, WANDB_API_KEY, WANDB_DIR...), so
the SDK and mlwf's client are timed against the same server.
"""

import json
import sys
import time

import wandb


def main() -> None:
    steps, metrics = int(sys.argv[1]), int(sys.argv[2])
    names = [f"m{i}" for i in range(metrics)]
    run = wandb.init(project="bench", config={"steps": steps}, settings=wandb.Settings(console="off"))
    start = time.perf_counter()
    for step in range(steps):
        run.log({name: step * 0.001 + i for i, name in enumerate(names)})
    logged = time.perf_counter() - start
    start = time.perf_counter()
    run.finish()
    finish = time.perf_counter() - start
    print(json.dumps({"steps": steps, "metrics": metrics,
                      "log_us_per_call": logged / steps * 1e6, "finish_s": finish}))


if __name__ == "__main__":
    main()
