"""The official SDK's view of a W&B Table that mlwf logged, and its own encoding of the same rows.

Usage: train_table.py ENTITY/PROJECT/RUN_ID KEY STEP COLUMNS_JSON ROWS_JSON SCRATCH_DIR

Prints one JSON object:
- "read": the history value at KEY as `wandb.Api()` reads it back from the server, the run
  file it points to, and the shape of the `wandb.Table` built from that file;
- "sdk": the value `Table.to_json` gives for the same rows bound to an offline run at KEY and
  STEP, and the file the SDK writes for them.
"""

import json
import os
import sys

import wandb


def read_back(path: str, key: str, scratch: str) -> dict:
    run = wandb.Api().run(path)
    values = [row[key] for row in run.scan_history() if key in row]
    value = values[-1]
    handle = run.file(value["path"]).download(root=os.path.join(scratch, "read"), replace=True)
    content = handle.read()
    stored = json.loads(content)
    table = wandb.Table(columns=stored["columns"], data=stored["data"])
    return {
        "value": value,
        "file": content,
        "summary": dict(run.summary[key]),
        "table": {"columns": table.columns, "nrows": len(table.data)},
    }


def sdk_encoding(key: str, step: int, columns: list, rows: list, scratch: str) -> dict:
    run = wandb.init(
        mode="offline",
        dir=os.path.join(scratch, "offline"),
        settings=wandb.Settings(x_disable_stats=True, console="off"),
    )
    table = wandb.Table(columns=columns, data=rows)
    table.bind_to_run(run, key, step)
    value = table.to_json(run)
    with open(os.path.join(run.dir, value["path"]), encoding="utf-8") as fp:
        content = fp.read()
    run.finish()
    return {"value": value, "file": content}


def main() -> None:
    path, key, step, columns, rows, scratch = sys.argv[1:7]
    read = read_back(path, key, scratch)
    sdk = sdk_encoding(key, int(step), json.loads(columns), json.loads(rows), scratch)
    print(json.dumps({"read": read, "sdk": sdk}))


if __name__ == "__main__":
    main()
