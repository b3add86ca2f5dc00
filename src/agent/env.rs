//! The environment a job runs with: the one the official agent gives (`WANDB_RUN_ID`,
//! `WANDB_LAUNCH=True`, `WANDB_CONFIG`, ...; `shared/reference/wandb-launch-observed.md` §5),
//! over the agent's own minus what a job must not inherit: the agent's secrets, its wandb-core
//! service, and run settings meant for the agent.

use std::ffi::OsString;

use serde_json::{json, Value};

use crate::wandb::launch::LaunchSpec;

/// The official agent splits `WANDB_CONFIG` into `WANDB_CONFIG_n` past this many characters.
const CONFIG_CHUNK: usize = 32670;

/// Variables of the agent's that jobs never see unless `--pass-env` names them: credentials
/// the agent holds for itself.
const WITHHELD: [&str; 5] = [
    "MLWF_GIT_TOKEN",
    "GITHUB_TOKEN",
    "GH_TOKEN",
    "ANTHROPIC_API_KEY",
    "SSH_AUTH_SOCK",
];

/// Variables that describe the agent's own run, service or store, not the job's.
const AGENT_RUN_VARS: [&str; 16] = [
    "MLWF_STORE",
    "MLWF_AGENT_DIR",
    "WANDB_SERVICE",
    "WANDB_RUN_ID",
    "WANDB_NAME",
    "WANDB_NOTES",
    "WANDB_TAGS",
    "WANDB_RUN_GROUP",
    "WANDB_JOB_TYPE",
    "WANDB_RESUME",
    "WANDB_USERNAME",
    "WANDB_SWEEP_ID",
    "WANDB_ARTIFACTS",
    "WANDB_PROJECT",
    "WANDB_ENTITY",
    "WANDB_DOCKER",
];

/// Whether a job may see the agent's variable `name`: not a credential of the agent's nor a
/// setting of its own run, unless `--pass-env` names it.
pub fn inheritable(name: &str, pass_env: &[String]) -> bool {
    let withheld = WITHHELD.contains(&name)
        || AGENT_RUN_VARS.contains(&name)
        || name == "WANDB_API_KEY"
        || name.starts_with("WANDB_CONFIG")
        || name.starts_with("WANDB_LAUNCH");
    !withheld || pass_env.iter().any(|p| p == name)
}

/// What the job's environment is made of.
pub struct JobEnv<'a> {
    pub spec: &'a LaunchSpec,
    /// The project the run goes to (the spec's, else the agent's).
    pub entity: &'a str,
    pub project: &'a str,
    pub base_url: &'a str,
    pub api_key: Option<&'a str>,
    pub run_id: &'a str,
    pub queue: &'a str,
    pub queue_entity: &'a str,
    pub item: &'a str,
    /// The job artifact; `None` for an image-only item.
    pub job: Option<&'a str>,
    /// `CUDA_VISIBLE_DEVICES`, when the agent hands out GPUs.
    pub gpus: Option<String>,
    /// Prepended to `PATH` (a virtual environment's `bin`).
    pub path_prefix: Option<OsString>,
    pub pass_env: &'a [String],
}

