//! `zrobot blueprint execute FILE [--wait]`: sends a YAML blueprint, keeps
//! the secrets of the services it created, and follows its tasks.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use comfy_table::Cell;
use zrobot_client::{BlueprintResult, Client, ClientError};

use super::context::{explain, Ctx, Need, Secrets, Target};
use super::{follow, output, values};

pub async fn execute(ctx: &mut Ctx, file: &Path, wait: bool) -> Result<ExitCode> {
    let target = ctx.target()?;
    let client = ctx.client(&target, Secrets::None)?;
    let result = send(&client, &target, file).await?;
    // Secrets are shown once: keep them before following anything.
    let created: Vec<_> = result
        .services
        .iter()
        .map(|s| (s.service.guid, s.service.name.clone(), s.secret.clone()))
        .collect();
    ctx.store_secrets(&target, &created)?;
    if !wait {
        if ctx.json {
            output::json(&result)?;
        } else {
            show_created(&result);
            if !result.tasks.is_empty() {
                println!("{}", output::tasks_table(&result.tasks));
                println!("follow them with `zrobot blueprint execute --wait`, or `zrobot task get SERVICE TASK`");
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    if !ctx.json {
        show_created(&result);
    }
    // The tasks may be on services created now or before: each is followed
    // with the secret of its own service.
    let target = ctx.target()?;
    let follower = ctx.client(&target, Secrets::None)?;
    let secrets = &target.entry.secrets;
    let followed = follow::follow_with(&follower, result.tasks.clone(), |guid| {
        secrets.get(&guid).map(|s| s.secret.clone())
    })
    .await;
    if ctx.json {
        output::json(&BlueprintResult {
            services: result.services,
            tasks: followed.iter().map(|f| f.last().clone()).collect(),
        })?;
        Ok(follow::code(&followed))
    } else {
        Ok(follow::summary(&followed))
    }
}

/// Reads the blueprint (YAML, or JSON) and sends it as `{content: ...}`.
pub async fn send(client: &Client, target: &Target, file: &Path) -> Result<BlueprintResult> {
    let content = values::read_file(file).context("cannot read the blueprint")?;
    if !content.is_object() {
        anyhow::bail!(
            "{} is not a blueprint: it must be a mapping with `services` and/or `actions`",
            file.display()
        );
    }
    client
        .execute_blueprint(content)
        .await
        .map_err(|mut e| {
            if let ClientError::Api { message, .. } = &mut e {
                let text = std::fs::read_to_string(file).unwrap_or_default();
                *message = locate(message, file, &text);
            }
            explain(target, e, Need::User)
        })
        .with_context(|| format!("blueprint {}", file.display()))
}

/// The robot's answer with each problem that names a block of the
/// blueprint (`services[1] (vm__web): ...`, `actions[0]: ...`) on a line of
/// its own, after the file and line of that block.
fn locate(message: &str, file: &Path, text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let located: Vec<String> = message
        .lines()
        .map(|problem| match line_of_block(&lines, problem) {
            Some(n) => format!("{}:{n}: {problem}", file.display()),
            None => problem.to_owned(),
        })
        .collect();
    match located.as_slice() {
        [one] => one.clone(),
        many => format!(
            "{} problems:{}",
            many.iter().filter(|p| !p.starts_with("(and ")).count(),
            many.iter().map(|p| format!("\n  {p}")).collect::<String>()
        ),
    }
}

/// A list item's text after its `- `, or `None` for a line that starts none.
fn item(line: &str) -> Option<&str> {
    line.trim_start().strip_prefix("- ").map(str::trim_start)
}

/// The 1-based line where the block a problem names starts.
fn line_of_block(lines: &[&str], problem: &str) -> Option<usize> {
    let (block, _) = problem.split_once(": ")?;
    if let Some(rest) = block.strip_prefix("services[") {
        // `services[1] (vm__web)`: the line of the key `vm__web:`.
        let key = rest.split_once("] (")?.1.strip_suffix(')')?;
        let wanted = format!("{key}:");
        return lines
            .iter()
            .position(|l| {
                let l = item(l).unwrap_or(l.trim_start());
                l.starts_with(&wanted) || l.starts_with(&format!("\"{key}\":"))
            })
            .map(|i| i + 1);
    }
    let top = lines.iter().position(|l| l.starts_with("actions:"))?;
    if block == "actions" {
        return Some(top + 1);
    }
    // `actions[2]`: the third item of the list under `actions:`.
    let index: usize = block
        .strip_prefix("actions[")?
        .strip_suffix(']')?
        .parse()
        .ok()?;
    let indent = |l: &str| l.len() - l.trim_start().len();
    let first = lines[top + 1..].iter().find(|l| item(l).is_some())?;
    lines
        .iter()
        .enumerate()
        .skip(top + 1)
        .take_while(|(_, l)| l.trim().is_empty() || indent(l) > 0 || l.starts_with('-'))
        .filter(|(_, l)| item(l).is_some() && indent(l) == indent(first))
        .nth(index)
        .map(|(i, _)| i + 1)
}

fn show_created(result: &BlueprintResult) {
    if result.services.is_empty() {
        println!("no service created (those named exist already, and received their data)");
        return;
    }
    let mut t = output::table(&["CREATED SERVICE", "GUID", "TEMPLATE"]);
    for s in &result.services {
        t.add_row(vec![
            Cell::new(&s.service.name),
            Cell::new(s.service.guid),
            Cell::new(&s.service.template),
        ]);
    }
    println!("{t}");
    println!(
        "{} service(s) created, their secrets stored; {} task(s) scheduled",
        result.services.len(),
        result.tasks.len()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    const BLUEPRINT: &str = "services:\n  - node__n1:\n      hostname: n1\n  - vm__web:\n      node: n1\nactions:\n  - service: n1\n    actions: [install]\n  - template: vm\n    actions: [install]\n";

    #[test]
    fn problems_are_put_at_the_line_of_their_block() {
        let got = locate(
            "services[1] (vm__web): bad data\nactions[1]: no such action",
            Path::new("bp.yaml"),
            BLUEPRINT,
        );
        assert_eq!(
            got,
            "2 problems:\n  bp.yaml:4: services[1] (vm__web): bad data\n  bp.yaml:9: actions[1]: no such action"
        );
        // One problem of no block stays as it was.
        assert_eq!(
            locate("blueprint: lists nothing", Path::new("bp.yaml"), BLUEPRINT),
            "blueprint: lists nothing"
        );
    }
}
