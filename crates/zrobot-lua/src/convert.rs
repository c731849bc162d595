//! Turning Lua errors into ecos and Lua values into JSON.

use mlua::serde::DeserializeOptions;
use mlua::{Lua, LuaSerdeExt, Value as LuaValue};
use serde_json::Value;
use zrobot_core::engine::ActionError;

/// The innermost error of a chain of callback errors.
pub(crate) fn root_cause(e: &mlua::Error) -> &mlua::Error {
    match e {
        mlua::Error::CallbackError { cause, .. } => root_cause(cause),
        mlua::Error::WithContext { cause, .. } => root_cause(cause),
        other => other,
    }
}

/// A one-line message for an error, without its traceback.
pub(crate) fn message_of(e: &mlua::Error) -> String {
    let text = match root_cause(e) {
        mlua::Error::RuntimeError(m) => m.clone(),
        mlua::Error::SyntaxError { message, .. } => message.clone(),
        mlua::Error::MemoryError(m) => format!("out of memory: {m}"),
        other => other.to_string(),
    };
    split_trace(&text).0.to_owned()
}

fn split_trace(text: &str) -> (&str, &str) {
    match text.find("\nstack traceback:") {
        Some(i) => (text[..i].trim_end(), text[i + 1..].trim_end()),
        None => (text.trim_end(), ""),
    }
}

/// Where in a template's files the traceback says the error happened.
fn position(trace: &str) -> Option<String> {
    trace.lines().map(str::trim).find_map(|l| {
        let i = l.find(".lua:")?;
        let rest = &l[i + 5..];
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        (!digits.is_empty()).then(|| format!("{}{digits}", &l[..i + 5]))
    })
}

/// The eco of a failed call.
pub(crate) fn action_error(e: &mlua::Error, action: Option<&str>) -> ActionError {
    let mut traces = Vec::new();
    let mut cur = e;
    loop {
        match cur {
            mlua::Error::CallbackError { cause, traceback } => {
                traces.push(traceback.clone());
                cur = cause;
            }
            mlua::Error::WithContext { cause, .. } => cur = cause,
            _ => break,
        }
    }
    let full = match cur {
        mlua::Error::RuntimeError(m) => m.clone(),
        other => other.to_string(),
    };
    let (message, own_trace) = split_trace(&full);
    let trace = if !own_trace.is_empty() {
        own_trace.to_owned()
    } else {
        traces.first().cloned().unwrap_or_default()
    };
    // Errors raised by the robot API (callbacks) carry no position of their
    // own: take it from the trace. Errors raised by Lua start with theirs.
    let message = if traces.is_empty() {
        message.to_owned()
    } else {
        match position(&trace) {
            Some(p) => format!("{p}: {message}"),
            None => message.to_owned(),
        }
    };
    let category = match cur {
        mlua::Error::MemoryError(_) => "action.memory",
        _ if message.contains("state check failed") => "state.check",
        _ => "lua.error",
    };
    let _ = action;
    ActionError {
        category: category.to_owned(),
        message,
        trace,
    }
}

/// A Lua value as JSON; tables with functions or cycles are refused.
pub(crate) fn to_json(lua: &Lua, v: LuaValue) -> Result<Value, String> {
    if v.is_nil() {
        return Ok(Value::Null);
    }
    lua.from_value_with::<Value>(v, DeserializeOptions::new().deny_unsupported_types(true))
        .map_err(|e| {
            let m = message_of(&e);
            format!("{m} (only tables, strings, numbers, booleans and nil can be stored)")
        })
}
