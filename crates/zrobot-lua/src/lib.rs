//! The Lua template runtime: compiles template code, runs actions in a sandbox
//! under instruction, time and memory budgets, and gives them the `robot` API.
//!
//! # How states are used
//!
//! A Lua state costs tens of kilobytes and tens of microseconds to make, so a
//! service never owns one and a task never makes one. Each template keeps a
//! pool of ready states (its code compiled); a running action borrows one for
//! its whole run, waits included, and gives it back when it ends. So the states
//! alive at once match the actions running at once, never the services; and
//! a memory limit or a runaway-loop budget is per action, because no two
//! actions share a state at the same time. A state whose action was stopped
//! (budget, timeout, memory) is dropped, not reused. A state is compiled code,
//! not a running program: each action re-runs the code's top level in a fresh
//! environment, so what one action (of one service) writes is never seen by
//! the next (see `sandbox::ISOLATION`).
//!
//! A service's truth (data, state table) stays in the core between tasks: the
//! data is turned into a Lua table only when an action reads `self.data`.

mod api;
mod convert;
mod engine;
mod handles;
pub mod pattern;
mod remote;
mod sandbox;

pub use engine::{LuaConfig, LuaEngine};
