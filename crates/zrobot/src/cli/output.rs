//! How answers are shown: tables for people (state colours only on a
//! terminal), the API's own JSON for scripts with `--json`.

use std::io::IsTerminal;

use comfy_table::{Cell, Color, ContentArrangement, LineStyle, Table, TableStyle};
use serde::Serialize;
use zrobot_client::{Service, Task, TaskState};

/// Prints `value` as indented JSON on stdout.
pub fn json(value: &impl Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Whether colours may be used on stdout: a terminal, and no `NO_COLOR`.
pub fn colours() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

/// Columns and a line under the titles, no boxes: easy to read and to grep.
const STYLE: TableStyle =
    TableStyle::new().header_separator(LineStyle::none().fill('─').junction(' '));

/// A table with these column titles (none: a table of keys and values), laid out for the terminal if there is one.
pub fn table(headers: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_style(STYLE)
        .set_content_arrangement(ContentArrangement::Dynamic);
    if !headers.is_empty() {
        t.set_header(headers.iter().map(Cell::new));
    }
    if !colours() {
        t.force_no_tty();
    }
    t
}

/// A cell for a task or tag state, coloured by what it means.
pub fn state_cell(state: &str) -> Cell {
    let colour = match state {
        "ok" => Some(Color::Green),
        "error" => Some(Color::Red),
        "warning" => Some(Color::Yellow),
        "running" => Some(Color::Cyan),
        _ => None,
    };
    let cell = Cell::new(state);
    match colour {
        Some(c) if colours() => cell.fg(c),
        _ => cell,
    }
}

pub fn task_state(state: TaskState) -> &'static str {
    match state {
        TaskState::New => "new",
        TaskState::Running => "running",
        TaskState::Ok => "ok",
        TaskState::Error => "error",
    }
}

/// A service's state table in one line: `actions/install=ok, status/running=ok`.
pub fn service_states(svc: &Service) -> String {
    if svc.state.is_empty() {
        return "-".to_owned();
    }
    svc.state
        .iter()
        .map(|s| {
            format!(
                "{}/{}={}",
                s.category,
                s.tag,
                serde_json::to_value(s.state)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The worst state of a service's table, for its colour: error, warning, ok.
pub fn overall_state(svc: &Service) -> &'static str {
    use zrobot_client::TagState;
    if svc.state.iter().any(|s| s.state == TagState::Error) {
        "error"
    } else if svc.state.iter().any(|s| s.state == TagState::Warning) {
        "warning"
    } else if svc.state.is_empty() {
        "-"
    } else {
        "ok"
    }
}

/// Services as a table.
pub fn services_table(services: &[Service]) -> Table {
    let mut t = table(&["NAME", "GUID", "TEMPLATE", "STATE", "STATE TABLE", "PUBLIC"]);
    for s in services {
        t.add_row(vec![
            Cell::new(&s.name),
            Cell::new(s.guid),
            Cell::new(&s.template),
            state_cell(overall_state(s)),
            Cell::new(service_states(s)),
            Cell::new(if s.public { "yes" } else { "no" }),
        ]);
    }
    t
}

/// Tasks as a table.
pub fn tasks_table(tasks: &[Task]) -> Table {
    let mut t = table(&[
        "TASK",
        "SERVICE",
        "ACTION",
        "STATE",
        "CREATED",
        "DURATION",
        "RESULT / ERROR",
    ]);
    for task in tasks {
        t.add_row(vec![
            Cell::new(task.guid),
            Cell::new(&task.service_name),
            Cell::new(&task.action_name),
            state_cell(task_state(task.state)),
            Cell::new(time(task.created)),
            Cell::new(duration(task.duration)),
            Cell::new(outcome(task)),
        ]);
    }
    t
}

/// A task's result, or the message of its eco, in one short line.
pub fn outcome(task: &Task) -> String {
    if let Some(eco) = &task.eco {
        if task.state == TaskState::Error {
            return format!("{}: {}", eco.cat, first_line(&eco.message));
        }
    }
    match task.result_value() {
        Some(serde_json::Value::Null) | None => String::new(),
        Some(v) => shorten(&v.to_string(), 100),
    }
}

pub fn duration(d: Option<f64>) -> String {
    match d {
        Some(s) if s < 1.0 => format!("{:.0} ms", s * 1000.0),
        Some(s) => format!("{s:.1} s"),
        None => "-".to_owned(),
    }
}

/// Unix seconds as `YYYY-MM-DD HH:MM:SS` UTC.
pub fn time(secs: i64) -> String {
    zrobot_client::wire::human_time(secs)
}

pub fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

pub fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let cut: String = s.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_durations_read_well() {
        assert_eq!(time(0), "1970-01-01 00:00:00");
        assert_eq!(time(1_512_038_654), "2017-11-30 10:44:14");
        assert_eq!(duration(Some(0.0123)), "12 ms");
        assert_eq!(duration(Some(2.25)), "2.2 s");
        assert_eq!(duration(None), "-");
        assert_eq!(shorten("abcdef", 4), "abc…");
    }
}