impl JobEnv<'_> {
    /// The whole environment, built from `inherited` (the agent's).
    pub fn build(
        &self,
        inherited: impl IntoIterator<Item = (OsString, OsString)>,
    ) -> Vec<(OsString, OsString)> {
        let mut env: Vec<(OsString, OsString)> = inherited
            .into_iter()
            .filter(|(name, _)| inheritable(&name.to_string_lossy(), self.pass_env))
            .collect();
        let mut set = |name: &str, value: String| {
            env.retain(|(n, _)| n != name);
            env.push((name.into(), value.into()));
        };
        set("WANDB_BASE_URL", self.base_url.to_owned());
        if let Some(key) = self.api_key {
            set("WANDB_API_KEY", key.to_owned());
        }
        set("WANDB_PROJECT", self.project.to_owned());
        set("WANDB_ENTITY", self.entity.to_owned());
        set("WANDB_LAUNCH", "True".to_owned());
        set("WANDB_RUN_ID", self.run_id.to_owned());
        if let Some(name) = &self.spec.name {
            set("WANDB_NAME", name.clone());
        }
        if let Some(author) = &self.spec.author {
            set("WANDB_USERNAME", author.clone());
        }
        if self.spec.resume_count > 0 {
            set("WANDB_RESUME", "allow".to_owned());
        }
        set("WANDB_LAUNCH_QUEUE_NAME", self.queue.to_owned());
        set("WANDB_LAUNCH_QUEUE_ENTITY", self.queue_entity.to_owned());
        set("WANDB_LAUNCH_TRACE_ID", self.item.to_owned());
        let config = Value::Object(self.spec.overrides.run_config.clone()).to_string();
        if config.len() <= CONFIG_CHUNK {
            set("WANDB_CONFIG", config);
        } else {
            let chars: Vec<char> = config.chars().collect();
            for (i, chunk) in chars.chunks(CONFIG_CHUNK).enumerate() {
                set(&format!("WANDB_CONFIG_{i}"), chunk.iter().collect());
            }
        }
        set(
            "WANDB_LAUNCH_FILE_OVERRIDES",
            Value::Object(self.spec.overrides.files.clone()).to_string(),
        );
        let mut artifacts = self.spec.overrides.artifacts.clone();
        if let Some(job) = self.job {
            artifacts.insert("_wandb_job".into(), json!(job));
        }
        set("WANDB_ARTIFACTS", Value::Object(artifacts).to_string());
        if let Some(gpus) = &self.gpus {
            set("CUDA_VISIBLE_DEVICES", gpus.clone());
        }
        if let Some(prefix) = &self.path_prefix {
            let path = env
                .iter()
                .find(|(n, _)| n == "PATH")
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            let mut joined = prefix.clone();
            if !path.is_empty() {
                joined.push(":");
                joined.push(path);
            }
            env.retain(|(n, _)| n != "PATH");
            env.push(("PATH".into(), joined));
        }
        env
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup<'a>(env: &'a [(OsString, OsString)], name: &str) -> Option<&'a str> {
        env.iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.to_str())
    }

    #[test]
    fn jobs_get_the_official_variables_and_none_of_the_agents_secrets() {
        let spec = LaunchSpec::from_value(json!({"job": "e/p/j:v1", "name": "cfg-run",
            "author": "mlwf", "overrides": {"run_config": {"lr": 0.5}}}))
        .unwrap();
        let job = JobEnv {
            spec: &spec,
            entity: "e",
            project: "p",
            base_url: "http://127.0.0.1:1",
            api_key: Some("key"),
            run_id: "abcd1234",
            queue: "q",
            queue_entity: "e",
            item: "item-1",
            job: Some("e/p/j:v1"),
            gpus: Some("1".into()),
            path_prefix: None,
            pass_env: &["GH_TOKEN".to_owned()],
        };
        let inherited = [
            ("PATH", "/bin"),
            ("GITHUB_TOKEN", "secret"),
            ("GH_TOKEN", "passed"),
            ("WANDB_SERVICE", "agent-core"),
            ("WANDB_RUN_ID", "agentrun"),
            ("WANDB_DIR", "/tmp/w"),
        ]
        .map(|(n, v)| (OsString::from(n), OsString::from(v)));
        let env = job.build(inherited);
        assert_eq!(lookup(&env, "WANDB_RUN_ID"), Some("abcd1234"));
        assert_eq!(lookup(&env, "WANDB_LAUNCH"), Some("True"));
        assert_eq!(lookup(&env, "WANDB_NAME"), Some("cfg-run"));
        assert_eq!(lookup(&env, "WANDB_USERNAME"), Some("mlwf"));
        assert_eq!(lookup(&env, "WANDB_CONFIG"), Some(r#"{"lr":0.5}"#));
        assert_eq!(
            lookup(&env, "WANDB_ARTIFACTS"),
            Some(r#"{"_wandb_job":"e/p/j:v1"}"#)
        );
        assert_eq!(lookup(&env, "WANDB_LAUNCH_TRACE_ID"), Some("item-1"));
        assert_eq!(lookup(&env, "CUDA_VISIBLE_DEVICES"), Some("1"));
        assert_eq!(lookup(&env, "WANDB_DIR"), Some("/tmp/w"));
        assert_eq!(lookup(&env, "GH_TOKEN"), Some("passed"));
        assert_eq!(lookup(&env, "GITHUB_TOKEN"), None);
        assert_eq!(lookup(&env, "WANDB_SERVICE"), None);
        assert_eq!(lookup(&env, "WANDB_RESUME"), None);
    }

    #[test]
    fn long_configs_are_chunked_as_the_official_agent_does() {
        let mut spec = LaunchSpec::default();
        spec.overrides
            .run_config
            .insert("text".into(), json!("x".repeat(CONFIG_CHUNK)));
        let job = JobEnv {
            spec: &spec,
            entity: "e",
            project: "p",
            base_url: "u",
            api_key: None,
            run_id: "r",
            queue: "q",
            queue_entity: "e",
            item: "i",
            job: Some("j"),
            gpus: None,
            path_prefix: None,
            pass_env: &[],
        };
        let env = job.build([]);
        assert_eq!(lookup(&env, "WANDB_CONFIG"), None);
        let joined = format!(
            "{}{}",
            lookup(&env, "WANDB_CONFIG_0").unwrap(),
            lookup(&env, "WANDB_CONFIG_1").unwrap()
        );
        assert_eq!(
            serde_json::from_str::<Value>(&joined).unwrap()["text"]
                .as_str()
                .unwrap()
                .len(),
            CONFIG_CHUNK
        );
    }
}
