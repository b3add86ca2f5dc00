//! `mlwf server`: serves until Ctrl-C or SIGTERM. Without `--api-key`, uses the key stored in
//! the data directory, making one on first start.

use std::process::ExitCode;

use super::print;
use crate::cli::ServerArgs;
use crate::server::{self, ServerOptions};

pub async fn run(args: ServerArgs) -> anyhow::Result<ExitCode> {
    let (api_keys, generated) = if args.api_keys.is_empty() {
        let data = args.data.clone();
        let key = tokio::task::spawn_blocking(move || server::stored_api_key(&data)).await??;
        (vec![key], true)
    } else {
        (args.api_keys, false)
    };
    let tuning = server::Tuning {
        run_timeout: args.run_timeout,
        ..server::Tuning::default()
    };
    let running = server::start_with(
        ServerOptions {
            data_dir: args.data.clone(),
            api_keys,
        },
        args.listen,
        tuning,
    )
    .await?;
    let mut banner = format!(
        "mlwf server: {}\ndata: {}\n",
        running.base_url(),
        args.data.display()
    );
    if generated {
        // Printing the key is the point of generating it: the user needs it for WANDB_API_KEY.
        banner += &format!(
            "API key: {}\nuse it with: WANDB_BASE_URL={} WANDB_API_KEY=<the key above>\n",
            running.api_key(),
            running.base_url()
        );
    }
    // A closed stdout must not stop a server that others are using.
    let _ = print(&banner);
    server::shutdown_signal().await?;
    let _ = print("stopping\n");
    running.shutdown().await;
    Ok(ExitCode::SUCCESS)
}
