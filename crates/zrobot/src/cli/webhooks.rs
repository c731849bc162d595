//! `zrobot webhook ...`: the URLs a robot tells about every failed task.

use std::process::ExitCode;

use anyhow::Result;
use serde_json::json;
use zrobot_client::Webhook;

use super::context::{explain, Ctx, Need, Secrets};
use super::{output, WebhookCommand};

pub async fn run(ctx: &Ctx, command: WebhookCommand) -> Result<ExitCode> {
    let target = ctx.target()?;
    let client = ctx.client(&target, Secrets::None)?;
    let admin = |e| explain(&target, e, Need::Admin);
    match command {
        WebhookCommand::Add { url, format } => {
            let hook = client
                .add_webhook_as(&url, format.as_deref())
                .await
                .map_err(admin)?;
            if ctx.json {
                output::json(&hook)?;
            } else {
                let what = match hook.format.as_deref() {
                    Some(chat) => format!("a {chat} message about every failed task"),
                    None => "the eco of every failed task".to_owned(),
                };
                println!("webhook {} added: {} receives {what}", hook.id, hook.url);
            }
        }
        WebhookCommand::List => {
            let hooks = client.webhooks().await.map_err(admin)?;
            if ctx.json {
                output::json(&hooks)?;
            } else if hooks.is_empty() {
                println!("no webhook: add one with `zrobot webhook add URL`");
            } else {
                table(&hooks);
            }
        }
        WebhookCommand::Delete { id } => {
            client.delete_webhook(&id).await.map_err(admin)?;
            if ctx.json {
                output::json(&json!({"id": id, "deleted": true}))?;
            } else {
                println!("webhook {id} deleted");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn table(hooks: &[Webhook]) {
    let mut t = output::table(&["ID", "KIND", "FORMAT", "URL"]);
    for h in hooks {
        t.add_row(vec![
            h.id.clone(),
            h.kind.clone(),
            h.format.clone().unwrap_or_else(|| "json".to_owned()),
            h.url.clone(),
        ]);
    }
    println!("{t}");
}
